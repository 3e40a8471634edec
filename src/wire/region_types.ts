/**
 * The shapes both sides of a shard agree on: a region's configuration as one
 * shard holds it, the counters it reports, what the router hands a new shard
 * thread and what the shard's control API answers. Types plus the two small
 * functions both sides compute the same way (the slots a region reserves, the
 * stats of a share that holds nothing), here so that neither the shard
 * (workers/) nor the router (src/client/) imports the other.
 */
import type { MessagePort } from 'node:worker_threads'
import { ENTRY_OVERHEAD_BYTES } from './protocol.js'
import { slotLimit } from './shared_region.js'
import type { AccessLogMemory, RegionMemory } from './shared_region.js'
import type { DictionaryShardStats } from './compression.js'

/**
 * The eviction policies a region may use (`RegionOptions.policy`), each in its
 * own file in workers/policy/. One list here, read by option validation, the
 * CLI's `replay --policy all` and the bench, so a new policy is named once.
 */
export const EVICTION_POLICIES = ['lru', 'fifo', 'sieve', 's3fifo', 'tinylfu'] as const
export type EvictionPolicy = (typeof EVICTION_POLICIES)[number]

/**
 * Whether a policy's order depends on hits: every policy but FIFO does, so a
 * hit served on another thread (a direct read from shared memory, a sampled
 * near-cache hit) is logged for the shard to replay (`RegionStore.touch`).
 */
export function policyLearnsFromHits(policy: EvictionPolicy): boolean {
  return policy !== 'fifo'
}

/** A region's configuration as one shard sees it (budgets are this shard's share). */
export interface RegionShardConfig {
  name: string
  policy: EvictionPolicy
  /** This shard's byte budget; `Infinity` when the region has none. A rebalance between shards changes it. */
  maxBytes: number
  /** The largest byte budget a rebalance may give this shard (slots are reserved for it); `maxBytes` when absent. */
  maxBytesCeiling?: number
  /** This shard's entry budget; `Infinity` when the region has none. */
  maxEntries: number
  /** TTL in ms applied when a set gives none; `Infinity` for none. */
  defaultTtl: number
  /** Values of at least this many bytes are LZ4-compressed; `Infinity` disables compression. */
  compressMinBytes: number
  /**
   * Compress with a dictionary built from sampled values of the region
   * ({@link DictionaryCompressor}); needs a finite `compressMinBytes`.
   * @default false
   */
  compressDictionary?: boolean
}

/** Counters and gauges of one region in one shard. Plain JSON. */
export interface RegionShardStats {
  hits: number
  misses: number
  sets: number
  deletes: number
  evictionsSize: number
  evictionsExpired: number
  corrupt: number
  entries: number
  compressedEntries: number
  usedBytes: number
  rawBytes: number
  storedBytes: number
  /** Bytes of the value arena in use (it grows, and never shrinks). */
  arenaBytes: number
  /** Of those, bytes in freed chunks (not the unused end of each size class's page, which its next values take). */
  arenaFreeBytes: number
  maxBytes: number | null
  maxEntries: number | null
  /** Stale values served within their grace period (getOrCompute `grace`). */
  staleServed: number
  /** Only for a region with `compressDictionary`. */
  dictionary?: DictionaryShardStats
}

/** Slots a region slice with this configuration can ever use (what its shared memory reserves). */
export function slotsFor(config: RegionShardConfig): number {
  return slotLimit(config.maxEntries, Math.max(config.maxBytes, config.maxBytesCeiling ?? 0), ENTRY_OVERHEAD_BYTES)
}

/** What the router passes to each shard thread. */
export interface ShardInit {
  shard: number
  /** The event kinds to report from the start (a restarted shard keeps its owner's listeners). */
  eventMask?: number
  regions: RegionShardConfig[]
  /** Each region's shared memory (src/wire/shared_region.ts), reserved by the router. */
  memory: RegionMemory[]
  /** The owner's log of its direct reads (attached threads bring their own). */
  log: AccessLogMemory
  control: MessagePort
  /** Int32 signals shared with the router, indexed by {@link Signal}. */
  signals: SharedArrayBuffer
  /** Frames from the router, when the message is a length (see src/wire/protocol.ts). */
  requests: SharedArrayBuffer
  /** Replies to frames that came through {@link requests}. */
  replies: SharedArrayBuffer
  /** Int32 [0]: shards spinning now, shared by every shard of the cache. */
  spinners: SharedArrayBuffer
  /** At most this many shards may spin at once (cores minus the calling thread's). */
  spinSlots: number
  /** How long to stay awake for the next frame after answering one, in µs; 0 sleeps at once. */
  idleSpinMicros: number
}

/** The control-plane API a shard exposes over comlink. */
export interface ShardControl {
  stats(): { shard: number; regions: RegionShardStats[]; attachedThreads: number }
  resetStats(): void
  /** This thread's heap (and the process's RSS), after a full GC first when `gc` and the process runs with --expose-gc. For soak tests. */
  memory(gc: boolean): ShardMemory
  /** Sets a region's byte budget in this shard (a rebalance); resolves how many entries that evicted. */
  setMaxBytes(region: number, maxBytes: number): number
  /** Copies a region's live entries into a new value arena (see workers/region_slots.ts `compact`); what it did and how long the shard paused. */
  compact(region: number): CompactResult
}

/** What a compaction did in one shard (`cache.compact()`, `maintenance.compact`). */
export interface CompactResult {
  shard: number
  region: number
  /** The arena's extent before and after. */
  beforeBytes: number
  afterBytes: number
  /** Bytes of the old arena that held no live entry. */
  freeBefore: number
  /** How long the shard did nothing else. */
  pauseMs: number
}

/** What {@link ShardControl.memory} reports. Heap figures are this thread's isolate; `rss` is the whole process's. */
export interface ShardMemory {
  shard: number
  heapUsed: number
  heapTotal: number
  external: number
  arrayBuffers: number
  rss: number
  /** Whether a full GC ran first. */
  collected: boolean
}

/** The stats of a region share that holds nothing (a shard that is down). */
export function emptyRegionStats(config: RegionShardConfig): RegionShardStats {
  return {
    hits: 0,
    misses: 0,
    staleServed: 0,
    sets: 0,
    deletes: 0,
    evictionsSize: 0,
    evictionsExpired: 0,
    corrupt: 0,
    entries: 0,
    compressedEntries: 0,
    usedBytes: 0,
    rawBytes: 0,
    storedBytes: 0,
    arenaBytes: 0,
    arenaFreeBytes: 0,
    maxBytes: Number.isFinite(config.maxBytes) ? config.maxBytes : null,
    maxEntries: Number.isFinite(config.maxEntries) ? config.maxEntries : null,
    ...(config.compressDictionary === true && Number.isFinite(config.compressMinBytes) ? { dictionary: emptyDictionaryStats() } : {}),
  }
}

/** The dictionary counters of a shard that has built none. */
export function emptyDictionaryStats(): DictionaryShardStats {
  return {
    version: 0,
    builds: 0,
    dictionaries: 0,
    dictionaryBytes: 0,
    measuredRawBytes: 0,
    measuredPlainBytes: 0,
    measuredDictionaryBytes: 0,
  }
}
