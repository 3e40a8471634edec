/**
 * The soak, short: bench/soak.ts's driver (mixed traffic with churn, TTLs,
 * tags, invalidateTag, clear, getOrCompute, attached threads attaching and
 * detaching, the Redis bus and L2 on) for ~26 s in a child process run with
 * --expose-gc, sampling every 2 s. After an 8 s warm-up, no sample's heap
 * (main thread, its Buffers, and each shard thread) may exceed the warm-up's
 * median level x 1.5 + 4 MB (main thread) or x 1.25 + 1 MB (shards). A
 * cache that retains something per operation fails it: checked with a Map
 * in Cache.set keeping each set's key, JSON and bytes (main Buffers 2.9 →
 * 14 MB, bound 10.3), and an array in the shard keeping a string copy of
 * each frame (shard heap 4.8 → 7.3 MB, bound 7.0; on a machine loaded 10x
 * over its 2 cores, ~500 ops/s: a leak of less than ~100 bytes per op goes
 * unseen in 30 s, which is what `npm run soak` is for). A busy machine only
 * slows the traffic down, which lowers the heaps, never raises them.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { SoakResult, SoakSample } from '../../bench/soak_driver.js'

const SOAK = fileURLToPath(new URL('../../bench/soak.js', import.meta.url))
const DURATION_S = 30
const INTERVAL_S = 2
const WARMUP_S = 8
const MB = 2 ** 20
/**
 * Later samples may reach warm-up x factor + slack. The main thread's heap
 * moves with what is in flight in the bus and L2 clients (±3 MB seen between
 * samples of a clean run); a shard's heap after gc holds only its tag index
 * and metadata (4.6 … 5.0 MB over a clean run), so its bound is tighter.
 */
const MAIN_FACTOR = 1.5
const MAIN_SLACK = 4 * MB
const SHARD_FACTOR = 1.25
const SHARD_SLACK = 1 * MB

function runChild(): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', SOAK, '--seconds', String(DURATION_S), '--interval-seconds', String(INTERVAL_S), '--attached-threads', '1', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
    child.on('close', (code) => resolve({ code, out, err }))
  })
}

const mb = (n: number): string => `${(n / MB).toFixed(1)} MB`

/** Every sample after the warm-up whose `pick` exceeds the warm-up's median x factor + slack, described. */
function overBound(samples: SoakSample[], pick: (s: SoakSample) => number, factor: number, slack: number, name: string): string[] {
  // The first sample is taken before the traffic ran. The warm-up level is
  // the median of the samples after it, not their highest: one sample that
  // caught a passing peak (a clear, a burst of bus messages) must not widen
  // the bound, which is what a leak has to cross.
  const warm = samples
    .filter((s) => s.t > 0.5 && s.t <= WARMUP_S)
    .map(pick)
    .sort((a, b) => a - b)
  const level = warm[warm.length >> 1]!
  const bound = level * factor + slack
  return samples.filter((s) => s.t > WARMUP_S && pick(s) > bound).map((s) => `${name} ${mb(pick(s))} at t=${s.t}s > ${mb(bound)} (warm-up ${mb(level)})`)
}

test(`soak: ${DURATION_S} s of churn with attached threads, bus and L2: heaps (and the main thread's Buffers) stay within their warm-up level x factor + slack, no operation fails`, async () => {
  const { code, out, err } = await runChild()
  const line = out.split('\n').find((l) => l.startsWith('SOAK_RESULT '))
  assert.ok(line !== undefined, `no result from the soak (exit ${String(code)}): ${err.slice(-2000)}${out.slice(-2000)}`)
  assert.is(code, 0, err.slice(-2000))
  const result = JSON.parse(line!.slice('SOAK_RESULT '.length)) as SoakResult
  const { samples } = result
  process.stdout.write(`\n${out.slice(0, out.indexOf('SOAK_RESULT'))}`)
  assert.equal(result.errors, {})
  assert.ok(samples.every((s) => s.collected), 'heaps measured after a forced gc')
  assert.ok(samples.filter((s) => s.t <= WARMUP_S && s.t > 0.5).length >= 2, 'at least 2 warm-up samples')
  assert.ok(samples.filter((s) => s.t > WARMUP_S).length >= 5, 'at least 5 samples after the warm-up')
  const last = samples[samples.length - 1]!
  // The run did what it is for: traffic, evictions from the budget, attach/detach cycles.
  assert.ok(last.ops > 0 && last.evictions > 0 && last.attachCycles >= 1 && last.threadsStarted >= 1, JSON.stringify(last))
  const problems = [
    ...overBound(samples, (s) => s.mainHeap, MAIN_FACTOR, MAIN_SLACK, 'main heap'),
    ...overBound(samples, (s) => s.mainExternal, MAIN_FACTOR, MAIN_SLACK, 'main external (Buffers)'),
    ...last.shardHeaps.flatMap((_, i) => overBound(samples, (s) => s.shardHeaps[i]!, SHARD_FACTOR, SHARD_SLACK, `shard ${i} heap`)),
    ...last.peerShardHeaps.flatMap((_, i) => overBound(samples, (s) => s.peerShardHeaps[i]!, SHARD_FACTOR, SHARD_SLACK, `peer shard ${i} heap`)),
  ]
  assert.equal(problems, [], problems.join('\n'))
})

test.run()
