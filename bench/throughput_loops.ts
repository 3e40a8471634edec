/**
 * The workload (keys, values, a Zipf key ring and an op ring per mix) and the
 * timing loops that drive an engine through it: pipelined async loops, one op
 * in flight, and the sync tight loop. Shared by the throughput and bus
 * sections, so both measure the same way.
 */
import { createHistogram } from 'node:perf_hooks'
import type { RecordableHistogram } from 'node:perf_hooks'
import { drawOpRing, drawRing, ZipfSampler } from '../src/cli/workload.js'
import { summarize } from './report.js'
import type { LatencySummary } from './report.js'
import type { AsyncKv, SyncKv } from './throughput_engines.js'

export interface Mix {
  name: string
  writeRatio: number
}

/**
 * read-only isolates get throughput for the headline ratio: in a mixed run
 * the gets and sets share one capacity and cannot be told apart.
 */
export const MIXES: Mix[] = [
  { name: 'read-only 100/0', writeRatio: 0 },
  { name: 'read-heavy 90/10', writeRatio: 0.1 },
  { name: 'write-heavy 50/50', writeRatio: 0.5 },
]

export interface RunResult {
  ops: number
  elapsedMs: number
  opsPerSec: number
  /** Gets that found a value, over all gets, as the harness saw them. */
  hitRate: number
  latency: LatencySummary
}

// ── workload ───────────────────────────────────────────────────────────────

export const RING = 1 << 20
export const MASK = RING - 1
export const VALUE_VARIANTS = 64

export interface Workload {
  keys: string[]
  values: string[]
  keyRing: Uint32Array
  opRings: Map<number, Uint8Array>
}

/** Keys, values, the Zipf key ring and an op ring per mix; the bus section builds the same for its set rates to compare. */
export function buildWorkload(cfg: { keys: number; valueBytes: number; zipfS: number; seed: number }): Workload {
  // The prefix keeps our keys recognisable (and removable) on a shared Redis.
  const keys = Array.from({ length: cfg.keys }, (_, i) => `bench:tp:${i}`)
  const values = Array.from({ length: VALUE_VARIANTS }, (_, v) => {
    const head = `{"v":${v},"payload":"`
    const tail = '"}'
    const fill = cfg.valueBytes - head.length - tail.length
    let body = ''
    for (let i = 0; body.length < fill; i++) body += String.fromCharCode(97 + ((i * 7 + v) % 26))
    return head + body.slice(0, Math.max(0, fill)) + tail
  })
  const zipf = new ZipfSampler(cfg.keys, cfg.zipfS, cfg.seed)
  const keyRing = drawRing(zipf, RING, cfg.seed + 1)
  const opRings = new Map(MIXES.map((m, i) => [m.writeRatio, drawOpRing(m.writeRatio, RING, cfg.seed + 100 + i)]))
  return { keys, values, keyRing, opRings }
}

export const nsSince = (t0: number, t1: number): number => Math.max(1, Math.round((t1 - t0) * 1e6))

/** One op in this many is timed in the async loops (the first of every run of this many). */
export const ASYNC_SAMPLE_EVERY = 16

/** Where each run starts in the rings: runs continue the sequence rather than replay it. */
export let cursor = 0

/** `concurrency` async loops issuing the ops of `ops` (1: set, 0: get) for `ms`; 1 op in ASYNC_SAMPLE_EVERY timed. */
export async function pipelinedAsync(kv: AsyncKv, w: Workload, ops: Uint8Array, ms: number, concurrency: number): Promise<RunResult> {
  const hist = createHistogram()
  const { keys, values, keyRing } = w
  let done = 0
  let gets = 0
  let hits = 0
  const start = performance.now()
  let deadline = start + ms
  // Like the sync loop, time one op in ASYNC_SAMPLE_EVERY: two clock reads and
  // a histogram record per op cost ~150 ns, more than a direct read itself.
  const loop = async (): Promise<void> => {
    for (let n = 0; ; n++) {
      const timed = n % ASYNC_SAMPLE_EVERY === 0
      const t0 = timed ? performance.now() : 0
      if (timed && t0 >= deadline) return
      const i = cursor++ & MASK
      const key = keys[keyRing[i]!]!
      if (ops[i] === 1) {
        await kv.set(key, values[i & (VALUE_VARIANTS - 1)]!)
      } else {
        gets++
        if ((await kv.get(key)) != null) hits++
      }
      if (timed) hist.record(nsSince(t0, performance.now()))
      done++
    }
  }
  // One failed op ends every loop: the others must not keep issuing ops to an engine about to be closed.
  const guarded = (): Promise<void> =>
    loop().catch((err: unknown) => {
      deadline = 0
      throw err
    })
  await Promise.all(Array.from({ length: concurrency }, guarded))
  return finish(done, performance.now() - start, gets, hits, hist)
}

/** Ops between clock reads in the sync tight loop; timing every op would halve lru-cache's rate. */
export const SYNC_BATCH = 1024
/** One op in this many is timed in the sync tight loop, for its latency percentiles. */
export const SYNC_SAMPLE_EVERY = 16

/**
 * The synchronous loop: `batch` ops between clock reads, one op in
 * `sampleEvery` timed. The pipelined run batches (timing every op would halve
 * lru-cache's rate); the one-in-flight run times each op.
 */
export function syncLoop(kv: SyncKv, w: Workload, ops: Uint8Array, ms: number, batch: number, sampleEvery: number): RunResult {
  const hist = createHistogram()
  const { keys, values, keyRing } = w
  let done = 0
  let gets = 0
  let hits = 0
  const start = performance.now()
  const deadline = start + ms
  do {
    for (let j = 0; j < batch; j++) {
      const i = cursor++ & MASK
      const key = keys[keyRing[i]!]!
      const timed = j % sampleEvery === 0
      const t0 = timed ? performance.now() : 0
      if (ops[i] === 1) {
        kv.set(key, values[i & (VALUE_VARIANTS - 1)]!)
      } else {
        gets++
        if (kv.get(key) != null) hits++
      }
      if (timed) hist.record(nsSince(t0, performance.now()))
    }
    done += batch
  } while (performance.now() < deadline)
  return finish(done, performance.now() - start, gets, hits, hist)
}

export function finish(done: number, elapsedMs: number, gets: number, hits: number, hist: RecordableHistogram): RunResult {
  return {
    ops: done,
    elapsedMs,
    opsPerSec: (done / elapsedMs) * 1000,
    hitRate: gets === 0 ? 1 : hits / gets,
    latency: summarize(hist),
  }
}

/** The middle value (of an odd count; the upper middle of an even one). */
export function median(xs: number[]): number {
  const sorted = [...xs].sort((p, q) => p - q)
  return sorted[sorted.length >> 1]!
}
