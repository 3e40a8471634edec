/**
 * Stats: each shard reports raw counters per region over its control port;
 * this module sums them per shard, per region and in total, and derives the
 * ratios. Everything is plain JSON (no Maps, no Infinity: a missing budget is `null`).
 */
import type { RegionShardStats } from '../wire/region_types.js'
import type { DictionaryShardStats } from '../wire/compression.js'
import type { BusStats } from '../redis/bus.js'
import type { L2Stats } from '../redis/l2.js'
import type { TierStats } from '../tiers/member.js'
import type { BackupStats } from './backup.js'
import type { MaintenanceStats } from './maintenance.js'
import { emptyDictionaryStats } from '../wire/region_types.js'

/**
 * Dictionary compression of a part of the cache (regions with
 * `compression: { dictionary: true }` only).
 */
export interface DictionaryStats {
  /**
   * The newest dictionary version in the part: each shard numbers the
   * dictionaries of its slice of a region from 1; 0 before the first build.
   */
  version: number
  /** Dictionaries built (first builds and rebuilds), summed over shards. */
  builds: number
  /** Dictionaries held: current ones and older ones that live entries still use. */
  dictionaries: number
  /** Their bytes (not charged against `maxBytes`). */
  bytes: number
  /**
   * `raw / stored` with the dictionary, on the values measured both ways
   * (one compressed write in 16 since each shard's current dictionary was
   * built); 1 before any was measured.
   */
  ratio: number
  /**
   * `raw / stored` plain LZ4 gives the same values (the frame format, kept
   * only when smaller: what the region would store without a dictionary); 1
   * before any was measured.
   */
  plainRatio: number
}

/** Counters and gauges of a part of the cache (a region, a shard, or all of it). */
export interface CounterStats {
  /** Reads (`get`, `mget`, `getEntry`) that found a live entry. */
  hits: number
  /** Reads that found nothing, an expired entry, or a corrupt one (a stale grace entry is a miss for `get`). */
  misses: number
  /** `getOrCompute` reads answered with a stale value within its `grace` period (while it refreshed). */
  staleServed: number
  /** Writes that stored a value. */
  sets: number
  /** Entries removed by `delete`, `mdelete`, `deleteByPattern` or `clear`. */
  deletes: number
  /** Entries removed by the cache itself: `evictionsByCause.size + evictionsByCause.expired`. */
  evictions: number
  evictionsByCause: {
    /** Evicted to keep the region within `maxBytes` / `maxEntries`. */
    size: number
    /** Removed because their TTL passed. */
    expired: number
  }
  /** Compressed values that failed their checksum when read: each was dropped and read as a miss. */
  corrupt: number
  /** Live entries (expired ones not yet swept included). */
  entries: number
  /** Entries whose value is stored LZ4-compressed. */
  compressedEntries: number
  /** Bytes charged against `maxBytes`: keys + stored values + metadata + tags (UTF-8 bytes + 128 each) + 64 per entry. */
  usedBytes: number
  /** Value bytes before compression. */
  rawBytes: number
  /** Value bytes as stored (after compression). */
  storedBytes: number
  /**
   * Bytes of the shards' value arenas in use: each grows as values come and
   * never shrinks (a SharedArrayBuffer cannot), so after a churn that
   * changed the values' sizes it can hold far more than the live entries.
   */
  arenaBytes: number
  /** Of {@link arenaBytes}, bytes in freed chunks, waiting for values of their size (the unused end of each size's current page, which its next values take, is not counted): what `compact()` gives back. */
  arenaFreeBytes: number
  /** Byte budget, `null` when unbounded. */
  maxBytes: number | null
  /** Entry budget, `null` when unbounded. */
  maxEntries: number | null
  /** `hits / (hits + misses)`, 0 before any read. */
  hitRate: number
  /** `usedBytes / maxBytes` (or `entries / maxEntries` without a byte budget), 0 when unbounded. */
  utilization: number
  /** `rawBytes / storedBytes`: 2 means values take half their size; 1 when nothing is stored. */
  compressionRatio: number
  /** Present when the part has a region with dictionary compression. */
  dictionary?: DictionaryStats
}

/** What `cache.stats()` returns. */
export interface CacheStats extends CounterStats {
  /** Number of shard threads. */
  shards: number
  /** Shard threads that died and were restarted (empty) since the cache was created. */
  shardRestarts: number
  /** Other threads attached with `attachCache` and still connected. */
  attachedThreads: number
  /** Shards that kept crashing before answering and are no longer restarted (their figures are zeros). */
  shardsDown: number[]
  /** Per shard, all regions summed, in shard order. */
  byShard: (CounterStats & { shard: number })[]
  /** Per region, all shards summed. */
  byRegion: Record<string, CounterStats>
  /** The invalidation bus's figures, when the cache has a bus. */
  bus?: BusStats
  /**
   * Round trips of the owner thread's frames to its shards (an op that is
   * not answered from shared memory rides in one): cumulative counts per
   * upper bound in seconds (the last one is +Inf), their sum and count.
   */
  frameLatency?: { bounds: number[]; cumulative: number[]; sum: number; count: number }
  /** Per tier, when the cache has an L2 tier: the shards' reads, and L2's. */
  tiers?: { l1: { hits: number; misses: number }; l2: L2Stats | TierStats; [level: `l${number}`]: L2Stats | TierStats | { hits: number; misses: number } }
  /** The backups' figures, when the cache has `backup` (owner's view). */
  backup?: BackupStats
  /** Scheduled maintenance's figures (owner's view), with `maintenance`. */
  maintenance?: MaintenanceStats
  /** Each write-through region's figures, by region name, when a region has `writeThrough`. */
  writeThrough?: Record<string, WriteThroughStats>
}

const DICTIONARY_ADDED = [
  'builds', 'dictionaries', 'dictionaryBytes', 'measuredRawBytes', 'measuredPlainBytes', 'measuredDictionaryBytes',
] as const

/** Sums of shard reports have the shape of one report. */
type Sum = RegionShardStats

const ADDED = [
  'hits', 'misses', 'staleServed', 'sets', 'deletes', 'evictionsSize', 'evictionsExpired', 'corrupt',
  'entries', 'compressedEntries', 'usedBytes', 'rawBytes', 'storedBytes', 'arenaBytes', 'arenaFreeBytes',
] as const

function sum(parts: RegionShardStats[]): Sum {
  const s: Sum = {
    hits: 0, misses: 0, staleServed: 0, sets: 0, deletes: 0, evictionsSize: 0, evictionsExpired: 0, corrupt: 0,
    entries: 0, compressedEntries: 0, usedBytes: 0, rawBytes: 0, storedBytes: 0, arenaBytes: 0, arenaFreeBytes: 0, maxBytes: 0, maxEntries: 0,
  }
  for (const p of parts) {
    for (const k of ADDED) s[k] += p[k]
    // One unbounded part makes the sum unbounded.
    s.maxBytes = s.maxBytes === null || p.maxBytes === null ? null : s.maxBytes + p.maxBytes
    s.maxEntries = s.maxEntries === null || p.maxEntries === null ? null : s.maxEntries + p.maxEntries
    if (p.dictionary !== undefined) {
      const d = (s.dictionary ??= emptyDictionaryStats())
      for (const k of DICTIONARY_ADDED) d[k] += p.dictionary[k]
      d.version = Math.max(d.version, p.dictionary.version)
    }
  }
  return s
}

function deriveDictionary(d: DictionaryShardStats): DictionaryStats {
  return {
    version: d.version,
    builds: d.builds,
    dictionaries: d.dictionaries,
    bytes: d.dictionaryBytes,
    ratio: d.measuredDictionaryBytes === 0 ? 1 : d.measuredRawBytes / d.measuredDictionaryBytes,
    plainRatio: d.measuredPlainBytes === 0 ? 1 : d.measuredRawBytes / d.measuredPlainBytes,
  }
}

function derive(s: Sum): CounterStats {
  const reads = s.hits + s.misses
  const utilization =
    s.maxBytes !== null && s.maxBytes > 0
      ? s.usedBytes / s.maxBytes
      : s.maxEntries !== null && s.maxEntries > 0
        ? s.entries / s.maxEntries
        : 0
  return {
    hits: s.hits,
    misses: s.misses,
    staleServed: s.staleServed,
    sets: s.sets,
    deletes: s.deletes,
    evictions: s.evictionsSize + s.evictionsExpired,
    evictionsByCause: { size: s.evictionsSize, expired: s.evictionsExpired },
    corrupt: s.corrupt,
    entries: s.entries,
    compressedEntries: s.compressedEntries,
    usedBytes: s.usedBytes,
    rawBytes: s.rawBytes,
    storedBytes: s.storedBytes,
    arenaBytes: s.arenaBytes,
    arenaFreeBytes: s.arenaFreeBytes,
    maxBytes: s.maxBytes,
    maxEntries: s.maxEntries,
    hitRate: reads === 0 ? 0 : s.hits / reads,
    utilization,
    compressionRatio: s.storedBytes === 0 ? 1 : s.rawBytes / s.storedBytes,
    ...(s.dictionary !== undefined ? { dictionary: deriveDictionary(s.dictionary) } : {}),
  }
}

/** Aggregates per-shard, per-region reports (`reports[shard][region]`) into {@link CacheStats}. */
export function aggregateStats(
  regionNames: string[],
  reports: RegionShardStats[][],
  shardRestarts: number,
  shardsDown: number[],
): Omit<CacheStats, 'attachedThreads'> {
  const all = reports.flat()
  return {
    ...derive(sum(all)),
    shards: reports.length,
    shardRestarts,
    shardsDown,
    byShard: reports.map((regions, shard) => ({ shard, ...derive(sum(regions)) })),
    // fromEntries defines own properties, so a region named "__proto__" is an ordinary key.
    byRegion: Object.fromEntries(regionNames.map((name, r) => [name, derive(sum(reports.map((regions) => regions[r]!)))])),
  }
}

/** `stats().writeThrough[region]`. */
export interface WriteThroughStats {
  mode: 'sync' | 'async'
  /** Store writes confirmed. */
  writes: number
  /** Store deletes confirmed. */
  deletes: number
  /** Store calls that failed or timed out (each retry that fails counts again). */
  failures: number
  /** `async`: calls made again after a failure. */
  retries: number
  /** `async`: writes given up after their last attempt (each reported as a `'writeError'` event). */
  dropped: number
  /** `async`: queued writes replaced by a newer write of the same key before the store saw them. */
  coalesced: number
  /** `async`: store calls waiting, running or due for a retry (a gauge, at most `maxQueue`). */
  queued: number
}
