/**
 * The types a region slice's store shares with the rest of shardcache: its
 * configuration and stats as the shard and the router see them, and the
 * shapes of what it returns. Re-exported by workers/region_store.ts, which is
 * where src/ imports them from.
 */
import type { EntryInfo } from '../src/protocol.js'
import type { DictionaryShardStats } from './compression.js'
import type { EvictionPolicy } from './policy/policy.js'

export type { EvictionPolicy } from './policy/policy.js'

/** A region's configuration as one shard sees it (budgets are this shard's share). */
export interface RegionShardConfig {
  name: string
  policy: EvictionPolicy
  /** This shard's byte budget; `Infinity` when the region has none. */
  maxBytes: number
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
  maxBytes: number | null
  maxEntries: number | null
  /** Stale values served within their grace period (getOrCompute `grace`). */
  staleServed: number
  /** Only for a region with `compressDictionary`. */
  dictionary?: DictionaryShardStats
}

/** One entry as a snapshot holds it (see {@link RegionStore.exportPage}). */
export interface ExportedEntry {
  key: string
  tag: number
  /** `bytes` is an LZ4 frame of `rawSize` bytes. */
  compressed: boolean
  rawSize: number
  bytes: Uint8Array
  /** Absolute expiry on the shards' clock (epoch ms), Infinity without one. */
  expiresAt: number
  /** For a getOrCompute grace entry: when it stops being fresh. */
  freshUntil: number | undefined
  metadata: Uint8Array | undefined
  tags: string[] | undefined
}

/** What {@link RegionStore.entry} reports about a live entry. */
export interface StoredEntry extends EntryInfo {
  tag: number
  value: Uint8Array
  metadata: Uint8Array | undefined
}

/** See {@link RegionStore.versionsOf}. */
export interface SlotVersions {
  slot: number
  seq: number
  regionSeq: number
  epoch: number
  expiresAt: number
}
