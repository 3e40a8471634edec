/**
 * The Redis L2 tier: a second, shared tier behind the shards. A get that
 * misses in the shards reads Redis and promotes what it finds; writes,
 * deletes, pattern deletes, clears and tag invalidations go to both tiers.
 *
 * Stored form in Redis (one string per key, `<prefix><region>:<key>`):
 *
 * ```
 *  0     2        3     4      5             9            13
 *  ┌─────┬────────┬─────┬──────┬─────────────┬────────────┬────────────────┐
 *  │"SC" │version │ tag │flags │ raw size u32│ crc32(raw) │ payload        │
 *  └─────┴────────┴─────┴──────┴─────────────┴────────────┴────────────────┘
 *  flags bit 0: the payload is an LZ4 frame (the shards' plain codec)
 * ```
 *
 * Values of at least the region's `compression.minBytes` are compressed as
 * the shards compress them (dictionaries are per shard and cannot be shared
 * across instances, so L2 uses plain LZ4). Anything that does not decode to a
 * value whose CRC-32 matches (a foreign value, a flipped byte) is a miss and
 * counted as `corrupt`.
 *
 * Tags: `SADD <prefix>tag:<tag> <redis key>` with each tagged write, so that
 * `invalidateTag` can remove the tagged keys from L2 too (else a later miss
 * in the shards would promote them back).
 *
 * Failure: every command has `timeout`; an error or a timeout makes the
 * operation skip L2 (counted) unless `required`, when it rejects with
 * `E_L2_UNAVAILABLE`. Five failures in a row open a circuit breaker: L2 is
 * not called for `breakDuration`, then one call probes it.
 */
import { Redis } from 'ioredis'
import type { Cluster, RedisOptions } from 'ioredis'
import { crc32 } from 'node:zlib'
import { compressIfSmaller, decompress } from '../workers/compression.js'
import { CacheError, L2Error } from './errors.js'
import { isRedisClient } from './options.js'
import { LEAST_PRIVILEGE, checkPermissionsApart, hangUp, refusal, withTls } from './redis_access.js'
import type { Probe, RefusalContext } from './redis_access.js'
import type { ConnectionOptions } from 'node:tls'
import type { EncodedValue } from './values.js'

/** The tier's options after validation (see `L2Options` in ./options.ts). */
export interface ResolvedL2 {
  redis: string | RedisOptions | Redis | Cluster
  /** Merged over the connection's own TLS options (not for a Cluster). */
  tls: ConnectionOptions | undefined
  prefix: string
  ttlScale: number
  promotionFrequency: number
  timeoutMs: number
  required: boolean
  breakDurationMs: number
}

/** `stats().tiers.l2`. */
export interface L2Stats {
  hits: number
  misses: number
  /** Failed or timed-out commands (each skipped, or rejected when `required`). */
  errors: number
  /** L2 hits written into the shards. */
  promotions: number
  /** Values in Redis that were not ours or did not check out: read as misses. */
  corrupt: number
  /** Calls not made because the breaker was open. */
  skipped: number
  breaker: 'closed' | 'open' | 'half-open'
}

/** What a read found in L2. */
export interface L2Value {
  enc: EncodedValue
  /** Remaining TTL in Redis (ms), Infinity without one; undefined when not read (no promotion). */
  ttlMs: number | undefined
}

const MAGIC_0 = 0x53
const MAGIC_1 = 0x43
const VERSION = 1
const HEADER = 13
const FLAG_LZ4 = 1
/** Failures in a row that open the breaker. */
const BREAKER_THRESHOLD = 5
/** How long createCache waits for a `required` L2 to connect. */
const CONNECT_TIMEOUT_MS = 5000
/** How often an instance waiting on another's lease looks for the value. */
const LOCK_POLL_MS = 20
/** Deletes the lease only if it still holds our token (UNLINK, as the tier deletes everything else: one command fewer in the ACL rules). */
const UNLOCK_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) else return 0 end`
/** Keys per UNLINK when deleting what a SCAN found. */
const UNLINK_BATCH = 500

type Client = Redis | Cluster

const REFUSAL: RefusalContext = { what: 'the L2 tier', option: 'options.l2' }

export class L2Tier {
  readonly #opts: ResolvedL2
  readonly #client: Client
  #failures = 0
  #openUntil = 0
  #probing = false
  #c = L2Tier.#zero()

  static #zero() {
    return { hits: 0, misses: 0, errors: 0, promotions: 0, corrupt: 0, skipped: 0 }
  }

  constructor(opts: ResolvedL2) {
    this.#opts = opts
    const own: RedisOptions = {
      // A command while disconnected fails at once: L1 keeps serving meanwhile.
      enableOfflineQueue: false,
      commandTimeout: opts.timeoutMs,
      maxRetriesPerRequest: 0,
      connectionName: 'shardcache-l2',
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 10), 1000),
      lazyConnect: true,
      ...LEAST_PRIVILEGE,
    }
    const r = opts.redis
    if (typeof r === 'string') this.#client = new Redis(r, withTls(own, undefined, opts.tls))
    // A Cluster's duplicate() takes its startup nodes first, then the cluster options.
    else if (isCluster(r)) this.#client = (r as Cluster).duplicate(undefined, { redisOptions: own, lazyConnect: true, enableOfflineQueue: false })
    else if (isRedisClient(r)) this.#client = (r as Redis).duplicate(withTls(own, (r as Redis).options?.tls, opts.tls))
    else this.#client = new Redis({ ...(r as RedisOptions), ...withTls(own, (r as RedisOptions).tls, opts.tls) })
    this.#client.on('error', () => {
      // Reported through the operations' outcomes and stats, not as process-level noise.
    })
  }

  /**
   * Connects and checks the ACL permissions the tier will use on the keys of
   * `regions`. Rejects with RedisAuthError, RedisTlsError or
   * RedisPermissionError when Redis refuses the credentials, the certificate
   * or a permission (whatever `required` says: no retry fixes those); when
   * `required`, with E_L2_UNAVAILABLE if Redis cannot be reached.
   */
  async start(regions: readonly string[]): Promise<void> {
    let onRefused: ((err: CacheError) => void) | undefined
    let lastError: Error | undefined
    // A refusal is reported (by an 'error' event) before the connection closes.
    const watch = (err: Error): void => {
      lastError = err
      const typed = refusal(err, REFUSAL)
      if (typed !== undefined) onRefused?.(typed)
    }
    this.#client.on('error', watch)
    const connecting = this.#client.connect()
    connecting.catch(() => {}) // ioredis keeps retrying in the background
    let timer: NodeJS.Timeout | undefined
    try {
      // Bounded: a cluster that never becomes ready would otherwise hold createCache forever.
      await Promise.race([
        connecting,
        new Promise<never>((_, reject) => (onRefused = reject)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`not ready within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS)
        }),
      ])
    } catch (err) {
      const refused = err instanceof CacheError ? err : lastError === undefined ? undefined : refusal(lastError, REFUSAL)
      if (refused !== undefined) {
        hangUp(this.#client)
        throw refused
      }
      // Not required: the cache starts; L2 calls fail fast (and are skipped) until Redis answers.
      if (!this.#opts.required) return
      hangUp(this.#client)
      const cause = lastError ?? err
      throw new L2Error(`cannot connect the L2 tier (options.l2.redis): ${(cause as Error).message}`, { cause })
    } finally {
      clearTimeout(timer)
      this.#client.off('error', watch)
    }
    const denied = await this.#checkPermissions(regions)
    if (denied !== undefined) {
      hangUp(this.#client)
      throw denied
    }
  }

  /**
   * Queues every command the tier sends, on the keys of every region (a user
   * may be given per-region key patterns), in a discarded MULTI. Not for a
   * Cluster, whose keys live on other nodes (a MULTI cannot span them).
   */
  async #checkPermissions(regions: readonly string[]): Promise<CacheError | undefined> {
    if (isCluster(this.#client)) return undefined
    const probes: Probe[] = []
    const tags = this.#tagKey('')
    for (const region of regions) {
      const k = this.key(region, '')
      const on = `${k}…`
      probes.push(
        { args: ['GET', k], on },
        { args: ['PTTL', k], on },
        { args: ['SET', k, '', 'PX', 1], on },
        { args: ['PEXPIRE', k, 1], on },
        { args: ['PERSIST', k], on },
        { args: ['UNLINK', k], on },
        { args: ['SADD', tags, k], on: `${tags}…` },
      )
    }
    probes.push(
      { args: ['SMEMBERS', tags], on: `${tags}…` },
      { args: ['UNLINK', tags], on: `${tags}…` },
      { args: ['SCAN', '0', 'MATCH', `${escapeGlob(this.#opts.prefix)}*`, 'COUNT', 1] },
    )
    return checkPermissionsApart(this.#client as Redis, probes, REFUSAL, 'shardcache-l2-check', CONNECT_TIMEOUT_MS)
  }

  /** The Redis key of a cache key. */
  key(region: string, key: string): string {
    return `${this.#opts.prefix}${region}:${key}`
  }

  /** Reads `key`; undefined on a miss, a corrupt value, a failure (unless required) or an open breaker. */
  async get(region: string, key: string, withTtl = true): Promise<L2Value | undefined> {
    const k = this.key(region, key)
    const res = await this.#call(async (c) => {
      if (!withTtl) return { bytes: await c.getBuffer(k), pttl: undefined }
      // Sent together (one round trip); the TTL may be a few ms younger than the value, never older.
      const [bytes, pttl] = await Promise.all([c.getBuffer(k), c.pttl(k)])
      return { bytes, pttl }
    })
    if (res === undefined || res.bytes === null) {
      this.#c.misses++
      return undefined
    }
    const enc = this.#decode(res.bytes)
    if (enc === undefined) {
      this.#c.corrupt++
      this.#c.misses++
      return undefined
    }
    this.#c.hits++
    return { enc, ttlMs: res.pttl === undefined ? undefined : res.pttl < 0 ? Infinity : res.pttl }
  }

  /** Whether the next hit should be promoted into the shards: 1 in `promotion.frequency`. */
  shouldPromote(): boolean {
    const f = this.#opts.promotionFrequency
    return f === 1 || Math.random() * f < 1
  }

  /** Counts a promotion made. */
  promoted(): void {
    this.#c.promotions++
  }

  /** Writes `key` with `ttlMs` x ttlScale (no expiry for Infinity), and adds it to its tags' sets. */
  async set(region: string, key: string, enc: EncodedValue, ttlMs: number, compressMinBytes: number, tags: string[] | undefined): Promise<void> {
    const k = this.key(region, key)
    const bytes = this.#encode(enc, compressMinBytes)
    const px = ttlMs === Infinity ? undefined : Math.max(1, Math.round(ttlMs * this.#opts.ttlScale))
    await this.#call(async (c) => {
      if (tags === undefined || tags.length === 0) {
        await (px === undefined ? c.set(k, bytes) : c.set(k, bytes, 'PX', px))
        return
      }
      // Not one MULTI: in a cluster the tag sets live in other slots than the key.
      await Promise.all([
        px === undefined ? c.set(k, bytes) : c.set(k, bytes, 'PX', px),
        ...tags.map((t) => c.sadd(this.#tagKey(t), k)),
      ])
    })
  }

  /** Gives `key` a new TTL (x ttlScale) in L2, when it is there. */
  async touch(region: string, key: string, ttlMs: number): Promise<void> {
    const k = this.key(region, key)
    await this.#call((c) => (ttlMs === Infinity ? c.persist(k) : c.pexpire(k, Math.max(1, Math.round(ttlMs * this.#opts.ttlScale)))))
  }

  async delete(region: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    await this.#call(async (c) => {
      // One UNLINK per key: a cluster refuses multi-key commands across slots.
      await Promise.all(keys.map((key) => c.unlink(this.key(region, key))))
    })
  }

  /** Deletes the region's keys matching a glob (all of them when `glob` is undefined). */
  async deleteMatching(region: string, glob: string | undefined, matches: (key: string) => boolean): Promise<void> {
    const base = this.key(region, '')
    // Only * and ? mean the same to Redis and to us; a glob with classes or escapes is filtered by us alone.
    const pattern = escapeGlob(base) + (glob === undefined || /[[\\]/.test(glob) ? '*' : glob)
    await this.#call(async (c) => {
      for (const node of nodesOf(c)) {
        let cursor = '0'
        do {
          const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
          cursor = next
          // SCAN's glob is a prefilter: our own matcher decides.
          const mine = found.filter((k) => k.startsWith(base) && matches(k.slice(base.length)))
          for (let i = 0; i < mine.length; i += UNLINK_BATCH) await Promise.all(mine.slice(i, i + UNLINK_BATCH).map((k) => c.unlink(k)))
        } while (cursor !== '0')
      }
    })
  }

  /** Deletes every key carrying `tag` (whatever the region) and the tag's set. */
  async invalidateTag(tag: string): Promise<void> {
    const t = this.#tagKey(tag)
    await this.#call(async (c) => {
      const keys = await c.smembers(t)
      await Promise.all([...keys.map((k) => c.unlink(k)), c.unlink(t)])
    })
  }

  /**
   * Takes the loading lease of a key across instances (`SET NX PX`): true when
   * taken, false when another instance holds it, undefined when L2 failed
   * (the caller then loads without it).
   */
  async lock(region: string, key: string, token: string, ms: number): Promise<boolean | undefined> {
    const res = await this.#call((c) => c.set(this.#lockKey(region, key), token, 'PX', Math.max(1, Math.round(ms)), 'NX'))
    return res === undefined ? undefined : res === 'OK'
  }

  /** Releases a lease if it is still ours (it may have expired and been taken by another instance). */
  async unlock(region: string, key: string, token: string): Promise<void> {
    await this.#call((c) => c.eval(UNLOCK_LUA, 1, this.#lockKey(region, key), token))
  }

  /**
   * Polls L2 for `key` until it appears or `ms` pass (the value another
   * instance is loading); reads are not counted as misses meanwhile.
   */
  async waitFor(region: string, key: string, ms: number): Promise<L2Value | undefined> {
    const k = this.key(region, key)
    const deadline = Date.now() + ms
    for (;;) {
      const bytes = await this.#call((c) => c.getBuffer(k))
      if (bytes !== undefined && bytes !== null) {
        const enc = this.#decode(bytes)
        if (enc !== undefined) {
          this.#c.hits++
          const pttl = (await this.#call((c) => c.pttl(k))) ?? -1
          return { enc, ttlMs: pttl < 0 ? Infinity : pttl }
        }
      }
      if (Date.now() >= deadline) return undefined
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS))
    }
  }

  stats(): L2Stats {
    const now = Date.now()
    return { ...this.#c, breaker: this.#openUntil > now ? 'open' : this.#failures >= BREAKER_THRESHOLD ? 'half-open' : 'closed' }
  }

  resetStats(): void {
    this.#c = L2Tier.#zero()
  }

  /** Closes the tier's own connection (a client passed in was duplicated, and stays open). */
  async close(): Promise<void> {
    const c = this.#client
    if (c.status === 'ready') await Promise.race([c.quit().catch(() => {}), new Promise((r) => setTimeout(r, 500).unref())])
    hangUp(c)
  }

  // ── internals ────────────────────────────────────────────────────────────

  #lockKey(region: string, key: string): string {
    return `${this.#opts.prefix}lock:${region}:${key}`
  }

  #tagKey(tag: string): string {
    return `${this.#opts.prefix}tag:${tag}`
  }

  /** Runs `fn` unless the breaker is open; a failure counts, and rejects only when `required`. */
  async #call<T>(fn: (c: Client) => Promise<T>): Promise<T | undefined> {
    const now = Date.now()
    if (this.#openUntil > now || (this.#failures >= BREAKER_THRESHOLD && this.#probing)) {
      this.#c.skipped++
      if (this.#opts.required) throw new L2Error('the L2 tier is unavailable (circuit breaker open after repeated failures)')
      return undefined
    }
    const probe = this.#failures >= BREAKER_THRESHOLD
    if (probe) this.#probing = true
    try {
      const out = await fn(this.#client)
      this.#failures = 0
      return out
    } catch (err) {
      this.#c.errors++
      if (++this.#failures >= BREAKER_THRESHOLD) this.#openUntil = Date.now() + this.#opts.breakDurationMs
      if (this.#opts.required) throw new L2Error(`the L2 tier failed: ${(err as Error).message}`, { cause: err })
      return undefined
    } finally {
      if (probe) this.#probing = false
    }
  }

  #encode(enc: EncodedValue, compressMinBytes: number): Buffer {
    const raw = enc.bytes
    const packed = raw.length >= compressMinBytes ? compressIfSmaller(raw) : undefined
    const payload = packed ?? raw
    const out = Buffer.allocUnsafe(HEADER + payload.length)
    out[0] = MAGIC_0
    out[1] = MAGIC_1
    out[2] = VERSION
    out[3] = enc.tag
    out[4] = packed === undefined ? 0 : FLAG_LZ4
    out.writeUInt32LE(raw.length, 5)
    out.writeUInt32LE(crc32(raw), 9)
    out.set(payload, HEADER)
    return out
  }

  #decode(b: Buffer): EncodedValue | undefined {
    if (b.length < HEADER || b[0] !== MAGIC_0 || b[1] !== MAGIC_1 || b[2] !== VERSION || b[3]! > 3) return undefined
    const rawSize = b.readUInt32LE(5)
    const payload = b.subarray(HEADER)
    const raw = (b[4]! & FLAG_LZ4) !== 0 ? decompress(payload, rawSize) : payload.length === rawSize ? payload : undefined
    if (raw === undefined || crc32(raw) !== b.readUInt32LE(9)) return undefined
    return { tag: b[3]!, bytes: raw }
  }
}

function isCluster(c: unknown): boolean {
  return typeof (c as { nodes?: unknown }).nodes === 'function' && (c as { isCluster?: boolean }).isCluster === true
}

/** The nodes to SCAN: every master of a cluster, or the one server. */
function nodesOf(c: Client): Redis[] {
  return isCluster(c) ? (c as Cluster).nodes('master') : [c as Redis]
}

/** Escapes Redis glob specials in a literal (the prefix and region name). */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (ch) => `\\${ch}`)
}
