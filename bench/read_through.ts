/**
 * Read-through with a slow source behind the cache, shardcache against
 * bentocache configured alike: how many loader calls reach the source per
 * 1,000 reads, and what a read costs (p50/p99), with two instances sharing
 * a Redis L2 and keeping their L1s coherent over a Redis bus.
 *
 * The setup, the same for both engines, run one after the other in one run:
 * - two instances of the engine, each in a forked process of its own
 *   (read_through_child.ts), as two replicas of a service are: own event
 *   loop, own L1, own connections; they share only Redis;
 * - a private redis-server (or REDIS_URL) as L2 and bus;
 * - L1 of a tenth of the keyspace per instance, so reads go to all three
 *   places: L1, L2, the loader;
 * - L2 pre-filled with every key before the instances serve anything, with
 *   expiries spread evenly over one TTL: the state a shared tier is in after
 *   hours of traffic, met by fresh L1s (a deploy). Without it a run of
 *   seconds measures a cold start: the Zipf tail keeps bringing keys never
 *   loaded, ~40% of reads go to the loader, and L2 hardly matters;
 * - a loader that waits 2 ms (a database round trip) and stamps its value
 *   with the time it "read the source";
 * - Zipf keys, the same sequence for both engines: instance 0 and 1 each
 *   draw their own sequence (two replicas behind a load balancer see
 *   different requests), over the same popularity order;
 * - 1% of requests are deletes: the source changed and the caller
 *   invalidates the key. Without them the bus would carry nothing worth
 *   measuring, and an engine that skipped invalidation would win on loader
 *   calls: the stale-read check below catches that;
 * - a TTL short enough that many entries expire inside the measured window:
 *   a run of seconds then has the reload traffic that a service running for
 *   hours has with a TTL of minutes (and the two instances racing to reload
 *   a hot key that just expired).
 *
 * Requests arrive at a fixed rate per instance (open loop), not from a fixed
 * number of loops: both engines then serve exactly the same requests at the
 * same moments, so loader calls per 1,000 reads compare like for like (with
 * closed loops the faster engine would issue more requests, reach further
 * into the Zipf tail and see a different miss mix), CPU per request compares
 * too, and a slow request delays no other one (no coordinated omission in
 * the latencies). The rate is far below what either engine can serve, as a
 * service's cache is; the lag columns show it was kept.
 *
 * An "ideal" figure is computed from the request sequence and the pre-filled
 * expiries alone: one load per key per TTL period and per delete, across both
 * instances, as a perfectly shared cache would do. Loader calls above it are
 * duplicate loads: both instances loading the same key at once (neither
 * engine coordinates loads across processes), or a single-flight that did
 * not hold within a process.
 */
import { fileURLToPath } from 'node:url'
import { createHistogram } from 'node:perf_hooks'
import { Redis } from 'ioredis'
import { ZipfSampler } from '../src/cli/workload.js'
import { connectRedis, resolveRedis } from '../tools/redis_server.js'
import { ChildError, sleep } from './child.js'
import { PeerProcess } from './peer_process.js'
import { describeError, errorDetail, fmtNs, fmtPct, fmtRate, heading, skippedOrFailed, summarize, table } from './report.js'
import type { LatencySummary } from './report.js'
import { ReadThroughConfig, ReadThroughEngine, READ_THROUGH_ENGINES, RunNames, Schedule, buildSchedule, idealLoads, RtRequest, OpenResult, PrefillResult, TierCounts, InstanceResult } from './read_through_workload.js'

type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never
type RtCommand = Distribute<RtRequest>

const CHILD_SCRIPT = fileURLToPath(new URL('./read_through_child.js', import.meta.url))
/** One instance's process (bench/read_through_child.ts). */
class Instance extends PeerProcess<RtCommand> {
  constructor(label: string) {
    super(CHILD_SCRIPT, label)
  }
}

// ── results ────────────────────────────────────────────────────────────────

/** Redis's side of one engine's window (INFO commandstats and cpu differences). */
export interface RedisWindow {
  /** Calls per command name (lower case) in the window. */
  calls: Record<string, number>
  totalCalls: number
  /** redis-server's user + system CPU, ms. */
  cpuMs: number
}

export interface EngineResult {
  engine: ReadThroughEngine
  engineVersion?: string
  ioredisVersion?: string
  /** Both instances, measured window. */
  reads: number
  deletes: number
  loaderCalls: number
  loaderCallsPer1k: number | undefined
  /** What a perfectly shared cache would load for the same requests (see idealLoads), and per 1,000 reads. */
  ideal?: { reads: number; loads: number; loadsPer1k: number }
  /** Loader calls over the ideal. */
  overIdeal: number | undefined
  /** How long the pre-fill of L2 took. */
  prefillMs?: number
  /** All reads. */
  latency?: LatencySummary
  /** Reads whose loader was not called: the cache's own path. */
  cachedLatency?: LatencySummary
  /** Reads whose own loader ran: the loader plus the engine's work around it. */
  loadedLatency?: LatencySummary
  deleteLatency?: LatencySummary
  /** The run started later than startAfterPrefillMs after the pre-fill, by this much (a busy machine). */
  lateStartMs?: number
  /** Reads answered per second, both instances (the offered rate when the engine kept up). */
  readsPerSec: number | undefined
  /** Both processes' CPU, ms per 1,000 reads. */
  cpuMsPer1k: number | undefined
  redis?: RedisWindow
  tiers?: TierCounts
  /** Reads checked against the deletes, and those that returned a value older than a completed delete. */
  stale?: { checked: number; stale: number }
  instances: Omit<InstanceResult, 'cachedNs' | 'loadedNs' | 'deleteNs' | 'readLog' | 'deleteLog'>[]
  wallMs: number
  error?: string
  errorDetail?: string
}

export interface ReadThroughSection {
  config: ReadThroughConfig
  /** Where Redis came from; the URL is not kept (it may carry a password). */
  redis?: 'REDIS_URL' | 'private redis-server'
  skipped?: string
  /** Set up failed before any engine ran. */
  error?: string
  errorDetail?: string
  engines: EngineResult[]
  wallMs: number
}

// ── Redis bookkeeping ──────────────────────────────────────────────────────


interface InfoSnapshot {
  calls: Map<string, number>
  cpuMs: number
}

async function infoSnapshot(r: Redis): Promise<InfoSnapshot> {
  const text = await r.info('commandstats')
  const cpu = await r.info('cpu')
  const calls = new Map<string, number>()
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]))
  const num = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0)
  return { calls, cpuMs: (num('used_cpu_user') + num('used_cpu_sys')) * 1000 }
}

function infoDiff(a: InfoSnapshot, b: InfoSnapshot): RedisWindow {
  const calls: Record<string, number> = {}
  let totalCalls = 0
  for (const [name, n] of b.calls) {
    const d = n - (a.calls.get(name) ?? 0)
    if (d > 0) {
      calls[name] = d
      totalCalls += d
    }
  }
  return { calls, totalCalls, cpuMs: b.cpuMs - a.cpuMs }
}

/**
 * Removes what an engine left in Redis. A private server is emptied (the next
 * engine starts from the same state); on a shared REDIS_URL only this run's
 * keys go, found by their unique prefix.
 */
async function cleanup(r: Redis, owned: boolean, keyPrefix: string): Promise<void> {
  if (owned) {
    await r.flushall()
    return
  }
  let cursor = '0'
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000)
    if (keys.length > 0) await r.unlink(...keys)
    cursor = next
  } while (cursor !== '0')
}

// ── one engine ─────────────────────────────────────────────────────────────

const epochNow = (): number => performance.timeOrigin + performance.now()

/**
 * Each instance deletes a probe key until the other reports a bus message:
 * both subscriptions are then live, so no invalidation of the run is lost to
 * a subscription still being set up (bentocache subscribes in the background).
 */
async function handshake(instances: Instance[], timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (const [from, to] of [[0, 1], [1, 0]] as const) {
    for (;;) {
      await instances[from]!.request({ cmd: 'probe' })
      await sleep(20)
      if ((await instances[to]!.request<number>({ cmd: 'received' })) > 0) break
      if (performance.now() > deadline) throw new Error(`bus handshake: instance ${to} received nothing from instance ${from} within ${timeoutMs} ms`)
    }
  }
}

/** Reads whose value was loaded before a delete of their key that completed at least staleAllowanceMs before the read was issued. */
function countStale(cfg: ReadThroughConfig, results: InstanceResult[], windowStart: number): { checked: number; stale: number } {
  const deletes = new Map<number, { start: number; end: number }[]>()
  for (const r of results) {
    for (let i = 0; i < r.deleteLog.length; i += 3) {
      const k = r.deleteLog[i]!
      let list = deletes.get(k)
      if (list === undefined) deletes.set(k, (list = []))
      list.push({ start: r.deleteLog[i + 1]!, end: r.deleteLog[i + 2]! })
    }
  }
  let checked = 0
  let stale = 0
  for (const r of results) {
    for (let i = 0; i < r.readLog.length; i += 3) {
      const issued = r.readLog[i + 1]!
      if (issued < windowStart) continue
      checked++
      const loadedAt = r.readLog[i + 2]!
      const list = deletes.get(r.readLog[i]!)
      if (list === undefined) continue
      if (list.some((d) => d.end + cfg.staleAllowanceMs <= issued && loadedAt < d.start)) stale++
    }
  }
  return { checked, stale }
}

async function runEngine(
  engine: ReadThroughEngine,
  cfg: ReadThroughConfig,
  schedules: Schedule[],
  url: string,
  names: RunNames,
  admin: Redis,
  log: (line: string) => void,
): Promise<EngineResult> {
  const t0 = performance.now()
  const out: EngineResult = {
    engine,
    reads: 0,
    deletes: 0,
    loaderCalls: 0,
    loaderCallsPer1k: undefined,
    overIdeal: undefined,
    readsPerSec: undefined,
    cpuMsPer1k: undefined,
    instances: [],
    wallMs: 0,
  }
  const instances = [new Instance(`${engine} instance 0`), new Instance(`${engine} instance 1`)]
  let phase = 'open'
  try {
    const opened = await Promise.all(instances.map((p, i) => p.request<OpenResult>({ cmd: 'open', engine, url, instance: i, names, cfg }, 20_000)))
    out.engineVersion = opened[0]!.engineVersion
    out.ioredisVersion = opened[0]!.ioredisVersion
    phase = 'pre-fill'
    const pre = await instances[0]!.request<PrefillResult>({ cmd: 'prefill' }, 30_000)
    out.prefillMs = pre.ms
    phase = 'bus handshake'
    await handshake(instances)

    phase = 'run'
    // A common start, so that the two schedules run side by side as the ideal assumes, at the
    // same distance from the pre-fill for both engines (see startAfterPrefillMs).
    const earliest = epochNow() + 100
    const startAt = Math.max(pre.startedAt + cfg.startAfterPrefillMs, earliest)
    if (startAt > pre.startedAt + cfg.startAfterPrefillMs) out.lateStartMs = startAt - (pre.startedAt + cfg.startAfterPrefillMs)
    const ideal = idealLoads(cfg, schedules, pre.startedAt - startAt)
    out.ideal = { ...ideal, loadsPer1k: ideal.reads === 0 ? 0 : (ideal.loads / ideal.reads) * 1000 }
    const runMs = cfg.warmupMs + cfg.measureMs
    const all = Promise.all(instances.map((p) => p.request<InstanceResult>({ cmd: 'run', startAt }, runMs + cfg.drainTimeoutMs + 15_000)))
    all.catch(() => {}) // awaited below; a rejection while we sleep must not count as unhandled
    await sleep(Math.max(0, startAt + cfg.warmupMs - epochNow()))
    const before = await infoSnapshot(admin)
    const results = await all
    out.redis = infoDiff(before, await infoSnapshot(admin))

    phase = 'results'
    const hist = createHistogram()
    const cachedHist = createHistogram()
    const loadedHist = createHistogram()
    const delHist = createHistogram()
    let cpuMs = 0
    let elapsedMs = 0
    const tiers: TierCounts = { l1Hits: 0, l2Hits: 0, misses: 0 }
    for (const r of results) {
      out.reads += r.reads
      out.deletes += r.deletes
      out.loaderCalls += r.loaderCalls
      for (const ns of r.cachedNs) {
        hist.record(Math.max(1, ns))
        cachedHist.record(Math.max(1, ns))
      }
      for (const ns of r.loadedNs) {
        hist.record(Math.max(1, ns))
        loadedHist.record(Math.max(1, ns))
      }
      for (const ns of r.deleteNs) delHist.record(Math.max(1, ns))
      cpuMs += r.cpuMs
      elapsedMs = Math.max(elapsedMs, r.elapsedMs)
      tiers.l1Hits += r.tiers.l1Hits
      tiers.l2Hits += r.tiers.l2Hits
      tiers.misses += r.tiers.misses
      const { cachedNs: _c, loadedNs: _l, deleteNs: _d, readLog: _rl, deleteLog: _dl, ...rest } = r
      out.instances.push(rest)
    }
    out.latency = summarize(hist)
    out.cachedLatency = summarize(cachedHist)
    out.loadedLatency = summarize(loadedHist)
    out.deleteLatency = summarize(delHist)
    out.tiers = tiers
    out.loaderCallsPer1k = out.reads === 0 ? undefined : (out.loaderCalls / out.reads) * 1000
    out.overIdeal = ideal.loads === 0 ? undefined : out.loaderCalls / ideal.loads
    out.readsPerSec = elapsedMs === 0 ? undefined : (out.reads / elapsedMs) * 1000
    out.cpuMsPer1k = out.reads === 0 ? undefined : (cpuMs / out.reads) * 1000
    out.stale = countStale(cfg, results, startAt + cfg.warmupMs)
    const failed = results.reduce((n, r) => n + r.errors + r.wrongValues + r.unanswered, 0)
    if (failed > 0) {
      const first = results.find((r) => r.firstError !== undefined)?.firstError
      out.error = `${failed} request(s) failed, answered wrongly or never answered${first === undefined ? '' : ` (first: ${first})`}`
    }
    log(
      `  ${engine.padEnd(10)} ${out.reads} reads, ${out.loaderCalls} loader calls (${out.loaderCallsPer1k?.toFixed(1) ?? '-'} per 1k, ideal ${out.ideal.loadsPer1k.toFixed(1)}), ` +
        `p50 ${fmtNs(out.latency.p50Ns)} p99 ${fmtNs(out.latency.p99Ns)}, ${fmtRate(out.readsPerSec)} reads`,
    )
  } catch (err) {
    out.error = `during ${phase}: ${describeError(err)}`
    out.errorDetail = err instanceof ChildError ? err.detail : errorDetail(err)
    log(`  ${engine}: FAILED: ${out.error}`)
  } finally {
    await Promise.all(instances.map((p) => p.close({ cmd: 'close' })))
    out.wallMs = performance.now() - t0
  }
  return out
}

// ── the section ────────────────────────────────────────────────────────────

export async function runReadThrough(cfg: ReadThroughConfig, log: (line: string) => void): Promise<ReadThroughSection> {
  const started = performance.now()
  const out: ReadThroughSection = { config: cfg, engines: [], wallMs: 0 }
  const redis = await resolveRedis()
  if (redis.target === undefined) {
    out.skipped = redis.skipped ?? 'no Redis available'
    log(`  skipped (${out.skipped})`)
    out.wallMs = performance.now() - started
    return out
  }
  const target = redis.target
  out.redis = target.owned ? 'private redis-server' : 'REDIS_URL'
  const run = `shardcache-bench:rt:${process.pid}-${Date.now()}`
  const namesOf = (engine: ReadThroughEngine): RunNames => ({
    keyPrefix: `${run}:${engine === 'shardcache' ? 'sc' : 'bc'}:`,
    channel: `${run}:sc:bus`,
    store: `${run.replace(/[^a-zA-Z0-9-]/g, '_')}_bc`,
  })
  let admin: Redis | undefined
  try {
    let schedules: Schedule[]
    try {
      admin = await connectRedis(target.url)
      const sampler = new ZipfSampler(cfg.keys, cfg.zipfS, cfg.seed)
      schedules = [buildSchedule(cfg, 0, sampler), buildSchedule(cfg, 1, sampler)]
    } catch (err) {
      out.error = describeError(err)
      out.errorDetail = errorDetail(err)
      log(`  FAILED: ${out.error}`)
      return out
    }
    for (const engine of READ_THROUGH_ENGINES) {
      const names = namesOf(engine)
      const r = await runEngine(engine, cfg, schedules, target.url, names, admin, log)
      out.engines.push(r)
      try {
        await cleanup(admin, target.owned, names.keyPrefix)
      } catch (err) {
        r.error ??= `cleanup of ${names.keyPrefix}* failed: ${describeError(err)}`
      }
    }
  } finally {
    admin?.disconnect()
    await target.stop()
    out.wallMs = performance.now() - started
  }
  return out
}

/** Errors of a completed section, one per failed engine, for the summary. */
export function readThroughErrors(s: ReadThroughSection): { engine: string; error?: string }[] {
  if (s.error !== undefined) return [{ engine: 'set-up', error: s.error }]
  return s.engines.map((r) => ({ engine: r.engine, error: r.error }))
}

// ── printing ───────────────────────────────────────────────────────────────

const per1k = (n: number | undefined, reads: number): string => (n === undefined || reads === 0 ? '-' : ((n / reads) * 1000).toFixed(1))

export function printReadThrough(s: ReadThroughSection): string {
  const c = s.config
  const out: string[] = [heading('1c. Read-through: 2 ms loader behind two instances sharing a Redis L2 and bus, shardcache vs bentocache')]
  if (skippedOrFailed(out, s)) return out.join('\n')
  const versions = s.engines
    .filter((r) => r.engineVersion !== undefined)
    .map((r) => `${r.engine} ${r.engineVersion} (ioredis ${r.ioredisVersion})`)
    .join(', ')
  out.push(
    `Redis: ${s.redis ?? '?'} on loopback. Per engine: 2 instances, one forked process each, L1 ${c.l1Entries.toLocaleString('en-US')} entries each, ` +
      `shared Redis L2 and bus. ${versions}.`,
    `${c.keys.toLocaleString('en-US')} keys, Zipf s=${c.zipfS}; ${c.ratePerInstance.toLocaleString('en-US')} requests/s arriving at each instance (open loop), ` +
      `${(c.deleteRatio * 100).toFixed(0)}% deletes; loader: ${c.loaderMs} ms, ${c.valueBytes}-byte string; TTL ${c.ttlMs} ms; ` +
      `L2 pre-filled with every key (expiries spread over one TTL), L1s empty; ${c.warmupMs} ms warm-up, then ${c.measureMs} ms measured. ` +
      'Same requests for both engines.',
  )
  const ok = s.engines.filter((r) => r.latency !== undefined)
  const per1kLoads = ok.map((r) => r.loaderCallsPer1k).filter((x): x is number => x !== undefined)
  const loadShare = per1kLoads.length === 0 ? undefined : Math.min(...per1kLoads) / 10
  out.push(
    table(
      [
        { header: 'engine', align: 'left' },
        { header: 'reads' },
        { header: 'loader calls' },
        { header: 'per 1k reads' },
        { header: 'ideal' },
        { header: 'vs ideal' },
        { header: 'p50' },
        { header: 'p99' },
        { header: 'p99.9' },
        { header: 'max' },
        { header: 'cached p99' },
        { header: 'loaded p50' },
        { header: 'reads/s' },
        { header: 'stale reads' },
      ],
      ok.map((r) => [
        r.engine,
        r.reads.toLocaleString('en-US'),
        r.loaderCalls.toLocaleString('en-US'),
        r.loaderCallsPer1k?.toFixed(1) ?? '-',
        r.ideal?.loadsPer1k.toFixed(1) ?? '-',
        r.overIdeal === undefined ? '-' : `${r.overIdeal.toFixed(2)}x`,
        fmtNs(r.latency?.p50Ns),
        fmtNs(r.latency?.p99Ns),
        fmtNs(r.latency?.p999Ns),
        fmtNs(r.latency?.maxNs),
        fmtNs(r.cachedLatency?.p99Ns),
        fmtNs(r.loadedLatency?.p50Ns),
        fmtRate(r.readsPerSec),
        r.stale === undefined ? '-' : `${r.stale.stale} of ${r.stale.checked.toLocaleString('en-US')}`,
      ]),
      [
        ...s.engines.filter((r) => r.error !== undefined).map((r) => `${r.engine}: FAILED: ${r.error}`),
        ...s.engines
          .filter((r) => r.lateStartMs !== undefined)
          .map((r) => `${r.engine}: pre-fill and handshake took ${(r.lateStartMs! / 1000).toFixed(2)} s longer than planned: its pre-filled expiries fall on other requests, hence its own ideal.`),
        'Both instances, measured window. Latency: a read (getOrCompute / getOrSet) from its issue to its answer, loader time included when it ran; ' +
          `one histogram over both instances${loadShare === undefined ? '' : `; with ${loadShare.toFixed(0)}% of reads loading, p99 is a load`}. ` +
          'cached p99: reads whose loader was not called (L1, L2, or a load already running in that process); ' +
          `loaded p50: reads whose own loader ran (the loader's ${c.loaderMs} ms timer plus the engine's work around it). ` +
          'reads/s: answered; the offered rate is fixed, so it only drops when an engine falls behind.',
        `ideal (per 1k reads): what a perfectly shared cache would load for the same requests and pre-filled expiries; loader calls above it are the same key loaded twice at once ` +
          `(by both instances: neither engine coordinates loads across processes). stale reads: reads of deleted keys issued more than ${c.staleAllowanceMs} ms ` +
          'after a delete completed, in either instance, that returned a value loaded before that delete started.',
        'How to read: loader calls per 1k reads is how often the slow source was hit (lower is better; the ideal is the least possible); ' +
          'p50/p99 the time a caller waits for a value (lower is better); stale reads should be 0.',
      ],
    ),
  )

  out.push('\nwhere the reads went, and what they cost (per 1k reads: both instances, measured window)')
  const cmd = (r: EngineResult, ...names: string[]): number | undefined =>
    r.redis === undefined ? undefined : names.reduce((a, n) => a + (r.redis!.calls[n] ?? 0), 0)
  out.push(
    table(
      [
        { header: 'engine', align: 'left' },
        { header: 'L1 hits' },
        { header: 'L2 hits' },
        { header: 'misses' },
        { header: 'bus msgs in' },
        { header: 'Redis GET' },
        { header: 'PTTL' },
        { header: 'SET' },
        { header: 'DEL' },
        { header: 'PUBLISH' },
        { header: 'all cmds' },
        { header: 'Redis CPU' },
        { header: 'engine CPU' },
        { header: 'delete p99' },
        { header: 'lag p99' },
        { header: 'pre-fill' },
      ],
      ok.map((r) => {
        const t = r.tiers!
        const seen = t.l1Hits + t.l2Hits + t.misses
        const busIn = r.instances.reduce((a, x) => a + x.busReceived, 0)
        const worstLag = Math.max(...r.instances.map((x) => x.lag.p99Ns))
        return [
          r.engine,
          seen === 0 ? '-' : fmtPct(t.l1Hits / seen),
          seen === 0 ? '-' : fmtPct(t.l2Hits / seen),
          seen === 0 ? '-' : fmtPct(t.misses / seen),
          per1k(busIn, r.reads),
          per1k(cmd(r, 'get'), r.reads),
          per1k(cmd(r, 'pttl'), r.reads),
          per1k(cmd(r, 'set', 'psetex', 'setex'), r.reads),
          per1k(cmd(r, 'del', 'unlink'), r.reads),
          per1k(cmd(r, 'publish'), r.reads),
          per1k(r.redis?.totalCalls, r.reads),
          r.redis === undefined ? '-' : `${per1k(r.redis.cpuMs, r.reads)} ms`,
          r.cpuMsPer1k === undefined ? '-' : `${r.cpuMsPer1k.toFixed(1)} ms`,
          fmtNs(r.deleteLatency?.p99Ns),
          fmtNs(worstLag),
          r.prefillMs === undefined ? '-' : `${(r.prefillMs / 1000).toFixed(2)} s`,
        ]
      }),
      [
        'L1 hits / L2 hits / misses: shares of the reads as each engine counts them (shardcache: stats().tiers; bentocache: its cache:hit (layer) and cache:miss events). ' +
          'A miss ran the loader, or (shardcache) joined this process\'s load of the key; bentocache counts a caller that waited for the key\'s lock and then found the value as an L1 hit.',
        'Redis columns: INFO commandstats and used_cpu over the window (both instances, bus included' +
          `${s.redis === 'REDIS_URL' ? '; REDIS_URL is shared, so other clients\' commands count too' : ''}). ` +
          'engine CPU: both processes (all their threads), user + system. delete p99: of the invalidations. lag p99: how late the driver issued requests against the schedule (worse instance). ' +
          'pre-fill: writing every key to L2 through a bus-less instance of the engine, before the two instances start serving.',
      ],
    ),
  )

  const sc = s.engines.find((r) => r.engine === 'shardcache')
  if (sc !== undefined && sc.instances.some((x) => x.shardcache !== undefined)) {
    out.push(
      '\nshardcache stats() over the window, per instance',
      table(
        [
          { header: 'instance', align: 'left' },
          { header: 'L1 hits' },
          { header: 'L1 misses' },
          { header: 'L2 hits' },
          { header: 'L2 misses' },
          { header: 'promotions' },
          { header: 'L2 errors' },
          { header: 'breaker' },
          { header: 'loader calls' },
          { header: 'bus pub/recv' },
          { header: 'flushes/gaps' },
        ],
        sc.instances.map((x) => {
          const t = x.shardcache!
          return [
            String(x.instance),
            t.l1.hits.toLocaleString('en-US'),
            t.l1.misses.toLocaleString('en-US'),
            t.l2.hits.toLocaleString('en-US'),
            t.l2.misses.toLocaleString('en-US'),
            t.l2.promotions.toLocaleString('en-US'),
            String(t.l2.errors + t.l2.skipped + t.l2.corrupt),
            t.l2.breaker,
            x.loaderCalls.toLocaleString('en-US'),
            `${t.bus.published}/${t.bus.received}`,
            `${t.bus.flushes}/${t.bus.gaps}`,
          ]
        }),
        ['L2 errors: errors + skipped (breaker open) + corrupt. These are the cache\'s own counters; reads + deletes per instance are in the JSON.'],
      ),
    )
  }

  const a = s.engines.find((r) => r.engine === 'shardcache')
  const b = s.engines.find((r) => r.engine === 'bentocache')
  out.push(
    '',
    `summary: loader calls per 1,000 reads: shardcache ${a?.loaderCallsPer1k?.toFixed(1) ?? '-'}, bentocache ${b?.loaderCallsPer1k?.toFixed(1) ?? '-'} ` +
      `(ideal ${a?.ideal?.loadsPer1k.toFixed(1) ?? '-'} / ${b?.ideal?.loadsPer1k.toFixed(1) ?? '-'}); read p99: shardcache ${fmtNs(a?.latency?.p99Ns)}, bentocache ${fmtNs(b?.latency?.p99Ns)} ` +
      `(p50 ${fmtNs(a?.latency?.p50Ns)} vs ${fmtNs(b?.latency?.p50Ns)}); lower is better for both`,
    `section wall time: ${(s.wallMs / 1000).toFixed(1)} s (${s.engines.map((r) => `${r.engine} ${(r.wallMs / 1000).toFixed(1)} s`).join(', ')})`,
  )
  return out.join('\n')
}
