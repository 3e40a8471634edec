/**
 * The write-behind queue of an `async` write-through region: store calls
 * waiting, running and waiting for a retry, at most `concurrency` running
 * and never two for one key, so that the store sees each key's writes in
 * the order they were made. A newer write of a key that is still waiting
 * replaces it (the store only needs the last one); one that comes while the
 * key's call runs waits for it. A failed call is retried after a delay
 * doubling from `retryDelay` up to 5 s, unless a newer write of its key came
 * meanwhile, up to `attempts` calls; then it is given up and reported.
 *
 * Retry timers are unref'd: a process that exits without closing its cache
 * does not wait for a store that is down (close() flushes the queue).
 */
import { MAX_RETRY_DELAY_MS } from '../options/write_through.js'
import type { ResolvedWriteThrough } from '../options/write_through.js'
import type { ResolvedSet } from '../options/operations.js'
import type { EncodedValue } from '../wire/values.js'

/** One key's pending store call: a write of its value, or a delete. */
export interface QueuedWrite {
  key: string
  /** The value to write; undefined for a delete. */
  enc: EncodedValue | undefined
  opts: ResolvedSet | undefined
  /** Calls made so far. */
  attempts: number
}

/** What the queue counts (the write-through's stats share it). */
export interface QueueCounters {
  failures: number
  retries: number
  dropped: number
  coalesced: number
}

export class WriteQueue {
  /** Not started yet, oldest first (a Map keeps insertion order; a replaced write keeps its place). */
  readonly #waiting = new Map<string, QueuedWrite>()
  readonly #running = new Map<string, QueuedWrite>()
  readonly #retrying = new Map<string, QueuedWrite>()
  #idle: (() => void)[] = []

  constructor(
    readonly o: ResolvedWriteThrough,
    readonly counters: QueueCounters,
    /** Makes the store call of `w`; rejects when it failed. */
    readonly call: (w: QueuedWrite) => Promise<void>,
    /** `w` was given up after its last failed call. */
    readonly gaveUp: (w: QueuedWrite, err: unknown) => void,
  ) {}

  /** Calls held: waiting, running, or waiting for a retry (a gauge). */
  get depth(): number {
    return this.#waiting.size + this.#running.size + this.#retrying.size
  }

  /** Whether writes of `keys` fit: a key already waiting is replaced, and takes no more room. */
  fits(keys: readonly string[]): boolean {
    let grows = 0
    for (const k of keys) if (!this.#waiting.has(k)) grows++
    return this.depth + grows <= this.o.maxQueue
  }

  /** Whether a store call of `key` is waiting, running or due for a retry. */
  has(key: string): boolean {
    return this.#waiting.has(key) || this.#running.has(key) || this.#retrying.has(key)
  }

  /** Queues a write (`enc` given) or a delete of `key`; the caller checked {@link fits}. */
  add(key: string, enc: EncodedValue | undefined, opts: ResolvedSet | undefined): void {
    const w: QueuedWrite = { key, enc, opts, attempts: 0 }
    if (this.#waiting.has(key)) this.counters.coalesced++
    // A write waiting for its retry is superseded: its timer finds it gone.
    else if (this.#retrying.delete(key)) this.counters.coalesced++
    this.#waiting.set(key, w)
    this.#pump()
  }

  /** Resolves once nothing is held (every call done, or given up). */
  flush(): Promise<void> {
    if (this.depth === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  #pump(): void {
    if (this.#running.size >= this.o.concurrency) return
    // Skips only keys whose call runs: at most `concurrency` of them.
    for (const [key, w] of this.#waiting) {
      if (this.#running.has(key)) continue
      this.#waiting.delete(key)
      this.#start(w)
      if (this.#running.size >= this.o.concurrency) return
    }
  }

  #start(w: QueuedWrite): void {
    this.#running.set(w.key, w)
    w.attempts++
    this.call(w).then(
      () => this.#finished(w),
      (err: unknown) => {
        this.counters.failures++
        if (!this.#waiting.has(w.key) && w.attempts < this.o.attempts) {
          this.counters.retries++
          this.#retrying.set(w.key, w)
          const delay = Math.min(this.o.retryDelayMs * 2 ** (w.attempts - 1), MAX_RETRY_DELAY_MS)
          setTimeout(() => {
            if (this.#retrying.get(w.key) !== w) return // superseded by a newer write
            this.#retrying.delete(w.key)
            this.#waiting.set(w.key, w)
            this.#pump()
          }, delay).unref()
        } else if (!this.#waiting.has(w.key)) {
          this.counters.dropped++
          this.gaveUp(w, err)
        }
        // else: a newer write of the key is waiting, and replaces this one.
        this.#finished(w)
      },
    )
  }

  #finished(w: QueuedWrite): void {
    this.#running.delete(w.key)
    this.#pump()
    if (this.depth === 0 && this.#idle.length > 0) {
      const idle = this.#idle
      this.#idle = []
      for (const f of idle) f()
    }
  }
}
