/**
 * The command line: `shardcache replay` end to end (a real process), exact
 * hit counts on small traces where LRU and FIFO differ, and on a real trace
 * against a reference model written here (a Map-based LRU and FIFO);
 * `--version` through a bin link, `--help`, and the exact message and exit
 * code of each bad argument (usage errors on stderr, results on stdout).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync, gzipSync } from 'node:zlib'
import { EVICTION_POLICIES } from '../../src/wire/region_types.js'
import { main } from '../../src/cli/main.js'
import { prepareTrace, replayTrace } from '../../src/cli/replay.js'
import { readTrace } from '../../src/cli/traces.js'

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
// The source tree's copy (the compiled test runs from dist/test).
const TRACE = fileURLToPath(new URL('../../../traces/lirs-multi2.keys.gz', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'shardcache-cli-'))

function run(args: string[], options: { cli?: string; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [options.cli ?? CLI, ...args], { cwd: options.cwd }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), stdout, stderr }),
    )
  })
}

/** main() in this process, its two streams collected apart. */
async function runMain(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await main(args, (s) => (stdout += s), (s) => (stderr += s))
  return { code, stdout, stderr }
}

const REPLAY_USAGE =
  'usage: shardcache replay TRACE (--sizes S,S... | --size N) [--policy all|NAME[,NAME...]] [--format keys|oracle] [--bytes] [--shards N,N...] [--json] [--chart out.svg]\n'
const POLICY_PROBLEM = `--policy must be all or one or more of ${EVICTION_POLICIES.join(', ')}, comma-separated`
const BENCH_USAGE = 'usage: shardcache bench [--workload zipf|uniform|trace FILE] [--shards N] [--ms N] [--json] [--chart out.svg]\n'

/** The store's replay of the trace at `path` (src/cli/replay.ts): requests, hits, unique keys. */
async function replay(path: string, policy: 'lru' | 'fifo', size: number): Promise<{ requests: number; hits: number; uniqueKeys: number }> {
  const p = prepareTrace(await readTrace(path))
  return { requests: p.trace.keys.length, hits: replayTrace(p, { policy, budget: size, bytes: false, shards: 1 }).hits, uniqueKeys: p.uniqueKeys }
}

/** The reference: a cache of `size` keys, LRU (a hit moves the key to the back) or FIFO. */
function model(keys: string[], policy: 'lru' | 'fifo', size: number): number {
  const m = new Map<string, true>()
  let hits = 0
  for (const k of keys) {
    if (m.has(k)) {
      hits++
      if (policy === 'lru') {
        m.delete(k)
        m.set(k, true)
      }
      continue
    }
    m.set(k, true)
    if (m.size > size) m.delete(m.keys().next().value!)
  }
  return hits
}

test('replay counts exact hits: LRU keeps a re-read key, FIFO does not; gzip or plain', async () => {
  const plain = join(dir, 'small.keys')
  writeFileSync(plain, 'a\nb\na\nc\na\n\n')
  assert.is((await replay(plain, 'lru', 2)).hits, 2)
  assert.is((await replay(plain, 'fifo', 2)).hits, 1)
  const gz = join(dir, 'small.keys.gz')
  writeFileSync(gz, gzipSync('x\ny\nz\nx\ny\nz\n'))
  const r = await replay(gz, 'lru', 2)
  assert.equal([r.requests, r.hits, r.uniqueKeys], [6, 0, 3])
  assert.is((await replay(gz, 'lru', 3)).hits, 3)
})

test('on a real trace (LIRS multi2) the store\'s LRU and FIFO hit exactly as the reference model does', async () => {
  const keys = gunzipSync(readFileSync(TRACE)).toString('utf8').split('\n').filter((k) => k !== '')
  for (const policy of ['lru', 'fifo'] as const) {
    for (const size of [100, 1000, 4000]) {
      const r = await replay(TRACE, policy, size)
      assert.is(r.requests, keys.length)
      assert.is(r.hits, model(keys, policy, size), `${policy} ${size}`)
    }
  }
})

test('the command prints the ratio (or JSON) and exits 0; bad arguments exit 2 with the usage', async () => {
  const ok = await run(['replay', TRACE, '--policy', 'fifo', '--size', '1000', '--json'])
  assert.is(ok.code, 0)
  const r = JSON.parse(ok.stdout) as { hits: number; requests: number; hitRatio: number }
  assert.is(r.hitRatio, r.hits / r.requests)
  const text = await run(['replay', TRACE, '--size', '1000'])
  assert.match(text.stdout, /tinylfu with 1,000 entries: hit ratio \d+\.\d\d%/, 'without --policy, the default policy')
  // A usage error: exit code 2, the problem and the usage on stderr, nothing on stdout.
  const bad = await run(['replay', TRACE, '--size', '10', '--policy', 'lfu'])
  assert.equal(bad, { code: 2, stdout: '', stderr: `shardcache replay: ${POLICY_PROBLEM} (got "lfu")\n${REPLAY_USAGE}` })
  const missing = await run(['replay', join(dir, 'missing.keys'), '--size', '10'])
  assert.equal(missing, { code: 1, stdout: '', stderr: `shardcache replay: cannot read the trace ${join(dir, 'missing.keys')}: no such file or directory (ENOENT)\n` })
})

test('--version prints the package version, from a bin link in another directory too; --help and -h print the usage; both exit 0', async () => {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }
  assert.match(pkg.version, /^\d+\.\d+\.\d+/)
  // As npm installs it: a symlink in node_modules/.bin, run from a directory that has no package.json.
  const elsewhere = join(dir, 'elsewhere')
  mkdirSync(join(elsewhere, 'node_modules', '.bin'), { recursive: true })
  const bin = join(elsewhere, 'node_modules', '.bin', 'shardcache')
  symlinkSync(CLI, bin)
  for (const flag of ['--version', '-v']) assert.equal(await run([flag], { cli: bin, cwd: elsewhere }), { code: 0, stdout: `${pkg.version}\n`, stderr: '' }, flag)
  for (const flag of ['--help', '-h']) {
    const help = await run([flag])
    assert.is(help.code, 0, flag)
    assert.is(help.stderr, '', flag)
    assert.ok(help.stdout.startsWith(`${REPLAY_USAGE}       shardcache bench`), help.stdout)
    assert.match(help.stdout, '  --size      one size in entries (bytes with --bytes): --size N is --sizes N')
    // The format rule, and every policy the list holds.
    assert.match(help.stdout, 'Default from the name: .bin or .bin.gz\n              is oracle, anything else keys')
    assert.match(help.stdout, `  --policy    ${EVICTION_POLICIES.join(', ')}, several comma-separated, or all (default lru)`)
  }
  const sub = await runMain(['replay', '--help'])
  assert.equal([sub.code, sub.stderr, sub.stdout.startsWith(REPLAY_USAGE)], [0, '', true])
  assert.equal([(await runMain(['bench', '-h'])).code], [0])
})

test('an unknown command or option names it and the commands, on stderr, exit 2; no command at all prints the usage there', async () => {
  assert.equal(await run(['foo']), { code: 2, stdout: '', stderr: 'shardcache: unknown command "foo" (commands: replay, bench, status, metrics, events; see shardcache --help)\n' })
  assert.equal(await runMain(['--verbose']), { code: 2, stdout: '', stderr: 'shardcache: unknown option "--verbose" (commands: replay, bench, status, metrics, events; see shardcache --help)\n' })
  const none = await runMain([])
  assert.equal([none.code, none.stdout, none.stderr.startsWith(REPLAY_USAGE)], [2, '', true])
})

test('replay: each bad argument is its own message, with the value given', async () => {
  const bin = join(dir, 'some.bin')
  writeFileSync(bin, Buffer.alloc(48))
  const cases: [string[], string[]][] = [
    [['replay', TRACE, '--size', '10', '--policy', 'lfu'], [`${POLICY_PROBLEM} (got "lfu")`]],
    [['replay', TRACE, '--size', '10', '--policy', 'lru,lfu'], [`${POLICY_PROBLEM} (got "lru,lfu")`]],
    [['replay', TRACE, '--size', '10', '--policy', 'lru,'], [`${POLICY_PROBLEM} (got "lru,")`]],
    [['replay', TRACE, '--size', '10', '--policy', 'fifo,lru,fifo'], ['--policy names "fifo" twice']],
    [['replay', TRACE, '--size', '0'], ['--size must be a positive integer (got "0")']],
    [['replay', TRACE, '--size', '1e3'], ['--size must be a positive integer (got "1e3")']],
    [['replay', TRACE, '--size', 'ten'], ['--size must be a positive integer (got "ten")']],
    [['replay', TRACE], ["--sizes (or --size) is required: the cache's sizes, in entries or percentages of the trace's unique keys (--sizes 1%,5%,10%)"]],
    [['replay', bin, '--bytes'], ["--sizes (or --size) is required: the cache's sizes, in bytes or percentages of the trace's footprint (--sizes 1%,5%,10%)"]],
    [['replay', TRACE, '--sizes', '1%,0'], ['--sizes must be entries (1000,5000) or percentages (1%,5%,10%), comma-separated (got "1%,0")']],
    [['replay', TRACE, '--sizes', '10mb'], ['--sizes must be entries (1000,5000) or percentages (1%,5%,10%), comma-separated (got "10mb")']],
    [['replay', bin, '--bytes', '--sizes', '1%,,2%'], ['--sizes must be bytes (1000000,5000000) or percentages (1%,5%,10%), comma-separated (got "1%,,2%")']],
    [['replay', TRACE, '--sizes', '10%,5,10%'], ['--sizes names "10%" twice']],
    [['replay', TRACE, '--sizes', '5', '--size', '5'], ['--size and --sizes exclude each other (--size N is --sizes N)']],
    [['replay', TRACE, '--size', '10', '--shards', '0'], ['--shards must be shard counts from 1 to 256, comma-separated (got "0")']],
    [['replay', TRACE, '--size', '10', '--shards', '1,257'], ['--shards must be shard counts from 1 to 256, comma-separated (got "1,257")']],
    [['replay', TRACE, '--size', '10', '--shards', '2,2'], ['--shards names "2" twice']],
    [['replay', TRACE, '--size', '10', '--format', 'csv'], ['--format must be keys or oracle (got "csv")']],
    [['replay', TRACE, '--size', '10', '--bytes'], ['--bytes needs object sizes, which only oracle traces have (this trace is read as keys: its name does not end in .bin or .bin.gz)']],
    [['replay', bin, '--size', '10', '--bytes', '--format', 'keys'], ['--bytes needs object sizes, which only oracle traces have (this trace is read as keys: --format keys)']],
    // Known only once the trace is read: 1% of multi2's 5,684 keys is 56 entries, too few for 64 shards.
    [['replay', TRACE, '--sizes', '1%,10%', '--shards', '1,64'], ['--sizes 1% is 56 entries, fewer than 64 shards: each shard holds a share']],
    [['replay', '--size', '10'], ['needs a TRACE file (keys one per line, or oracleGeneral records; gzip or plain)']],
    [['replay', 'a.keys', 'b.keys', '--size', '10'], ['takes one TRACE file (got 2: "a.keys", "b.keys")']],
    // Every problem at once, each on its own line.
    [['replay', '--policy', 'lfu', '--size=-1'], ['needs a TRACE file (keys one per line, or oracleGeneral records; gzip or plain)', `${POLICY_PROBLEM} (got "lfu")`, '--size must be a positive integer (got "-1")']],
    [['replay', TRACE, '--size'], ['--size needs a value']],
    [['replay', TRACE, '--size', '-1'], ['--size needs a value (one starting with "-" is written --size=VALUE)']],
    [['replay', TRACE, '--size', '10', '--json=yes'], ['--json takes no value']],
    [['replay', TRACE, '--size', '10', '--sise', '3'], ['unknown option "--sise" (options: --sizes, --size, --policy, --format, --bytes, --shards, --json, --chart, --help)']],
  ]
  for (const [args, problems] of cases) {
    const r = await runMain(args)
    assert.equal(r, { code: 2, stdout: '', stderr: problems.map((p) => `shardcache replay: ${p}\n`).join('') + REPLAY_USAGE }, args.join(' '))
  }
  // A trace that ends inside a record, an empty one: exit 1, said as such.
  const torn = join(dir, 'torn.bin')
  writeFileSync(torn, Buffer.alloc(50))
  assert.equal(await runMain(['replay', torn, '--size', '10']), {
    code: 1,
    stdout: '',
    stderr: `shardcache replay: cannot read the trace ${torn}: ends in a partial record: 2 bytes after the last whole one (oracleGeneral records are 24 bytes)\n`,
  })
  const empty = join(dir, 'empty-replay.keys')
  writeFileSync(empty, '\n')
  assert.equal(await runMain(['replay', empty, '--size', '10']), { code: 1, stdout: '', stderr: `shardcache replay: the trace ${empty} holds no requests\n` })
  const noChart = join(dir, 'no-such-dir', 'c.svg')
  const chartless = await runMain(['replay', TRACE, '--sizes', '10%,20%', '--chart', noChart])
  assert.equal([chartless.code, chartless.stdout.includes('10% = 568'), chartless.stderr], [1, true, `shardcache replay: cannot write the chart ${noChart}: no such file or directory (ENOENT)\n`])
  // A gzip trace that cannot be opened fails the command (it was an unhandled stream error).
  const gz = join(dir, 'missing.keys.gz')
  assert.equal(await runMain(['replay', gz, '--size', '10']), { code: 1, stdout: '', stderr: `shardcache replay: cannot read the trace ${gz}: no such file or directory (ENOENT)\n` })
  const notGzip = join(dir, 'plain.keys.gz')
  writeFileSync(notGzip, 'a\nb\n')
  assert.equal(await runMain(['replay', notGzip, '--size', '10']), { code: 1, stdout: '', stderr: `shardcache replay: cannot read the trace ${notGzip}: incorrect header check (Z_DATA_ERROR)\n` })
  // One of each, counted in the singular.
  const one = join(dir, 'one.keys')
  writeFileSync(one, 'a\na\n')
  const r = await runMain(['replay', one, '--size', '1'])
  assert.is(r.code, 0)
  assert.match(r.stdout, new RegExp(`^${one.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 2 requests, 1 key; tinylfu with 1 entry: hit ratio 50\\.00% \\(1 hit, \\d+ ms\\)\n$`))
})

test('bench: each bad argument is its own message, with the value given; an empty trace says so', async () => {
  const cases: [string[], string[]][] = [
    [['bench', '--workload', 'pareto'], ['--workload must be zipf, uniform or trace (got "pareto")']],
    [['bench', '--workload', 'trace'], ['--workload trace needs a FILE: shardcache bench --workload trace FILE']],
    [['bench', '--workload', 'trace', 'a', 'b'], ['--workload trace takes one FILE (got 2: "a", "b")']],
    [['bench', 'extra'], ['unexpected argument "extra" (only --workload trace takes a FILE)']],
    [['bench', '--shards', '0'], ['--shards must be an integer from 1 to 256 (got "0")']],
    [['bench', '--shards', '257'], ['--shards must be an integer from 1 to 256 (got "257")']],
    [['bench', '--ms', '99'], ['--ms must be an integer of at least 100 (got "99")']],
    [['bench', '--shards', 'two', '--ms', 'x'], ['--shards must be an integer from 1 to 256 (got "two")', '--ms must be an integer of at least 100 (got "x")']],
    [['bench', '--chart'], ['--chart needs a value']],
    [['bench', '--threads', '2'], ['unknown option "--threads" (options: --workload, --shards, --ms, --json, --chart, --help)']],
  ]
  for (const [args, problems] of cases) {
    const r = await runMain(args)
    assert.equal(r, { code: 2, stdout: '', stderr: problems.map((p) => `shardcache bench: ${p}\n`).join('') + BENCH_USAGE }, args.join(' '))
  }
  const empty = join(dir, 'empty.keys')
  writeFileSync(empty, '\n\n')
  assert.equal(await runMain(['bench', '--workload', 'trace', empty]), { code: 1, stdout: '', stderr: `shardcache bench: the trace ${empty} holds no keys\n` })
  const gz = join(dir, 'missing.keys.gz')
  assert.equal(await runMain(['bench', '--workload', 'trace', gz]), { code: 1, stdout: '', stderr: `shardcache bench: cannot read the trace ${gz}: no such file or directory (ENOENT)\n` })
})

test('bench measures shardcache and lru-cache on one key sequence, prints JSON, draws the chart; bad arguments exit 2', async () => {
  const svg = join(dir, 'chart.svg')
  const res = await run(['bench', '--ms', '200', '--shards', '1', '--json', '--chart', svg])
  assert.is(res.code, 0, res.stdout)
  const r = JSON.parse(res.stdout) as { workload: string; keys: number; rows: { engine: string; opsPerSec: number; p99Us: number }[] }
  assert.is(r.workload, 'zipf s=0.99')
  assert.is(r.keys, 100_000)
  assert.equal(r.rows.map((x) => x.engine), ['shardcache 1 shard', 'lru-cache (same thread)'])
  for (const row of r.rows) assert.ok(row.opsPerSec > 0 && row.p99Us > 0, row.engine)
  const drawn = readFileSync(svg, 'utf8')
  assert.match(drawn, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  assert.is(drawn.match(/<rect /g)!.length, 4) // two panels, two engines
  assert.match(drawn, 'lru-cache (same thread)')
  const trace = await run(['bench', '--workload', 'trace', TRACE, '--ms', '100', '--json'])
  const t = JSON.parse(trace.stdout) as { keys: number; requests: number }
  assert.equal([t.keys, t.requests], [5684, 26311])
  const bad = await run(['bench', '--shards', '0'])
  assert.equal(bad, { code: 2, stdout: '', stderr: `shardcache bench: --shards must be an integer from 1 to 256 (got "0")\n${BENCH_USAGE}` })
})

test.run()
