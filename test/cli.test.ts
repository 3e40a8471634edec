/**
 * The command line: `shardcache replay` end to end (a real process), exact
 * hit counts on small traces where LRU and FIFO differ, and on a real trace
 * against a reference model written here (a Map-based LRU and FIFO).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync, gzipSync } from 'node:zlib'
import { replay } from '../src/cli.js'

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))
// The source tree's copy (the compiled test runs from dist/test).
const TRACE = fileURLToPath(new URL('../../test/fixtures/traces/lirs-multi2.keys.gz', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'shardcache-cli-'))

function run(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (err, stdout) => resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), stdout }))
  })
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
  assert.match(text.stdout, /lru with 1,000 entries: hit ratio \d+\.\d\d%/)
  for (const args of [['replay', TRACE], ['replay', TRACE, '--size', '0'], ['replay', TRACE, '--size', '10', '--policy', 'lfu'], ['nope']]) {
    const bad = await run(args)
    assert.is(bad.code, 2, args.join(' '))
    assert.match(bad.stdout, 'usage: shardcache replay')
  }
  const missing = await run(['replay', join(dir, 'missing.keys'), '--size', '10'])
  assert.is(missing.code, 1)
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
  for (const args of [['bench', '--workload', 'trace'], ['bench', '--workload', 'pareto'], ['bench', '--shards', '0'], ['bench', 'extra']]) {
    const bad = await run(args)
    assert.is(bad.code, 2, args.join(' '))
    assert.match(bad.stdout, 'usage: shardcache replay')
  }
})

test.run()
