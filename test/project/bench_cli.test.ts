/**
 * The benchmark's command line (`npm run bench -- ...`): a mistyped option,
 * a section name that does not exist, or two runs that exclude each other
 * stop it at once with a message naming what to fix, before anything is
 * measured or written. (Running the benchmarks themselves takes minutes, so
 * that is not tested here.)
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const MAIN = fileURLToPath(new URL('../../bench/main.js', import.meta.url))
// Results go to the source tree's bench/results (the compiled test runs from dist/test).
const RESULTS = fileURLToPath(new URL('../../../bench/results/', import.meta.url))

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = { ...process.env }
  delete clean.BENCH_FULL
  delete clean.BENCH_QUICK
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { ...clean, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), stdout, stderr }))
  })
}

const results = (): string[] => (existsSync(RESULTS) ? readdirSync(RESULTS).sort() : [])

const SECTIONS = 'throughput, bus, read-through, server, event-loop, event-loop-5m, memory, hit-ratio, policies, micro'

test('a mistyped option, an unknown section or --quick with --full: exit 1, one line naming the fix, nothing run or written', async () => {
  const before = results()
  const cases: [string[], Record<string, string>, string][] = [
    [['--quik'], {}, `bench: unknown option "--quik" (options: --quick, --full; sections: ${SECTIONS})\n`],
    [['memroy'], {}, `bench: unknown section "memroy" (sections: ${SECTIONS})\n`],
    [['--quick', '--full'], {}, 'bench: --quick and --full (or BENCH_FULL=1) exclude each other: pick one\n'],
    [['--quick'], { BENCH_FULL: '1' }, 'bench: --quick and --full (or BENCH_FULL=1) exclude each other: pick one\n'],
    [['throughput'], { BENCH_QUICK: '1' }, 'bench: BENCH_QUICK is now BENCH_SMOKE=1 (every section shortened, for harness work); `npm run bench -- --quick` runs the headline rows\n'],
  ]
  for (const [args, env, message] of cases) {
    const r = await run(args, env)
    assert.is(r.code, 1, args.join(' '))
    assert.is(r.stderr, message)
    assert.is(r.stdout, '', 'nothing printed before the check: no section started')
  }
  assert.equal(results(), before, 'no results file written')
})

test.run()
