/**
 * `createCache({ maintenance })`: scheduled upkeep of the shards (src/ops/maintenance.ts
 * does it): removing expired entries, and moving byte budget between the
 * shards of a region when one of them evicts far more than the others.
 */
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { ResolvedMaintenance } from '../ops/maintenance.js'
import { isPlainObject } from '../wire/values.js'
import { finiteDuration, parseSize, rejectUnknownKeys } from './parse.js'
import type { Size, Ttl } from './parse.js'

/** `createCache({ maintenance })`. */
export interface MaintenanceOptions {
  /**
   * Removes every region's expired entries on this schedule (`cleanupExpired()`),
   * besides the shards' own sweep, which visits a few slots at a time.
   * @default off
   */
  cleanup?: { every: Ttl }
  /**
   * Moves byte budget between a region's shards (keys hash to shards evenly,
   * but their sizes and churn may not): at every check, in each region with
   * a byte budget, when the shard that evicted most since the last check
   * evicted at least `threshold` times the average of the others (and at
   * least `minEvictions`), `step` of an even share moves to it from the shard
   * that evicted least. A shard's budget stays between `minShare` and
   * `maxShare` of an even share, and the region's total never changes. With
   * it, the largest entry a region takes is `minShare` of an even share.
   * @default off
   */
  rebalance?: { every: Ttl; threshold?: number; step?: number; minShare?: number; maxShare?: number; minEvictions?: number }
  /**
   * Compacts a shard's value arena for a region (copies its live entries
   * into a new one, so the memory a churn left free is given back) when the
   * free bytes in it are at least `minFreeRatio` times the live ones and at
   * least `minFreeBytes`. The shard pauses while it copies (measured in
   * `stats().maintenance.maxCompactPauseMs`); other threads' direct reads of
   * the region go through the shard until they have the new arena.
   * @default off
   */
  compact?: { every: Ttl; minFreeRatio?: number; minFreeBytes?: Size }
}

export function resolveMaintenance(v: unknown): ResolvedMaintenance {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.maintenance must be an object like { cleanup: { every: '1m' }, rebalance: { every: '30s' } } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['cleanup', 'rebalance', 'compact'], 'options.maintenance.')
  let cleanupMs: number | undefined
  if (v.cleanup !== undefined) {
    if (!isPlainObject(v.cleanup)) throw new InvalidOptionError(`options.maintenance.cleanup must be an object like { every: '1m' } (got ${describe(v.cleanup)})`)
    rejectUnknownKeys(v.cleanup, ['every'], 'options.maintenance.cleanup.')
    cleanupMs = finiteDuration(v.cleanup.every, 'options.maintenance.cleanup.every')
  }
  let rebalance: ResolvedMaintenance['rebalance']
  if (v.rebalance !== undefined) {
    const r = v.rebalance
    const at = 'options.maintenance.rebalance'
    if (!isPlainObject(r)) throw new InvalidOptionError(`${at} must be an object like { every: '30s', threshold: 2 } (got ${describe(r)})`)
    rejectUnknownKeys(r, ['every', 'threshold', 'step', 'minShare', 'maxShare', 'minEvictions'], `${at}.`)
    const num = (name: string, d: number, ok: (x: number) => boolean, what: string): number => {
      const x = r[name] ?? d
      if (typeof x !== 'number' || !Number.isFinite(x) || !ok(x)) throw new InvalidOptionError(`${at}.${name} must be ${what} (got ${describe(x)})`)
      return x
    }
    const minShare = num('minShare', 0.5, (x) => x > 0 && x < 1, 'a share of an even budget above 0 and below 1')
    const maxShare = num('maxShare', 2, (x) => x > 1, 'a multiple of an even budget above 1')
    rebalance = {
      everyMs: finiteDuration(r.every, `${at}.every`),
      threshold: num('threshold', 2, (x) => x > 1, 'a ratio above 1'),
      step: num('step', 0.1, (x) => x > 0 && x <= 1, 'a share of an even budget above 0 and at most 1'),
      minShare,
      maxShare,
      minEvictions: num('minEvictions', 100, (x) => x >= 0, 'a count of at least 0'),
    }
  }
  let compact: ResolvedMaintenance['compact']
  if (v.compact !== undefined) {
    const c = v.compact
    const at = 'options.maintenance.compact'
    if (!isPlainObject(c)) throw new InvalidOptionError(`${at} must be an object like { every: '10m', minFreeRatio: 1 } (got ${describe(c)})`)
    rejectUnknownKeys(c, ['every', 'minFreeRatio', 'minFreeBytes'], `${at}.`)
    const ratio = c.minFreeRatio ?? 1
    if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0) throw new InvalidOptionError(`${at}.minFreeRatio must be a number of at least 0 (got ${describe(ratio)})`)
    compact = { everyMs: finiteDuration(c.every, `${at}.every`), minFreeRatio: ratio, minFreeBytes: c.minFreeBytes === undefined ? 1 << 20 : parseSize(c.minFreeBytes, `${at}.minFreeBytes`) }
  }
  if (cleanupMs === undefined && rebalance === undefined && compact === undefined) throw new InvalidOptionError('options.maintenance needs cleanup, rebalance or compact')
  return { cleanupMs, rebalance, compact }
}
