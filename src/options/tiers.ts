/**
 * `createCache({ tiers })`: the tiers below the shards besides the Redis
 * `l2`, in order (the chain itself is src/tiers/chain.ts). Each is a Keyv
 * store (`{ keyv }`, adapted by src/tiers/keyv_tier.ts) or an implementation
 * of the {@link Tier} contract (`{ tier }`).
 */
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import { isPlainObject } from '../wire/values.js'
import { KeyvTier, isKeyvLike } from '../tiers/keyv_tier.js'
import type { ResolvedTier } from '../tiers/member.js'
import { missingTierMethods } from '../tiers/tier.js'
import type { Tier } from '../tiers/tier.js'
import { parseTtl, positiveInteger, rejectUnknownKeys } from './parse.js'
import type { Ttl } from './parse.js'

/** One of `tiers`: `keyv` or `tier`, and how the cache uses it. */
export interface TierOptions {
  /** A Keyv store (`new KeyvPostgres(uri)`, a `Map`, …) or a `Keyv` instance: any Keyv store is a tier. */
  keyv?: unknown
  /** An implementation of the tier contract ({@link Tier}). */
  tier?: Tier
  /** Its name in stats and messages. @default 'keyv' or 'tier', with its level (`keyv-l3`) */
  name?: string
  /** Entries live this many times their TTL in this tier (a TTL-less entry stays until written or deleted). @default 1 */
  ttlScale?: number
  /** 1 in this many hits in this tier are copied into the tiers above it and the shards. @default 1 */
  promotion?: { frequency?: number }
  /** A call of the tier not settled by then fails (a read is a miss, a write is repaired later). @default '1s' */
  timeout?: Ttl
  /** How long the tier is not called after 5 failures in a row (then one call probes it). @default '5s' */
  breakDuration?: Ttl
}

const TIER_KEYS = ['keyv', 'tier', 'name', 'ttlScale', 'promotion', 'timeout', 'breakDuration']

/** `first`: the level of the first of `tiers` (2 without `l2`, 3 with it). */
export function resolveTiers(o: unknown, first: number): ResolvedTier[] {
  if (!Array.isArray(o)) throw new InvalidOptionError(`options.tiers must be an array of tiers like [{ keyv: store }] (got ${describe(o)})`)
  return o.map((t, i) => {
    const at = `options.tiers[${i}]`
    if (!isPlainObject(t)) throw new InvalidOptionError(`${at} must be an object like { keyv: store } or { tier } (got ${describe(t)})`)
    rejectUnknownKeys(t, TIER_KEYS, `${at}.`)
    if ((t.keyv === undefined) === (t.tier === undefined)) throw new InvalidOptionError(`${at} must have exactly one of keyv and tier`)
    let tier: Tier
    if (t.keyv !== undefined) {
      if (!isKeyvLike(t.keyv)) throw new InvalidOptionError(`${at}.keyv must be a Keyv store (get, set, delete, clear) or a Keyv instance (got ${describe(t.keyv)})`)
      tier = new KeyvTier(t.keyv)
    } else {
      const missing = missingTierMethods(t.tier)
      if (missing.length > 0) throw new InvalidOptionError(`${at}.tier must implement the Tier contract: missing ${missing.join(', ')} (got ${describe(t.tier)})`)
      tier = t.tier as Tier
    }
    const level = `l${first + i}`
    const name = t.name ?? `${t.keyv !== undefined ? 'keyv' : 'tier'}-${level}`
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError(`${at}.name must be a non-empty string (got ${describe(name)})`)
    const ttlScale = t.ttlScale ?? 1
    if (typeof ttlScale !== 'number' || !Number.isFinite(ttlScale) || ttlScale <= 0) throw new InvalidOptionError(`${at}.ttlScale must be a positive number (got ${describe(ttlScale)})`)
    let promotionFrequency = 1
    if (t.promotion !== undefined) {
      if (!isPlainObject(t.promotion)) throw new InvalidOptionError(`${at}.promotion must be an object like { frequency: 10 } (got ${describe(t.promotion)})`)
      rejectUnknownKeys(t.promotion, ['frequency'], `${at}.promotion.`)
      if (t.promotion.frequency !== undefined) promotionFrequency = positiveInteger(t.promotion.frequency, `${at}.promotion.frequency`)
    }
    const timeoutMs = t.timeout === undefined ? 1000 : parseTtl(t.timeout, `${at}.timeout`)
    if (timeoutMs === Infinity) throw new InvalidOptionError(`${at}.timeout must be finite: a tier that hangs would hold its reads forever`)
    const breakDurationMs = t.breakDuration === undefined ? 5000 : parseTtl(t.breakDuration, `${at}.breakDuration`)
    if (breakDurationMs === Infinity) throw new InvalidOptionError(`${at}.breakDuration must be finite`)
    return { name, tier, ttlScale, promotionFrequency, timeoutMs, breakDurationMs }
  })
}
