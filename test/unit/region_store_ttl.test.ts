// The region store's expiry: TTLs on a hand-driven clock, sweeps, touch and
// the grace period getOrCompute's stale values live in.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Glob } from '../../src/wire/glob.js'
import { make, put, text, charge } from '../fixtures/region_store.js'

// ── TTL ──────────────────────────────────────────────────────────────────────

test('ttl: an entry expires exactly at set time + ttl; ttl() rounds up and never reads 0', () => {
  const { store, clock } = make()
  put(store, 'a', 'v', { ttl: 100 })
  assert.is(store.ttl('a'), 100)
  clock.t = 1050.5
  assert.is(store.ttl('a'), 50) // 49.5 rounded up
  clock.t = 1099.9
  assert.is(store.ttl('a'), 1)
  assert.is(text(store, 'a'), 'v')
  clock.t = 1100
  assert.is(store.ttl('a'), undefined)
  assert.is(store.has('a'), false)
  assert.is(text(store, 'a'), undefined)
  assert.is(store.entry('a'), undefined)
  const s = store.stats()
  assert.is(s.evictionsExpired, 1) // removed once, by the first touch
  assert.is(s.entries, 0)
  assert.is(s.usedBytes, 0)
  assert.is(s.rawBytes, 0)
  assert.is(s.hits, 1)
  assert.is(s.misses, 2)
  store.checkInvariants()
})

test('ttl: without ttl or defaultTtl an entry never expires; ttl() is Infinity, a missing key undefined', () => {
  const { store, clock } = make()
  put(store, 'a', 'v')
  clock.t = 1e12
  assert.is(store.ttl('a'), Infinity)
  assert.is(text(store, 'a'), 'v')
  assert.is(store.ttl('nope'), undefined)
  assert.is(store.stats().evictionsExpired, 0)
})

test('ttl: defaultTtl applies when a set gives none; an explicit ttl (also Infinity) wins', () => {
  const { store, clock } = make({ defaultTtl: 500 })
  put(store, 'd', 'v')
  put(store, 'e', 'v', { ttl: 50 })
  put(store, 'f', 'v', { ttl: Infinity })
  assert.is(store.ttl('d'), 500)
  assert.is(store.ttl('e'), 50)
  assert.is(store.ttl('f'), Infinity)
  clock.t = 1499
  assert.is(store.ttl('d'), 1)
  assert.is(store.has('e'), false)
  clock.t = 1500
  assert.is(store.has('d'), false)
  assert.is(store.has('f'), true)
  assert.is(store.stats().evictionsExpired, 2)
})

test('ttl: an update restarts the ttl (and without a ttl falls back to the default)', () => {
  const { store, clock } = make()
  put(store, 'a', 'v1', { ttl: 100 })
  clock.t = 1080
  put(store, 'a', 'v2', { ttl: 100 })
  assert.is(store.ttl('a'), 100)
  assert.is(store.entry('a')!.createdAt, 1080)
  clock.t = 1150
  assert.is(text(store, 'a'), 'v2')
  put(store, 'a', 'v3')
  assert.is(store.ttl('a'), Infinity)
})

test('ttl: has() and ttl() do not count as reads', () => {
  const { store } = make()
  put(store, 'a', 'v', { ttl: 100 })
  store.has('a')
  store.has('b')
  store.ttl('a')
  store.ttl('b')
  const s = store.stats()
  assert.is(s.hits, 0)
  assert.is(s.misses, 0)
})

test('sweep(budget) removes expired entries slot by slot, resuming where it stopped', () => {
  const { store, clock } = make()
  for (let i = 0; i < 5; i++) put(store, `k${i}`, 'v', i === 2 ? {} : { ttl: 100 })
  assert.is(store.sweep(10), 0) // nothing expired yet
  clock.t = 1100
  assert.is(store.sweep(2), 2) // k0, k1
  assert.is(store.size, 3)
  assert.is(store.sweep(2), 1) // k2 lives, k3 goes
  assert.is(store.sweep(2), 1) // k4; the cursor wraps
  assert.is(store.sweep(2), 0)
  assert.is(store.size, 1)
  assert.equal(store.keys(), ['k2'])
  const s = store.stats()
  assert.is(s.evictionsExpired, 4)
  assert.is(s.entries, 1)
  assert.is(s.usedBytes, charge('k2', 1))
  store.checkInvariants()
})

test('sweep visits every slot over repeated calls, whatever the budget', () => {
  const { store, clock } = make()
  for (let i = 0; i < 23; i++) put(store, `k${i}`, 'v', { ttl: i % 3 === 0 ? Infinity : 10 })
  clock.t = 2000
  let removed = 0
  for (let i = 0; i < 8; i++) removed += store.sweep(3) // 24 slot visits >= 23 slots
  assert.is(removed, 15)
  assert.is(store.size, 8)
  assert.is(store.stats().evictionsExpired, 15)
  store.checkInvariants()
})

test('cleanupExpired() removes every expired entry now and returns how many', () => {
  const { store, clock } = make()
  put(store, 'a', 'v', { ttl: 10 })
  put(store, 'b', 'v', { ttl: 20 })
  put(store, 'c', 'v')
  put(store, 'd', 'v', { ttl: 30 })
  clock.t = 1020
  assert.is(store.cleanupExpired(), 2)
  assert.equal(store.keys(), ['c', 'd'])
  assert.is(store.cleanupExpired(), 0)
  assert.is(store.stats().evictionsExpired, 2)
  assert.is(make().store.cleanupExpired(), 0)
})

test('expired entries still occupy the budget until touched, and are evicted by size first', () => {
  const { store, clock } = make({ policy: 'lru', maxEntries: 2 })
  put(store, 'a', 'v', { ttl: 10 })
  put(store, 'b', 'v')
  clock.t = 1010
  put(store, 'c', 'v') // a is expired but untouched: it is the head and goes by size
  assert.equal(store.keys(), ['b', 'c'])
  const s = store.stats()
  assert.is(s.evictionsSize, 1)
  assert.is(s.evictionsExpired, 0)
})

test('keys() and deleteMatching() drop expired entries they meet and count them as expirations', () => {
  const { store, clock } = make()
  put(store, 'user:1', 'v', { ttl: 10 })
  put(store, 'user:2', 'v')
  put(store, 'other', 'v', { ttl: 10 })
  put(store, 'user:3', 'v', { ttl: 10 })
  clock.t = 1010
  assert.equal(store.keys(new Glob('user:*')), ['user:2'])
  assert.is(store.stats().evictionsExpired, 3) // 'other' too, although the glob does not match it
  assert.is(store.size, 1)
  put(store, 'user:4', 'v', { ttl: 5 })
  put(store, 'user:5', 'v')
  clock.t = 1015
  assert.is(store.deleteMatching(new Glob('user:*')), 2) // user:2 and user:5
  const s = store.stats()
  assert.is(s.deletes, 2)
  assert.is(s.evictionsExpired, 4)
  assert.is(s.entries, 0)
  store.checkInvariants()
})

test.run()
