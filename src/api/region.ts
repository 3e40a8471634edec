/**
 * The data operations of one region, as users call them: validates every
 * argument on the calling thread (so a rejected call never reaches a shard
 * and changes nothing), encodes values, and hands ops to the router through
 * the request encoders of src/client/ops/. Async methods never throw
 * synchronously: bad input rejects the returned promise.
 *
 * The hot paths (get, getSync, set, mget) are written out here, in the class.
 * What the region's other concerns share with it is in its {@link RegionScope}
 * (src/api/scope.ts); getOrCompute's machinery is in read_through.ts and the
 * application of peers' ops in remote.ts, as functions of that scope: the
 * class's `#private` members cannot be reached from other files, and a
 * public class split into helper files keeps one shape for `instanceof` and
 * its documentation.
 *
 * The traced operations (get, set, delete, mget, mset, mdelete,
 * getOrCompute) are a public method that runs the `#private` one inside a
 * span when `tracing` samples the call (src/ops/tracing.ts), and straight
 * otherwise: without `tracing`, one `undefined` check.
 */
import { ClosedError, InvalidOptionError, UnsupportedError } from '../errors.js'
import type { RegionWriter } from '../backing/write_through.js'
import type { EntryInfo } from '../wire/protocol.js'
import { checkTag, resolveSetOptions } from '../options/operations.js'
import { parseTtl } from '../options/parse.js'
import type { ComputeOptions, ResolvedSet, SetOptions } from '../options/operations.js'
import type { ResolvedRegion } from '../options/regions.js'
import type { Ttl } from '../options/parse.js'
import { checkKey, checkKeys, encodeValue, wellFormed } from '../wire/values.js'
import type { EncodedValue } from '../wire/values.js'
import { describe } from '../messages.js'
import { ASK_SHARD, NEAR_MISS } from '../client/direct_reads.js'
import { sendCas, sendDelete, sendGet, sendGetEntry, sendHas, sendIncr, sendSet, sendTake, sendTouch, sendTtl } from '../client/ops/values.js'
import type { RawEntry } from '../client/ops/entry.js'
import { sendCleanup, sendKeys, sendScan } from '../client/ops/scan.js'
import type { ScanPage } from '../client/ops/scan.js'
import { BusOpType } from '../redis/bus_message.js'
import type { BusOp } from '../redis/bus_message.js'
import { Glob } from '../wire/glob.js'
import { Batch } from './batch.js'
import { Collector, Deferred, addNumbers, countTrue, rejected } from './core.js'
import type { Core, Loader, PoolTask } from './core.js'
import { RegionScope } from './scope.js'
import { getOrCompute } from './read_through.js'
import { applyRemote, flushLocal } from './remote.js'
import { hitOf, mgetOf, removedOf, storedOf } from '../ops/tracing.js'

/** What {@link CacheRegion.getEntry} returns. */
export interface CacheEntry<T = unknown> extends EntryInfo {
  value: T
  /** The `metadata` given to `set`, if any. */
  metadata: Record<string, unknown> | undefined
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

/** Entries for {@link CacheRegion.mset}: `[key, value]` pairs, a `Map`, or a plain object. */
export type MsetEntries = Iterable<readonly [string, unknown]> | Record<string, unknown>

/**
 * The data operations, bound to one region. `cache.region(name)` returns one;
 * the {@link Cache} itself is the one bound to the `default` region.
 */
export class CacheRegion {
  /** @internal */ protected readonly core: Core
  readonly #region: ResolvedRegion
  /** What the region's other concerns (read-through, remote apply) share with it. */
  readonly #scope: RegionScope
  /** The region's write-through (src/backing/write_through.ts), or its relay on an attached thread; undefined without one. */
  readonly #writer: RegionWriter | undefined

  /** @internal */
  constructor(core: Core, region: ResolvedRegion) {
    this.core = core
    this.#region = region
    this.#scope = new RegionScope(core, region)
    this.#writer = core.writes.get(region.index)
  }

  /** Name of the region this handle operates on. */
  get regionName(): string {
    return this.#region.name
  }

  /** The value stored under `key`, or `undefined` when there is none (or it expired). */
  get<T = unknown>(key: string): Promise<T | undefined> {
    const tracer = this.core.tracer
    if (tracer !== undefined && tracer.sampled()) return tracer.span('get', this.#region.name, () => this.#get<T>(key), hitOf)
    return this.#get<T>(key)
  }

  #get<T>(key: string): Promise<T | undefined> {
    try {
      this.#scope.open()
      checkKey(key, this.core.options.maxKeyBytes)
      if (this.core.l2 === undefined) return this.#getL1<T>(key)
      // Before the shard read: a write issued after this get must keep an L2 fill out.
      const mark = this.core.router.fillMark(this.#region.index, key)
      return this.#getL1<T>(key).then((v) => (v !== undefined ? v : this.#scope.fromL2<T>(key, undefined, mark)))
    } catch (err) {
      return rejected(err)
    }
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
    const region = this.#region.index
    // A near hit first: only checked keys are held, so a hit needs no check (see nearValue).
    let value = router.nearValue(region, key)
    if (value === NEAR_MISS) {
      // The common key needs no UTF-8 count (see checkKey): tested inline.
      if (typeof key !== 'string' || key.length === 0 || key.length * 3 > options.maxKeyBytes || !wellFormed(key)) checkKey(key, options.maxKeyBytes)
      value = router.readShared(region, key)
    }
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
    const tracer = this.core.tracer
    if (tracer !== undefined && tracer.sampled()) return tracer.span('getOrCompute', this.#region.name, () => getOrCompute<T>(this.#scope, key, loader, options))
    return getOrCompute<T>(this.#scope, key, loader, options)
  }

  /**
   * Stores `value` under `key`. Resolves `true` when stored, `false` when `nx`
   * or `xx` refused it. Strings, Buffers and Uint8Arrays come back as the same
   * type; other values go through the codec (JSON by default).
   */
  set(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    const tracer = this.core.tracer
    if (tracer !== undefined && tracer.sampled()) return tracer.span('set', this.#region.name, () => this.#set(key, value, options))
    return this.#set(key, value, options)
  }

  #set(key: string, value: unknown, options?: SetOptions): Promise<boolean> {
    let enc: EncodedValue
    let opts: ResolvedSet
    try {
      this.#scope.open()
      checkKey(key, this.core.options.maxKeyBytes)
      opts = resolveSetOptions(options, this.core.options.maxKeyBytes)
      enc = encodeValue(value, this.core.options.codec)
      this.#scope.checkSize(key, enc, opts)
      if (this.#writer !== undefined) this.#checkWriteOptions(opts)
    } catch (err) {
      return rejected(err)
    }
    return this.#writer === undefined ? this.#scope.store(key, enc, opts) : this.#writer.set(key, enc, opts)
  }

  /** nx and xx decide by what the cache holds, which the store does not share: refused on a write-through region. */
  #checkWriteOptions(opts: ResolvedSet): void {
    if (opts.nx || opts.xx) {
      throw new UnsupportedError(
        `options.${opts.nx ? 'nx' : 'xx'} cannot be used on region "${this.#region.name}": it writes through to a store (regions.${this.#region.name}.writeThrough), ` +
          'and whether the key exists in the cache says nothing about the store',
      )
    }
  }

  /** incr, cas and take change a value inside its shard, where a write-through store cannot follow. */
  #checkNotWriteThrough(op: string): void {
    if (this.#writer !== undefined) {
      throw new UnsupportedError(
        `${op} cannot be used on region "${this.#region.name}": it writes through to a store (regions.${this.#region.name}.writeThrough), ` +
          `and ${op}'s read-modify-write happens in the shard, which the store cannot follow; read, then set or delete`,
      )
    }
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
      this.#scope.open()
      checkKey(key, this.core.options.maxKeyBytes)
      if (typeof by !== 'number' || !Number.isFinite(by)) throw new InvalidOptionError(`by must be a finite number (got ${describe(by)})`)
      this.#checkNotWriteThrough('incr')
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
      this.#scope.open()
      checkKey(key, this.core.options.maxKeyBytes)
      opts = resolveSetOptions(options, this.core.options.maxKeyBytes)
      if (opts.nx || opts.xx) throw new InvalidOptionError('options.nx and options.xx do not apply to cas (expected undefined means "only if absent")')
      this.#checkNotWriteThrough('cas')
      want = expected === undefined ? undefined : encodeValue(expected, this.core.options.codec)
      enc = encodeValue(next, this.core.options.codec)
      this.#scope.checkSize(key, enc, opts)
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
      this.#scope.open()
      checkKey(key, this.core.options.maxKeyBytes)
      this.#checkNotWriteThrough('take')
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
      this.#scope.open()
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
    const tracer = this.core.tracer
    if (tracer !== undefined && tracer.sampled()) return tracer.span('delete', this.#region.name, () => this.#delete(key))
    return this.#delete(key)
  }

  #delete(key: string): Promise<boolean> {
    try {
      this.#scope.open()
      checkKey(key, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    if (this.#writer !== undefined) return this.#writer.delete([key]).then((n) => n > 0)
    const d = new Deferred<boolean>()
    sendDelete(this.core.router, this.#region.index, key, d, 0)
    this.core.bus?.publish({ type: BusOpType.DELETE, region: this.#region.name, keys: [key] })
    const l2 = this.core.l2
    return l2 === undefined ? d.promise : Promise.all([d.promise, l2.delete(this.#region.name, [key])]).then(([removed]) => removed)
  }

  /** Whether `key` has a live entry. Does not count as a read and does not refresh LRU order. */
  has(key: string): Promise<boolean> {
    try {
      this.#scope.open()
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
      this.#scope.open()
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
      this.#scope.open()
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
    const tracer = this.core.tracer
    if (tracer !== undefined && tracer.sampled()) return tracer.span('mget', this.#region.name, () => this.#mget<T>(keys), mgetOf)
    return this.#mget<T>(keys)
  }

  #mget<T>(keys: readonly string[]): Promise<(T | undefined)[]> {
    try {
      this.#scope.open()
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
    return c.promise.then((values) => Promise.all(values.map((v, i) => (v !== undefined ? v : this.#scope.fromL2<T>(keys[i]!, undefined, marks[i])))))
  }

  /**
   * Stores many entries with the same options; resolves how many were stored
   * (`nx`/`xx` may refuse some). Every key and value is validated first: if
   * one is bad, the call rejects and nothing is stored.
   */
  mset(entries: MsetEntries, options?: SetOptions): Promise<number> {
    const tracer = this.core.tracer
    if (tracer !== undefined && tracer.sampled()) return tracer.span('mset', this.#region.name, () => this.#mset(entries, options), storedOf)
    return this.#mset(entries, options)
  }

  #mset(entries: MsetEntries, options?: SetOptions): Promise<number> {
    const list: [string, EncodedValue][] = []
    let opts: ResolvedSet
    try {
      this.#scope.open()
      opts = resolveSetOptions(options, this.core.options.maxKeyBytes)
      if (this.#writer !== undefined) this.#checkWriteOptions(opts)
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
          this.#scope.checkSize(key, enc, opts)
          list.push([key, enc])
        } catch (err) {
          ;(err as Error).message = `entries[${i}]: ${(err as Error).message}`
          throw err
        }
      }
    } catch (err) {
      return rejected(err)
    }
    if (this.#writer !== undefined) return this.#writer.mset(list, opts)
    const c = new Collector<number>(list.length, countTrue)
    for (let i = 0; i < list.length; i++) sendSet(this.core.router, this.#region.index, list[i]![0], list[i]![1], opts, c, i)
    if (this.core.bus !== undefined && list.length > 0) this.#scope.publishSets(list, opts)
    if (this.core.l2 === undefined) return c.promise
    return c.promise.then(async (n) => {
      await Promise.all(list.filter((_, i) => c.results[i] === true).map(([key, enc]) => this.#scope.toL2(key, enc, opts)))
      return n
    })
  }

  /** Removes `keys`; resolves how many live entries were removed. */
  mdelete(keys: readonly string[]): Promise<number> {
    const tracer = this.core.tracer
    if (tracer !== undefined && tracer.sampled()) return tracer.span('mdelete', this.#region.name, () => this.#mdelete(keys), removedOf)
    return this.#mdelete(keys)
  }

  #mdelete(keys: readonly string[]): Promise<number> {
    try {
      this.#scope.open()
      checkKeys(keys, this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    return this.#writer === undefined ? this.#scope.deleteKeys(keys) : this.#writer.delete(keys)
  }

  /** For each key, whether it has a live entry, in key order. */
  mhas(keys: readonly string[]): Promise<boolean[]> {
    try {
      this.#scope.open()
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
      this.#scope.open()
      if (glob !== undefined) this.#scope.checkGlob(glob)
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
        this.#scope.open()
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
    if (match !== undefined) this.#scope.checkGlob(match, 'options.match')
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 100_000) {
      throw new InvalidOptionError(`options.count must be an integer from 1 to 100000 (got ${describe(count)})`)
    }
    return { match, count }
  }

  /** Removes the live keys matching `glob`; resolves how many. */
  deleteByPattern(glob: string): Promise<number> {
    try {
      this.#scope.open()
      this.#scope.checkGlob(glob)
    } catch (err) {
      return rejected(err)
    }
    this.core.bus?.publish({ type: BusOpType.PATTERN, region: this.#region.name, glob })
    const local = this.#scope.deletePattern(glob)
    const l2 = this.core.l2
    if (l2 === undefined) return local
    const g = new Glob(glob)
    return Promise.all([local, l2.deleteMatching(this.#region.name, glob, (k) => g.matches(k))]).then(([n]) => n)
  }

  /** Removes every entry of the region; resolves how many live entries there were. */
  clear(): Promise<number> {
    try {
      this.#scope.open()
    } catch (err) {
      return rejected(err)
    }
    this.core.bus?.publish({ type: BusOpType.CLEAR, region: this.#region.name })
    const local = this.#scope.clear()
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
      this.#scope.open()
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
    return this.#scope.invalidateTag(tag)
  }

  /** @internal A snapshot's entry, stored locally only; false when it does not fit this region. */
  restoreEntry(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<boolean> {
    try {
      checkKey(key, this.core.options.maxKeyBytes)
      this.#scope.checkSize(key, enc, opts)
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
    return applyRemote(this.#scope, op, origin)
  }

  /** @internal Empties the region without publishing (a bus flush). Issues its ops before it returns. */
  flushLocal(): Promise<number> {
    return flushLocal(this.#scope)
  }

  /** Removes expired entries now (shards also sweep them in the background); resolves how many. */
  cleanupExpired(): Promise<number> {
    try {
      this.#scope.open()
    } catch (err) {
      return rejected(err)
    }
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendCleanup(this.core.router, this.#region.index, c)
    return c.promise
  }
}

/** The pairs of mset's `entries`, whichever of its forms they come in. */
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
