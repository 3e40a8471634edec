/**
 * The parsers every option file shares: TTLs and sizes (a number or a string
 * such as '30s' or '100mb'), positive integers, finite durations, plain
 * objects, and the check that refuses keys that are not options. Each takes
 * the option's path, so that every message names the option to fix.
 */
import ms from 'ms'
import bytes from 'bytes'
import { InvalidOptionError, InvalidTtlError } from '../errors.js'
import { describe } from '../messages.js'

/** Milliseconds (a positive number, or `Infinity` for no expiry) or a duration string such as `'30s'`, `'5m'`, `'1h'`, `'2d'`. */
export type Ttl = number | string

/** A byte count, or a size string such as `'512kb'`, `'100mb'`, `'1gb'` (powers of 1024). */
export type Size = number | string

/** Throws for keys that are not options, so that a typo does not pass silently. */
export function rejectUnknownKeys(obj: object, known: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      throw new InvalidOptionError(`${where}${k} is not an option (options are: ${known.join(', ')})`)
    }
  }
}

export function positiveInteger(v: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new InvalidOptionError(`${name} must be a positive integer${max < Number.MAX_SAFE_INTEGER ? ` of at most ${max}` : ''} (got ${describe(v)})`)
  }
  return v
}

/** What bytes.parse reads whole: a number and a unit (`'1.5mb'`, `'64 KB'`), or whole bytes (`'4096'`, `'4096b'`). */
const SIZE_STRING = /^\s*(?:\d+(?:\.\d+)?\s*[kmgtp]b|\d+\s*b?)\s*$/i

/** Parses a size: a positive integer of bytes, or a string like `'100mb'`. */
export function parseSize(v: unknown, name: string): number {
  if (typeof v === 'string') {
    // Checked first: bytes.parse falls back to parseInt, which reads "10 parsecs" as 10 bytes,
    // "1e3" and "1,000" as 1 and " 5 MB" as 5: a typo would become a tiny budget silently.
    const n = SIZE_STRING.test(v) ? bytes.parse(v.trim()) : null
    if (n !== null && Number.isInteger(n) && n >= 1) return n
  } else if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= Number.MAX_SAFE_INTEGER) {
    return v
  }
  throw new InvalidOptionError(`${name} must be a positive integer or a size string like "100mb" (got ${describe(v)})`)
}

/**
 * Parses a TTL into milliseconds: a positive number, `Infinity` (no expiry), or
 * a duration string (`'500ms'`, `'30s'`, `'5m'`, `'1h'`, `'2d'`).
 */
export function parseTtl(v: unknown, name: string): number {
  if (typeof v === 'number') {
    if (v > 0) return v // also Infinity; NaN fails the comparison
  } else if (typeof v === 'string') {
    let n: number | undefined
    try {
      n = ms(v as ms.StringValue)
    } catch {
      n = undefined
    }
    if (typeof n === 'number' && n > 0 && Number.isFinite(n)) return n
  }
  throw new InvalidTtlError(
    `${name} must be a positive number of milliseconds, Infinity, or a duration string like "30s" (got ${describe(v)})`,
  )
}

/** A duration option (ms or a string like "1s") that must be finite, as a timer needs. */
export function finiteDuration(v: unknown, name: string): number {
  let n: number
  try {
    n = parseTtl(v, name)
  } catch (err) {
    throw new InvalidOptionError((err as Error).message)
  }
  if (!Number.isFinite(n) || n > 2 ** 31 - 1) throw new InvalidOptionError(`${name} must be a finite duration below 24 days (got ${describe(v)})`)
  return Math.max(1, Math.round(n))
}
