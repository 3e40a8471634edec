/**
 * A region's write-through to its backing store (`regions.<name>.writeThrough`):
 * what `set`, `mset`, `delete` and `mdelete` do on such a region, on the
 * thread that created the cache (attached threads relay them here:
 * {@link RegionWriter} is what both offer the region's API).
 *
 * `sync`: the store first, the cache once the store confirmed, one key's
 * writes one after another (a later write of a key waits for the earlier
 * one, so store and cache end in the same order). A store that fails, or does
 * not answer within `timeout`, leaves its own state unknown (a timed-out
 * write may still land), so the key is dropped from the cache, its peers and
 * L2 rather than kept at a value the store may no longer hold: the caller gets
 * `E_WRITE_THROUGH`, and the next read loads what the store has.
 *
 * `async`: the cache first, then the store behind through the bounded,
 * retried {@link WriteQueue}. A full queue refuses the write before the cache
 * sees it. A write the store never took (its attempts spent) is dropped from
 * the cache as well, so that the cache does not serve what the store lacks,
 * and reported as a `'writeError'` event.
 *
 * Either way, while a key's store call is pending, getOrCompute does not
 * cache what its loader read (it may predate the write): see {@link busy}.
 */
import { WriteThroughError, WriteQueueFullError } from '../errors.js'
import { plural } from '../messages.js'
import type { ResolvedSet } from '../options/operations.js'
import type { ResolvedWriteThrough, WriteInfo } from '../options/write_through.js'
import { decodeValue } from '../wire/values.js'
import { encodeL2 } from '../redis/l2_codec.js'
import type { EncodedValue } from '../wire/values.js'
import type { WriteThroughStats } from '../ops/stats.js'
import { WriteQueue } from './write_queue.js'
import { WriteMarks } from '../wire/write_marks.js'
import type { QueuedWrite } from './write_queue.js'

/** What the region's API needs to store and delete on a write-through region. */
export interface RegionWriter {
  readonly mode: 'sync' | 'async'
  /** A validated set (no nx/xx); resolves true once stored. */
  set(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<boolean>
  /** Validated sets; resolves how many were stored, or rejects with {@link WriteThroughError} naming the keys the store failed. */
  mset(list: readonly (readonly [string, EncodedValue])[], opts: ResolvedSet): Promise<number>
  /** Resolves how many live entries the cache removed. */
  delete(keys: readonly string[]): Promise<number>
  /** Whether a write of `key` is pending here: a fill must not be cached. */
  busy(key: string): boolean
  /** Changes whenever a write of `key` starts here (src/wire/write_marks.ts): a fill read before it must not be cached. */
  mark(key: string): number
}

/** The cache side of a write-through: the region's own steps, without the store (src/api/scope.ts). */
export interface CacheSide {
  readonly name: string
  readonly defaultTtl: number
  readonly compressMinBytes: number
  store(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<boolean>
  deleteKeys(keys: readonly string[]): Promise<number>
  decode(enc: EncodedValue): unknown
}

/** The `'writeError'` event: an `async` region gave up a write or delete. */
export interface WriteErrorEvent {
  region: string
  key: string
  op: 'write' | 'delete'
  /** Calls made. */
  attempts: number
  /** The last call's error. */
  error: Error
}

export class WriteThrough implements RegionWriter {
  readonly mode: 'sync' | 'async'
  readonly #counters = { writes: 0, deletes: 0, failures: 0, retries: 0, dropped: 0, coalesced: 0 }
  /** `sync`: the last write of each key with one pending (later writes of the key chain after it). */
  readonly #tails = new Map<string, Promise<unknown>>()
  readonly #queue: WriteQueue | undefined
  readonly #marks = new WriteMarks()

  constructor(
    readonly o: ResolvedWriteThrough,
    readonly cache: CacheSide,
    /** Reports an `async` write given up. */
    readonly report: (e: WriteErrorEvent) => void,
  ) {
    this.mode = o.mode
    if (o.mode === 'async') {
      this.#queue = new WriteQueue(o, this.#counters, (w) => this.#callFor(w), (w, err) => this.#gaveUp(w, err))
    }
  }

  set(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<boolean> {
    this.#marks.bump(key)
    const q = this.#queue
    if (q === undefined) return this.#serial(key, () => this.#syncSet(key, enc, opts))
    if (!q.fits([key])) return Promise.reject(this.#full(1))
    q.add(key, enc, opts)
    return this.cache.store(key, enc, opts)
  }

  async mset(list: readonly (readonly [string, EncodedValue])[], opts: ResolvedSet): Promise<number> {
    const q = this.#queue
    if (q !== undefined) {
      if (!q.fits(list.map(([k]) => k))) throw this.#full(list.length)
      for (const [key, enc] of list) {
        this.#marks.bump(key)
        q.add(key, enc, opts)
      }
      const stored = await Promise.all(list.map(([key, enc]) => this.cache.store(key, enc, opts)))
      return stored.filter(Boolean).length
    }
    const settled = await Promise.allSettled(list.map(([key, enc]) => this.set(key, enc, opts)))
    return this.#outcome(settled, list.map(([k]) => k), (r) => (r === true ? 1 : 0))
  }

  async delete(keys: readonly string[]): Promise<number> {
    const q = this.#queue
    if (q !== undefined) {
      if (!q.fits(keys)) throw this.#full(keys.length)
      for (const key of keys) {
        this.#marks.bump(key)
        q.add(key, undefined, undefined)
      }
      return this.cache.deleteKeys(keys)
    }
    for (const key of keys) this.#marks.bump(key)
    const settled = await Promise.allSettled(keys.map((key) => this.#serial(key, () => this.#syncDelete(key))))
    return this.#outcome(settled, keys, (n) => n as number)
  }

  busy(key: string): boolean {
    return this.#tails.has(key) || (this.#queue?.has(key) ?? false)
  }

  mark(key: string): number {
    return this.#marks.mark(key)
  }

  /** Resolves once every queued store call is done or given up (close() waits for it). */
  flush(): Promise<void> {
    return this.#queue?.flush() ?? Promise.all(this.#tails.values()).then(() => {})
  }

  stats(): WriteThroughStats {
    return { mode: this.mode, ...this.#counters, queued: this.#queue?.depth ?? 0 }
  }

  resetStats(): void {
    const c = this.#counters
    c.writes = c.deletes = c.failures = c.retries = c.dropped = c.coalesced = 0
  }

  async #syncSet(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<boolean> {
    try {
      await this.#write(key, enc, opts)
    } catch (err) {
      throw await this.#failed(key, 'write', err)
    }
    return this.cache.store(key, enc, opts)
  }

  async #syncDelete(key: string): Promise<number> {
    try {
      await this.#remove(key)
    } catch (err) {
      throw await this.#failed(key, 'delete', err)
    }
    return this.cache.deleteKeys([key])
  }

  /** After a failed sync call: the key leaves the cache (the store's state is unknown), and the caller gets why. */
  async #failed(key: string, op: 'write' | 'delete', err: unknown): Promise<WriteThroughError> {
    await this.cache.deleteKeys([key]).catch(() => {})
    const why = err instanceof Error ? err.message : String(err)
    return new WriteThroughError(
      `regions.${this.cache.name}.writeThrough.store failed to ${op} ${JSON.stringify(key)}: ${why}; the key was dropped from the cache`,
      [key],
      { cause: err },
    )
  }

  /** An mset's or mdelete's result: the sum, or the first failure with every failed key. */
  #outcome(settled: PromiseSettledResult<unknown>[], keys: readonly string[], count: (r: unknown) => number): number {
    let n = 0
    const failed: string[] = []
    let first: unknown
    for (let i = 0; i < settled.length; i++) {
      const s = settled[i]!
      if (s.status === 'fulfilled') n += count(s.value)
      else {
        failed.push(keys[i]!)
        first ??= s.reason
      }
    }
    if (failed.length === 0) return n
    if (failed.length === 1) throw first
    const cause = (first as WriteThroughError).cause ?? first
    throw new WriteThroughError(
      `regions.${this.cache.name}.writeThrough.store failed ${plural(failed.length, 'key')} of ${keys.length} (the others went through): ` +
        `${cause instanceof Error ? cause.message : String(cause)}; the failed keys were dropped from the cache`,
      failed,
      { cause },
    )
  }

  /** Runs `run` after the pending write of `key`, if any: one key's writes reach store and cache in order. */
  #serial<T>(key: string, run: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key)
    const p = prev === undefined ? run() : prev.then(run, run)
    const tail = p.then(
      () => {},
      () => {},
    )
    this.#tails.set(key, tail)
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return p
  }

  #callFor(w: QueuedWrite): Promise<void> {
    return w.enc === undefined ? this.#remove(w.key) : this.#write(w.key, w.enc, w.opts!)
  }

  async #write(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<void> {
    const ttl = opts.ttl ?? this.cache.defaultTtl
    const tier = this.o.tier
    if (tier !== undefined) {
      // A tier takes the encoded value, as the tiers below the shards do (src/tiers/member.ts).
      const bytes = encodeL2(enc, this.cache.compressMinBytes, opts.tags)
      await this.#timed(() => tier.set(this.cache.name, key, { bytes, ttlMs: ttl, tags: opts.tags }), 'write', key)
      this.#counters.writes++
      return
    }
    const info: WriteInfo = { region: this.cache.name, ttlMs: ttl === Infinity ? undefined : ttl, tags: opts.tags }
    // A copy, decoded from what the cache stored: the caller may change its object after set() returned.
    const value = this.cache.decode(enc)
    await this.#timed(() => this.o.store!.write(key, value, info), 'write', key)
    this.#counters.writes++
  }

  async #remove(key: string): Promise<void> {
    const tier = this.o.tier
    await this.#timed(() => (tier !== undefined ? tier.delete(this.cache.name, [key]) : this.o.store!.delete(key, { region: this.cache.name })), 'delete', key)
    this.#counters.deletes++
  }

  /** The store call, failed when it throws, rejects, or has not settled within `timeout`. */
  #timed(call: () => unknown, op: string, key: string): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer to ${op}(${JSON.stringify(key)}) within ${this.o.timeoutMs} ms (writeThrough.timeout)`)), this.o.timeoutMs)
    })
    return Promise.race([Promise.resolve().then(call), timeout])
      .catch((err: unknown) => {
        if (!this.#queue) this.#counters.failures++
        throw err
      })
      .finally(() => clearTimeout(timer))
  }

  #gaveUp(w: QueuedWrite, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err))
    // A value the store never took is not served either (a delete given up leaves nothing to drop).
    if (w.enc !== undefined) void this.cache.deleteKeys([w.key]).catch(() => {})
    this.report({ region: this.cache.name, key: w.key, op: w.enc === undefined ? 'delete' : 'write', attempts: w.attempts, error })
  }

  #full(n: number): WriteQueueFullError {
    return new WriteQueueFullError(
      `regions.${this.cache.name}.writeThrough: the write-behind queue holds ${this.#queue!.depth} store calls ` +
        `(maxQueue ${this.o.maxQueue}), no room for ${plural(n, 'more key')}: the store is slow or down; nothing was changed`,
    )
  }
}

/** What the async store calls are given back as: decoded with the cache's codec. */
export function decodeCopy(enc: EncodedValue, codec: Parameters<typeof decodeValue>[2]): unknown {
  return decodeValue(enc.tag, Buffer.from(enc.bytes.buffer, enc.bytes.byteOffset, enc.bytes.byteLength), codec)
}
