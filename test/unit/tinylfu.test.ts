// W-TinyLFU (workers/policy/tinylfu.ts) and its sketch (workers/policy/sketch.ts).
// Replayed on the shipped traces the way cache papers do (a get per request, an
// insert on a miss, evicting first when full): on each it must reach the best
// published figure among LRU, ARC, S3-FIFO and the static W-TinyLFU less one
// point, and never fall half a point below LRU; the figures are pinned so that
// a change that moves them shows. Its reference model must agree with it
// victim for victim on a real trace, by entries and by bytes.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { NIL, createPolicy } from '../../workers/policy/index.js'
import { TinyLfuPolicy } from '../../workers/policy/tinylfu.js'
import { FrequencySketch } from '../../workers/policy/sketch.js'
import { ShardEvent } from '../../src/wire/protocol.js'
import { TinyLfuModel } from '../fixtures/policy_models/tinylfu.js'
import { arcHits } from '../fixtures/policy_models/arc.js'
import { cloudphysics, lirsKeys, lockstep, replay, sized, storeReplay } from '../fixtures/policy_replay.js'

// trace, entries, the target (best of LRU, ARC, S3-FIFO, static W-TinyLFU, less 1; at least LRU - 0.5), what it reads.
const TABLE: [string, number, number, number][] = [
  ['multi2', 568, 48.3, 49.808],
  ['ps', 308, 52.3, 53.235],
  ['sprite', 707, 85.98, 86.252],
  ['gli', 252, 15.26, 15.262],
  ['cpp', 122, 79.37, 80.878],
]

const traceKeys = (trace: string): Uint32Array => (trace === 'cloudphysics' ? cloudphysics().keys : lirsKeys(trace))

for (const [trace, size, target, reads] of [...TABLE, ['cloudphysics', 4897, 23.75, 24.023] as [string, number, number, number]]) {
  test(`${trace} at ${size} entries: ${reads}%, at least ${target}%`, () => {
    const got = replay(new TinyLfuPolicy(sized(size, size)), traceKeys(trace), size)
    assert.ok(got >= target, `${got.toFixed(3)}% against the target ${target}%`)
    assert.ok(Math.abs(got - reads) < 0.005, `${got.toFixed(3)}%: the pinned figure is ${reads}%`)
  })
}

test('the ARC reference (test/fixtures/policy_models/arc.ts) reads the published ARC figures at the reference sizes', () => {
  const at = (keys: Uint32Array, n: number): number => Math.round((arcHits(keys, n) / keys.length) * 10_000) / 100
  assert.equal(
    [['multi2', 568], ['ps', 308], ['sprite', 707], ['gli', 252], ['cpp', 122]].map(([t, n]) => at(lirsKeys(t as string), n as number)),
    [39.83, 16.8, 85.5, 1.38, 80.37],
  )
  assert.is(at(cloudphysics().keys, 4897), 22.72)
})

test('every LIRS trace at 1%, 5%, 10% and 25% of its keys: never half a point below LRU, and within a point of the best of LRU, ARC, S3-FIFO and the static W-TinyLFU (1% window, no second chance)', () => {
  for (const trace of ['multi2', 'ps', 'sprite', 'gli', 'cpp', 'cs']) {
    const keys = lirsKeys(trace)
    const unique = new Set(keys).size
    for (const pct of [1, 5, 10, 25]) {
      const n = Math.max(2, Math.floor((unique * pct) / 100))
      const lru = replay(createPolicy('lru', sized(n, n)), keys, n)
      const s3 = replay(createPolicy('s3fifo', sized(n, n)), keys, n)
      const arc = (arcHits(keys, n) / keys.length) * 100
      const fixed = replay(new TinyLfuPolicy(sized(n, n), { share: 0.01, secondChance: false }), keys, n)
      const got = replay(new TinyLfuPolicy(sized(n, n)), keys, n)
      const at = `${trace} at ${pct}% (${n} entries): ${got.toFixed(2)}%`
      assert.ok(got >= lru - 0.5, `${at} against LRU's ${lru.toFixed(2)}%`)
      const best = Math.max(lru, arc, s3, fixed)
      assert.ok(got >= best - 1, `${at} against the best ${best.toFixed(2)}%`)
    }
  }
})

test('the window simulations choose: lirs-cpp at 61 entries (a loop) keeps a small window; lirs-sprite at 1,768 (recency) grows it past half the cache', () => {
  const cpp = new TinyLfuPolicy(sized(61, 61))
  const loop = replay(cpp, lirsKeys('cpp'), 61)
  assert.ok(cpp.sizes().window <= Math.ceil(61 * 0.04), `window ${cpp.sizes().window}`)
  assert.ok(loop >= 63.0, `${loop.toFixed(2)}%`)
  const sprite = new TinyLfuPolicy(sized(1768, 1768))
  replay(sprite, lirsKeys('sprite'), 1768)
  assert.ok(sprite.sizes().window >= 1768 * 0.55, `window ${sprite.sizes().window}`)
})

test('the reference model agrees victim for victim: lirs-cpp at 122 entries (adapting, and at a fixed window of 30%), and cloudphysics by bytes (50 MB, its first 30,000 requests at their sizes)', () => {
  assert.is(lockstep(new TinyLfuPolicy(sized(122, 122)), new TinyLfuModel(122, Infinity), lirsKeys('cpp'), 122), 7317)
  // A fixed configuration, and the other second chance.
  const fixed = { share: 0.3, secondChance: false }
  assert.is(lockstep(new TinyLfuPolicy(sized(122, 122), fixed), new TinyLfuModel(122, Infinity, fixed), lirsKeys('cpp'), 122), 7213)
  const cp = cloudphysics()
  const keys = cp.keys.subarray(0, 30_000)
  const sizes = cp.sizes.subarray(0, 30_000)
  const policy = new TinyLfuPolicy({ capacity: 4096, limit: 1 << 20, maxEntries: Infinity, maxBytes: 50e6 })
  assert.is(lockstep(policy, new TinyLfuModel(Infinity, 50e6), keys, Infinity, sizes, 50e6), 5302)
  policy.check(1 << 20)
})

test('with a byte budget only, the window simulations sample fewer keys as the entries add up: their state stays a fraction of the cache\'s', () => {
  // cloudphysics at its real sizes under 200 MB: ~75,000 entries. Simulations of every key would hold as many each (nine of them).
  const cp = cloudphysics()
  const p = new TinyLfuPolicy({ capacity: 4096, limit: 1 << 20, maxEntries: Infinity, maxBytes: 200e6 })
  lockstep(p, undefined, cp.keys, Infinity, cp.sizes, 200e6)
  const s = p.sizes()
  const entries = s.windowEntries + s.probation + s.protected
  assert.ok(entries > 70_000, `${entries} entries`)
  assert.ok(p.stateBytes() / entries < 30, `${(p.stateBytes() / entries).toFixed(1)} bytes of policy state per entry`)
})

test('through the region store: lirs-cpp at 122 entries meets the target too', () => {
  const ratio = storeReplay('tinylfu', lirsKeys('cpp'), 122)
  assert.ok(ratio >= 79.37, `${ratio.toFixed(3)}%`)
})

test('the duel: when the cache is full, the window\'s oldest enters main only if the sketch counts it more often than main\'s victim', () => {
  // 100 entries: the window holds 1, protected up to 79.
  const p = new TinyLfuPolicy({ capacity: 128, limit: 128, maxEntries: 100, maxBytes: Infinity })
  for (let s = 0; s < 100; s++) p.insert(s, 1000 + s, 1)
  // Slot 99 is the window; 0..98 went to probation as the window overflowed.
  assert.equal(p.sizes(), { window: 1, windowEntries: 1, probation: 99, protected: 0, rejected: 0 })
  // Slot 0 (probation's oldest) is hit: promoted to protected, and counted twice now.
  p.access(0)
  // A new entry is coming: the candidate (99, seen once) duels main's victim (1, seen once): no more frequent, rejected.
  assert.is(p.victim(NIL), 99)
  p.remove(99, ShardEvent.EVICT)
  assert.is(p.sizes().rejected, 1)
  p.insert(99, 2000, 1) // a new key in the window
  p.access(99)
  p.access(99) // counted 3 times
  // Its duel against 1 (once): admitted to probation, 1 is the victim.
  assert.is(p.victim(NIL), 1)
  p.remove(1, ShardEvent.EVICT)
  assert.equal(p.sizes(), { window: 1, windowEntries: 0, probation: 98, protected: 1, rejected: 1 })
  p.check(128)
  // Never `keep`.
  assert.is(p.victim(2), 3)
})

test('with a byte budget, a new entry is screened even when the window holds less than its share', () => {
  // 6,000 bytes: the window's share is 60. 59 entries of 100 bytes, each read once, then one of 30 bytes.
  const p = new TinyLfuPolicy({ capacity: 64, limit: 64, maxEntries: Infinity, maxBytes: 6_000 })
  for (let s = 0; s < 59; s++) {
    p.insert(s, 1000 + s, 100)
    p.access(s)
  }
  p.insert(59, 1059, 30)
  assert.equal(p.sizes(), { window: 60, windowEntries: 1, probation: 59, protected: 0, rejected: 0 })
  // Room for a newcomer: the window (30 bytes) plus an average entry passes its share, so its
  // candidate, seen once, duels main's victim, seen twice, and leaves; main keeps its entry.
  assert.is(p.victim(NIL), 59)
  assert.is(p.sizes().rejected, 1)
})

test('an update that makes a protected entry larger keeps protected within its share', () => {
  // 1,000 bytes: window 10, main 990, protected at most 792.
  const p = new TinyLfuPolicy({ capacity: 16, limit: 16, maxEntries: Infinity, maxBytes: 1000 })
  for (let s = 0; s < 8; s++) p.insert(s, 100 + s, 90)
  for (let s = 0; s < 7; s++) p.access(s) // 0..6 promoted: 630 bytes protected
  assert.equal(p.sizes().protected, 7)
  p.update(0, 300) // 840 bytes: over 792, so its oldest goes back to probation
  assert.equal(p.sizes().protected, 6)
  p.check(16)
})

test('a rejected key that comes back is admitted whatever the sketch says', () => {
  const p = new TinyLfuPolicy({ capacity: 128, limit: 128, maxEntries: 100, maxBytes: Infinity })
  for (let s = 0; s < 100; s++) {
    p.insert(s, 1000 + s, 1)
    p.access(s) // every key counted twice
  }
  assert.is(p.victim(NIL), 99) // the candidate, no more frequent than main's victim: rejected
  p.remove(99, ShardEvent.EVICT)
  p.insert(99, 1099, 1) // 1099 back: a rejected key, the window's only entry
  // The next newcomer makes 1099 the candidate again: remembered as rejected, so admitted to probation
  // (though no more frequent than main's victim, which leaves).
  assert.is(p.victim(NIL), 0)
  p.remove(0, ShardEvent.EVICT)
  assert.equal(p.sizes(), { window: 1, windowEntries: 0, probation: 99, protected: 0, rejected: 0 })
})

test('sketch: counts up to 15, estimates by the least of four counters, halves every 10x capacity additions', () => {
  const s = new FrequencySketch(100)
  for (let i = 0; i < 20; i++) s.increment(7)
  assert.is(s.estimate(7), 15)
  assert.is(s.estimate(8), 0)
  s.increment(8)
  s.increment(8)
  assert.is(s.estimate(8), 2)
  // An addition is an increment that raised some counter: 7's past 15 did not, so 17 so far.
  // The 1,000th (10 x capacity) halves every counter.
  for (let i = 0; i < 982; i++) s.increment(100_000 + i)
  assert.is(s.estimate(7), 15)
  s.increment(999_999)
  assert.is(s.estimate(7), 7)
  assert.is(s.estimate(8), 1)
  // 4 rows of the power of two at or above 4x capacity (512) counters, 4 bits each: 1 KiB, ~10 bytes per entry.
  assert.is(s.stateBytes(), 1024)
  s.clear()
  assert.is(s.estimate(7), 0)
})

test('tinylfu: grow() keeps every entry; clear() forgets entries, sketch, ghost and simulations', () => {
  const p = new TinyLfuPolicy({ capacity: 2, limit: 64, maxEntries: 64, maxBytes: Infinity })
  p.insert(0, 10, 1)
  p.insert(1, 11, 1)
  p.grow(8)
  for (let s = 2; s < 8; s++) p.insert(s, 10 + s, 1)
  const order: number[] = []
  for (let s = p.first(); s !== NIL; s = p.next(s)) order.push(s)
  assert.equal(order.sort(), [0, 1, 2, 3, 4, 5, 6, 7])
  p.check(8)
  p.clear()
  assert.equal(p.sizes(), { window: 1, windowEntries: 0, probation: 0, protected: 0, rejected: 0 })
  assert.is(p.first(), NIL)
  assert.is(p.victim(NIL), NIL)
})

test.run()
