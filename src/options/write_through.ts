/**
 * A region's `writeThrough` option: the backing store its `set` and `delete`
 * also write, and how (`sync`: the store first, the cache once it confirmed;
 * `async`: the cache first, the store behind through a bounded, retried
 * queue). The machinery is in src/backing/write_through.ts.
 */
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import { isPlainObject } from '../wire/values.js'
import { parseTtl, positiveInteger, rejectUnknownKeys } from './parse.js'
import type { Ttl } from './parse.js'
import { missingTierMethods } from '../tiers/tier.js'
import type { Tier } from '../tiers/tier.js'

/** What a write tells the store besides the key and the value. */
export interface WriteInfo {
  /** The region written. */
  region: string
  /** The entry's TTL in the cache (ms); undefined when it never expires there. */
  ttlMs: number | undefined
  /** The tags given to `set`, if any. */
  tags: string[] | undefined
}

/**
 * A backing store: where a region's writes go besides the cache. Either
 * function may return a promise; a rejection (or a throw) fails the write.
 * Both must be idempotent (an upsert, a delete of what may be absent): an
 * `async` region retries a failed call, and a call that timed out may have
 * landed.
 */
export interface WriteStore {
  /** Stores `value` (a copy: what a `get` of the key would return) under `key`. */
  write(key: string, value: unknown, info: WriteInfo): unknown
  /** Removes `key`. An absent key is not an error. */
  delete(key: string, info: { region: string }): unknown
}

/** `regions.<name>.writeThrough`. */
export interface WriteThroughOptions {
  /**
   * The store `set` and `delete` also write: `{ write, delete }` (see
   * {@link WriteStore}), or a {@link Tier} (such as `postgresTier(...)`),
   * which is given the encoded value, its TTL and tags, as tiers are; the
   * same tier in `tiers` then serves reads of what was written through.
   */
  store: WriteStore | Tier
  /**
   * - `'sync'`: the store is written first and the cache only once it
   *   confirmed; `set` resolves after both. A store failure rejects with
   *   `E_WRITE_THROUGH` and drops the key from the cache (the store's state is
   *   unknown), so the next read loads from the store.
   * - `'async'`: `set` resolves once the shard stored the value; the store is
   *   written behind, through a queue of at most `maxQueue` keys (a newer
   *   write of a queued key replaces it), each call retried up to `attempts`
   *   times. A write the store never took is dropped from the cache too, and
   *   reported as a `'writeError'` event.
   * @default 'sync'
   */
  mode?: 'sync' | 'async'
  /**
   * A store call that has not settled after this long fails (and, in
   * `async` mode, is retried).
   * @default '5s'
   */
  timeout?: Ttl
  /** `async`: most keys waiting for the store; a write past it rejects with `E_WRITE_QUEUE_FULL`, changing nothing. @default 10000 */
  maxQueue?: number
  /** `async`: store calls running at once (never two for one key). @default 4 */
  concurrency?: number
  /** `async`: calls of one write before it is given up. @default 10 */
  attempts?: number
  /** `async`: the first retry's delay, doubled for each next one up to 5 s. @default '100ms' */
  retryDelay?: Ttl
}

/** `writeThrough` after validation. */
export interface ResolvedWriteThrough {
  /** A `{ write, delete }` store; undefined when `tier` is the store. */
  store: WriteStore | undefined
  /** A tier as the store. */
  tier: Tier | undefined
  mode: 'sync' | 'async'
  timeoutMs: number
  maxQueue: number
  concurrency: number
  attempts: number
  retryDelayMs: number
}

/** The longest wait between two calls of one write. */
export const MAX_RETRY_DELAY_MS = 5000

const KEYS = ['store', 'mode', 'timeout', 'maxQueue', 'concurrency', 'attempts', 'retryDelay']

export function resolveWriteThrough(o: unknown, at: string): ResolvedWriteThrough {
  if (!isPlainObject(o)) throw new InvalidOptionError(`${at} must be an object like { store: { write, delete }, mode: 'sync' } (got ${describe(o)})`)
  rejectUnknownKeys(o, KEYS, `${at}.`)
  const store = o.store as Partial<WriteStore & Tier> | undefined
  const tier = missingTierMethods(store).length === 0 ? (store as Tier) : undefined
  if (tier === undefined && (store === null || typeof store !== 'object' || typeof store.write !== 'function' || typeof store.delete !== 'function')) {
    throw new InvalidOptionError(`${at}.store must be an object with write(key, value, info) and delete(key, info) functions, or a Tier (got ${describe(store)})`)
  }
  const mode = o.mode ?? 'sync'
  if (mode !== 'sync' && mode !== 'async') throw new InvalidOptionError(`${at}.mode must be "sync" or "async" (got ${describe(mode)})`)
  const timeoutMs = o.timeout === undefined ? 5000 : parseTtl(o.timeout, `${at}.timeout`)
  if (timeoutMs === Infinity) throw new InvalidOptionError(`${at}.timeout must be finite: a store that hangs would hold its writes forever`)
  const retryDelayMs = o.retryDelay === undefined ? 100 : parseTtl(o.retryDelay, `${at}.retryDelay`)
  if (retryDelayMs > MAX_RETRY_DELAY_MS) throw new InvalidOptionError(`${at}.retryDelay must be at most ${MAX_RETRY_DELAY_MS} ms (got ${describe(o.retryDelay)})`)
  return {
    store: tier === undefined ? (store as WriteStore) : undefined,
    tier,
    mode,
    timeoutMs,
    maxQueue: o.maxQueue === undefined ? 10_000 : positiveInteger(o.maxQueue, `${at}.maxQueue`),
    concurrency: o.concurrency === undefined ? 4 : positiveInteger(o.concurrency, `${at}.concurrency`, 1024),
    attempts: o.attempts === undefined ? 10 : positiveInteger(o.attempts, `${at}.attempts`, 1000),
    retryDelayMs,
  }
}
