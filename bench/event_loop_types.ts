/**
 * What the event-loop parent sends to each child process and what it gets back.
 * Separate from both so that neither entry point imports the other's side effects.
 */

export type EventLoopEngine = 'no cache' | 'lru-cache' | 'shardcache'

export interface EventLoopConfig {
  engine: EventLoopEngine
  /** Entries pre-filled, and the size of the Zipf id space requests draw from. */
  entries: number
  zipfS: number
  /** Open-loop request arrivals per second. */
  requestsPerSec: number
  /** Brand-new keys set per second, each one forcing an eviction in a full cache. */
  churnPerSec: number
  /** Shard threads (shardcache only). */
  shards: number
  /** Entries per mset when pre-filling shardcache. */
  prefillChunk: number
  warmupMs: number
  durationMs: number
  seed: number
}

export interface GcSummary {
  count: number
  /** Scavenges of the young generation. */
  minor: number
  /** Mark-compact finalisations (the atomic pause of a full collection). */
  major: number
  /** Incremental-marking steps and weak-callback processing. */
  other: number
  totalMs: number
  maxMs: number
  maxMajorMs: number
  maxMinorMs: number
}

export interface EventLoopResult {
  engine: EventLoopEngine
  config: EventLoopConfig
  prefillMs: number
  /** Main-thread event-loop delay over the measured window (monitorEventLoopDelay, resolution 1 ms). */
  delay: { p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number; meanMs: number; samples: number }
  /** Time from a request's scheduled arrival to its response, so stalls count against every request they delay. */
  requestLatency: { p50Ms: number; p99Ms: number; maxMs: number }
  requests: { issued: number; completed: number; hits: number; misses: number; maxInFlight: number; churnSets: number }
  /** Main-thread GC pauses in the measured window. */
  gc: GcSummary
  memory: { heapUsedBytes: number; rssBytes: number; externalBytes: number }
  /** shardcache only: its own view after the run (sanity). */
  cacheStats?: { hitRate: number; entries: number; evictions: number; sets: number; shards: number; shardRestarts: number }
  /** lru-cache only. */
  lruSize?: number
}
