/**
 * `createCache({ alerts })`: threshold alerts on each region's memory use and
 * eviction rate, validated into the `ResolvedAlerts` that src/ops/alerts.ts
 * checks with.
 */
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { ResolvedAlerts } from '../ops/alerts.js'
import { isPlainObject } from '../wire/values.js'
import { finiteDuration, rejectUnknownKeys } from './parse.js'
import type { Ttl } from './parse.js'

/** `createCache({ alerts })`: `'alert'` events when a region passes a threshold. At least one threshold. */
export interface AlertOptions {
  /** Fires when a region's memory use (`stats().byRegion[r].utilization`: bytes in use over its byte budget, or entries over its entry budget) reaches this share, from 0 to 1. */
  memoryUse?: number
  /** Fires when a region evicts (for size) at least this many entries per second between two checks. */
  evictionsPerSecond?: number
  /** How often the thresholds are checked (ms or a duration string). @default 5000 */
  intervalMs?: Ttl
}

export function resolveAlerts(v: unknown): ResolvedAlerts {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.alerts must be an object like { memoryUse: 0.9, evictionsPerSecond: 1000 } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['memoryUse', 'evictionsPerSecond', 'intervalMs'], 'options.alerts.')
  const { memoryUse, evictionsPerSecond } = v
  if (memoryUse !== undefined && (typeof memoryUse !== 'number' || !(memoryUse > 0 && memoryUse <= 1))) {
    throw new InvalidOptionError(`options.alerts.memoryUse must be a share of the budget above 0 and at most 1, like 0.9 (got ${describe(memoryUse)})`)
  }
  if (evictionsPerSecond !== undefined && (typeof evictionsPerSecond !== 'number' || !Number.isFinite(evictionsPerSecond) || evictionsPerSecond <= 0)) {
    throw new InvalidOptionError(`options.alerts.evictionsPerSecond must be a positive number (got ${describe(evictionsPerSecond)})`)
  }
  if (memoryUse === undefined && evictionsPerSecond === undefined) {
    throw new InvalidOptionError('options.alerts needs a threshold: memoryUse, evictionsPerSecond or both')
  }
  const intervalMs = v.intervalMs === undefined ? 5000 : finiteDuration(v.intervalMs, 'options.alerts.intervalMs')
  return { memoryUse, evictionsPerSecond, intervalMs }
}
