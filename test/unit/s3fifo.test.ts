// S3-FIFO (workers/policy/s3fifo.ts) and its ghost (workers/policy/ghost.ts).
// Replayed on the shipped traces the way cache papers do (a get per request,
// an insert on a miss, evicting first when full), its hit ratios must be the
// published simulator's (libCacheSim's S3-FIFO) to within 0.05 points, through
// the policy alone and through the region store.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { NIL } from '../../workers/policy/index.js'
import { S3FifoPolicy } from '../../workers/policy/s3fifo.js'
import { Ghost } from '../../workers/policy/ghost.js'
import { ShardEvent } from '../../src/wire/protocol.js'
import { cloudphysics, lirsKeys, lockstep, replay, sized, storeReplay } from '../fixtures/policy_replay.js'
import { S3FifoModel } from '../fixtures/policy_models/s3fifo.js'

// trace, entries, the published S3-FIFO hit ratio (%).
const TABLE: [string, number, number][] = [
  ['multi2', 568, 49.3],
  ['ps', 308, 50.62],
  ['sprite', 707, 86.15],
  ['gli', 252, 1.21],
  ['cpp', 122, 80.37],
]

for (const [trace, size, want] of TABLE) {
  test(`lirs-${trace} at ${size} entries: ${want}% (within 0.05 points)`, () => {
    const got = replay(new S3FifoPolicy(sized(size, size)), lirsKeys(trace), size)
    assert.ok(Math.abs(got - want) <= 0.05, `${got.toFixed(3)}% against the published ${want}%`)
  })
}

test('cloudphysics at 4,897 entries (sizes ignored): 24.75% (within 0.05 points)', () => {
  const got = replay(new S3FifoPolicy(sized(4897, 4897)), cloudphysics().keys, 4897)
  assert.ok(Math.abs(got - 24.75) <= 0.05, `${got.toFixed(3)}%`)
})

test('through the region store, S3-FIFO gives the published figure (lirs-multi2 at 568 entries: 49.30%)', () => {
  const ratio = storeReplay('s3fifo', lirsKeys('multi2'), 568)
  assert.ok(Math.abs(ratio - 49.3) <= 0.05, `${ratio.toFixed(3)}%`)
})

test('the reference model agrees victim for victim: lirs-cpp at 122 entries, and cloudphysics by bytes (50 MB, its first 30,000 requests at their sizes)', () => {
  assert.is(lockstep(new S3FifoPolicy(sized(122, 122)), new S3FifoModel(122, Infinity), lirsKeys('cpp'), 122), 7272)
  const cp = cloudphysics()
  const policy = new S3FifoPolicy({ capacity: 4096, limit: 1 << 20, maxEntries: Infinity, maxBytes: 50e6 })
  const hits = lockstep(policy, new S3FifoModel(Infinity, 50e6), cp.keys.subarray(0, 30_000), Infinity, cp.sizes.subarray(0, 30_000), 50e6)
  assert.is(hits, 5341)
  policy.check(1 << 20)
})

test('S3-FIFO: small keeps what was hit twice (into main), evicts the rest into the ghost, and a ghost key returns into main', () => {
  // 10 entries: small holds 1, main 9.
  const p = new S3FifoPolicy({ capacity: 16, limit: 16, maxEntries: 10, maxBytes: Infinity })
  p.insert(0, 100, 1)
  p.access(0)
  p.access(0) // hit twice in small
  p.insert(1, 101, 1)
  p.access(1) // hit once
  // Small is over its share of 1 and main is empty and under its share: evict from small.
  // 0 (two hits) moves to main; 1 (one hit) is the victim.
  assert.is(p.victim(NIL), 1)
  p.remove(1, ShardEvent.EVICT)
  assert.equal(p.sizes(), { small: 0, main: 1, ghost: 1 })
  // 101 comes back: the ghost sends it to main, and forgets it.
  p.insert(2, 101, 1)
  assert.equal(p.sizes(), { small: 0, main: 2, ghost: 0 })
  // A deleted small entry is not remembered: it did not leave for lack of room.
  p.insert(3, 103, 1)
  p.remove(3, ShardEvent.DELETE)
  assert.equal(p.sizes(), { small: 0, main: 2, ghost: 0 })
  // Iteration: small oldest first, then main oldest first.
  p.insert(4, 104, 1)
  const order: number[] = []
  for (let s = p.first(); s !== NIL; s = p.next(s)) order.push(s)
  assert.equal(order, [4, 0, 2])
  p.check(16)
})

test('S3-FIFO: main gives hit entries another round with one hit less, never more than 3 rounds; keep is never the victim', () => {
  const p = new S3FifoPolicy({ capacity: 16, limit: 16, maxEntries: 10, maxBytes: Infinity })
  // 0 and 1 hit twice in small, 2 not.
  for (const s of [0, 1]) {
    p.insert(s, 200 + s, 1)
    p.access(s)
    p.access(s)
  }
  p.insert(2, 202, 1)
  assert.is(p.victim(NIL), 2, '0 and 1 move to main, 2 is the victim')
  p.remove(2, ShardEvent.EVICT)
  // 0 and 1 are in main with frequency 0 (reset on the move); hit 0 five times: it counts 3.
  for (let i = 0; i < 5; i++) p.access(0)
  // Small is empty: main is taken from. 0 goes round (3 -> 2), 1 has none: the victim.
  assert.is(p.victim(NIL), 1)
  // Sparing 1 (being rewritten): 0 goes round 2 -> 1 -> 0, then is the victim.
  assert.is(p.victim(1), 0)
  p.check(16)
  assert.is(p.victim(0), 1)
  p.remove(1, ShardEvent.EVICT)
  assert.is(p.victim(0), NIL, 'the entry being written is the only one')
})

test('S3-FIFO with a byte budget: the small queue holds 10% of the bytes, and the ghost remembers as many bytes as main holds', () => {
  // 1,000 bytes: small 100, main 900.
  const p = new S3FifoPolicy({ capacity: 16, limit: 16, maxEntries: Infinity, maxBytes: 1000 })
  p.insert(0, 300, 60)
  p.insert(1, 301, 60) // small holds 120 > 100
  assert.is(p.victim(NIL), 0)
  p.remove(0, ShardEvent.EVICT)
  assert.equal(p.sizes(), { small: 1, main: 0, ghost: 1 })
  // A charge larger than main can never be remembered.
  p.insert(2, 302, 950)
  assert.is(p.victim(NIL), 1)
  p.remove(1, ShardEvent.EVICT)
  assert.is(p.victim(NIL), 2)
  p.remove(2, ShardEvent.EVICT)
  assert.equal(p.sizes(), { small: 0, main: 0, ghost: 2 }, '300 and 301 remembered, 302 (950 bytes) not')
  // An update re-weighs its entry in its queue.
  p.insert(3, 303, 10)
  p.update(3, 40)
  p.check(16)
})

test('S3-FIFO: clear() forgets the queues and the ghost; grow() keeps every entry', () => {
  const p = new S3FifoPolicy(sized(2, 64))
  for (let s = 0; s < 2; s++) p.insert(s, s, 1)
  p.grow(8)
  for (let s = 2; s < 8; s++) p.insert(s, s, 1)
  const order: number[] = []
  for (let s = p.first(); s !== NIL; s = p.next(s)) order.push(s)
  assert.equal(order, [0, 1, 2, 3, 4, 5, 6, 7])
  p.check(8)
  assert.is(p.victim(NIL), 0)
  p.remove(0, ShardEvent.EVICT)
  p.clear()
  assert.equal(p.sizes(), { small: 0, main: 0, ghost: 0 })
  assert.is(p.first(), NIL)
  assert.is(p.victim(NIL), NIL)
})

test('ghost: oldest forgotten first within both bounds, a hit used once, a refreshed hash moves to the newest end', () => {
  const g = new Ghost(3, 10)
  g.add(1, 2)
  g.add(2, 2)
  g.add(3, 2)
  g.add(4, 2) // count bound: 1 goes
  assert.equal(g.hashes(), [2, 3, 4])
  g.add(2, 2) // refreshed
  assert.equal(g.hashes(), [3, 4, 2])
  g.add(5, 7) // weight bound: 6 + 7 > 10 drops 3 and 4
  assert.equal(g.hashes(), [2, 5])
  assert.is(g.weight, 9)
  assert.ok(g.take(5))
  assert.not.ok(g.take(5), 'a ghost hit is used once')
  assert.not.ok(g.has(3))
  g.add(6, 11) // heavier than the whole ghost: not kept
  assert.equal(g.hashes(), [2])
  g.check()
})

test('ghost: many hashes in and out (colliding index positions, holes, ring packing) agree with a plain list', () => {
  const g = new Ghost(500, Infinity)
  const want: number[] = []
  let x = 1
  for (let i = 0; i < 20_000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const h = x % 2000 // few distinct hashes: many refreshes and takes
    if (x & 1) {
      const had = want.indexOf(h)
      if (had >= 0) want.splice(had, 1)
      if (want.length >= 500) want.shift()
      want.push(h)
      g.add(h, 1)
    } else {
      const had = want.indexOf(h)
      if (had >= 0) want.splice(had, 1)
      assert.is(g.take(h), had >= 0)
    }
    if (i % 997 === 0) g.check()
  }
  assert.equal(g.hashes(), want)
  g.check()
  assert.ok(g.stateBytes() < 500 * 40, `${g.stateBytes()} bytes for 500 hashes`)
})

test.run()
