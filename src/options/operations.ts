/**
 * The options of single operations: `set`/`mset` and `getOrCompute` (with
 * the loader pool that `getOrCompute`'s tasks run in), tags, and their
 * validation. resolveSetOptions runs on every `set`: without options it
 * returns one shared object, so that the common set allocates nothing here.
 */
import { existsSync } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import ms from 'ms'
import { InvalidOptionError } from '../errors.js'
import { describe, plural } from '../messages.js'
import { loneSurrogateAt, wellFormed } from '../wire/values.js'
import { DEFAULTS } from './defaults.js'
import { finiteDuration, parseTtl, positiveInteger, rejectUnknownKeys } from './parse.js'
import { isPlainObject } from '../wire/values.js'
import type { Ttl } from './parse.js'

/** `createCache({ loaders })`: where `getOrCompute(key, { task, args })` runs its loaders. */
export interface LoaderOptions {
  /**
   * A `piscina` pool: `filename` is a module (path or file URL; a relative path
   * is resolved against the current directory) whose named exports are the
   * tasks; each runs in a pool thread as `export(...args)`, and its result is
   * cached. Created on the first task, destroyed by `close()`.
   */
  pool: {
    filename: string
    /** @default piscina's default (half the cores, at least 1) */
    maxThreads?: number
  }
}

/** Options of `getOrCompute`. */
export interface ComputeOptions {
  /** TTL of the computed entry. @default the region's `ttl` */
  ttl?: Ttl
  /** Tags of the computed entry (see `SetOptions.tags`). */
  tags?: string[]
  /**
   * How long past its `ttl` the entry may still be served, as a stale value,
   * by `getOrCompute` (never by `get`): the caller gets it at once while one
   * background call of the loader refreshes it; if that fails or times out,
   * the stale value keeps being served until the grace period ends. Counted
   * in `stats().staleServed`. ms or a duration string.
   * @default none
   */
  grace?: Ttl
  /**
   * Longest wait for the loader (ms or a duration string). Past it every
   * caller of this flight rejects with `E_LOAD_TIMEOUT` and nothing is cached;
   * the loader itself is not stopped (a task in the pool runs to its end).
   * @default no limit
   */
  timeout?: Ttl
  /**
   * Before running the loader, take a short Redis lease on the key (`SET NX
   * PX`, as long as `timeout`, else 10 s), so that of N instances missing the
   * key at once one runs the loader; the others wait for its value (in the L2
   * tier, or delivered by an update-mode bus) for at most the lease, then run
   * the loader themselves if it did not come. Needs an L2 tier or a bus in
   * update mode.
   * @default false
   */
  lockAcrossInstances?: boolean
}

/** Options of `set` and `mset`. */
export interface SetOptions {
  /** TTL of this entry. @default the region's `ttl` */
  ttl?: Ttl
  /** Only set when the key has no live entry. The set resolves `false` when refused. */
  nx?: boolean
  /** Only set when the key has a live entry. The set resolves `false` when refused. */
  xx?: boolean
  /** JSON-serializable data stored with the entry and returned by `getEntry`. */
  metadata?: Record<string, unknown>
  /**
   * Tags of the entry: `invalidateTag(tag)` removes every entry carrying one,
   * in every shard and, through the bus, in every instance. At most 32
   * non-empty strings of at most `maxKeyBytes` bytes each.
   */
  tags?: string[]
}

const SET_KEYS = ['ttl', 'nx', 'xx', 'metadata', 'tags']
/** Tags an entry may carry. */
export const MAX_TAGS = 32

export function resolveLoaders(v: unknown): { filename: string; maxThreads: number | undefined } {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.loaders must be an object like { pool: { filename: './loaders.js' } } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['pool'], 'options.loaders.')
  const pool = v.pool
  if (!isPlainObject(pool)) throw new InvalidOptionError(`options.loaders.pool must be an object like { filename: './loaders.js', maxThreads: 2 } (got ${describe(pool)})`)
  rejectUnknownKeys(pool, ['filename', 'maxThreads'], 'options.loaders.pool.')
  if (typeof pool.filename !== 'string' || pool.filename === '') {
    throw new InvalidOptionError(`options.loaders.pool.filename must be a module's path or file URL (got ${describe(pool.filename)})`)
  }
  const file = pool.filename.startsWith('file:') ? fileURLToPath(pool.filename) : resolvePath(pool.filename)
  if (!existsSync(file)) throw new InvalidOptionError(`options.loaders.pool.filename: no such file ${JSON.stringify(file)}`)
  const maxThreads = pool.maxThreads === undefined ? undefined : positiveInteger(pool.maxThreads, 'options.loaders.pool.maxThreads', 1024)
  return { filename: pathToFileURL(file).href, maxThreads }
}

/** The options of one `getOrCompute`, validated. */
export interface ResolvedCompute {
  ttl: number | undefined
  timeoutMs: number
  tags: string[] | undefined
  graceMs: number | undefined
  lock: boolean
}

/** Validates the options of `getOrCompute`. */
export function resolveComputeOptions(o: unknown, maxKeyBytes: number = DEFAULTS.maxKeyBytes): ResolvedCompute {
  if (o === undefined) return { ttl: undefined, timeoutMs: Infinity, tags: undefined, graceMs: undefined, lock: false }
  if (!isPlainObject(o)) throw new InvalidOptionError(`options must be an object like { ttl, grace, timeout, tags } (got ${describe(o)})`)
  rejectUnknownKeys(o, ['ttl', 'grace', 'timeout', 'tags', 'lockAcrossInstances'], 'options.')
  const lock = o.lockAcrossInstances ?? false
  if (typeof lock !== 'boolean') throw new InvalidOptionError(`options.lockAcrossInstances must be a boolean (got ${describe(lock)})`)
  const graceMs = o.grace === undefined ? undefined : finiteDuration(o.grace, 'options.grace')
  const tags = o.tags === undefined ? undefined : resolveTags(o.tags, 'options.tags', maxKeyBytes)
  const ttl = o.ttl === undefined ? undefined : parseTtl(o.ttl, 'options.ttl')
  let timeoutMs = Infinity
  if (o.timeout !== undefined) {
    const t = o.timeout
    const n = typeof t === 'number' ? t : typeof t === 'string' ? (ms(t as ms.StringValue) as number | undefined) : undefined
    if (typeof n !== 'number' || !(n > 0) || (Number.isFinite(n) && n > 2 ** 31 - 1)) {
      throw new InvalidOptionError(`options.timeout must be a positive number of ms below 24 days, Infinity, or a duration string like "2s" (got ${describe(t)})`)
    }
    timeoutMs = n
  }
  return { ttl, timeoutMs, tags, graceMs, lock }
}

/** The options of one `set`, validated: `ttl` undefined means the region's default. */
export interface ResolvedSet {
  ttl: number | undefined
  nx: boolean
  xx: boolean
  metadata: Uint8Array | undefined
  tags: string[] | undefined
  /** getOrCompute's `grace` (ms); never set by `set`. */
  grace?: number
}

const NO_SET_OPTIONS: ResolvedSet = { ttl: undefined, nx: false, xx: false, metadata: undefined, tags: undefined }

/** Validates the options of `set`/`mset`. */
export function resolveSetOptions(o: unknown, maxKeyBytes: number = DEFAULTS.maxKeyBytes): ResolvedSet {
  if (o === undefined) return NO_SET_OPTIONS
  if (!isPlainObject(o)) {
    // set(key, value, 500): a TTL where the options go, as some caches take it.
    const hint = typeof o === 'number' || typeof o === 'string' ? `; for a TTL, pass { ttl: ${typeof o === 'string' ? JSON.stringify(o) : String(o)} }` : ''
    throw new InvalidOptionError(`options must be an object like { ttl, nx, xx, metadata } (got ${describe(o)}${hint})`)
  }
  rejectUnknownKeys(o, SET_KEYS, 'options.')
  const ttl = o.ttl === undefined ? undefined : parseTtl(o.ttl, 'options.ttl')
  const nx = o.nx ?? false
  const xx = o.xx ?? false
  if (typeof nx !== 'boolean') throw new InvalidOptionError(`options.nx must be a boolean (got ${describe(nx)})`)
  if (typeof xx !== 'boolean') throw new InvalidOptionError(`options.xx must be a boolean (got ${describe(xx)})`)
  if (nx && xx) throw new InvalidOptionError('options.nx and options.xx cannot both be true')
  let metadata: Uint8Array | undefined
  if (o.metadata !== undefined) {
    if (!isPlainObject(o.metadata)) throw new InvalidOptionError(`options.metadata must be a plain object (got ${describe(o.metadata)})`)
    let json: string
    try {
      json = JSON.stringify(o.metadata)
    } catch (cause) {
      throw new InvalidOptionError(`options.metadata must be JSON-serializable: ${(cause as Error).message}`)
    }
    metadata = Buffer.from(json, 'utf8')
  }
  const tags = o.tags === undefined ? undefined : resolveTags(o.tags, 'options.tags', maxKeyBytes)
  return { ttl, nx, xx, metadata, tags }
}

/** Validates a list of tags (duplicates dropped). */
export function resolveTags(v: unknown, name: string, maxKeyBytes: number): string[] {
  if (!Array.isArray(v)) throw new InvalidOptionError(`${name} must be an array of strings (got ${describe(v)})`)
  if (v.length > MAX_TAGS) throw new InvalidOptionError(`${name} may hold at most ${MAX_TAGS} tags (got ${v.length})`)
  for (let i = 0; i < v.length; i++) checkTag(v[i], `${name}[${i}]`, maxKeyBytes)
  return [...new Set(v as string[])]
}

/** A tag is a non-empty string of at most `maxKeyBytes` UTF-8 bytes, like a key. */
export function checkTag(t: unknown, name: string, maxKeyBytes: number): asserts t is string {
  if (typeof t !== 'string' || t === '') throw new InvalidOptionError(`${name} must be a non-empty string (got ${describe(t)})`)
  // Sent as UTF-8, which turns a lone surrogate into U+FFFD: two different tags would be one.
  if (!wellFormed(t)) throw new InvalidOptionError(`${name} must be well-formed UTF-16: it has a lone surrogate at index ${loneSurrogateAt(t)} (got ${describe(t)})`)
  if (t.length * 3 > maxKeyBytes && Buffer.byteLength(t) > maxKeyBytes) {
    throw new InvalidOptionError(`${name} is ${plural(Buffer.byteLength(t), 'UTF-8 byte')}, over options.maxKeyBytes (${maxKeyBytes})`)
  }
}
