/**
 * `createCache({ l2 })`: the Redis L2 tier's options and their validation
 * into the `ResolvedL2` that src/redis/l2.ts runs with.
 */
import type { ConnectionOptions } from 'node:tls'
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { ResolvedL2 } from '../redis/l2.js'
import { isClusterNodes, isRedisClient } from '../redis/redis_access.js'
import { checkClusterNodes, resolveTls } from './connection.js'
import { finiteDuration, positiveInteger, rejectUnknownKeys } from './parse.js'
import { isPlainObject } from '../wire/values.js'
import type { Ttl } from './parse.js'

/** `createCache({ l2 })`: a Redis (or Redis Cluster) tier shared by every instance. */
export interface L2Options {
  /**
   * A URL (`'redis://user:password@host:6379'`, `'rediss://…'` for TLS),
   * ioredis options, an ioredis client or Cluster (duplicated; the tier
   * never closes it), or a Redis Cluster by its startup nodes, as a config file
   * can give it: `{ cluster: ['127.0.0.1:7000', ...], options?: ClusterOptions }`.
   * The Redis user needs the ACL rules of docs/redis-security.md.
   */
  redis: string | Record<string, unknown> | object
  /**
   * TLS options of the connection (Node's `tls.connect` options: `ca`,
   * `cert`, `key`, `servername`, ...), merged over the `tls` of the ioredis
   * options or client; with a URL, it must be a `rediss://` one. A server
   * certificate the CA does not vouch for makes `createCache` reject with
   * `E_REDIS_TLS`. Not for a Cluster (set its `redisOptions.tls`).
   * @default none (a `rediss://` URL alone trusts Node's default CAs)
   */
  tls?: ConnectionOptions
  /**
   * Prefix of every key the tier writes (`<prefix><region>:<key>`, and
   * `<prefix>tag:<tag>` for tag sets).
   * @default 'shardcache:'
   */
  prefix?: string
  /** L2 TTL = the entry's TTL x ttlScale (at least 1). @default 1 */
  ttlScale?: number
  /**
   * An L2 hit is written into the shards with probability 1/frequency (1:
   * always), so a key read once does not displace hot ones.
   * @default { frequency: 1 }
   */
  promotion?: { frequency?: number }
  /** Longest wait for a Redis command (ms or a duration string). @default '1s' */
  timeout?: Ttl
  /**
   * `false`: an L2 failure or timeout skips L2 and the operation succeeds on
   * the shards alone. `true`: it rejects with `E_L2_UNAVAILABLE` (and
   * `createCache` rejects when Redis cannot be reached). Either way,
   * credentials, a certificate or a permission that Redis refuses make
   * `createCache` reject at once (`E_REDIS_AUTH`, `E_REDIS_TLS`, `E_REDIS_NOPERM`).
   * @default false
   */
  required?: boolean
  /** How long the circuit breaker keeps a failing L2 out of the path (after 5 failures in a row). @default '30s' */
  breakDuration?: Ttl
}

export function resolveL2(v: unknown): ResolvedL2 {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.l2 must be an object like { redis: 'redis://127.0.0.1:6379' } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['redis', 'tls', 'prefix', 'ttlScale', 'promotion', 'timeout', 'required', 'breakDuration'], 'options.l2.')
  const redis = v.redis
  if (!(typeof redis === 'string' && redis !== '') && !isRedisClient(redis) && !isPlainObject(redis)) {
    throw new InvalidOptionError(`options.l2.redis must be a Redis URL, ioredis options, an ioredis client or Cluster, or { cluster: [nodes] } (got ${describe(redis)})`)
  }
  if (isClusterNodes(redis)) checkClusterNodes(redis, 'options.l2.redis')
  const prefix = v.prefix ?? 'shardcache:'
  if (typeof prefix !== 'string') throw new InvalidOptionError(`options.l2.prefix must be a string (got ${describe(prefix)})`)
  const ttlScale = v.ttlScale ?? 1
  if (typeof ttlScale !== 'number' || !Number.isFinite(ttlScale) || ttlScale < 1) {
    throw new InvalidOptionError(`options.l2.ttlScale must be a finite number of at least 1 (got ${describe(ttlScale)})`)
  }
  let promotionFrequency = 1
  if (v.promotion !== undefined) {
    if (!isPlainObject(v.promotion)) throw new InvalidOptionError(`options.l2.promotion must be an object like { frequency: 10 } (got ${describe(v.promotion)})`)
    rejectUnknownKeys(v.promotion, ['frequency'], 'options.l2.promotion.')
    if (v.promotion.frequency !== undefined) promotionFrequency = positiveInteger(v.promotion.frequency, 'options.l2.promotion.frequency')
  }
  const timeoutMs = v.timeout === undefined ? 1000 : finiteDuration(v.timeout, 'options.l2.timeout')
  const breakDurationMs = v.breakDuration === undefined ? 30_000 : finiteDuration(v.breakDuration, 'options.l2.breakDuration')
  const required = v.required ?? false
  if (typeof required !== 'boolean') throw new InvalidOptionError(`options.l2.required must be a boolean (got ${describe(required)})`)
  const tls = resolveTls(v.tls, redis, 'options.l2')
  return { redis: redis as ResolvedL2['redis'], tls, prefix, ttlScale, promotionFrequency, timeoutMs, required, breakDurationMs }
}
