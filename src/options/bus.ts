/**
 * `createCache({ bus })`: the invalidation bus's options and their validation
 * into the `ResolvedBus` that src/redis/bus.ts runs with.
 */
import type { ConnectionOptions } from 'node:tls'
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { BusRedis, ResolvedBus } from '../redis/bus.js'
import { keyInSlotOf } from '../redis/cluster_slot.js'
import { isClusterClient, isClusterNodes, isRedisClient } from '../redis/redis_access.js'
import { checkClusterNodes, resolveTls } from './connection.js'
import { DEFAULTS } from './defaults.js'
import { finiteDuration, parseSize, positiveInteger, rejectUnknownKeys } from './parse.js'
import { isPlainObject } from '../wire/values.js'
import type { Size, Ttl } from './parse.js'

/** Options of the Redis invalidation bus (`createCache({ bus })`). */
export interface BusOptions {
  /**
   * The Redis to relay through: a URL (`'redis://127.0.0.1:6379'`), ioredis
   * options, or an ioredis client. A client is duplicated (twice: one
   * connection publishes, one subscribes); the bus never uses or closes it.
   * `'rediss://…'` connects over TLS; credentials go in the URL
   * (`redis://user:password@host:6379`) or the ioredis options. The Redis
   * user needs the ACL rules of docs/redis-security.md.
   *
   * A Redis Cluster (7+), as an ioredis `Cluster` (duplicated too) or by its
   * startup nodes, `{ cluster: ['127.0.0.1:7000', { host, port }], options?:
   * ClusterOptions }` (what a config file can hold): the bus then uses sharded
   * pub/sub (SPUBLISH / SSUBSCRIBE) on the shard that owns the channel's slot,
   * subscribing to its master and finding the new one after a failover; the
   * catch-up stream is `{<channel>}:stream` (the channel's own hash tag if it
   * has one), so that it lives in the channel's slot.
   */
  redis: BusRedis
  /**
   * TLS options of both connections (Node's `tls.connect` options: `ca`,
   * `cert`, `key`, `servername`, ...), merged over the `tls` of the ioredis
   * options or client; with a URL, it must be a `rediss://` one. A server
   * certificate the CA does not vouch for makes `createCache` reject with
   * `E_REDIS_TLS`. Not for a Cluster (set its `redisOptions.tls`).
   * @default none (a `rediss://` URL alone trusts Node's default CAs)
   */
  tls?: ConnectionOptions
  /**
   * Pub/sub channel; instances on the same channel invalidate each other.
   * @default 'shardcache'
   */
  channel?: string
  /**
   * Signs every message with HMAC-SHA256 and drops messages that are
   * unsigned, tampered with, replayed, or sent more than `maxMessageAge`
   * from this clock. Every instance on the channel needs the same secret.
   * Must not be empty.
   * @default unsigned
   */
  secret?: string | Buffer
  /**
   * With `secret`: a signed message whose send time is further than this
   * from this instance's clock (older, or dated ahead) is dropped as `stale`,
   * so that a recorded message cannot be replayed to an instance that never
   * saw its origin. It must cover the clock skew between hosts plus the time
   * a message takes to arrive. A positive, finite number of ms or a duration
   * string. Only for a signed bus (without `secret` it is refused).
   * @default '30s'
   */
  maxMessageAge?: Ttl
  /**
   * `'invalidate'`: a set makes peers drop their copy of the key.
   * `'update'`: a set carries the value and peers store it (sets with
   * `nx`/`xx`, and values too large for one message, still invalidate).
   * @default 'invalidate'
   */
  mode?: 'invalidate' | 'update'
  /**
   * Largest message published; a tick's ops are split to stay under it, and
   * larger received messages are dropped. At least 8 KiB and 1 KiB above `maxKeyBytes`.
   * @default '64kb'
   */
  maxMessageBytes?: Size
  /**
   * Interval of the PING on the subscriber connection. Two intervals without
   * an answer mean the link is dead (even when TCP says nothing): the cache
   * flushes and reconnects. ms or a duration string.
   * @default '1s'
   */
  heartbeat?: Ttl
  /**
   * Messages kept while Redis is unreachable; beyond it the oldest are dropped
   * (peers see the gap and flush).
   * @default 10000
   */
  maxQueue?: number
  /**
   * `true`: `createCache` rejects with `E_BUS_CONNECT` when it cannot subscribe
   * within `connectTimeout`. `false`: when the first connection attempt fails
   * (or does not subscribe within `connectTimeout`), it starts without the
   * bus and connects in the background (flushing once subscribed). Either
   * way, credentials, a certificate or a permission that Redis refuses make
   * `createCache` reject at once (`E_REDIS_AUTH`, `E_REDIS_TLS`, `E_REDIS_NOPERM`).
   * @default true
   */
  required?: boolean
  /**
   * What the cache does when messages may have been lost (a disconnect, a
   * missed heartbeat, a sequence gap). `'flush'`: empty every region.
   * `'stream'`: every message is also appended to the Redis Stream
   * `<channel>:stream` (capped at `streamMaxLen`), and the missed ones are
   * replayed from it; only when the stream was trimmed past the last message
   * seen (or cannot be read) does the cache flush. All instances on a
   * channel must use the same setting.
   * @default 'flush'
   */
  catchUp?: 'flush' | 'stream'
  /**
   * Entries the catch-up stream keeps (trimmed approximately, `XADD MAXLEN ~`):
   * how many messages an instance can fall behind and still replay.
   * @default 10000
   */
  streamMaxLen?: number
  /**
   * How long `createCache` waits for the subscription when `required`, and
   * the socket connect timeout. ms or a duration string.
   * @default '5s'
   */
  connectTimeout?: Ttl
}

const BUS_KEYS = ['redis', 'tls', 'channel', 'secret', 'maxMessageAge', 'mode', 'maxMessageBytes', 'heartbeat', 'maxQueue', 'required', 'connectTimeout', 'catchUp', 'streamMaxLen']

export function resolveBus(v: unknown, maxKeyBytes: number): ResolvedBus {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.bus must be an object like { redis: 'redis://127.0.0.1:6379' } (got ${describe(v)})`)
  rejectUnknownKeys(v, BUS_KEYS, 'options.bus.')
  const redis = v.redis
  if (!(typeof redis === 'string' && redis !== '') && !isRedisClient(redis) && !isPlainObject(redis)) {
    throw new InvalidOptionError(`options.bus.redis must be a Redis URL, ioredis options, an ioredis client or Cluster, or { cluster: [nodes] } (got ${describe(redis)})`)
  }
  if (isClusterNodes(redis)) checkClusterNodes(redis, 'options.bus.redis')
  const cluster = isClusterNodes(redis) || isClusterClient(redis)
  const channel = v.channel ?? DEFAULTS.busChannel
  if (typeof channel !== 'string' || channel === '') throw new InvalidOptionError(`options.bus.channel must be a non-empty string (got ${describe(channel)})`)
  // On a cluster the stream must share the channel's slot (one script appends and publishes): a hash tag.
  const streamKey = cluster ? keyInSlotOf(channel, ':stream') : `${channel}:stream`
  if (streamKey === undefined) {
    throw new InvalidOptionError(`options.bus.channel: on a Redis Cluster, a channel with a "}" needs a hash tag such as "{orders}" (got ${describe(channel)})`)
  }
  let secret: Buffer | undefined
  if (v.secret !== undefined) {
    if (typeof v.secret === 'string') secret = Buffer.from(v.secret, 'utf8')
    else if (Buffer.isBuffer(v.secret)) secret = Buffer.from(v.secret)
    else throw new InvalidOptionError(`options.bus.secret must be a string or a Buffer (got ${describe(v.secret)})`)
    if (secret.length === 0) throw new InvalidOptionError('options.bus.secret must not be empty (leave it out for an unsigned bus)')
  }
  if (v.maxMessageAge !== undefined && secret === undefined) {
    throw new InvalidOptionError('options.bus.maxMessageAge applies to signed messages only: set options.bus.secret too (or leave maxMessageAge out)')
  }
  const maxMessageAgeMs = v.maxMessageAge === undefined ? DEFAULTS.busMaxMessageAgeMs : finiteDuration(v.maxMessageAge, 'options.bus.maxMessageAge')
  const tls = resolveTls(v.tls, redis, 'options.bus')
  const mode = v.mode ?? 'invalidate'
  if (mode !== 'invalidate' && mode !== 'update') throw new InvalidOptionError(`options.bus.mode must be "invalidate" or "update" (got ${describe(mode)})`)
  const maxMessageBytes = v.maxMessageBytes === undefined ? DEFAULTS.busMaxMessageBytes : parseSize(v.maxMessageBytes, 'options.bus.maxMessageBytes')
  const minMessageBytes = Math.max(DEFAULTS.busMinMessageBytes, maxKeyBytes + 1024)
  if (maxMessageBytes < minMessageBytes) {
    throw new InvalidOptionError(`options.bus.maxMessageBytes must be at least ${minMessageBytes} (8 KiB, and 1 KiB above maxKeyBytes) (got ${maxMessageBytes})`)
  }
  if (maxMessageBytes > 512 * 2 ** 20) throw new InvalidOptionError(`options.bus.maxMessageBytes must be at most 512 MiB, Redis's limit (got ${maxMessageBytes})`)
  const heartbeatMs = v.heartbeat === undefined ? DEFAULTS.busHeartbeatMs : finiteDuration(v.heartbeat, 'options.bus.heartbeat')
  const connectTimeoutMs = v.connectTimeout === undefined ? DEFAULTS.busConnectTimeoutMs : finiteDuration(v.connectTimeout, 'options.bus.connectTimeout')
  const maxQueue = v.maxQueue === undefined ? DEFAULTS.busMaxQueue : positiveInteger(v.maxQueue, 'options.bus.maxQueue')
  const required = v.required ?? true
  if (typeof required !== 'boolean') throw new InvalidOptionError(`options.bus.required must be a boolean (got ${describe(required)})`)
  const catchUp = v.catchUp ?? 'flush'
  if (catchUp !== 'flush' && catchUp !== 'stream') throw new InvalidOptionError(`options.bus.catchUp must be "flush" or "stream" (got ${describe(catchUp)})`)
  const streamMaxLen = v.streamMaxLen === undefined ? DEFAULTS.busStreamMaxLen : positiveInteger(v.streamMaxLen, 'options.bus.streamMaxLen')
  return {
    redis: redis as BusRedis,
    tls,
    cluster,
    channel,
    secret,
    maxMessageAgeMs,
    mode,
    maxMessageBytes,
    heartbeatMs,
    maxQueue,
    required,
    connectTimeoutMs,
    catchUp,
    streamKey,
    streamMaxLen,
  }
}
