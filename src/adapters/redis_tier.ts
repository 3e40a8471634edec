/**
 * The Redis tier as a {@link Tier}, for any place in `tiers` (the `l2`
 * option puts it first): `tiers: [{ keyv: sqlite }, { tier: await redisTier({ redis: url }) }]`.
 * It is the same tier as `l2` (src/redis/l2.ts: its codec, tag sets, timeout,
 * breaker and the repair of missed writes, `required` included), with its
 * TTL scale and promotion left to the tier's own options in `tiers` (its
 * `ttlScale` and `promotion` here are ignored). `ioredis` is loaded by the
 * first call.
 */
// No top-level await in this module's graph: see src/index.ts.
import { resolveL2 } from '../options/l2.js'
import type { L2Options } from '../options/l2.js'
import { decodeL2, encodeL2 } from '../redis/l2_codec.js'
import type { Tier } from '../tiers/tier.js'

/** Options of {@link redisTier}: `l2`'s, and the regions whose keys the ACL check at start covers. */
export interface RedisTierOptions extends L2Options {
  /** Regions whose key permissions are checked at start (as createCache does for `l2`). @default [] */
  regions?: string[]
}

/** Connects to Redis (rejecting as createCache does for `l2`: refused credentials, certificates, permissions; an unreachable server only when `required`) and resolves the tier. */
export async function redisTier(options: RedisTierOptions): Promise<Tier & { close(): Promise<void> }> {
  const { regions = [], ...l2 } = options ?? ({} as RedisTierOptions)
  // The chain scales this tier's TTLs and decides its promotions (its options in `tiers`).
  const resolved = { ...resolveL2(l2), ttlScale: 1, promotionFrequency: 1 }
  const { L2Tier } = await import('../redis/l2.js')
  const t = new L2Tier(resolved)
  await t.start(regions)
  return {
    async get(region, key) {
      const hit = await t.get(region, key, true)
      if (hit === undefined) return undefined
      return { bytes: encodeL2(hit.enc, Infinity, hit.tags), ttlMs: hit.ttlMs ?? Infinity, ...(hit.tags === undefined ? {} : { tags: hit.tags }) }
    },
    async set(region, key, e) {
      const enc = decodeL2(Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength))
      if (enc === undefined) throw new Error('redisTier.set: the bytes are not an encoded value')
      await t.set(region, key, enc, e.ttlMs, Infinity, e.tags === undefined ? undefined : [...e.tags])
    },
    delete: (region, keys) => t.delete(region, keys),
    deleteMatching: (region, glob, matches) => t.deleteMatching(region, glob, matches),
    clear: (region) => t.deleteMatching(region, undefined, () => true),
    invalidateTag: (tag) => t.invalidateTag(tag),
    health: async () => t.stats().breaker !== 'open',
    stats: () => {
      const s = t.stats()
      return { hits: s.hits, misses: s.misses, errors: s.errors, unsynced: s.unsynced, pending: s.pending }
    },
    close: () => t.close(),
  }
}
