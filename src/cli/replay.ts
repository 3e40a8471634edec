/**
 * Trace replay through the shards' own region store (workers/region_store.ts),
 * run in this thread, the way cache papers replay traces: a get per request,
 * and on a miss a set of the object. What `shardcache replay` and the bench's
 * hit-ratio section (bench/hit_ratio.ts) both run.
 *
 * A replay is one policy (any of {@link EVICTION_POLICIES}), one budget and
 * one shard count. The budget is entries (each value 1 byte, no byte budget)
 * or, with `bytes`, bytes: each object is stored as a value of its size in
 * the trace under a region `maxBytes`, and charged what the real cache
 * charges (key + value + ENTRY_OVERHEAD_BYTES), so the store holds somewhat
 * fewer object bytes than a simulator counting sizes alone would. An object
 * whose charge exceeds its shard's budget is not stored (the real cache
 * rejects such a set with ValueTooLargeError) and counts as a miss.
 *
 * With N shards the replay runs N stores, each key going to the store the
 * router would send it to (src/client/direct_reads.ts's shardOfHash of the
 * key's keyHash16, the functions the router calls) and each store built with
 * its share of the budget (regionShare, as createCache builds them), so the
 * figure is what a sharded cache of that size hits.
 */
import bytes from 'bytes'
import { RegionStore } from '../../workers/region_store.js'
import { ENTRY_OVERHEAD_BYTES, ValueTag } from '../wire/protocol.js'
import type { EvictionPolicy } from '../wire/region_types.js'
import { regionShare } from '../options/regions.js'
import type { ResolvedRegion } from '../options/regions.js'
import { keyHash16, shardOfHash } from '../client/direct_reads.js'
import type { Trace, TraceFormat } from './traces.js'

/** A cache size as asked: a share of the trace (its unique keys, or its footprint in bytes), or a count of entries (or bytes). */
export type CacheSize = { percent: number } | { count: number }

/** `10%` as a share of the trace, `5000` as a count; undefined for anything else (zero, a sign, an exponent, a unit). */
export function parseCacheSize(s: string): CacheSize | undefined {
  const pct = /^([0-9]+(?:\.[0-9]+)?)%$/.exec(s)
  if (pct !== null) {
    const percent = Number(pct[1])
    return percent > 0 ? { percent } : undefined
  }
  if (!/^[0-9]+$/.test(s)) return undefined
  const count = Number(s)
  return Number.isSafeInteger(count) && count >= 1 ? { count } : undefined
}

/** A size as the user wrote it: `10%`, `5000`. */
export function cacheSizeText(size: CacheSize): string {
  return 'percent' in size ? `${size.percent}%` : String(size.count)
}

/** Bytes as the options read them (1024-based, as `maxBytes: '64MB'` means): `19.36 MB`. */
export function formatBytes(n: number): string {
  return bytes.format(n, { unitSeparator: ' ' }) ?? `${n} B`
}

/** A trace made ready to replay many times: its keys encoded once, its footprint summed. */
export interface PreparedTrace {
  trace: Trace
  /** Every key's UTF-8 bytes back to back: key k is `keyBytes[keyStart[k] .. keyStart[k + 1])`. */
  keyBytes: Buffer
  keyStart: Uint32Array
  uniqueKeys: number
  /** Sum over the unique objects of each one's size (at its first request); undefined without sizes. */
  footprintBytes: number | undefined
  /** Sum of every request's size; undefined without sizes. */
  requestBytes: number | undefined
  /** The largest object, for the one value buffer a byte replay slices. */
  maxObjectBytes: number
}

/** Encodes the keys of `trace` and sums its sizes. */
export function prepareTrace(trace: Trace): PreparedTrace {
  const { names, keys, sizes } = trace
  const encoded = names.map((n) => Buffer.from(n, 'utf8'))
  const keyStart = new Uint32Array(names.length + 1)
  for (let k = 0; k < encoded.length; k++) keyStart[k + 1] = keyStart[k]! + encoded[k]!.length
  let footprintBytes: number | undefined
  let requestBytes: number | undefined
  let maxObjectBytes = 1
  if (sizes !== undefined) {
    footprintBytes = 0
    requestBytes = 0
    // Dense keys appear in order: key k's first request is the first whose key is k.
    let next = 0
    for (let i = 0; i < keys.length; i++) {
      const size = sizes[i]!
      requestBytes += size
      if (size > maxObjectBytes) maxObjectBytes = size
      if (keys[i] === next) {
        footprintBytes += size
        next++
      }
    }
  }
  return { trace, keyBytes: Buffer.concat(encoded), keyStart, uniqueKeys: names.length, footprintBytes, requestBytes, maxObjectBytes }
}

/** The budget `size` stands for in `p`: entries, or bytes with `bytes` (a share rounds down, to at least 1). */
export function budgetOf(p: PreparedTrace, size: CacheSize, bytes: boolean): number {
  if ('count' in size) return size.count
  const whole = bytes ? p.footprintBytes! : p.uniqueKeys
  return Math.max(1, Math.floor((whole * size.percent) / 100))
}

/** What one replay counted. */
export interface ReplayCounts {
  hits: number
  /** Bytes of the requests that hit (a byte replay; 0 otherwise). */
  hitBytes: number
  /** Misses not stored because the object alone is over its shard's budget (a byte replay; 0 otherwise). */
  tooLarge: number
  elapsedMs: number
}

/** How one replay runs. */
export interface ReplayOptions {
  policy: EvictionPolicy
  /** Entries, or bytes when `bytes`. */
  budget: number
  /** Store each object at its size under a byte budget (needs a trace with sizes). */
  bytes: boolean
  /** Stores the keys are partitioned over, each with its share of the budget. */
  shards: number
}

/** Replays `p` once. Throws when an entry budget is below the shard count (a shard would hold nothing; createCache refuses it too). */
export function replayTrace(p: PreparedTrace, o: ReplayOptions): ReplayCounts {
  const { keys, sizes, names } = p.trace
  if (o.bytes && sizes === undefined) throw new Error('a byte replay needs a trace with sizes (oracle format)')
  if (!o.bytes && o.budget < o.shards) throw new RangeError(`${o.budget} entries cannot be shared by ${o.shards} shards`)
  const region: ResolvedRegion = {
    name: 'replay',
    index: 0,
    policy: o.policy,
    maxBytes: o.bytes ? o.budget : Infinity,
    maxEntries: o.bytes ? Infinity : o.budget,
    defaultTtl: Infinity,
    // Compression would charge an object less than its size: the sizes are the trace's.
    compressMinBytes: Infinity,
    compressDictionary: false,
    writeMode: undefined,
  }
  const stores = Array.from({ length: o.shards }, (_, s) => new RegionStore(regionShare(region, s, o.shards)))
  const shareBytes = stores.map((s) => s.config.maxBytes)
  const shardOf = o.shards === 1 ? undefined : Uint16Array.from(names, (n) => shardOfHash(keyHash16(n), o.shards))
  const value = new Uint8Array(o.bytes ? p.maxObjectBytes : 1)
  const { keyBytes, keyStart } = p
  let hits = 0
  let hitBytes = 0
  let tooLarge = 0
  const t0 = performance.now()
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!
    const start = keyStart[k]!
    const len = keyStart[k + 1]! - start
    const s = shardOf === undefined ? 0 : shardOf[k]!
    const store = stores[s]!
    if (store.getAt(keyBytes, start, len) !== undefined) {
      hits++
      if (o.bytes) hitBytes += sizes![i]!
      continue
    }
    if (!o.bytes) {
      store.setAt(keyBytes, start, len, ValueTag.BUFFER, value, undefined, false, false, undefined)
      continue
    }
    const size = sizes![i]!
    if (len + size + ENTRY_OVERHEAD_BYTES > shareBytes[s]!) {
      tooLarge++
      continue
    }
    store.setAt(keyBytes, start, len, ValueTag.BUFFER, value.subarray(0, size), undefined, false, false, undefined)
  }
  return { hits, hitBytes, tooLarge, elapsedMs: performance.now() - t0 }
}

/** One replay's result, as `replay --json` prints it. */
export interface ReplayResult {
  policy: EvictionPolicy
  /** The size as asked: `10%`, `5000`. */
  sizeAsked: string
  /** The budget: entries, or bytes when `bytes`. */
  size: number
  bytes: boolean
  shards: number
  requests: number
  hits: number
  hitRatio: number
  /** A byte replay's: bytes requested, bytes of the hits, their ratio, and the objects too large to store. */
  requestBytes?: number
  hitBytes?: number
  byteHitRatio?: number
  tooLarge?: number
  elapsedMs: number
}

/** Every replay of a plan over one trace, with the trace's figures. */
export interface ReplayReport {
  trace: string
  format: TraceFormat
  requests: number
  uniqueKeys: number
  /** With sizes (oracle): the sum of each unique object's size, and of every request's. */
  footprintBytes?: number
  requestBytes?: number
  results: ReplayResult[]
}

/** What to replay: every policy at every size and shard count. */
export interface ReplayPlan {
  policies: readonly EvictionPolicy[]
  sizes: readonly CacheSize[]
  shards: readonly number[]
  bytes: boolean
}

/** Replays `p` for every (size, shard count, policy) of `plan`, in that order; `name` is the trace's, for the report. */
export function replayPlan(name: string, p: PreparedTrace, plan: ReplayPlan): ReplayReport {
  const requests = p.trace.keys.length
  const report: ReplayReport = { trace: name, format: p.trace.format, requests, uniqueKeys: p.uniqueKeys, results: [] }
  if (p.footprintBytes !== undefined) {
    report.footprintBytes = p.footprintBytes
    report.requestBytes = p.requestBytes
  }
  for (const size of plan.sizes) {
    const budget = budgetOf(p, size, plan.bytes)
    for (const shards of plan.shards) {
      for (const policy of plan.policies) {
        const c = replayTrace(p, { policy, budget, bytes: plan.bytes, shards })
        const r: ReplayResult = {
          policy,
          sizeAsked: cacheSizeText(size),
          size: budget,
          bytes: plan.bytes,
          shards,
          requests,
          hits: c.hits,
          hitRatio: requests === 0 ? 0 : c.hits / requests,
          elapsedMs: c.elapsedMs,
        }
        if (plan.bytes) {
          r.requestBytes = p.requestBytes!
          r.hitBytes = c.hitBytes
          r.byteHitRatio = p.requestBytes! === 0 ? 0 : c.hitBytes / p.requestBytes!
          r.tooLarge = c.tooLarge
        }
        report.results.push(r)
      }
    }
  }
  return report
}
