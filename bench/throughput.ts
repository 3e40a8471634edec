/**
 * Throughput and latency of get/set on a pre-filled cache with Zipf keys, for
 * shardcache (1 and 2 shards; 4 shards on the read-only mix, for the shard
 * scaling table), lru-cache on the calling thread, and Redis through ioredis
 * with auto-pipelining.
 *
 * Two ways of driving each engine, because they answer different questions:
 * - pipelined: many async loops keep hundreds of ops in flight, which is how a
 *   busy server uses a cache and what lets batching engines amortise a
 *   round trip. Latencies here include queueing behind the other loops.
 * - one in flight: each op is awaited before the next is issued, which exposes
 *   the full round trip (thread wake-up, socket, syscalls) that batching hides.
 * lru-cache is synchronous, so for it "pipelined" is a tight loop and "one in
 * flight" times single calls: it is the in-thread ceiling, not a competitor.
 */
import { availableParallelism } from 'node:os'
import { Redis } from 'ioredis'
import { resolveRedis } from '../tools/redis_server.js'
import { describeError, errorDetail, fmtNs, fmtPct, fmtRate, fmtRatio, heading, ratio, table } from './report.js'
import { lruKv, nearSyncKv, offHeapFloorKv, redisKv, shardcacheKv } from './throughput_engines.js'
import type { AsyncKv, EngineStats, Kv, SyncKv } from './throughput_engines.js'
import { ASYNC_SAMPLE_EVERY, MIXES, SYNC_BATCH, SYNC_SAMPLE_EVERY, VALUE_VARIANTS, buildWorkload, median, pipelinedAsync, syncLoop } from './throughput_loops.js'
import type { RunResult, Workload } from './throughput_loops.js'

export interface ThroughputConfig {
  keys: number
  valueBytes: number
  zipfS: number
  /** Ops kept in flight by the pipelined run (number of concurrent async loops). */
  concurrency: number
  warmupMs: number
  pipelinedMs: number
  singleMs: number
  /** Each engine's share of one interleaved headline round (see interleavedHeadline). */
  headlineRoundMs: number
  /** Engines to run, by name (THROUGHPUT_ENGINES); all when absent. `--quick` runs the headline ones. */
  engines?: string[]
  seed: number
}

export const DEFAULT_THROUGHPUT: ThroughputConfig = {
  keys: 100_000,
  valueBytes: 220,
  zipfS: 0.99,
  concurrency: 512,
  // Each table row is one run of each length, kept short so that `npm run bench` stays under
  // 3 minutes with the build: 16 rows, ~14 s less than the 1 s / 0.5 s that `--full` keeps
  // (2 s / 1 s before that). Half a second of a pipelined engine is ~45k (ioredis) to 1M
  // (lru-cache) ops; the summary's ratio to ioredis comes from the interleaved rounds below,
  // not from these single runs, and the machine's drift between rows is larger than what a
  // longer run would average away.
  // The warm-up lets the JIT settle and Redis's socket buffers grow: 150 ms is ~13k ioredis gets.
  warmupMs: 150,
  pipelinedMs: 500,
  singleMs: 250,
  headlineRoundMs: 250,
  seed: 42,
}

/** `--full`: the longer runs of earlier versions, for figures closer to steady state. */
export const FULL_THROUGHPUT: ThroughputConfig = { ...DEFAULT_THROUGHPUT, warmupMs: 250, pipelinedMs: 1000, singleMs: 500 }

export interface EngineMixResult {
  engine: string
  mix: string
  writeRatio: number
  pipelined: RunResult & { concurrency: number }
  single: RunResult
}

export interface EngineSummary {
  engine: string
  prefillMs: number
  /** shardcache only: what `cache.stats()` reported after all mixes. */
  stats?: EngineStats
  skipped?: string
  /** One line: message and causes. */
  error?: string
  /** Stacks, for the JSON. */
  errorDetail?: string
}

/** Pipelined read-only gets by shard count: what adding shard threads does to read throughput. */
export interface ScalingRow {
  shards: number
  opsPerSec: number
  /** Over the 1-shard row of the same run. */
  vsOneShard: number | undefined
}

export interface ThroughputResult {
  config: ThroughputConfig
  engines: EngineSummary[]
  results: EngineMixResult[]
  /** os.availableParallelism() of the machine, for reading the scaling rows. */
  cores: number
  scaling: ScalingRow[]
  /** Near hits against lru-cache in alternating rounds (see {@link interleavedNearVsLru}); absent if the near row failed. */
  nearVsLru?: InterleavedRatio
  /** The same over {@link HOT_KEYS} hot keys read in turn, a tight loop of nothing else (see {@link interleavedHotNearVsLru}). */
  hotNearVsLru?: InterleavedRatio
  /** The headline engines in alternating rounds; absent if shardcache 2 shards or ioredis did not run. */
  headlineRounds?: HeadlineRounds
  headline: {
    /** Median over {@link HeadlineRounds} when they ran, else the ratio of the table's single runs. */
    sc2OverRedisGet: number | undefined
    /** The same ratio from the table's single runs (one per engine, seconds apart). */
    sc2OverRedisGetSingleRun: number | undefined
    /** Pipelined gets/s of shardcache with 2 shards (median of the rounds when they ran). */
    sc2Gets: number | undefined
    /** Pipelined gets/s of ioredis (median of the rounds when they ran). */
    redisGets: number | undefined
    /** The off-heap floor's pipelined gets/s (see offHeapFloorKv), and over ioredis. */
    floorGets: number | undefined
    floorOverRedisGet: number | undefined
    sc1SingleGetP50Ns: number | undefined
    sc2SingleGetP50Ns: number | undefined
    redisSingleGetP50Ns: number | undefined
  }
}

/**
 * The headline engines' pipelined read-only gets in alternating rounds (see
 * {@link interleavedHeadline}), by engine name, and the per-round ratios.
 */
export interface HeadlineRounds {
  roundMs: number
  /** Ops/s of each engine, one per round. */
  rates: Record<string, number[]>
  /** shardcache 2 shards over ioredis, per round, and their median: the headline figure. */
  scOverRedis: number[]
  scOverRedisMedian: number
  /** The off-heap floor over ioredis, per round, and their median (absent if its row failed). */
  floorOverRedis?: number[]
  floorOverRedisMedian?: number
}

/** Rates of two engines measured in alternating rounds, and the ratio of each pair. */
export interface InterleavedRatio {
  roundMs: number
  /** Ops/s of the first engine, one per round. */
  a: number[]
  /** Ops/s of the second engine, one per round. */
  b: number[]
  /** a / b per round. */
  ratios: number[]
  median: number
}


/** Rounds of {@link interleavedNearVsLru}, and each engine's time per round. */
const NEAR_VS_LRU_ROUNDS = 7
const NEAR_VS_LRU_ROUND_MS = 150

/**
 * The near-hit figure is a ratio of two tight loops on one thread, and this
 * machine's speed drifts within seconds (other tenants): one run of each,
 * seconds apart, moved the ratio by ±0.1. So the two loops alternate, round
 * by round, and the median of the per-round ratios is the figure.
 */
async function interleavedNearVsLru(near: SyncKv, w: Workload, ops: Uint8Array, keys: number): Promise<InterleavedRatio> {
  const lru = lruKv(keys)
  await lru.prefill(w.keys, (i) => w.values[i & (VALUE_VARIANTS - 1)]!)
  const run = (kv: SyncKv): number => syncLoop(kv, w, ops, NEAR_VS_LRU_ROUND_MS, SYNC_BATCH, SYNC_SAMPLE_EVERY).opsPerSec
  try {
    run(lru)
    return alternateRounds(near, lru, run)
  } finally {
    await lru.close()
  }
}

/** {@link NEAR_VS_LRU_ROUNDS} rounds of `run(near)` and `run(lru)`, and the median of their per-round ratios. */
function alternateRounds(near: SyncKv, lru: SyncKv, run: (kv: SyncKv) => number): InterleavedRatio {
  const a: number[] = []
  const b: number[] = []
  for (let r = 0; r < NEAR_VS_LRU_ROUNDS; r++) {
    // Which goes first alternates too, so neither always follows the other's cache footprint.
    const first = r % 2 === 0 ? near : lru
    const second = first === near ? lru : near
    const x = run(first)
    const y = run(second)
    a.push(first === near ? x : y)
    b.push(first === near ? y : x)
  }
  const ratios = a.map((x, i) => x / b[i]!)
  return { roundMs: NEAR_VS_LRU_ROUND_MS, a, b, ratios, median: median(ratios) }
}

/** The hot set of {@link interleavedHotNearVsLru}. */
const HOT_KEYS = 1_000

/**
 * Near hits against lru-cache on a hot set that fits the CPU's caches:
 * {@link HOT_KEYS} of the pre-filled keys read in turn, in a loop that does
 * nothing else (no clock, no op ring), so the figure is the cost of a hit
 * itself rather than of memory. Both caches hold every key of the workload.
 * Rounds alternate as in {@link interleavedNearVsLru}.
 */
async function interleavedHotNearVsLru(near: SyncKv, w: Workload, keys: number): Promise<InterleavedRatio> {
  const lru = lruKv(keys)
  await lru.prefill(w.keys, (i) => w.values[i & (VALUE_VARIANTS - 1)]!)
  const hot = w.keys.slice(0, HOT_KEYS)
  // A loop of its own per engine, as a caller's would be: one shared loop calling both gets is a
  // polymorphic call that V8 inlines for neither, and lru-cache's small get loses most by it.
  const loopOf = new Map<SyncKv, HotLoop>([near, lru].map((kv) => [kv, hotLoop()]))
  const run = (kv: SyncKv): number => loopOf.get(kv)!(kv, hot, NEAR_VS_LRU_ROUND_MS)
  try {
    run(lru)
    run(near)
    return alternateRounds(near, lru, run)
  } finally {
    await lru.close()
  }
}

/** Gets/s of `kv` reading `hot` in turn for about `ms`; throws on a miss (every key is held). */
type HotLoop = (kv: SyncKv, hot: string[], ms: number) => number

/**
 * A new {@link HotLoop}, compiled on its own: V8 keeps type feedback per
 * compiled function, so each engine's loop sees one `get` and inlines it.
 */
function hotLoop(): HotLoop {
  return new Function(
    'kv',
    'hot',
    'ms',
    `const n = hot.length
    let done = 0
    const start = performance.now()
    const deadline = start + ms
    do {
      for (let i = 0; i < 10000; i++) {
        if (kv.get(hot[i % n]) === undefined) throw new Error(kv.name + ' missed hot key ' + hot[i % n])
      }
      done += 10000
    } while (performance.now() < deadline)
    return (done / (performance.now() - start)) * 1000`,
  ) as HotLoop
}

/** Rounds of {@link interleavedHeadline}; each engine runs cfg.headlineRoundMs per round. */
const HEADLINE_ROUNDS = 5

/** Engines whose instances stay open after their own rows, for {@link interleavedHeadline}. */
const SC2 = 'shardcache 2 shards'
const FLOOR = 'off-heap floor (not a cache)'
const IOREDIS = 'ioredis (auto-pipelined)'
const LRU = 'lru-cache (sync)'

/** Every engine of the section, in the order they run. */
export const THROUGHPUT_ENGINES = [
  'shardcache 1 shard', SC2, 'shardcache 4 shards', 'near cache 10k, 2 shards', 'near-cache hits (getSync), 2 shards', LRU, FLOOR, IOREDIS,
]
/** `--quick`: shardcache against its two peers, the rows of the headline. */
export const QUICK_ENGINES = [SC2, LRU, IOREDIS]

/**
 * The headline ratio is of two engines measured seconds apart in the table,
 * and this machine's speed drifts within seconds: one bad second moved a
 * single run of shardcache from ~900k to 568k gets/s, and ioredis read
 * 114k–201k gets/s across runs. So shardcache 2 shards, ioredis and the floor
 * also run in alternating rounds (the order rotating each round), and the
 * median of the per-round ratios is the headline figure.
 */
async function interleavedHeadline(kvs: Map<string, AsyncKv>, w: Workload, ops: Uint8Array, cfg: ThroughputConfig): Promise<HeadlineRounds> {
  const roundMs = cfg.headlineRoundMs
  const names = [...kvs.keys()]
  const rates: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]))
  for (let r = 0; r < HEADLINE_ROUNDS; r++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(j + r) % names.length]!
      rates[name]!.push((await pipelinedAsync(kvs.get(name)!, w, ops, roundMs, cfg.concurrency)).opsPerSec)
    }
  }
  const over = (name: string): number[] | undefined => rates[name]?.map((x, i) => x / rates[IOREDIS]![i]!)
  const scOverRedis = over(SC2)!
  const floorOverRedis = over(FLOOR)
  return {
    roundMs,
    rates,
    scOverRedis,
    scOverRedisMedian: median(scOverRedis),
    floorOverRedis,
    floorOverRedisMedian: floorOverRedis === undefined ? undefined : median(floorOverRedis),
  }
}

async function runPipelined(kv: Kv, w: Workload, ops: Uint8Array, ms: number, concurrency: number): Promise<RunResult> {
  return kv.kind === 'sync' ? syncLoop(kv, w, ops, ms, SYNC_BATCH, SYNC_SAMPLE_EVERY) : pipelinedAsync(kv, w, ops, ms, concurrency)
}

async function runSingle(kv: Kv, w: Workload, ops: Uint8Array, ms: number): Promise<RunResult> {
  // One in flight is the pipelined run with a single loop.
  return kv.kind === 'sync' ? syncLoop(kv, w, ops, ms, 1, 1) : pipelinedAsync(kv, w, ops, ms, 1)
}

/** Reads back a sample of prefilled keys: a wrong answer here is an engine bug, and every later number would be meaningless. */
async function verifyPrefill(kv: Kv, w: Workload, valueOf: (i: number) => string): Promise<void> {
  const step = Math.max(1, Math.floor(w.keys.length / 200))
  for (let i = 0; i < w.keys.length; i += step) {
    const got = await kv.get(w.keys[i]!)
    const want = valueOf(i)
    if (got !== want) {
      const shown = typeof got === 'string' ? `a string of ${got.length} chars` : String(got)
      throw new Error(`${kv.name}: get(${JSON.stringify(w.keys[i])}) after prefill returned ${shown}, expected the ${want.length}-char value that was set`)
    }
  }
}

// ── the section ────────────────────────────────────────────────────────────

export interface EngineFactory {
  name: string
  make(): Promise<Kv>
  /** The mixes this engine runs (names from MIXES); all when absent. */
  mixes?: string[]
}

/** Shard counts of the scaling table; the 1- and 2-shard engines run every mix anyway. */
export const SCALING_SHARDS = [1, 2, 4]

export async function runThroughput(cfg: ThroughputConfig, log: (line: string) => void): Promise<ThroughputResult> {
  const w = buildWorkload(cfg)
  const valueOf = (i: number): string => w.values[i & (VALUE_VARIANTS - 1)]!
  const engines: EngineSummary[] = []
  const results: EngineMixResult[] = []

  const redis = await resolveRedis()
  const readOnly = MIXES[0]!.name
  let nearVsLru: InterleavedRatio | undefined
  let hotNearVsLru: InterleavedRatio | undefined
  let headlineRounds: HeadlineRounds | undefined
  // The headline engines, kept open after their rows for the interleaved rounds.
  const kept = new Map<string, AsyncKv>()
  const factories: (EngineFactory | { name: string; skipped: string })[] = [
    { name: 'shardcache 1 shard', make: () => shardcacheKv(1, cfg.keys, cfg.valueBytes) },
    { name: SC2, make: () => shardcacheKv(2, cfg.keys, cfg.valueBytes) },
    // Read-only only: its row is for the scaling table, and three more mixes would cost ~4 s of the run.
    { name: 'shardcache 4 shards', make: () => shardcacheKv(4, cfg.keys, cfg.valueBytes), mixes: [readOnly] },
    // Read-only only, for what a near cache does to reads (run time as above).
    { name: 'near cache 10k, 2 shards', make: () => shardcacheKv(2, cfg.keys, cfg.valueBytes, 10_000), mixes: [readOnly] },
    { name: 'near-cache hits (getSync), 2 shards', make: () => nearSyncKv(2, cfg.keys, cfg.valueBytes), mixes: [readOnly] },
    { name: LRU, make: async () => lruKv(cfg.keys) },
    // Read-only: the least any off-heap get must do, as a reference row (see offHeapFloorKv).
    { name: FLOOR, make: async () => offHeapFloorKv(cfg.keys, cfg.valueBytes), mixes: [readOnly] },
    redis.target !== undefined
      ? { name: IOREDIS, make: () => redisKv(redis.target!.url, redis.target!.owned) }
      : { name: IOREDIS, skipped: redis.skipped ?? 'no Redis available' },
  ].filter((f) => cfg.engines === undefined || cfg.engines.includes(f.name))

  try {
    for (const f of factories) {
      if ('skipped' in f) {
        engines.push({ engine: f.name, prefillMs: 0, skipped: f.skipped })
        log(`  ${f.name}: skipped (${f.skipped})`)
        continue
      }
      let kv: Kv | undefined
      const summary: EngineSummary = { engine: f.name, prefillMs: 0 }
      engines.push(summary)
      // Which step was running, so a failure names it.
      let phase = 'create'
      try {
        kv = await f.make()
        phase = 'prefill'
        const t0 = performance.now()
        await kv.prefill(w.keys, valueOf)
        summary.prefillMs = performance.now() - t0
        phase = 'read-back after prefill'
        await verifyPrefill(kv, w, valueOf)
        for (const mix of MIXES.filter((m) => f.mixes === undefined || f.mixes.includes(m.name))) {
          const ops = w.opRings.get(mix.writeRatio)!
          // Warm-ups let the JIT settle and, for Redis, the socket buffers grow.
          phase = `${mix.name} pipelined`
          await runPipelined(kv, w, ops, cfg.warmupMs, cfg.concurrency)
          const pipelined = await runPipelined(kv, w, ops, cfg.pipelinedMs, cfg.concurrency)
          phase = `${mix.name} one in flight`
          await runSingle(kv, w, ops, cfg.warmupMs / 2)
          const single = await runSingle(kv, w, ops, cfg.singleMs)
          results.push({
            engine: kv.name,
            mix: mix.name,
            writeRatio: mix.writeRatio,
            pipelined: { ...pipelined, concurrency: kv.kind === 'sync' ? 1 : cfg.concurrency },
            single,
          })
          log(
            `  ${kv.name.padEnd(26)} ${mix.name.padEnd(18)} pipelined ${fmtRate(pipelined.opsPerSec).padStart(9)}` +
              `  one-in-flight p50 ${fmtNs(single.latency.p50Ns)}`,
          )
        }
        if (f.name.startsWith('near-cache hits') && kv.kind === 'sync') {
          phase = 'interleaved rounds against lru-cache'
          nearVsLru = await interleavedNearVsLru(kv, w, w.opRings.get(0)!, cfg.keys)
          hotNearVsLru = await interleavedHotNearVsLru(kv, w, cfg.keys)
        }
        phase = 'stats'
        if (kv.kind === 'async' && kv.summary !== undefined) summary.stats = await kv.summary()
        if (kv.kind === 'async' && (f.name === SC2 || f.name === FLOOR || f.name === IOREDIS)) {
          kept.set(f.name, kv)
          kv = undefined
        }
      } catch (err) {
        summary.error = `during ${phase}: ${describeError(err)}`
        summary.errorDetail = errorDetail(err)
        log(`  ${f.name}: FAILED: ${summary.error}`)
      } finally {
        await kv?.close().catch(() => {})
      }
    }
    if (kept.has(SC2) && kept.has(IOREDIS)) {
      try {
        headlineRounds = await interleavedHeadline(kept, w, w.opRings.get(0)!, cfg)
        log(`  interleaved headline rounds: shardcache 2 shards / ioredis ${headlineRounds.scOverRedis.map((x) => fmtRatio(x)).join(' ')}`)
      } catch (err) {
        log(`  interleaved headline rounds: FAILED: ${describeError(err)}`)
      }
    }
  } finally {
    for (const kv of kept.values()) await kv.close().catch(() => {})
    await redis.target?.stop()
  }

  const find = (engine: string, mix: string): EngineMixResult | undefined =>
    results.find((r) => r.engine.startsWith(engine) && r.mix === mix)
  const getMix = readOnly
  const shardGets = (n: number): number | undefined => find(`shardcache ${n} shard`, getMix)?.pipelined.opsPerSec
  const singleRun = ratio(find(SC2, getMix)?.pipelined.opsPerSec, find(IOREDIS, getMix)?.pipelined.opsPerSec)
  const roundsMedian = (name: string): number | undefined => {
    const xs = headlineRounds?.rates[name]
    return xs === undefined ? undefined : median(xs)
  }
  return {
    config: cfg,
    engines,
    results,
    cores: availableParallelism(),
    nearVsLru,
    hotNearVsLru,
    scaling: SCALING_SHARDS.flatMap((n) => {
      const opsPerSec = shardGets(n)
      return opsPerSec === undefined ? [] : [{ shards: n, opsPerSec, vsOneShard: ratio(opsPerSec, shardGets(1)) }]
    }),
    headlineRounds,
    headline: {
      sc2OverRedisGet: headlineRounds?.scOverRedisMedian ?? singleRun,
      sc2OverRedisGetSingleRun: singleRun,
      sc2Gets: roundsMedian(SC2) ?? find(SC2, getMix)?.pipelined.opsPerSec,
      redisGets: roundsMedian(IOREDIS) ?? find(IOREDIS, getMix)?.pipelined.opsPerSec,
      floorGets: roundsMedian(FLOOR) ?? find(FLOOR, getMix)?.pipelined.opsPerSec,
      floorOverRedisGet: headlineRounds?.floorOverRedisMedian ?? ratio(find(FLOOR, getMix)?.pipelined.opsPerSec, find(IOREDIS, getMix)?.pipelined.opsPerSec),
      sc1SingleGetP50Ns: find('shardcache 1', getMix)?.single.latency.p50Ns,
      sc2SingleGetP50Ns: find('shardcache 2', getMix)?.single.latency.p50Ns,
      redisSingleGetP50Ns: find(IOREDIS, getMix)?.single.latency.p50Ns,
    },
  }
}

// ── printing ───────────────────────────────────────────────────────────────

/** What the special rows of the read-only table are, printed under it. */
const ROW_NOTES: [string, string][] = [
  ['near cache 10k', 'near cache 10k: the 10,000 most-read values also kept on the calling thread\'s heap (`nearCache`), the rest read from shared memory.'],
  ['near-cache hits', 'near-cache hits (getSync): every key held near, read synchronously: the cost of a near hit; "pipelined" is a tight loop.'],
  ['lru-cache', 'lru-cache: synchronous, in the calling thread\'s heap: the in-thread ceiling rather than a competitor; "pipelined" is a tight loop.'],
  ['off-heap floor', 'off-heap floor: not a cache: a Map to a value\'s place in a SharedArrayBuffer and the string built from there, the least any get that keeps values off the heap must do.'],
]

export function printThroughput(r: ThroughputResult): string {
  const out: string[] = [
    heading('1. Throughput and latency (pre-filled, Zipf keys)'),
    `${r.config.keys.toLocaleString('en-US')} keys, ${r.config.valueBytes}-byte string values, Zipf s=${r.config.zipfS}; ` +
      `pipelined: ${r.config.concurrency} async loops for ${r.config.pipelinedMs} ms; one in flight: ${r.config.singleMs} ms; ` +
      `warm-up before each; 1 op in ${ASYNC_SAMPLE_EVERY} timed. lru-cache is synchronous: its "pipelined" run is a tight loop (1 op in ${SYNC_SAMPLE_EVERY} timed).`,
    'How to read: "pipelined" is operations per second with many in flight, as a busy server issues them (higher is better), and its p50/p99 the time per op, ' +
      'queueing behind the other loops included (lower is better); "1-in-flight" awaits each op before the next: ops/s and time per op of the full round trip. ' +
      '"vs ioredis" / "vs lru-cache": the row\'s pipelined ops/s over that peer\'s in the same table (above 1x: faster than the peer). Each row is one run; the ratio ' +
      'to ioredis the summary gives comes from the interleaved rounds below.',
  ]
  for (const mix of MIXES) {
    const rows = r.results.filter((x) => x.mix === mix.name)
    if (rows.length === 0) continue
    const redis = rows.find((x) => x.engine.startsWith('ioredis'))
    const lru = rows.find((x) => x.engine.startsWith('lru-cache'))
    const body = rows.map((x) => [
      x.engine,
      fmtRate(x.pipelined.opsPerSec),
      fmtNs(x.pipelined.latency.p50Ns),
      fmtNs(x.pipelined.latency.p99Ns),
      fmtRate(x.single.opsPerSec),
      fmtNs(x.single.latency.p50Ns),
      fmtNs(x.single.latency.p99Ns),
      fmtRatio(ratio(x.pipelined.opsPerSec, redis?.pipelined.opsPerSec)),
      fmtRatio(ratio(x.pipelined.opsPerSec, lru?.pipelined.opsPerSec)),
      fmtPct(x.pipelined.hitRate),
    ])
    const notes: string[] = []
    for (const e of r.engines) {
      if (e.skipped !== undefined) notes.push(`${e.engine}: skipped (${e.skipped})`)
      else if (e.error !== undefined) notes.push(`${e.engine}: FAILED: ${e.error}`)
    }
    if (mix.writeRatio === 0) {
      for (const [prefix, note] of ROW_NOTES) if (rows.some((x) => x.engine.startsWith(prefix))) notes.push(note)
    } else {
      notes.push(`Gets and sets of one run share its ops/s: ${(mix.writeRatio * 100).toFixed(0)}% of them are sets of keys already present.`)
    }
    out.push(
      `\n${mix.name} (${(mix.writeRatio * 100).toFixed(0)}% sets)`,
      table(
        [
          { header: 'engine', align: 'left' },
          { header: 'pipelined' },
          { header: 'p50' },
          { header: 'p99' },
          { header: '1-in-flight' },
          { header: 'p50' },
          { header: 'p99' },
          { header: 'vs ioredis' },
          { header: 'vs lru-cache' },
          { header: 'hit rate' },
        ],
        body,
        notes,
      ),
    )
  }
  const statRows = r.engines
    .filter((e) => e.stats !== undefined)
    .map((e) => {
      const s = e.stats!
      return [e.engine, fmtPct(s.hitRate), s.hits.toLocaleString('en-US'), s.misses.toLocaleString('en-US'), s.sets.toLocaleString('en-US'),
        s.entries.toLocaleString('en-US'), s.evictions.toLocaleString('en-US'), String(s.shardRestarts), `${(e.prefillMs / 1000).toFixed(2)} s`]
    })
  if (statRows.length > 0) {
    out.push(
      '\nshardcache stats() after the runs (a check: every key was pre-filled, so hitRate should be 100% and evictions 0)',
      table(
        [{ header: 'engine', align: 'left' }, { header: 'hitRate' }, { header: 'hits' }, { header: 'misses' }, { header: 'sets' },
          { header: 'entries' }, { header: 'evictions' }, { header: 'restarts' }, { header: 'prefill' }],
        statRows,
      ),
    )
  }
  if (r.scaling.length > 1) {
    out.push(
      `\nshard scaling: pipelined read-only gets (rows of the read-only table above); ${r.cores} cores (os.availableParallelism())`,
      table(
        [{ header: 'shards', align: 'left' }, { header: 'pipelined gets' }, { header: 'vs 1 shard' }, { header: 'threads / cores' }],
        r.scaling.map((x) => [String(x.shards), fmtRate(x.opsPerSec), fmtRatio(x.vsOneShard), `${x.shards + 1} / ${r.cores}`]),
      ),
      // Why the rows are expected to be flat: say so, or a reader takes them for a scaling failure.
      'Gets that hit are direct reads of the shards\' shared memory on the calling thread, so more shards add no read parallelism for one caller; ' +
        'with fewer free cores than shard threads, the shards can only take CPU from the caller.',
    )
  }
  const h = r.headline
  const hr = r.headlineRounds
  if (hr !== undefined) {
    const names = Object.keys(hr.rates)
    const n = hr.scOverRedis.length
    const cells = (xs: number[], f: (x: number) => string): string[] => [...xs.map(f), f(median(xs))]
    const rows = names.map((name) => [name, ...cells(hr.rates[name]!, fmtRate)])
    rows.push(['shardcache 2 shards / ioredis', ...cells(hr.scOverRedis, fmtRatio)])
    if (hr.floorOverRedis !== undefined) rows.push(['off-heap floor / ioredis', ...cells(hr.floorOverRedis, fmtRatio)])
    out.push(
      `\ninterleaved rounds: read-only pipelined gets, ${hr.roundMs} ms per engine per round, the order rotating every round`,
      table(
        [{ header: 'engine', align: 'left' }, ...Array.from({ length: n }, (_, i) => ({ header: `round ${i + 1}` })), { header: 'median' }],
        rows,
        ['The engines take turns, so a change in the machine\'s speed (it is shared) hits each alike; the ratios are per round, and their median is the summary figure.'],
      ),
    )
  }
  out.push(
    '',
    `summary: pipelined gets, shardcache 2 shards / ioredis = ${fmtRatio(h.sc2OverRedisGet)} ` +
      (hr === undefined
        ? '(the single runs of the table)'
        : `(median of ${hr.scOverRedis.length} interleaved rounds, ${fmtRate(h.sc2Gets)} vs ${fmtRate(h.redisGets)}; rounds ${fmtRatio(Math.min(...hr.scOverRedis))}–${fmtRatio(Math.max(...hr.scOverRedis))})`) +
      '; higher is better',
  )
  if (h.floorGets !== undefined) {
    out.push(
      `summary: the off-heap floor in the same ${hr === undefined ? 'run' : 'rounds'} read ${fmtRate(h.floorGets)} = ${fmtRatio(h.floorOverRedisGet)} ioredis, ` +
        `and shardcache ${fmtRatio(ratio(h.sc2Gets, h.floorGets))} of the floor (the rest is routing, checks that an entry is current, expiry, LRU and stats)`,
    )
  }
  const p50s = [
    h.sc1SingleGetP50Ns === undefined ? undefined : `${fmtNs(h.sc1SingleGetP50Ns)} (shardcache 1 shard)`,
    h.sc2SingleGetP50Ns === undefined ? undefined : `${fmtNs(h.sc2SingleGetP50Ns)} (shardcache 2 shards)`,
    h.redisSingleGetP50Ns === undefined ? undefined : `${fmtNs(h.redisSingleGetP50Ns)} (ioredis)`,
  ].filter((x) => x !== undefined)
  if (p50s.length > 0) out.push(`summary: one-in-flight get p50 = ${p50s.join(', ')}; lower is better`)
  const nl = r.nearVsLru
  if (nl !== undefined) {
    out.push(
      `summary: near-cache hits (getSync, every key near, 2 shards) / lru-cache gets on the same thread = ${nl.median.toFixed(3)}x ` +
        `(median of ${nl.ratios.length} interleaved rounds of ${nl.roundMs} ms, ${fmtRate(median(nl.a))} vs ${fmtRate(median(nl.b))}; rounds ${fmtRatio(Math.min(...nl.ratios))}–${fmtRatio(Math.max(...nl.ratios))}); ` +
        'higher is better, 1x would be as fast as lru-cache',
    )
  }
  const hl = r.hotNearVsLru
  if (hl !== undefined) {
    out.push(
      `summary: near-cache hits over ${HOT_KEYS.toLocaleString('en-US')} hot keys read in turn / lru-cache = ${hl.median.toFixed(3)}x ` +
        `(median of ${hl.ratios.length} interleaved rounds of ${hl.roundMs} ms, ${fmtRate(median(hl.a))} vs ${fmtRate(median(hl.b))}; rounds ${fmtRatio(Math.min(...hl.ratios))}–${fmtRatio(Math.max(...hl.ratios))}); ` +
        'the cost of a hit itself, both caches holding every key',
    )
  }
  return out.join('\n')
}
