/**
 * `createCache({ backup })`: scheduled snapshots into a directory, validated
 * into the `ResolvedBackup` that src/ops/backup.ts runs with. A cron
 * schedule is parsed by `croner`, loaded by the first cron expression given
 * (a duration needs no parser); its errors become this option's.
 */
import { createRequire } from 'node:module'
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { ResolvedBackup } from '../ops/backup.js'
import { isPlainObject } from '../wire/values.js'
import { parseTtl, positiveInteger, rejectUnknownKeys } from './parse.js'
import type { Ttl } from './parse.js'

/** `createCache({ backup })`: snapshots written into a directory on a schedule, the oldest removed. */
export interface BackupOptions {
  /**
   * The directory the backups go to, as `shardcache-<UTC time>.snap` files;
   * created when missing. Give each cache a directory of its own: retention
   * removes the oldest backups there, whichever cache wrote them.
   */
  dir: string
  /**
   * When to back up: a duration between backups (`'1h'`, `'15m'`, or
   * milliseconds; the first one that long after start), or a cron
   * expression in the process's time zone: 5 fields (minute, hour, day of
   * month, month, day of week; `'0 3 * * *'` is 03:00 every day) or 6 with
   * seconds first. Omitted: backups are written only by `cache.backup()`.
   */
  every?: Ttl
  /** How many backups to keep: after each one, the oldest beyond this many are removed. @default 7 */
  keep?: number
}

const require = createRequire(import.meta.url)
type Croner = typeof import('croner')
let loadedCroner: Croner | undefined

/** A cron expression's next run after a time, or the option's error for a bad expression. */
function cronSchedule(expr: string): (after: number) => number {
  const { Cron } = (loadedCroner ??= require('croner') as Croner)
  let cron: InstanceType<Croner['Cron']>
  try {
    cron = new Cron(expr, { paused: true })
  } catch (err) {
    throw new InvalidOptionError(`options.backup.every must be a duration like '1h' or a cron expression like '0 3 * * *': ${(err as Error).message} (got ${describe(expr)})`)
  }
  if (cron.nextRun() === null) throw new InvalidOptionError(`options.backup.every: the cron expression ${JSON.stringify(expr)} never runs again`)
  return (after) => cron.nextRun(new Date(after))?.getTime() ?? Infinity
}

export function resolveBackup(v: unknown): ResolvedBackup {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.backup must be an object like { dir: '/var/backups/cache', every: '1h', keep: 7 } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['dir', 'every', 'keep'], 'options.backup.')
  if (typeof v.dir !== 'string' || v.dir === '') throw new InvalidOptionError(`options.backup.dir must be a directory's path (got ${describe(v.dir)})`)
  const keep = v.keep === undefined ? 7 : positiveInteger(v.keep, 'options.backup.keep')
  const every = v.every
  if (every === undefined) return { dir: v.dir, keep, every: undefined, next: undefined }
  // Durations are one word ('1h', '90s'); cron expressions are several.
  if (typeof every === 'string' && /\s/.test(every.trim())) return { dir: v.dir, keep, every, next: cronSchedule(every.trim()) }
  let ms = NaN
  try {
    ms = parseTtl(every, 'options.backup.every')
  } catch {
    // said below, with the cron form
  }
  if (!Number.isFinite(ms)) throw new InvalidOptionError(`options.backup.every must be a duration like '1h' or '15m', milliseconds, or a cron expression like '0 3 * * *' (got ${describe(every)})`)
  return { dir: v.dir, keep, every: String(every), next: (after) => after + ms }
}
