/**
 * The benchmark harness entry point (`npm run bench`, which builds first, see
 * scripts/bench.mjs): runs the sections in one process run, prints a table per
 * section with ratios against the peers measured in the same run, a headline
 * table and the wall time at the end, and writes all raw numbers to
 * bench/results/<timestamp>.json.
 *
 * Three runs, chosen so each fits the time a user gives it (build included,
 * 2 cores; bench/README.md has the measured wall times):
 * - `npm run bench`: throughput, bus, read-through, server (a real
 *   node:http server over 1M users, one round of each regime) and memory,
 *   hit-ratio and policies: ~3.5 minutes.
 * - `npm run bench -- --quick`: the headline rows only, under a minute:
 *   throughput for shardcache 2 shards, lru-cache and ioredis (every mix, and
 *   the interleaved rounds the shardcache/ioredis ratio comes from), and
 *   read-through (shardcache against bentocache). Same methods and run lengths
 *   as the default run, so its figures compare with it; it leaves out the
 *   other engines and sections, not measurement time.
 * - `npm run bench -- --full` (or BENCH_FULL=1): the default run with the
 *   longer runs (throughput 1 s / 0.5 s a row; server: three interleaved
 *   rounds, 4 s and 8 s windows), plus event-loop (the in-process scenario
 *   the server section grew out of, 4 s measured after 0.8 s), event-loop-5m
 *   (the same at 5M entries for shardcache and lru-cache: its pre-fills alone
 *   take ~70 s here, and lru-cache a 3 GiB heap), and micro: the region store
 *   (a shard's storage, in this thread) against lru-cache, which is about the
 *   store's internals rather than what a caller sees (~8 s).
 *
 * Sections can be picked by name (`npm run bench -- throughput memory`);
 * names override the run's own list. BENCH_SMOKE=1 shortens every duration and
 * size, for working on the harness itself; its figures are not comparable
 * with any other run. The event-loop scenarios take BENCH_EL_RATE (req/s),
 * BENCH_EL_CHURN (new keys/s), BENCH_EL_SHARDS, BENCH_EL_MS (measured window)
 * and BENCH_EL_ENGINES (comma-separated subset) overrides, and
 * BENCH_EL_ENTRIES for the 1M run; the values used are printed and kept in the
 * JSON.
 *
 * The bus and read-through sections need Redis (throughput needs it for its
 * ioredis rows): REDIS_URL, or `redis-server` on PATH for a private one;
 * without either they print why and are skipped.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { killAllSync } from '../tools/redis_server.js'
import { killPeerProcessesSync } from './peer_process.js'
import { DEFAULT_THROUGHPUT, FULL_THROUGHPUT, QUICK_ENGINES, printThroughput, runThroughput } from './throughput.js'
import type { ThroughputResult } from './throughput.js'
import { DEFAULT_BUS, busErrors, printBus, runBus } from './bus.js'
import type { BusSection } from './bus.js'
import { printReadThrough, readThroughErrors, runReadThrough } from './read_through.js'
import { DEFAULT_READ_THROUGH } from './read_through_workload.js'
import type { ReadThroughSection } from './read_through.js'
import { DEFAULT_EVENT_LOOP, ENGINES, FULL_EVENT_LOOP, printEventLoop, runEventLoop } from './event_loop.js'
import type { EventLoopBase, EventLoopSection } from './event_loop.js'
import type { EventLoopEngine } from './event_loop_types.js'
import { killChildrenSync } from './child.js'
import { DEFAULT_SERVER, FULL_SERVER, printServerSection, runServerSection } from './server.js'
import type { ServerSection } from './server.js'
import { DEFAULT_MEMORY, printMemory, runMemory } from './memory.js'
import type { MemorySection } from './memory.js'
import { DEFAULT_MICRO, printMicro, runMicro } from './region_store_micro.js'
import type { MicroSection } from './region_store_micro.js'
import { DEFAULT_POLICY_COST, printPolicyCost, runPolicyCost } from './policies.js'
import type { PolicyCostSection } from './policies.js'
import { printHitRatio, runHitRatio } from './hit_ratio.js'
import type { HitRatioSection } from './hit_ratio.js'
import { headlineRows, printHeadline } from './headline.js'
import type { HeadlineRow } from './headline.js'
import { errorDetail, fmtCount, fmtDuration, fmtMachine, machineInfo } from './report.js'
import type { MachineInfo } from './report.js'

const SECTIONS = ['throughput', 'bus', 'read-through', 'server', 'event-loop', 'event-loop-5m', 'memory', 'hit-ratio', 'policies', 'micro'] as const
type Section = (typeof SECTIONS)[number]

type Mode = 'default' | 'quick' | 'full'

/** What each run does when no section is named (see the top of the file for why). */
const MODE_SECTIONS: Record<Mode, readonly Section[]> = {
  default: SECTIONS.filter((s) => s !== 'event-loop' && s !== 'event-loop-5m' && s !== 'micro'),
  quick: ['throughput', 'read-through'],
  full: SECTIONS,
}

/** Entries of the large event-loop run. */
const LARGE_ENTRIES = 5_000_000

interface BenchReport {
  machine: MachineInfo
  mode: Mode
  /** BENCH_SMOKE=1: every duration shortened, figures not comparable. */
  smoke: boolean
  sections: Section[]
  /** The benchmarks alone, ms. */
  wallTimeMs: number
  /** `npm run bench` only: the build before them (scripts/bench.mjs), and build + benchmarks, ms. */
  buildMs?: number
  totalWallMs?: number
  /** Wall time of each section that ran, in ms. */
  sectionWallMs: Partial<Record<Section, number>>
  /** Load averages when the run ended. */
  loadAverageAtEnd: number[]
  throughput?: ThroughputResult
  bus?: BusSection
  readThrough?: ReadThroughSection
  server?: ServerSection
  eventLoop?: EventLoopSection
  eventLoop5M?: EventLoopSection
  memory?: MemorySection
  hitRatio?: HitRatioSection
  micro?: MicroSection
  policies?: PolicyCostSection
  /** The table printed at the end: shardcache against its peers. */
  headline: HeadlineRow[]
  errors: { section: Section; error: string }[]
}

/** Results live in the source tree (bench/results), not in dist/, so a rebuild never deletes them. */
const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url))

const FLAGS = ['--quick', '--full']

/** A mistake on the command line: printed as its message alone, without a stack. */
class UsageError extends Error {}

function parseArgs(args: string[]): { mode: Mode; sections: Section[] } {
  for (const a of args) {
    if (a.startsWith('-') && !FLAGS.includes(a)) throw new UsageError(`unknown option ${JSON.stringify(a)} (options: ${FLAGS.join(', ')}; sections: ${SECTIONS.join(', ')})`)
  }
  const quick = args.includes('--quick')
  const full = args.includes('--full') || process.env.BENCH_FULL === '1'
  if (quick && full) throw new UsageError('--quick and --full (or BENCH_FULL=1) exclude each other: pick one')
  const mode: Mode = quick ? 'quick' : full ? 'full' : 'default'
  const named = args.filter((a) => !FLAGS.includes(a))
  for (const a of named) {
    if (!(SECTIONS as readonly string[]).includes(a)) {
      throw new UsageError(`unknown section ${JSON.stringify(a)} (sections: ${SECTIONS.join(', ')})`)
    }
  }
  const picked = named.length === 0 ? MODE_SECTIONS[mode] : named
  return { mode, sections: SECTIONS.filter((s) => picked.includes(s)) }
}

/** Integer from the environment, for exploring the event-loop scenario without editing code. */
function envInt(name: string): number | undefined {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer (got ${JSON.stringify(raw)})`)
  return n
}

function withEnvOverrides(base: EventLoopBase): EventLoopBase {
  return {
    ...base,
    entries: envInt('BENCH_EL_ENTRIES') ?? base.entries,
    requestsPerSec: envInt('BENCH_EL_RATE') ?? base.requestsPerSec,
    churnPerSec: envInt('BENCH_EL_CHURN') ?? base.churnPerSec,
    shards: envInt('BENCH_EL_SHARDS') ?? base.shards,
    durationMs: envInt('BENCH_EL_MS') ?? base.durationMs,
  }
}

/** BENCH_EL_ENGINES="lru-cache,shardcache" runs only those scenarios (the ratios need "no cache"). */
function eventLoopEngines(): EventLoopEngine[] {
  const raw = process.env.BENCH_EL_ENGINES
  if (raw === undefined || raw === '') return ENGINES
  const picked = raw.split(',').map((s) => s.trim())
  for (const p of picked) {
    if (!(ENGINES as string[]).includes(p)) throw new UsageError(`BENCH_EL_ENGINES: unknown engine ${JSON.stringify(p)} (engines: ${ENGINES.join(', ')})`)
  }
  return ENGINES.filter((e) => picked.includes(e))
}

/** The build's wall time and the moment `npm run bench` started, from scripts/bench.mjs; absent when main.js is run directly. */
function buildTiming(): { buildMs: number; startedAtEpochMs: number } | undefined {
  const buildMs = Number(process.env.BENCH_BUILD_MS)
  const startedAtEpochMs = Number(process.env.BENCH_STARTED_AT)
  if (!Number.isFinite(buildMs) || !Number.isFinite(startedAtEpochMs) || process.env.BENCH_BUILD_MS === undefined) return undefined
  return { buildMs, startedAtEpochMs }
}

function onSignal(signal: NodeJS.Signals): void {
  // Private redis-server and scenario children must not outlive an interrupted run.
  killChildrenSync()
  killPeerProcessesSync()
  killAllSync()
  process.stderr.write(`\nbench: interrupted by ${signal}\n`)
  process.exit(130)
}

async function main(): Promise<void> {
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const started = performance.now()
  if (process.env.BENCH_QUICK !== undefined && process.env.BENCH_QUICK !== '') {
    // It used to shorten every section; a silently different run would be worse than an error.
    throw new UsageError('BENCH_QUICK is now BENCH_SMOKE=1 (every section shortened, for harness work); `npm run bench -- --quick` runs the headline rows')
  }
  const { mode, sections } = parseArgs(process.argv.slice(2))
  const smoke = process.env.BENCH_SMOKE === '1'
  const full = mode === 'full'
  const machine = machineInfo()
  const report: BenchReport = { machine, mode, smoke, sections, wallTimeMs: 0, sectionWallMs: {}, loadAverageAtEnd: [], headline: [], errors: [] }
  const print = (s: string): void => {
    process.stdout.write(`${s}\n`)
  }
  const log = (line: string): void => {
    process.stdout.write(`${line}\n`)
  }

  const modeNote = { default: '', quick: ' (--quick: the headline rows only)', full: ' (--full: longer runs, more server rounds, event-loop at 1M and 5M entries, micro)' }[mode]
  print(`shardcache benchmarks${modeNote}${smoke ? ' (BENCH_SMOKE: shortened, figures not comparable)' : ''}: ${sections.join(', ')}`)
  print(fmtMachine(machine))
  // Nothing of ours runs yet, so load here is other processes: they skew every figure.
  const busy = machine.loadAverage[0] ?? 0
  if (busy > machine.cores / 2) {
    print(`warning: 1-minute load average ${busy.toFixed(2)} on ${machine.cores} cores before the run: other processes are using the CPU, expect noisy figures`)
  }

  /** Runs a picked section: a failure is reported and the next section still runs; its wall time goes to the JSON. */
  const section = async (name: Section, body: () => Promise<void>): Promise<void> => {
    if (!sections.includes(name)) return
    const t0 = performance.now()
    try {
      await body()
    } catch (err) {
      const error = errorDetail(err)
      report.errors.push({ section: name, error })
      print(`\n${name}: FAILED\n${error}`)
    }
    report.sectionWallMs[name] = performance.now() - t0
  }
  /** Engines that failed inside a section that completed: listed in the summary too. */
  const engineErrors = (name: Section, rows: { engine: string; error?: string }[]): void => {
    for (const r of rows) if (r.error !== undefined) report.errors.push({ section: name, error: `${r.engine}: ${r.error}` })
  }

  await section('throughput', async () => {
    print(`\nrunning throughput${mode === 'quick' ? ` (${QUICK_ENGINES.join(', ')})` : ''} ...`)
    const base = full ? FULL_THROUGHPUT : DEFAULT_THROUGHPUT
    const cfg = {
      ...base,
      ...(smoke ? { warmupMs: 100, pipelinedMs: 400, singleMs: 200, headlineRoundMs: 100 } : {}),
      ...(mode === 'quick' ? { engines: QUICK_ENGINES } : {}),
    }
    report.throughput = await runThroughput(cfg, log)
    print(printThroughput(report.throughput))
    engineErrors('throughput', report.throughput.engines)
  })

  await section('bus', async () => {
    print('\nrunning bus (Redis pub/sub to a peer process) ...')
    const cfg = smoke
      ? { ...DEFAULT_BUS, latencyWarmupMs: 200, latencyMs: 600, writeWarmupMs: 100, rounds: 2, writeMs: 200, drainTimeoutMs: 1500 }
      : DEFAULT_BUS
    report.bus = await runBus(cfg, log)
    print(printBus(report.bus))
    engineErrors('bus', busErrors(report.bus))
  })

  await section('read-through', async () => {
    print('\nrunning read-through (two processes per engine, shared Redis L2 and bus) ...')
    const cfg = smoke ? { ...DEFAULT_READ_THROUGH, warmupMs: 500, measureMs: 1000 } : DEFAULT_READ_THROUGH
    report.readThrough = await runReadThrough(cfg, log)
    print(printReadThrough(report.readThrough))
    engineErrors('read-through', readThroughErrors(report.readThrough))
  })

  await section('server', async () => {
    print('\nrunning server (a node:http server and an open-loop client, one process each, per cache mode) ...')
    const base = full ? FULL_SERVER : DEFAULT_SERVER
    const cfg = smoke
      ? { ...base, rounds: 1, regimes: base.regimes.map((g) => ({ ...g, entries: 50_000, maxOldSpaceMb: 0, warmupMs: 300, durationMs: 700 })) }
      : base
    report.server = await runServerSection(cfg, log)
    print(printServerSection(report.server, `1d. A real server: ${fmtCount(cfg.regimes[0]!.entries)} users behind node:http, light and GC-heavy`))
    for (const g of report.server.regimes) {
      for (const x of g.rounds) if (x.error !== undefined) report.errors.push({ section: 'server', error: `${g.regime.name} round ${x.round} ${x.mode}: ${x.error}` })
    }
  })

  const elDefault = full ? FULL_EVENT_LOOP : DEFAULT_EVENT_LOOP
  const elBase = withEnvOverrides(smoke ? { ...elDefault, entries: 200_000, warmupMs: 300, durationMs: 1000 } : elDefault)
  await section('event-loop', async () => {
    print('\nrunning event-loop scenarios (one child process each) ...')
    report.eventLoop = await runEventLoop(elBase, log, { engines: eventLoopEngines() })
    print(printEventLoop(report.eventLoop, `2. Main-thread event-loop delay, ${fmtCount(elBase.entries)} entries under churn`))
    engineErrors('event-loop', report.eventLoop.runs)
  })

  await section('event-loop-5m', async () => {
    // The same scenario with five times the entries: does the delay stay flat as the cache grows?
    // Only in --full (or when named): the two pre-fills alone take ~70 s here.
    const base = { ...elBase, entries: smoke ? 1_000_000 : LARGE_ENTRIES }
    const engines = eventLoopEngines()
    // "no cache" is borrowed from section 2 when it ran (same loop, no entries to hold), else run once:
    // each run costs ~6 s.
    const borrowedBaseline = report.eventLoop?.runs.filter((r) => r.engine === 'no cache' && r.result !== undefined)
    const borrowing = borrowedBaseline !== undefined && borrowedBaseline.length > 0 && engines.includes('no cache')
    const running = borrowing ? engines.filter((e) => e !== 'no cache') : engines
    print(`\nrunning event-loop scenarios with ${fmtCount(base.entries)} entries (${running.join(', ')}${borrowing ? '; "no cache" from section 2' : ''}) ...`)
    report.eventLoop5M = await runEventLoop(base, log, { engines, closingBaseline: false, borrowedBaseline })
    print(printEventLoop(report.eventLoop5M, `3. Main-thread event-loop delay, ${fmtCount(base.entries)} entries under churn`))
    engineErrors('event-loop-5m', report.eventLoop5M.runs)
  })

  await section('memory', async () => {
    print('\nrunning memory (one child process per engine) ...')
    report.memory = await runMemory(smoke ? { ...DEFAULT_MEMORY, records: 200_000 } : DEFAULT_MEMORY, log)
    print(printMemory(report.memory))
    engineErrors('memory', report.memory.runs)
  })

  await section('hit-ratio', async () => {
    print('\nrunning hit-ratio (trace replays through the region store, this thread) ...')
    report.hitRatio = runHitRatio(log)
    print(printHitRatio(report.hitRatio))
  })

  await section('policies', async () => {
    print('\nrunning eviction policy costs (one cache per policy, interleaved rounds) ...')
    report.policies = await runPolicyCost(smoke ? { ...DEFAULT_POLICY_COST, rounds: 1, roundMs: 100 } : DEFAULT_POLICY_COST, log)
    print(printPolicyCost(report.policies))
  })

  await section('micro', async () => {
    print('\nrunning region store micro-benchmarks ...')
    report.micro = runMicro(smoke ? { ...DEFAULT_MICRO, maxTimeSec: 0.1 } : DEFAULT_MICRO, log)
    print(printMicro(report.micro))
  })

  report.headline = headlineRows(report)
  report.wallTimeMs = performance.now() - started
  const timing = buildTiming()
  if (timing !== undefined) {
    report.buildMs = timing.buildMs
    report.totalWallMs = Date.now() - timing.startedAtEpochMs
  }
  report.loadAverageAtEnd = loadavg()
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${machine.date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)

  const headline = printHeadline(report.headline)
  if (headline !== '') print(headline)
  print('')
  print(`section wall times: ${Object.entries(report.sectionWallMs).map(([k, ms]) => `${k} ${fmtDuration(ms)}`).join(', ')}`)
  print(`load average at the end: ${report.loadAverageAtEnd.map((x) => x.toFixed(2)).join(' ')} (${machine.cores} cores; above that, other processes competed for the CPU)`)
  print(`results: ${file}`)
  if (report.errors.length > 0) {
    print(`${report.errors.length} error(s): ${report.errors.map((e) => `${e.section}: ${e.error.split('\n')[0]}`).join('; ')}`)
    process.exitCode = 1
  }
  print(
    report.totalWallMs === undefined || report.buildMs === undefined
      ? `bench: ${fmtDuration(report.wallTimeMs)} wall time (build not included)`
      : `bench: ${fmtDuration(report.totalWallMs)} wall time (build ${fmtDuration(report.buildMs)} + benchmarks ${fmtDuration(report.wallTimeMs)})`,
  )
}

main().catch((err: unknown) => {
  killChildrenSync()
  killPeerProcessesSync()
  killAllSync()
  process.stderr.write(`bench: ${err instanceof UsageError ? err.message : errorDetail(err)}\n`)
  process.exit(1)
})
