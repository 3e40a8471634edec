/**
 * The headline: what holding a million entries under churn does to the serving
 * thread's event loop. Each engine runs in its own child process (see
 * event_loop_child.ts) and the parent stays idle meanwhile, so it competes for
 * neither CPU nor heap with the scenario it measures.
 */
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { EventLoopConfig, EventLoopEngine, EventLoopResult } from './event_loop_types.js'
import { ChildError, runChild } from './child.js'
import { describeError, fmtCount, fmtMs, fmtPct, fmtRatio, heading, ratio, table } from './report.js'

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
  // Entries per mset while pre-filling shardcache (lru-cache sets one at a time). 2,000, not 10,000: the
  // pre-fill ran ~15% faster (main-thread GC: fewer objects held across a chunk's round trip), which is
  // ~5 s of the 5M section, and it leaves the main thread's young generation smaller.
  prefillChunk: 2_000,
  // 3 s measured after 0.5 s of warm-up (was 5 s, then 4 s after 0.8 s; --full keeps those): ~3,000
  // delay samples at 1 ms resolution still put 30 above the p99, and the 1.3 s saved per child
  // (four of them) helps keep `npm run bench` under 3 minutes. The warm-up follows the pre-fill, so
  // the request path is already compiled; 0.5 s is 10,000 requests and 5,000 churned keys.
  warmupMs: 500,
  durationMs: 3000,
  seed: 7,
}

/** `--full`: the longer window of earlier versions. */
export const FULL_EVENT_LOOP: EventLoopBase = { ...DEFAULT_EVENT_LOOP, warmupMs: 800, durationMs: 4000 }

const CHILD = fileURLToPath(new URL('./event_loop_child.js', import.meta.url))

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
  /** Wall time of the whole scenario set, children included. */
  wallMs: number
  /** Why engines were left out of this run, for the printout. */
  note?: string
  /** Whether the "no cache" rows were measured by another section ({@link EventLoopOptions.borrowedBaseline}). */
  borrowedBaseline?: boolean
}

/** V8's default old-space limit on a 64-bit machine with this much RAM (4144 MiB measured on Node 20), rounded down. */
const DEFAULT_OLD_SPACE_MB = 4096
/** Main-heap room per entry for lru-cache's children: its 1M-entry run holds ~640 MiB, so 1.5 KiB leaves headroom for GC. */
const HEAP_BYTES_PER_ENTRY = 1536

/**
 * Extra node flags for a child. lru-cache keeps every entry in the main heap:
 * at 5M entries that nears the default old-space limit, and the scenario is
 * about GC pauses, not an out-of-memory crash, so the child gets room. Runs
 * that fit the default (1M) keep the default, so their figures stay comparable.
 */
function execArgvFor(cfg: EventLoopConfig): string[] {
  const needMb = Math.ceil((cfg.entries * HEAP_BYTES_PER_ENTRY) / 2 ** 20)
  return cfg.engine === 'lru-cache' && needMb > DEFAULT_OLD_SPACE_MB ? [`--max-old-space-size=${needMb}`] : []
}

/**
 * Whether a run's delay histogram describes its window: the monitor samples
 * about once per ms while the loop turns, so a window with a tenth of that had
 * the loop stalled for most of it (a starved machine), and its percentiles
 * describe the few turns that ran. Such a run gets no ratio.
 */
export function sampled(r: EventLoopResult): boolean {
  return r.delay.samples >= r.config.durationMs / 10
}

export interface EventLoopOptions {
  engines?: EventLoopEngine[]
  /**
   * Run "no cache" again after the others (default true): it is cheap (no
   * pre-fill), and two runs bracketing the others show how much of a p99 is
   * the machine rather than the engine (other processes taking the CPU hit
   * any run at random). The 5M run borrows the 1M run's two instead.
   */
  closingBaseline?: boolean
  /**
   * "no cache" runs already measured in this process by another section: used
   * as this section's baseline instead of running "no cache" again. The loop
   * without a cache does the same work whatever the entry count, so the 5M
   * section borrows the 1M section's two runs and saves a child (~6 s).
   */
  borrowedBaseline?: EventLoopRun[]
  /** Printed under the table (why an engine was left out). */
  note?: string
}

export async function runEventLoop(base: EventLoopBase, log: (line: string) => void, opts: EventLoopOptions = {}): Promise<EventLoopSection> {
  const started = performance.now()
  const borrowed = (opts.borrowedBaseline ?? []).filter((r) => r.engine === 'no cache' && r.result !== undefined)
  const engines = borrowed.length > 0 ? (opts.engines ?? ENGINES).filter((e) => e !== 'no cache') : opts.engines ?? ENGINES
  const again = (opts.closingBaseline ?? true) && engines.includes('no cache') && engines.length > 1
  const order = again ? [...engines, 'no cache' as const] : engines
  const runs: EventLoopRun[] = borrowed.map((r) => ({ ...r, label: `${r.label}, borrowed` }))
  for (const [i, engine] of order.entries()) {
    const label = engine === 'no cache' && i > 0 ? 'no cache (again)' : engine
    const cfg: EventLoopConfig = { ...base, engine }
    // Pre-fill (~4 s per million entries here) plus the run; generous, since only a hang should hit it.
    const timeoutMs = 90_000 + Math.ceil(base.entries / 1e6) * 30_000 + base.warmupMs + base.durationMs
    try {
      const result = await runChild<EventLoopConfig, EventLoopResult>(CHILD, cfg, engine, timeoutMs, execArgvFor(cfg))
      runs.push({ engine, label, result })
      log(`  ${label.padEnd(16)} p99 ${fmtMs(result.delay.p99Ms)}  (pre-fill ${(result.prefillMs / 1000).toFixed(2)} s)`)
    } catch (err) {
      const error = describeError(err)
      runs.push({ engine, label, error, errorDetail: err instanceof ChildError ? err.detail : undefined })
      log(`  ${label}: FAILED: ${error}`)
    }
  }
  const p99s = (e: EventLoopEngine): number[] =>
    runs.filter((r) => r.engine === e && r.result !== undefined && sampled(r.result)).map((r) => r.result!.delay.p99Ms)
  const baselines = p99s('no cache')
  // The lower baseline makes the ratios larger: the conservative choice for a cache's cost.
  const baselineP99Ms = baselines.length === 0 ? undefined : Math.min(...baselines)
  return {
    base,
    runs,
    baselineP99Ms,
    wallMs: performance.now() - started,
    note: opts.note,
    borrowedBaseline: borrowed.length > 0,
    headline: {
      shardcacheP99Ratio: ratio(p99s('shardcache')[0], baselineP99Ms),
      lruP99Ratio: ratio(p99s('lru-cache')[0], baselineP99Ms),
    },
  }
}

/** `title` is the whole heading: the 1M and 5M runs print one section each. */
export function printEventLoop(s: EventLoopSection, title: string): string {
  const b = s.base
  const notes = s.runs.filter((r) => r.result === undefined).map((r) => `${r.label}: FAILED: ${r.error ?? 'unknown error'}`)
  if (s.note !== undefined) notes.push(s.note)
  for (const r of s.runs) {
    if (r.result !== undefined && !sampled(r.result)) {
      notes.push(`${r.label}: ${r.result.delay.samples} delay samples in the ${b.durationMs} ms window (about one per ms expected): the loop was stalled for most of it ` +
        '(another process had the CPU?), so its delay figures describe the few turns that ran, and it gets no ratio')
    }
  }
  const rows = s.runs.flatMap((r) => {
    const x = r.result
    if (x === undefined) return []
    return [[
      r.label,
      fmtMs(x.delay.p50Ms),
      fmtMs(x.delay.p99Ms),
      fmtMs(x.delay.maxMs),
      sampled(x) ? fmtRatio(ratio(x.delay.p99Ms, s.baselineP99Ms)) : '-',
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
    heading(title),
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
      (nones.length > 1 ? `; the two baseline runs differ by ${fmtRatio(ratio(Math.max(...nones.map((r) => r.result!.delay.p99Ms)), s.baselineP99Ms))}, which is this machine's noise` : '') +
      (s.borrowedBaseline === true ? '; "borrowed": the runs of the section above, in this process (without a cache the loop does the same work at any entry count)' : ''),
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
    'How to read: "delay" is how late the serving thread\'s event loop ran its timers (monitorEventLoopDelay), i.e. what every request on that thread waits ' +
      'on top of its own work; lower is better. "p99 vs none": the row\'s delay p99 over the same server without a cache (1x: the cache adds nothing; lower is better). ' +
      '"req p99": request arrival to response built; "heap": the serving thread\'s heap after the run.',
    `scenario wall time (children included): ${(s.wallMs / 1000).toFixed(1)} s`,
    '',
    `summary (${fmtCount(b.entries)} entries): event-loop delay p99 over no cache: shardcache ${fmtRatio(r.shardcacheP99Ratio)}` +
      (s.runs.some((x) => x.engine === 'lru-cache') ? `, lru-cache ${fmtRatio(r.lruP99Ratio)}` : '') + '; lower is better, 1x = no cost',
  )
  return out.join('\n')
}
