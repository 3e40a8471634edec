/**
 * The headline: what holding a million entries under churn does to the serving
 * thread's event loop. Each engine runs in its own child process (see
 * event_loop_child.ts) and the parent stays idle meanwhile, so it competes for
 * neither CPU nor heap with the scenario it measures.
 */
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { ChildMessage, EventLoopConfig, EventLoopEngine, EventLoopResult } from './event_loop_types.js'
import { describeError, fmtMs, fmtPct, fmtRatio, heading, ratio, table, verdict } from './report.js'

export type { EventLoopConfig, EventLoopResult } from './event_loop_types.js'

export const ENGINES: EventLoopEngine[] = ['no cache', 'lru-cache', 'shardcache']

export type EventLoopBase = Omit<EventLoopConfig, 'engine'>

export const DEFAULT_EVENT_LOOP: EventLoopBase = {
  entries: 1_000_000,
  zipfS: 0.99,
  requestsPerSec: 20_000,
  // 10k new keys/s turns a 1M-entry cache over every ~100 s: a busy service, not a pathological one.
  churnPerSec: 10_000,
  // One core stays with the main thread; on 2 cores that is a single shard.
  shards: Math.max(1, availableParallelism() - 1),
  prefillChunk: 10_000,
  warmupMs: 1000,
  durationMs: 5000,
  seed: 7,
}

const CHILD = fileURLToPath(new URL('./event_loop_child.js', import.meta.url))

/** Children alive right now, so a SIGINT handler can stop them. */
const children = new Set<ChildProcess>()

export function killChildrenSync(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  children.clear()
}

export interface EventLoopRun {
  engine: EventLoopEngine
  /** Row label: the engine, plus "(again)" for the closing baseline run. */
  label: string
  result?: EventLoopResult
  /** One line: message and causes. */
  error?: string
  /** Stacks, for the JSON. */
  errorDetail?: string
}

export interface EventLoopSection {
  base: EventLoopBase
  runs: EventLoopRun[]
  /** The p99 the ratios divide by: the lower of the "no cache" runs. */
  baselineP99Ms: number | undefined
  headline: { shardcacheP99Ratio: number | undefined; lruP99Ratio: number | undefined }
}

/** A failure inside a child, carrying the child's stacks. */
class ChildError extends Error {
  constructor(message: string, readonly detail: string) {
    super(message)
  }
}

function runChild(cfg: EventLoopConfig, timeoutMs: number): Promise<EventLoopResult> {
  return new Promise((resolve, reject) => {
    // A fresh heap per engine, and --expose-gc so the child can start its
    // measurement from a collected heap. Inherit stderr so crashes are visible.
    const child = fork(CHILD, [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.add(child)
    let settled = false
    let message: ChildMessage | undefined
    const settle = (err: Error | undefined, result?: EventLoopResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      children.delete(child)
      if (err !== undefined) reject(err)
      else resolve(result!)
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      settle(new Error(`${cfg.engine}: child did not finish within ${timeoutMs} ms`))
    }, timeoutMs)
    child.on('message', (m: ChildMessage) => {
      message = m
    })
    child.once('error', (err) => settle(err))
    child.once('exit', (code, signal) => {
      if (message === undefined) settle(new Error(`${cfg.engine}: child exited (${signal ?? `code ${code}`}) without a result`))
      else if (!message.ok) settle(new ChildError(message.error, message.detail))
      else settle(undefined, message.result)
    })
    child.send(cfg)
  })
}

export async function runEventLoop(base: EventLoopBase, log: (line: string) => void, engines: EventLoopEngine[] = ENGINES): Promise<EventLoopSection> {
  // The baseline runs first and again last: it is cheap (no pre-fill), and two
  // runs bracketing the others show how much of a p99 is the machine rather
  // than the engine (other processes taking the CPU hit any run at random).
  const order = engines.includes('no cache') && engines.length > 1 ? [...engines, 'no cache' as const] : engines
  const runs: EventLoopRun[] = []
  for (const [i, engine] of order.entries()) {
    const label = engine === 'no cache' && i > 0 ? 'no cache (again)' : engine
    const cfg: EventLoopConfig = { ...base, engine }
    // Pre-fill of a million entries plus the run; generous, since only a hang should hit it.
    const timeoutMs = 90_000 + base.warmupMs + base.durationMs
    try {
      const result = await runChild(cfg, timeoutMs)
      runs.push({ engine, label, result })
      log(`  ${label.padEnd(16)} p99 ${fmtMs(result.delay.p99Ms)}  (pre-fill ${(result.prefillMs / 1000).toFixed(2)} s)`)
    } catch (err) {
      const error = describeError(err)
      runs.push({ engine, label, error, errorDetail: err instanceof ChildError ? err.detail : undefined })
      log(`  ${label}: FAILED: ${error}`)
    }
  }
  const p99s = (e: EventLoopEngine): number[] =>
    runs.filter((r) => r.engine === e && r.result !== undefined).map((r) => r.result!.delay.p99Ms)
  const baselines = p99s('no cache')
  // The lower baseline makes the ratios larger: the conservative choice for a target of "at most 2x".
  const baselineP99Ms = baselines.length === 0 ? undefined : Math.min(...baselines)
  return {
    base,
    runs,
    baselineP99Ms,
    headline: {
      shardcacheP99Ratio: ratio(p99s('shardcache')[0], baselineP99Ms),
      lruP99Ratio: ratio(p99s('lru-cache')[0], baselineP99Ms),
    },
  }
}

export const TARGET_SHARDCACHE_P99_RATIO = 2

export function printEventLoop(s: EventLoopSection): string {
  const b = s.base
  const notes = s.runs.filter((r) => r.result === undefined).map((r) => `${r.label}: FAILED: ${r.error ?? 'unknown error'}`)
  const rows = s.runs.flatMap((r) => {
    const x = r.result
    if (x === undefined) return []
    return [[
      r.label,
      fmtMs(x.delay.p50Ms),
      fmtMs(x.delay.p99Ms),
      fmtMs(x.delay.maxMs),
      fmtRatio(ratio(x.delay.p99Ms, s.baselineP99Ms)),
      fmtMs(x.requestLatency.p99Ms),
      `${x.gc.major}/${x.gc.minor}/${x.gc.other}`,
      fmtMs(x.gc.maxMs),
      `${(x.memory.heapUsedBytes / 2 ** 20).toFixed(0)} MiB`,
      r.engine === 'no cache' ? '-' : fmtPct(x.requests.completed === 0 ? undefined : x.requests.hits / x.requests.completed),
      `${x.requests.completed.toLocaleString('en-US')}/${x.requests.issued.toLocaleString('en-US')}`,
      `${(x.prefillMs / 1000).toFixed(2)} s`,
    ]]
  })
  const out = [
    heading('2. Main-thread event-loop delay, 1M entries under churn (headline)'),
    `${b.entries.toLocaleString('en-US')} pre-filled ~200-byte user objects; open loop of ${b.requestsPerSec.toLocaleString('en-US')} req/s ` +
      `(parse a ~1 KB request head, Zipf s=${b.zipfS} get, build+set on miss, JSON response) + ${b.churnPerSec.toLocaleString('en-US')} new keys/s; ` +
      `${b.warmupMs} ms warm-up, ${b.durationMs} ms measured; each engine in a fresh \`node --expose-gc\` child; shardcache: ${b.shards} shard(s), maxEntries = pre-fill.`,
    table(
      [
        { header: 'engine', align: 'left' },
        { header: 'delay p50' },
        { header: 'p99' },
        { header: 'max' },
        { header: 'p99 vs none*' },
        { header: 'req p99' },
        { header: 'GC maj/min/inc' },
        { header: 'GC max' },
        { header: 'heap' },
        { header: 'hit rate' },
        { header: 'done/issued' },
        { header: 'pre-fill' },
      ],
      rows,
      notes,
    ),
  ]
  const nones = s.runs.filter((r) => r.engine === 'no cache' && r.result !== undefined)
  out.push(
    `* ratios divide by the lower "no cache" p99 (${fmtMs(s.baselineP99Ms)})` +
      (nones.length > 1 ? `; the two baseline runs differ by ${fmtRatio(ratio(Math.max(...nones.map((r) => r.result!.delay.p99Ms)), s.baselineP99Ms))}, which is this machine's noise` : ''),
  )
  const sc = s.runs.find((r) => r.engine === 'shardcache')?.result
  if (sc?.cacheStats !== undefined) {
    const c = sc.cacheStats
    out.push(
      `shardcache stats() after the run (sanity): hitRate ${fmtPct(c.hitRate)}, entries ${c.entries.toLocaleString('en-US')}, ` +
        `evictions ${c.evictions.toLocaleString('en-US')}, sets ${c.sets.toLocaleString('en-US')}, shards ${c.shards}, restarts ${c.shardRestarts}`,
    )
  }
  const r = s.headline
  out.push(
    '',
    `headline: event-loop p99 shardcache / no cache = ${fmtRatio(r.shardcacheP99Ratio)} ` +
      `(target <= ${TARGET_SHARDCACHE_P99_RATIO}x: ${verdict(r.shardcacheP99Ratio === undefined ? undefined : r.shardcacheP99Ratio <= TARGET_SHARDCACHE_P99_RATIO)}); ` +
      `lru-cache / no cache = ${fmtRatio(r.lruP99Ratio)} (expected ~6x)`,
  )
  return out.join('\n')
}
