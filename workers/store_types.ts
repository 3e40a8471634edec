/**
 * Shapes the region store returns to the shard (workers/shard.ts) and that no
 * other thread sees. The ones the calling thread shares (configuration, stats,
 * exported entries) are in src/wire/region_types.ts and src/wire/records.ts.
 */
import type { EntryInfo } from '../src/wire/protocol.js'

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
