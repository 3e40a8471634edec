#!/usr/bin/env node
/**
 * Runs the compiled uvu test files, each in its own child process, two at a
 * time on a machine with two cores or more (TEST_JOBS=1 runs them one after
 * another, with their output live), and prints one total at the end. Every
 * test must pass with another process busy on the other core anyway, and most
 * files spend their time waiting on threads, servers and timers: two lanes
 * take the suite from ~6 minutes (the files' times added up) to ~2.5 here.
 *
 *   node test/runner.mjs                      every test, folder by folder
 *   node test/runner.mjs test/unit redis      every test in those folders
 *   node test/runner.mjs dist/test/unit/glob.test.js test/unit/region_store.test.ts
 *
 * Why a process per file: files that start worker threads or a private
 * redis-server must not share state or leaks with the next file, and a file that
 * crashes or hangs must cost only its own tests.
 *
 * Each file's output is forwarded live. Its result comes from uvu's summary
 * ("Total:", "Passed:", "Skipped:"), read with ANSI colours stripped. A file that
 * exits without a summary (a crash, an uncaught error, `process.exit`) counts as
 * 1 failed, and so does one that exits non-zero although its summary shows no
 * failure; one that runs longer than the timeout is killed (with its whole process
 * group) and counts as 1 failed plus whatever its summary already showed.
 *
 * The last line printed is exactly `N passed, N failed`. The exit code is 1 when
 * anything failed or no test ran at all.
 *
 * Environment: TEST_TIMEOUT_MS overrides the per-file timeout (default 120000);
 * TEST_JOBS the number of files run at once.
 */
import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const distTest = path.join(root, 'dist', 'test')
/**
 * The test folders, by what a test stands on (docs/architecture.md): unit (one
 * thread, no server), threads (real shard threads), redis (a real redis-server),
 * postgres (a real PostgreSQL server),
 * project (the package as users get it: install, docs, examples, bench CLI).
 * Only these folders are searched, so a stale dist/test/*.test.js left by an
 * older layout is never run.
 */
const FOLDERS = ['unit', 'threads', 'redis', 'postgres', 'project']
const timeoutMs = parseTimeout(process.env.TEST_TIMEOUT_MS)

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b[@-Z\\-_]/g

/** Files run at once (TEST_JOBS; default 2, or 1 on a single core). */
const jobs = parseJobs(process.env.TEST_JOBS)

/** The children running, so that a signal to the runner can end them too. */
const running = new Set()

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const child of running) killGroup(child)
    process.stderr.write(`\nrunner: ${sig}, stopping\n`)
    process.exit(130)
  })
}

const files = process.argv.length > 2 ? process.argv.slice(2).flatMap(resolveArg) : discover()

let passed = 0
let failed = 0
let skipped = 0
const rows = new Array(files.length)

// A pool of `jobs` lanes taking the next file in order. With one lane a file's
// output is forwarded live; with more, each file's output is printed whole
// when it ends, so that two files' lines never interleave.
let next = 0
async function lane() {
  while (next < files.length) {
    const i = next++
    const r = await runFile(files[i], jobs === 1)
    passed += r.passed
    failed += r.failed
    skipped += r.skipped
    rows[i] = { file: files[i], ...r }
  }
}
await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, lane))

process.stdout.write('\n-- test files --\n')
for (const r of rows) {
  const name = path.relative(root, r.file) || r.file
  const note = r.note ? `  (${r.note})` : ''
  const skip = r.skipped ? `, ${r.skipped} skipped` : ''
  const took = r.seconds === undefined ? '' : ` in ${r.seconds.toFixed(1)} s`
  process.stdout.write(`${r.failed ? 'FAIL' : 'ok  '}  ${name}: ${r.passed} passed, ${r.failed} failed${skip}${took}${note}\n`)
}
if (files.length === 0) process.stdout.write(`no test files found in ${path.relative(root, distTest)} (run npm run build)\n`)
if (skipped) process.stdout.write(`${skipped} skipped\n`)
process.stdout.write(`${passed} passed, ${failed} failed\n`)
process.exitCode = failed > 0 || passed + failed === 0 ? 1 : 0

// ── helpers ──────────────────────────────────────────────────────────────────

function parseTimeout(v) {
  if (v === undefined || v === '') return 120_000
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`runner: TEST_TIMEOUT_MS must be a positive number of ms, got ${JSON.stringify(v)}\n`)
    process.exit(2)
  }
  return n
}

function parseJobs(v) {
  if (v === undefined || v === '') return Math.min(2, availableParallelism())
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`runner: TEST_JOBS must be a positive integer, got ${JSON.stringify(v)}\n`)
    process.exit(2)
  }
  return n
}


function discover(folders = FOLDERS) {
  return folders.flatMap((name) => {
    const dir = path.join(distTest, name)
    if (!existsSync(dir)) return []
    return readdirSync(dir)
      .filter((f) => f.endsWith('.test.js'))
      .sort()
      .map((f) => path.join(dir, f))
  })
}

/**
 * Accepts a compiled file, a source path `test/unit/x.test.ts` that maps to
 * `dist/test/unit/x.test.js`, or a test folder (`test/unit`, `unit`): every file in it.
 */
function resolveArg(arg) {
  const folder = path.basename(arg.replace(/\/+$/, ''))
  if (FOLDERS.includes(folder) && !arg.endsWith('.js') && !arg.endsWith('.ts')) return discover([folder])
  const abs = path.resolve(arg)
  if (abs.endsWith('.ts')) {
    const rel = path.relative(root, abs).replace(/\.ts$/, '.js')
    return path.join(root, 'dist', rel)
  }
  return abs
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL') // the child leads its own group (detached)
  } catch {
    try {
      child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
}

/** Reads the last uvu summary in `text`; undefined when there is none. */
function parseSummary(text) {
  const plain = text.replace(ANSI, '')
  const re = /^\s*Total:\s+(\d+)\s*\n\s*Passed:\s+(\d+)\s*\n\s*Skipped:\s+(\d+)/gm
  let last
  for (let m = re.exec(plain); m !== null; m = re.exec(plain)) last = m
  if (last === undefined) return undefined
  return { total: Number(last[1]), passed: Number(last[2]), skipped: Number(last[3]) }
}

function runFile(file, live) {
  const name = path.relative(root, file) || file
  /** Where the file's output goes: straight through when live, else into one block printed at its end. */
  let block = ''
  const write = live ? (stream, text) => stream.write(text) : (_stream, text) => (block += text)
  const flush = () => {
    if (!live) process.stdout.write(block)
  }
  write(process.stdout, `\n> ${name}\n`)
  if (!existsSync(file)) {
    write(process.stderr, `runner: ${name} does not exist\n`)
    flush()
    return Promise.resolve({ passed: 0, failed: 1, skipped: 0, note: 'missing' })
  }
  const env = { ...process.env }
  // uvu colours only a TTY; keep colours when the runner's own stdout is one.
  if (process.stdout.isTTY && env.NO_COLOR === undefined && env.FORCE_COLOR === undefined) env.FORCE_COLOR = '1'

  const started = performance.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so a timeout also ends what it started
    })
    running.add(child)
    let out = ''
    let timedOut = false
    child.stdout.on('data', (chunk) => {
      const text = chunk.toString('utf8')
      out += text
      write(process.stdout, text)
    })
    child.stderr.on('data', (chunk) => write(process.stderr, chunk.toString('utf8')))
    const timer = setTimeout(() => {
      timedOut = true
      write(process.stderr, `\nrunner: ${name} still running after ${timeoutMs} ms, killing it\n`)
      killGroup(child)
    }, timeoutMs)

    let settled = false
    const finish = (code, signal, spawnError) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      running.delete(child)
      const summary = parseSummary(out)
      let passed = summary?.passed ?? 0
      let failed = summary === undefined ? 0 : Math.max(0, summary.total - summary.passed)
      const skipped = summary?.skipped ?? 0
      let note = ''
      if (spawnError !== undefined) {
        note = `could not start: ${spawnError.message}`
        failed += 1
      } else if (timedOut) {
        note = `timed out after ${timeoutMs} ms`
        failed += 1
      } else if (summary === undefined) {
        note = signal ? `killed by ${signal}, no summary` : `exit code ${code}, no summary`
        failed = 1
        passed = 0
      } else if (code !== 0 && failed === 0) {
        note = signal ? `killed by ${signal} after its summary` : `exit code ${code} after its summary`
        failed = 1
      } else if (summary.total === 0) {
        note = 'ran no tests'
      }
      flush()
      resolve({ passed, failed, skipped, note, seconds: (performance.now() - started) / 1000 })
    }
    child.on('error', (err) => finish(null, null, err))
    child.on('close', (code, signal) => finish(code, signal))
  })
}
