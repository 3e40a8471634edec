/**
 * Trace reading (src/cli/traces.ts) and replay through the region store
 * (src/cli/replay.ts), with `shardcache replay`'s table, JSON and chart
 * (src/cli/main.ts, run in this process): the shipped oracleGeneral trace's
 * exact counts; the store's hit counts equal to the policy-interface replay
 * (test/fixtures/policy_replay.ts) for LRU, FIFO and SIEVE; a byte replay's
 * exact byte hit ratio on a trace built here; sharded replays equal to
 * replaying each shard's keys (split by the router's own shardOf) at its
 * share; and a chart with a line per policy.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { main } from '../../src/cli/main.js'
import { TraceParser, formatOf, readTrace, readTraceSync } from '../../src/cli/traces.js'
import { parseCacheSize, prepareTrace, replayTrace } from '../../src/cli/replay.js'
import type { ReplayReport, ReplayResult } from '../../src/cli/replay.js'
import { DirectReads } from '../../src/client/direct_reads.js'
import type { ShardChannel } from '../../src/client/shard_channel.js'
import { EVICTION_POLICIES } from '../../src/wire/region_types.js'
import type { EvictionPolicy } from '../../src/wire/region_types.js'
import { createPolicy } from '../../workers/policy/index.js'
import { TRACES, replay, sized } from '../fixtures/policy_replay.js'

const CLOUDPHYSICS = `${TRACES}cloudphysics.oracleGeneral.bin.gz`
const MULTI2 = `${TRACES}lirs-multi2.keys.gz`
const CPP = `${TRACES}lirs-cpp.keys.gz`
const dir = mkdtempSync(join(tmpdir(), 'shardcache-replay-'))
/** The policies the store and the policy-interface replay must agree on hit for hit. */
const AGREEING: EvictionPolicy[] = ['lru', 'fifo', 'sieve', 's3fifo']

async function runMain(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await main(args, (s) => (stdout += s), (s) => (stderr += s))
  return { code, stdout, stderr }
}

/** Hits of `policy` at `size` entries through the policy interface alone (the fixture's replay gives a percentage). */
function referenceHits(keys: Uint32Array, policy: EvictionPolicy, size: number): number {
  return Math.round((replay(createPolicy(policy, sized(size, size)), keys, size) * keys.length) / 100)
}

/** oracleGeneral records: [id, size] pairs, with a timestamp and next-access time that the reader must skip. */
function oracle(records: [bigint, number][]): Buffer {
  const b = Buffer.alloc(records.length * 24)
  records.forEach(([id, size], i) => {
    b.writeUInt32LE(1000 + i, i * 24)
    b.writeBigUInt64LE(id, i * 24 + 4)
    b.writeUInt32LE(size, i * 24 + 12)
    b.writeBigInt64LE(-1n, i * 24 + 16)
  })
  return b
}

test('the oracleGeneral reader: cloudphysics has 113,872 requests of 48,974 objects, 2,029,769,728 bytes of footprint; streamed and read at once alike', async () => {
  const t = await readTrace(CLOUDPHYSICS)
  assert.is(t.format, 'oracle')
  assert.is(t.keys.length, 113_872)
  assert.is(t.names.length, 48_974)
  assert.is(t.sizes!.length, 113_872)
  // Dense: every number below the count is used, first appearances in order.
  assert.is(Math.max(...t.keys), 48_973)
  assert.equal([t.keys[0], t.names[0]], [0, t.names[t.keys[0]!]])
  const p = prepareTrace(t)
  assert.is(p.footprintBytes, 2_029_769_728)
  assert.is(p.requestBytes, 4_368_040_448)
  const once = readTraceSync(CLOUDPHYSICS)
  assert.equal([once.keys, once.sizes, once.names], [t.keys, t.sizes, t.names])
})

test('a line or a record split between two chunks reads as whole; ids past 2^53 keep every digit; a partial record is an error', () => {
  const keys = Buffer.from('a\r\nbb\n\n  a \nccc\nbb')
  const big = 2n ** 63n + 5n
  const bin = oracle([[7n, 10], [big, 20], [7n, 30]])
  for (const [format, bytes] of [['keys', keys], ['oracle', bin]] as const) {
    const whole = new TraceParser(format)
    whole.push(bytes)
    const want = whole.finish()
    for (const step of [1, 5, 7, 23, 25]) {
      const p = new TraceParser(format)
      for (let i = 0; i < bytes.length; i += step) p.push(bytes.subarray(i, i + step))
      assert.equal(p.finish(), want, `${format} in chunks of ${step}`)
    }
  }
  const k = readTraceSync(writeTo('split.keys', keys))
  assert.equal([[...k.keys], k.names, k.sizes], [[0, 1, 0, 2, 1], ['a', 'bb', 'ccc'], undefined])
  const o = readTraceSync(writeTo('big.bin', bin))
  assert.equal([[...o.keys], o.names, [...o.sizes!]], [[0, 1, 0], ['7', '9223372036854775813'], [10, 20, 30]])
  const partial = new TraceParser('oracle')
  partial.push(bin.subarray(0, 30))
  assert.throws(() => partial.finish(), /ends in a partial record: 6 bytes after the last whole one \(oracleGeneral records are 24 bytes\)/)
  // The format from the name: .bin or .bin.gz is oracle, anything else keys.
  assert.equal(['t.bin', 't.bin.gz', 't.keys.gz', 't.txt', 't.binary'].map(formatOf), ['oracle', 'oracle', 'keys', 'keys', 'keys'])
})

function writeTo(name: string, data: Uint8Array | string): string {
  const path = join(dir, name)
  writeFileSync(path, data)
  return path
}

test('sizes: 10% and 0.5% are shares, 5000 a count; zero, signs, exponents and units are not sizes', () => {
  assert.equal(['10%', '0.5%', '5000'].map(parseCacheSize), [{ percent: 10 }, { percent: 0.5 }, { count: 5000 }])
  for (const bad of ['0', '0%', '-1', '1e3', '10MB', '%', '.5%', '1.%', '']) assert.is(parseCacheSize(bad), undefined, bad)
})

test('--policy all --sizes: the table of a small trace, hit for hit as worked out by hand and as the policy interface replays it', async () => {
  // a b a c a b: at 2 entries LRU keeps a (hits 3 and 5), FIFO evicts it at c (hit 3 only), SIEVE spares it, visited.
  const small = writeTo('small.keys', 'a\nb\na\nc\na\nb\n')
  const r = await runMain(['replay', small, '--policy', 'lru,fifo,sieve', '--sizes', '1,2,100%'])
  assert.equal(r, {
    code: 0,
    stderr: '',
    stdout:
      `${small} (keys): 6 requests, 3 unique keys\n` +
      'hit ratio (%) per policy\n' +
      'size        lru   fifo  sieve\n' +
      '--------  -----  -----  -----\n' +
      '1          0.00   0.00   0.00\n' +
      '2         33.33  16.67  33.33\n' +
      '100% = 3  50.00  50.00  50.00\n',
  })
  const keys = readTraceSync(small).keys
  // S3-FIFO at 2 entries (small queue 1, main 1): a, hit once while in small (the hit at 3), is evicted at c.
  assert.equal(AGREEING.map((p) => referenceHits(keys, p, 2)), [2, 1, 2, 1])
  // A real trace, every policy the list holds: a column each; LRU, FIFO and SIEVE as the policy interface replays them.
  const json = await runMain(['replay', CPP, '--policy', 'all', '--sizes', '1%,5%,10%,122', '--json'])
  assert.is(json.code, 0, json.stderr)
  const report = JSON.parse(json.stdout) as ReplayReport
  assert.equal([report.requests, report.uniqueKeys, report.format], [9047, 1223, 'keys'])
  assert.equal([...new Set(report.results.map((x) => x.size))], [12, 61, 122])
  assert.equal([...new Set(report.results.map((x) => x.policy))], [...EVICTION_POLICIES])
  const cpp = readTraceSync(CPP).keys
  for (const x of report.results.filter((x) => AGREEING.includes(x.policy))) {
    assert.is(x.hits, referenceHits(cpp, x.policy, x.size), `${x.policy} at ${x.sizeAsked}`)
    assert.is(x.hitRatio, x.hits / 9047)
  }
  // The published figures at 122 entries (test/unit/sieve.test.ts, s3fifo.test.ts): LRU 75.72%, FIFO 62.84%, SIEVE 73.53%, S3-FIFO 80.37%.
  const at122 = (p: EvictionPolicy): number => report.results.find((x) => x.sizeAsked === '122' && x.policy === p)!.hits
  assert.equal(AGREEING.map(at122), [6850, 5685, 6652, 7272])
  const table = await runMain(['replay', CPP, '--policy', 'all', '--sizes', '10%'])
  assert.equal(table.stdout.split('\n')[2]!.split(/ +/), ['size', ...EVICTION_POLICIES])
})

test('--bytes: objects stored at their sizes under a byte budget, charged key + value + 64; exact object and byte hit ratios', async () => {
  // Sizes 1,000, 2,000, 500 and 5,000 bytes, keys of one byte: charges 1,065, 2,065, 565 and 5,065.
  // A budget of 3,200 holds objects 1 and 2 (3,130) but not 3 beside them; 4 never fits (counted a miss, not stored).
  const ids: bigint[] = [1n, 2n, 1n, 3n, 1n, 2n, 4n, 4n]
  const size: Record<string, number> = { 1: 1000, 2: 2000, 3: 500, 4: 5000 }
  const file = writeTo('sized.bin.gz', gzipSync(oracle(ids.map((id) => [id, size[String(id)]!]))))
  const r = await runMain(['replay', file, '--bytes', '--policy', 'lru,fifo', '--sizes', '3200,37.7%', '--json'])
  assert.is(r.code, 0, r.stderr)
  const report = JSON.parse(r.stdout) as ReplayReport
  assert.equal([report.footprintBytes, report.requestBytes], [8500, 17500])
  const got = report.results.map((x) => [x.policy, x.size, x.hits, x.hitBytes, x.tooLarge])
  // LRU: 1 2 1(hit) 3 (evicts 2) 1(hit) 2 (evicts 3) 4 4: 2,000 bytes hit. FIFO: 1 2 1(hit) 3 (evicts 1) 1 (evicts 2) 2 (evicts 3): 1,000.
  // 37.7% of 8,500 is 3,204 bytes: the same.
  assert.equal(got, [
    ['lru', 3200, 2, 2000, 2],
    ['fifo', 3200, 1, 1000, 2],
    ['lru', 3204, 2, 2000, 2],
    ['fifo', 3204, 1, 1000, 2],
  ])
  assert.is(report.results[0]!.byteHitRatio, 2000 / 17500)
  assert.is(report.results[0]!.hitRatio, 2 / 8)
  const table = await runMain(['replay', file, '--bytes', '--policy', 'lru,fifo', '--sizes', '3200'])
  assert.is(
    table.stdout,
    `${file} (oracle): 8 requests, 4 unique keys, footprint 8.3 KB (8,500 bytes)\n` +
      'object and byte hit ratio (%) per policy\n' +
      'size     lru obj%  lru byte%  fifo obj%  fifo byte%\n' +
      '-------  --------  ---------  ---------  ----------\n' +
      '3.13 KB     25.00      11.43      12.50        5.71\n' +
      "at 3.13 KB: 2 requests for objects over a shard's budget, not stored (misses)\n",
  )
  // Without --policy, the library's default. W-TinyLFU keeps 1 too: at 3, the window's candidate 2 (seen once)
  // loses its duel against 1 (seen twice), and at 2, 3 loses against 1 (seen three times).
  const one = await runMain(['replay', file, '--bytes', '--size', '3200'])
  assert.match(one.stdout, /: 8 requests, 4 keys; tinylfu with 3\.13 KB: hit ratio 25\.00%, byte hit ratio 11\.43% \(2 hits, \d+ ms\)\n$/)
})

test('--shards: 1 shard is the plain replay; N shards are each shard\'s keys (the router\'s shardOf) replayed at its share of the size', async () => {
  const r = await runMain(['replay', MULTI2, '--policy', 'all', '--sizes', '568,5%', '--shards', '1,2,4', '--json'])
  assert.is(r.code, 0, r.stderr)
  const results = (JSON.parse(r.stdout) as ReplayReport).results
  assert.is(results.length, 2 * 3 * EVICTION_POLICIES.length)
  const trace = readTraceSync(MULTI2)
  const p = prepareTrace(trace)
  const of = (x: ReplayResult): string => `${x.policy} ${x.size} entries, ${x.shards} shards`
  for (const x of results.filter((x) => x.shards === 1)) {
    assert.is(x.hits, replayTrace(p, { policy: x.policy, budget: x.size, bytes: false, shards: 1 }).hits, of(x))
    const plain = JSON.parse((await runMain(['replay', MULTI2, '--policy', x.policy, '--size', String(x.size), '--json'])).stdout) as ReplayResult
    assert.is(x.hits, plain.hits, of(x))
  }
  for (const shards of [2, 4]) {
    // The router's own routing: a DirectReads (the Router's base class) of `shards` channels, never used to send.
    const router = new DirectReads(new Array<ShardChannel>(shards), [true], undefined, 0)
    const shardOfKey = trace.names.map((n) => router.shardOf(n))
    const parts = Array.from({ length: shards }, (_, s) => Uint32Array.from(trace.keys.filter((k) => shardOfKey[k] === s)))
    for (const x of results.filter((x) => x.shards === shards && AGREEING.includes(x.policy))) {
      // regionShare: the entry budget split so the shares sum to it, the first shards taking the remainder.
      const want = parts.reduce((sum, keys, s) => sum + referenceHits(keys, x.policy, Math.floor(x.size / shards) + (s < x.size % shards ? 1 : 0)), 0)
      assert.is(x.hits, want, of(x))
    }
  }
  // Splitting the cache costs LRU a little on this trace (one LRU over 568 entries against four over 142).
  const lru = results.filter((x) => x.policy === 'lru' && x.size === 568).map((x) => x.hits)
  assert.equal(lru, [9715, 9680, 9641])
})

test('--chart writes a well-formed SVG: axes, labels, a legend, one path per policy', async () => {
  const svg = join(dir, 'hit.svg')
  const r = await runMain(['replay', CPP, '--policy', 'all', '--sizes', '1%,5%,10%,20%', '--chart', svg])
  assert.is(r.code, 0, r.stderr)
  assert.ok(r.stdout.endsWith(`chart: ${svg}\n`))
  const drawn = readFileSync(svg, 'utf8')
  assert.match(drawn, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  // Well-formed: every element closed, in order.
  const open: string[] = []
  for (const m of drawn.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[1] === '/') assert.is(open.pop(), m[2], `</${m[2]}> closes what was opened`)
    else if (m[3] !== '/') open.push(m[2]!)
  }
  assert.equal(open, [])
  assert.is(drawn.match(/<path /g)!.length, EVICTION_POLICIES.length)
  for (const p of EVICTION_POLICIES) assert.ok(drawn.includes(`>${p}</text>`), `legend: ${p}`)
  assert.ok(drawn.includes('hit ratio (%)') && drawn.includes('cache size (entries, log scale)'))
  assert.ok(drawn.includes('>10% (122)</text>'), 'x ticks labelled as asked')
})

test.run()
