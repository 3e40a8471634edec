/**
 * Plain-text tables and unit formatting for the benchmark output. Kept apart
 * from the workloads so the JSON written next to the table stays raw numbers
 * (ns, ops/s, ms) and only the printout is rounded.
 */
import { cpus, loadavg, totalmem } from 'node:os'
import type { RecordableHistogram } from 'node:perf_hooks'

export type Align = 'left' | 'right'

export interface Column {
  header: string
  align?: Align
}

/**
 * A table as aligned text. Cells are already formatted; `undefined` prints as
 * an empty cell. `notes` (skipped or failed engines) print under the rows
 * without widening the columns.
 */
export function table(columns: Column[], rows: (string | undefined)[][], notes: string[] = []): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)))
  const cell = (text: string, i: number): string => {
    const w = widths[i] ?? text.length
    return (columns[i]?.align ?? 'right') === 'left' ? text.padEnd(w) : text.padStart(w)
  }
  const line = (cells: (string | undefined)[]): string =>
    columns.map((_, i) => cell(cells[i] ?? '', i)).join('  ').trimEnd()
  const rule = widths.map((w) => '-'.repeat(w)).join('  ')
  return [line(columns.map((c) => c.header)), rule, ...rows.map(line), ...notes].join('\n')
}

/** An error's message with its `cause` chain, one line: what a report row needs to point at the failing layer. */
export function describeError(err: unknown): string {
  const parts: string[] = []
  let e: unknown = err
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof Error) {
      const code = (e as Error & { code?: unknown }).code
      parts.push(`${e.name}${typeof code === 'string' ? ` [${code}]` : ''}: ${e.message}`)
      e = e.cause
    } else {
      parts.push(String(e))
      break
    }
  }
  return parts.join(' <- caused by ')
}

/** The stack of an error, followed by its causes' stacks: for the JSON and for crash output. */
export function errorDetail(err: unknown): string {
  const parts: string[] = []
  let e: unknown = err
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof Error) {
      parts.push(e.stack ?? `${e.name}: ${e.message}`)
      e = e.cause
    } else {
      parts.push(String(e))
      break
    }
  }
  return parts.join('\ncaused by: ')
}

/** A section title, underlined, with an empty line before it. */
export function heading(title: string): string {
  return `\n${title}\n${'='.repeat(title.length)}`
}

/** Operations per second: `1.23M/s`, `456k/s`, `789/s`. */
export function fmtRate(opsPerSec: number | undefined): string {
  if (opsPerSec === undefined || !Number.isFinite(opsPerSec)) return '-'
  if (opsPerSec >= 1e6) return `${(opsPerSec / 1e6).toFixed(2)}M/s`
  if (opsPerSec >= 1e3) return `${(opsPerSec / 1e3).toFixed(opsPerSec >= 1e5 ? 0 : 1)}k/s`
  return `${opsPerSec.toFixed(0)}/s`
}

/** A duration given in ns, printed in the unit that keeps 2-3 significant digits. */
export function fmtNs(ns: number | undefined): string {
  if (ns === undefined || !Number.isFinite(ns)) return '-'
  if (ns < 1_000) return `${ns.toFixed(0)} ns`
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(ns < 10_000 ? 2 : 1)} µs`
  return `${(ns / 1_000_000).toFixed(ns < 10_000_000 ? 2 : 1)} ms`
}

/** `1M`, `5M`, `200k`: entry counts in titles. */
export function fmtCount(n: number): string {
  if (n >= 1e6 && n % 1e5 === 0) return `${n / 1e6}M`
  if (n >= 1e3 && n % 100 === 0) return `${n / 1e3}k`
  return n.toLocaleString('en-US')
}

/** Milliseconds with two decimals. */
export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-'
  return `${ms.toFixed(2)} ms`
}

/** A ratio such as `8.1x`; `-` when either side is missing or zero. */
export function fmtRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r) || r === 0) return '-'
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`
}

export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || b === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return undefined
  return a / b
}

export function fmtPct(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '-'
  return `${(x * 100).toFixed(2)}%`
}

/** A wall time for people: `2 min 41 s`, `48 s`, `3.2 s`. */
export function fmtDuration(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`
}

/** What the JSON keeps of a histogram of integer nanoseconds. */
export interface LatencySummary {
  count: number
  minNs: number
  meanNs: number
  p50Ns: number
  p90Ns: number
  p99Ns: number
  p999Ns: number
  maxNs: number
}

export function summarize(h: RecordableHistogram): LatencySummary {
  const count = h.count
  return {
    count,
    minNs: count === 0 ? 0 : h.min,
    meanNs: count === 0 ? 0 : h.mean,
    p50Ns: h.percentile(50),
    p90Ns: h.percentile(90),
    p99Ns: h.percentile(99),
    p999Ns: h.percentile(99.9),
    maxNs: count === 0 ? 0 : h.max,
  }
}

export interface MachineInfo {
  cpu: string
  cores: number
  node: string
  platform: string
  totalMemoryBytes: number
  date: string
  /** 1/5/15-minute load averages when the run started: other work on the machine skews every figure. */
  loadAverage: number[]
}

export function machineInfo(): MachineInfo {
  const list = cpus()
  return {
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    totalMemoryBytes: totalmem(),
    date: new Date().toISOString(),
    loadAverage: loadavg(),
  }
}

export function fmtMachine(m: MachineInfo): string {
  const gib = (m.totalMemoryBytes / 2 ** 30).toFixed(1)
  const load = m.loadAverage.map((x) => x.toFixed(2)).join(' ')
  return `machine: ${m.cpu} | ${m.cores} cores | node ${m.node} (${m.platform}) | ${gib} GiB RAM | ${m.date} | load avg ${load}`
}

/**
 * The first lines of a section that needs Redis: why it was skipped or how it
 * failed. Returns true when that is all there is to print.
 */
export function skippedOrFailed(out: string[], s: { skipped?: string; error?: string }): boolean {
  if (s.skipped !== undefined) {
    out.push(`skipped: ${s.skipped} (set REDIS_URL, or put redis-server on PATH)`)
    return true
  }
  if (s.error !== undefined) {
    out.push(`FAILED: ${s.error}`)
    return true
  }
  return false
}
