/**
 * Options of {@link createCache} and of single operations: their types, their
 * defaults, and the validation that turns them into what router and shards use.
 * Every message names the option to fix.
 */
import { availableParallelism } from 'node:os'
import ms from 'ms'
import bytes from 'bytes'
import { InvalidOptionError, InvalidTtlError } from '../errors.js'
import { MAX_KEY_BYTES_LIMIT } from '../wire/protocol.js'
import { loneSurrogateAt, wellFormed } from '../wire/values.js'
import { describe, plural } from '../messages.js'
import type { RegionShardConfig } from '../wire/region_types.js'
import type { BusRedis, ResolvedBus } from '../redis/bus.js'
import { keyInSlotOf } from '../redis/cluster_slot.js'
import type { ResolvedL2 } from '../redis/l2.js'
import { existsSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import { resolve as resolvePath } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Codec } from '../wire/values.js'
import { isClusterClient, isClusterNodes, isRedisClient } from '../redis/redis_access.js'

/** Milliseconds (a positive number, or `Infinity` for no expiry) or a duration string such as `'30s'`, `'5m'`, `'1h'`, `'2d'`. */
export type Ttl = number | string

/** A byte count, or a size string such as `'512kb'`, `'100mb'`, `'1gb'` (powers of 1024). */
export type Size = number | string

/** Options of one region. A region is a named keyspace with its own policy and budgets. */
export interface RegionOptions {
  /**
   * Which entry is evicted when the region is over a budget: `'lru'` (least
   * recently read or written) or `'fifo'` (oldest written; reads and updates do
   * not reorder).
   * @default 'lru'
   */
  policy?: 'lru' | 'fifo'
  /**
   * Byte budget of the region across all shards (each shard gets an equal share).
   * An entry costs its key bytes + stored value bytes + metadata bytes + 64.
   * @default 64 MiB when `maxEntries` is not set either, otherwise unbounded
   */
  maxBytes?: Size
  /**
   * Entry budget of the region across all shards (split exactly: the shares add up to it).
   * Must be at least the number of shards.
   * @default unbounded
   */
  maxEntries?: number
  /**
   * TTL of entries set without one.
   * @default Infinity (no expiry)
   */
  ttl?: Ttl
  /**
   * LZ4 compression in the shards: values of at least `minBytes` are compressed
   * when that makes them smaller. `false` turns it off.
   *
   * `dictionary: true` compresses with a dictionary each shard builds from
   * sampled values of the region, and rebuilds when the values drift (older
   * entries keep decoding with the dictionary they were written with). It
   * pays for many small values that share structure, such as JSON records: on
   * ~170-byte records it stores ~62 bytes a value where plain LZ4 saves
   * nothing. With it, `minBytes` defaults to 32. Its figures are in
   * `stats().byRegion[name].dictionary` (`DictionaryStats`).
   * @default { minBytes: 1024, dictionary: false }
   */
  compression?: false | { minBytes?: Size; dictionary?: boolean }
}

/** Options of {@link createCache}. */
export interface CacheOptions {
  /**
   * Number of shard worker threads.
   * @default os.availableParallelism() - 1, at least 1
   */
  shards?: number
  /**
   * The regions. A region named `default` serves operations that name no
   * region; when it is not listed it is added with `{ policy: 'lru', maxBytes: '64mb' }`.
   */
  regions?: Record<string, RegionOptions>
  /**
   * Longest key, in UTF-8 bytes (at most 65535).
   * @default 4096
   */
  maxKeyBytes?: number
  /**
   * Largest value, in bytes after encoding and before compression.
   * @default 16 MiB
   */
  maxValueBytes?: Size
  /**
   * Codec for values that are not strings, Buffers or Uint8Arrays.
   * @default JSON (UTF-8)
   */
  codec?: Codec
  /**
   * After answering a frame, a shard thread stays awake this many microseconds
   * watching for the next one before it sleeps. Waking a sleeping thread costs
   * about half of a one-op round trip, so this buys latency for sequential
   * callers with shard CPU (at most this much per frame). 0 turns it off.
   * @default 50
   */
  idleSpinMicros?: number
  /**
   * When the calling thread sends a frame of at most 8 operations to a shard
   * that is awake, it waits for the answer by spinning for up to this many
   * microseconds instead of sleeping until the reply's message wakes it
   * (~25 µs). This blocks the calling thread for at most this long per such
   * frame; 0 turns it off.
   * @default 20
   */
  replySpinMicros?: number
  /**
   * An opt-in L0 on each thread that uses the cache (the owner and every
   * attached thread): decoded values of recent hits, served without decoding
   * or a promise round trip while shared memory proves them current (their
   * slot's version is unchanged and they have not expired). `maxEntries` is
   * per region, per thread. Hits return the same object to every caller:
   * treat cached values as immutable. `false` turns it off.
   * @default false
   */
  nearCache?: false | { maxEntries?: number }
  /**
   * The invalidation bus: keeps the caches of many processes coherent through
   * Redis pub/sub. Off when absent. See {@link BusOptions}.
   */
  bus?: BusOptions
  /** Loaders of `getOrCompute` that run off the calling thread. See {@link LoaderOptions}. */
  loaders?: LoaderOptions
  /** A Redis L2 tier behind the shards. See {@link L2Options}. */
  l2?: L2Options
  /** A snapshot file to load before `createCache` resolves (see `cache.restore`). */
  restore?: string
  /**
   * V8 heap limits of each shard thread (Node's `Worker` `resourceLimits`, in
   * MB), merged over the default. A shard keeps its entries in shared memory,
   * outside its heap; the heap holds the frame being answered and what a
   * whole-keyspace call builds (`keys()`, a tag index of many distinct tags).
   * A shard that exceeds `maxOldGenerationSizeMb` dies like a crashed one: its
   * pending ops reject with `E_SHARD_CRASHED`, it restarts empty, and
   * `stats().shardRestarts` counts it; the other shards keep their data.
   * Unset limits are V8's defaults.
   * @default { maxYoungGenerationSizeMb: 2 }
   */
  resourceLimits?: ShardResourceLimits
}

/** `createCache({ resourceLimits })`: a shard thread's heap limits, as Node's `Worker` takes them. */
export interface ShardResourceLimits {
  /** Old-generation (main) heap, MB. @default V8's default for the machine */
  maxOldGenerationSizeMb?: number
  /** Young-generation heap, MB. @default 2 */
  maxYoungGenerationSizeMb?: number
  /** Memory reserved for generated code, MB. @default V8's default */
  codeRangeSizeMb?: number
  /** The thread's stack, MB. @default 4 */
  stackSizeMb?: number
}

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

/** `createCache({ loaders })`: where `getOrCompute(key, { task, args })` runs its loaders. */
export interface LoaderOptions {
  /**
   * A `piscina` pool: `filename` is a module (path or file URL; a relative path
   * is resolved against the current directory) whose named exports are the
   * tasks; each runs in a pool thread as `export(...args)`, and its result is
   * cached. Created on the first task, destroyed by `close()`.
   */
  pool: {
    filename: string
    /** @default piscina's default (half the cores, at least 1) */
    maxThreads?: number
  }
}

/** Options of `getOrCompute`. */
export interface ComputeOptions {
  /** TTL of the computed entry. @default the region's `ttl` */
  ttl?: Ttl
  /** Tags of the computed entry (see `SetOptions.tags`). */
  tags?: string[]
  /**
   * How long past its `ttl` the entry may still be served, as a stale value,
   * by `getOrCompute` (never by `get`): the caller gets it at once while one
   * background call of the loader refreshes it; if that fails or times out,
   * the stale value keeps being served until the grace period ends. Counted
   * in `stats().staleServed`. ms or a duration string.
   * @default none
   */
  grace?: Ttl
  /**
   * Longest wait for the loader (ms or a duration string). Past it every
   * caller of this flight rejects with `E_LOAD_TIMEOUT` and nothing is cached;
   * the loader itself is not stopped (a task in the pool runs to its end).
   * @default no limit
   */
  timeout?: Ttl
  /**
   * Before running the loader, take a short Redis lease on the key (`SET NX
   * PX`, as long as `timeout`, else 10 s), so that of N instances missing the
   * key at once one runs the loader; the others wait for its value (in the L2
   * tier, or delivered by an update-mode bus) for at most the lease, then run
   * the loader themselves if it did not come. Needs an L2 tier or a bus in
   * update mode.
   * @default false
   */
  lockAcrossInstances?: boolean
}

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

/** Options of `set` and `mset`. */
export interface SetOptions {
  /** TTL of this entry. @default the region's `ttl` */
  ttl?: Ttl
  /** Only set when the key has no live entry. The set resolves `false` when refused. */
  nx?: boolean
  /** Only set when the key has a live entry. The set resolves `false` when refused. */
  xx?: boolean
  /** JSON-serializable data stored with the entry and returned by `getEntry`. */
  metadata?: Record<string, unknown>
  /**
   * Tags of the entry: `invalidateTag(tag)` removes every entry carrying one,
   * in every shard and, through the bus, in every instance. At most 32
   * non-empty strings of at most `maxKeyBytes` bytes each.
   */
  tags?: string[]
}

/**
 * A region after validation, as a {@link CacheHandle} carries it to attaching
 * threads: totals over all shards, not per-shard shares.
 */
export interface ResolvedRegion {
  name: string
  index: number
  policy: 'lru' | 'fifo'
  maxBytes: number
  maxEntries: number
  defaultTtl: number
  compressMinBytes: number
  compressDictionary: boolean
}

export interface ResolvedOptions {
  shards: number
  maxKeyBytes: number
  maxValueBytes: number
  codec: Codec | undefined
  idleSpinMicros: number
  replySpinMicros: number
  /** Near-cache entries per region and thread; 0: no near cache. */
  nearCacheEntries: number
  regions: ResolvedRegion[]
  /** Undefined: no bus. */
  bus?: ResolvedBus
  /** Undefined: no loader pool. */
  loaderPool?: { filename: string; maxThreads: number | undefined }
  /** Undefined: no L2 tier. */
  l2?: ResolvedL2
  /** A snapshot to load at start. */
  restore?: string
  /** Shard threads' `resourceLimits` (the default merged with the user's). */
  resourceLimits?: ShardResourceLimits
}

export const DEFAULTS = {
  maxKeyBytes: 4096,
  maxValueBytes: 16 * 2 ** 20,
  regionMaxBytes: 64 * 2 ** 20,
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

const CACHE_KEYS = ['shards', 'regions', 'maxKeyBytes', 'maxValueBytes', 'codec', 'idleSpinMicros', 'replySpinMicros', 'nearCache', 'bus', 'loaders', 'l2', 'restore', 'resourceLimits']
const RESOURCE_LIMIT_KEYS = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'] as const
const REGION_KEYS = ['policy', 'maxBytes', 'maxEntries', 'ttl', 'compression']
const SET_KEYS = ['ttl', 'nx', 'xx', 'metadata', 'tags']
/** Tags an entry may carry. */
export const MAX_TAGS = 32

/** What a bad codec is: not an object, or the function it lacks. */
function describeCodec(c: unknown): string {
  if (c === null || typeof c !== 'object') return describe(c)
  const { encode, decode } = c as Partial<Codec>
  if (typeof encode !== 'function') return `an object whose encode is ${describe(encode)}`
  return `an object whose decode is ${describe(decode)}`
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/** Throws for keys that are not options, so that a typo does not pass silently. */
export function rejectUnknownKeys(obj: object, known: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      throw new InvalidOptionError(`${where}${k} is not an option (options are: ${known.join(', ')})`)
    }
  }
}

function positiveInteger(v: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new InvalidOptionError(`${name} must be a positive integer${max < Number.MAX_SAFE_INTEGER ? ` of at most ${max}` : ''} (got ${describe(v)})`)
  }
  return v
}

/** A spin budget: an integer number of microseconds up to one second. */
function micros(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 1_000_000) {
    throw new InvalidOptionError(`${name} must be an integer from 0 to 1000000 (got ${describe(v)})`)
  }
  return v
}

/** What bytes.parse reads whole: a number and a unit (`'1.5mb'`, `'64 KB'`), or whole bytes (`'4096'`, `'4096b'`). */
const SIZE_STRING = /^\s*(?:\d+(?:\.\d+)?\s*[kmgtp]b|\d+\s*b?)\s*$/i

/** Parses a size: a positive integer of bytes, or a string like `'100mb'`. */
export function parseSize(v: unknown, name: string): number {
  if (typeof v === 'string') {
    // Checked first: bytes.parse falls back to parseInt, which reads "10 parsecs" as 10 bytes,
    // "1e3" and "1,000" as 1 and " 5 MB" as 5: a typo would become a tiny budget silently.
    const n = SIZE_STRING.test(v) ? bytes.parse(v.trim()) : null
    if (n !== null && Number.isInteger(n) && n >= 1) return n
  } else if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= Number.MAX_SAFE_INTEGER) {
    return v
  }
  throw new InvalidOptionError(`${name} must be a positive integer or a size string like "100mb" (got ${describe(v)})`)
}

/**
 * Parses a TTL into milliseconds: a positive number, `Infinity` (no expiry), or
 * a duration string (`'500ms'`, `'30s'`, `'5m'`, `'1h'`, `'2d'`).
 */
export function parseTtl(v: unknown, name: string): number {
  if (typeof v === 'number') {
    if (v > 0) return v // also Infinity; NaN fails the comparison
  } else if (typeof v === 'string') {
    let n: number | undefined
    try {
      n = ms(v as ms.StringValue)
    } catch {
      n = undefined
    }
    if (typeof n === 'number' && n > 0 && Number.isFinite(n)) return n
  }
  throw new InvalidTtlError(
    `${name} must be a positive number of milliseconds, Infinity, or a duration string like "30s" (got ${describe(v)})`,
  )
}

function resolveRegion(name: string, index: number, o: unknown, shards: number): ResolvedRegion {
  const at = `regions.${name}`
  if (!isPlainObject(o)) throw new InvalidOptionError(`${at} must be an object (got ${describe(o)})`)
  rejectUnknownKeys(o, REGION_KEYS, `${at}.`)
  const policy = o.policy ?? 'lru'
  if (policy !== 'lru' && policy !== 'fifo') {
    throw new InvalidOptionError(`${at}.policy must be "lru" or "fifo" (got ${describe(policy)})`)
  }
  const maxEntries = o.maxEntries === undefined ? Infinity : positiveInteger(o.maxEntries, `${at}.maxEntries`)
  if (maxEntries < shards) {
    throw new InvalidOptionError(`${at}.maxEntries (${maxEntries}) must be at least the number of shards (${shards}): each shard holds a share`)
  }
  const maxBytes =
    o.maxBytes !== undefined ? parseSize(o.maxBytes, `${at}.maxBytes`) : maxEntries === Infinity ? DEFAULTS.regionMaxBytes : Infinity
  const defaultTtl = o.ttl === undefined ? Infinity : parseTtl(o.ttl, `${at}.ttl`)
  let compressMinBytes: number = DEFAULTS.compressMinBytes
  let compressDictionary = false
  const c = o.compression
  if (c === false) {
    compressMinBytes = Infinity
  } else if (c !== undefined) {
    if (!isPlainObject(c)) {
      throw new InvalidOptionError(`${at}.compression must be false or an object like { minBytes: 1024, dictionary: true } (got ${describe(c)})`)
    }
    rejectUnknownKeys(c, ['minBytes', 'dictionary'], `${at}.compression.`)
    if (c.dictionary !== undefined) {
      if (typeof c.dictionary !== 'boolean') throw new InvalidOptionError(`${at}.compression.dictionary must be a boolean (got ${describe(c.dictionary)})`)
      compressDictionary = c.dictionary
    }
    if (c.minBytes !== undefined) compressMinBytes = parseSize(c.minBytes, `${at}.compression.minBytes`)
    else if (compressDictionary) compressMinBytes = DEFAULTS.dictionaryCompressMinBytes
  }
  return { name, index, policy, maxBytes, maxEntries, defaultTtl, compressMinBytes, compressDictionary }
}

/** Validates {@link CacheOptions} and fills in defaults. Throws {@link InvalidOptionError} / {@link InvalidTtlError}. */
export function resolveOptions(options: unknown): ResolvedOptions {
  const o = options ?? {}
  if (!isPlainObject(o)) throw new InvalidOptionError(`options must be an object (got ${describe(o)})`)
  rejectUnknownKeys(o, CACHE_KEYS, 'options.')
  const shards =
    o.shards === undefined ? Math.max(1, availableParallelism() - 1) : positiveInteger(o.shards, 'options.shards', DEFAULTS.maxShards)
  const maxKeyBytes = o.maxKeyBytes === undefined ? DEFAULTS.maxKeyBytes : positiveInteger(o.maxKeyBytes, 'options.maxKeyBytes', MAX_KEY_BYTES_LIMIT)
  const maxValueBytes = o.maxValueBytes === undefined ? DEFAULTS.maxValueBytes : parseSize(o.maxValueBytes, 'options.maxValueBytes')
  if (maxValueBytes > 0xffffffff) throw new InvalidOptionError(`options.maxValueBytes must be below 4 GiB (got ${maxValueBytes})`)
  const idleSpinMicros = micros(o.idleSpinMicros ?? DEFAULTS.idleSpinMicros, 'options.idleSpinMicros')
  const replySpinMicros = micros(o.replySpinMicros ?? DEFAULTS.replySpinMicros, 'options.replySpinMicros')
  const nearCacheEntries = resolveNearCache(o.nearCache)
  let codec: Codec | undefined
  if (o.codec !== undefined) {
    const c = o.codec as Partial<Codec> | null
    if (c === null || typeof c !== 'object' || typeof c.encode !== 'function' || typeof c.decode !== 'function') {
      throw new InvalidOptionError(`options.codec must be an object with encode(value) and decode(bytes) functions (got ${describeCodec(c)})`)
    }
    codec = c as Codec
  }
  const given = o.regions ?? {}
  if (!isPlainObject(given)) throw new InvalidOptionError(`options.regions must be an object of region options (got ${describe(given)})`)
  const names = Object.keys(given)
  if (!names.includes('default')) names.unshift('default')
  if (names.length > DEFAULTS.maxRegions) throw new InvalidOptionError(`options.regions may hold at most ${DEFAULTS.maxRegions} regions (got ${names.length})`)
  const regions = names.map((name, i) => {
    if (name === '') throw new InvalidOptionError('options.regions: a region name must not be empty')
    return resolveRegion(name, i, Object.hasOwn(given, name) ? given[name] : {}, shards)
  })
  const bus = o.bus === undefined ? undefined : resolveBus(o.bus, maxKeyBytes)
  const loaderPool = o.loaders === undefined ? undefined : resolveLoaders(o.loaders)
  const l2 = o.l2 === undefined ? undefined : resolveL2(o.l2)
  if (o.restore !== undefined && (typeof o.restore !== 'string' || o.restore === '')) {
    throw new InvalidOptionError(`options.restore must be a snapshot file's path (got ${describe(o.restore)})`)
  }
  const restore = o.restore as string | undefined
  const resourceLimits = resolveResourceLimits(o.resourceLimits)
  return { shards, maxKeyBytes, maxValueBytes, codec, idleSpinMicros, replySpinMicros, nearCacheEntries, regions, bus, loaderPool, l2, restore, resourceLimits }
}

/**
 * The shard threads' limits: the user's over the default young-generation
 * cap. Bounds are checked here because Node does not: a `maxOldGenerationSizeMb`
 * of 0 or NaN is taken as "V8's default", and one too small for V8 to start
 * kills every shard before it answers.
 */
function resolveResourceLimits(v: unknown): ShardResourceLimits {
  const out: ShardResourceLimits = { maxYoungGenerationSizeMb: DEFAULTS.shardYoungGenerationMb }
  if (v === undefined) return out
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.resourceLimits must be an object like { maxOldGenerationSizeMb: 256 } (got ${describe(v)})`)
  rejectUnknownKeys(v, [...RESOURCE_LIMIT_KEYS], 'options.resourceLimits.')
  const min: Record<(typeof RESOURCE_LIMIT_KEYS)[number], number> = { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1, codeRangeSizeMb: 1, stackSizeMb: 1 }
  for (const k of RESOURCE_LIMIT_KEYS) {
    const n = v[k]
    if (n === undefined) continue
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min[k] || n > 1 << 20) {
      throw new InvalidOptionError(`options.resourceLimits.${k} must be a number of MB from ${min[k]} to 1048576 (got ${describe(n)})`)
    }
    out[k] = n
  }
  return out
}

function resolveL2(v: unknown): ResolvedL2 {
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

function resolveLoaders(v: unknown): { filename: string; maxThreads: number | undefined } {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.loaders must be an object like { pool: { filename: './loaders.js' } } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['pool'], 'options.loaders.')
  const pool = v.pool
  if (!isPlainObject(pool)) throw new InvalidOptionError(`options.loaders.pool must be an object like { filename: './loaders.js', maxThreads: 2 } (got ${describe(pool)})`)
  rejectUnknownKeys(pool, ['filename', 'maxThreads'], 'options.loaders.pool.')
  if (typeof pool.filename !== 'string' || pool.filename === '') {
    throw new InvalidOptionError(`options.loaders.pool.filename must be a module's path or file URL (got ${describe(pool.filename)})`)
  }
  const file = pool.filename.startsWith('file:') ? fileURLToPath(pool.filename) : resolvePath(pool.filename)
  if (!existsSync(file)) throw new InvalidOptionError(`options.loaders.pool.filename: no such file ${JSON.stringify(file)}`)
  const maxThreads = pool.maxThreads === undefined ? undefined : positiveInteger(pool.maxThreads, 'options.loaders.pool.maxThreads', 1024)
  return { filename: pathToFileURL(file).href, maxThreads }
}

/** The options of one `getOrCompute`, validated. */
export interface ResolvedCompute {
  ttl: number | undefined
  timeoutMs: number
  tags: string[] | undefined
  graceMs: number | undefined
  lock: boolean
}

/** Validates the options of `getOrCompute`. */
export function resolveComputeOptions(o: unknown, maxKeyBytes: number = DEFAULTS.maxKeyBytes): ResolvedCompute {
  if (o === undefined) return { ttl: undefined, timeoutMs: Infinity, tags: undefined, graceMs: undefined, lock: false }
  if (!isPlainObject(o)) throw new InvalidOptionError(`options must be an object like { ttl, grace, timeout, tags } (got ${describe(o)})`)
  rejectUnknownKeys(o, ['ttl', 'grace', 'timeout', 'tags', 'lockAcrossInstances'], 'options.')
  const lock = o.lockAcrossInstances ?? false
  if (typeof lock !== 'boolean') throw new InvalidOptionError(`options.lockAcrossInstances must be a boolean (got ${describe(lock)})`)
  const graceMs = o.grace === undefined ? undefined : finiteDuration(o.grace, 'options.grace')
  const tags = o.tags === undefined ? undefined : resolveTags(o.tags, 'options.tags', maxKeyBytes)
  const ttl = o.ttl === undefined ? undefined : parseTtl(o.ttl, 'options.ttl')
  let timeoutMs = Infinity
  if (o.timeout !== undefined) {
    const t = o.timeout
    const n = typeof t === 'number' ? t : typeof t === 'string' ? (ms(t as ms.StringValue) as number | undefined) : undefined
    if (typeof n !== 'number' || !(n > 0) || (Number.isFinite(n) && n > 2 ** 31 - 1)) {
      throw new InvalidOptionError(`options.timeout must be a positive number of ms below 24 days, Infinity, or a duration string like "2s" (got ${describe(t)})`)
    }
    timeoutMs = n
  }
  return { ttl, timeoutMs, tags, graceMs, lock }
}

const BUS_KEYS = ['redis', 'tls', 'channel', 'secret', 'maxMessageAge', 'mode', 'maxMessageBytes', 'heartbeat', 'maxQueue', 'required', 'connectTimeout', 'catchUp', 'streamMaxLen']

function resolveBus(v: unknown, maxKeyBytes: number): ResolvedBus {
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

/** The `tls` option of the bus or the L2 tier: a plain object, with a `rediss://` URL when the connection is a URL. */
function resolveTls(v: unknown, redis: unknown, at: string): ConnectionOptions | undefined {
  if (v === undefined) return undefined
  if (!isPlainObject(v)) throw new InvalidOptionError(`${at}.tls must be an object of TLS options like { ca } (got ${describe(v)})`)
  if (typeof redis === 'string' && !/^rediss:\/\//.test(redis)) {
    throw new InvalidOptionError(`${at}.tls needs a rediss:// URL in ${at}.redis (got ${describe(redis.replace(/\/\/[^@/]*@/, '//…@'))})`)
  }
  // A Cluster's node connections take their TLS from its redisOptions (ioredis), for the
  // startup nodes and every node it discovers: one more place to merge would be a second truth.
  if (isClusterNodes(redis) || (isPlainObject(redis) === false && typeof (redis as { nodes?: unknown }).nodes === 'function')) {
    throw new InvalidOptionError(`${at}.tls does not apply to a Cluster: set the Cluster's redisOptions.tls (in ${at}.redis.options.redisOptions.tls with { cluster: [nodes] })`)
  }
  return v as ConnectionOptions
}

/**
 * Validates `{ cluster: nodes, options? }` (`where`: the option's path): at
 * least one node, each a non-empty `'host:port'` / URL string or an object
 * with a `port` from 1 to 65535; `options` a plain object of ioredis Cluster options.
 */
function checkClusterNodes(v: Record<string, unknown>, where: string): void {
  rejectUnknownKeys(v, ['cluster', 'options'], `${where}.`)
  const nodes = v.cluster
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new InvalidOptionError(`${where}.cluster must be a non-empty array of startup nodes like ['127.0.0.1:7000'] or [{ host: '127.0.0.1', port: 7000 }] (got ${describe(nodes)})`)
  }
  nodes.forEach((n: unknown, i) => {
    const port = isPlainObject(n) ? n.port : undefined
    const okObject = isPlainObject(n) && (n.host === undefined || (typeof n.host === 'string' && n.host !== '')) && typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535
    if (!(typeof n === 'string' && n !== '') && !okObject) {
      throw new InvalidOptionError(`${where}.cluster[${i}] must be a 'host:port' string or { host, port } with a port from 1 to 65535 (got ${describe(n)})`)
    }
  })
  if (v.options !== undefined && !isPlainObject(v.options)) {
    throw new InvalidOptionError(`${where}.options must be an object of ioredis Cluster options (got ${describe(v.options)})`)
  }
}

/** A duration option (ms or a string like "1s") that must be finite, as a timer needs. */
function finiteDuration(v: unknown, name: string): number {
  let n: number
  try {
    n = parseTtl(v, name)
  } catch (err) {
    throw new InvalidOptionError((err as Error).message)
  }
  if (!Number.isFinite(n) || n > 2 ** 31 - 1) throw new InvalidOptionError(`${name} must be a finite duration below 24 days (got ${describe(v)})`)
  return Math.max(1, Math.round(n))
}

function resolveNearCache(v: unknown): number {
  if (v === undefined || v === false) return 0
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.nearCache must be false or an object like { maxEntries: 10000 } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['maxEntries'], 'options.nearCache.')
  return v.maxEntries === undefined ? DEFAULTS.nearCacheEntries : positiveInteger(v.maxEntries, 'options.nearCache.maxEntries', 2 ** 24)
}

/** One shard's share of a region: the byte budget divided evenly, the entry budget split so the shares sum to it. */
export function regionShare(r: ResolvedRegion, shard: number, shards: number): RegionShardConfig {
  const split = (total: number): number =>
    total === Infinity ? Infinity : Math.floor(total / shards) + (shard < total % shards ? 1 : 0)
  return {
    name: r.name,
    policy: r.policy,
    maxBytes: split(r.maxBytes),
    maxEntries: split(r.maxEntries),
    defaultTtl: r.defaultTtl,
    compressMinBytes: r.compressMinBytes,
    compressDictionary: r.compressDictionary,
  }
}

/** The options of one `set`, validated: `ttl` undefined means the region's default. */
export interface ResolvedSet {
  ttl: number | undefined
  nx: boolean
  xx: boolean
  metadata: Uint8Array | undefined
  tags: string[] | undefined
  /** getOrCompute's `grace` (ms); never set by `set`. */
  grace?: number
}

const NO_SET_OPTIONS: ResolvedSet = { ttl: undefined, nx: false, xx: false, metadata: undefined, tags: undefined }

/** Validates the options of `set`/`mset`. */
export function resolveSetOptions(o: unknown, maxKeyBytes: number = DEFAULTS.maxKeyBytes): ResolvedSet {
  if (o === undefined) return NO_SET_OPTIONS
  if (!isPlainObject(o)) {
    // set(key, value, 500): a TTL where the options go, as some caches take it.
    const hint = typeof o === 'number' || typeof o === 'string' ? `; for a TTL, pass { ttl: ${typeof o === 'string' ? JSON.stringify(o) : String(o)} }` : ''
    throw new InvalidOptionError(`options must be an object like { ttl, nx, xx, metadata } (got ${describe(o)}${hint})`)
  }
  rejectUnknownKeys(o, SET_KEYS, 'options.')
  const ttl = o.ttl === undefined ? undefined : parseTtl(o.ttl, 'options.ttl')
  const nx = o.nx ?? false
  const xx = o.xx ?? false
  if (typeof nx !== 'boolean') throw new InvalidOptionError(`options.nx must be a boolean (got ${describe(nx)})`)
  if (typeof xx !== 'boolean') throw new InvalidOptionError(`options.xx must be a boolean (got ${describe(xx)})`)
  if (nx && xx) throw new InvalidOptionError('options.nx and options.xx cannot both be true')
  let metadata: Uint8Array | undefined
  if (o.metadata !== undefined) {
    if (!isPlainObject(o.metadata)) throw new InvalidOptionError(`options.metadata must be a plain object (got ${describe(o.metadata)})`)
    let json: string
    try {
      json = JSON.stringify(o.metadata)
    } catch (cause) {
      throw new InvalidOptionError(`options.metadata must be JSON-serializable: ${(cause as Error).message}`)
    }
    metadata = Buffer.from(json, 'utf8')
  }
  const tags = o.tags === undefined ? undefined : resolveTags(o.tags, 'options.tags', maxKeyBytes)
  return { ttl, nx, xx, metadata, tags }
}

/** Validates a list of tags (duplicates dropped). */
export function resolveTags(v: unknown, name: string, maxKeyBytes: number): string[] {
  if (!Array.isArray(v)) throw new InvalidOptionError(`${name} must be an array of strings (got ${describe(v)})`)
  if (v.length > MAX_TAGS) throw new InvalidOptionError(`${name} may hold at most ${MAX_TAGS} tags (got ${v.length})`)
  for (let i = 0; i < v.length; i++) checkTag(v[i], `${name}[${i}]`, maxKeyBytes)
  return [...new Set(v as string[])]
}

/** A tag is a non-empty string of at most `maxKeyBytes` UTF-8 bytes, like a key. */
export function checkTag(t: unknown, name: string, maxKeyBytes: number): asserts t is string {
  if (typeof t !== 'string' || t === '') throw new InvalidOptionError(`${name} must be a non-empty string (got ${describe(t)})`)
  // Sent as UTF-8, which turns a lone surrogate into U+FFFD: two different tags would be one.
  if (!wellFormed(t)) throw new InvalidOptionError(`${name} must be well-formed UTF-16: it has a lone surrogate at index ${loneSurrogateAt(t)} (got ${describe(t)})`)
  if (t.length * 3 > maxKeyBytes && Buffer.byteLength(t) > maxKeyBytes) {
    throw new InvalidOptionError(`${name} is ${plural(Buffer.byteLength(t), 'UTF-8 byte')}, over options.maxKeyBytes (${maxKeyBytes})`)
  }
}
