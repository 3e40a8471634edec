/**
 * The defaults and bounds of the options, in one table: the validation fills
 * them in, and the command line (`--shards`), the shard threads (their heap
 * limits) and tests read the same values instead of stating them twice.
 */
export const DEFAULTS = {
  maxKeyBytes: 4096,
  maxValueBytes: 16 * 2 ** 20,
  regionMaxBytes: 64 * 2 ** 20,
  /**
   * The eviction policy of a region that names none (and of `shardcache
   * replay` without `--policy`): chosen from the hit-ratio table in
   * docs/policies.md, where it is never more than half a point below LRU on
   * any shipped trace and size, and up to 40 points above.
   */
  policy: 'tinylfu',
  compressMinBytes: 1024,
  /**
   * With a dictionary, small values compress too: below ~32 bytes the 4-byte
   * checksum and LZ4's literal overhead leave little to gain.
   */
  dictionaryCompressMinBytes: 32,
  nearCacheEntries: 10_000,
  idleSpinMicros: 50,
  replySpinMicros: 20,
  /** One region index is one byte in a frame. */
  maxRegions: 256,
  maxShards: 256,
  busChannel: 'shardcache',
  busMaxMessageBytes: 64 * 1024,
  busMinMessageBytes: 8 * 1024,
  busHeartbeatMs: 1000,
  busMaxQueue: 10_000,
  busConnectTimeoutMs: 5000,
  busStreamMaxLen: 10_000,
  busMaxMessageAgeMs: 30_000,
  /**
   * Young-generation cap of a shard thread's heap. A shard keeps its entries in
   * shared buffers, so its heap holds only per-frame garbage; left to V8's
   * default, each shard's young generation grew to ~27 MB under a bulk load and
   * stayed there. Loading 1M records into 2 shards (bench/memory, dictionary
   * row): process RSS 388 MB by default, 330 MB at 4 MB, and at 2 MB 8 MB less
   * again; 1 MB gained nothing more. Load time did not change: a scavenge of a
   * heap that holds almost nothing live is cheap.
   */
  shardYoungGenerationMb: 2,
} as const
