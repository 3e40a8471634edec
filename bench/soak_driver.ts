/**
 * The soak: a long run of mixed traffic with churn that samples memory as it
 * goes, so that a leak shows as a heap that keeps growing. Used by
 * `npm run soak` (bench/soak.ts, minutes) and by test/threads/soak.test.ts (seconds).
 *
 * What runs, all at once:
 * - the owner's cache (2 shards, a 1 MiB budget, far below what the key space
 *   needs, so it evicts all the time; a second, entry-bounded FIFO region
 *   with short TTLs), with the Redis bus and the Redis L2 tier on;
 * - a peer cache (1 shard) on the same bus channel and L2 prefix, so bus
 *   messages are also received and applied, with a little traffic of its own;
 * - `lanes` concurrent loops of bench/soak_ops.ts's mix on the owner
 *   (get, getSync, set with TTLs, tags and metadata, delete, getOrCompute,
 *   mget, mset, has, incr, touch, take, invalidateTag);
 * - `attachedThreads` worker threads that attach, run the mix, detach and
 *   attach again (bench/soak_thread.ts), each replaced by a new thread after
 *   a few cycles;
 * - now and then a clear() and a deleteByPattern().
 *
 * Every `intervalMs` it samples, after a forced GC where the process runs
 * with --expose-gc (main thread and, through the control API, each shard):
 * the main thread's heap used, the process's RSS, each shard's heap used,
 * and the ops done.
 */
import { Worker } from 'node:worker_threads'
import { randomUUID } from 'node:crypto'
import { createCache } from '../src/index.js'
import type { Cache, CacheOptions } from '../src/index.js'
import { DEFAULT_SHAPE, Rng, countError, oneOp } from './soak_ops.js'
import type { ErrorCounts, TrafficShape } from './soak_ops.js'
import type { SoakThreadData, SoakThreadMessage } from './soak_thread.js'

const THREAD_FILE = new URL('./soak_thread.js', import.meta.url)

export interface SoakConfig {
  durationMs: number
  intervalMs: number
  /** Redis for the bus and L2 (a private server: the soak writes and clears keys under its own prefix). */
  redisUrl: string
  shards: number
  /** Concurrent operation loops on the owner's thread. */
  lanes: number
  /** Attached worker threads running at once. */
  attachedThreads: number
  /** How long an attached thread stays attached per cycle, and its cycles before it exits. */
  attachCycleMs: number
  attachCycles: number
  /** Byte budget of the default region (over all shards). */
  budgetBytes: number
  /** clear() every this many ms (and deleteByPattern halfway between). */
  clearEveryMs: number
  shape: TrafficShape
  seed: number
  /** Called with each sample as it is taken. */
  onSample?: (s: SoakSample) => void
  /** Polled between samples: true ends the run early (Ctrl-C). */
  shouldStop?: () => boolean
}

export const DEFAULT_SOAK: Omit<SoakConfig, 'durationMs' | 'intervalMs' | 'redisUrl'> = {
  shards: 2,
  lanes: 16,
  attachedThreads: 2,
  attachCycleMs: 1500,
  attachCycles: 4,
  budgetBytes: 2 ** 20,
  clearEveryMs: 23_000, // not a divisor of a minute: samples do not all land just after a clear
  shape: DEFAULT_SHAPE,
  seed: 1,
}

export interface SoakSample {
  /** Seconds since the traffic started. */
  t: number
  /** Operations done so far (owner, peer and attached threads). */
  ops: number
  /** Operations per second since the previous sample. */
  opsPerSec: number
  /** Main thread's V8 heap used, bytes (after a GC when `collected`). */
  mainHeap: number
  /** Main thread's memory outside the V8 heap (Buffers, ArrayBuffers: `process.memoryUsage().external`), bytes. */
  mainExternal: number
  /** The process's resident set (every thread's), bytes. */
  rss: number
  /** Each of the owner cache's shards' V8 heap used, bytes. */
  shardHeaps: number[]
  /** The peer cache's shards' heap used. */
  peerShardHeaps: number[]
  /** Whether the heaps were measured after a forced GC (--expose-gc). */
  collected: boolean
  entries: number
  usedBytes: number
  /** Entries the owner's shards evicted (size) or expired so far. */
  evictions: number
  /** Attach/detach cycles completed so far, and attached threads started. */
  attachCycles: number
  threadsStarted: number
  clears: number
  errors: number
}

export interface SoakResult {
  samples: SoakSample[]
  errors: ErrorCounts
  config: Omit<SoakConfig, 'onSample' | 'shouldStop'>
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function gcNow(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) return false
  gc()
  gc() // a second pass frees what the first one's finalizers let go
  return true
}

export async function runSoak(config: SoakConfig): Promise<SoakResult> {
  const { onSample, shouldStop, ...plain } = config
  const run = randomUUID().slice(0, 8)
  const base = (shards: number): CacheOptions => ({
    shards,
    nearCache: { maxEntries: 2000 },
    regions: {
      default: { policy: 'lru', maxBytes: config.budgetBytes },
      sessions: { policy: 'fifo', maxEntries: 2000, ttl: '2s' },
    },
    bus: { redis: config.redisUrl, channel: `soak:${run}`, mode: 'update' },
    l2: { redis: config.redisUrl, prefix: `soak:${run}:` },
  })
  const cache = await createCache(base(config.shards))
  const peer = await createCache(base(1))
  const errors: ErrorCounts = {}
  let ops = 0
  let attachCycles = 0
  let threadsStarted = 0
  let clears = 0
  let stopping = false
  const rng = new Rng(config.seed)

  // While a sample is taken the owner's lanes stand still, so that the heap
  // holds what the cache retains and not whatever ops were in flight.
  let gate: Promise<void> | undefined
  let inFlight = 0
  const lane = async (c: Cache, r: Rng): Promise<void> => {
    while (!stopping) {
      if (gate !== undefined) await gate
      inFlight++
      try {
        await oneOp(c, r, config.shape)
      } catch (err) {
        countError(errors, err)
      } finally {
        inFlight--
      }
      ops++
    }
  }
  const lanes = [
    ...Array.from({ length: config.lanes }, (_, i) => lane(cache, new Rng(config.seed * 1000 + i + 1))),
    lane(peer, new Rng(config.seed * 1000 + 999)),
  ]

  // Attached threads: each one attaches and detaches `attachCycles` times, then exits and is replaced.
  const threads = new Set<Worker>()
  const startThread = (): void => {
    const data: SoakThreadData = { seed: rng.int(2 ** 31) + 1, cycles: config.attachCycles, cycleMs: config.attachCycleMs, lanes: 4, shape: config.shape }
    const w = new Worker(THREAD_FILE, { workerData: data })
    threadsStarted++
    threads.add(w)
    w.on('message', (m: SoakThreadMessage) => {
      if (m.type === 'handle') {
        if (stopping) {
          w.postMessage({ stop: true })
          // It waits for a handle: end it, it attached nothing.
          void w.terminate()
          return
        }
        const h = cache.handle()
        w.postMessage({ handle: h }, h.transfer)
      } else {
        attachCycles++
        ops += m.ops
        for (const [code, n] of Object.entries(m.errors)) errors[code] = (errors[code] ?? 0) + n
      }
    })
    w.on('error', (err) => countError(errors, err))
    w.on('exit', () => {
      threads.delete(w)
      if (!stopping) startThread()
    })
  }
  for (let i = 0; i < config.attachedThreads; i++) startThread()

  const housekeeping = setInterval(() => {
    void cache
      .clear()
      .then(() => clears++)
      .catch((err) => countError(errors, err))
    setTimeout(() => void cache.deleteByPattern('k:1*').catch((err) => countError(errors, err)), config.clearEveryMs / 2).unref()
  }, config.clearEveryMs)

  const samples: SoakSample[] = []
  const started = Date.now()
  let lastOps = 0
  let lastAt = started
  const sample = async (): Promise<void> => {
    let open!: () => void
    gate = new Promise((r) => (open = r))
    const quiet = Date.now() + 5000
    while (inFlight > 0 && Date.now() < quiet) await sleep(5)
    try {
      await takeSample()
    } finally {
      gate = undefined
      open()
    }
  }
  const takeSample = async (): Promise<void> => {
    const collected = gcNow()
    const [shardMem, peerMem] = await Promise.all([cache.shardMemoryForTest(collected), peer.shardMemoryForTest(collected)])
    const mem = process.memoryUsage()
    const stats = await cache.stats()
    const now = Date.now()
    const s: SoakSample = {
      t: Math.round((now - started) / 100) / 10,
      ops,
      opsPerSec: Math.round(((ops - lastOps) * 1000) / Math.max(1, now - lastAt)),
      mainHeap: mem.heapUsed,
      mainExternal: mem.external,
      rss: mem.rss,
      shardHeaps: shardMem.map((m) => m?.heapUsed ?? 0),
      peerShardHeaps: peerMem.map((m) => m?.heapUsed ?? 0),
      collected,
      entries: stats.entries,
      usedBytes: stats.usedBytes,
      evictions: stats.evictions,
      attachCycles,
      threadsStarted,
      clears,
      errors: Object.values(errors).reduce((a, b) => a + b, 0),
    }
    lastOps = ops
    lastAt = now
    samples.push(s)
    onSample?.(s)
  }

  try {
    await sample() // t=0: before any traffic ran long
    while (Date.now() - started < config.durationMs && shouldStop?.() !== true) {
      const next = started + (samples.length) * config.intervalMs
      while (Date.now() < next && shouldStop?.() !== true) await sleep(Math.min(250, Math.max(1, next - Date.now())))
      if (shouldStop?.() === true) break
      await sample()
    }
  } finally {
    stopping = true
    clearInterval(housekeeping)
    for (const w of threads) w.postMessage({ stop: true })
    // Attached threads detach before the owner closes (else their ops would see E_CLOSED).
    const until = Date.now() + 10_000
    while (threads.size > 0 && Date.now() < until) await sleep(20)
    for (const w of threads) await w.terminate()
    await Promise.all(lanes)
    await peer.close()
    await cache.close()
  }
  return { samples, errors, config: plain }
}

const MB = 2 ** 20
const mb = (n: number): string => (n / MB).toFixed(1)

/** One line per sample, for the live log. */
export function formatSample(s: SoakSample): string {
  const shards = s.shardHeaps.map((h, i) => `shard${i} ${mb(h)}`).join(', ')
  const peers = s.peerShardHeaps.map((h) => `peer ${mb(h)}`).join(', ')
  return (
    `t=${s.t.toFixed(0).padStart(5)}s  ops ${String(s.ops).padStart(9)} (${String(s.opsPerSec).padStart(6)}/s)  ` +
    `main heap ${mb(s.mainHeap)} MB (+${mb(s.mainExternal)} external), RSS ${mb(s.rss)} MB; heap ${shards}, ${peers} MB${s.collected ? '' : ' (no gc: run with --expose-gc)'}; ` +
    `entries ${s.entries}, used ${mb(s.usedBytes)} MB, evictions ${s.evictions}; attach cycles ${s.attachCycles} (${s.threadsStarted} threads), clears ${s.clears}, errors ${s.errors}`
  )
}

/** The summary table: one row per sample. */
export function formatTable(samples: SoakSample[]): string {
  const shardCount = samples[0]?.shardHeaps.length ?? 0
  const peerCount = samples[0]?.peerShardHeaps.length ?? 0
  const head = ['minute', 'ops', 'main heap MB', 'main external MB', 'RSS MB', ...Array.from({ length: shardCount }, (_, i) => `shard${i} heap MB`), ...Array.from({ length: peerCount }, (_, i) => `peer${i} heap MB`)]
  const rows = samples.map((s) => [
    (s.t / 60).toFixed(s.t < 600 ? 2 : 1),
    String(s.ops),
    mb(s.mainHeap),
    mb(s.mainExternal),
    mb(s.rss),
    ...s.shardHeaps.map(mb),
    ...s.peerShardHeaps.map(mb),
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 1) + ':').join('|')}|`, ...rows.map(line)].join('\n')
}
