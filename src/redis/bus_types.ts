/**
 * The bus's shapes: its resolved options, what it needs from the cache it
 * serves and what it reports (stats, events), and the counters its parts
 * share, and two small helpers they all use. Apart from ./bus.ts, which
 * re-exports the public ones, so that the bus's parts (./bus_link.ts,
 * ./bus_outbox.ts, ./bus_inbox.ts) can name them without importing the
 * class that assembles them (no import circles).
 */
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import type { ConnectionOptions } from 'node:tls'
import type { BusOp, DropReason } from './bus_message.js'

/**
 * A Redis Cluster by its startup nodes (what a config file can hold): the
 * nodes as ioredis takes them (`'127.0.0.1:7000'`, `{ host, port }`), and
 * ioredis Cluster options (`redisOptions` for every node's connection).
 */
export interface ClusterNodesConfig {
  cluster: ClusterNode[]
  options?: ClusterOptions
}

/**
 * Where the bus connects: a URL, ioredis options, an ioredis client, or a
 * Redis Cluster (an ioredis `Cluster`, or {@link ClusterNodesConfig}). A client
 * is duplicated, never used or closed by the bus.
 */
export type BusRedis = string | RedisOptions | Redis | Cluster | ClusterNodesConfig

/** The bus options after validation (see `BusOptions` in src/options/bus.ts for their meaning). */
export interface ResolvedBus {
  redis: BusRedis
  /** Merged over the connection's own TLS options (never with a Cluster: src/options/bus.ts refuses it). */
  tls: ConnectionOptions | undefined
  /** Whether `redis` is a Redis Cluster: sharded pub/sub, hash-tagged stream key. */
  cluster: boolean
  channel: string
  secret: Buffer | undefined
  /** Signed messages further than this from our clock are dropped as stale. */
  maxMessageAgeMs: number
  mode: 'invalidate' | 'update'
  maxMessageBytes: number
  heartbeatMs: number
  maxQueue: number
  required: boolean
  connectTimeoutMs: number
  /** 'stream': every message is also appended to a Redis Stream, replayed after a gap or a reconnect. */
  catchUp: 'flush' | 'stream'
  /** The stream's key (catchUp 'stream'); on a cluster in the channel's slot. */
  streamKey: string
  /** Entries the stream keeps (approximately: XADD MAXLEN ~). */
  streamMaxLen: number
}

/** Why the bus flushed the local cache. */
export type FlushReason = 'disconnect' | 'heartbeat' | 'gap' | 'reconnect'

/** What `cache.on('invalidation', listener)` receives: one op of a peer, applied here. */
export interface InvalidationEvent {
  /** Hex id of the instance that published it. */
  origin: string
  region: string
  type: 'delete' | 'update' | 'pattern' | 'clear' | 'tag'
  /** For `delete` and `update`. */
  keys?: string[]
  /** For `pattern`. */
  pattern?: string
  /** For `tag`: the tag passed to invalidateTag. */
  tag?: string
}

/** What `cache.on('flush', listener)` receives: the bus emptied every region because invalidations may have been lost. */
export interface FlushEvent {
  reason: FlushReason
  regions: string[]
}

/** Publishes local writes: the bus on the owner, a relay to it on attached threads. */
export interface BusPublisher {
  readonly mode: 'invalidate' | 'update'
  publish(op: BusOp): void
  /** getOrCompute's lockAcrossInstances without an L2 tier: a lease on the bus's Redis (owner only). */
  lock?(name: string, token: string, ms: number): Promise<boolean | undefined>
  unlock?(name: string, token: string): Promise<void>
}

/** What the bus needs from the cache it serves. */
export interface BusHost {
  /** Applies a peer's ops to the local shards without publishing them; resolves how many ops applied. */
  apply(ops: BusOp[], origin: string): Promise<number>
  /** Clears every region locally. Must issue its ops before it returns, so that ops issued later run after it. */
  flush(reason: FlushReason): Promise<void>
}

/** `stats().bus`. Counters since the cache was created (resetStats zeroes them, except the gauges). */
export interface BusStats {
  /** Whether the subscription is live now. */
  connected: boolean
  channel: string
  mode: 'invalidate' | 'update'
  /** Messages sent to Redis. */
  published: number
  /** Messages received from other instances (own messages excluded). */
  received: number
  /** Ops (a batch of keys, a pattern, a clear) applied from received messages. */
  applied: number
  /** Messages dropped, by reason; `queueFull` are our own, dropped before sending. */
  dropped: Record<DropReason | 'queueFull' | 'sendFailed', number> & { total: number }
  /** Messages not yet acknowledged by Redis: waiting in the queue or in flight. */
  queued: number
  /** Times the subscription was re-established after it was lost. */
  reconnects: number
  /** Local flushes because invalidations may have been lost. */
  flushes: number
  /** Sequence gaps seen (each flushed, or replayed from the stream). */
  gaps: number
  /**
   * With `catchUp: 'stream'`: replays after a gap or a reconnect (`runs`),
   * the messages they applied, and those that fell back to a flush because
   * the stream no longer reached back to the last message seen.
   */
  catchUp: { runs: number; messages: number; fallbacks: number }
  /** Round trip of the last answered heartbeat, in ms; null before the first. */
  lastHeartbeatMs: number | null
  /** From a publisher's send time to this instance handing the message's ops to its shards, over live messages received. */
  latency: { count: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null }
}

/**
 * The counters behind {@link BusStats}, one object that every part of the bus
 * holds and counts into; resetStats zeroes it in place, so those references
 * stay good.
 */
export type BusCounters = ReturnType<typeof zeroCounters>

export function zeroCounters() {
  return {
    published: 0,
    received: 0,
    applied: 0,
    reconnects: 0,
    flushes: 0,
    gaps: 0,
    catchUp: { runs: 0, messages: 0, fallbacks: 0 },
    lastHeartbeatMs: null as number | null,
    dropped: { malformed: 0, version: 0, oversize: 0, unsigned: 0, badSignature: 0, replayed: 0, stale: 0, queueFull: 0, sendFailed: 0 },
  }
}

/** Zeroes the counters, except the gauge (the last heartbeat's round trip). */
export function resetCounters(c: BusCounters): void {
  const last = c.lastHeartbeatMs
  Object.assign(c, zeroCounters())
  c.lastHeartbeatMs = last
}

/** Epoch ms with sub-ms precision: the propagation latency is well under a millisecond on loopback. */
export const epochNow = (): number => performance.timeOrigin + performance.now()

/** A wait that keeps no process alive. */
export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms).unref()
  })
