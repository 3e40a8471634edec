/**
 * The bus's connections to Redis and the options it relies on for them.
 *
 * Two connections, because a subscribed connection cannot publish. Both are
 * our own (a client passed in is duplicated), so the bus can set the options
 * it relies on (no offline queue, no automatic resubscribe) and close them.
 * On a cluster the publisher is an ioredis Cluster and the subscriber a plain
 * connection to the master of the channel's slot, which ./bus.ts opens with
 * {@link subscriberOptions} over that node's own options.
 */
import { Cluster, Redis } from 'ioredis'
import type { ClusterOptions, RedisOptions } from 'ioredis'
import { LEAST_PRIVILEGE, isClusterClient, isClusterNodes, isRedisClient, withTls } from './redis_access.js'
import type { ClusterNodesConfig, ResolvedBus } from './bus_types.js'

/** The subscriber's reconnection backoff, as ioredis's retryStrategy gives it on a single server. */
export const backoffMs = (attempt: number): number => Math.min(50 * 2 ** Math.min(attempt, 10), 1000)

/** The options the bus relies on, for each of its connections to a server (see {@link connection}). */
export function subscriberOptions(opts: ResolvedBus, role: string): RedisOptions {
  return {
    lazyConnect: true,
    // The bus queues and counts what it publishes; a command sent while down fails at once.
    enableOfflineQueue: false,
    // Resubscribing is the bus's job: it must flush between the new subscription and the next message.
    autoResubscribe: false,
    // A publish cut off by a disconnect fails back to the bus, which queues it again in order
    // (ioredis would resend it on its own, unbounded and invisible to maxQueue and stats).
    autoResendUnfulfilledCommands: false,
    // Needed for the line above to hold: without it, ioredis keeps the commands that were in
    // flight when the connection closed aside, and on reconnecting, with resending off, drops
    // them without settling their promises. Each such publish then counted as in flight for
    // good (stats().bus.queued never went back to 0, and after 256 of them over a few
    // outages nothing was published any more). With 0, every close rejects them at once.
    maxRetriesPerRequest: 0,
    connectionName: `shardcache-bus-${role}`,
    retryStrategy: backoffMs,
    connectTimeout: opts.connectTimeoutMs,
    ...LEAST_PRIVILEGE,
  }
}

/** One of the bus's two connections to a single server, with the options it relies on. */
export function connection(opts: ResolvedBus, role: string): Redis {
  const own = subscriberOptions(opts, role)
  const r = opts.redis
  if (typeof r === 'string') return new Redis(r, withTls(own, undefined, opts.tls))
  if (isRedisClient(r)) return (r as Redis).duplicate(withTls(own, (r as Redis).options?.tls, opts.tls))
  return new Redis({ ...(r as RedisOptions), ...withTls(own, (r as RedisOptions).tls, opts.tls) })
}

/**
 * The publisher on a cluster: an ioredis Cluster of our own (a Cluster passed
 * in is duplicated, keeping its nodes and options), with the bus's options on
 * every node's connection and no offline queue at the cluster level either.
 */
export function clusterConnection(opts: ResolvedBus, role: string): Cluster {
  // The nodes' connecting and reconnecting are the Cluster's business (it gives them no retryStrategy of their own).
  const { lazyConnect: _lazy, retryStrategy: _retry, ...own } = subscriberOptions(opts, role)
  const r = opts.redis
  const base: ClusterOptions = isClusterClient(r) ? (r as Cluster).options : ((r as ClusterNodesConfig).options ?? {})
  const options: ClusterOptions = {
    ...base,
    lazyConnect: true,
    enableOfflineQueue: false,
    clusterRetryStrategy: backoffMs,
    redisOptions: { ...base.redisOptions, ...own },
  }
  if (isClusterClient(r)) return (r as Cluster).duplicate(undefined, options)
  if (isClusterNodes(r)) return new Cluster((r as ClusterNodesConfig).cluster, options)
  throw new Error('internal: a cluster bus without a cluster')
}
