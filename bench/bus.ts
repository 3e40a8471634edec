/**
 * The invalidation bus over a local Redis: how fast a write in one process
 * reaches a peer process, and what publishing costs the write path.
 *
 * Two processes, as in production: this one publishes, a forked peer
 * (bus_child.ts) subscribes with a cache of its own. Two measurements:
 * - propagation: a steady trickle of sets, each its own message, and the
 *   receiver's own latency histogram (publisher's send stamp to receipt),
 *   plus an end-to-end figure the peer measures (see bus_child.ts), and,
 *   interleaved with them, plain ioredis messages between the same two
 *   processes: the transport's floor on this machine at that moment, without
 *   which a slow figure on a shared machine cannot be told from a slow bus;
 * - write path: pipelined sets, as in the throughput section, against caches
 *   with no bus, with the bus in invalidate mode and in update mode, all in
 *   this process in one run, while the peer is subscribed so every message is
 *   really fanned out and applied.
 */
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { createCache } from '../src/index.js'
import type { BusStats, Cache } from '../src/index.js'
import { ASYNC_SAMPLE_EVERY, buildWorkload, pipelinedAsync, VALUE_VARIANTS } from './throughput_loops.js'
import type { Workload } from './throughput_loops.js'
import type { AsyncKv } from './throughput_engines.js'
import { connectRedis, resolveRedis } from '../tools/redis_server.js'
import { ChildError, sleep } from './child.js'
import { PeerProcess } from './peer_process.js'
import { describeError, errorDetail, fmtMs, fmtNs, fmtRate, fmtRatio, heading, skippedOrFailed, ratio, table } from './report.js'
import type { LatencySummary } from './report.js'

export interface BusBenchConfig {
  /** Shards of each publishing cache in this process. */
  shards: number
  /**
   * Shards of each receiving cache in the peer. One: what a receiver does per
   * message does not depend on it, and on a 2-core machine every extra thread
   * only takes CPU from the publisher being measured.
   */
  peerShards: number
  /**
   * Propagation: one send every this many ms (a timer; it runs late on a busy
   * machine), alternating a set (one bus message) and a raw pub/sub message.
   */
  latencyPeriodMs: number
  latencyWarmupMs: number
  latencyMs: number
  /** Write path: keys, value size and Zipf skew as in the throughput section. */
  keys: number
  valueBytes: number
  zipfS: number
  /** Async loops keeping sets in flight. */
  concurrency: number
  /** Once per variant, before the first measured run. */
  writeWarmupMs: number
  /** One measured run of each variant per round; the order reverses every round. */
  rounds: number
  writeMs: number
  /** Longest wait for a publisher's backlog to reach the peer after a run. */
  drainTimeoutMs: number
  seed: number
}

export const DEFAULT_BUS: BusBenchConfig = {
  shards: 2,
  peerShards: 1,
  // A 1 ms timer fires every ~1.4 ms on a busy 2-core machine: ~350 bus messages/s plus as
  // many raw ones. A busy service's write rate, and two orders of magnitude under what Redis
  // pub/sub carries on loopback, so every message finds the path idle and the figure is
  // propagation, not queueing (the write runs below show the loaded case).
  latencyPeriodMs: 1,
  latencyWarmupMs: 400,
  // ~800 sets and as many raw messages here: p99 is then the ~8th worst sample of each.
  latencyMs: 2500,
  keys: 100_000,
  valueBytes: 220,
  zipfS: 0.99,
  concurrency: 512,
  writeWarmupMs: 300,
  // Short runs in ABC CBA ABC CBA order: a drift in machine load (this machine is shared)
  // hits every variant about equally instead of whichever happened to run last.
  rounds: 4,
  writeMs: 500,
  drainTimeoutMs: 3000,
  seed: 42,
}

export type BusVariantName = 'bus off' | 'bus on, invalidate' | 'bus on, update'

interface Variant {
  name: BusVariantName
  mode: 'invalidate' | 'update' | undefined
}

const VARIANTS: Variant[] = [
  { name: 'bus off', mode: undefined },
  { name: 'bus on, invalidate', mode: 'invalidate' },
  { name: 'bus on, update', mode: 'update' },
]

// ── the peer process ───────────────────────────────────────────────────────

/** Requests the peer answers (bus_child.ts). */
export type PeerRequest =
  | { id: number; cmd: 'open'; url: string; channels: string[]; rawChannel: string; shards: number; maxBytes: number; latencyPrefix: string }
  | { id: number; cmd: 'reset'; channel: string }
  | { id: number; cmd: 'stats'; channel: string }
  | { id: number; cmd: 'close' }


/** What the peer reports for one channel since its last reset. */
export interface PeerStats {
  bus: BusStats
  /** Invalidation events emitted (one per op applied). */
  events: number
  /** End to end, in ns: the publisher's set() call to the peer's read that sees it applied. Latency-phase keys only. */
  e2e: LatencySummary | undefined
  /** Plain ioredis pub/sub between the same two processes, in ns: the transport's floor on this machine. */
  raw: LatencySummary | undefined
}

type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never
type PeerCommand = Distribute<PeerRequest>

const PEER_SCRIPT = fileURLToPath(new URL('./bus_child.js', import.meta.url))
/** The forked peer (bench/bus_child.ts). */
class Peer extends PeerProcess<PeerCommand> {
  constructor() {
    super(PEER_SCRIPT, 'peer')
  }

  stats(channel: string): Promise<PeerStats> {
    return this.request<PeerStats>({ cmd: 'stats', channel })
  }
}

// ── results ────────────────────────────────────────────────────────────────

export interface PropagationResult {
  /** Sets issued in the measured window (one message each). */
  sets: number
  /** Raw pub/sub messages sent in the same window, interleaved with the sets. */
  rawSent: number
  elapsedMs: number
  messagesPerSec: number
  /** The publisher's bus counters over the window. */
  published: number
  /** The receiver's `stats().bus` after the window: latency is its histogram. */
  peer: PeerStats
}

/** One measured run of one variant. */
export interface WriteRun {
  round: number
  sets: number
  elapsedMs: number
  setsPerSec: number
  /** Set latency as the caller saw it, 1 set in 16 timed (includes queueing behind the other loops). */
  latency: LatencySummary
  /** Bus on only: the publisher's counters for the window. */
  bus?: {
    published: number
    /** Messages not yet acknowledged by Redis when the window closed. */
    queuedAtEnd: number
    dropped: number
    /** How long the backlog took to reach the peer after the window. */
    drainMs: number
    /** False when the drain timed out (drainTimeoutMs). */
    drained: boolean
  }
  /** Bus on only: the peer's view of the same run, latency under load included. */
  peer?: PeerStats
}

export interface WriteVariantResult {
  variant: BusVariantName
  mode: 'invalidate' | 'update' | undefined
  prefillMs?: number
  runs: WriteRun[]
  /** Over all rounds: total sets / total time. */
  setsPerSec?: number
  /** Over the "bus off" variant's setsPerSec. */
  vsOff?: number
  error?: string
  errorDetail?: string
}

export interface BusSection {
  config: BusBenchConfig
  /** Where Redis came from; the URL is not kept (it may carry a password). */
  redis?: 'REDIS_URL' | 'private redis-server'
  skipped?: string
  /** The peer process (or its subscriptions) failed: nothing could be measured. */
  error?: string
  errorDetail?: string
  propagation?: PropagationResult
  propagationError?: string
  propagationErrorDetail?: string
  write: WriteVariantResult[]
  headline: {
    propagationP50Ms: number | undefined
    propagationP99Ms: number | undefined
    e2eP99Ms: number | undefined
    rawP99Ms: number | undefined
    invalidateOverOff: number | undefined
    updateOverOff: number | undefined
  }
  wallMs: number
  /** Where the wall time went, for keeping `npm run bench` under 3 minutes. */
  phasesMs: Partial<Record<'setup' | 'propagation' | 'prefillAndWarmup' | 'rounds' | 'teardown', number>>
}

// ── workload ───────────────────────────────────────────────────────────────

/** One set in this many is timed (the throughput section's driver does the timing). */
const SAMPLE_EVERY = ASYNC_SAMPLE_EVERY
const PREFILL_CHUNK = 5_000
/** Latency-phase keys: the peer recognises them by this prefix and reads the timestamp at their end. */
const LATENCY_PREFIX = 'bench:bus:lat:'

const epochNow = (): number => performance.timeOrigin + performance.now()
const nsToMs = (ns: number | undefined): number | undefined => (ns === undefined ? undefined : ns / 1e6)

/** Per workload, an op ring of sets only, for the throughput section's driver. */
const allSets = new WeakMap<Workload, Uint8Array>()

/**
 * Sets only, `concurrency` async loops, for `ms`: the throughput section's
 * pipelined driver and workload (same keys, values and Zipf ring), so its set
 * rates compare with these.
 */
async function pipelinedSets(cache: Cache, w: Workload, ms: number, concurrency: number): Promise<{ sets: number; elapsedMs: number; latency: LatencySummary }> {
  let ops = allSets.get(w)
  if (ops === undefined) allSets.set(w, (ops = new Uint8Array(w.keyRing.length).fill(1)))
  const kv: AsyncKv = {
    kind: 'async',
    name: 'bus',
    get: (key) => cache.get(key),
    set: (key, value) => cache.set(key, value),
    prefill: async () => {},
    close: async () => {},
  }
  const r = await pipelinedAsync(kv, w, ops, ms, concurrency)
  return { sets: r.ops, elapsedMs: r.elapsedMs, latency: r.latency }
}

async function prefill(cache: Cache, w: Workload): Promise<void> {
  for (let i = 0; i < w.keys.length; i += PREFILL_CHUNK) {
    const chunk: [string, string][] = []
    for (let j = i; j < Math.min(w.keys.length, i + PREFILL_CHUNK); j++) chunk.push([w.keys[j]!, w.values[j & (VALUE_VARIANTS - 1)]!])
    await cache.mset(chunk)
  }
}

async function busStats(cache: Cache): Promise<BusStats> {
  const b = (await cache.stats()).bus
  if (b === undefined) throw new Error('cache has no bus stats')
  return b
}

/**
 * Waits until everything the publisher sent since the last reset has reached
 * the peer, so that one run's backlog never spends CPU in the next run's
 * window. Resolves how long that took and whether it finished in time.
 */
async function drain(cache: Cache, peer: Peer, channel: string, timeoutMs: number): Promise<{ drainMs: number; drained: boolean }> {
  const t0 = performance.now()
  for (;;) {
    const own = await busStats(cache)
    if (own.queued === 0) {
      const p = await peer.stats(channel)
      if (p.bus.received + p.bus.dropped.total >= own.published) return { drainMs: performance.now() - t0, drained: true }
    }
    if (performance.now() - t0 > timeoutMs) return { drainMs: performance.now() - t0, drained: false }
    await sleep(5)
  }
}

/** Zeroes both ends' counters (the publisher's shard stats too: harmless, nothing reads them here). */
async function resetBoth(cache: Cache, peer: Peer, channel: string): Promise<void> {
  await cache.resetStats()
  await peer.request({ cmd: 'reset', channel })
}

/** Size of a raw message: about a one-key bus message (40-byte header, region, one key). */
const RAW_MESSAGE_BYTES = 64

/**
 * One send every `periodMs`, each awaited and then a timer, alternating a
 * set on the bus cache and a raw publish: every set is a tick of its own, so
 * every bus message carries one key, and the two kinds see the same machine.
 * The pace slips rather than catches up when the loop runs late, so a stall
 * never turns into a burst.
 */
async function trickle(cache: Cache, raw: Redis, rawChannel: string, ms: number, periodMs: number, value: string): Promise<{ sets: number; rawSent: number }> {
  const end = performance.now() + ms
  const buf = Buffer.alloc(RAW_MESSAGE_BYTES)
  let sets = 0
  let rawSent = 0
  for (let n = 0; performance.now() < end; n++) {
    if (n % 2 === 0) {
      await cache.set(`${LATENCY_PREFIX}${sets++}:${epochNow().toFixed(3)}`, value)
    } else {
      buf.writeDoubleLE(epochNow(), 0)
      await raw.publish(rawChannel, buf)
      rawSent++
    }
    await sleep(periodMs)
  }
  return { sets, rawSent }
}


// ── the section ────────────────────────────────────────────────────────────

export async function runBus(cfg: BusBenchConfig, log: (line: string) => void): Promise<BusSection> {
  const started = performance.now()
  const out: BusSection = {
    config: cfg,
    write: [],
    headline: { propagationP50Ms: undefined, propagationP99Ms: undefined, e2eP99Ms: undefined, rawP99Ms: undefined, invalidateOverOff: undefined, updateOverOff: undefined },
    wallMs: 0,
    phasesMs: {},
  }
  let phaseStart = started
  const phase = (name: keyof BusSection['phasesMs']): void => {
    const t = performance.now()
    out.phasesMs[name] = t - phaseStart
    phaseStart = t
  }
  const redis = await resolveRedis()
  if (redis.target === undefined) {
    out.skipped = redis.skipped ?? 'no Redis available'
    log(`  skipped (${out.skipped})`)
    out.wallMs = performance.now() - started
    return out
  }
  out.redis = redis.target.owned ? 'private redis-server' : 'REDIS_URL'
  const url = redis.target.url
  // Per-run channel names: on a shared REDIS_URL, another run (or service) must not be a peer.
  const channelOf = (mode: 'invalidate' | 'update' | 'raw'): string => `shardcache-bench:${process.pid}:${Date.now()}:${mode}`
  const channels = { invalidate: channelOf('invalidate'), update: channelOf('update'), raw: channelOf('raw') }
  // Sized so nothing is evicted, as in the throughput section.
  const maxBytes = Math.max(64 * 2 ** 20, cfg.keys * (cfg.valueBytes + 128) * 2)
  const w = buildWorkload(cfg)
  const caches = new Map<BusVariantName, Cache>()
  let peer: Peer | undefined
  let raw: Redis | undefined
  try {
    try {
      peer = new Peer()
      await peer.request({ cmd: 'open', url, channels: [channels.invalidate, channels.update], rawChannel: channels.raw, shards: cfg.peerShards, maxBytes, latencyPrefix: LATENCY_PREFIX }, 20_000)
    } catch (err) {
      // Every measurement needs the peer: report why, not a table of identical failures.
      out.error = describeError(err)
      out.errorDetail = err instanceof ChildError ? err.detail : errorDetail(err)
      log(`  FAILED: ${out.error}`)
      return out
    }

    // Every variant's cache exists for the whole section, so the rounds can alternate
    // between them; separate channels keep the idle bus cache from being the busy one's peer.
    for (const v of VARIANTS) {
      const result: WriteVariantResult = { variant: v.name, mode: v.mode, runs: [] }
      out.write.push(result)
      try {
        caches.set(
          v.name,
          await createCache({
            shards: cfg.shards,
            regions: { default: { maxBytes } },
            bus: v.mode === undefined ? undefined : { redis: url, channel: channels[v.mode], mode: v.mode },
          }),
        )
      } catch (err) {
        result.error = `during create: ${describeError(err)}`
        result.errorDetail = errorDetail(err)
        log(`  ${v.name}: FAILED: ${result.error}`)
      }
    }

    phase('setup')

    // ── propagation ──
    const pub = caches.get('bus on, invalidate')
    if (pub === undefined) {
      out.propagationError = 'the invalidate-mode cache failed to start (see its row)'
    } else {
      try {
        const ch = channels.invalidate
        raw = await connectRedis(url)
        await trickle(pub, raw, channels.raw, cfg.latencyWarmupMs, cfg.latencyPeriodMs, w.values[0]!)
        await drain(pub, peer, ch, cfg.drainTimeoutMs)
        await resetBoth(pub, peer, ch)
        const t0 = performance.now()
        const { sets, rawSent } = await trickle(pub, raw, channels.raw, cfg.latencyMs, cfg.latencyPeriodMs, w.values[0]!)
        const elapsedMs = performance.now() - t0
        // The end-to-end reads resolve after receipt: a short pause lets the last ones land.
        await drain(pub, peer, ch, cfg.drainTimeoutMs)
        await sleep(20)
        const published = (await busStats(pub)).published
        const peerStats = await peer.stats(ch)
        out.propagation = { sets, rawSent, elapsedMs, messagesPerSec: (published / elapsedMs) * 1000, published, peer: peerStats }
        const l = peerStats.bus.latency
        log(
          `  propagation: ${sets} sets at ~${((sets / elapsedMs) * 1000).toFixed(0)}/s; receiver latency p50 ${fmtMs(l.p50Ms ?? undefined)} p99 ${fmtMs(l.p99Ms ?? undefined)} ` +
            `max ${fmtMs(l.maxMs ?? undefined)}; raw pub/sub p99 ${fmtMs(nsToMs(peerStats.raw?.p99Ns))}`,
        )
      } catch (err) {
        out.propagationError = describeError(err)
        out.propagationErrorDetail = errorDetail(err)
        log(`  propagation: FAILED: ${out.propagationError}`)
      }
    }

    phase('propagation')

    // ── write path ──
    const live = (): WriteVariantResult[] => out.write.filter((r) => r.error === undefined)
    const fail = (r: WriteVariantResult, phase: string, err: unknown): void => {
      r.error = `during ${phase}: ${describeError(err)}`
      r.errorDetail = errorDetail(err)
      log(`  ${r.variant}: FAILED: ${r.error}`)
    }
    for (const r of live()) {
      const cache = caches.get(r.variant)!
      try {
        const t0 = performance.now()
        await prefill(cache, w)
        r.prefillMs = performance.now() - t0
        await pipelinedSets(cache, w, cfg.writeWarmupMs, cfg.concurrency)
        if (r.mode !== undefined) {
          // Both the pre-fill and the warm-up published: let that reach the peer before anything is measured.
          const d = await drain(cache, peer, channels[r.mode], cfg.drainTimeoutMs * 3)
          if (!d.drained) log(`  ${r.variant}: pre-fill backlog still draining after ${(d.drainMs / 1000).toFixed(1)} s`)
        }
      } catch (err) {
        fail(r, 'pre-fill and warm-up', err)
      }
    }
    phase('prefillAndWarmup')
    for (let round = 0; round < cfg.rounds; round++) {
      const order = round % 2 === 0 ? live() : live().reverse()
      for (const r of order) {
        const cache = caches.get(r.variant)!
        try {
          if (r.mode !== undefined) await resetBoth(cache, peer, channels[r.mode])
          const run = await pipelinedSets(cache, w, cfg.writeMs, cfg.concurrency)
          const wr: WriteRun = { round, sets: run.sets, elapsedMs: run.elapsedMs, setsPerSec: (run.sets / run.elapsedMs) * 1000, latency: run.latency }
          if (r.mode !== undefined) {
            const queuedAtEnd = (await busStats(cache)).queued
            const d = await drain(cache, peer, channels[r.mode], cfg.drainTimeoutMs)
            const b = await busStats(cache)
            wr.bus = { published: b.published, queuedAtEnd, dropped: b.dropped.total, drainMs: d.drainMs, drained: d.drained }
            wr.peer = await peer.stats(channels[r.mode])
          }
          r.runs.push(wr)
          log(
            `  ${r.variant.padEnd(20)} round ${round + 1}: ${fmtRate(wr.setsPerSec).padStart(9)} sets` +
              (wr.bus === undefined ? '' : `, ${wr.bus.published} messages, backlog ${wr.bus.queuedAtEnd} at the end, drained in ${fmtMs(wr.bus.drainMs)}${wr.bus.drained ? '' : ' (NOT drained)'}`),
          )
        } catch (err) {
          fail(r, `round ${round + 1}`, err)
        }
      }
    }
    phase('rounds')
  } finally {
    phaseStart = performance.now()
    raw?.disconnect()
    for (const c of caches.values()) await c.close().catch(() => {})
    await peer?.close({ cmd: 'close' })
    await redis.target.stop()
    phase('teardown')
    out.wallMs = performance.now() - started
  }

  for (const r of out.write) {
    const sets = r.runs.reduce((a, x) => a + x.sets, 0)
    const ms = r.runs.reduce((a, x) => a + x.elapsedMs, 0)
    r.setsPerSec = ms === 0 ? undefined : (sets / ms) * 1000
  }
  const rate = (v: BusVariantName): number | undefined => out.write.find((r) => r.variant === v)?.setsPerSec
  for (const r of out.write) r.vsOff = r.mode === undefined ? undefined : ratio(r.setsPerSec, rate('bus off'))
  const p = out.propagation
  out.headline = {
    propagationP50Ms: p?.peer.bus.latency.p50Ms ?? undefined,
    propagationP99Ms: p?.peer.bus.latency.p99Ms ?? undefined,
    e2eP99Ms: nsToMs(p?.peer.e2e?.p99Ns),
    rawP99Ms: nsToMs(p?.peer.raw?.p99Ns),
    invalidateOverOff: ratio(rate('bus on, invalidate'), rate('bus off')),
    updateOverOff: ratio(rate('bus on, update'), rate('bus off')),
  }
  out.wallMs = performance.now() - started
  return out
}

/** Errors of a completed section, one per failed part, for the summary. */
export function busErrors(s: BusSection): { engine: string; error?: string }[] {
  if (s.error !== undefined) return [{ engine: 'peer process', error: s.error }]
  return [
    { engine: 'propagation', error: s.propagationError },
    ...s.write.map((r) => ({ engine: r.variant, error: r.error })),
  ]
}

// ── printing ───────────────────────────────────────────────────────────────

const fmtOptMs = (ms: number | null | undefined): string => fmtMs(ms ?? undefined)

export function printBus(s: BusSection): string {
  const c = s.config
  const out: string[] = [heading('1b. Invalidation bus: propagation between two processes, cost on the write path')]
  if (skippedOrFailed(out, s)) return out.join('\n')
  out.push(
    `Redis: ${s.redis ?? '?'} on loopback. Publisher: this process, ${c.shards}-shard caches; receiver: a forked process, ${c.peerShards}-shard caches, subscribed throughout.`,
  )

  const p = s.propagation
  out.push(
    `\npropagation: a ${c.latencyPeriodMs} ms timer alternating one set (one key per message) and one raw pub/sub message, for ${c.latencyMs} ms after a ${c.latencyWarmupMs} ms warm-up`,
  )
  if (p === undefined) {
    out.push(`FAILED: ${s.propagationError ?? 'unknown error'}`)
  } else {
    const l = p.peer.bus.latency
    const e = p.peer.e2e
    out.push(
      table(
        [{ header: 'measure', align: 'left' }, { header: 'count' }, { header: 'p50' }, { header: 'p99' }, { header: 'max' }],
        [
          ['bus latency (receiver stats().bus.latency)', String(l.count), fmtOptMs(l.p50Ms), fmtOptMs(l.p99Ms), fmtOptMs(l.maxMs)],
          ['end to end (set() call -> peer read sees it)', String(e?.count ?? 0), fmtMs(nsToMs(e?.p50Ns)), fmtMs(nsToMs(e?.p99Ns)), fmtMs(nsToMs(e?.maxNs))],
          ['raw ioredis pub/sub, same processes (floor)', String(p.peer.raw?.count ?? 0), fmtMs(nsToMs(p.peer.raw?.p50Ns)), fmtMs(nsToMs(p.peer.raw?.p99Ns)), fmtMs(nsToMs(p.peer.raw?.maxNs))],
        ],
        [
          `${p.sets} sets and ${p.rawSent} raw messages in ${(p.elapsedMs / 1000).toFixed(2)} s (${p.messagesPerSec.toFixed(0)} bus messages/s published; receiver got ${p.peer.bus.received}, ` +
            `dropped ${p.peer.bus.dropped.total}, gaps ${p.peer.bus.gaps}, flushes ${p.peer.bus.flushes}; heartbeat RTT ${fmtOptMs(p.peer.bus.lastHeartbeatMs)})`,
          'bus latency: the publisher\'s send stamp (taken as the message is handed to ioredis) to receipt and decode in the peer, before its shards apply it.',
          'end to end adds the publisher\'s tick batching (setImmediate) before the stamp, and the peer\'s apply plus one shard round trip (a get issued from the invalidation listener).',
          `raw: ${RAW_MESSAGE_BYTES}-byte messages on a channel of their own, stamped and timed the same way, no shardcache at either end: the transport's floor on this machine; ` +
            'when the bus p99 is close to it, the loopback and scheduler set the tail, not the bus.',
          'How to read: time from a write in one process to the peer knowing of it; lower is better.',
        ],
      ),
    )
  }

  out.push(
    `\nwrite path: pipelined sets only, ${c.concurrency} async loops, ${c.keys.toLocaleString('en-US')} pre-filled keys, ${c.valueBytes}-byte strings, Zipf s=${c.zipfS}; ` +
      `${c.writeWarmupMs} ms warm-up per cache, then ${c.rounds} round(s) of ${c.writeMs} ms per variant (order reversed every round); 1 set in ${SAMPLE_EVERY} timed.`,
  )
  const rows = s.write.filter((r) => r.runs.length > 0).map((r) => {
    const runs = r.runs
    const sum = (f: (x: WriteRun) => number | undefined): number => runs.reduce((a, x) => a + (f(x) ?? 0), 0)
    const published = sum((x) => x.bus?.published)
    const p50s = runs.map((x) => x.latency.p50Ns).sort((a, b) => a - b)
    const worstP99 = Math.max(...runs.map((x) => x.latency.p99Ns))
    const peerP99 = r.mode === undefined ? undefined : Math.max(...runs.map((x) => x.peer?.bus.latency.p99Ms ?? 0))
    const maxBacklog = r.mode === undefined ? undefined : Math.max(...runs.map((x) => x.bus?.queuedAtEnd ?? 0))
    const maxDrain = r.mode === undefined ? undefined : Math.max(...runs.map((x) => x.bus?.drainMs ?? 0))
    return [
      r.variant,
      fmtRate(r.setsPerSec),
      runs.length === 1 ? fmtRate(runs[0]!.setsPerSec) : `${fmtRate(Math.min(...runs.map((x) => x.setsPerSec)))} - ${fmtRate(Math.max(...runs.map((x) => x.setsPerSec)))}`,
      r.mode === undefined ? '-' : fmtRatio(r.vsOff),
      fmtNs(p50s[Math.floor((p50s.length - 1) / 2)]),
      fmtNs(worstP99),
      r.mode === undefined ? '-' : published.toLocaleString('en-US'),
      r.mode === undefined || published === 0 ? '-' : (sum((x) => x.sets) / published).toFixed(0),
      r.mode === undefined ? '-' : String(maxBacklog),
      r.mode === undefined ? '-' : fmtMs(maxDrain) + (runs.every((x) => x.bus?.drained !== false) ? '' : ' (timed out)'),
      r.mode === undefined ? '-' : sum((x) => x.bus?.dropped).toLocaleString('en-US'),
      r.mode === undefined ? '-' : fmtMs(peerP99),
      r.mode === undefined ? '-' : `${sum((x) => x.peer?.bus.gaps)}/${sum((x) => x.peer?.bus.flushes)}`,
    ]
  })
  const notes = s.write.filter((r) => r.error !== undefined).map((r) => `${r.variant}: FAILED: ${r.error}`)
  out.push(
    table(
      [
        { header: 'variant', align: 'left' },
        { header: 'sets/s' },
        { header: 'runs min - max' },
        { header: 'vs off' },
        { header: 'p50' },
        { header: 'p99' },
        { header: 'messages' },
        { header: 'sets/msg' },
        { header: 'backlog' },
        { header: 'drain' },
        { header: 'dropped' },
        { header: 'peer p99' },
        { header: 'gaps/flushes' },
      ],
      rows,
      [
        ...notes,
        'p50: of the median run; p99: of the worst run. messages: published by this process in the measured windows; backlog: not yet acknowledged by Redis when a window closed (worst round); ' +
          'drain: until the peer had received all of it (worst round); peer p99: the receiver\'s bus latency under this load (queueing included).',
          'How to read: sets/s is what one process writes with the bus on, against the same cache with it off ("vs off": 1x would be free; higher is better).',
        `Redis and the peer share this machine's cores with the publisher, so the ratios include their CPU too: on separate hosts the cost would be lower.`,
      ],
    ),
  )
  const h = s.headline
  out.push(
    `section wall time: ${(s.wallMs / 1000).toFixed(1)} s (` +
      Object.entries(s.phasesMs).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`).join(', ') + ')',
    '',
    `summary: bus propagation p99 between two processes = ${fmtMs(h.propagationP99Ms)} against ${fmtMs(h.rawP99Ms)} for raw ioredis pub/sub between the same processes ` +
      `(p50 ${fmtMs(h.propagationP50Ms)}; end to end p99 ${fmtMs(h.e2eP99Ms)}); lower is better`,
    `summary: pipelined sets, bus on / bus off = ${fmtRatio(h.invalidateOverOff)} in invalidate mode (the default), ${fmtRatio(h.updateOverOff)} in update mode; higher is better, 1x = no cost`,
  )
  return out.join('\n')
}
