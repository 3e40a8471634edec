/**
 * shardcache: an in-process cache for Node.js whose keyspace is sharded across
 * worker threads. See README.md for the guide; every export here has TSDoc.
 *
 * @packageDocumentation
 * @module shardcache
 */
// No top-level `await` in this file or anything it imports statically (nor in
// src/adapters/keyv.ts's graph): CommonJS users load this ES module with `require()`
// (Node 20.19+), which refuses a graph with one (ERR_REQUIRE_ASYNC_MODULE).
// Optional parts load later with `import()`, which may. test/project/install.test.ts
// require()s the packed package.
export { createCache, attachCache } from './api/create.js'
export { Cache } from './api/cache.js'
export { CacheRegion } from './api/region.js'
export { loadConfig } from './options/config.js'
export { Batch } from './api/batch.js'
export { registerMetrics } from './ops/metrics.js'
export { SnapshotCorruptError } from './ops/snapshot.js'
export type { SnapshotProgress } from './ops/snapshot.js'
export type { BackupEvent, BackupResult, BackupStats } from './ops/backup.js'
export type { BackupOptions } from './options/backup.js'
export type { AlertEvent, AlertKind } from './ops/alerts.js'
export type { AlertOptions } from './options/alerts.js'
export type { MaintenanceOptions } from './options/maintenance.js'
export type { MaintenanceStats, RebalanceMove } from './ops/maintenance.js'
export type { CompactResult } from './wire/region_types.js'
export type { AdminServer, AdminStatus } from './ops/admin_server.js'
export type { TracingOptions } from './options/tracing.js'
export type { AdminOptions } from './options/admin.js'
export type { MetricFamily, MetricRegistry, StatsSource, Labels } from './ops/metrics.js'
export type { BatchResult } from './api/batch.js'
export type { CacheHandle, AttachOptions, HandleOptions } from './client/attach.js'
export type { CacheEntry, MsetEntries } from './api/region.js'
export type { ResolvedRegion } from './options/regions.js'
export type { CacheOptions, ShardResourceLimits } from './options/cache.js'
export type { RegionOptions } from './options/regions.js'
export { EVICTION_POLICIES } from './wire/region_types.js'
export type { EvictionPolicy } from './wire/region_types.js'
export type { SetOptions, ComputeOptions, LoaderOptions } from './options/operations.js'
export type { Ttl, Size } from './options/parse.js'
export type { Codec } from './wire/values.js'
export type { Loader, PoolTask } from './api/core.js'
export type { ScanOptions } from './api/region.js'
export type { EntryEvent, EntryEventName } from './api/cache.js'
export type { CacheStats, CounterStats, DictionaryStats, WriteThroughStats } from './ops/stats.js'
export type { BusStats, BusRedis, ClusterNodesConfig, FlushReason, InvalidationEvent, FlushEvent } from './redis/bus.js'
export { BusOpType } from './redis/bus_message.js'
export type { BusOp, BusEntry, DropReason } from './redis/bus_message.js'
export type { BusOptions } from './options/bus.js'
export type { L2Options } from './options/l2.js'
export type { L2Stats } from './redis/l2.js'
export type { Tier, TierEntry, TierHit } from './tiers/tier.js'
export { redisTier } from './adapters/redis_tier.js'
export type { RedisTierOptions } from './adapters/redis_tier.js'
export type { TierStats } from './tiers/member.js'
export type { TierOptions } from './options/tiers.js'
export type { WriteThroughOptions, WriteStore, WriteInfo } from './options/write_through.js'
export type { WriteErrorEvent } from './backing/write_through.js'
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
  WriteThroughError,
  WriteQueueFullError,
  UnsupportedError,
  InternalError,
} from './errors.js'
export type { ErrorCode } from './errors.js'
