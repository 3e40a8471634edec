/**
 * The contract of a cache tier below the shards (`createCache({ tiers })`):
 * what any store implements to be an L2, L3 or further tier. Values reach a
 * tier as opaque bytes (the cache's own encoding of the value, its type and,
 * for large values, LZ4 compression), so a tier never needs the codec and
 * returns exactly what it was given.
 *
 * A tier does not need to be careful about failures: each call runs under
 * the chain's timeout and circuit breaker (./member.ts), and a write that
 * fails leaves the key unread from that tier until it could be deleted there.
 */

/** The methods every {@link Tier} has (`stats` and `close` are optional). */
export const TIER_METHODS = ['get', 'set', 'delete', 'deleteMatching', 'clear', 'invalidateTag', 'health'] as const

/** The contract's methods `x` lacks (all of them when it is not an object). */
export function missingTierMethods(x: unknown): string[] {
  if (x === null || typeof x !== 'object') return [...TIER_METHODS]
  return TIER_METHODS.filter((m) => typeof (x as Record<string, unknown>)[m] !== 'function')
}

/** What a tier stores for a key. */
export interface TierEntry {
  /** The encoded value: store it as given, return it as given. */
  bytes: Uint8Array
  /** Time to live (ms) in this tier, already scaled by its `ttlScale`; Infinity: none. */
  ttlMs: number
  /** The tags given to `set` (for {@link Tier.invalidateTag}). */
  tags: readonly string[] | undefined
}

/** What a tier's read finds. */
export interface TierHit {
  bytes: Uint8Array
  /** Remaining time to live (ms); Infinity: none. */
  ttlMs: number
  /** The entry's tags, when the tier keeps them: a copy promoted into the tiers above keeps them, so that `invalidateTag` finds it there. */
  tags?: readonly string[]
}

/** A tier of the cache: see the module's description. Every method may reject; the chain counts it and moves on. */
export interface Tier {
  /** The key's entry, or undefined (absent or expired). */
  get(region: string, key: string): Promise<TierHit | undefined>
  /** Stores (replaces) the key's entry. */
  set(region: string, key: string, entry: TierEntry): Promise<void>
  /** Removes the keys (absent ones are no error). */
  delete(region: string, keys: readonly string[]): Promise<void>
  /** Removes the region's keys that `matches` accepts (`glob` is the pattern it tests, for a store that can match natively). */
  deleteMatching(region: string, glob: string, matches: (key: string) => boolean): Promise<void>
  /** Removes every key of the region. */
  clear(region: string): Promise<void>
  /** Removes every key, of any region, stored with `tag`. */
  invalidateTag(tag: string): Promise<void>
  /** Resolves true when the tier can serve (a read went through); createCache asks it once. */
  health(): Promise<boolean>
  /** The tier's own figures, shown in `stats().tiers.<level>.store`. */
  stats?(): Record<string, number>
  /** Called by `cache.close()`. */
  close?(): Promise<void>
}
