/**
 * `cache.batch()`: several operations sent together, each with its own
 * outcome. The operations are issued in one go when `exec()` is called, so
 * the router puts them in the same frames (one per shard) and a shard applies
 * those for it in the order they were added.
 */
import type { SetOptions } from '../options/operations.js'
import type { Ttl } from '../options/parse.js'

/**
 * @internal What a batch calls: the region's own operations (a
 * {@link CacheRegion}), named here by shape so that this file and the region's
 * do not import each other.
 */
export interface BatchTarget {
  get(key: string): Promise<unknown>
  set(key: string, value: unknown, options?: SetOptions): Promise<unknown>
  delete(key: string): Promise<unknown>
  has(key: string): Promise<unknown>
  incr(key: string, by?: number): Promise<unknown>
  cas(key: string, expected: unknown, next: unknown, options?: SetOptions): Promise<unknown>
  take(key: string): Promise<unknown>
  touch(key: string, ttl: Ttl): Promise<unknown>
}

/** One operation's outcome: `[null, result]` or `[error, undefined]`. */
export type BatchResult = [Error | null, unknown]

export class Batch {
  readonly #region: BatchTarget
  readonly #ops: (() => Promise<unknown>)[] = []

  /** @internal Use `cache.batch()` (or `region.batch()`). */
  constructor(region: BatchTarget) {
    this.#region = region
  }

  get(key: string): this {
    return this.#add(() => this.#region.get(key))
  }

  set(key: string, value: unknown, options?: SetOptions): this {
    return this.#add(() => this.#region.set(key, value, options))
  }

  delete(key: string): this {
    return this.#add(() => this.#region.delete(key))
  }

  has(key: string): this {
    return this.#add(() => this.#region.has(key))
  }

  incr(key: string, by?: number): this {
    return this.#add(() => this.#region.incr(key, by))
  }

  cas(key: string, expected: unknown, next: unknown, options?: SetOptions): this {
    return this.#add(() => this.#region.cas(key, expected, next, options))
  }

  take(key: string): this {
    return this.#add(() => this.#region.take(key))
  }

  touch(key: string, ttl: Ttl): this {
    return this.#add(() => this.#region.touch(key, ttl))
  }

  /** Operations added so far. */
  get length(): number {
    return this.#ops.length
  }

  /**
   * Issues every operation and resolves their outcomes in the order they
   * were added; one that fails (bad input, a shard crash, `E_NOT_A_NUMBER`)
   * does not fail the others. A batch can be executed once.
   */
  async exec(): Promise<BatchResult[]> {
    const ops = this.#ops.splice(0)
    // All issued before the first await: they share frames and keep their order per shard.
    const running = ops.map((op) => op())
    const settled = await Promise.allSettled(running)
    return settled.map((r): BatchResult => (r.status === 'fulfilled' ? [null, r.value] : [r.reason as Error, undefined]))
  }

  #add(op: () => Promise<unknown>): this {
    this.#ops.push(op)
    return this
  }
}
