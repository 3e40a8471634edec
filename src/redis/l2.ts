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
 * Resync: a write, touch or delete that failed (or was skipped) leaves L2
 * with an older value than the shards, which a later miss, here or on any
 * instance, would read back after the bus flushed the shards. So the key is
 * remembered as unsynced (at most {@link MAX_UNSYNCED}), read as a miss here
 * meanwhile, and deleted from L2 as soon as L2 answers again; a write that
 * timed out but reached Redis later is deleted too (the delete follows it on
 * the same connection). A failed pattern delete, clear or tag invalidation,
 * or more unsynced keys than the cap, cannot be repaired key by key: every
 * key under the prefix is then deleted on recovery, and until then every L2
 * read here is a miss.
 * What a resync deletes is also reported (`onRepaired`: the keys, or the
 * lost pattern delete, clear or tag invalidation itself), so that the cache
 * tells its peers to drop what they may have read from L2 meanwhile: they do
 * not know about our failure, and would keep the old value L2 gave them.
 * Repairs only delete: a deletion that runs after a newer write of the key
 * costs a miss, never a stale read.
 */
import { Cluster, Redis } from 'ioredis'
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis'
import { crc32 } from 'node:zlib'
import { compressIfSmaller, decompress } from '../wire/compression.js'
import { CacheError, L2Error } from '../errors.js'
import { plural } from '../messages.js'
import { isClusterNodes, isRedisClient } from './redis_access.js'
import { LEAST_PRIVILEGE, cannotConnect, checkPermissionsApart, connectionProblem, hangUp, isNotConnected, moreTelling, refusal, whereOf, withTls } from './redis_access.js'
import type { Probe, RefusalContext } from './redis_access.js'
import type { ConnectionOptions } from 'node:tls'
import type { EncodedValue } from '../wire/values.js'

/** What a repair removed from L2: keys of a region, a region's keys matching a glob (all of them: undefined), or a tag's keys. */
export type L2Repaired = { region: string; keys: string[] } | { region: string; glob: string | undefined } | { tag: string }

/** The tier's options after validation (see `L2Options` in ./options.ts). */
export interface ResolvedL2 {
  redis: string | RedisOptions | Redis | Cluster | { cluster: ClusterNode[]; options?: ClusterOptions }
  /** Merged over the connection's own TLS options (not for a Cluster: options.ts refuses it). */
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
  /** Keys whose last L2 write failed: read as misses, deleted from L2 once it answers (a gauge). */
  unsynced: number
  /**
   * True after a failed pattern delete, clear or tag invalidation, or more
   * than 10,000 unsynced keys: every L2 read is a miss until every key under
   * the prefix has been deleted.
   */
  unsyncedOverflow: boolean
  /** Unsynced keys deleted from L2 once it answered again. */
  resynced: number
  /** Times every key under the prefix was deleted after {@link unsyncedOverflow}. */
  resyncFlushes: number
  /**
   * Commands sent to Redis and not answered yet (a gauge). While Redis hangs
   * (a paused server) it is bounded by what is sent within one `timeout`:
   * the commands time out, five in a row open the breaker, and an open
   * breaker sends nothing but one probe per `breakDuration`.
   */
  pending: number
  /**
   * Writes that may not have reached L2 (per key for sets, touches and
   * deletes; one per pattern delete, clear or tag invalidation), each
   * remembered for the resync: what it touched is deleted from L2 once L2
   * answers again, and peers are told to drop it.
   */
  lostWrites: number
  /** Keys and operations so repaired (and reported to peers): {@link resynced} keys, and the operations a resync flush covered. */
  repaired: number
  /** Keys and operations waiting for L2 to answer, to be repaired: {@link unsynced}, plus the operations a flush will cover (a gauge). */
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
/** Deletes the lease only if it still holds our token (UNLINK, as the tier deletes everything else: one command fewer in the ACL rules). */
const UNLOCK_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) else return 0 end`
/** Keys per UNLINK when deleting what a SCAN found. */
const UNLINK_BATCH = 500
/**
 * Keys remembered as unsynced (their L2 write failed) before the tier gives
 * up tracking them one by one and deletes its whole prefix on recovery
 * instead. ~100 bytes each (the key and a Map entry): ~1 MB at most.
 */
export const MAX_UNSYNCED = 10_000
/** Unsynced keys deleted per round of the resync. */
const RESYNC_BATCH = 500
/** How soon the resync tries again after L2 failed it (or the breaker was open). */
const RESYNC_RETRY_MS = 100

type Client = Redis | Cluster

/** A key an L2 write touched: its Redis key, region and cache key. */
type KeyRef = readonly [redisKey: string, region: string, key: string]
/** A lost write whose keys are not known: a region's pattern delete or clear (glob undefined), or a tag invalidation. */
type LostOp = { region: string; glob: string | undefined } | { tag: string }
/** An unsynced key: the generation of its last failure, and the cache key it is (to report it). */
interface Unsynced {
  gen: number
  region: string
  key: string
}

const REFUSAL: RefusalContext = { what: 'the L2 tier', option: 'options.l2' }

export class L2Tier {
  readonly #opts: ResolvedL2
  readonly #client: Client
  #failures = 0
  #openUntil = 0
  #probing = false
  /** The connection's last error since it was last ready (why it is down), for messages. */
  #connError: Error | undefined
  /** The last operation's failure, for the breaker's message. */
  #lastFailure: unknown
  #c = L2Tier.#zero()
  /** Told what each resync removed from L2 (the cache publishes it on the bus). */
  onRepaired: ((r: L2Repaired) => void) | undefined

  /** Unsynced Redis keys (see the header), each with the generation of its last failure and the cache key it is. */
  readonly #unsynced = new Map<string, Unsynced>()
  /**
   * What the next resync flush covers, to report to peers once it ran: the
   * lost pattern deletes, clears and tag invalidations (the same twice is one
   * entry), and a region's clear for keys dropped from {@link #unsynced} at its cap.
   */
  readonly #lostOps = new Map<string, { gen: number; op: LostOp }>()
  /** Bumped by every failure recorded, so a resync only forgets what failed before it started. */
  #gen = 0
  /** The generation at which tracking was lost (0: it was not): the whole prefix must go. */
  #lostAt = 0
  #resyncing = false
  #resyncTimer: NodeJS.Timeout | undefined
  #closed = false

  static #zero() {
    return { hits: 0, misses: 0, errors: 0, promotions: 0, corrupt: 0, skipped: 0, resynced: 0, resyncFlushes: 0, lostWrites: 0, repaired: 0 }
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
      ...LEAST_PRIVILEGE,
    }
    const r = opts.redis
    if (typeof r === 'string') this.#client = new Redis(r, withTls(own, undefined, opts.tls))
    // A Cluster's duplicate() takes its startup nodes first, then the cluster options.
    else if (isCluster(r)) this.#client = (r as Cluster).duplicate(undefined, { redisOptions: own, lazyConnect: true, enableOfflineQueue: false })
    // A Cluster's TLS is its redisOptions' (options.ts refuses options.l2.tls with one).
    else if (isClusterNodes(r)) {
      const o = (r.options ?? {}) as ClusterOptions
      this.#client = new Cluster(r.cluster as ClusterNode[], { ...o, lazyConnect: true, enableOfflineQueue: false, redisOptions: { ...o.redisOptions, ...own } })
    } else if (isRedisClient(r)) this.#client = (r as Redis).duplicate(withTls(own, (r as Redis).options?.tls, opts.tls))
    else this.#client = new Redis({ ...(r as RedisOptions), ...withTls(own, (r as RedisOptions).tls, opts.tls) })
    // Reported through the operations' outcomes and stats, not as process-level noise; kept
    // to say why in the message of an operation failing while the connection is down.
    const down = (err: Error): void => {
      this.#connError = moreTelling(this.#connError, err)
    }
    this.#client.on('error', down)
    // A Cluster reports its nodes' connection errors (refused, reset) as 'node error'.
    this.#client.on('node error', down)
    this.#client.on('ready', () => {
      this.#connError = undefined
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
      lastError = moreTelling(lastError, err)
      const typed = refusal(err, REFUSAL)
      if (typed !== undefined) onRefused?.(typed)
    }
    this.#client.on('error', watch)
    // A Cluster reports its nodes' errors (WRONGPASS, a certificate) as 'node error'.
    this.#client.on('node error', watch)
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
      throw new L2Error(cannotConnect(REFUSAL, whereOf(this.#client), cause), { cause })
    } finally {
      clearTimeout(timer)
      this.#client.off('error', watch)
      this.#client.off('node error', watch)
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
    if (this.#untrusted(k)) {
      this.#c.misses++
      return undefined
    }
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
    await this.#write([[k, region, key]], async (c) => {
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
    await this.#write([[k, region, key]], (c) => (ttlMs === Infinity ? c.persist(k) : c.pexpire(k, Math.max(1, Math.round(ttlMs * this.#opts.ttlScale)))))
  }

  async delete(region: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    const ks = keys.map((key): KeyRef => [this.key(region, key), region, key])
    await this.#write(ks, async (c) => {
      // One UNLINK per key: a cluster refuses multi-key commands across slots.
      await Promise.all(ks.map(([k]) => c.unlink(k)))
    })
  }

  /** Deletes the region's keys matching a glob (all of them when `glob` is undefined). */
  async deleteMatching(region: string, glob: string | undefined, matches: (key: string) => boolean): Promise<void> {
    const base = this.key(region, '')
    // Only * and ? mean the same to Redis and to us; a glob with classes or escapes is filtered by us alone.
    const pattern = escapeGlob(base) + (glob === undefined || /[[\\]/.test(glob) ? '*' : glob)
    // Which keys it would have deleted is not known: a failure loses track of the prefix.
    await this.#write({ id: `${region}\0${glob ?? ''}\0${glob === undefined}`, op: { region, glob } }, (c) =>
      unlinkMatching(c, pattern, (k) => k.startsWith(base) && matches(k.slice(base.length))),
    )
  }

  /** Deletes every key carrying `tag` (whatever the region) and the tag's set. */
  async invalidateTag(tag: string): Promise<void> {
    const t = this.#tagKey(tag)
    await this.#write({ id: `\0tag\0${tag}`, op: { tag } }, async (c) => {
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
      const bytes = this.#untrusted(k) ? undefined : await this.#call((c) => c.getBuffer(k))
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
      unsynced: this.#unsynced.size,
      unsyncedOverflow: this.#lostAt !== 0,
      pending: this.#pending(),
      repairPending: this.#unsynced.size + this.#lostOps.size,
    }
  }

  resetStats(): void {
    this.#c = L2Tier.#zero()
  }

  /** Whether L2's copy of `k` may be older than the shards' (see the header's Resync). */
  #untrusted(k: string): boolean {
    return this.#lostAt !== 0 || (this.#unsynced.size > 0 && this.#unsynced.has(k))
  }

  /**
   * A write to L2 of `what`: keys (the Redis key, its region and cache key),
   * or an operation whose keys are not known in advance (a pattern delete, a
   * clear, a tag invalidation). When it fails or is skipped, the keys are
   * unsynced, or, for an operation, tracking is lost (see the header).
   */
  async #write(what: readonly KeyRef[] | { id: string; op: LostOp }, fn: (c: Client) => Promise<unknown>): Promise<void> {
    let ok = false
    try {
      ok = (await this.#call(async (c) => {
        await fn(c)
        return true
      })) === true
    } finally {
      if (!ok) this.#unsync(what)
    }
  }

  #unsync(what: readonly KeyRef[] | { id: string; op: LostOp }): void {
    const g = ++this.#gen
    if (!Array.isArray(what)) {
      const lost = what as { id: string; op: LostOp }
      this.#c.lostWrites++
      // Which keys it touched is not known: the whole prefix goes on recovery.
      this.#lostAt = g
      this.#lostOps.delete(lost.id) // re-inserted: the newest failure's generation
      this.#lostOps.set(lost.id, { gen: g, op: lost.op })
    } else {
      const keys = what as readonly KeyRef[]
      this.#c.lostWrites += keys.length
      if (this.#unsynced.size + keys.length > MAX_UNSYNCED) {
        // Tracking is lost: the whole prefix goes on recovery, so the keys need not be kept;
        // peers are told to clear the regions they were in instead.
        for (const u of this.#unsynced.values()) this.#loseRegion(u.region, g)
        for (const [, region] of keys) this.#loseRegion(region, g)
        this.#lostAt = g
        this.#unsynced.clear()
      } else {
        for (const [k, region, key] of keys) {
          // Re-inserted: the Map's order is then oldest failure first, the resync's order.
          this.#unsynced.delete(k)
          this.#unsynced.set(k, { gen: g, region, key })
        }
      }
    }
    this.#scheduleResync()
  }

  #loseRegion(region: string, gen: number): void {
    const id = `${region}\0\0true` // the id of the region's clear (deleteMatching with no glob)
    this.#lostOps.delete(id)
    this.#lostOps.set(id, { gen, op: { region, glob: undefined } })
  }

  #scheduleResync(): void {
    if (this.#resyncTimer !== undefined || this.#closed) return
    this.#resyncTimer = setTimeout(() => {
      this.#resyncTimer = undefined
      void this.#resync()
    }, Math.max(RESYNC_RETRY_MS, this.#openUntil - Date.now()))
    this.#resyncTimer.unref()
  }

  /**
   * Deletes the unsynced keys from L2 (or, tracking lost, every key under the
   * prefix) while L2 answers, and reports to `onRepaired` what each round
   * repaired: the keys by region, and the lost operations a flush covered.
   */
  async #resync(): Promise<void> {
    if (this.#resyncing || this.#closed) return
    // Not through an open breaker (that call would only be skipped, and counted): after it.
    if (this.#openUntil > Date.now()) return this.#scheduleResync()
    this.#resyncing = true
    const done = (): true => true
    try {
      while (!this.#closed && (this.#lostAt !== 0 || this.#unsynced.size > 0)) {
        if (this.#lostAt !== 0) {
          const at = this.#lostAt
          const base = this.#opts.prefix
          if ((await this.#call((c) => unlinkMatching(c, `${escapeGlob(base)}*`, (k) => k.startsWith(base)).then(done))) !== true) break
          // Failures recorded meanwhile came after the flush started: they stay.
          if (this.#lostAt === at) this.#lostAt = 0
          const keys: Unsynced[] = []
          for (const [k, u] of this.#unsynced) {
            if (u.gen > at) continue
            this.#unsynced.delete(k)
            this.#c.resynced++
            keys.push(u)
          }
          const ops: LostOp[] = []
          for (const [id, lost] of this.#lostOps) {
            if (lost.gen > at) continue
            this.#lostOps.delete(id)
            ops.push(lost.op)
          }
          this.#c.resyncFlushes++
          this.#c.repaired += keys.length + ops.length
          this.#report(keys)
          for (const op of ops) this.onRepaired?.(op)
          continue
        }
        const batch: [string, Unsynced][] = []
        for (const e of this.#unsynced) {
          batch.push(e)
          if (batch.length === RESYNC_BATCH) break
        }
        if ((await this.#call((c) => Promise.all(batch.map(([k]) => c.unlink(k))).then(done))) !== true) break
        const keys: Unsynced[] = []
        for (const [k, u] of batch) {
          // A key that failed again meanwhile stays: that write may not have reached L2 yet.
          if (this.#unsynced.get(k) === u) {
            this.#unsynced.delete(k)
            this.#c.resynced++
            this.#c.repaired++
            keys.push(u)
          }
        }
        this.#report(keys)
      }
    } catch {
      // With `required`, #call throws where it would return undefined: tried again below.
    } finally {
      this.#resyncing = false
      if (this.#lostAt !== 0 || this.#unsynced.size > 0) this.#scheduleResync()
    }
  }

  /** Reports resynced keys to `onRepaired`, by region. */
  #report(keys: readonly Unsynced[]): void {
    if (keys.length === 0 || this.onRepaired === undefined) return
    const byRegion = new Map<string, string[]>()
    for (const u of keys) {
      const list = byRegion.get(u.region)
      if (list === undefined) byRegion.set(u.region, [u.key])
      else list.push(u.key)
    }
    for (const [region, list] of byRegion) this.onRepaired({ region, keys: list })
  }

  /** Closes the tier's own connection (a client passed in was duplicated, and stays open). */
  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#resyncTimer)
    const c = this.#client
    if (c.status === 'ready') await Promise.race([c.quit().catch(() => {}), new Promise((r) => setTimeout(r, 500).unref())])
    hangUp(c)
  }

  // ── internals ────────────────────────────────────────────────────────────

  /** ioredis's queue of commands written and awaiting a reply (every node's, for a Cluster); a command that timed out stays there until Redis answers or the connection closes. */
  #pending(): number {
    const c = this.#client
    const nodes = isCluster(c) ? (c as Cluster).nodes() : [c as Redis]
    let n = 0
    for (const node of nodes) n += node.commandQueue?.length ?? 0
    return n
  }

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
      if (this.#opts.required) throw new L2Error(this.#breakerOpenMessage())
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
      this.#lastFailure = err
      if (++this.#failures >= BREAKER_THRESHOLD) this.#openUntil = Date.now() + this.#opts.breakDurationMs
      if (this.#opts.required) throw new L2Error(`the L2 tier failed on ${whereOf(this.#client)} (options.l2.redis): ${this.#failure(err)}`, { cause: err })
      return undefined
    } finally {
      if (probe) this.#probing = false
    }
  }

  /**
   * An operation's failure in words: a reply timeout names the option; a
   * connection that is down says why, as its last error did (`not
   * connected: connection refused (ECONNREFUSED)`).
   */
  #failure(err: unknown): string {
    if (err instanceof Error && err.message === 'Command timed out') return `no reply within options.l2.timeout (${this.#opts.timeoutMs} ms)`
    const problem = connectionProblem(err)
    const why = this.#connError
    return isNotConnected(err) && why !== undefined ? `${problem}: ${connectionProblem(why)}` : problem
  }

  #breakerOpenMessage(): string {
    const last = this.#lastFailure === undefined ? '' : `; the last: ${this.#failure(this.#lastFailure)}`
    return (
      `the L2 tier is unavailable: its circuit breaker is open after ${plural(BREAKER_THRESHOLD, 'failure')} in a row on ${whereOf(this.#client)} ` +
      `(options.l2.redis)${last}; it tries again after options.l2.breakDuration (${this.#opts.breakDurationMs} ms)`
    )
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

/** SCANs every node for `pattern` and UNLINKs the keys `mine` accepts (SCAN's glob is only a prefilter). */
async function unlinkMatching(c: Client, pattern: string, mine: (key: string) => boolean): Promise<void> {
  for (const node of nodesOf(c)) {
    let cursor = '0'
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      const keys = found.filter(mine)
      for (let i = 0; i < keys.length; i += UNLINK_BATCH) await Promise.all(keys.slice(i, i + UNLINK_BATCH).map((k) => c.unlink(k)))
    } while (cursor !== '0')
  }
}

/** Escapes Redis glob specials in a literal (the prefix and region name). */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (ch) => `\\${ch}`)
}
