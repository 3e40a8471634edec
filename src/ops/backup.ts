/**
 * Scheduled backups: a snapshot (./snapshot.ts) written into a directory on a
 * schedule or on demand, the oldest beyond `keep` removed after each one,
 * and, for a restore, the newest backup that reads whole.
 *
 * Each backup is a file of its own, `shardcache-<UTC time>.snap`, written the
 * way every file snapshot is: to a temp file, fsynced, renamed into place.
 * So a backup file is whole or absent, whenever the process dies; a process
 * killed mid-backup leaves only its temp file, which the next backup into the
 * directory removes. The names sort by time, and retention works on them
 * alone: files of other names in the directory are never touched.
 *
 * What runs when: one backup at a time. A scheduled one that comes due while
 * another is still writing is skipped (counted; the next comes at its own
 * time), and `cache.backup()` waits for the one in progress, then writes its
 * own. The timer is unref'd: a schedule does not keep the process alive.
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { InvalidOptionError } from '../errors.js'
import { SnapshotCorruptError, readSnapshot, removeDeadTemps } from './snapshot.js'
import type { Snapshot } from './snapshot.js'

/** `createCache({ backup })` after validation (src/options/backup.ts). */
export interface ResolvedBackup {
  dir: string
  keep: number
  /** The schedule as given (for messages); undefined: backups only on demand. */
  every: string | undefined
  /** When the first backup due after `after` (epoch ms) is; undefined without a schedule. */
  next: ((after: number) => number) | undefined
}

/** A backup written: what `cache.backup()` resolves and the `'backup'` event carries. */
export interface BackupResult {
  /** The file's path. */
  file: string
  entries: number
  /** The file's size. */
  bytes: number
  durationMs: number
  /** Older backups removed to keep `keep`. */
  removed: string[]
}

/** What `cache.on('backup')` listeners receive: a backup written, or one that failed (nothing was left behind). */
export type BackupEvent = ({ ok: true } & BackupResult) | { ok: false; file: string; error: Error }

/** `stats().backup`. */
export interface BackupStats {
  written: number
  failed: number
  /** Scheduled backups not started because the previous one was still writing. */
  skipped: number
  /** The last backup written, and when (epoch ms). */
  lastFile: string | undefined
  lastSuccessAt: number | undefined
  lastEntries: number | undefined
  lastDurationMs: number | undefined
  /** The last failure's message; cleared by the next success. */
  lastError: string | undefined
  /** When the next scheduled backup is due (epoch ms); undefined without a schedule or once closed. */
  nextAt: number | undefined
}

const NAME = /^shardcache-(\d{4}-\d\d-\d\dT\d\d)-(\d\d)-(\d\d)-(\d{3})Z(?:-(\d+))?\.snap$/
/** setTimeout's longest delay: a backup due later is reached in steps of this. */
const MAX_DELAY = 2 ** 31 - 1

/** The backup files of `dir`, newest first: by the time in their names, then their sequence number. */
export function listBackups(dir: string): string[] {
  const found: { name: string; at: number; seq: number }[] = []
  for (const name of readdirSync(dir)) {
    const m = NAME.exec(name)
    if (m === null) continue
    found.push({ name, at: Date.parse(`${m[1]}:${m[2]}:${m[3]}.${m[4]}Z`), seq: Number(m[5] ?? 0) })
  }
  found.sort((a, b) => b.at - a.at || b.seq - a.seq)
  return found.map((f) => join(dir, f.name))
}

/**
 * What a restore of `path` loads: the snapshot file itself, or, when `path`
 * is a directory, its newest backup that reads whole. A backup that does not
 * (truncated, corrupt) is skipped with a process warning (code
 * `SHARDCACHE_BACKUP_SKIPPED`) and the next older one is tried. Undefined: a
 * directory without backups. Throws {@link SnapshotCorruptError} when the
 * file, or every backup of the directory, is unreadable.
 */
export function readRestorable(path: string): (Snapshot & { file: string }) | undefined {
  let isDir = false
  try {
    isDir = statSync(path).isDirectory()
  } catch {
    // readSnapshot says what is wrong with a path that is not there
  }
  if (!isDir) return { ...readSnapshot(path), file: path }
  const skipped: string[] = []
  for (const file of listBackups(path)) {
    try {
      return { ...readSnapshot(file), file }
    } catch (err) {
      if (!(err instanceof SnapshotCorruptError)) throw err
      skipped.push(file)
      process.emitWarning(`shardcache: skipping a backup: ${err.message}`, { code: 'SHARDCACHE_BACKUP_SKIPPED' })
    }
  }
  if (skipped.length === 0) return undefined
  throw new SnapshotCorruptError(`no backup in ${JSON.stringify(path)} reads whole (skipped ${skipped.length}: ${skipped.map((f) => JSON.stringify(f)).join(', ')}); nothing was loaded`)
}

/**
 * Makes sure backups can be written into `dir` (creating it), before the
 * cache starts: a directory that cannot be used is a bad option, not a
 * failure found an hour later.
 */
export function prepareBackupDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true })
    accessSync(dir, constants.W_OK)
  } catch (err) {
    throw new InvalidOptionError(`options.backup.dir ${JSON.stringify(dir)} cannot be written to: ${(err as Error).message}`)
  }
}

/** The backups of one cache: its schedule, the one writing now, retention and the counters. */
export class BackupSchedule {
  readonly #opts: ResolvedBackup
  /** Writes a whole snapshot to the file; resolves its entry count. */
  readonly #take: (file: string) => Promise<number>
  readonly #report: (e: BackupEvent) => void
  /** Whether anyone listens to the reports: a scheduled failure nobody hears of becomes a process warning. */
  readonly #heard: () => boolean
  #timer: NodeJS.Timeout | undefined
  #nextAt: number | undefined
  /** The backup writing now (never rejects), and whether it is one. */
  #tail: Promise<unknown> = Promise.resolve()
  #writing = false
  #stopped = false
  readonly #stats: Omit<BackupStats, 'nextAt'> = {
    written: 0,
    failed: 0,
    skipped: 0,
    lastFile: undefined,
    lastSuccessAt: undefined,
    lastEntries: undefined,
    lastDurationMs: undefined,
    lastError: undefined,
  }

  constructor(opts: ResolvedBackup, take: (file: string) => Promise<number>, report: (e: BackupEvent) => void, heard: () => boolean) {
    this.#opts = opts
    this.#take = take
    this.#report = report
    this.#heard = heard
    if (opts.next !== undefined) this.#arm(opts.next(Date.now()))
  }

  /** Writes a backup now (after the one in progress, if any); rejects with what stopped it. */
  backup(): Promise<BackupResult> {
    const run = this.#tail.then(() => this.#write())
    this.#tail = run.catch(() => {})
    return run
  }

  /** Stops the schedule and waits for the backup in progress. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#nextAt = undefined
    await this.#tail
  }

  stats(): BackupStats {
    return { ...this.#stats, nextAt: this.#nextAt }
  }

  resetStats(): void {
    this.#stats.written = this.#stats.failed = this.#stats.skipped = 0
  }

  /** Sets the timer for `at`, in steps when it is further off than a timer can wait. */
  #arm(at: number): void {
    this.#nextAt = undefined
    if (this.#stopped || !Number.isFinite(at)) return // stopped, or a cron expression that never runs again
    this.#nextAt = at
    this.#timer = setTimeout(() => this.#due(), Math.min(MAX_DELAY, Math.max(0, at - Date.now())))
    this.#timer.unref()
  }

  #due(): void {
    const at = this.#nextAt!
    const now = Date.now()
    if (now < at) return this.#arm(at) // a step of a long wait
    if (this.#writing) this.#stats.skipped++
    else {
      this.backup().catch((error: Error) => {
        if (!this.#heard()) process.emitWarning(`shardcache: scheduled backup failed: ${error.message}`, { code: 'SHARDCACHE_BACKUP_FAILED' })
      })
    }
    // From the time it was due, so a schedule keeps its rhythm; never in the past (a process that slept).
    const next = this.#opts.next!(at)
    this.#arm(next > now ? next : this.#opts.next!(now))
  }

  async #write(): Promise<BackupResult> {
    const started = Date.now()
    const file = this.#freeName(started)
    this.#writing = true
    try {
      removeDeadTemps(this.#opts.dir, (name) => NAME.test(name))
      const entries = await this.#take(file)
      const result: BackupResult = { file, entries, bytes: statSync(file).size, durationMs: Date.now() - started, removed: this.#prune() }
      Object.assign(this.#stats, { lastFile: file, lastSuccessAt: started, lastEntries: entries, lastDurationMs: result.durationMs, lastError: undefined })
      this.#stats.written++
      this.#report({ ok: true, ...result })
      return result
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err))
      this.#stats.failed++
      this.#stats.lastError = error.message
      this.#report({ ok: false, file, error })
      throw error
    } finally {
      this.#writing = false
    }
  }

  /** A name for a backup started at `at` that no file has: a sequence number after the time when one does. */
  #freeName(at: number): string {
    const stamp = new Date(at).toISOString().replace(/[:.]/g, '-')
    // existsSync never throws: a directory gone is for the write to report, inside its try.
    let file = join(this.#opts.dir, `shardcache-${stamp}.snap`)
    for (let seq = 1; existsSync(file); seq++) file = join(this.#opts.dir, `shardcache-${stamp}-${seq}.snap`)
    return file
  }

  /** Removes the backups beyond the newest `keep`; returns their paths. */
  #prune(): string[] {
    const old = listBackups(this.#opts.dir).slice(this.#opts.keep)
    for (const f of old) rmSync(f, { force: true })
    return old
  }
}
