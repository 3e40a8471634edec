// A region store's byte budget changed at run time (a rebalance between
// shards, src/ops/maintenance.ts): for every policy, random sets, reads and
// deletes interleaved with budget changes keep the store's invariants and its
// byte accounting, a smaller budget is met at once by evictions (counted),
// and a larger one (up to the reserved ceiling) is used.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { RegionStore } from '../../workers/region_store.js'
import { EVICTION_POLICIES } from '../../src/wire/region_types.js'
import type { RegionShardConfig } from '../../src/wire/region_types.js'

type Op = { op: 'set'; key: number; size: number } | { op: 'get' | 'delete'; key: number } | { op: 'resize'; maxBytes: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 60 }), size: fc.integer({ min: 0, max: 400 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constantFrom('get' as const, 'delete' as const), key: fc.integer({ min: 0, max: 60 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('resize' as const), maxBytes: fc.integer({ min: 1_000, max: 12_000 }) }) },
)

test('property: budget changes between random ops keep the invariants; the store is within its budget after each', () => {
  fc.assert(
    fc.property(fc.constantFrom(...EVICTION_POLICIES), fc.array(opArb, { minLength: 1, maxLength: 300 }), (policy, ops) => {
      const cfg: RegionShardConfig = { name: 'r', policy, maxBytes: 6_000, maxBytesCeiling: 12_000, maxEntries: Infinity, defaultTtl: Infinity, compressMinBytes: Infinity }
      const store = new RegionStore(cfg, () => 0)
      for (const [i, o] of ops.entries()) {
        const where = `${policy} op #${i} ${JSON.stringify(o)}`
        if (o.op === 'set') store.set(`k${o.key}`, 1, new Uint8Array(o.size), undefined, false, false, undefined)
        else if (o.op === 'get') store.get(`k${o.key}`)
        else if (o.op === 'delete') store.delete(`k${o.key}`)
        else if (o.op === 'resize') {
          const before = store.stats()
          const evicted = store.setMaxBytes(o.maxBytes)
          const after = store.stats()
          assert.is(after.evictionsSize - before.evictionsSize, evicted, where)
          assert.is(after.entries, before.entries - evicted, where)
          assert.is(after.maxBytes, o.maxBytes, where)
        }
        store.checkInvariants()
        const s = store.stats()
        assert.ok(s.usedBytes <= s.maxBytes!, `${where}: ${s.usedBytes} bytes used over ${s.maxBytes}`)
      }
    }),
    { numRuns: 300 },
  )
})

test('a larger budget is used: the store keeps more entries after growing', () => {
  for (const policy of EVICTION_POLICIES) {
    const store = new RegionStore({ name: 'r', policy, maxBytes: 5_000, maxBytesCeiling: 20_000, maxEntries: Infinity, defaultTtl: Infinity, compressMinBytes: Infinity }, () => 0)
    const fill = (): void => {
      for (let round = 0; round < 3; round++) for (let i = 0; i < 150; i++) store.set(`k${i}`, 1, new Uint8Array(36), undefined, false, false, undefined)
    }
    fill()
    const small = store.stats().entries
    store.setMaxBytes(20_000)
    fill()
    const large = store.stats().entries
    assert.ok(small <= 50 && large >= 140, `${policy}: ${small} entries in 5,000 bytes, ${large} in 20,000`)
    assert.ok(store.stats().usedBytes <= 20_000)
    store.checkInvariants()
  }
})

test.run()
