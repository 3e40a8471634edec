/**
 * Regions: their options, their validation, and one shard's share of a
 * region's budgets, the configuration each shard thread is started with.
 */
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import { EVICTION_POLICIES } from '../wire/region_types.js'
import type { EvictionPolicy, RegionShardConfig } from '../wire/region_types.js'
import { DEFAULTS } from './defaults.js'
import { parseSize, parseTtl, positiveInteger, rejectUnknownKeys } from './parse.js'
import { isPlainObject } from '../wire/values.js'
import type { Size, Ttl } from './parse.js'
import { resolveWriteThrough } from './write_through.js'
import type { ResolvedWriteThrough, WriteThroughOptions } from './write_through.js'

/** Options of one region. A region is a named keyspace with its own policy and budgets. */
export interface RegionOptions {
  /**
   * Which entry is evicted when the region is over a budget (docs/policies.md
   * compares them on real traces and says why the default is `'tinylfu'`):
   * - `'lru'`: the one read or written longest ago;
   * - `'fifo'`: the oldest written (reads and updates do not reorder);
   * - `'sieve'`: SIEVE (NSDI'24): FIFO order, but an entry read since the
   *   eviction hand last passed it is spared once. Hits write one byte and
   *   never reorder.
   * - `'s3fifo'`: S3-FIFO (SOSP'23): new keys wait in a small FIFO queue
   *   (10% of the budget) and only those read again while there move to the
   *   main queue; keys evicted from it soon come back straight into main.
   *   One-hit wonders leave quickly, so it keeps what is read repeatedly.
   * - `'tinylfu'`: W-TinyLFU (as in Caffeine): a small LRU window, then a
   *   segmented LRU that a key enters only if a frequency sketch says it is
   *   requested more than the entry it would displace; the window's size
   *   adapts to the workload. Never more than half a point below LRU on the
   *   traces measured, and far above it on most. Its state costs ~40 bytes
   *   per entry against LRU's 8 (a frequency sketch, and two ghosts of
   *   recently evicted key hashes); after a bulk load of cold keys it takes
   *   longer than LRU to let hot ones in.
   * @default 'tinylfu'
   */
  policy?: EvictionPolicy
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
  /**
   * A backing store that the region's `set`, `mset`, `delete`, `mdelete`
   * and `take` also write (docs/write-through.md), synchronously (the store
   * first, then the cache) or behind, through a bounded and retried queue.
   * Fills are not written back: getOrCompute loads, L2 promotions, peers'
   * updates and restored snapshots came from a store already. `incr` and
   * `cas` reject with `E_UNSUPPORTED` on such a region (their
   * read-modify-write happens in the shard, where the store cannot follow),
   * and so do `set`'s `nx` and `xx`.
   * @default none
   */
  writeThrough?: WriteThroughOptions
}

/**
 * A region after validation, as a {@link CacheHandle} carries it to attaching
 * threads: totals over all shards, not per-shard shares.
 */
export interface ResolvedRegion {
  name: string
  index: number
  policy: EvictionPolicy
  maxBytes: number
  maxEntries: number
  defaultTtl: number
  compressMinBytes: number
  compressDictionary: boolean
  /** The `writeThrough` mode, when the region has one (its store stays on the thread that created the cache). */
  writeMode: 'sync' | 'async' | undefined
}

const REGION_KEYS = ['policy', 'maxBytes', 'maxEntries', 'ttl', 'compression', 'writeThrough']

/** Validates one region's options; its `writeThrough`, if any, is put in `writes` under the region's index. */
export function resolveRegion(name: string, index: number, o: unknown, shards: number, writes?: Map<number, ResolvedWriteThrough>): ResolvedRegion {
  const at = `regions.${name}`
  if (!isPlainObject(o)) throw new InvalidOptionError(`${at} must be an object (got ${describe(o)})`)
  rejectUnknownKeys(o, REGION_KEYS, `${at}.`)
  const policy = (o.policy ?? DEFAULTS.policy) as EvictionPolicy
  if (!(EVICTION_POLICIES as readonly unknown[]).includes(policy)) {
    throw new InvalidOptionError(`${at}.policy must be one of ${EVICTION_POLICIES.map((p) => `"${p}"`).join(', ')} (got ${describe(policy)})`)
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
  let writeMode: ResolvedRegion['writeMode']
  if (o.writeThrough !== undefined) {
    const w = resolveWriteThrough(o.writeThrough, `${at}.writeThrough`)
    writeMode = w.mode
    writes?.set(index, w)
  }
  return { name, index, policy, maxBytes, maxEntries, defaultTtl, compressMinBytes, compressDictionary, writeMode }
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
