/**
 * What the read-through section's parent and its child processes
 * (read_through_child.ts) share: the run's configuration, the request
 * sequence each instance replays (computed the same way on both sides, from
 * the same seed), and the messages between them.
 */
import { Redis } from 'ioredis'
import { mulberry32, ZipfSampler } from '../src/cli/workload.js'
import type { LatencySummary } from './report.js'

export interface ReadThroughConfig {
  /** Distinct keys requested. */
  keys: number
  /** L1 entries per instance (shardcache region maxEntries, bentocache memory maxItems). */
  l1Entries: number
  zipfS: number
  /** Length of a loaded value (a string). */
  valueBytes: number
  /** How long the loader waits before it returns: the source's latency. */
  loaderMs: number
  /** TTL of every loaded entry, L1 and L2 alike. */
  ttlMs: number
  /** Requests per second arriving at each instance. */
  ratePerInstance: number
  /** Share of requests that are deletes (invalidations after a write to the source). */
  deleteRatio: number
  /** Requests before the measured window: fill L1 and L2, let the JIT settle. */
  warmupMs: number
  measureMs: number
  /** Shard threads of each shardcache instance. */
  shards: number
  /**
   * A read issued this long after a delete of its key completed (in either
   * instance) must not return a value loaded before that delete started;
   * generous against bus propagation (~1 ms on loopback), so what it counts
   * is an old value that stuck, not one still on its way out.
   */
  staleAllowanceMs: number
  /** Concurrent sets while pre-filling L2. */
  prefillConcurrency: number
  /**
   * The run starts this long after the pre-fill started, for both engines, so
   * the pre-filled expiries fall on the same requests and both get the same
   * ideal. Covers pre-fill (~0.5 s) and bus handshake; when they take longer
   * (a busy machine), the run starts 100 ms after them and the ideals differ.
   */
  startAfterPrefillMs: number
  /** Longest wait for the requests still in flight when the last one was issued. */
  drainTimeoutMs: number
  seed: number
}

export const DEFAULT_READ_THROUGH: ReadThroughConfig = {
  keys: 20_000,
  // A tenth of the keys: about two reads in three hit L1, one in four L2, one in ten loads
  // (Zipf s=0.99, the TTL below, entries dropped by deletes and by the peer's loads).
  l1Entries: 2_000,
  zipfS: 0.99,
  valueBytes: 220,
  loaderMs: 2,
  // Half the pre-filled entries expire during the run, hot keys reload about once per TTL
  // (see the top of the file).
  ttlMs: 10_000,
  // 4,000 requests/s in all: a busy service's cache, well inside what either engine serves on
  // 2 cores next to Redis, so the figures are per-request costs, not saturation.
  ratePerInstance: 2_000,
  deleteRatio: 0.01,
  warmupMs: 1_500,
  // ~10,000 measured reads: p99 is then the ~100th worst sample.
  measureMs: 2_500,
  // One shard: two instances, Redis and the harness already share 2 cores.
  shards: 1,
  staleAllowanceMs: 50,
  prefillConcurrency: 256,
  startAfterPrefillMs: 1_200,
  drainTimeoutMs: 5_000,
  seed: 42,
}

export type ReadThroughEngine = 'shardcache' | 'bentocache'
export const READ_THROUGH_ENGINES: ReadThroughEngine[] = ['shardcache', 'bentocache']

/** Names of one engine's Redis keys and channels: unique per run, so a shared REDIS_URL never mixes runs. */
export interface RunNames {
  /** Every Redis key the engine writes starts with this (cleanup matches on it). */
  keyPrefix: string
  /** shardcache's bus channel; bentocache's is derived from its store name. */
  channel: string
  /** bentocache store name (its bus channel is `bentocache.notifications:<store>`). */
  store: string
}

// ── the request sequence ───────────────────────────────────────────────────

/** What one instance is asked, request by request: request i is due at startAt + i / rate. */
export interface Schedule {
  keyIdx: Uint32Array
  /** 1: delete, 0: read. */
  isDelete: Uint8Array
}

/** Requests per instance over the whole run (warm-up included), and how many of them are warm-up. */
export function requestCounts(cfg: ReadThroughConfig): { total: number; warmup: number } {
  const warmup = Math.round((cfg.ratePerInstance * cfg.warmupMs) / 1000)
  return { total: warmup + Math.round((cfg.ratePerInstance * cfg.measureMs) / 1000), warmup }
}

/**
 * Instance `instance`'s requests. The popularity order (which keys are hot)
 * is the same for both instances; the draws are their own. Deterministic, so
 * both engines get the same requests and the parent can compute the ideal.
 */
export function buildSchedule(cfg: ReadThroughConfig, instance: number, sampler = new ZipfSampler(cfg.keys, cfg.zipfS, cfg.seed)): Schedule {
  const { total } = requestCounts(cfg)
  const keyRnd = mulberry32(cfg.seed + 1 + instance * 1000)
  const opRnd = mulberry32(cfg.seed + 7 + instance * 1000)
  const keyIdx = new Uint32Array(total)
  const isDelete = new Uint8Array(total)
  for (let i = 0; i < total; i++) {
    keyIdx[i] = sampler.item(keyRnd())
    isDelete[i] = opRnd() < cfg.deleteRatio ? 1 : 0
  }
  return { keyIdx, isDelete }
}

/** Keys that either instance deletes at some point: only their reads can be stale, so only they are logged. */
export function deletedKeys(schedules: Schedule[]): Set<number> {
  const out = new Set<number>()
  for (const s of schedules) for (let i = 0; i < s.keyIdx.length; i++) if (s.isDelete[i] === 1) out.add(s.keyIdx[i]!)
  return out
}

/**
 * When each pre-filled key expires, as a fraction of the TTL after the
 * pre-fill started: spread evenly, as in a tier written to continuously.
 * Never below 2%, so that no entry is written already expired.
 */
export function prefillExpiryFractions(cfg: ReadThroughConfig): Float64Array {
  const rnd = mulberry32(cfg.seed + 13)
  return Float64Array.from({ length: cfg.keys }, () => 0.02 + 0.98 * rnd())
}

/**
 * Loader calls a perfectly shared cache would make in the measured window:
 * the two sequences merged in time order (both instances run the same
 * schedule clock), one load when a read finds its key expired (its pre-filled
 * expiry, or TTL after its last load) or deleted since. Unbounded L2, so L1
 * size plays no part. `prefillOffsetMs`: when the pre-fill started, relative
 * to the schedule's start (negative).
 */
export function idealLoads(cfg: ReadThroughConfig, schedules: Schedule[], prefillOffsetMs: number): { reads: number; loads: number } {
  const { total, warmup } = requestCounts(cfg)
  const fractions = prefillExpiryFractions(cfg)
  // Expressed as "loaded at": a key expires ttlMs after it.
  const loadedAt = Float64Array.from(fractions, (f) => prefillOffsetMs + f * cfg.ttlMs - cfg.ttlMs)
  const periodMs = 1000 / cfg.ratePerInstance
  let reads = 0
  let loads = 0
  for (let i = 0; i < total; i++) {
    const t = i * periodMs
    const measured = i >= warmup
    for (const s of schedules) {
      const k = s.keyIdx[i]!
      if (s.isDelete[i] === 1) {
        loadedAt[k] = Number.NEGATIVE_INFINITY
        continue
      }
      if (measured) reads++
      if (t - loadedAt[k]! >= cfg.ttlMs) {
        loadedAt[k] = t
        if (measured) loads++
      }
    }
  }
  return { reads, loads }
}

// ── the child processes ────────────────────────────────────────────────────

/** Requests a child answers (read_through_child.ts). */
export type RtRequest =
  | { id: number; cmd: 'open'; engine: ReadThroughEngine; url: string; instance: number; names: RunNames; cfg: ReadThroughConfig }
  | { id: number; cmd: 'prefill' }
  | { id: number; cmd: 'probe' }
  | { id: number; cmd: 'received' }
  | { id: number; cmd: 'run'; startAt: number }
  | { id: number; cmd: 'close' }


/** What 'open' answers. */
export interface OpenResult {
  pid: number
  engineVersion: string
  ioredisVersion: string
}

/** What 'prefill' answers. */
export interface PrefillResult {
  /** Epoch ms the pre-fill started at: key k expires at startedAt + fraction[k] x ttlMs. */
  startedAt: number
  ms: number
}

/** Tier counters over the measured window, in the same terms for both engines. */
export interface TierCounts {
  /** Reads answered by this instance's L1. */
  l1Hits: number
  /** Reads that missed L1 and found the key in L2. */
  l2Hits: number
  /** Reads that ran the loader or waited for a load already running in this process. */
  misses: number
}

/** shardcache's own figures over the window: `stats().tiers` and `stats().bus` differences. */
export interface ShardcacheStatsDiff {
  l1: { hits: number; misses: number }
  l2: { hits: number; misses: number; errors: number; promotions: number; corrupt: number; skipped: number; breaker: string }
  bus: { published: number; received: number; dropped: number; flushes: number; gaps: number; reconnects: number }
}

/** One instance's run. Latencies are raw samples (ns) so the parent can merge both instances into one histogram. */
export interface InstanceResult {
  instance: number
  pid: number
  /** Measured window only, from here on unless said otherwise. */
  reads: number
  deletes: number
  /** Loader calls made for measured reads (each loader closure belongs to one request). */
  loaderCalls: number
  /** Over the whole run, warm-up included. */
  loaderCallsTotal: number
  /** Rejected requests; the first one's message below. */
  errors: number
  firstError?: string
  /** Reads that resolved to another key's value, or to something that is not a loaded value. */
  wrongValues: number
  /** From the first measured request issued to the last one answered. */
  elapsedMs: number
  /** Read latency, issue to answer, ns: reads whose loader was not called (L1, L2, or a load already running here). */
  cachedNs: number[]
  /** The same for reads whose own loader ran. */
  loadedNs: number[]
  deleteNs: number[]
  /** How late each measured request was issued against its schedule, ns: the driver keeping up. */
  lag: LatencySummary
  /** Whole process (main thread, shard threads, GC), user + system, over the window. */
  cpuMs: number
  /** Bus messages from the peer applied here over the window. */
  busReceived: number
  tiers: TierCounts
  shardcache?: ShardcacheStatsDiff
  /** Requests still unanswered after drainTimeoutMs. */
  unanswered: number
  /**
   * Reads of keys that some instance deletes, as [keyIdx, issued at (epoch ms),
   * value loaded at (epoch ms)] triples, warm-up included; deletes as
   * [keyIdx, started at, answered at]. The parent checks them for stale reads.
   */
  readLog: number[]
  deleteLog: number[]
}
