/**
 * `shardcache/keyv`: a Keyv storage adapter, so that code written for Keyv
 * (and the libraries built on it: `cacheable`, `cache-manager`) can keep a
 * shardcache underneath.
 *
 * ```ts
 * import Keyv from 'keyv'
 * import { KeyvShardcache } from 'shardcache/keyv'
 * const keyv = new Keyv({ store: new KeyvShardcache(cache), namespace: 'users' })
 * ```
 *
 * Keyv prefixes keys with its namespace (`users:42`) and serializes values
 * itself; the adapter stores what it is given, under the key it is given,
 * with Keyv's TTL as the entry's TTL. `clear()` removes the namespace's keys
 * only (a glob delete), or the whole region without a namespace. The adapter
 * does not own the cache: `disconnect()` leaves it open.
 *
 * `require('shardcache/keyv')` works too, on Node 20.19+.
 *
 * @packageDocumentation
 * @module shardcache/keyv
 */
// No top-level await in this module's graph: see src/index.ts.
import { EventEmitter } from 'node:events'
import type { Cache } from '../api/cache.js'
import type { CacheRegion } from '../api/region.js'

/** Options of {@link KeyvShardcache}. */
export interface KeyvShardcacheOptions {
  /** The region to store in. @default 'default' */
  region?: string
}

/** A value as Keyv's stores return it: whatever Keyv stored (its serialized string, by default). */
/** What a read resolves to: the value, or undefined on a miss. */
export type Stored<Value> = Value | undefined

/** Escapes glob specials, so that a namespace is matched literally. */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)
}

export class KeyvShardcache extends EventEmitter {
  /** Keyv reads `opts`; `dialect` names the store in its logs. */
  readonly opts: { dialect: 'shardcache'; url: string; region: string }
  /** Set by Keyv to its namespace. */
  namespace?: string | undefined
  readonly #r: CacheRegion

  constructor(cache: Cache, options: KeyvShardcacheOptions = {}) {
    super()
    const region = options.region ?? 'default'
    this.#r = cache.region(region)
    this.opts = { dialect: 'shardcache', url: 'shardcache://', region }
  }

  get<Value>(key: string): Promise<Stored<Value>> {
    return this.#r.get<Value>(key)
  }

  getMany<Value>(keys: string[]): Promise<Stored<Value>[]> {
    return this.#r.mget<Value>(keys)
  }

  /** Stores `value`; `ttl` in ms (Keyv's), none when absent or 0. */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    return this.#r.set(key, value, typeof ttl === 'number' && ttl > 0 ? { ttl } : undefined)
  }

  async setMany(entries: { key: string; value: unknown; ttl?: number }[]): Promise<void> {
    await Promise.all(entries.map((e) => this.set(e.key, e.value, e.ttl)))
  }

  delete(key: string): Promise<boolean> {
    return this.#r.delete(key)
  }

  /** Whether any of `keys` was deleted (Keyv's contract). */
  async deleteMany(keys: string[]): Promise<boolean> {
    return (await this.#r.mdelete(keys)) > 0
  }

  has(key: string): Promise<boolean> {
    return this.#r.has(key)
  }

  hasMany(keys: string[]): Promise<boolean[]> {
    return this.#r.mhas(keys)
  }

  /** Removes the namespace's keys (`<namespace>:*`), or every key of the region without a namespace. */
  async clear(): Promise<void> {
    if (this.namespace === undefined || this.namespace === '') await this.#r.clear()
    else await this.#r.deleteByPattern(`${escapeGlob(this.namespace)}:*`)
  }

  /**
   * `[key, value]` of the namespace's live entries (all of the region's
   * without one), read with `scanEntries`: page by page, never the whole
   * keyspace at once.
   */
  async *iterator<Value>(namespace?: string): AsyncGenerator<[string, Value], void> {
    const ns = namespace ?? this.namespace
    yield* this.#r.scanEntries<Value>(ns === undefined || ns === '' ? {} : { match: `${escapeGlob(ns)}:*` })
  }

  /** The cache belongs to the application: nothing to close here. */
  async disconnect(): Promise<void> {}
}
