/**
 * shardcache: an in-process cache for Node.js whose keyspace is sharded across
 * worker threads. See README.md for the guide; every export here has TSDoc.
 *
 * @packageDocumentation
 * @module shardcache
 */
// No top-level `await` in this file or anything it imports statically (nor in
// src/keyv.ts's graph): CommonJS users load this ES module with `require()`
// (Node 20.19+), which refuses a graph with one (ERR_REQUIRE_ASYNC_MODULE).
// Optional parts load later with `import()`, which may. test/install.test.ts
// require()s the packed package.
export { createCache, attachCache, Cache, CacheRegion } from './cache.js'
export { loadConfig } from './config.js'
export { Batch } from './batch.js'
export { registerMetrics } from './metrics.js'
export { SnapshotCorruptError } from './snapshot.js'
export type { SnapshotProgress } from './snapshot.js'
export type { MetricFamily, MetricRegistry, StatsSource, Labels } from './metrics.js'
export type { BatchResult } from './batch.js'
export type { CacheHandle, AttachOptions, HandleOptions } from './attach.js'
export type { CacheEntry, MsetEntries } from './cache.js'
export type { ResolvedRegion } from './options.js'
export type { CacheOptions, RegionOptions, SetOptions, ComputeOptions, LoaderOptions, Codec, Ttl, Size, ShardResourceLimits } from './options.js'
export type { Loader, PoolTask, ScanOptions, EntryEvent, EntryEventName } from './cache.js'
export type { CacheStats, CounterStats, DictionaryStats } from './stats.js'
export type { BusStats, BusRedis, ClusterNodesConfig, FlushReason, InvalidationEvent, FlushEvent } from './bus.js'
export { BusOpType } from './bus_message.js'
export type { BusOp, BusEntry, DropReason } from './bus_message.js'
export type { BusOptions, L2Options } from './options.js'
export type { L2Stats } from './l2.js'
export {
  CacheError,
  ErrorCodes,
  InvalidKeyError,
  InvalidValueError,
  ValueTooLargeError,
  InvalidTtlError,
  UnknownRegionError,
  InvalidOptionError,
  ClosedError,
  ShardCrashedError,
  ShardStartError,
  BusConnectError,
  LoaderError,
  LoadTimeoutError,
  LoadAbortedError,
  L2Error,
  RedisAuthError,
  RedisTlsError,
  RedisPermissionError,
  NotANumberError,
  InternalError,
} from './errors.js'
export type { ErrorCode } from './errors.js'
