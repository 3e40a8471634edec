#!/usr/bin/env node
/**
 * `npm run bench [-- args]`: `npm run build`, then the benchmarks
 * (dist/bench/main.js) with the same arguments. Plain JavaScript, because it
 * runs before anything is compiled. It times the build and passes that, with
 * its own start time, to main.js, so that the run's last line is the wall time
 * a user waits for, build included, and the JSON keeps both.
 */
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const startedAt = Date.now()

let child
// Ctrl-C reaches every process in the terminal's group, the bench included,
// which stops its own children and exits: this process only waits for it.
process.on('SIGINT', () => {})
// A SIGTERM sent to this process alone (a supervisor, `timeout`) is passed on.
process.on('SIGTERM', () => child?.kill('SIGTERM'))

/** Runs a command with this terminal; resolves with its exit code (128 + signal number when killed). */
function run(command, args, env = process.env) {
  return new Promise((resolve, reject) => {
    child = spawn(command, args, { cwd: root, stdio: 'inherit', env })
    child.on('error', reject)
    child.on('exit', (code, signal) => resolve(code ?? 128 + (constants.signals[signal] ?? 0)))
  })
}

// Under npm, npm_execpath is the npm that started us (its CLI script, run by this node);
// run directly, `npm` from PATH.
const npm = process.env.npm_execpath
const t0 = performance.now()
const built = npm !== undefined && npm.endsWith('.js')
  ? await run(process.execPath, [npm, 'run', 'build'])
  : await run('npm', ['run', 'build'])
const buildMs = performance.now() - t0
if (built !== 0) {
  // 130: Ctrl-C (128 + SIGINT), which reached the build too.
  process.stderr.write(built === 130 ? 'bench: interrupted during the build\n' : `bench: the build failed (exit code ${built}); nothing was measured\n`)
  process.exit(built)
}

const code = await run(process.execPath, ['dist/bench/main.js', ...process.argv.slice(2)], {
  ...process.env,
  BENCH_BUILD_MS: String(Math.round(buildMs)),
  BENCH_STARTED_AT: String(startedAt),
})
process.exit(code)
