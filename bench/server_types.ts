/**
 * What the real-server section (server.ts) sends to its two kinds of child
 * process, the HTTP server (server_app.ts) and the load generator
 * (server_client.ts), and what they send back. Apart from all three so that
 * no entry point imports another's side effects.
 */
import type { GcSummary } from './event_loop_types.js'

export type ServerMode = 'no cache' | 'lru-cache' | 'shardcache' | 'shardcache + near'
export const SERVER_MODES: ServerMode[] = ['no cache', 'lru-cache', 'shardcache', 'shardcache + near']

/** One load regime: the records, the request mix and how the server process is sized. */
export interface ServerRegime {
  name: string
  /** Users pre-filled, and the Zipf id space the requests draw from. */
  entries: number
  /** 0 for the ~200-byte users; else each user has a bio of about this many bytes (see users.ts). */
  bioBytes: number
  zipfS: number
  /** Open-loop HTTP requests per second from the client process. */
  requestsPerSec: number
  /** One request in this many is a write (a new version of the user, stored before the response). */
  writeEvery: number
  /** Writes per second inside the server besides the HTTP ones (a feed of updates, as from a queue). */
  feedWritesPerSec: number
  /** CPU spent on a miss, standing for the database or the computation the cache saves. */
  missWorkMicros: number
  /**
   * The server's old-space limit in MiB, or 0 for V8's default: a server
   * sized to its data (a container with a memory limit) is where an in-heap
   * cache's old generation is really collected.
   */
  maxOldSpaceMb: number
  warmupMs: number
  durationMs: number
}

export interface ServerSetup {
  regime: ServerRegime
  mode: ServerMode
  shards: number
  nearEntries: number
  prefillChunk: number
  seed: number
}

export interface LatencySummaryMs {
  p50: number
  p99: number
  p999: number
  max: number
}

/** What the server measured over the window the parent marked. */
export interface ServerWindow {
  /** The serving thread's event-loop delay (monitorEventLoopDelay, 1 ms resolution). */
  delay: LatencySummaryMs & { samples: number }
  /** The serving thread's event-loop utilization (0–1) in its busiest 100 ms of the window: incremental GC marking shows here. */
  busiest100ms: number
  gc: GcSummary
  rssBytes: number
  heapUsedBytes: number
  /** CPU milliseconds over the window: the serving thread, the shard threads (shardcache modes; Linux only), the whole process. */
  cpu: { mainMs: number; shardsMs: number | undefined; processMs: number; windowMs: number }
  /** `syncReads`: reads this thread answered without waiting (lru-cache, a direct or near hit of shardcache). */
  requests: { reads: number; hits: number; syncReads: number; writes: number; feedWrites: number; errors: number }
  /** A shard round trip for a write (set), timed on 1 in 16 writes. */
  writeRoundTripMs: LatencySummaryMs | undefined
}

export interface ServerReady {
  type: 'ready'
  port: number
  prefillMs: number
  /** The cache's shard count (shardcache modes). */
  shards: number | undefined
}

export interface ClientConfig {
  port: number
  regime: ServerRegime
  seed: number
}

export interface ClientResult {
  /** From each request's scheduled send time to its response's end: stalls count against every request they delay. */
  latency: LatencySummaryMs
  sent: number
  completed: number
  errors: number
  /** Requests sent per second over the window, as the schedule achieved it. */
  sentPerSec: number
  /** The most requests waiting for a response at once. */
  maxInFlight: number
  /** The client's CPU time over the window's length (1 = a core): near 1, the client, not the server, sets the latency. */
  cpuShare: number
}

export interface ServerRound {
  round: number
  mode: ServerMode
  prefillMs?: number
  shards?: number
  client?: ClientResult
  server?: ServerWindow
  error?: string
}
