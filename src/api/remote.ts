/**
 * Changes that come from elsewhere: peers' ops from the bus applied to this
 * instance's shards (without publishing them again), bus flushes, an
 * attached thread's writes relayed to L2 by the owner, and L2 repairs
 * published to peers. Functions of the region's {@link RegionScope}, apart
 * from the region class (src/api/region.ts, whose `@internal` applyRemote
 * and flushLocal call them): that class's `#private` members cannot be
 * reached from another file, and none of this is on a caller's path.
 */
import { ValueTag } from '../wire/protocol.js'
import type { ResolvedRegion } from '../options/regions.js'
import type { ResolvedSet } from '../options/operations.js'
import type { EncodedValue } from '../wire/values.js'
import { sendDelete, sendSet } from '../client/ops/values.js'
import { BusOpType } from '../redis/bus_message.js'
import type { BusOp } from '../redis/bus_message.js'
import type { Bus, BusHost, FlushEvent, FlushReason, InvalidationEvent } from '../redis/bus.js'
import type { L2Repaired } from '../redis/l2.js'
import type { TierChain } from '../tiers/chain.js'
import { Glob } from '../wire/glob.js'
import { Collector, countTrue, emit } from './core.js'
import type { Core } from './core.js'
import type { RegionScope } from './scope.js'

/** What the bus host applies peers' ops to: a region handle (src/api/region.ts). */
export interface RemoteTarget {
  applyRemote(op: BusOp, origin: string): Promise<unknown>
  flushLocal(): Promise<number>
}

/**
 * Applies one op a peer published, without publishing it again,
 * and announces it; resolves once the shards applied it. Keys and values a local call would refuse
 * (too long, too large for this region) are deleted instead: this
 * instance must not keep an older value of a key a peer changed.
 */
export function applyRemote(scope: RegionScope, op: BusOp, origin: string): Promise<unknown> {
  const name = scope.region.name
  const maxKeyBytes = scope.core.options.maxKeyBytes
  const validKey = (k: string): boolean => k.length > 0 && Buffer.byteLength(k) <= maxKeyBytes
  let done: Promise<unknown>
  let event: InvalidationEvent
  const router = scope.core.router
  if (op.type === BusOpType.DELETE) for (const k of op.keys) router.remoteWrite(scope.region.index, k)
  else if (op.type === BusOpType.UPDATE) for (const e of op.entries) router.remoteWrite(scope.region.index, e.key)
  else router.remoteWrite(scope.region.index, undefined)
  switch (op.type) {
    case BusOpType.DELETE: {
      const keys = op.keys.filter(validKey)
      const c = new Collector<number>(keys.length, countTrue)
      for (let i = 0; i < keys.length; i++) sendDelete(scope.core.router, scope.region.index, keys[i]!, c, i)
      done = c.promise
      event = { origin, region: name, type: 'delete', keys: op.keys }
      break
    }
    case BusOpType.UPDATE: {
      const entries = op.entries.filter((e) => validKey(e.key))
      const c = new Collector<number>(entries.length, countTrue)
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!
        const enc: EncodedValue = { tag: e.tag, bytes: e.bytes }
        const opts: ResolvedSet = { ttl: e.ttl, nx: false, xx: false, metadata: e.metadata, tags: e.tags }
        let storable = e.tag <= ValueTag.CODEC
        if (storable) {
          try {
            scope.checkSize(e.key, enc, opts)
          } catch {
            storable = false
          }
        }
        if (storable) sendSet(scope.core.router, scope.region.index, e.key, enc, opts, c, i)
        else sendDelete(scope.core.router, scope.region.index, e.key, c, i)
      }
      done = c.promise
      event = { origin, region: name, type: 'update', keys: op.entries.map((e) => e.key) }
      break
    }
    case BusOpType.PATTERN:
      done = validKey(op.glob) ? scope.deletePattern(op.glob) : Promise.resolve(0)
      event = { origin, region: name, type: 'pattern', pattern: op.glob }
      break
    case BusOpType.CLEAR:
      done = scope.clear()
      event = { origin, region: name, type: 'clear' }
      break
    case BusOpType.TAG:
      done = validKey(op.tag) ? scope.invalidateTag(op.tag) : Promise.resolve(0)
      event = { origin, region: name, type: 'tag', tag: op.tag }
      break
  }
  // Announced once issued, in message order: a read issued from the listener already runs after the op.
  emit(scope.core.events, 'invalidation', event)
  return done
}

/** Empties the region without publishing (a bus flush). Issues its ops before it returns. */
export function flushLocal(scope: RegionScope): Promise<number> {
  scope.core.router.remoteWrite(scope.region.index, undefined)
  return scope.clear()
}

/** How the bus changes a cache: peers' ops applied region by region, flushes of every region. */
export function busHost(cache: { region(name: string): RemoteTarget }, core: Core): BusHost {
  const regions = core.options.regions.map((r) => r.name)
  return {
    apply: async (ops, origin) => {
      const known = ops.filter((op) => regions.includes(op.region))
      await Promise.all(known.map((op) => cache.region(op.region).applyRemote(op, origin)))
      return known.length
    },
    flush: async (reason: FlushReason) => {
      const done = Promise.all(regions.map((r) => cache.region(r).flushLocal()))
      // Announced once issued: a read issued from the listener already runs after the clears.
      emit(core.events, 'flush', { reason, regions } satisfies FlushEvent)
      await done
    },
  }
}

/**
 * An attached thread's write, applied to the L2 tier by the owner. After the
 * write's promise resolved on its thread: L2 trails it by a message. A
 * failure is counted in the tier's stats (there is no caller left to reject).
 */
export async function relayToL2(l2: TierChain, regions: ResolvedRegion[], op: BusOp): Promise<void> {
  const r = regions.find((x) => x.name === op.region)
  if (r === undefined) return
  try {
    switch (op.type) {
      case BusOpType.UPDATE:
        await Promise.all(op.entries.map((e) => l2.set(r.name, e.key, { tag: e.tag, bytes: e.bytes }, e.ttl ?? r.defaultTtl, r.compressMinBytes, e.tags)))
        break
      case BusOpType.DELETE:
        await l2.delete(r.name, op.keys)
        break
      case BusOpType.PATTERN: {
        const g = new Glob(op.glob)
        await l2.deleteMatching(r.name, op.glob, (k) => g.matches(k))
        break
      }
      case BusOpType.CLEAR:
        await l2.deleteMatching(r.name, undefined, () => true)
        break
      case BusOpType.TAG:
        await l2.invalidateTag(op.tag)
        break
    }
  } catch {
    // Only with l2.required: counted as an error by the tier.
  }
}

/** Publishes what an L2 repair removed, as the invalidations peers apply (a tag's keys span every region). */
export function repairedToBus(bus: Bus, regions: ResolvedRegion[]): (r: L2Repaired) => void {
  return (r) => {
    if ('tag' in r) for (const x of regions) bus.publish({ type: BusOpType.TAG, region: x.name, tag: r.tag })
    else if ('keys' in r) bus.publish({ type: BusOpType.DELETE, region: r.region, keys: r.keys })
    else if (r.glob === undefined) bus.publish({ type: BusOpType.CLEAR, region: r.region })
    else bus.publish({ type: BusOpType.PATTERN, region: r.region, glob: r.glob })
  }
}
