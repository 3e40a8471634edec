/**
 * The benchmark harness entry point (`npm run bench`): runs every section in
 * one process run, prints a table per section, and writes all raw numbers to
 * bench/results/<timestamp>.json.
 *
 * Sections can be picked by name (`npm run bench -- throughput memory`), and
 * BENCH_QUICK=1 shortens every duration, for working on the harness itself;
 * figures from either are not comparable with a full run. The event-loop
 * scenarios take BENCH_EL_RATE (req/s), BENCH_EL_CHURN (new keys/s),
 * BENCH_EL_SHARDS, BENCH_EL_MS (measured window) and BENCH_EL_ENGINES
 * (comma-separated subset) overrides, and BENCH_EL_ENTRIES for the 1M run; the
 * values used are printed and kept in the JSON.
 *
 * The bus and read-through sections need Redis: REDIS_URL, or `redis-server`
 * on PATH for a private one; without either they print why and are skipped.
 *
 * `--full` (or BENCH_FULL=1) adds lru-cache to the 5M-entry event-loop run:
 * 30-55 s more on the reference machine (a 3 GiB heap to pre-fill), which
 * would take the default run past its 3-minute budget.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { killAllSync } from './redis_server.js'
import { killPeerProcessesSync } from './peer_process.js'
import { DEFAULT_THROUGHPUT, printThroughput, runThroughput } from './throughput.js'
import type { ThroughputResult } from './throughput.js'
import { DEFAULT_BUS, busErrors, printBus, runBus } from './bus.js'
import type { BusSection } from './bus.js'
import { DEFAULT_READ_THROUGH, printReadThrough, readThroughErrors, runReadThrough } from './read_through.js'
import type { ReadThroughSection } from './read_through.js'
import { DEFAULT_EVENT_LOOP, ENGINES, printEventLoop, runEventLoop } from './event_loop.js'
import type { EventLoopBase, EventLoopSection } from './event_loop.js'
import type { EventLoopEngine } from './event_loop_types.js'
import { killChildrenSync } from './child.js'
import { DEFAULT_MEMORY, printMemory, runMemory } from './memory.js'
import type { MemorySection } from './memory.js'
import { DEFAULT_MICRO, printMicro, runMicro } from './region_store_micro.js'
import type { MicroSection } from './region_store_micro.js'
import { errorDetail, fmtCount, fmtMachine, heading, machineInfo } from './report.js'
import type { MachineInfo } from './report.js'

const SECTIONS = ['throughput', 'bus', 'read-through', 'event-loop', 'event-loop-5m', 'memory', 'micro'] as const
type Section = (typeof SECTIONS)[number]

/** Entries of the large event-loop run. */
const LARGE_ENTRIES = 5_000_000

interface BenchReport {
  machine: MachineInfo
  quick: boolean
  /** --full / BENCH_FULL=1: lru-cache ran at 5M entries too. */
  full: boolean
  sections: Section[]
  wallTimeMs: number
  /** Wall time of each section that ran, in ms. */
  sectionWallMs: Partial<Record<Section, number>>
  /** Load averages when the run ended. */
  loadAverageAtEnd: number[]
  throughput?: ThroughputResult
  bus?: BusSection
  readThrough?: ReadThroughSection
  eventLoop?: EventLoopSection
  eventLoop5M?: EventLoopSection
  memory?: MemorySection
  micro?: MicroSection
  errors: { section: Section; error: string }[]
}

/** Results live in the source tree (bench/results), not in dist/, so a rebuild never deletes them. */
const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url))

function parseSections(args: string[]): Section[] {
  const argv = args.filter((a) => a !== '--full')
  if (argv.length === 0) return [...SECTIONS]
  for (const a of argv) {
    if (!(SECTIONS as readonly string[]).includes(a)) {
      throw new Error(`unknown section ${JSON.stringify(a)} (sections: ${SECTIONS.join(', ')})`)
    }
  }
  return SECTIONS.filter((s) => argv.includes(s))
}

/** Integer from the environment, for exploring the event-loop scenario without editing code. */
function envInt(name: string): number | undefined {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer (got ${JSON.stringify(raw)})`)
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
    if (!(ENGINES as string[]).includes(p)) throw new Error(`BENCH_EL_ENGINES: unknown engine ${JSON.stringify(p)} (engines: ${ENGINES.join(', ')})`)
  }
  return ENGINES.filter((e) => picked.includes(e))
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
  const sections = parseSections(process.argv.slice(2))
  const quick = process.env.BENCH_QUICK === '1'
  const full = process.argv.includes('--full') || process.env.BENCH_FULL === '1'
  const machine = machineInfo()
  const report: BenchReport = { machine, quick, full, sections, wallTimeMs: 0, sectionWallMs: {}, loadAverageAtEnd: [], errors: [] }
  const print = (s: string): void => {
    process.stdout.write(`${s}\n`)
  }
  const log = (line: string): void => {
    process.stdout.write(`${line}\n`)
  }

  print(`shardcache benchmarks${quick ? ' (BENCH_QUICK: shortened, not comparable)' : ''}${full ? ' (--full: lru-cache at 5M entries too)' : ''}`)
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
    print('\nrunning throughput ...')
    const cfg = quick ? { ...DEFAULT_THROUGHPUT, warmupMs: 100, pipelinedMs: 400, singleMs: 200 } : DEFAULT_THROUGHPUT
    report.throughput = await runThroughput(cfg, log)
    print(printThroughput(report.throughput))
    engineErrors('throughput', report.throughput.engines)
  })

  await section('bus', async () => {
    print('\nrunning bus (Redis pub/sub to a peer process) ...')
    const cfg = quick
      ? { ...DEFAULT_BUS, latencyWarmupMs: 200, latencyMs: 600, writeWarmupMs: 100, rounds: 2, writeMs: 200, drainTimeoutMs: 1500 }
      : DEFAULT_BUS
    report.bus = await runBus(cfg, log)
    print(printBus(report.bus))
    engineErrors('bus', busErrors(report.bus))
  })

  await section('read-through', async () => {
    print('\nrunning read-through (two processes per engine, shared Redis L2 and bus) ...')
    const cfg = quick ? { ...DEFAULT_READ_THROUGH, warmupMs: 500, measureMs: 1000 } : DEFAULT_READ_THROUGH
    report.readThrough = await runReadThrough(cfg, log)
    print(printReadThrough(report.readThrough))
    engineErrors('read-through', readThroughErrors(report.readThrough))
  })

  const elBase = withEnvOverrides(quick ? { ...DEFAULT_EVENT_LOOP, entries: 200_000, warmupMs: 300, durationMs: 1000 } : DEFAULT_EVENT_LOOP)
  await section('event-loop', async () => {
    print('\nrunning event-loop scenarios (one child process each) ...')
    report.eventLoop = await runEventLoop(elBase, log, { engines: eventLoopEngines() })
    print(printEventLoop(report.eventLoop, `2. Main-thread event-loop delay, ${fmtCount(elBase.entries)} entries under churn (headline)`))
    engineErrors('event-loop', report.eventLoop.runs)
  })

  await section('event-loop-5m', async () => {
    // The same scenario with five times the entries: does the delay stay flat as the cache grows?
    const base = { ...elBase, entries: quick ? 1_000_000 : LARGE_ENTRIES }
    // lru-cache at 5M pre-fills for 25-40 s into a 3 GiB heap: only with --full.
    const engines = full ? eventLoopEngines() : eventLoopEngines().filter((e) => e !== 'lru-cache')
    const note = full || !eventLoopEngines().includes('lru-cache')
      ? undefined
      : 'lru-cache: not run at this size by default (30-55 s more here, past the 3-minute budget); `npm run bench -- --full` or BENCH_FULL=1 adds it'
    // "no cache" is borrowed from section 2 when it ran (same loop, no entries to hold), else run once:
    // each run costs ~6 s of the budget.
    const borrowedBaseline = report.eventLoop?.runs.filter((r) => r.engine === 'no cache' && r.result !== undefined)
    const borrowing = borrowedBaseline !== undefined && borrowedBaseline.length > 0 && engines.includes('no cache')
    const running = borrowing ? engines.filter((e) => e !== 'no cache') : engines
    print(`\nrunning event-loop scenarios with ${fmtCount(base.entries)} entries (${running.join(', ')}${borrowing ? '; "no cache" from section 2' : ''}) ...`)
    report.eventLoop5M = await runEventLoop(base, log, { engines, closingBaseline: false, note, borrowedBaseline })
    print(printEventLoop(report.eventLoop5M, `3. Main-thread event-loop delay, ${fmtCount(base.entries)} entries under churn`))
    engineErrors('event-loop-5m', report.eventLoop5M.runs)
  })

  await section('memory', async () => {
    print('\nrunning memory (one child process per engine) ...')
    report.memory = await runMemory(quick ? { ...DEFAULT_MEMORY, records: 200_000 } : DEFAULT_MEMORY, log)
    print(printMemory(report.memory))
    engineErrors('memory', report.memory.runs)
  })

  await section('micro', async () => {
    print('\nrunning region store micro-benchmarks ...')
    report.micro = runMicro(quick ? { ...DEFAULT_MICRO, maxTimeSec: 0.1 } : DEFAULT_MICRO, log)
    print(printMicro(report.micro))
  })

  report.wallTimeMs = performance.now() - started
  report.loadAverageAtEnd = loadavg()
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${machine.date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)

  print(heading('Summary'))
  print(
    `wall time (bench only, without build): ${(report.wallTimeMs / 1000).toFixed(1)} s (` +
      Object.entries(report.sectionWallMs).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`).join(', ') + ')',
  )
  print(`load average at the end: ${report.loadAverageAtEnd.map((x) => x.toFixed(2)).join(' ')} (${machine.cores} cores; above that, other processes competed for the CPU)`)
  print(`results: ${file}`)
  if (report.errors.length > 0) {
    print(`${report.errors.length} error(s): ${report.errors.map((e) => `${e.section}: ${e.error.split('\n')[0]}`).join('; ')}`)
    process.exitCode = 1
  }
}

main().catch((err: unknown) => {
  killChildrenSync()
  killPeerProcessesSync()
  killAllSync()
  process.stderr.write(`bench: ${errorDetail(err)}\n`)
  process.exit(1)
})
