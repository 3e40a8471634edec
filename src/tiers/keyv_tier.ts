/**
 * Any Keyv store as a cache tier (`tiers: [{ keyv: store }]`): PostgreSQL
 * (`@keyv/postgres`), SQLite, MongoDB, Redis, a `Map`, or a `Keyv` instance
 * (its store and namespace are used). The store is driven directly, through
 * the Keyv storage adapter interface (`get`, `set`, `delete`, `clear`, and
 * `iterator` when it has one), so that its failures reach the chain (a
 * `Keyv` instance would swallow them) and no Keyv package is needed.
 *
 * Keys are `<namespace>:<region>:<key>` (the namespace: the Keyv
 * instance's, or `shardcache`), values a JSON string holding the encoded
 * bytes (base64), the expiry time and the tags. Expiry is checked on read
 * (many stores keep no TTL of their own); an expired entry reads as absent.
 * Pattern deletes, region clears and tag invalidations walk the namespace
 * with the store's `iterator`; a store without one is cleared whole (its
 * namespace) instead, which costs misses, never a stale read.
 */
import { describe } from '../messages.js'
import type { Tier, TierEntry, TierHit } from './tier.js'

/** The part of a Keyv storage adapter (KeyvStoreAdapter) the tier uses. */
export interface KeyvStoreLike {
  get(key: string): Promise<unknown> | unknown
  set(key: string, value: unknown, ttl?: number): Promise<unknown> | unknown
  delete(key: string): Promise<unknown> | unknown
  clear(): Promise<unknown> | unknown
  deleteMany?(keys: string[]): Promise<unknown>
  iterator?(namespace?: string): AsyncGenerator<[string, unknown], void> | AsyncIterable<[string, unknown]>
  namespace?: string
  on?(event: string, listener: (...a: unknown[]) => void): unknown
}

/** A Keyv instance, as far as the tier needs it: its store and namespace. */
interface KeyvLike {
  opts: { store: KeyvStoreLike }
  namespace?: string
}

function isStore(x: unknown): x is KeyvStoreLike {
  if (x === null || typeof x !== 'object') return false
  const k = x as Partial<KeyvStoreLike>
  return typeof k.get === 'function' && typeof k.set === 'function' && typeof k.delete === 'function' && typeof k.clear === 'function'
}

/** A Keyv instance's store, or undefined when `x` is not a Keyv instance. */
function storeOf(x: unknown): KeyvStoreLike | undefined {
  const opts = (x as Partial<KeyvLike> | null)?.opts
  return opts !== null && typeof opts === 'object' && isStore(opts.store) ? opts.store : undefined
}

/** Whether `x` can be a `keyv` tier: a Keyv instance or a Keyv store adapter. */
export function isKeyvLike(x: unknown): boolean {
  return storeOf(x) !== undefined || isStore(x)
}

interface Stored {
  /** base64 of the encoded bytes */
  b: string
  /** expiry, ms since the epoch; 0: none */
  e: number
  /** tags */
  t?: readonly string[]
}

export class KeyvTier implements Tier {
  readonly #store: KeyvStoreLike
  readonly #ns: string
  /** Errors the store reported as events (an iterator that stops on a failure says so only there). */
  #reported = 0

  constructor(keyvOrStore: unknown) {
    const inner = storeOf(keyvOrStore)
    if (inner !== undefined) {
      this.#store = inner
      this.#ns = (keyvOrStore as KeyvLike).namespace ?? inner.namespace ?? 'keyv'
    } else if (isStore(keyvOrStore)) {
      this.#store = keyvOrStore
      // The adapter's own clear() and iterator() follow its namespace, as under Keyv.
      keyvOrStore.namespace ??= 'shardcache'
      this.#ns = keyvOrStore.namespace
    } else {
      throw new TypeError(`not a Keyv instance or store (got ${describe(keyvOrStore)})`)
    }
    // A store's 'error' event without a listener would throw: counted, and failures reach the chain by rejections.
    this.#store.on?.('error', () => {
      this.#reported++
    })
  }

  #key(region: string, key: string): string {
    return `${this.#ns}:${region}:${key}`
  }

  async get(region: string, key: string): Promise<TierHit | undefined> {
    const raw = await this.#store.get(this.#key(region, key))
    const s = parse(raw)
    if (s === undefined) return undefined
    const now = Date.now()
    if (s.e !== 0 && s.e <= now) return undefined
    return { bytes: Buffer.from(s.b, 'base64'), ttlMs: s.e === 0 ? Infinity : s.e - now, tags: s.t }
  }

  async set(region: string, key: string, entry: TierEntry): Promise<void> {
    const finite = entry.ttlMs !== Infinity
    const s: Stored = { b: Buffer.from(entry.bytes.buffer, entry.bytes.byteOffset, entry.bytes.byteLength).toString('base64'), e: finite ? Date.now() + entry.ttlMs : 0 }
    if (entry.tags !== undefined && entry.tags.length > 0) s.t = entry.tags
    const ok = await this.#store.set(this.#key(region, key), JSON.stringify(s), finite ? entry.ttlMs : undefined)
    if (ok === false) throw new Error('the Keyv store refused the write (set returned false)')
  }

  async delete(region: string, keys: readonly string[]): Promise<void> {
    const ks = keys.map((k) => this.#key(region, k))
    if (this.#store.deleteMany !== undefined) await this.#store.deleteMany(ks)
    else await Promise.all(ks.map((k) => this.#store.delete(k)))
  }

  deleteMatching(region: string, _glob: string, matches: (key: string) => boolean): Promise<void> {
    const prefix = `${this.#ns}:${region}:`
    return this.#walk((k) => k.startsWith(prefix) && matches(k.slice(prefix.length)))
  }

  clear(region: string): Promise<void> {
    const prefix = `${this.#ns}:${region}:`
    return this.#walk((k) => k.startsWith(prefix))
  }

  invalidateTag(tag: string): Promise<void> {
    return this.#walk((_k, raw) => parse(raw)?.t?.includes(tag) === true)
  }

  async health(): Promise<boolean> {
    await this.#store.get(`${this.#ns}:\u0000health`)
    return true
  }

  /** Deletes the namespace's entries `drop` picks, walking it with the store's iterator; without one, clears the namespace. */
  async #walk(drop: (key: string, raw: unknown) => boolean): Promise<void> {
    const it = this.#entries()
    if (it === undefined) {
      await this.#store.clear()
      return
    }
    const before = this.#reported
    const doomed: string[] = []
    for await (const [k, raw] of it) if (drop(k, raw)) doomed.push(k)
    // An iterator that failed midway may just stop: its 'error' event is the only sign.
    if (this.#reported !== before) throw new Error('the Keyv store reported an error while its keys were listed')
    for (let i = 0; i < doomed.length; i += 500) {
      const part = doomed.slice(i, i + 500)
      if (this.#store.deleteMany !== undefined) await this.#store.deleteMany(part)
      else await Promise.all(part.map((k) => this.#store.delete(k)))
    }
  }

  #entries(): AsyncIterable<[string, unknown]> | Iterable<[string, unknown]> | undefined {
    if (typeof this.#store.iterator === 'function') return this.#store.iterator(this.#ns)
    // Keyv's default store, a Map, lists its entries itself.
    if (this.#store instanceof Map) {
      const prefix = `${this.#ns}:`
      return [...(this.#store as Map<string, unknown>)].filter(([k]) => k.startsWith(prefix))
    }
    return undefined
  }
}

/** A stored entry, or undefined when absent or not ours (read as a miss). */
function parse(raw: unknown): Stored | undefined {
  if (raw === undefined || raw === null) return undefined
  let s: unknown = raw
  if (typeof raw === 'string') {
    try {
      s = JSON.parse(raw)
    } catch {
      return undefined
    }
  }
  const o = s as Partial<Stored>
  if (o === null || typeof o !== 'object' || typeof o.b !== 'string' || typeof o.e !== 'number') return undefined
  return o as Stored
}
