/**
 * The Redis L2 tier: a second, shared tier behind the shards. A get that
 * misses in the shards reads Redis and promotes what it finds; writes,
 * deletes, pattern deletes, clears and tag invalidations go to both tiers.
 * This file holds that read and write path; the stored form of a value is
 * ./l2_codec.ts's, the circuit breaker every call goes through
 * ./l2_breaker.ts's, and what is done about writes that may not have reached
 * Redis (unsynced keys, the resync) ./l2_repair.ts's.
 *
 * Tags: `SADD <prefix>tag:<tag> <redis key>` with each tagged write, so that
 * `invalidateTag` can remove the tagged keys from L2 too (else a later miss
 * in the shards would promote them back).
 */
import { Cluster, Redis } from 'ioredis'
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis'
import { CacheError, L2Error } from '../errors.js'
import { isClusterNodes, isRedisClient } from './redis_access.js'
import { LEAST_PRIVILEGE, cannotConnect, checkPermissionsApart, hangUp, moreTelling, refusal, whereOf, withTls } from './redis_access.js'
import type { Probe, RefusalContext } from './redis_access.js'
import type { EncodedValue } from '../wire/values.js'
import { decodeL2, encodeL2 } from './l2_codec.js'
import { L2Breaker } from './l2_breaker.js'
import { L2Repair, escapeGlob, isCluster, unlinkMatching } from './l2_repair.js'
import type { KeyRef } from './l2_repair.js'
import { resetL2Counters, zeroL2Counters } from './l2_types.js'
import type { L2Repaired, L2Stats, L2Value, ResolvedL2 } from './l2_types.js'

export { MAX_UNSYNCED } from './l2_repair.js'
export type { L2Repaired, L2Stats, L2Value, ResolvedL2 } from './l2_types.js'

/** How long createCache waits for a `required` L2 to connect. */
const CONNECT_TIMEOUT_MS = 5000
/** How often an instance waiting on another's lease looks for the value. */
const LOCK_POLL_MS = 20
/** Deletes the lease only if it still holds our token (UNLINK, as the tier deletes everything else: one command fewer in the ACL rules). */
const UNLOCK_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) else return 0 end`

type Client = Redis | Cluster

const REFUSAL: RefusalContext = { what: 'the L2 tier', option: 'options.l2' }

export class L2Tier {
  readonly #opts: ResolvedL2
  readonly #client: Client
  readonly #c = zeroL2Counters()
  readonly #breaker: L2Breaker
  /** Unsynced keys and lost operations, and their resync (see ./l2_repair.ts). */
  readonly #repair: L2Repair

  /** Told what each resync removed from L2 (the cache publishes it on the bus). */
  get onRepaired(): ((r: L2Repaired) => void) | undefined {
    return this.#repair.onRepaired
  }

  set onRepaired(fn: ((r: L2Repaired) => void) | undefined) {
    this.#repair.onRepaired = fn
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
    // A Cluster's TLS is its redisOptions' (src/options/l2.ts refuses options.l2.tls with one).
    else if (isClusterNodes(r)) {
      const o = (r.options ?? {}) as ClusterOptions
      this.#client = new Cluster(r.cluster as ClusterNode[], { ...o, lazyConnect: true, enableOfflineQueue: false, redisOptions: { ...o.redisOptions, ...own } })
    } else if (isRedisClient(r)) this.#client = (r as Redis).duplicate(withTls(own, (r as Redis).options?.tls, opts.tls))
    else this.#client = new Redis({ ...(r as RedisOptions), ...withTls(own, (r as RedisOptions).tls, opts.tls) })
    this.#breaker = new L2Breaker(this.#client, opts, this.#c)
    this.#repair = new L2Repair(opts.prefix, this.#breaker, this.#c)
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
    if (this.#repair.untrusted(k)) {
      this.#c.misses++
      return undefined
    }
    const res = await this.#breaker.call(async (c) => {
      if (!withTtl) return { bytes: await c.getBuffer(k), pttl: undefined }
      // Sent together (one round trip); the TTL may be a few ms younger than the value, never older.
      const [bytes, pttl] = await Promise.all([c.getBuffer(k), c.pttl(k)])
      return { bytes, pttl }
    })
    if (res === undefined || res.bytes === null) {
      this.#c.misses++
      return undefined
    }
    const enc = decodeL2(res.bytes)
    if (enc === undefined) {
      this.#c.corrupt++
      this.#c.misses++
      return undefined
    }
    this.#c.hits++
    return { enc, ttlMs: res.pttl === undefined ? undefined : res.pttl < 0 ? Infinity : res.pttl, tags: enc.tags }
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
    const bytes = encodeL2(enc, compressMinBytes, tags)
    const px = ttlMs === Infinity ? undefined : Math.max(1, Math.round(ttlMs * this.#opts.ttlScale))
    await this.#repair.write([[k, region, key]], async (c) => {
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
    await this.#repair.write([[k, region, key]], (c) => (ttlMs === Infinity ? c.persist(k) : c.pexpire(k, Math.max(1, Math.round(ttlMs * this.#opts.ttlScale)))))
  }

  async delete(region: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    const ks = keys.map((key): KeyRef => [this.key(region, key), region, key])
    await this.#repair.write(ks, async (c) => {
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
    await this.#repair.write({ id: `${region}\0${glob ?? ''}\0${glob === undefined}`, op: { region, glob } }, (c) =>
      unlinkMatching(c, pattern, (k) => k.startsWith(base) && matches(k.slice(base.length))),
    )
  }

  /** Deletes every key carrying `tag` (whatever the region) and the tag's set. */
  async invalidateTag(tag: string): Promise<void> {
    const t = this.#tagKey(tag)
    await this.#repair.write({ id: `\0tag\0${tag}`, op: { tag } }, async (c) => {
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
    const res = await this.#breaker.call((c) => c.set(this.#lockKey(region, key), token, 'PX', Math.max(1, Math.round(ms)), 'NX'))
    return res === undefined ? undefined : res === 'OK'
  }

  /** Releases a lease if it is still ours (it may have expired and been taken by another instance). */
  async unlock(region: string, key: string, token: string): Promise<void> {
    await this.#breaker.call((c) => c.eval(UNLOCK_LUA, 1, this.#lockKey(region, key), token))
  }

  /**
   * Polls L2 for `key` until it appears or `ms` pass (the value another
   * instance is loading); reads are not counted as misses meanwhile.
   */
  async waitFor(region: string, key: string, ms: number): Promise<L2Value | undefined> {
    const k = this.key(region, key)
    const deadline = Date.now() + ms
    for (;;) {
      const bytes = this.#repair.untrusted(k) ? undefined : await this.#breaker.call((c) => c.getBuffer(k))
      if (bytes !== undefined && bytes !== null) {
        const enc = decodeL2(bytes)
        if (enc !== undefined) {
          this.#c.hits++
          const pttl = (await this.#breaker.call((c) => c.pttl(k))) ?? -1
          return { enc, ttlMs: pttl < 0 ? Infinity : pttl, tags: enc.tags }
        }
      }
      if (Date.now() >= deadline) return undefined
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS))
    }
  }


  stats(): L2Stats {
    return {
      ...this.#c,
      breaker: this.#breaker.state,
      unsynced: this.#repair.unsynced,
      unsyncedOverflow: this.#repair.overflow,
      pending: this.#pending(),
      repairPending: this.#repair.pending,
    }
  }

  resetStats(): void {
    resetL2Counters(this.#c)
  }

  /** Closes the tier's own connection (a client passed in was duplicated, and stays open). */
  async close(): Promise<void> {
    this.#repair.close()
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
}
