/**
 * The benchmark harness entry point (`npm run bench`): runs every section in
 * one process run, prints a table per section, and writes all raw numbers to
 * bench/results/<timestamp>.json.
 *
 * Sections can be picked by name (`npm run bench -- throughput micro`), and
 * BENCH_QUICK=1 shortens every duration, for working on the harness itself;
 * figures from either are not comparable with a full run. The event-loop
 * scenario takes BENCH_EL_ENTRIES, BENCH_EL_RATE (req/s), BENCH_EL_CHURN (new
 * keys/s), BENCH_EL_SHARDS, BENCH_EL_MS (measured window) and BENCH_EL_ENGINES
 * (comma-separated subset) overrides; the
 * values used are printed and kept in the JSON.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { killAllSync } from './redis_server.js'
import { DEFAULT_THROUGHPUT, printThroughput, runThroughput } from './throughput.js'
import type { ThroughputResult } from './throughput.js'
import { DEFAULT_EVENT_LOOP, ENGINES, killChildrenSync, printEventLoop, runEventLoop } from './event_loop.js'
import type { EventLoopBase, EventLoopSection } from './event_loop.js'
import type { EventLoopEngine } from './event_loop_types.js'
import { DEFAULT_MICRO, printMicro, runMicro } from './region_store_micro.js'
import type { MicroSection } from './region_store_micro.js'
import { errorDetail, fmtMachine, heading, machineInfo } from './report.js'
import type { MachineInfo } from './report.js'

const SECTIONS = ['throughput', 'event-loop', 'micro'] as const
type Section = (typeof SECTIONS)[number]

interface BenchReport {
  machine: MachineInfo
  quick: boolean
  sections: Section[]
  wallTimeMs: number
  /** Load averages when the run ended. */
  loadAverageAtEnd: number[]
  throughput?: ThroughputResult
  eventLoop?: EventLoopSection
  micro?: MicroSection
  errors: { section: Section; error: string }[]
}

/** Results live in the source tree (bench/results), not in dist/, so a rebuild never deletes them. */
const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url))

function parseSections(argv: string[]): Section[] {
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
  const machine = machineInfo()
  const report: BenchReport = { machine, quick, sections, wallTimeMs: 0, loadAverageAtEnd: [], errors: [] }
  const print = (s: string): void => {
    process.stdout.write(`${s}\n`)
  }
  const log = (line: string): void => {
    process.stdout.write(`${line}\n`)
  }

  print(`shardcache benchmarks${quick ? ' (BENCH_QUICK: shortened, not comparable)' : ''}`)
  print(fmtMachine(machine))
  // Nothing of ours runs yet, so load here is other processes: they skew every figure.
  const busy = machine.loadAverage[0] ?? 0
  if (busy > machine.cores / 2) {
    print(`warning: 1-minute load average ${busy.toFixed(2)} on ${machine.cores} cores before the run: other processes are using the CPU, expect noisy figures`)
  }

  const fail = (section: Section, err: unknown): void => {
    const error = errorDetail(err)
    report.errors.push({ section, error })
    print(`\n${section}: FAILED\n${error}`)
  }

  if (sections.includes('throughput')) {
    print('\nrunning throughput ...')
    const cfg = quick ? { ...DEFAULT_THROUGHPUT, warmupMs: 100, pipelinedMs: 400, singleMs: 200 } : DEFAULT_THROUGHPUT
    try {
      report.throughput = await runThroughput(cfg, log)
      print(printThroughput(report.throughput))
      for (const e of report.throughput.engines) if (e.error !== undefined) report.errors.push({ section: 'throughput', error: `${e.engine}: ${e.error}` })
    } catch (err) {
      fail('throughput', err)
    }
  }

  if (sections.includes('event-loop')) {
    print('\nrunning event-loop scenarios (one child process each) ...')
    const base = withEnvOverrides(quick ? { ...DEFAULT_EVENT_LOOP, entries: 200_000, warmupMs: 300, durationMs: 1000 } : DEFAULT_EVENT_LOOP)
    try {
      report.eventLoop = await runEventLoop(base, log, eventLoopEngines())
      print(printEventLoop(report.eventLoop))
      for (const r of report.eventLoop.runs) if (r.error !== undefined) report.errors.push({ section: 'event-loop', error: `${r.engine}: ${r.error}` })
    } catch (err) {
      fail('event-loop', err)
    }
  }

  if (sections.includes('micro')) {
    print('\nrunning region store micro-benchmarks ...')
    const cfg = quick ? { ...DEFAULT_MICRO, maxTimeSec: 0.1 } : DEFAULT_MICRO
    try {
      report.micro = runMicro(cfg, log)
      print(printMicro(report.micro))
    } catch (err) {
      fail('micro', err)
    }
  }

  report.wallTimeMs = performance.now() - started
  report.loadAverageAtEnd = loadavg()
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${machine.date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)

  print(heading('Summary'))
  print(`wall time (bench only, without build): ${(report.wallTimeMs / 1000).toFixed(1)} s`)
  print(`load average at the end: ${report.loadAverageAtEnd.map((x) => x.toFixed(2)).join(' ')} (${machine.cores} cores; above that, other processes competed for the CPU)`)
  print(`results: ${file}`)
  if (report.errors.length > 0) {
    print(`${report.errors.length} error(s): ${report.errors.map((e) => `${e.section}: ${e.error.split('\n')[0]}`).join('; ')}`)
    process.exitCode = 1
  }
}

main().catch((err: unknown) => {
  killChildrenSync()
  killAllSync()
  process.stderr.write(`bench: ${errorDetail(err)}\n`)
  process.exit(1)
})
