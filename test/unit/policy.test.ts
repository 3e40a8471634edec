/**
 * Unit tests of the eviction policies (workers/policy/), driven through the
 * `Policy` interface alone, as the store drives them: exact victim orders for
 * scripted sequences. And the store with each policy on a small deterministic
 * trace, whose hit counts and final orders are the ones the store gave before
 * eviction order moved out of it (a boolean and a list inside RegionStore).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FifoPolicy, LruPolicy, NIL, createPolicy } from '../../workers/policy/index.js'
import type { EvictionPolicy, Policy } from '../../workers/policy/index.js'
import { ShardEvent } from '../../src/wire/protocol.js'
import { RegionStore } from '../../workers/region_store.js'
import { sized } from '../fixtures/policy_replay.js'

// ── helpers ──────────────────────────────────────────────────────────────────

/** Evicts until the policy has nothing left, the way the store does (victim, then remove); returns the slots in order. */
function drain(p: Policy, keep = NIL): number[] {
  const out: number[] = []
  for (let v = p.victim(keep); v !== NIL; v = p.victim(keep)) {
    out.push(v)
    p.remove(v, ShardEvent.EVICT)
    if (out.length > 100) throw new Error('victim never ran out')
  }
  return out
}

/** The policy's iteration order. */
function order(p: Policy): number[] {
  const out: number[] = []
  for (let s = p.first(); s !== NIL; s = p.next(s)) out.push(s)
  return out
}

function insertAll(p: Policy, slots: number[]): void {
  for (const s of slots) p.insert(s, s * 0x9e3779b1, 0)
}

// ── the policies through the interface ───────────────────────────────────────

test('LRU: insert 1..4, access 2: victims 1, 3, 4, 2', () => {
  const p = new LruPolicy(sized(8, 64))
  insertAll(p, [1, 2, 3, 4])
  p.access(2)
  assert.equal(order(p), [1, 3, 4, 2])
  p.check(8)
  assert.equal(drain(p), [1, 3, 4, 2])
  assert.is(p.first(), NIL)
  p.check(8)
})

test('FIFO: insert 1..4, access 2: victims 1, 2, 3, 4', () => {
  const p = new FifoPolicy(sized(8, 64))
  insertAll(p, [1, 2, 3, 4])
  p.access(2)
  assert.equal(order(p), [1, 2, 3, 4])
  assert.equal(drain(p), [1, 2, 3, 4])
  assert.is(p.first(), NIL)
})

test('victim spares `keep`; NIL when `keep` is all there is', () => {
  for (const p of [new LruPolicy(sized(4, 4)), new FifoPolicy(sized(4, 4))]) {
    insertAll(p, [0, 1, 2])
    assert.is(p.victim(0), 1) // the head is the entry being written: the next one goes
    assert.is(p.victim(2), 0)
    assert.is(p.victim(NIL), 0)
    p.remove(1, ShardEvent.DELETE)
    p.remove(2, ShardEvent.EXPIRE)
    assert.is(p.victim(0), NIL)
    assert.is(p.victim(NIL), 0)
  }
})

test('a scripted sequence with removals, re-inserts, growth and clear', () => {
  const script = (p: Policy): number[] => {
    insertAll(p, [0, 1, 2, 3])
    p.access(0)
    p.remove(2, ShardEvent.DELETE) // deleted from the middle
    p.grow(16) // the store's slot arrays doubled
    insertAll(p, [9, 2]) // slot 2 reused by a new entry, slot 9 past the old capacity
    p.access(1)
    p.access(9)
    p.access(9) // a second hit on the tail changes nothing
    const head = p.victim(NIL)
    const spared = p.victim(head) // the victim when the head is the entry being written
    p.remove(head, ShardEvent.EVICT)
    p.check(16)
    return [head, spared, ...drain(p)]
  }
  // LRU, after the script: 3 0 2 1 9 (head first); sparing 3, the victim is 0.
  assert.equal(script(new LruPolicy(sized(4, 16))), [3, 0, 0, 2, 1, 9])
  // FIFO: 0 1 3 9 2, whatever was read; sparing 0, the victim is 1.
  assert.equal(script(new FifoPolicy(sized(4, 16))), [0, 1, 1, 3, 9, 2])

  const p = new LruPolicy(sized(4, 16))
  insertAll(p, [0, 1, 2])
  p.clear()
  assert.equal(order(p), [])
  assert.is(p.victim(NIL), NIL)
  insertAll(p, [2, 0])
  assert.equal(drain(p), [2, 0])
})

test('LRU and FIFO admit every entry', () => {
  for (const name of ['lru', 'fifo'] as const) {
    const p = createPolicy(name, sized(4, 4))
    insertAll(p, [0])
    assert.is(p.screens, false)
    assert.is(p.admit(0, 1 << 30), true)
  }
})

test('createPolicy: one class per name', () => {
  assert.ok(createPolicy('lru', sized(4, 4)) instanceof LruPolicy)
  assert.ok(createPolicy('fifo', sized(4, 4)) instanceof FifoPolicy)
  assert.throws(() => createPolicy('lfu' as EvictionPolicy, sized(4, 4)), /unknown eviction policy "lfu"/)
})

// ── the store with each policy ───────────────────────────────────────────────

/**
 * A cache-paper replay (a get per request, a set on a miss) of 3000 requests
 * over ~100 skewed keys, with a delete every 17th, under an entry budget of 20
 * or a byte budget of 3000 (values of 10–190 bytes). Returns the hits and the
 * keys left, in the policy's order.
 */
function replay(policy: EvictionPolicy, budget: 'entries' | 'bytes'): { hits: number; keys: string } {
  const store = new RegionStore({
    name: 't',
    policy,
    maxBytes: budget === 'bytes' ? 3000 : Infinity,
    maxEntries: budget === 'entries' ? 20 : Infinity,
    defaultTtl: Infinity,
    compressMinBytes: Infinity,
  })
  let x = 12345
  let hits = 0
  const small = new Uint8Array(8)
  for (let i = 0; i < 3000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const r = (x >>> 8) % 100
    const key = `k${Math.floor((r * r) / 100)}`
    if (store.get(key) !== undefined) hits++
    else store.set(key, 0, budget === 'entries' ? small : new Uint8Array((r % 7) * 30 + 10), undefined, false, false, undefined)
    if (i % 17 === 16) store.delete(`k${(r + 3) % 40}`)
  }
  store.checkInvariants()
  return { hits, keys: store.keys().join(',') }
}

// Computed with the store as it was before workers/policy/ existed (commit 905c060).
test('the store with each policy: the same hits and order as before', () => {
  assert.equal(replay('lru', 'entries'), {
    hits: 1102,
    keys: 'k56,k73,k29,k88,k18,k92,k30,k49,k98,k12,k96,k4,k3,k32,k2,k7,k1,k0,k44,k10',
  })
  assert.equal(replay('fifo', 'entries'), {
    hits: 1047,
    keys: 'k31,k56,k73,k29,k30,k0,k88,k18,k92,k49,k98,k4,k12,k96,k32,k2,k7,k1,k44,k10',
  })
  assert.equal(replay('lru', 'bytes'), {
    hits: 991,
    keys: 'k73,k29,k88,k18,k92,k30,k49,k98,k12,k96,k4,k3,k32,k2,k7,k1,k0,k44,k10',
  })
  assert.equal(replay('fifo', 'bytes'), {
    hits: 944,
    keys: 'k75,k31,k56,k73,k29,k30,k0,k88,k18,k92,k49,k98,k4,k12,k96,k32,k7,k1,k44,k10',
  })
})

test.run()
