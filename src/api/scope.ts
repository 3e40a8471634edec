/**
 * What every concern of one region shares: the {@link Core}, the resolved
 * region and its per-shard budget, and the steps that more than one of them
 * takes (a validated set to the shard, peers and L2; an L2 read with its
 * promotion; size and glob checks; the region-wide ops). A {@link CacheRegion}
 * (src/api/region.ts) holds one, and hands it to the read-through
 * (read_through.ts) and remote-apply (remote.ts) code, which live in files
 * of their own: the region is one public class, and its `#private` members
 * could not be reached from another file, so what they share is here,
 * as a helper object rather than as `@internal` members of the public class.
 */
import { ClosedError, InvalidKeyError, ValueTooLargeError } from '../errors.js'
import { ENTRY_OVERHEAD_BYTES, TAG_LINK_OVERHEAD_BYTES, ValueTag, tagChargeBytes } from '../wire/protocol.js'
import type { ResolvedRegion } from '../options/regions.js'
import type { ResolvedSet } from '../options/operations.js'
import { decodeValue, loneSurrogateAt, wellFormed } from '../wire/values.js'
import type { EncodedValue } from '../wire/values.js'
import { describe, plural } from '../messages.js'
import type { Router } from '../client/router.js'
import { sendDelete, sendPeek, sendSet } from '../client/ops/values.js'
import { sendClear, sendDeletePattern, sendInvalidateTag } from '../client/ops/scan.js'
import { BusOpType } from '../redis/bus_message.js'
import type { BusEntry } from '../redis/bus_message.js'
import type { L2Value } from '../redis/l2.js'
import { Collector, Deferred, IGNORE, addNumbers, countTrue } from './core.js'
import { Maintenance } from '../ops/maintenance.js'
import type { Core } from './core.js'

/** One region's share of the facade's state and steps (see the file's header). */
export class RegionScope {
  /** Smallest per-shard byte budget of the region: an entry larger than this can never be stored. */
  readonly shareBytes: number

  constructor(
    readonly core: Core,
    readonly region: ResolvedRegion,
  ) {
    // With rebalancing, a shard's budget may drop to a share of an even one: an entry must fit that.
    this.shareBytes = Maintenance.floor(core.options.maintenance, region, core.router.shardCount)
  }

  /** A validated set: to the key's shard, and to peers through the bus. */
  store(key: string, enc: EncodedValue, opts: ResolvedSet, fill = false): Promise<boolean> {
    const d = new Deferred<boolean>()
    sendSet(this.core.router, this.region.index, key, enc, opts, d, 0)
    if (this.core.bus !== undefined) this.publishSets([[key, enc]], opts, fill)
    if (this.core.l2 === undefined) return d.promise
    // L2 gets what the shard stored (an nx/xx set it refused is not written there either).
    return d.promise.then((stored) => (stored ? this.toL2(key, enc, opts).then(() => stored) : stored))
  }

  /** Removes `keys` from their shards, from peers (through the bus) and from L2; resolves how many live entries the shards removed. */
  deleteKeys(keys: readonly string[]): Promise<number> {
    const c = new Collector<number>(keys.length, countTrue)
    for (let i = 0; i < keys.length; i++) sendDelete(this.core.router, this.region.index, keys[i]!, c, i)
    if (keys.length > 0) this.core.bus?.publish({ type: BusOpType.DELETE, region: this.region.name, keys: [...keys] })
    const l2 = this.core.l2
    return l2 === undefined ? c.promise : Promise.all([c.promise, l2.delete(this.region.name, keys)]).then(([n]) => n)
  }

  /** The L2 side of a set (after the shard stored it): with the entry's TTL x ttlScale, and its tags. */
  toL2(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<void> {
    const r = this.region
    return this.core.l2!.set(r.name, key, enc, opts.ttl ?? r.defaultTtl, r.compressMinBytes, opts.tags)
  }

  /**
   * An L1 miss read from L2, promoted into the shard (1 in promotion.frequency)
   * with L2's remaining TTL. The promotion is not awaited: the value is
   * returned at once, and this thread's later reads of the key are ordered
   * after the write (the router holds direct reads back while it is pending).
   * `mark` is the key's {@link Router.fillMark} from before the shard was
   * asked, `startedAt` when L2 was: the promotion is skipped when a write may
   * be newer than what L2 answered (see {@link Router.mayFill}).
   */
  async fromL2<T>(key: string, found?: L2Value, mark = this.core.router.fillMark(this.region.index, key), startedAt = performance.now()): Promise<T | undefined> {
    const l2 = this.core.l2!
    const promote = l2.shouldPromote()
    // The remaining TTL is only needed to promote: without it, one command instead of two.
    const hit = found ?? (await l2.get(this.region.name, key, promote))
    if (hit === undefined) return undefined
    const value = decodeValue(hit.enc.tag, Buffer.from(hit.enc.bytes.buffer, hit.enc.bytes.byteOffset, hit.enc.bytes.byteLength), this.core.options.codec) as T
    if (promote && hit.ttlMs !== undefined) {
      const opts: ResolvedSet = { ttl: hit.ttlMs, nx: false, xx: false, metadata: undefined, tags: hit.tags }
      let fits = true
      try {
        this.checkSize(key, hit.enc, opts)
      } catch {
        fits = false // too large for this region's share: served, not kept
      }
      // A fill, not a write: not published (peers did not lose anything), not written back to L2.
      // Not stored when a write here, or a peer's invalidation, may be newer than what L2 said.
      if (fits && this.core.router.mayFill(this.region.index, key, mark, startedAt, l2.fillWindowMs)) {
        l2.promoted()
        sendSet(this.core.router, this.region.index, key, hit.enc, opts, IGNORE, 0)
      }
    }
    return value
  }

  /**
   * Tells peers about sets: their values in update mode, else (and for
   * nx/xx sets, whose outcome is not known yet) an invalidation of the keys.
   *
   * A `fill` (a getOrCompute loader's result) is not an invalidation: the
   * source did not change, so a peer's copy is as good as this one, and
   * invalidating it would make instances that read the same key drop each
   * other's copy on every load. An update-mode bus still carries its value.
   */
  publishSets(list: readonly (readonly [string, EncodedValue])[], opts: ResolvedSet, fill = false): void {
    const bus = this.core.bus!
    const region = this.region.name
    if (fill && bus.mode === 'invalidate') return
    if (bus.mode === 'update' && !opts.nx && !opts.xx) {
      // The bytes are sent on a later tick: copy what the caller could still change.
      const entries: BusEntry[] = list.map(([key, enc]) => ({
        key,
        tag: enc.tag,
        bytes: enc.tag === ValueTag.BUFFER || enc.tag === ValueTag.UINT8ARRAY ? Uint8Array.prototype.slice.call(enc.bytes) : enc.bytes,
        ttl: opts.ttl,
        metadata: opts.metadata,
        tags: opts.tags,
      }))
      bus.publish(fill ? { type: BusOpType.UPDATE, region, entries, fill } : { type: BusOpType.UPDATE, region, entries })
    } else {
      bus.publish({ type: BusOpType.DELETE, region, keys: list.map(([key]) => key) })
    }
  }

  open(): void {
    if (this.core.closed || this.core.router.closed) throw new ClosedError()
  }

  /** `name`: the argument's name in messages (`glob`, or scan's `options.match`). */
  checkGlob(glob: unknown, name = 'glob'): void {
    if (typeof glob !== 'string' || glob.length === 0) {
      throw new InvalidKeyError(`${name} must be a non-empty string (got ${describe(glob)})`)
    }
    if (!wellFormed(glob)) {
      throw new InvalidKeyError(`${name} must be well-formed UTF-16: it has a lone surrogate at index ${loneSurrogateAt(glob)}, which UTF-8 cannot hold`)
    }
    const n = Buffer.byteLength(glob)
    if (n > this.core.options.maxKeyBytes) {
      throw new InvalidKeyError(`${name} is ${plural(n, 'UTF-8 byte')}, over options.maxKeyBytes (${this.core.options.maxKeyBytes})`)
    }
  }

  checkSize(key: string, enc: EncodedValue, opts: ResolvedSet): void {
    const max = this.core.options.maxValueBytes
    const n = enc.bytes.length
    if (n > max) throw new ValueTooLargeError(`value is ${plural(n, 'byte')}, over options.maxValueBytes (${max})`)
    const meta = opts.metadata?.length ?? 0
    // Tags are charged too (see TAG_LINK_OVERHEAD_BYTES): the shard keeps them on its heap.
    const tags = opts.tags === undefined || opts.tags.length === 0 ? 0 : tagChargeBytes(opts.tags)
    // Cheap bound first; count the key's UTF-8 bytes only near the limit.
    if (key.length * 3 + n + meta + tags + ENTRY_OVERHEAD_BYTES <= this.shareBytes) return
    const charge = Buffer.byteLength(key) + n + meta + tags + ENTRY_OVERHEAD_BYTES
    if (charge > this.shareBytes) {
      const r = this.region
      const parts = tags === 0 ? '' : ` + ${tags} for ${plural(opts.tags!.length, 'tag')} (UTF-8 bytes + ${TAG_LINK_OVERHEAD_BYTES} each)`
      throw new ValueTooLargeError(
        `entry is ${plural(charge, 'byte')} (key + value + metadata${parts} + ${ENTRY_OVERHEAD_BYTES}), over region "${r.name}"'s per-shard budget ` +
          `of ${plural(this.shareBytes, 'byte')} (regions.${r.name}.maxBytes ${r.maxBytes} over ${plural(this.core.router.shardCount, 'shard')}` +
          `${this.core.options.maintenance?.rebalance !== undefined && this.core.router.shardCount > 1 ? `, times maintenance.rebalance.minShare ${this.core.options.maintenance.rebalance.minShare}` : ''})`,
      )
    }
  }

  /** A read of `key` that is not counted as one (see sendPeek). */
  peek<T>(key: string): Promise<T | undefined> {
    const router = this.core.router
    const d = new Deferred<T | undefined>()
    sendPeek(router, this.region.index, key, router.shardOf(key), d, 0)
    return d.promise
  }

  /** Removes the region's keys matching `glob` in every shard; resolves how many. */
  deletePattern(glob: string): Promise<number> {
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendDeletePattern(this.core.router, this.region.index, glob, c)
    return c.promise
  }

  /** Empties the region in every shard; resolves how many live entries there were. */
  clear(): Promise<number> {
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendClear(this.core.router, this.region.index, c)
    return c.promise
  }

  /** Removes the region's entries carrying `tag` in every shard (not in peers' nor in L2); resolves how many. */
  invalidateTag(tag: string): Promise<number> {
    const c = new Collector<number>(this.core.router.shardCount, addNumbers)
    sendInvalidateTag(this.core.router, this.region.index, tag, c)
    return c.promise
  }
}
