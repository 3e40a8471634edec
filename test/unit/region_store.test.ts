/**
 * Unit tests of `RegionStore` (workers/region_store.ts), on the calling thread,
 * with an injected clock: construction and stats, eviction order, budgets,
 * NX/XX, tags, globs, delete and clear. Beside it: region_store_ttl (expiry),
 * region_store_bytes (byte accounting, compression, corruption) and
 * region_store_model (a property test that checks every counter and every
 * read against a Map-based reference after every op).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RegionStore } from '../../workers/region_store.js'
import { ENTRY_OVERHEAD_BYTES, TAG_LINK_OVERHEAD_BYTES } from '../../src/wire/protocol.js'
import { Glob } from '../../src/wire/glob.js'
import { O, enc, dec, make, put, text, charge, compressible, zeroCounters } from '../fixtures/region_store.js'

// ── construction and stats shape ─────────────────────────────────────────────

test('a new store is empty and reports its budgets (null when unbounded)', () => {
  const { store } = make({ maxBytes: 1000, maxEntries: 10 })
  assert.is(store.size, 0)
  assert.equal(store.stats(), {
    ...zeroCounters,
    entries: 0,
    compressedEntries: 0,
    usedBytes: 0,
    rawBytes: 0,
    storedBytes: 0,
    arenaBytes: 0,
    arenaFreeBytes: 0,
    maxBytes: 1000,
    maxEntries: 10,
  })
  const unbounded = make().store.stats()
  assert.is(unbounded.maxBytes, null)
  assert.is(unbounded.maxEntries, null)
  store.checkInvariants()
})

test('get returns the stored bytes and the tag in lastTag; a miss is undefined', () => {
  const { store } = make()
  assert.is(put(store, 'a', 'hello', { tag: 1 }), true)
  assert.is(put(store, 'b', new Uint8Array([0, 255, 7]), { tag: 2 }), true)
  assert.is(text(store, 'a'), 'hello')
  assert.is(store.lastTag, 1)
  assert.equal(Array.from(store.get('b')!), [0, 255, 7])
  assert.is(store.lastTag, 2)
  assert.is(store.get('zzz'), undefined)
  assert.is(store.size, 2)
  const s = store.stats()
  assert.is(s.hits, 2)
  assert.is(s.misses, 1)
  assert.is(s.sets, 2)
})

test('an empty value is a hit, not a miss', () => {
  const { store } = make()
  put(store, 'e', new Uint8Array(0), { tag: 3 })
  const v = store.get('e')
  assert.ok(v !== undefined)
  assert.is(v!.length, 0)
  assert.is(store.lastTag, 3)
  assert.is(store.stats().usedBytes, charge('e', 0))
  store.checkInvariants()
})

test('entry() reports the whole entry and counts as a read', () => {
  const { store, clock } = make()
  const meta = new Uint8Array([9, 8, 7])
  put(store, 'k', 'value', { tag: 2, ttl: 250, meta })
  clock.t = 1100
  const e = store.entry('k')!
  assert.is(e.tag, 2)
  assert.is(dec.decode(e.value), 'value')
  assert.is(e.createdAt, 1000)
  assert.is(e.expiresAt, 1250)
  assert.is(e.ttlRemaining, 150)
  assert.is(e.sizeBytes, 5)
  assert.is(e.storedBytes, 5)
  assert.is(e.compressed, false)
  assert.equal(Array.from(e.metadata!), [9, 8, 7])
  assert.is(store.entry('missing'), undefined)
  put(store, 'plain', 'x')
  const p = store.entry('plain')!
  assert.is(p.metadata, undefined)
  assert.is(p.expiresAt, Infinity)
  assert.is(p.ttlRemaining, Infinity)
  const s = store.stats()
  assert.is(s.hits, 2)
  assert.is(s.misses, 1)
})

test('set copies raw and metadata: later writes to the caller\'s Uint8Array do not reach the store', () => {
  const { store } = make()
  const raw = enc.encode('hello')
  const meta = new Uint8Array([1, 2])
  put(store, 'k', raw, { meta })
  raw[0] = 0x4a // 'J'
  meta[0] = 99
  assert.is(text(store, 'k'), 'hello')
  assert.equal(Array.from(store.entry('k')!.metadata!), [1, 2])
})

test('set copies raw and metadata even when they are Buffer views of a larger frame (as the shard passes them)', () => {
  // workers/shard.ts hands set() `FrameReader.bytesView()`, a Buffer subarray of
  // the request frame. The doc of set() says `raw` "is copied".
  const { store } = make()
  const frame = Buffer.from('..hello..meta..')
  const raw = frame.subarray(2, 7) // 'hello'
  const meta = frame.subarray(9, 13) // 'meta'
  put(store, 'k', raw, { meta })
  frame.fill(0x21) // the frame is reused / overwritten after the op
  assert.is(text(store, 'k'), 'hello')
  assert.is(dec.decode(store.entry('k')!.metadata!), 'meta')
  store.checkInvariants()
})

// ── eviction order ───────────────────────────────────────────────────────────

test('LRU: evicts the least recently used; get and entry refresh, has and ttl do not', () => {
  const { store } = make({ policy: 'lru', maxEntries: 3 })
  put(store, 'a', '1')
  put(store, 'b', '2')
  put(store, 'c', '3')
  assert.equal(store.keys(), ['a', 'b', 'c'])
  assert.is(text(store, 'a'), '1') // a is now most recent
  assert.equal(store.keys(), ['b', 'c', 'a'])
  put(store, 'd', '4') // evicts b
  assert.equal(store.keys(), ['c', 'a', 'd'])
  assert.is(store.has('b'), false)
  // has() and ttl() of the head do not save it
  assert.is(store.has('c'), true)
  assert.is(store.ttl('c'), Infinity)
  put(store, 'e', '5') // evicts c
  assert.equal(store.keys(), ['a', 'd', 'e'])
  assert.ok(store.entry('a') !== undefined) // entry() refreshes like get
  put(store, 'f', '6') // evicts d
  assert.equal(store.keys(), ['e', 'a', 'f'])
  assert.is(text(store, 'd'), undefined)
  assert.is(store.stats().evictionsSize, 3)
  store.checkInvariants()
})

test('LRU: an update moves the entry to the most recent end', () => {
  const { store } = make({ policy: 'lru', maxEntries: 3 })
  put(store, 'a', '1')
  put(store, 'b', '2')
  put(store, 'c', '3')
  put(store, 'a', '1b')
  assert.equal(store.keys(), ['b', 'c', 'a'])
  put(store, 'd', '4') // evicts b
  assert.equal(store.keys(), ['c', 'a', 'd'])
  assert.is(text(store, 'a'), '1b')
  assert.is(store.stats().evictionsSize, 1)
})

test('FIFO: evicts in insertion order; get and update do not reorder', () => {
  const { store } = make({ policy: 'fifo', maxEntries: 3 })
  put(store, 'a', '1')
  put(store, 'b', '2')
  put(store, 'c', '3')
  assert.is(text(store, 'a'), '1')
  assert.ok(store.entry('a') !== undefined)
  assert.is(put(store, 'a', '1b'), true) // update keeps its place
  assert.equal(store.keys(), ['a', 'b', 'c'])
  assert.is(text(store, 'a'), '1b')
  put(store, 'd', '4') // evicts a, although it was just read and updated
  assert.equal(store.keys(), ['b', 'c', 'd'])
  assert.is(text(store, 'a'), undefined)
  put(store, 'e', '5') // evicts b
  assert.equal(store.keys(), ['c', 'd', 'e'])
  const s = store.stats()
  assert.is(s.evictionsSize, 2)
  assert.is(s.entries, 3)
  store.checkInvariants()
})

test('maxEntries: the store never holds more than its entry budget', () => {
  for (const policy of ['lru', 'fifo'] as const) {
    const { store } = make({ policy, maxEntries: 5 })
    for (let i = 0; i < 20; i++) {
      put(store, `k${i}`, `v${i}`)
      store.checkInvariants()
    }
    assert.is(store.size, 5)
    assert.equal(store.keys(), ['k15', 'k16', 'k17', 'k18', 'k19'])
    const s = store.stats()
    assert.is(s.entries, 5)
    assert.is(s.evictionsSize, 15)
    assert.is(s.sets, 20)
  }
})

test('maxEntries beyond the initial slot capacity (256): the arrays grow and eviction still holds', () => {
  const { store } = make({ policy: 'lru', maxEntries: 600 })
  for (let i = 0; i < 1000; i++) put(store, `k${i}`, String(i))
  store.checkInvariants()
  assert.is(store.size, 600)
  assert.is(text(store, 'k399'), undefined)
  assert.is(text(store, 'k400'), '400')
  assert.is(text(store, 'k999'), '999')
  assert.is(store.stats().evictionsSize, 400)
})

test('maxBytes: the charge is key bytes + value bytes + metadata bytes + ENTRY_OVERHEAD_BYTES', () => {
  const one = charge('k1', 10) // 2 + 10 + overhead
  assert.is(one, 2 + 10 + O)
  const { store } = make({ policy: 'lru', maxBytes: one * 3 })
  put(store, 'k1', '0123456789')
  put(store, 'k2', '0123456789')
  put(store, 'k3', '0123456789')
  assert.is(store.stats().usedBytes, one * 3)
  assert.is(store.stats().evictionsSize, 0)
  put(store, 'k4', '0123456789') // one over: evicts k1 only
  assert.equal(store.keys(), ['k2', 'k3', 'k4'])
  assert.is(store.stats().usedBytes, one * 3)
  // 'big' costs 3 + 100 + overhead: k2, k3 and k4 must all go
  put(store, 'big', 'x'.repeat(100))
  assert.equal(store.keys(), ['big'])
  const s = store.stats()
  assert.is(s.usedBytes, charge('big', 100))
  assert.is(s.evictionsSize, 4)
  assert.is(s.entries, 1)
  store.checkInvariants()
})

test('maxBytes: metadata and multi-byte UTF-8 keys are charged by their bytes', () => {
  const { store } = make()
  put(store, 'é', 'v') // 2-byte key
  put(store, '\u{1F600}', 'v') // 4-byte key
  put(store, 'm', 'v', { meta: new Uint8Array(7) })
  assert.is(store.stats().usedBytes, 2 + 1 + O + (4 + 1 + O) + (1 + 1 + 7 + O))
  store.checkInvariants()
})

/** setAt() with tags (the string-key set() takes none). */
function putTagged(store: RegionStore, key: string, value: string, tags: string[] | undefined): boolean {
  const k = Buffer.from(key, 'utf8')
  return store.setAt(k, 0, k.length, 0, enc.encode(value), undefined, false, false, undefined, tags)
}

test('maxBytes: tags are charged, per tag its UTF-8 bytes + TAG_LINK_OVERHEAD_BYTES; overwrite, incr, delete, invalidateTag and clear settle the charge', () => {
  const T = TAG_LINK_OVERHEAD_BYTES
  assert.is(T, 128)
  const { store } = make()
  putTagged(store, 'k', 'v', undefined)
  assert.is(store.stats().usedBytes, 1 + 1 + O)
  putTagged(store, 'k', 'v', ['ab', 'é']) // 2 + 2 UTF-8 bytes
  assert.is(store.stats().usedBytes, 1 + 1 + O + (2 + T) + (2 + T))
  store.checkInvariants()
  putTagged(store, 'k', 'v', ['abc']) // the overwrite's tags replace the old ones in the charge
  assert.is(store.stats().usedBytes, 1 + 1 + O + (3 + T))
  const k = Buffer.from('n')
  putTagged(store, 'n', '9', ['t'])
  assert.is(store.incrAt(k, 0, 1, 1), 10) // keeps its tag, and its charge
  assert.equal(store.tagsOf('n'), ['t'])
  assert.is(store.stats().usedBytes, 1 + 1 + O + (3 + T) + (1 + 2 + O + (1 + T)))
  putTagged(store, 'k', 'v', undefined)
  assert.is(store.stats().usedBytes, 1 + 1 + O + (1 + 2 + O + (1 + T)))
  assert.is(store.invalidateTag('t'), 1)
  assert.is(store.stats().usedBytes, 1 + 1 + O)
  putTagged(store, 'd', 'v', ['x', 'y'])
  assert.is(store.delete('d'), true)
  assert.is(store.stats().usedBytes, 1 + 1 + O)
  putTagged(store, 'c', 'v', ['x'])
  store.checkInvariants()
  store.clear()
  assert.is(store.stats().usedBytes, 0)
  store.checkInvariants()
})

test('maxBytes: tags alone trigger eviction: re-setting the same value with tags evicts from the head to make room', () => {
  const one = charge('k1', 1)
  const T = TAG_LINK_OVERHEAD_BYTES
  const { store } = make({ policy: 'fifo', maxBytes: one * 4 + 100 })
  for (const k of ['k1', 'k2', 'k3', 'k4']) putTagged(store, k, 'v', undefined)
  assert.is(store.stats().usedBytes, one * 4)
  // Same key, same value: only the tag's 10 + 128 bytes are new, 38 over the budget.
  putTagged(store, 'k4', 'v', ['0123456789'])
  assert.equal(store.keys(), ['k2', 'k3', 'k4'])
  let s = store.stats()
  assert.is(s.evictionsSize, 1)
  assert.is(s.usedBytes, one * 3 + 10 + T)
  assert.is(s.rawBytes, 3) // the value figures stay values only
  assert.is(s.storedBytes, 3)
  // A second tag (10 + 128 more) needs two more entries gone.
  putTagged(store, 'k4', 'v', ['0123456789', 'abcdefghij'])
  assert.equal(store.keys(), ['k4'])
  s = store.stats()
  assert.is(s.evictionsSize, 3)
  assert.is(s.usedBytes, one + 2 * (10 + T))
  store.checkInvariants()
})

test('tag index: a tag on one entry, then two, then one again, is found by invalidateTag at every step', () => {
  const { store } = make()
  putTagged(store, 'a', 'v', ['t', 'u'])
  putTagged(store, 'b', 'v', ['t'])
  store.checkInvariants()
  assert.is(store.delete('a'), true) // t: back to a single slot; u: gone
  store.checkInvariants()
  assert.is(store.invalidateTag('u'), 0)
  putTagged(store, 'c', 'v', ['t'])
  putTagged(store, 'd', 'v', ['t'])
  assert.is(store.invalidateTag('t'), 3)
  assert.equal(store.keys(), [])
  assert.is(store.stats().usedBytes, 0)
  store.checkInvariants()
})

test('maxBytes: an update that grows an entry evicts others, never the updated entry (FIFO, entry at the head)', () => {
  const small = charge('a', 10)
  const { store } = make({ policy: 'fifo', maxBytes: small * 3 })
  put(store, 'a', '0123456789')
  put(store, 'b', '0123456789')
  put(store, 'c', '0123456789')
  // a grows by 2 * small - 1 bytes: b and c must go, a (the head) stays
  put(store, 'a', 'y'.repeat(10 + 2 * small - 1))
  assert.equal(store.keys(), ['a'])
  assert.is(store.stats().usedBytes, charge('a', 10 + 2 * small - 1))
  assert.is(store.stats().evictionsSize, 2)
  store.checkInvariants()
  // an update that shrinks frees its bytes: b then fits beside it
  put(store, 'a', '0')
  assert.is(store.stats().usedBytes, charge('a', 1))
  put(store, 'b', '0')
  assert.equal(store.keys(), ['a', 'b'])
  assert.is(store.stats().evictionsSize, 2)
})

test('maxBytes: an update that grows an entry under LRU evicts from the head', () => {
  const small = charge('a', 10)
  const { store } = make({ policy: 'lru', maxBytes: small * 3 })
  put(store, 'a', '0123456789')
  put(store, 'b', '0123456789')
  put(store, 'c', '0123456789')
  put(store, 'b', 'z'.repeat(10 + small)) // b moves to the tail; a goes
  assert.equal(store.keys(), ['c', 'b'])
  assert.is(store.stats().usedBytes, small + charge('b', 10 + small))
  assert.is(store.stats().evictionsSize, 1)
  store.checkInvariants()
})

// ── NX / XX ──────────────────────────────────────────────────────────────────

test('nx: sets only when absent; a refused set changes nothing (no value, order, counter or ttl change)', () => {
  const { store, clock } = make({ policy: 'lru', maxEntries: 2 })
  assert.is(put(store, 'a', '1', { nx: true, ttl: 100 }), true)
  put(store, 'b', '2')
  clock.t = 1040
  assert.is(put(store, 'a', 'other', { nx: true, ttl: 500 }), false)
  assert.is(store.stats().sets, 2)
  assert.is(store.ttl('a'), 60)
  put(store, 'c', '3') // a is still the LRU entry: the refused set did not refresh it
  assert.equal(store.keys(), ['b', 'c'])
  assert.is(text(store, 'b'), '2')
  store.checkInvariants()
})

test('xx: sets only when present', () => {
  const { store } = make()
  assert.is(put(store, 'a', '1', { xx: true }), false)
  assert.is(store.has('a'), false)
  assert.is(store.size, 0)
  assert.is(store.stats().sets, 0)
  put(store, 'a', '1')
  assert.is(put(store, 'a', '2', { xx: true }), true)
  assert.is(text(store, 'a'), '2')
  assert.is(store.stats().sets, 2)
})

test('nx and xx treat an expired entry as absent', () => {
  const { store, clock } = make()
  put(store, 'a', 'old', { ttl: 10 })
  put(store, 'b', 'old', { ttl: 10 })
  clock.t = 1010
  assert.is(put(store, 'a', 'new', { nx: true }), true)
  assert.is(text(store, 'a'), 'new')
  assert.is(put(store, 'b', 'new', { xx: true }), false)
  assert.is(store.has('b'), false)
  assert.is(store.stats().evictionsExpired, 2)
  store.checkInvariants()
})

// ── globs, delete, clear ─────────────────────────────────────────────────────

test('keys(glob) lists matching live keys in eviction order; keys() lists all', () => {
  const { store } = make({ policy: 'lru' })
  for (const k of ['user:1', 'user:2', 'session:1', 'user:10', 'user:']) put(store, k, 'v')
  store.get('user:1')
  assert.equal(store.keys(), ['user:2', 'session:1', 'user:10', 'user:', 'user:1'])
  assert.equal(store.keys(new Glob('user:?')), ['user:2', 'user:1'])
  assert.equal(store.keys(new Glob('user:*')), ['user:2', 'user:10', 'user:', 'user:1'])
  assert.equal(store.keys(new Glob('*:1')), ['session:1', 'user:1'])
  assert.equal(store.keys(new Glob('nothing*')), [])
  assert.is(store.stats().hits, 1) // listing keys is not a read
})

test('deleteMatching(glob) removes the matching keys and returns how many', () => {
  const { store } = make()
  for (const k of ['user:1', 'user:2', 'session:1', 'user:10']) put(store, k, 'v')
  assert.is(store.deleteMatching(new Glob('user:?')), 2)
  assert.equal(store.keys(), ['session:1', 'user:10'])
  assert.is(store.deleteMatching(new Glob('user:?')), 0)
  assert.is(store.deleteMatching(new Glob('*')), 2)
  const s = store.stats()
  assert.is(s.deletes, 4)
  assert.is(s.entries, 0)
  assert.is(s.usedBytes, 0)
  store.checkInvariants()
})

test('clear() removes everything, returns the live count, counts expired ones as expirations; the store stays usable', () => {
  const { store, clock } = make({ policy: 'lru', maxEntries: 4, compressMinBytes: 64 })
  put(store, 'a', 'v', { ttl: 10 })
  put(store, 'b', compressible)
  put(store, 'c', 'v')
  clock.t = 1010
  assert.is(store.clear(), 2)
  let s = store.stats()
  assert.is(s.deletes, 2)
  assert.is(s.evictionsExpired, 1)
  assert.equal([s.entries, s.usedBytes, s.rawBytes, s.storedBytes, s.compressedEntries], [0, 0, 0, 0, 0])
  assert.equal(store.keys(), [])
  assert.is(store.get('b'), undefined)
  store.checkInvariants()
  assert.is(store.clear(), 0)
  for (let i = 0; i < 6; i++) put(store, `n${i}`, String(i))
  assert.equal(store.keys(), ['n2', 'n3', 'n4', 'n5'])
  s = store.stats()
  assert.is(s.entries, 4)
  assert.is(s.evictionsSize, 2)
  store.checkInvariants()
})

test('keys named like Object.prototype members behave like any other key', () => {
  const names = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'valueOf', 'prototype']
  const { store } = make()
  for (const k of names) {
    assert.is(store.has(k), false, k)
    assert.is(store.get(k), undefined, k)
    assert.is(store.ttl(k), undefined, k)
    assert.is(store.delete(k), false, k)
    assert.is(put(store, k, `v-${k}`, { xx: true }), false, k)
  }
  for (const k of names) assert.is(put(store, k, `v-${k}`), true, k)
  for (const k of names) {
    assert.is(text(store, k), `v-${k}`, k)
    assert.is(store.has(k), true, k)
    assert.is(store.ttl(k), Infinity, k)
  }
  assert.equal(store.keys(), names)
  assert.equal(store.keys(new Glob('__*')), ['__proto__'])
  assert.is(store.stats().usedBytes, names.reduce((n, k) => n + charge(k, 2 + k.length), 0))
  assert.is(store.delete('__proto__'), true)
  assert.is(store.has('__proto__'), false)
  assert.is(text(store, 'constructor'), 'v-constructor')
  assert.is(store.size, names.length - 1)
  store.checkInvariants()
})

test('resetStats() zeroes the counters and keeps entries and bytes', () => {
  const { store, clock } = make({ maxEntries: 2, compressMinBytes: 64 })
  put(store, 'a', compressible)
  put(store, 'b', 'v', { ttl: 5 })
  put(store, 'c', 'v')
  put(store, 'd', 'v')
  store.get('c')
  store.get('zz')
  store.delete('d')
  put(store, 'e', compressible)
  clock.t = 2000
  const before = store.stats()
  assert.is(before.sets, 5)
  assert.is(before.evictionsSize, 2)
  store.resetStats()
  assert.equal(store.stats(), {
    ...zeroCounters,
    entries: before.entries,
    compressedEntries: before.compressedEntries,
    usedBytes: before.usedBytes,
    rawBytes: before.rawBytes,
    storedBytes: before.storedBytes,
    arenaBytes: before.arenaBytes,
    arenaFreeBytes: before.arenaFreeBytes,
    maxBytes: null,
    maxEntries: 2,
  })
  assert.is(before.entries, 2)
  assert.is(before.compressedEntries, 1)
  assert.is(text(store, 'e'), compressible)
  assert.is(store.stats().hits, 1)
  store.checkInvariants()
})


test.run()
