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
 *
 * A write that did not reach L2 (failed, timed out, skipped by the breaker)
 * leaves L2 with the value from before it, which any instance would read
 * back after its own copy is gone, for as long as L2 keeps it. So the tier
 * remembers what each such write touched (the key, or the pattern, clear or
 * tag) and, once L2 answers again, deletes that from L2 and reports it
 * (`onRepaired`), so that the cache tells its peers to drop what they may
 * have read from L2 meanwhile. Repairs only delete: a deletion that runs after
 * a newer write of the key costs a miss, never a stale read.
 */
import { Cluster, Redis } from 'ioredis'
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis'
import { crc32 } from 'node:zlib'
import { compressIfSmaller, decompress } from '../workers/compression.js'
import { L2Error } from './errors.js'
import { isClusterNodes, isRedisClient } from './options.js'
import type { EncodedValue } from './values.js'

/** What a repair removed from L2: keys of a region, a region's keys matching a glob (all of them: undefined), or a tag's keys. */
export type L2Repaired = { region: string; keys: string[] } | { region: string; glob: string | undefined } | { tag: string }

/** The tier's options after validation (see `L2Options` in ./options.ts). */
export interface ResolvedL2 {
  redis: string | RedisOptions | Redis | Cluster | { cluster: ClusterNode[]; options?: ClusterOptions }
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
  /**
   * Writes (sets, deletes, pattern deletes, clears, tag invalidations) that
   * may not have reached L2, each remembered for repair: what it touched is
   * deleted from L2 once L2 answers again, and peers are told to drop it.
   */
  lostWrites: number
  /** Keys and operations so repaired. */
  repaired: number
  /** Keys and operations waiting for L2 to answer, to be repaired (a gauge). */
  repairPending: number
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
/** Deletes the lease only if it still holds our token. */
const UNLOCK_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`
/** Keys per UNLINK when deleting what a SCAN found. */
const UNLINK_BATCH = 500
/** Keys remembered for repair; past it a region's lost writes are repaired by clearing the region in L2. */
const MAX_REPAIR_KEYS = 10_000
/** How soon after a lost write the repair first tries (and again after a failed try, or when the breaker closes). */
const REPAIR_MS = 200

type Client = Redis | Cluster

export class L2Tier {
  readonly #opts: ResolvedL2
  readonly #client: Client
  #failures = 0
  #openUntil = 0
  #probing = false
  #c = L2Tier.#zero()
  /** Lost writes of single keys, by Redis key (a fresh object per loss, so that a loss during a repair is kept). */
  readonly #lostKeys = new Map<string, { region: string; key: string }>()
  /** Lost pattern deletes, clears and tag invalidations, by what they were (the same twice is one repair). */
  readonly #lostOps = new Map<string, { region: string; glob: string | undefined; matches: (key: string) => boolean } | { tag: string }>()
  #repairTimer: NodeJS.Timeout | undefined
  #repairing = false
  #closed = false
  /** Told what each repair removed from L2 (the cache publishes it on the bus). */
  onRepaired: ((r: L2Repaired) => void) | undefined

  static #zero() {
    return { hits: 0, misses: 0, errors: 0, promotions: 0, corrupt: 0, skipped: 0, lostWrites: 0, repaired: 0 }
  }

  /**
   * How long after a peer's invalidation a value read from L2 is not stored in
   * the shards: the peer's own L2 write lands within its timeout (or is lost,
   * and repaired with a new invalidation). Twice the timeout, for the peer's
   * event loop delays.
   */
  get fillWindowMs(): number {
    return 2 * this.#opts.timeoutMs
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
    }
    const r = opts.redis
    if (typeof r === 'string') this.#client = new Redis(r, own)
    // A Cluster's duplicate() takes its startup nodes first, then the cluster options.
    else if (isCluster(r)) this.#client = (r as Cluster).duplicate(undefined, { redisOptions: own, lazyConnect: true, enableOfflineQueue: false })
    else if (isClusterNodes(r)) {
      const o = (r.options ?? {}) as ClusterOptions
      this.#client = new Cluster(r.cluster as ClusterNode[], { ...o, lazyConnect: true, enableOfflineQueue: false, redisOptions: { ...o.redisOptions, ...own } })
    } else if (isRedisClient(r)) this.#client = (r as Redis).duplicate(own)
    else this.#client = new Redis({ ...(r as RedisOptions), ...own })
    this.#client.on('error', () => {
      // Reported through the operations' outcomes and stats, not as process-level noise.
    })
  }

  /** Connects; when `required`, rejects with E_L2_UNAVAILABLE if Redis cannot be reached. */
  async start(): Promise<void> {
    const connecting = this.#client.connect()
    connecting.catch(() => {}) // ioredis keeps retrying in the background
    let timer: NodeJS.Timeout | undefined
    try {
      // Bounded: a cluster that never becomes ready would otherwise hold createCache forever.
      await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`not ready within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS)
        }),
      ])
    } catch (cause) {
      // Not required: the cache starts; L2 calls fail fast (and are skipped) until Redis answers.
      if (!this.#opts.required) return
      this.#client.disconnect()
      throw new L2Error(`cannot connect the L2 tier (options.l2.redis): ${(cause as Error).message}`, { cause })
    } finally {
      clearTimeout(timer)
    }
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
    await this.#write(() => this.#loseKey(region, key, k), async (c) => {
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
    await this.#write(
      () => this.#loseKey(region, key, k),
      (c) => (ttlMs === Infinity ? c.persist(k) : c.pexpire(k, Math.max(1, Math.round(ttlMs * this.#opts.ttlScale)))),
    )
  }

  async delete(region: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    await this.#write(() => keys.forEach((key) => this.#loseKey(region, key, this.key(region, key))), async (c) => {
      // One UNLINK per key: a cluster refuses multi-key commands across slots.
      await Promise.all(keys.map((key) => c.unlink(this.key(region, key))))
    })
  }

  /** Deletes the region's keys matching a glob (all of them when `glob` is undefined). */
  async deleteMatching(region: string, glob: string | undefined, matches: (key: string) => boolean): Promise<void> {
    await this.#write(() => this.#loseOp(`${region}\0${glob ?? ''}\0${glob === undefined}`, { region, glob, matches }), (c) => this.#deleteMatching(c, region, glob, matches))
  }

  async #deleteMatching(c: Client, region: string, glob: string | undefined, matches: (key: string) => boolean): Promise<void> {
    const base = this.key(region, '')
    // Only * and ? mean the same to Redis and to us; a glob with classes or escapes is filtered by us alone.
    const pattern = escapeGlob(base) + (glob === undefined || /[[\\]/.test(glob) ? '*' : glob)
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
  }

  /** Deletes every key carrying `tag` (whatever the region) and the tag's set. */
  async invalidateTag(tag: string): Promise<void> {
    await this.#write(() => this.#loseOp(`\0tag\0${tag}`, { tag }), (c) => this.#invalidateTag(c, tag))
  }

  async #invalidateTag(c: Client, tag: string): Promise<void> {
    const t = this.#tagKey(tag)
    const keys = await c.smembers(t)
    await Promise.all([...keys.map((k) => c.unlink(k)), c.unlink(t)])
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
    return {
      ...this.#c,
      breaker: this.#openUntil > now ? 'open' : this.#failures >= BREAKER_THRESHOLD ? 'half-open' : 'closed',
      repairPending: this.#lostKeys.size + this.#lostOps.size,
    }
  }

  resetStats(): void {
    this.#c = L2Tier.#zero()
  }

  /** Closes the tier's own connection (a client passed in was duplicated, and stays open). */
  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#repairTimer)
    const c = this.#client
    if (c.status === 'ready') await Promise.race([c.quit().catch(() => {}), new Promise((r) => setTimeout(r, 500).unref())])
    c.disconnect()
  }

  // ── internals ────────────────────────────────────────────────────────────

  #lockKey(region: string, key: string): string {
    return `${this.#opts.prefix}lock:${region}:${key}`
  }

  #tagKey(tag: string): string {
    return `${this.#opts.prefix}tag:${tag}`
  }

  /** A write: runs `fn` through {@link #call}, and calls `lose` when it did not complete (failed, timed out, skipped). */
  async #write(lose: () => void, fn: (c: Client) => Promise<unknown>): Promise<void> {
    let done = false
    try {
      await this.#call(async (c) => {
        await fn(c)
        done = true
      })
    } finally {
      if (!done) lose()
    }
  }

  #loseKey(region: string, key: string, redisKey: string): void {
    this.#c.lostWrites++
    if (this.#lostKeys.size >= MAX_REPAIR_KEYS && !this.#lostKeys.has(redisKey)) {
      // Too many to list: the region's keys are all removed from L2 instead (a miss each, never a stale read).
      this.#loseOp(`${region}\0\0true`, { region, glob: undefined, matches: () => true }, false)
      return
    }
    this.#lostKeys.delete(redisKey) // re-inserted last: repairs go oldest first
    this.#lostKeys.set(redisKey, { region, key })
    this.#repairSoon(REPAIR_MS)
  }

  #loseOp(id: string, op: { region: string; glob: string | undefined; matches: (key: string) => boolean } | { tag: string }, count = true): void {
    if (count) this.#c.lostWrites++
    this.#lostOps.delete(id)
    this.#lostOps.set(id, op)
    this.#repairSoon(REPAIR_MS)
  }

  #repairSoon(ms: number): void {
    if (this.#closed || this.#repairTimer !== undefined) return
    this.#repairTimer = setTimeout(() => {
      this.#repairTimer = undefined
      void this.#repair()
    }, ms)
    this.#repairTimer.unref()
  }

  /**
   * Deletes from L2 what lost writes touched, oldest first, while L2 answers;
   * reports each repair to `onRepaired`. Stops at the first failure and tries
   * again later (when the breaker closes, if it is open).
   */
  async #repair(): Promise<void> {
    if (this.#closed || this.#repairing) return
    const wait = this.#openUntil - Date.now()
    if (wait > 0) return this.#repairSoon(wait + 1)
    this.#repairing = true
    let ok = true
    try {
      for (const [id, op] of [...this.#lostOps]) {
        ok = await this.#attempt((c) => ('tag' in op ? this.#invalidateTag(c, op.tag) : this.#deleteMatching(c, op.region, op.glob, op.matches)))
        if (!ok) break
        // Lost again while this ran: kept for the next round (this deletion may have run before that write).
        if (this.#lostOps.get(id) === op) this.#lostOps.delete(id)
        this.#c.repaired++
        this.onRepaired?.('tag' in op ? { tag: op.tag } : { region: op.region, glob: op.glob })
      }
      while (ok && this.#lostKeys.size > 0 && !this.#closed) {
        const batch = [...take(this.#lostKeys, UNLINK_BATCH)]
        ok = await this.#attempt((c) => Promise.all(batch.map(([k]) => c.unlink(k))))
        if (!ok) break
        const byRegion = new Map<string, string[]>()
        for (const [k, lost] of batch) {
          if (this.#lostKeys.get(k) === lost) this.#lostKeys.delete(k)
          this.#c.repaired++
          const keys = byRegion.get(lost.region)
          if (keys === undefined) byRegion.set(lost.region, [lost.key])
          else keys.push(lost.key)
        }
        for (const [region, keys] of byRegion) this.onRepaired?.({ region, keys })
      }
    } finally {
      this.#repairing = false
    }
    if (this.#lostKeys.size + this.#lostOps.size > 0) this.#repairSoon(ok ? 0 : REPAIR_MS)
  }

  /** One repair step through {@link #call}: whether it completed (never throws, even when `required`). */
  async #attempt(fn: (c: Client) => Promise<unknown>): Promise<boolean> {
    let done = false
    try {
      await this.#call(async (c) => {
        await fn(c)
        done = true
      })
    } catch {
      // counted by #call
    }
    return done
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

/** The first `n` entries of a Map, in its order. */
function* take<K, V>(m: Map<K, V>, n: number): Generator<[K, V]> {
  if (n <= 0) return
  let i = 0
  for (const e of m) {
    yield e
    if (++i >= n) return
  }
}
