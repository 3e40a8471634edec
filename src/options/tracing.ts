/**
 * `createCache({ tracing })`: OpenTelemetry spans of cache operations,
 * validated into the `ResolvedTracing` that src/ops/tracing.ts runs with.
 */
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { ResolvedTracing } from '../ops/tracing.js'
import { isPlainObject } from '../wire/values.js'
import { rejectUnknownKeys } from './parse.js'

/**
 * `createCache({ tracing })`: `true`, or the share of operations traced.
 * Needs the `@opentelemetry/api` package; spans go to the tracer provider
 * the application registers.
 */
export interface TracingOptions {
  /** The share of get, set, delete, mget, mset, mdelete and getOrCompute calls that get a span, from 0 to 1 (loads always do). @default 1 */
  sampleRate?: number
}

export function resolveTracing(v: unknown): ResolvedTracing | undefined {
  if (v === false) return undefined
  if (v === true) return { sampleRate: 1 }
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.tracing must be true, false or an object like { sampleRate: 0.1 } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['sampleRate'], 'options.tracing.')
  const rate = v.sampleRate ?? 1
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) throw new InvalidOptionError(`options.tracing.sampleRate must be a number from 0 to 1 (got ${describe(rate)})`)
  return { sampleRate: rate }
}
