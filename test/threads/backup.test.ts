/**
 * Scheduled backups: written on a duration or a cron schedule into their
 * directory, the oldest beyond `keep` removed, each a whole snapshot; a
 * restore of the directory loads the newest one that reads whole, skipping
 * corrupt ones with a warning; bad options are refused before anything
 * starts; close stops the schedule; temp files of killed writers go.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { createCache, loadConfig } from '../../src/index.js'
import type { BackupEvent, Cache, CacheOptions } from '../../src/index.js'
import { errorOf } from '../fixtures/helpers.js'

const root = mkdtempSync(join(tmpdir(), 'shardcache-backup-'))
let dirs = 0
const freshDir = (): string => join(root, `b${++dirs}`)
const open: Cache[] = []

async function cache(more: CacheOptions): Promise<Cache> {
  const c = await createCache({ shards: 2, ...more })
  open.push(c)
  return c
}

test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
})
test.after(() => rmSync(root, { recursive: true, force: true }))

const backupFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.snap')).sort()

/** The next `n` backup events of `c`. */
/**
 * The next `n` backup events; with `after` (a performance.now()), only of
 * backups that began after it (a written one's event comes when it is done,
 * `durationMs` after it began).
 */
function nextBackups(c: Cache, n: number, after = -Infinity): Promise<BackupEvent[]> {
  // The schedule's timer is unref'd (it does not keep a process alive): this wait does.
  const alive = setInterval(() => {}, 1000)
  return new Promise((resolve) => {
    const got: BackupEvent[] = []
    const on = (e: BackupEvent): void => {
      // durationMs is whole ms (Date.now()): 2 ms of margin keeps the test on the safe side.
      if (e.ok && performance.now() - e.durationMs <= after + 2) return
      got.push(e)
      if (got.length === n) {
        c.off('backup', on)
        clearInterval(alive)
        resolve(got)
      }
    }
    c.on('backup', on)
  })
}

/** Warnings the process emits while `fn` runs. */
async function warningsDuring(fn: () => Promise<unknown>): Promise<{ result: unknown; warnings: (Error & { code?: string })[] }> {
  const warnings: (Error & { code?: string })[] = []
  const on = (w: Error): void => {
    warnings.push(w)
  }
  process.on('warning', on)
  try {
    const result = await fn()
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r))
    return { result, warnings }
  } finally {
    process.off('warning', on)
  }
}

test('every: a duration writes a whole backup each time, and keeps the newest `keep`', async () => {
  const dir = freshDir()
  const c = await cache({ backup: { dir, every: '150ms', keep: 2 } })
  for (let i = 0; i < 500; i++) await c.set(`k:${i}`, { i })
  // A backup that began while the sets ran (a slow machine) holds some of them: not counted.
  const events = await nextBackups(c, 4, performance.now())
  assert.ok(events.every((e) => e.ok), JSON.stringify(events))
  const written = events.map((e) => (e.ok ? e : undefined)!)
  // Each one is the whole cache, and its file exists when the event says so.
  for (const e of written) assert.is(e.entries, 500)
  // The third and fourth each removed the oldest one left.
  assert.equal(written[2]!.removed, [written[0]!.file])
  assert.equal(written[3]!.removed, [written[1]!.file])
  const stats = (await c.stats()).backup!
  assert.ok(stats.written >= 4, `written ${stats.written}`)
  assert.is(stats.failed, 0)
  assert.is(stats.lastEntries, 500)
  assert.ok(stats.nextAt! > Date.now() - 1000, `next at ${stats.nextAt}`)
  await c.close()
  // Closed: the schedule is stopped, and the newest `keep` are what is left.
  const left = backupFiles(dir)
  assert.is(left.length, 2)
  assert.ok(left.every((f) => /^shardcache-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z(-\d+)?\.snap$/.test(f)), left.join(', '))
  await new Promise((r) => setTimeout(r, 500))
  assert.equal(backupFiles(dir), left)

  const restored = await cache({ restore: dir })
  assert.is((await restored.stats()).entries, 500)
  assert.equal(await restored.get('k:499'), { i: 499 })
})

test('every: a cron expression (seconds field) schedules backups; the metrics count them', async () => {
  const dir = freshDir()
  const c = await cache({ backup: { dir, every: '* * * * * *' } })
  await c.set('a', 1)
  const [e] = await nextBackups(c, 1)
  assert.is(e!.ok, true)
  // Due on a whole second.
  const next = (await c.stats()).backup!.nextAt!
  assert.is(next % 1000, 0)
  const text = await c.metrics()
  assert.match(text, /shardcache_backups_total\{result="written"\} [1-9]/)
  assert.match(text, /shardcache_backups_total\{result="failed"\} 0/)
  assert.match(text, /shardcache_backup_last_entries 1/)
})

test('backup() writes one now; concurrent calls each write their own file, one after the other', async () => {
  const dir = freshDir()
  const c = await cache({ backup: { dir, keep: 10 } })
  await c.set('x', 'one')
  const [a, b] = await Promise.all([c.backup(), c.backup()])
  assert.is.not(a.file, b.file)
  assert.is(a.entries, 1)
  assert.is(b.entries, 1)
  assert.equal(backupFiles(dir), [basename(a.file), basename(b.file)].sort())
  assert.is((await c.stats()).backup!.nextAt, undefined) // no schedule
})

test('restore of a backup directory: the newest whole one is loaded, newer corrupt ones are skipped with a warning', async () => {
  const dir = freshDir()
  const c = await cache({ backup: { dir, keep: 5 } })
  await c.set('v', 'first')
  const first = await c.backup()
  await c.set('v', 'second')
  const second = await c.backup()
  await c.set('v', 'third')
  const third = await c.backup()
  // The newest is cut short, the one before is overwritten with junk of the same size.
  truncateSync(third.file, third.bytes - 3)
  writeFileSync(second.file, Buffer.alloc(second.bytes, 7))
  const r = await cache({})
  const { result, warnings } = await warningsDuring(() => r.restore(dir))
  assert.is(result, 1)
  assert.is(await r.get('v'), 'first')
  const skipped = warnings.filter((w) => w.code === 'SHARDCACHE_BACKUP_SKIPPED')
  assert.is(skipped.length, 2)
  assert.ok(skipped[0]!.message.includes(third.file) && skipped[1]!.message.includes(second.file), skipped.map((w) => w.message).join('\n'))
  // createCache({ restore: dir }) does the same.
  const s = await warningsDuring(() => cache({ restore: dir }))
  assert.is(await (s.result as Cache).get('v'), 'first')

  // Every backup corrupt: rejected, and nothing is loaded.
  truncateSync(first.file, 10)
  const t = await cache({})
  await t.set('kept', true)
  const err = await errorOf(warningsDuring(() => t.restore(dir)))
  assert.is(err.code, 'E_SNAPSHOT_CORRUPT')
  assert.match(err.message, /no backup in .* reads whole \(skipped 3/)
  assert.is((await t.stats()).entries, 1)
  assert.is(await t.get('kept'), true)
})

test('restore of a directory without backups loads nothing: a first start with restore and backup on the same directory', async () => {
  const dir = freshDir()
  mkdirSync(dir)
  writeFileSync(join(dir, 'notes.txt'), 'not a backup')
  const c = await cache({ backup: { dir }, restore: dir })
  assert.is((await c.stats()).entries, 0)
  assert.is(await c.restore(dir), 0)
  // Retention never touches files it did not write.
  await c.set('a', 1)
  for (let i = 0; i < 3; i++) await c.backup()
  assert.ok(readdirSync(dir).includes('notes.txt'))
})

test('retention: only the newest `keep` backups stay, ordered by the time in their names', async () => {
  const dir = freshDir()
  mkdirSync(dir)
  // Older backups, as an earlier process left them (one with a sequence number: two in the same millisecond).
  const old = ['shardcache-2020-01-01T00-00-00-000Z.snap', 'shardcache-2020-01-01T00-00-00-000Z-1.snap', 'shardcache-2021-06-01T12-00-00-000Z.snap']
  for (const f of old) writeFileSync(join(dir, f), 'old')
  const c = await cache({ backup: { dir, keep: 2 } })
  const a = await c.backup()
  assert.equal(a.removed.map((f) => basename(f)), [old[2], old[1], old[0]].slice(1))
  assert.equal(backupFiles(dir), [old[2], basename(a.file)].sort())
})

test('a temp file left by a backup writer that was killed is removed by the next backup', async () => {
  const dir = freshDir()
  mkdirSync(dir)
  // A pid that no longer runs: a child that has exited.
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  const host = (await import('node:os')).hostname().replace(/[^A-Za-z0-9.]/g, '_')
  const temp = `shardcache-2026-01-01T00-00-00-000Z.snap.tmp-${host}-${gone.stdout}-1`
  writeFileSync(join(dir, temp), 'half a backup')
  const mine = `shardcache-2026-01-01T00-00-00-000Z.snap.tmp-${host}-${process.pid}-99`
  writeFileSync(join(dir, mine), 'this process is alive')
  const c = await cache({ backup: { dir } })
  await c.backup()
  const files = readdirSync(dir)
  assert.not.ok(files.includes(temp), files.join(', '))
  assert.ok(files.includes(mine))
})

test('bad backup options are refused with the option named, before anything starts', async () => {
  const cases: [unknown, RegExp][] = [
    ['/tmp/x', /options\.backup must be an object/],
    [{}, /options\.backup\.dir must be a directory's path/],
    [{ dir: '' }, /options\.backup\.dir must be a directory's path/],
    [{ dir: freshDir(), every: 'soon' }, /options\.backup\.every must be a duration like '1h'.*\(got the string "soon"\)/],
    [{ dir: freshDir(), every: 0 }, /options\.backup\.every must be a duration/],
    [{ dir: freshDir(), every: '61 * * * *' }, /options\.backup\.every must be a duration like '1h' or a cron expression.*minute.*\(got the string "61 \* \* \* \*"\)/],
    [{ dir: freshDir(), every: '0 0 30 2 *' }, /options\.backup\.every: the cron expression "0 0 30 2 \*" never runs again/],
    [{ dir: freshDir(), keep: 0 }, /options\.backup\.keep/],
    [{ dir: freshDir(), keep: 1.5 }, /options\.backup\.keep/],
    [{ dir: freshDir(), often: true }, /options\.backup\.often/],
  ]
  for (const [backup, why] of cases) {
    const err = await errorOf(createCache({ shards: 1, backup } as CacheOptions))
    assert.is(err.code, 'E_INVALID_OPTION', `${JSON.stringify(backup)}: ${err.message}`)
    assert.match(err.message, why)
  }
  // A directory that cannot be made (a file is in the way).
  const file = join(root, 'a-file')
  writeFileSync(file, '')
  const err = await errorOf(createCache({ shards: 1, backup: { dir: join(file, 'sub') } }))
  assert.is(err.code, 'E_INVALID_OPTION')
  assert.match(err.message, /options\.backup\.dir ".*a-file\/sub" cannot be written to/)
  // A config file is checked the same way.
  const cfg = join(root, 'cache.json')
  writeFileSync(cfg, JSON.stringify({ backup: { dir: freshDir(), every: 'every hour' } }))
  assert.throws(() => loadConfig(cfg), /backup\.every/)
  // Without the option, backup() says what it needs, and the cache is as it was.
  const c = await cache({})
  await c.set('a', 1)
  const e = await errorOf(c.backup())
  assert.is(e.code, 'E_INVALID_OPTION')
  assert.match(e.message, /backup\(\) needs createCache\(\{ backup: \{ dir \} \}\)/)
  assert.is(await c.get('a'), 1)
})

test('a backup that cannot be written fails as an event and in the stats, and leaves nothing behind', async () => {
  const dir = freshDir()
  const c = await cache({ backup: { dir } })
  await c.set('a', 1)
  // The directory goes away under the cache.
  rmSync(dir, { recursive: true })
  writeFileSync(dir, 'now a file')
  const events = nextBackups(c, 1)
  const err = await errorOf(c.backup())
  assert.match(err.message, /ENOTDIR|ENOENT/)
  const [e] = await events
  assert.is(e!.ok, false)
  const stats = (await c.stats()).backup!
  assert.is(stats.failed, 1)
  assert.is(stats.written, 0)
  assert.match(stats.lastError!, /ENOTDIR|ENOENT/)
  // Back as a directory: the next one is written.
  rmSync(dir)
  mkdirSync(dir)
  const ok = await c.backup()
  assert.is(ok.entries, 1)
  assert.is((await c.stats()).backup!.lastError, undefined)
})

test.run()
