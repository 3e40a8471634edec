/**
 * The facade users call: validates every argument on the calling thread (so a
 * rejected call never reaches a shard and changes nothing), encodes values,
 * and hands ops to the router. Async methods never throw synchronously: bad
 * input rejects the returned promise.
 */
import { CacheError, ClosedError, InternalError, ShardCrashedError, ShardStartError, InvalidKeyError, InvalidOptionError, InvalidValueError, LoadAbortedError, LoadTimeoutError, LoaderError, UnknownRegionError, ValueTooLargeError } from '../errors.js'
import { ENTRY_OVERHEAD_BYTES, ShardEvent, TAG_LINK_OVERHEAD_BYTES, ValueTag, tagChargeBytes } from '../wire/protocol.js'
import type { EntryInfo } from '../wire/protocol.js'
import { checkTag, parseTtl, regionShare, rejectUnknownKeys, resolveComputeOptions, resolveOptions, resolveSetOptions } from '../options/options.js'
import type { CacheOptions, ComputeOptions, ResolvedCompute, ResolvedOptions, ResolvedRegion, ResolvedSet, SetOptions, Ttl } from '../options/options.js'
import { checkKey, checkKeys, decodeValue, encodeValue, loneSurrogateAt, wellFormed } from '../wire/values.js'
import type { EncodedValue } from '../wire/values.js'
import { describe, plural } from '../messages.js'
import { ASK_SHARD, Router } from '../client/router.js'
import type { Sink } from '../client/ops/sender.js'
import { StaleValue, sendCas, sendDelete, sendGet, sendGetEntry, sendGetStale, sendHas, sendIncr, sendPeek, sendSet, sendTake, sendTouch, sendTtl } from '../client/ops/values.js'
import type { RawEntry } from '../client/ops/entry.js'
import { sendCleanup, sendClear, sendDeletePattern, sendInvalidateTag, sendKeys, sendScan } from '../client/ops/scan.js'
import type { ScanPage } from '../client/ops/scan.js'
import { sendExport } from '../client/ops/export.js'
import type { ExportPage } from '../client/ops/export.js'
import { aggregateStats } from '../ops/stats.js'
import { emptyRegionStats } from '../wire/region_types.js'
import type { CacheStats } from '../ops/stats.js'
import { ShardThread } from '../client/shard_thread.js'
import { workerExecArgv } from '../client/worker_argv.js'
import { AttachedLink, Broker, BrokerClient, BusRelay, FlightRelay, checkHandle } from '../client/attach.js'
import { FlightCoordinator, flightKey } from '../client/flights.js'
import type { FlightOutcome, Flights } from '../client/flights.js'
import { EventEmitter } from 'node:events'
import { BusOpType } from '../redis/bus_message.js'
import type { BusEntry, BusOp } from '../redis/bus_message.js'
import type { Bus, BusHost, BusPublisher, BusStats, FlushEvent, FlushReason, InvalidationEvent } from '../redis/bus.js'
import type { L2Repaired, L2Tier, L2Value } from '../redis/l2.js'
import { randomUUID } from 'node:crypto'
import { Glob } from '../wire/glob.js'
import { Batch } from './batch.js'
import { formatPrometheus, metricFamilies } from '../ops/metrics.js'
import { SnapshotCorruptError, SnapshotWriter, fileSink, readSnapshot } from '../ops/snapshot.js'
import type { SnapshotProgress } from '../ops/snapshot.js'
import type { ShardMemory } from '../wire/region_types.js'
import { decompress } from '../wire/compression.js'
import type { Writable } from 'node:stream'
import type { AttachOptions, CacheHandle } from '../client/attach.js'

/** What {@link CacheRegion.getEntry} returns. */
export interface CacheEntry<T = unknown> extends EntryInfo {
  value: T
  /** The `metadata` given to `set`, if any. */
  metadata: Record<string, unknown> | undefined
}

/** What `getOrCompute` calls on a miss: its result (or what its promise resolves to) is cached and returned. */
export type Loader<T> = () => T | Promise<T>

/** A loader run in the loader pool (`createCache({ loaders: { pool } })`): the module's export `task`, called with `args`. */
export interface PoolTask {
  task: string
  /** Structured-cloneable arguments. @default [] */
  args?: unknown[]
}

/** Options of `scan` and `scanEntries`. */
export interface ScanOptions {
  /** Only keys matching this glob. */
  match?: string
  /** Keys asked of a shard at a time. @default 100 */
  count?: number
  /** On the cache: the region to scan. @default 'default' */
  region?: string
}

/** The entry events of `cache.on` (owner only), reported by the shards while someone listens. */
export type EntryEventName = 'set' | 'delete' | 'evict' | 'expire' | 'clear' | 'hit' | 'miss'

/** What an entry event's listener receives; `clear` has no key. */
export interface EntryEvent {
  type: EntryEventName
  region: string
  key?: string
  /** For `evict` and `expire`: why the cache removed the entry. */
  cause?: 'size' | 'expired'
}

type CacheEventName = 'invalidation' | 'flush' | EntryEventName
const EVENT_NAMES = ['invalidation', 'flush', 'set', 'delete', 'evict', 'expire', 'clear', 'hit', 'miss'] as const
const ENTRY_EVENT_BITS: Record<EntryEventName, number> = {
  set: ShardEvent.SET,
  delete: ShardEvent.DELETE,
  evict: ShardEvent.EVICT,
  expire: ShardEvent.EXPIRE,
  clear: ShardEvent.CLEAR,
  hit: ShardEvent.HIT,
  miss: ShardEvent.MISS,
}
const EVENT_OF_BIT = new Map<number, EntryEventName>(Object.entries(ENTRY_EVENT_BITS).map(([n, b]) => [b, n as EntryEventName]))

/** Entries for {@link CacheRegion.mset}: `[key, value]` pairs, a `Map`, or a plain object. */
export type MsetEntries = Iterable<readonly [string, unknown]> | Record<string, unknown>

/** Promise plumbing for one op. */
class Deferred<T> implements Sink {
  readonly promise: Promise<T>
  #resolve!: (v: T) => void
  #reject!: (e: Error) => void
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
  }
  resolve(_index: number, result: unknown): void {
    this.#resolve(result as T)
  }
  reject(_index: number, error: Error): void {
    this.#reject(error)
  }
}

/** Promise plumbing for an op spread over many keys or shards: settles when all parts did; the first error rejects it. */
class Collector<T> implements Sink {
  readonly promise: Promise<T>
  readonly results: unknown[]
  #remaining: number
  #finish: (results: unknown[]) => T
  #resolve!: (v: T) => void
  #reject!: (e: Error) => void
  #settled = false
  constructor(parts: number, finish: (results: unknown[]) => T) {
    this.results = new Array(parts)
    this.#remaining = parts
    this.#finish = finish
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    if (parts === 0) this.#settle()
  }
  resolve(index: number, result: unknown): void {
    this.results[index] = result
    if (--this.#remaining === 0) this.#settle()
  }
  reject(_index: number, error: Error): void {
    if (this.#settled) return
    this.#settled = true
    this.#reject(error)
  }
  #settle(): void {
    if (this.#settled) return
    this.#settled = true
    try {
      this.#resolve(this.#finish(this.results))
    } catch (err) {
      this.#reject(err as Error)
    }
  }
}

/** A sink for writes whose outcome nobody waits for (L2 promotions). */
const IGNORE: Sink = { resolve: () => {}, reject: () => {} }

const countTrue = (rs: unknown[]): number => rs.reduce<number>((n, r) => (r === true ? n + 1 : n), 0)
const addNumbers = (rs: unknown[]): number => rs.reduce<number>((n, r) => n + (r as number), 0)

/** What differs between the owner's cache and an attached thread's. */
interface Admin {
  stats(): Promise<CacheStats>
  resetStats(): Promise<void>
  close(): Promise<void>
  /** Owner only. */
  broker: Broker | undefined
  /** Owner only, with a bus. */
  busStats?: () => BusStats
  /** Owner only: its shard threads (for event masks). */
  threads?: () => ShardThread[]
}

/** State shared by a cache and its region handles. */
interface Core {
  router: Router
  options: ResolvedOptions
  closed: boolean
  admin: Admin
  /** Publishes local writes to peers; undefined without a bus. */
  bus: BusPublisher | undefined
  /** Where applied remote ops and bus flushes are announced (owner only). */
  events: EventEmitter
  /** getOrCompute across threads: the owner's coordinator, or a relay to it. */
  flights: Flights
  /** getOrCompute on this thread: one promise per key being loaded (by flightKey). */
  loading: Map<string, Promise<unknown>>
  /** Runs a pool task; undefined without `loaders.pool` (or on attached threads). */
  runTask: ((t: PoolTask) => Promise<unknown>) | undefined
  /** The Redis L2 tier (owner only). */
  l2: L2Tier | undefined
}

/**
 * Announces a bus event. A listener that throws must not break the bus (the
 * event comes from a Redis message handler): its error is rethrown on a later
 * tick, where it surfaces as an uncaught exception, as an EventEmitter
 * listener's error would.
 */
function emit(events: EventEmitter, name: string, payload: unknown): void {
  try {
    events.emit(name, payload)
  } catch (err) {
    setImmediate(() => {
      throw err
    })
  }
}

/** Entries per EXPORT page (and per batch of restored sets). */
const SNAPSHOT_PAGE = 1000

/** The lease of lockAcrossInstances when getOrCompute has no timeout. */
const DEFAULT_LEASE_MS = 10_000

/** Calls a loader: a function here, or a task in the loader pool. */
function runLoader<T>(loader: Loader<T> | PoolTask, runTask: ((t: PoolTask) => Promise<unknown>) | undefined): Promise<T> {
  if (typeof loader === 'function') {
    try {
      return Promise.resolve(loader())
    } catch (err) {
      return Promise.reject(err)
    }
  }
  return runTask!(loader) as Promise<T>
}

/** The loader's promise, or E_LOAD_TIMEOUT after `ms`. The timer keeps the process alive, as any operation a caller awaits does. */
function withTimeout<T>(p: Promise<T>, ms: number, key: string): Promise<T> {
  if (ms === Infinity) return p
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new LoadTimeoutError(`the loader of ${JSON.stringify(key)} did not settle within options.timeout (${ms} ms)`)), ms)
    p.then(
      (v) => {
        clearTimeout(timer)
        resolve(v)
      },
      (e) => {
        clearTimeout(timer)
        reject(e)
      },
    )
  })
}

function rejected<T>(err: unknown): Promise<T> {
  return Promise.reject(err instanceof Error ? err : new InternalError(String(err)))
}

/**
 * The data operations, bound to one region. `cache.region(name)` returns one;
 * the {@link Cache} itself is the one bound to the `default` region.
 */
export class CacheRegion {
  /** @internal */ protected readonly core: Core
  readonly #region: ResolvedRegion
  /** Smallest per-shard byte budget of the region: an entry larger than this can never be stored. */
  readonly #shareBytes: number

  /** @internal */
  constructor(core: Core, region: ResolvedRegion) {
    this.core = core
    this.#region = region
    this.#shareBytes = Math.floor(region.maxBytes / core.router.shardCount)
  }

  /** Name of the region this handle operates on. */
  get regionName(): string {
    return this.#region.name
  }

  /** The value stored under `key`, or `undefined` when there is none (or it expired). */
  get<T = unknown>(key: string): Promise<T | undefined> {
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
      if (this.core.l2 === undefined) return this.#getL1<T>(key)
      // Before the shard read: a write issued after this get must keep an L2 fill out.
      const mark = this.core.router.fillMark(this.#region.index, key)
      return this.#getL1<T>(key).then((v) => (v !== undefined ? v : this.#fromL2<T>(key, undefined, mark)))
    } catch (err) {
      return rejected(err)
    }
  }

  /**
   * An L1 miss read from L2, promoted into the shard (1 in promotion.frequency)
   * with L2's remaining TTL. The promotion is not awaited: the value is
   * returned at once, and this thread's later reads of the key are ordered
   * after the write (the router holds direct reads back while it is pending).
   * `mark` is the key's {@link Router.fillMark} from before the shard was
   * asked, `startedAt` when L2 was: the promotion is skipped when a write may
   * be newer than what L2 answered (see {@link Router.mayFill}).
   */
  async #fromL2<T>(key: string, found?: L2Value, mark = this.core.router.fillMark(this.#region.index, key), startedAt = performance.now()): Promise<T | undefined> {
    const l2 = this.core.l2!
    const promote = l2.shouldPromote()
    // The remaining TTL is only needed to promote: without it, one command instead of two.
    const hit = found ?? (await l2.get(this.#region.name, key, promote))
    if (hit === undefined) return undefined
    const value = decodeValue(hit.enc.tag, Buffer.from(hit.enc.bytes.buffer, hit.enc.bytes.byteOffset, hit.enc.bytes.byteLength), this.core.options.codec) as T
    if (promote && hit.ttlMs !== undefined) {
      const opts: ResolvedSet = { ttl: hit.ttlMs, nx: false, xx: false, metadata: undefined, tags: undefined }
      let fits = true
      try {
        this.#checkSize(key, hit.enc, opts)
      } catch {
        fits = false // too large for this region's share: served, not kept
      }
      // A fill, not a write: not published (peers did not lose anything), not written back to L2.
      // Not stored when a write here, or a peer's invalidation, may be newer than what L2 said.
      if (fits && this.core.router.mayFill(this.#region.index, key, mark, startedAt, l2.fillWindowMs)) {
        l2.promoted()
        sendSet(this.core.router, this.#region.index, key, hit.enc, opts, IGNORE, 0)
      }
    }
    return value
  }

  /** The shards' answer alone (no L2): get's first step, and getOrCompute's re-check after L2 was read already. */
  #getL1<T>(key: string): Promise<T | undefined> {
    const router = this.core.router
    const value = router.readValue(this.#region.index, key)
    if (value !== ASK_SHARD) return Promise.resolve(value as T)
    const d = new Deferred<T | undefined>()
    sendGet(router, this.#region.index, key, router.shardOf(key), d, 0)
    return d.promise
  }

  /** The L2 side of a set (after the shard stored it): with the entry's TTL x ttlScale, and its tags. */
  #toL2(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<void> {
    const r = this.#region
    return this.core.l2!.set(r.name, key, enc, opts.ttl ?? r.defaultTtl, r.compressMinBytes, opts.tags)
  }

  /**
   * The value of `key` if this thread can read it without waiting: from the
   * near cache, or straight from the shard's shared memory. `undefined` when
   * the key is absent, expired, or only its shard can answer now (a value
   * stored compressed that no get of this thread has brought into its near
   * cache yet, a write of this thread still pending). Counts a hit
   * when it returns a value, and nothing otherwise. Throws on a bad key or a
   * closed cache.
   */
  getSync<T = unknown>(key: string): T | undefined {
    const { router, options } = this.core
    if (this.core.closed || router.closed) throw new ClosedError()
    // The common key needs no UTF-8 count (see checkKey): tested inline, as this is the near-hit path.
    if (typeof key !== 'string' || key.length === 0 || key.length * 3 > options.maxKeyBytes || !wellFormed(key)) checkKey(key, options.maxKeyBytes)
    const value = router.readValue(this.#region.index, key)
    return value === ASK_SHARD ? undefined : (value as T)
  }

  /**
   * The value of `key`; on a miss, the loader's result, cached with
   * `options.ttl`. However many callers miss the same key at once, on this
   * thread and on every thread attached to the cache, the loader runs once
   * and every caller gets its value (the same object on the loader's
   * thread, a decoded copy elsewhere) or its rejection. A rejection is not
   * cached: the next call runs the loader again.
   *
   * `loader` is a function, or `{ task, args }` to run the export `task` of
   * the loader pool's module in a pool thread (`createCache({ loaders })`).
   *
   * Rejects with the loader's error (`E_LOADER` with its message on other
   * threads), `E_LOAD_TIMEOUT` past `options.timeout`, `E_LOAD_ABORTED` when
   * the thread running the loader went away, `E_INVALID_VALUE` when the loader
   * returned something that cannot be cached (`undefined`: return `null` to
   * cache a negative result), and the errors of `get` and `set`.
   *
   * @example
   * ```ts
   * const user = await cache.getOrCompute(`user:${id}`, () => db.users.find(id), { ttl: '10m', timeout: '2s' })
   * ```
   */
  getOrCompute<T = unknown>(key: string, loader: Loader<T> | PoolTask, options?: ComputeOptions): Promise<T> {
    let opts: ResolvedCompute
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
      opts = resolveComputeOptions(options, this.core.options.maxKeyBytes)
      if (opts.lock && this.core.l2 === undefined && (this.core.bus?.lock === undefined || this.core.bus.mode !== 'update')) {
        throw new InvalidOptionError(
          'options.lockAcrossInstances needs an L2 tier (createCache({ l2 })) or a bus in update mode, where the instances that wait get the value from; ' +
            'on an attached thread, the owner\'s L2 tier',
        )
      }
      this.#checkLoader(loader)
    } catch (err) {
      return rejected(err)
    }
    const fk = flightKey(this.#region.index, key)
    const router = this.core.router
    const value = router.readValue(this.#region.index, key)
    if (value !== ASK_SHARD) return Promise.resolve(value as T)
    const running = this.core.loading.get(fk)
    if (running !== undefined) return running as Promise<T>
    const mark = router.fillMark(this.#region.index, key)
    const d = new Deferred<unknown>()
    sendGetStale(router, this.#region.index, key, router.shardOf(key), d, 0)
    return d.promise.then((hit) => {
      if (hit instanceof StaleValue) {
        // Served at once; one refresh runs behind it. Its failure keeps the stale value until grace ends.
        if (!this.core.loading.has(fk)) this.#load<T>(fk, key, loader, opts).catch(() => {})
        return hit.value as T
      }
      if (hit !== undefined) return hit as T
      if (this.core.l2 === undefined) return this.#load<T>(fk, key, loader, opts)
      return this.#fromL2<T>(key, undefined, mark).then((v) => (v !== undefined ? v : this.#load<T>(fk, key, loader, opts)))
    })
  }

  #checkLoader(loader: unknown): void {
    if (typeof loader === 'function') return
    if (loader !== null && typeof loader === 'object' && typeof (loader as PoolTask).task === 'string') {
      const args = (loader as PoolTask).args
      if (args !== undefined && !Array.isArray(args)) throw new InvalidOptionError(`loader.args must be an array (got ${describe(args)})`)
      if (this.core.runTask === undefined) {
        throw new InvalidOptionError('loader { task } needs a loader pool: createCache({ loaders: { pool: { filename } } }) (pool tasks run from the cache createCache returned)')
      }
      return
    }
    throw new InvalidOptionError(`loader must be a function or { task, args } for the loader pool (got ${describe(loader)})`)
  }

  /** One flight of `key`: this thread's callers share it; across threads, the coordinator picks who runs the loader. */
  #load<T>(fk: string, key: string, loader: Loader<T> | PoolTask, opts: ResolvedCompute): Promise<T> {
    const loading = this.core.loading
    const again = loading.get(fk)
    if (again !== undefined) return again as Promise<T>
    const flight = this.#fly<T>(fk, key, loader, opts).finally(() => loading.delete(fk))
    loading.set(fk, flight)
    return flight
  }

  async #fly<T>(fk: string, key: string, loader: Loader<T> | PoolTask, opts: ResolvedCompute): Promise<T> {
    const flights = this.core.flights
    const turn = await flights.begin(fk)
    if (turn !== 'lead') return this.#outcome<T>(turn)
    let outcome: FlightOutcome | undefined
    /** Our lockAcrossInstances lease on the key, when we took one, and how to release it. */
    let lease: string | undefined
    let unlock: (() => Promise<void>) | undefined
    try {
      // A flight may have ended between our miss and our turn: its value is in the shards.
      // Peeked, not read: the caller's read was counted (a hit, miss or stale serve) already.
      const hit = await this.#peek<T>(key)
      if (hit !== undefined) {
        const enc = encodeValue(hit, this.core.options.codec)
        outcome = { ok: true, tag: enc.tag, bytes: enc.bytes }
        return hit
      }
      if (opts.lock) {
        const ms = Number.isFinite(opts.timeoutMs) ? opts.timeoutMs : DEFAULT_LEASE_MS
        const token = randomUUID()
        const l2 = this.core.l2
        const bus = this.core.bus!
        const name = `${this.#region.name}:${key}`
        const got = l2 !== undefined ? await l2.lock(this.#region.name, key, token, ms) : await bus.lock!(name, token, ms)
        if (got === true) {
          lease = token
          unlock = l2 !== undefined ? () => l2.unlock(this.#region.name, key, token) : () => bus.unlock!(name, token)
        } else if (got === false) {
          // Another instance is loading it: its value arrives in L2, or by the bus into our
          // shards (update mode), or the lease runs out and we load it ourselves.
          if (l2 !== undefined) {
            const mark = this.core.router.fillMark(this.#region.index, key)
            const startedAt = performance.now()
            const found = await l2.waitFor(this.#region.name, key, ms)
            if (found !== undefined) {
              const v = (await this.#fromL2<T>(key, found, mark, startedAt))!
              outcome = { ok: true, tag: found.enc.tag, bytes: Uint8Array.prototype.slice.call(found.enc.bytes) }
              return v
            }
          } else {
            const v = await this.#waitForUpdate<T>(key, ms)
            if (v !== undefined) {
              const enc = encodeValue(v, this.core.options.codec)
              outcome = { ok: true, tag: enc.tag, bytes: enc.bytes }
              return v
            }
          }
        }
      }
      const value = await withTimeout(runLoader(loader, this.core.runTask), opts.timeoutMs, key)
      if (value === undefined) {
        throw new InvalidValueError(`the loader of ${JSON.stringify(key)} returned undefined, which cannot be cached: return null to cache "not found"`)
      }
      const enc = encodeValue(value, this.core.options.codec)
      const set: ResolvedSet = { ttl: opts.ttl, nx: false, xx: false, metadata: undefined, tags: opts.tags, grace: opts.graceMs }
      this.#open()
      this.#checkSize(key, enc, set)
      await this.#store(key, enc, set, true)
      outcome = { ok: true, tag: enc.tag, bytes: Uint8Array.prototype.slice.call(enc.bytes) }
      return value
    } catch (err) {
      const e = err as Error & { code?: string }
      outcome = { ok: false, error: { code: e?.code, message: e?.message ?? String(err), name: e?.name ?? 'Error' } }
      throw err
    } finally {
      flights.end(fk, outcome!)
      // After the value is in L2, where the waiting instances look for it (or after a failure).
      if (lease !== undefined) void unlock!().catch(() => {})
    }
  }

  /** Polls this instance's shards for a value another instance loads and sends by the bus (update mode). */
  async #waitForUpdate<T>(key: string, ms: number): Promise<T | undefined> {
    const deadline = Date.now() + ms
    for (;;) {
      // Peeks: each poll is not a read of the caller's (its miss was counted once).
      const v = await this.#peek<T>(key)
      if (v !== undefined || Date.now() >= deadline) return v
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** A flight led by another thread: its value, decoded here, or its error. */
  #outcome<T>(o: FlightOutcome): T {
    if (o.ok) return decodeValue(o.tag, Buffer.from(o.bytes.buffer, o.bytes.byteOffset, o.bytes.byteLength), this.core.options.codec) as T
    const { code, message, name } = o.error
    if (code === 'E_LOAD_TIMEOUT') throw new LoadTimeoutError(message)
    if (code === 'E_LOAD_ABORTED') throw new LoadAbortedError(message)
    if (code === 'E_CLOSED') throw new ClosedError(message)
    if (code !== undefined && code.startsWith('E_') && code !== 'E_LOADER') throw new CacheError(code as never, message)
    throw new LoaderError(message, name)
  }

  /**
   * Stores `value` under `key`. Resolves `true` when stored, `false` when `nx`
   * or `xx` refused it. Strings, Buffers and Uint8Arrays come back as the same
   * type; other values go through the codec (JSON by default).
   */
  set(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    let enc: EncodedValue
    let opts: ResolvedSet
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
      opts = resolveSetOptions(options, this.core.options.maxKeyBytes)
      enc = encodeValue(value, this.core.options.codec)
      this.#checkSize(key, enc, opts)
    } catch (err) {
      return rejected(err)
    }
    return this.#store(key, enc, opts)
  }

  /** A validated set: to the key's shard, and to peers through the bus. */
  #store(key: string, enc: EncodedValue, opts: ResolvedSet, fill = false): Promise<boolean> {
    const d = new Deferred<boolean>()
    sendSet(this.core.router, this.#region.index, key, enc, opts, d, 0)
    if (this.core.bus !== undefined) this.#publishSets([[key, enc]], opts, fill)
    if (this.core.l2 === undefined) return d.promise
    // L2 gets what the shard stored (an nx/xx set it refused is not written there either).
    return d.promise.then((stored) => (stored ? this.#toL2(key, enc, opts).then(() => stored) : stored))
  }

  /**
   * Adds `by` (default 1) to the number stored under `key`, in its shard (no
   * other write can come between the read and the write), and resolves the
   * sum. An absent key counts as 0 and is created with the region's TTL; an
   * existing entry keeps its TTL, metadata and tags. Rejects with
   * `E_NOT_A_NUMBER` (changing nothing) when the value is not a number stored
   * by the JSON codec or a numeric string.
   */
  incr(key: string, by = 1): Promise<number> {
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
      if (typeof by !== 'number' || !Number.isFinite(by)) throw new InvalidOptionError(`by must be a finite number (got ${describe(by)})`)
    } catch (err) {
      return rejected(err)
    }
    const d = new Deferred<number>()
    sendIncr(this.core.router, this.#region.index, key, by, d, 0)
    return this.#invalidated(key, d)
  }

  /**
   * Stores `next` only if the current value is `expected` (compared by their
   * encoded bytes and type; `expected` `undefined`: only if the key is
   * absent), in the key's shard. Resolves whether it swapped. `options` are
   * those of `set` but `nx`/`xx`.
   */
  cas(key: string, expected: unknown, next: unknown, options?: SetOptions): Promise<boolean> {
    let want: EncodedValue | undefined
    let enc: EncodedValue
    let opts: ResolvedSet
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
      opts = resolveSetOptions(options, this.core.options.maxKeyBytes)
      if (opts.nx || opts.xx) throw new InvalidOptionError('options.nx and options.xx do not apply to cas (expected undefined means "only if absent")')
      want = expected === undefined ? undefined : encodeValue(expected, this.core.options.codec)
      enc = encodeValue(next, this.core.options.codec)
      this.#checkSize(key, enc, opts)
    } catch (err) {
      return rejected(err)
    }
    const d = new Deferred<boolean>()
    sendCas(this.core.router, this.#region.index, key, want, enc, opts, d, 0)
    return this.#invalidated(key, d)
  }

  /** The value of `key` and its removal, in one step in its shard: of two concurrent takes, one gets the value. */
  take<T = unknown>(key: string): Promise<T | undefined> {
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const d = new Deferred<T | undefined>()
    sendTake(this.core.router, this.#region.index, key, d, 0)
    return this.#invalidated(key, d)
  }

  /**
   * Gives `key`'s live entry a new TTL without changing its value (and ends
   * a getOrCompute grace period); resolves false when there is none. Not a
   * read. Peers on the bus keep their copies' TTLs; L2's TTL is updated.
   */
  touch(key: string, ttl: Ttl): Promise<boolean> {
    let ms: number
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
      ms = parseTtl(ttl, 'ttl')
    } catch (err) {
      return rejected(err)
    }
    const d = new Deferred<boolean>()
    sendTouch(this.core.router, this.#region.index, key, ms, d, 0)
    const l2 = this.core.l2
    return l2 === undefined ? d.promise : Promise.all([d.promise, l2.touch(this.#region.name, key, ms)]).then(([done]) => done)
  }

  /**
   * After a read-modify-write op on `key` was sent to its shard (ordered with
   * this thread's other ops on the key): an invalidation for peers and L2,
   * whose copies the shard cannot update.
   */
  #invalidated<T>(key: string, d: Deferred<T>): Promise<T> {
    this.core.bus?.publish({ type: BusOpType.DELETE, region: this.#region.name, keys: [key] })
    const l2 = this.core.l2
    return l2 === undefined ? d.promise : Promise.all([d.promise, l2.delete(this.#region.name, [key])]).then(([r]) => r)
  }

  /**
   * A builder of operations sent together: `cache.batch().set(k, v).delete(k2).incr(k3).exec()`
   * resolves `[error, result]` per operation, in order (see {@link Batch}).
   */
  batch(): Batch {
    return new Batch(this)
  }

  /** Removes `key`. Resolves `true` when a live entry was removed. */
  delete(key: string): Promise<boolean> {
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const d = new Deferred<boolean>()
    sendDelete(this.core.router, this.#region.index, key, d, 0)
    this.core.bus?.publish({ type: BusOpType.DELETE, region: this.#region.name, keys: [key] })
    const l2 = this.core.l2
    return l2 === undefined ? d.promise : Promise.all([d.promise, l2.delete(this.#region.name, [key])]).then(([removed]) => removed)
  }

  /** Whether `key` has a live entry. Does not count as a read and does not refresh LRU order. */
  has(key: string): Promise<boolean> {
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const router = this.core.router
    const shard = router.shardOf(key)
    if (router.readHas(shard, this.#region.index, key) === true) return Promise.resolve(true)
    const d = new Deferred<boolean>()
    sendHas(router, this.#region.index, key, shard, d, 0)
    return d.promise
  }

  /** Remaining lifetime of `key` in ms (rounded up), `Infinity` when it never expires, `undefined` when absent. */
  ttl(key: string): Promise<number | undefined> {
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const router = this.core.router
    const shard = router.shardOf(key)
    const ttl = router.readTtl(shard, this.#region.index, key)
    if (ttl !== ASK_SHARD) return Promise.resolve(ttl)
    const d = new Deferred<number | undefined>()
    sendTtl(router, this.#region.index, key, shard, d, 0)
    return d.promise
  }

  /** The value with its timestamps, sizes and metadata, or `undefined`. Counts as a read. */
  getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    try {
      this.#open()
      checkKey(key, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const router = this.core.router
    const d = new Deferred<RawEntry | undefined>()
    sendGetEntry(router, this.#region.index, key, router.shardOf(key), d, 0)
    return d.promise.then((e) =>
      e === undefined
        ? undefined
        : {
            ...e,
            value: e.value as T,
            metadata: e.metadata === undefined ? undefined : (JSON.parse(e.metadata.toString('utf8')) as Record<string, unknown>),
          },
    )
  }

  /** Values of `keys`, in key order; `undefined` where a key has no entry. */
  mget<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    try {
      this.#open()
      checkKeys(keys, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const c = new Collector<(T | undefined)[]>(keys.length, (rs) => rs as (T | undefined)[])
    const router = this.core.router
    const region = this.#region.index
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      let value: unknown
      try {
        value = router.readValue(region, key)
      } catch (err) {
        c.reject(i, err as Error)
        return c.promise
      }
      if (value === ASK_SHARD) sendGet(router, region, key, router.shardOf(key), c, i)
      else c.resolve(i, value)
    }
    if (this.core.l2 === undefined) return c.promise
    const marks = keys.map((k) => router.fillMark(region, k))
    return c.promise.then((values) => Promise.all(values.map((v, i) => (v !== undefined ? v : this.#fromL2<T>(keys[i]!, undefined, marks[i])))))
  }

  /**
   * Stores many entries with the same options; resolves how many were stored
   * (`nx`/`xx` may refuse some). Every key and value is validated first: if
   * one is bad, the call rejects and nothing is stored.
   */
  mset(entries: MsetEntries, options?: SetOptions): Promise<number> {
    const list: [string, EncodedValue][] = []
    let opts: ResolvedSet
    try {
      this.#open()
      opts = resolveSetOptions(options, this.core.options.maxKeyBytes)
      const pairs = toPairs(entries)
      for (let i = 0; i < pairs.length; i++) {
        const pair = pairs[i]
        if (!Array.isArray(pair) || pair.length !== 2) {
          throw new InvalidOptionError(`entries[${i}] must be a [key, value] pair (got ${describe(pair)})`)
        }
        const [key, value] = pair as [string, unknown]
        try {
          checkKey(key, this.core.options.maxKeyBytes)
          const enc = encodeValue(value, this.core.options.codec)
          this.#checkSize(key, enc, opts)
          list.push([key, enc])
        } catch (err) {
          ;(err as Error).message = `entries[${i}]: ${(err as Error).message}`
          throw err
        }
      }
    } catch (err) {
      return rejected(err)
    }
    const c = new Collector<number>(list.length, countTrue)
    for (let i = 0; i < list.length; i++) sendSet(this.core.router, this.#region.index, list[i]![0], list[i]![1], opts, c, i)
    if (this.core.bus !== undefined && list.length > 0) this.#publishSets(list, opts)
    if (this.core.l2 === undefined) return c.promise
    return c.promise.then(async (n) => {
      await Promise.all(list.filter((_, i) => c.results[i] === true).map(([key, enc]) => this.#toL2(key, enc, opts)))
      return n
    })
  }

  /** Removes `keys`; resolves how many live entries were removed. */
  mdelete(keys: readonly string[]): Promise<number> {
    try {
      this.#open()
      checkKeys(keys, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const c = new Collector<number>(keys.length, countTrue)
    for (let i = 0; i < keys.length; i++) sendDelete(this.core.router, this.#region.index, keys[i]!, c, i)
    if (keys.length > 0) this.core.bus?.publish({ type: BusOpType.DELETE, region: this.#region.name, keys: [...keys] })
    const l2 = this.core.l2
    return l2 === undefined ? c.promise : Promise.all([c.promise, l2.delete(this.#region.name, keys)]).then(([n]) => n)
  }

  /** For each key, whether it has a live entry, in key order. */
  mhas(keys: readonly string[]): Promise<boolean[]> {
    try {
      this.#open()
      checkKeys(keys, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const c = new Collector<boolean[]>(keys.length, (rs) => rs as boolean[])
    const router = this.core.router
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      const shard = router.shardOf(key)
      if (router.readHas(shard, this.#region.index, key) === true) c.resolve(i, true)
      else sendHas(router, this.#region.index, key, shard, c, i)
    }
    return c.promise
  }

  /**
   * Live keys of the region, optionally only those matching a glob (`*`, `?`,
   * `[abc]`, `[a-z]`, `[!a]`, `\` escapes). In no particular order. Builds the
   * whole list: for large regions prefer a pattern.
   */
  keys(glob?: string): Promise<string[]> {
    try {
      this.#open()
      if (glob !== undefined) this.#checkGlob(glob)
    } catch (err) {
      return rejected(err)
    }
    const c = new Collector<string[]>(this.core.router.shardCount, (rs) => (rs as string[][]).flat())
    sendKeys(this.core.router, this.#region.index, glob, c)
    return c.promise
  }

  /**
   * The region's live keys (matching `match`, a glob), `count` at a time
   * from each shard in turn, never the whole keyspace at once. Safe under
   * concurrent writes: every key present for the whole scan is returned
   * exactly once; keys added or removed during it may or may not be. Bad
   * input throws when iteration starts.
   *
   * @example
   * ```ts
   * for await (const key of cache.scan({ match: 'session:*', count: 500 })) { ... }
   * ```
   */
  async *scan(options: ScanOptions = {}): AsyncGenerator<string, void> {
    const { match, count } = this.#scanOptions(options)
    const router = this.core.router
    for (let s = 0; s < router.shardCount; s++) {
      for (let cursor = 0; cursor !== -1; ) {
        this.#open()
        const d = new Deferred<ScanPage>()
        sendScan(router, s, this.#region.index, cursor, count, match, d, 0)
        const page = await d.promise
        cursor = page.next
        yield* page.keys
      }
    }
  }

  /** Like {@link scan}, with each key's value (`[key, value]`); a key removed between the two reads is skipped. */
  async *scanEntries<T = unknown>(options: ScanOptions = {}): AsyncGenerator<[string, T], void> {
    const { count } = this.#scanOptions(options)
    let batch: string[] = []
    const flush = async function* (this: CacheRegion, keys: string[]): AsyncGenerator<[string, T], void> {
      const values = await this.mget<T>(keys)
      for (let i = 0; i < keys.length; i++) if (values[i] !== undefined) yield [keys[i]!, values[i]!]
    }
    for await (const key of this.scan(options)) {
      batch.push(key)
      if (batch.length >= count) {
        yield* flush.call(this, batch)
        batch = []
      }
    }
    if (batch.length > 0) yield* flush.call(this, batch)
  }

  #scanOptions(o: unknown): { match: string | undefined; count: number } {
    if (o === null || typeof o !== 'object') throw new InvalidOptionError(`options must be an object like { match, count } (got ${describe(o)})`)
    const { match, count = 100 } = o as ScanOptions
    if (match !== undefined) this.#checkGlob(match, 'options.match')
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 100_000) {
      throw new InvalidOptionError(`options.count must be an integer from 1 to 100000 (got ${describe(count)})`)
    }
    return { match, count }
  }

  /** Removes the live keys matching `glob`; resolves how many. */
  deleteByPattern(glob: string): Promise<number> {
    try {
      this.#open()
      this.#checkGlob(glob)
    } catch (err) {
      return rejected(err)
    }
    this.core.bus?.publish({ type: BusOpType.PATTERN, region: this.#region.name, glob })
    const local = this.#deletePattern(glob)
    const l2 = this.core.l2
    if (l2 === undefined) return local
    const g = new Glob(glob)
    return Promise.all([local, l2.deleteMatching(this.#region.name, glob, (k) => g.matches(k))]).then(([n]) => n)
  }

  /** Removes every entry of the region; resolves how many live entries there were. */
  clear(): Promise<number> {
    try {
      this.#open()
    } catch (err) {
      return rejected(err)
    }
    this.core.bus?.publish({ type: BusOpType.CLEAR, region: this.#region.name })
    const local = this.#clear()
    const l2 = this.core.l2
    return l2 === undefined ? local : Promise.all([local, l2.deleteMatching(this.#region.name, undefined, () => true)]).then(([n]) => n)
  }

  /**
   * Removes the region's entries carrying `tag` (set with `{ tags }`), in
   * every shard and, through the bus, in every instance; resolves how many
   * live entries this instance removed. On the cache itself (not a region
   * handle) it covers every region.
   */
  invalidateTag(tag: string): Promise<number> {
    try {
      this.#open()
      checkTag(tag, 'tag', this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const local = this.invalidateTagHere(tag)
    const l2 = this.core.l2
    // L2's tag sets span regions: removing a tagged key of another region there too only costs a miss.
    return l2 === undefined ? local : Promise.all([local, l2.invalidateTag(tag)]).then(([n]) => n)
  }

  /** @internal invalidateTag in this region's shards and, through the bus, in peers' (not in L2). The tag is valid. */
  invalidateTagHere(tag: string): Promise<number> {
    this.core.bus?.publish({ type: BusOpType.TAG, region: this.#region.name, tag })
    return this.#invalidateTag(tag)
  }

  #invalidateTag(tag: string): Promise<number> {
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendInvalidateTag(this.core.router, this.#region.index, tag, c)
    return c.promise
  }

  /** @internal A snapshot's entry, stored locally only; false when it does not fit this region. */
  restoreEntry(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<boolean> {
    try {
      checkKey(key, this.core.options.maxKeyBytes)
      this.#checkSize(key, enc, opts)
    } catch {
      return Promise.resolve(false)
    }
    const d = new Deferred<boolean>()
    sendSet(this.core.router, this.#region.index, key, enc, opts, d, 0)
    return d.promise
  }

  /**
   * @internal Applies one op a peer published, without publishing it again,
   * and announces it; resolves once the shards applied it. Keys and values a local call would refuse
   * (too long, too large for this region) are deleted instead: this
   * instance must not keep an older value of a key a peer changed.
   */
  applyRemote(op: BusOp, origin: string): Promise<unknown> {
    const name = this.#region.name
    const maxKeyBytes = this.core.options.maxKeyBytes
    const validKey = (k: string): boolean => k.length > 0 && Buffer.byteLength(k) <= maxKeyBytes
    let done: Promise<unknown>
    let event: InvalidationEvent
    const router = this.core.router
    if (op.type === BusOpType.DELETE) for (const k of op.keys) router.remoteWrite(this.#region.index, k)
    else if (op.type === BusOpType.UPDATE) for (const e of op.entries) router.remoteWrite(this.#region.index, e.key)
    else router.remoteWrite(this.#region.index, undefined)
    switch (op.type) {
      case BusOpType.DELETE: {
        const keys = op.keys.filter(validKey)
        const c = new Collector<number>(keys.length, countTrue)
        for (let i = 0; i < keys.length; i++) sendDelete(this.core.router, this.#region.index, keys[i]!, c, i)
        done = c.promise
        event = { origin, region: name, type: 'delete', keys: op.keys }
        break
      }
      case BusOpType.UPDATE: {
        const entries = op.entries.filter((e) => validKey(e.key))
        const c = new Collector<number>(entries.length, countTrue)
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i]!
          const enc: EncodedValue = { tag: e.tag, bytes: e.bytes }
          const opts: ResolvedSet = { ttl: e.ttl, nx: false, xx: false, metadata: e.metadata, tags: e.tags }
          let storable = e.tag <= ValueTag.CODEC
          if (storable) {
            try {
              this.#checkSize(e.key, enc, opts)
            } catch {
              storable = false
            }
          }
          if (storable) sendSet(this.core.router, this.#region.index, e.key, enc, opts, c, i)
          else sendDelete(this.core.router, this.#region.index, e.key, c, i)
        }
        done = c.promise
        event = { origin, region: name, type: 'update', keys: op.entries.map((e) => e.key) }
        break
      }
      case BusOpType.PATTERN:
        done = validKey(op.glob) ? this.#deletePattern(op.glob) : Promise.resolve(0)
        event = { origin, region: name, type: 'pattern', pattern: op.glob }
        break
      case BusOpType.CLEAR:
        done = this.#clear()
        event = { origin, region: name, type: 'clear' }
        break
      case BusOpType.TAG:
        done = validKey(op.tag) ? this.#invalidateTag(op.tag) : Promise.resolve(0)
        event = { origin, region: name, type: 'tag', tag: op.tag }
        break
    }
    // Announced once issued, in message order: a read issued from the listener already runs after the op.
    emit(this.core.events, 'invalidation', event)
    return done
  }

  /** @internal Empties the region without publishing (a bus flush). Issues its ops before it returns. */
  flushLocal(): Promise<number> {
    this.core.router.remoteWrite(this.#region.index, undefined)
    return this.#clear()
  }

  /** Removes expired entries now (shards also sweep them in the background); resolves how many. */
  cleanupExpired(): Promise<number> {
    try {
      this.#open()
    } catch (err) {
      return rejected(err)
    }
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendCleanup(this.core.router, this.#region.index, c)
    return c.promise
  }

  // ── internals ────────────────────────────────────────────────────────────

  /**
   * Tells peers about sets: their values in update mode, else (and for
   * nx/xx sets, whose outcome is not known yet) an invalidation of the keys.
   *
   * A `fill` (a getOrCompute loader's result) is not an invalidation: the
   * source did not change, so a peer's copy is as good as this one, and
   * invalidating it would make instances that read the same key drop each
   * other's copy on every load. An update-mode bus still carries its value.
   */
  #publishSets(list: readonly (readonly [string, EncodedValue])[], opts: ResolvedSet, fill = false): void {
    const bus = this.core.bus!
    const region = this.#region.name
    if (fill && bus.mode === 'invalidate') return
    if (bus.mode === 'update' && !opts.nx && !opts.xx) {
      // The bytes are sent on a later tick: copy what the caller could still change.
      const entries: BusEntry[] = list.map(([key, enc]) => ({
        key,
        tag: enc.tag,
        bytes: enc.tag === ValueTag.BUFFER || enc.tag === ValueTag.UINT8ARRAY ? Uint8Array.prototype.slice.call(enc.bytes) : enc.bytes,
        ttl: opts.ttl,
        metadata: opts.metadata,
        tags: opts.tags,
      }))
      bus.publish(fill ? { type: BusOpType.UPDATE, region, entries, fill } : { type: BusOpType.UPDATE, region, entries })
    } else {
      bus.publish({ type: BusOpType.DELETE, region, keys: list.map(([key]) => key) })
    }
  }

  #open(): void {
    if (this.core.closed || this.core.router.closed) throw new ClosedError()
  }

  /** `name`: the argument's name in messages (`glob`, or scan's `options.match`). */
  #checkGlob(glob: unknown, name = 'glob'): void {
    if (typeof glob !== 'string' || glob.length === 0) {
      throw new InvalidKeyError(`${name} must be a non-empty string (got ${describe(glob)})`)
    }
    if (!wellFormed(glob)) {
      throw new InvalidKeyError(`${name} must be well-formed UTF-16: it has a lone surrogate at index ${loneSurrogateAt(glob)}, which UTF-8 cannot hold`)
    }
    const n = Buffer.byteLength(glob)
    if (n > this.core.options.maxKeyBytes) {
      throw new InvalidKeyError(`${name} is ${plural(n, 'UTF-8 byte')}, over options.maxKeyBytes (${this.core.options.maxKeyBytes})`)
    }
  }

  #checkSize(key: string, enc: EncodedValue, opts: ResolvedSet): void {
    const max = this.core.options.maxValueBytes
    const n = enc.bytes.length
    if (n > max) throw new ValueTooLargeError(`value is ${plural(n, 'byte')}, over options.maxValueBytes (${max})`)
    const meta = opts.metadata?.length ?? 0
    // Tags are charged too (see TAG_LINK_OVERHEAD_BYTES): the shard keeps them on its heap.
    const tags = opts.tags === undefined || opts.tags.length === 0 ? 0 : tagChargeBytes(opts.tags)
    // Cheap bound first; count the key's UTF-8 bytes only near the limit.
    if (key.length * 3 + n + meta + tags + ENTRY_OVERHEAD_BYTES <= this.#shareBytes) return
    const charge = Buffer.byteLength(key) + n + meta + tags + ENTRY_OVERHEAD_BYTES
    if (charge > this.#shareBytes) {
      const r = this.#region
      const parts = tags === 0 ? '' : ` + ${tags} for ${plural(opts.tags!.length, 'tag')} (UTF-8 bytes + ${TAG_LINK_OVERHEAD_BYTES} each)`
      throw new ValueTooLargeError(
        `entry is ${plural(charge, 'byte')} (key + value + metadata${parts} + ${ENTRY_OVERHEAD_BYTES}), over region "${r.name}"'s per-shard budget ` +
          `of ${plural(this.#shareBytes, 'byte')} (regions.${r.name}.maxBytes ${r.maxBytes} over ${plural(this.core.router.shardCount, 'shard')})`,
      )
    }
  }

  /** A read of `key` that is not counted as one (see sendPeek). */
  #peek<T>(key: string): Promise<T | undefined> {
    const router = this.core.router
    const d = new Deferred<T | undefined>()
    sendPeek(router, this.#region.index, key, router.shardOf(key), d, 0)
    return d.promise
  }

  /** Removes the region's keys matching `glob` in every shard; resolves how many. */
  #deletePattern(glob: string): Promise<number> {
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendDeletePattern(this.core.router, this.#region.index, glob, c)
    return c.promise
  }

  /** Empties the region in every shard; resolves how many live entries there were. */
  #clear(): Promise<number> {
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendClear(this.core.router, this.#region.index, c)
    return c.promise
  }
}

function toPairs(entries: unknown): unknown[] {
  if (Array.isArray(entries)) return entries
  if (entries instanceof Map) return [...entries]
  if (entries !== null && typeof entries === 'object') {
    const proto = Object.getPrototypeOf(entries)
    if (proto === Object.prototype || proto === null) return Object.entries(entries)
    if (Symbol.iterator in entries) return [...(entries as Iterable<unknown>)]
  }
  throw new InvalidOptionError(`entries must be an array of [key, value] pairs, a Map, or a plain object (got ${describe(entries)})`)
}

/** A sharded cache. Its data operations act on the `default` region; {@link Cache.region} gives the others. */
export class Cache extends CacheRegion {
  readonly #regions: Map<string, CacheRegion>
  #closing: Promise<void> | undefined

  /** @internal Use {@link createCache}. */
  constructor(core: Core) {
    const byName = new Map(core.options.regions.map((r) => [r.name, r]))
    super(core, byName.get('default')!)
    this.#regions = new Map()
    // `default` gets a handle of its own too: the cache's own invalidateTag and scan span or pick
    // regions, and region('default') must be bound to `default` as any other handle is to its region.
    for (const r of core.options.regions) this.#regions.set(r.name, new CacheRegion(core, r))
  }

  /** Number of shard threads. */
  get shards(): number {
    return this.core.router.shardCount
  }

  /** Names of the configured regions (`default` included). */
  get regionNames(): string[] {
    return [...this.#regions.keys()]
  }

  /**
   * {@link CacheRegion.scan} of `options.region` (default: `default`). Bad
   * input, an unknown region included, throws when iteration starts.
   */
  override async *scan(options: ScanOptions = {}): AsyncGenerator<string, void> {
    yield* this.#scanned(options).scan(options)
  }

  /** {@link CacheRegion.scanEntries} of `options.region` (default: `default`); bad input throws when iteration starts. */
  override async *scanEntries<T = unknown>(options: ScanOptions = {}): AsyncGenerator<[string, T], void> {
    yield* this.#scanned(options).scanEntries<T>(options)
  }

  /** The region a scan names; a bad `options` is left to the region's scan, which says what is wrong with it. */
  #scanned(options: ScanOptions): CacheRegion {
    const region = options !== null && typeof options === 'object' ? options.region : undefined
    return this.region(region ?? 'default')
  }

  /** Removes the entries carrying `tag` in every region (see {@link CacheRegion.invalidateTag}); resolves how many. */
  override invalidateTag(tag: string): Promise<number> {
    if (this.#regions.size === 1) return super.invalidateTag(tag)
    try {
      if (this.closed) throw new ClosedError()
      checkTag(tag, 'tag', this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const local = Promise.all([...this.#regions.values()].map((r) => r.invalidateTagHere(tag))).then(addNumbers)
    // L2's tag sets span the regions: one invalidation covers them all.
    const l2 = this.core.l2
    return l2 === undefined ? local : Promise.all([local, l2.invalidateTag(tag)]).then(([n]) => n)
  }

  /** The data operations bound to region `name`. Throws {@link UnknownRegionError} for a region that was not configured. */
  region(name: string): CacheRegion {
    const r = this.#regions.get(name)
    if (r === undefined) {
      const names = [...this.#regions.keys()].join(', ')
      if (typeof name !== 'string') throw new UnknownRegionError(`region must be the name of a configured region (got ${describe(name)}; regions: ${names})`)
      throw new UnknownRegionError(`region ${JSON.stringify(name)} is not configured (regions: ${names})`)
    }
    return r
  }

  /**
   * Listens to the invalidation bus (owner only; attached threads never see
   * these events):
   * - `'invalidation'`: a peer's op was applied here ({@link InvalidationEvent});
   * - `'flush'`: every region was emptied because invalidations may have been
   *   lost (disconnect, missed heartbeat, sequence gap, resubscription; {@link FlushEvent}).
   */
  on(event: 'invalidation', listener: (e: InvalidationEvent) => void): this
  on(event: 'flush', listener: (e: FlushEvent) => void): this
  on(event: EntryEventName, listener: (e: EntryEvent) => void): this
  on(event: CacheEventName, listener: (e: InvalidationEvent & FlushEvent & EntryEvent) => void): this {
    this.#checkEvent(event, listener)
    this.core.events.on(event, listener)
    this.#updateEventMask()
    return this
  }

  /** Removes a listener added with {@link Cache.on}. */
  off(event: 'invalidation', listener: (e: InvalidationEvent) => void): this
  off(event: 'flush', listener: (e: FlushEvent) => void): this
  off(event: EntryEventName, listener: (e: EntryEvent) => void): this
  off(event: CacheEventName, listener: (e: InvalidationEvent & FlushEvent & EntryEvent) => void): this {
    this.#checkEvent(event, listener)
    this.core.events.off(event, listener)
    this.#updateEventMask()
    return this
  }

  #checkEvent(event: unknown, listener: unknown): void {
    if (!(EVENT_NAMES as readonly unknown[]).includes(event)) {
      throw new InvalidOptionError(`event must be one of ${EVENT_NAMES.map((n) => `"${n}"`).join(', ')} (got ${describe(event)})`)
    }
    if (typeof listener !== 'function') throw new InvalidOptionError(`listener must be a function (got ${describe(listener)})`)
  }

  /** Tells the shards which entry events someone listens to: they send only those (none when nobody listens). */
  #updateEventMask(): void {
    const threads = this.core.admin.threads
    if (threads === undefined) return // attached: only the owner's shards report to it
    let mask = 0
    for (const [name, bit] of Object.entries(ENTRY_EVENT_BITS)) if (this.core.events.listenerCount(name) > 0) mask |= bit
    // Hits and misses happen in the shards only if reads go there.
    this.core.router.directReads = (mask & (ShardEvent.HIT | ShardEvent.MISS)) === 0
    for (const t of threads()) if (t.eventMask !== mask) t.setEventMask(mask)
  }

  /**
   * Counters and gauges, in total, `byShard` and `byRegion`. Reflects every
   * operation whose promise resolved before the call. Plain JSON. On an
   * attached thread, the owner computes them (the same figures).
   */
  stats(): Promise<CacheStats> {
    if (this.core.closed || this.core.router.closed) return rejected(new ClosedError())
    return this.core.admin.stats()
  }

  /**
   * The stats as Prometheus text exposition (counters and gauges per region
   * and per shard; the bus's and L2's figures when configured). To serve
   * them from a `prom-client` registry instead, see {@link registerMetrics}.
   */
  async metrics(): Promise<string> {
    return formatPrometheus(metricFamilies(await this.stats()))
  }

  /** Zeroes the counters (hits, misses, sets, deletes, evictions, corrupt); entries and byte gauges stay. */
  resetStats(): Promise<void> {
    if (this.core.closed || this.core.router.closed) return rejected(new ClosedError())
    return this.core.admin.resetStats()
  }

  /**
   * Writes every shard's live entries (stored values, remaining TTLs as
   * expiry times, metadata, tags) to `target`, a file path (written to
   * `<path>.tmp-<host>-<pid>-<n>`, flushed to disk and renamed over `path`
   * when complete, so `path` always holds a whole snapshot) or a Writable (written, not
   * ended), while the cache keeps serving: each shard answers a page at a
   * time between other operations. Resolves the entry count. The format is
   * documented in docs/formats.md.
   */
  async snapshot(target: string | Writable, options: { onProgress?: (p: SnapshotProgress) => void } = {}): Promise<number> {
    if (this.closed) throw new ClosedError()
    if (typeof target !== 'string' && (target === null || typeof (target as Writable).write !== 'function')) {
      throw new InvalidOptionError(`target must be a file path or a Writable stream (got ${describe(target)})`)
    }
    const sink = typeof target === 'string' ? fileSink(target) : undefined
    const writer = new SnapshotWriter(sink?.out ?? (target as Writable))
    const router = this.core.router
    const regions = this.core.options.regions
    try {
      await writer.header(Date.now(), regions.map((r) => r.name))
      for (const r of regions) {
        for (let s = 0; s < router.shardCount; s++) {
          for (let cursor = 0; cursor !== -1; ) {
            if (this.closed) throw new ClosedError()
            const d = new Deferred<ExportPage>()
            sendExport(router, s, r.index, cursor, SNAPSHOT_PAGE, d, 0)
            const page = await d.promise
            cursor = page.next
            await writer.records(r.index, page.entries)
            options.onProgress?.(writer.progress)
          }
        }
      }
      await writer.trailer()
      await sink?.commit()
    } catch (err) {
      sink?.abort()
      throw err
    }
    return writer.progress.entries
  }

  /**
   * Loads a snapshot into this cache: every entry of a region this cache has,
   * with the TTL it has left (entries that expired meanwhile are skipped, as
   * are those too large for this cache's region budgets). Checks the whole
   * file first: a truncated or corrupt one rejects with `E_SNAPSHOT_CORRUPT`
   * and loads nothing. Restored entries are not published on the bus nor
   * written to L2. Resolves how many entries were loaded.
   */
  async restore(path: string, options: { onProgress?: (p: SnapshotProgress) => void } = {}): Promise<number> {
    if (this.closed) throw new ClosedError()
    const snap = readSnapshot(path)
    const now = Date.now()
    let loaded = 0
    let bytes = 0
    const pending: Promise<boolean>[] = []
    for (const { region, entry: e } of snap.entries) {
      const name = snap.regions[region]!
      if (!this.regionNames.includes(name)) continue
      const left = e.expiresAt - now
      if (left <= 0) continue
      let raw = e.bytes
      if (e.compressed) {
        const out = decompress(e.bytes, e.rawSize)
        if (out === undefined) throw new SnapshotCorruptError(`snapshot ${JSON.stringify(path)}: a value of ${JSON.stringify(e.key)} does not decompress; nothing more was loaded`)
        raw = out
      }
      const fresh = e.freshUntil === undefined ? undefined : Math.max(1, e.freshUntil - now)
      const opts: ResolvedSet = {
        ttl: fresh ?? left,
        nx: false,
        xx: false,
        metadata: e.metadata,
        tags: e.tags,
        grace: fresh === undefined ? undefined : Math.max(1, left - fresh),
      }
      pending.push((this.region(name) as CacheRegion).restoreEntry(e.key, { tag: e.tag, bytes: raw }, opts))
      bytes += raw.length
      if (pending.length >= SNAPSHOT_PAGE) {
        loaded += (await Promise.all(pending.splice(0))).filter(Boolean).length
        options.onProgress?.({ entries: loaded, bytes })
      }
    }
    loaded += (await Promise.all(pending)).filter(Boolean).length
    options.onProgress?.({ entries: loaded, bytes })
    return loaded
  }

  /**
   * A descriptor that lets one other worker thread use this cache:
   * post it with `handle.transfer` as the transfer list, then call
   * {@link attachCache} in that thread. Each handle is for one thread; make
   * one per thread (or per task: attaching again in a thread that already
   * did returns its existing client). Owner only.
   */
  handle(): CacheHandle {
    const broker = this.core.admin.broker
    if (broker === undefined) {
      throw new InvalidOptionError('handle() is only available on the cache createCache() returned; post that cache\'s handle to other threads')
    }
    if (this.core.closed) throw new ClosedError()
    return broker.handle()
  }

  /**
   * Lets in-flight operations finish, then stops the shard threads. Operations
   * issued afterwards reject with `E_CLOSED`, on this thread and on attached
   * ones. Safe to call more than once. On an attached thread, `close()` only
   * detaches that thread: the cache lives on.
   */
  close(): Promise<void> {
    this.core.closed = true
    this.#closing ??= this.core.admin.close()
    return this.#closing
  }

  /** Whether this client is closed: `close()` was called here, or the owner closed the cache. */
  get closed(): boolean {
    return this.core.closed || this.core.router.closed
  }

  /** @internal Near-cache entries this thread holds for region `name`. */
  nearCacheSizeForTest(name = 'default'): number {
    return this.core.router.nearSize(this.core.options.regions.findIndex((r) => r.name === name))
  }

  /** @internal Whether this thread's near cache holds an entry for `key` in region `name`. */
  nearCacheHasForTest(key: string, name = 'default'): boolean {
    return this.core.router.nearHas(this.core.options.regions.findIndex((r) => r.name === name), key)
  }

  /** @internal Makes shard `shard` die of an uncaught exception, as a bug would. For crash tests. */
  crashShardForTest(shard: number): Promise<unknown> {
    const d = new Deferred<unknown>()
    this.core.router.crashShard(shard, d)
    return d.promise
  }

  /** @internal Frames sent to shards since creation. */
  framesSentForTest(): number {
    return this.core.router.framesSent
  }

  /**
   * @internal Each shard thread's heap and the process's RSS (after a full GC
   * in each when `gc` and the process runs with --expose-gc); undefined for a
   * shard that is down. Owner only. For soak tests (bench/soak.ts).
   */
  shardMemoryForTest(gc = false): Promise<(ShardMemory | undefined)[]> {
    const threads = this.core.admin.threads
    if (threads === undefined) return rejected(new InvalidOptionError('shardMemoryForTest is for the cache createCache returned, not an attached one'))
    return control(this.core.router, threads(), (c) => c.memory(gc))
  }

  /** @internal Which shard owns `key`. */
  shardOfForTest(key: string): number {
    return this.core.router.shardOf(key)
  }
}

/**
 * Starts the shard threads and resolves to a ready {@link Cache}. Rejects with
 * `E_INVALID_OPTION` (the message names the option) or `E_INVALID_TTL` on bad options.
 *
 * @example
 * ```ts
 * const cache = await createCache({ shards: 2, regions: { default: { maxBytes: '256mb' } } })
 * await cache.set('user:1', { name: 'Alice' }, { ttl: '10m' })
 * await cache.get('user:1') // → { name: 'Alice' }
 * await cache.close()
 * ```
 */
export async function createCache(options?: CacheOptions): Promise<Cache> {
  const resolved = resolveOptions(options)
  const { shards, regions, codec } = resolved
  const perShard = Array.from({ length: shards }, (_, s) => regions.map((r) => regionShare(r, s, shards)))
  // Shards spinning now, across this cache (see the transport notes in src/wire/protocol.ts).
  const spinners = new Int32Array(new SharedArrayBuffer(4))
  const threads: ShardThread[] = []
  let router: Router
  try {
    router = new Router({
      shards,
      lru: regions.map((r) => r.policy === 'lru'),
      codec,
      nearCacheEntries: resolved.nearCacheEntries,
      replySpinMicros: resolved.replySpinMicros,
      owner: true,
      link: (i, events) => {
        const t = new ShardThread(i, perShard[i]!, resolved.idleSpinMicros, resolved.replySpinMicros, spinners, events, resolved.resourceLimits)
        threads.push(t)
        return t
      },
    })
  } catch (err) {
    // A thread could not even be created: the ones that were are stopped.
    await Promise.all(threads.map((t) => t.close()))
    throw new ShardStartError(threads.length, { cause: err })
  }
  // Set once the bus and the L2 tier started; the broker and stats read them late.
  let bus: Bus | undefined
  let l2: L2Tier | undefined
  const stats = async (): Promise<CacheStats> => {
    const reports = await control(router, threads, (c) => c.stats())
    const down: number[] = []
    const perShardStats = reports.map((r, shard) => {
      if (r !== undefined) return r.regions
      down.push(shard)
      return regions.map((region) => emptyRegionStats(regionShare(region, shard, shards)))
    })
    const attachedThreads = reports.reduce((n, r) => Math.max(n, r?.attachedThreads ?? 0), 0)
    const out: CacheStats = { ...aggregateStats(regions.map((r) => r.name), perShardStats, router.restarts, down), attachedThreads }
    if (bus !== undefined) out.bus = bus.stats()
    out.frameLatency = router.frameLatency.snapshot()
    if (l2 !== undefined) out.tiers = { l1: { hits: out.hits, misses: out.misses }, l2: l2.stats() }
    return out
  }
  const resetStats = async (): Promise<void> => {
    await control(router, threads, (c) => c.resetStats())
    router.frameLatency.reset()
    bus?.resetStats()
    l2?.resetStats()
  }
  const flights = new FlightCoordinator()
  const broker = new Broker(resolved, {
    threads: () => threads,
    isDead: (i) => router.isDead(i),
    stats,
    resetStats,
    publish: (ops) => {
      for (const op of ops) {
        if (bus !== undefined) {
          // Relayed with values for L2; an invalidate-mode bus sends only the keys, and nothing for a fill.
          if (bus.mode !== 'invalidate' || op.type !== BusOpType.UPDATE) bus.publish(op)
          else if (op.fill !== true) bus.publish({ type: BusOpType.DELETE, region: op.region, keys: op.entries.map((e) => e.key) })
        }
        if (l2 !== undefined) void relayToL2(l2, regions, op)
      }
    },
    flights,
  })
  const pool = resolved.loaderPool === undefined ? undefined : loaderPool(resolved.loaderPool)
  const admin: Admin = {
    stats,
    resetStats,
    broker,
    threads: () => threads,
    close: async () => {
      flights.closeAll()
      // Each part is closed whatever happened to the others before it: a failure to close one
      // (a pool that never started, a Redis that went away) must not leave the shard threads running.
      await quietly(pool?.destroy())
      // Ops issued before close() are still published (the bus packs them now).
      await quietly(bus?.close())
      await quietly(l2?.close())
      // Attached threads must see E_CLOSED, not a crash, when the shards stop.
      broker.close()
      await router.close()
    },
  }
  const core: Core = {
    router,
    options: resolved,
    closed: false,
    admin,
    bus: undefined,
    events: new EventEmitter(),
    flights,
    loading: new Map(),
    runTask: pool?.run,
    l2: undefined,
  }
  const cache = new Cache(core)
  const regionNames = regions.map((r) => r.name)
  for (const t of threads) {
    t.onEvents = (list) => {
      for (let i = 0; i + 2 < list.length; i += 3) {
        const type = EVENT_OF_BIT.get(list[i] as number)
        if (type === undefined) continue
        const key = list[i + 2] as string
        const e: EntryEvent = { type, region: regionNames[list[i + 1] as number]! }
        if (type !== 'clear') e.key = key
        if (type === 'evict') e.cause = 'size'
        if (type === 'expire') e.cause = 'expired'
        emit(core.events, type, e)
      }
    }
  }
  try {
    // The first answer of every shard: a thread that dies before it (its modules failed to
    // load) rejects createCache with E_SHARD_START and the thread's error as the cause.
    await Promise.all(
      threads.map((t) =>
        t.call((c) => c.stats()).catch((err: unknown) => {
          throw err instanceof ShardCrashedError ? new ShardStartError(t.index, { cause: err.cause }) : err
        }),
      ),
    )
    if (resolved.l2 !== undefined) {
      const { L2Tier } = await import('../redis/l2.js')
      l2 = new L2Tier(resolved.l2)
      await l2.start(regions.map((r) => r.name))
      core.l2 = l2
    }
    if (resolved.restore !== undefined) {
      await cache.restore(resolved.restore).catch((err: unknown) => {
        // createCache's caller fixes the option: say which.
        if (err instanceof CacheError) err.message = `options.restore: ${err.message}`
        throw err
      })
    }
    if (resolved.bus !== undefined) {
      // Loaded only when used: ioredis is not needed by a cache without a bus.
      const { Bus } = await import('../redis/bus.js')
      bus = await Bus.start(resolved.bus, busHost(cache, core))
      core.bus = bus
      // What L2 repairs after losing writes, peers may have read from it meanwhile: they drop it too.
      if (l2 !== undefined) l2.onRepaired = repairedToBus(bus, core.options.regions)
    }
  } catch (err) {
    core.closed = true
    await admin.close()
    throw err
  }
  return cache
}

/**
 * An attached thread's write, applied to the L2 tier by the owner. After the
 * write's promise resolved on its thread: L2 trails it by a message. A
 * failure is counted in the tier's stats (there is no caller left to reject).
 */
async function relayToL2(l2: L2Tier, regions: ResolvedRegion[], op: BusOp): Promise<void> {
  const r = regions.find((x) => x.name === op.region)
  if (r === undefined) return
  try {
    switch (op.type) {
      case BusOpType.UPDATE:
        await Promise.all(op.entries.map((e) => l2.set(r.name, e.key, { tag: e.tag, bytes: e.bytes }, e.ttl ?? r.defaultTtl, r.compressMinBytes, e.tags)))
        break
      case BusOpType.DELETE:
        await l2.delete(r.name, op.keys)
        break
      case BusOpType.PATTERN: {
        const g = new Glob(op.glob)
        await l2.deleteMatching(r.name, op.glob, (k) => g.matches(k))
        break
      }
      case BusOpType.CLEAR:
        await l2.deleteMatching(r.name, undefined, () => true)
        break
      case BusOpType.TAG:
        await l2.invalidateTag(op.tag)
        break
    }
  } catch {
    // Only with l2.required: counted as an error by the tier.
  }
}

/** Publishes what an L2 repair removed, as the invalidations peers apply (a tag's keys span every region). */
function repairedToBus(bus: Bus, regions: ResolvedRegion[]): (r: L2Repaired) => void {
  return (r) => {
    if ('tag' in r) for (const x of regions) bus.publish({ type: BusOpType.TAG, region: x.name, tag: r.tag })
    else if ('keys' in r) bus.publish({ type: BusOpType.DELETE, region: r.region, keys: r.keys })
    else if (r.glob === undefined) bus.publish({ type: BusOpType.CLEAR, region: r.region })
    else bus.publish({ type: BusOpType.PATTERN, region: r.region, glob: r.glob })
  }
}

/** The piscina pool of `loaders.pool`, started on the first task (piscina is loaded only then). */
function loaderPool(o: { filename: string; maxThreads: number | undefined }): { run: (t: PoolTask) => Promise<unknown>; destroy: () => Promise<void> } {
  let pool: Promise<import('piscina').Piscina> | undefined
  const start = async (): Promise<import('piscina').Piscina> => {
    const { Piscina } = await import('piscina')
    const p = new Piscina({
      filename: LOADER_TASK_FILE,
      // Not the main entry's options (`--input-type` kills a worker at startup): see src/client/worker_argv.ts.
      execArgv: workerExecArgv(),
      ...(o.maxThreads === undefined ? {} : { maxThreads: o.maxThreads, minThreads: Math.min(1, o.maxThreads) }),
    })
    // Piscina emits 'error' for a pool thread that died with no task on it; unheard, that is an
    // uncaught exception. Tasks that were on a thread get its error as their rejection, and the
    // pool replaces the thread on the next task: nothing to do here.
    p.on('error', () => {})
    return p
  }
  return {
    run: async (t) => {
      pool ??= start()
      return (await pool).run({ filename: o.filename, name: t.task, args: t.args ?? [] })
    },
    destroy: async () => {
      if (pool !== undefined) await (await pool).destroy()
    },
  }
}

/** The pool threads' entry: runs a named export of the user's loader module. */
const LOADER_TASK_FILE = new URL('../../workers/loader_task.js', import.meta.url).href

/** How the bus changes a cache: peers' ops applied region by region, flushes of every region. */
function busHost(cache: Cache, core: Core): BusHost {
  const regions = core.options.regions.map((r) => r.name)
  return {
    apply: async (ops, origin) => {
      const known = ops.filter((op) => regions.includes(op.region))
      await Promise.all(known.map((op) => cache.region(op.region).applyRemote(op, origin)))
      return known.length
    },
    flush: async (reason: FlushReason) => {
      const done = Promise.all(regions.map((r) => cache.region(r).flushLocal()))
      // Announced once issued: a read issued from the listener already runs after the clears.
      emit(core.events, 'flush', { reason, regions } satisfies FlushEvent)
      await done
    },
  }
}

/** Calls every shard's control API after the ops issued so far; `undefined` for a shard that is down for good. */
async function control<T>(router: Router, threads: ShardThread[], call: (c: ShardThread['control']) => Promise<T>): Promise<(T | undefined)[]> {
  await router.drain()
  return Promise.all(threads.map((t) => (router.isDead(t.index) ? undefined : t.call(call))))
}

/** Waits for a cleanup step and drops its failure: closing goes on whatever one part did. */
async function quietly(p: Promise<unknown> | undefined): Promise<void> {
  try {
    await p
  } catch {
    // Nobody is left to act on it: the part is released either way.
  }
}

/** Clients attached in this thread, by cache id: attaching twice returns the same one. */
const attached = new Map<string, Cache>()

/**
 * In a worker thread (or a piscina task), returns a client of the cache whose
 * {@link Cache.handle} was posted here: the same API as the owner's, with its
 * own ports to every shard and direct reads of their shared memory. Writes
 * from any thread are visible to every thread once their promise resolved.
 * Rejects with `E_INVALID_OPTION` for something that is not a handle, or when
 * the owner uses a custom codec and `options.codec` is missing; `E_CLOSED`
 * when the owner already closed the cache.
 *
 * @example
 * ```ts
 * // main thread
 * const h = cache.handle()
 * worker.postMessage({ cache: h }, h.transfer)
 * // worker thread
 * parentPort.on('message', async ({ cache: h }) => {
 *   const cache = await attachCache(h)
 *   await cache.set('from-worker', 1)
 * })
 * ```
 */
export async function attachCache(handle: CacheHandle, options?: AttachOptions): Promise<Cache> {
  checkHandle(handle)
  const existing = attached.get(handle.id)
  if (existing !== undefined && !existing.closed) {
    handle.port.close() // this thread already has its ports
    return existing
  }
  const o = handle.options
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new InvalidOptionError(`options must be an object like { codec, nearCache } (got ${describe(options)})`)
  }
  if (options !== undefined) rejectUnknownKeys(options, ['codec', 'nearCache'], 'options.')
  if (o.customCodec && options?.codec === undefined) {
    throw new InvalidOptionError('options.codec is required: the owner created the cache with a custom codec, and functions cannot be posted to a thread')
  }
  const resolvedOwn = resolveOptions({ shards: o.shards, codec: options?.codec, nearCache: options?.nearCache })
  const nearCacheEntries = options?.nearCache === undefined ? o.nearCacheEntries : resolvedOwn.nearCacheEntries
  const resolved: ResolvedOptions = {
    shards: o.shards,
    maxKeyBytes: o.maxKeyBytes,
    maxValueBytes: o.maxValueBytes,
    codec: resolvedOwn.codec,
    idleSpinMicros: 0,
    replySpinMicros: 0,
    nearCacheEntries,
    regions: o.regions,
  }
  const state = new Int32Array(handle.state)
  const broker = new BrokerClient(handle.port, state)
  const links: AttachedLink[] = []
  const router = new Router({
    shards: o.shards,
    lru: o.regions.map((r) => r.policy === 'lru'),
    codec: resolved.codec,
    nearCacheEntries,
    replySpinMicros: 0,
    owner: false,
    ownerState: state,
    link: (i, events) => {
      const l = new AttachedLink(i, o.regions.length, broker, events)
      links.push(l)
      return l
    },
  })
  const reply = await broker.request<{ id: number; shards: { port: import('node:worker_threads').MessagePort; memory: import('../wire/shared_region.js').RegionMemory[]; generation: number }[] }>({
    type: 'attach',
    logs: links.map((l) => l.logMemory),
  })
  reply.shards.forEach((access, i) => links[i]!.connect(access))
  const admin: Admin = {
    broker: undefined,
    stats: () => broker.request<{ id: number; stats: CacheStats }>({ type: 'stats' }).then((r) => r.stats),
    resetStats: () => broker.request({ type: 'resetStats' }).then(() => undefined),
    close: async () => {
      attached.delete(handle.id)
      await router.close()
      broker.port.close()
    },
  }
  const bus = o.relayMode === undefined ? undefined : new BusRelay(o.relayMode, broker)
  const cache = new Cache({
    router,
    options: resolved,
    closed: false,
    admin,
    bus,
    events: new EventEmitter(),
    flights: new FlightRelay(broker),
    loading: new Map(),
    runTask: undefined,
    l2: undefined,
  })
  attached.set(handle.id, cache)
  return cache
}
