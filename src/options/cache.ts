/**
 * Options of {@link createCache}: their types and resolveOptions, which
 * validates them (each part in the file of its concern: regions, bus, l2,
 * loaders) and fills in defaults, into what router and shards use. Every
 * message names the option to fix.
 */
import { availableParallelism } from 'node:os'
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { ResolvedBus } from '../redis/bus.js'
import type { ResolvedL2 } from '../redis/l2.js'
import type { ResolvedBackup } from '../ops/backup.js'
import type { ResolvedAlerts } from '../ops/alerts.js'
import type { ResolvedTracing } from '../ops/tracing.js'
import { MAX_KEY_BYTES_LIMIT } from '../wire/protocol.js'
import type { Codec } from '../wire/values.js'
import { resolveAlerts } from './alerts.js'
import type { AlertOptions } from './alerts.js'
import { resolveBackup } from './backup.js'
import { resolveTracing } from './tracing.js'
import type { TracingOptions } from './tracing.js'
import type { BackupOptions } from './backup.js'
import { resolveBus } from './bus.js'
import type { BusOptions } from './bus.js'
import { DEFAULTS } from './defaults.js'
import { resolveL2 } from './l2.js'
import type { L2Options } from './l2.js'
import { resolveLoaders } from './operations.js'
import type { LoaderOptions } from './operations.js'
import { parseSize, positiveInteger, rejectUnknownKeys } from './parse.js'
import { isPlainObject } from '../wire/values.js'
import type { Size } from './parse.js'
import { resolveRegion } from './regions.js'
import type { RegionOptions, ResolvedRegion } from './regions.js'
import type { ResolvedWriteThrough } from './write_through.js'
import { resolveTiers } from './tiers.js'
import { resolveMaintenance } from './maintenance.js'
import type { MaintenanceOptions } from './maintenance.js'
import type { ResolvedMaintenance } from '../ops/maintenance.js'
import type { TierOptions } from './tiers.js'
import type { ResolvedTier } from '../tiers/member.js'

/** Options of {@link createCache}. */
export interface CacheOptions {
  /**
   * Number of shard worker threads.
   * @default os.availableParallelism() - 1, at least 1
   */
  shards?: number
  /**
   * The regions. A region named `default` serves operations that name no
   * region; when it is not listed it is added with `{ policy: 'tinylfu', maxBytes: '64mb' }`.
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
   * callers with shard CPU (at most this much per frame). Adaptive: a shard
   * keeps spinning only while at least a third of its spins see the next
   * frame arrive, and otherwise spins after one small frame in 16 to notice
   * when they would again, so a server whose writes come a millisecond apart
   * does not lose a core to it. Shards share cores − 1 spin slots. 0 turns
   * it off.
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
  /**
   * More tiers behind the shards (and behind `l2`, when given), in order: any
   * Keyv store (`{ keyv: new KeyvPostgres(uri) }`) or an implementation of
   * the {@link Tier} contract (`{ tier }`). Reads go down the tiers and copy
   * a hit up; writes, deletes, pattern deletes, clears and tags reach every
   * one; each is skipped by its own breaker while it fails. See
   * {@link TierOptions} and docs/tiers.md.
   */
  tiers?: TierOptions[]
  /**
   * A snapshot file to load before `createCache` resolves, or a directory of
   * backups, whose newest readable one is loaded (see `cache.restore`).
   */
  restore?: string
  /** Snapshots into a directory on a schedule, the oldest removed. See {@link BackupOptions}. */
  backup?: BackupOptions
  /** `'alert'` events when a region's memory use or eviction rate passes a threshold. See {@link AlertOptions}. */
  alerts?: AlertOptions
  /** Scheduled upkeep: cleanup of expired entries, rebalance of byte budgets between shards. See {@link MaintenanceOptions}. */
  maintenance?: MaintenanceOptions
  /** OpenTelemetry spans of cache operations (needs `@opentelemetry/api`). See {@link TracingOptions}. @default false */
  tracing?: boolean | TracingOptions
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
  /** `tiers`, after `l2` (empty: none). */
  tiers: ResolvedTier[]
  /** A snapshot (or a directory of backups) to load at start. */
  restore?: string
  /** Undefined: no backups. */
  backup?: ResolvedBackup
  /** Undefined: no alerts. */
  alerts?: ResolvedAlerts
  /** Undefined: no scheduled maintenance. */
  maintenance?: ResolvedMaintenance
  /** Undefined: no spans. */
  tracing?: ResolvedTracing
  /** Shard threads' `resourceLimits` (the default merged with the user's). */
  resourceLimits?: ShardResourceLimits
  /** Regions' `writeThrough`, by region index (owner only: a store cannot cross threads). */
  writes: Map<number, ResolvedWriteThrough>
}

const CACHE_KEYS = ['shards', 'regions', 'maxKeyBytes', 'maxValueBytes', 'codec', 'idleSpinMicros', 'replySpinMicros', 'nearCache', 'bus', 'loaders', 'l2', 'tiers', 'restore', 'backup', 'alerts', 'maintenance', 'tracing', 'resourceLimits']
const RESOURCE_LIMIT_KEYS = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'] as const

/** What a bad codec is: not an object, or the function it lacks. */
function describeCodec(c: unknown): string {
  if (c === null || typeof c !== 'object') return describe(c)
  const { encode, decode } = c as Partial<Codec>
  if (typeof encode !== 'function') return `an object whose encode is ${describe(encode)}`
  return `an object whose decode is ${describe(decode)}`
}

/** A spin budget: an integer number of microseconds up to one second. */
function micros(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 1_000_000) {
    throw new InvalidOptionError(`${name} must be an integer from 0 to 1000000 (got ${describe(v)})`)
  }
  return v
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
  const writes = new Map<number, ResolvedWriteThrough>()
  const regions = names.map((name, i) => {
    if (name === '') throw new InvalidOptionError('options.regions: a region name must not be empty')
    return resolveRegion(name, i, Object.hasOwn(given, name) ? given[name] : {}, shards, writes)
  })
  const bus = o.bus === undefined ? undefined : resolveBus(o.bus, maxKeyBytes)
  const loaderPool = o.loaders === undefined ? undefined : resolveLoaders(o.loaders)
  const l2 = o.l2 === undefined ? undefined : resolveL2(o.l2)
  const tiers = o.tiers === undefined ? [] : resolveTiers(o.tiers, l2 === undefined ? 2 : 3)
  if (o.restore !== undefined && (typeof o.restore !== 'string' || o.restore === '')) {
    throw new InvalidOptionError(`options.restore must be the path of a snapshot file or of a directory of backups (got ${describe(o.restore)})`)
  }
  const restore = o.restore as string | undefined
  const backup = o.backup === undefined ? undefined : resolveBackup(o.backup)
  const alerts = o.alerts === undefined ? undefined : resolveAlerts(o.alerts)
  const maintenance = o.maintenance === undefined ? undefined : resolveMaintenance(o.maintenance)
  const tracing = o.tracing === undefined ? undefined : resolveTracing(o.tracing)
  const resourceLimits = resolveResourceLimits(o.resourceLimits)
  return { shards, maxKeyBytes, maxValueBytes, codec, idleSpinMicros, replySpinMicros, nearCacheEntries, regions, bus, loaderPool, l2, tiers, restore, backup, alerts, maintenance, tracing, resourceLimits, writes }
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

function resolveNearCache(v: unknown): number {
  if (v === undefined || v === false) return 0
  if (!isPlainObject(v)) throw new InvalidOptionError(`options.nearCache must be false or an object like { maxEntries: 10000 } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['maxEntries'], 'options.nearCache.')
  return v.maxEntries === undefined ? DEFAULTS.nearCacheEntries : positiveInteger(v.maxEntries, 'options.nearCache.maxEntries', 2 ** 24)
}
