/**
 * Unit tests of `RegionStore` (workers/region_store.ts), on the calling thread,
 * with an injected clock: eviction order, budgets, NX/XX, TTL, byte accounting,
 * compression, corruption, globs, and a model-based property test that checks
 * every counter and every read against a Map-based reference after every op.
 */
import { test } from 'uvu'
import { regionConfig } from '../fixtures/helpers.js'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { RegionStore } from '../../workers/region_store.js'
import type { RegionShardConfig, RegionShardStats } from '../../src/wire/region_types.js'
import { compressIfSmaller } from '../../src/wire/compression.js'
import { ENTRY_OVERHEAD_BYTES, TAG_LINK_OVERHEAD_BYTES } from '../../src/wire/protocol.js'
import { Glob } from '../../src/wire/glob.js'

const O = ENTRY_OVERHEAD_BYTES
const enc = new TextEncoder()
const dec = new TextDecoder()

// ── helpers ──────────────────────────────────────────────────────────────────

class Clock {
  t = 1000
  readonly now = (): number => this.t
}

const config = regionConfig

function make(over: Partial<RegionShardConfig> = {}): { store: RegionStore; clock: Clock } {
  const clock = new Clock()
  return { store: new RegionStore(config(over), clock.now), clock }
}

interface PutOptions {
  ttl?: number
  nx?: boolean
  xx?: boolean
  tag?: number
  meta?: Uint8Array
}

/** set() with the key's real UTF-8 length, as the shard passes it. */
function put(store: RegionStore, key: string, value: string | Uint8Array, o: PutOptions = {}): boolean {
  const raw = typeof value === 'string' ? enc.encode(value) : value
  return store.set(key, o.tag ?? 0, raw, o.ttl, o.nx ?? false, o.xx ?? false, o.meta)
}

/** get() decoded as UTF-8, or undefined on a miss. */
function text(store: RegionStore, key: string): string | undefined {
  const v = store.get(key)
  return v === undefined ? undefined : dec.decode(v)
}

/** The charge of an entry: UTF-8 key bytes + stored value bytes + metadata bytes + overhead. */
function charge(key: string, storedBytes: number, metaBytes = 0): number {
  return Buffer.byteLength(key) + storedBytes + metaBytes + O
}

const zeroCounters = {
  hits: 0,
  misses: 0,
  staleServed: 0,
  sets: 0,
  deletes: 0,
  evictionsSize: 0,
  evictionsExpired: 0,
  corrupt: 0,
}

/** Deterministic incompressible bytes (xorshift32). */
function noise(n: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed >>> 0
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

const compressible = 'abcdefgh'.repeat(50) // 400 bytes, LZ4 shrinks it a lot

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

// ── byte accounting ──────────────────────────────────────────────────────────

test('stats(): usedBytes, rawBytes, storedBytes and entries follow sets, updates and deletes', () => {
  const { store } = make()
  put(store, 'a', 'hello', { meta: new Uint8Array(3) })
  put(store, 'bb', 'x'.repeat(20))
  let s = store.stats()
  assert.is(s.entries, 2)
  assert.is(s.usedBytes, 1 + 5 + 3 + O + (2 + 20 + O))
  assert.is(s.rawBytes, 25)
  assert.is(s.storedBytes, 25)
  assert.is(s.compressedEntries, 0)
  put(store, 'bb', 'y') // shrink, no metadata
  s = store.stats()
  assert.is(s.usedBytes, 1 + 5 + 3 + O + (2 + 1 + O))
  assert.is(s.rawBytes, 6)
  assert.is(s.storedBytes, 6)
  put(store, 'a', 'hello') // the update drops the metadata
  assert.is(store.stats().usedBytes, 1 + 5 + O + (2 + 1 + O))
  assert.is(store.entry('a')!.metadata, undefined)
  assert.is(store.delete('a'), true)
  assert.is(store.delete('a'), false)
  s = store.stats()
  assert.is(s.entries, 1)
  assert.is(s.usedBytes, 2 + 1 + O)
  assert.is(s.rawBytes, 1)
  assert.is(s.deletes, 1)
  assert.is(store.delete('bb'), true)
  s = store.stats()
  assert.equal([s.entries, s.usedBytes, s.rawBytes, s.storedBytes], [0, 0, 0, 0])
  store.checkInvariants()
})

// ── compression ──────────────────────────────────────────────────────────────

test('compression on: a compressible value is stored compressed, accounted by stored size, and round-trips', () => {
  const { store } = make({ compressMinBytes: 64 })
  const raw = enc.encode(compressible)
  const expected = compressIfSmaller(raw)!.length
  assert.ok(expected < 400)
  put(store, 'c', raw, { tag: 3 })
  const s = store.stats()
  assert.is(s.compressedEntries, 1)
  assert.is(s.rawBytes, 400)
  assert.is(s.storedBytes, expected)
  assert.ok(s.storedBytes < s.rawBytes)
  assert.is(s.usedBytes, charge('c', expected))
  assert.is(text(store, 'c'), compressible)
  assert.is(store.lastTag, 3) // the compression flag does not leak into the tag
  const e = store.entry('c')!
  assert.is(e.compressed, true)
  assert.is(e.tag, 3)
  assert.is(e.sizeBytes, 400)
  assert.is(e.storedBytes, expected)
  assert.is(dec.decode(e.value), compressible)
  store.checkInvariants()
})

test('compression: values shorter than compressMinBytes are stored as they are', () => {
  const { store } = make({ compressMinBytes: 400 })
  put(store, 'short', compressible.slice(0, 399))
  put(store, 'exact', compressible)
  assert.is(store.entry('short')!.compressed, false)
  assert.is(store.entry('exact')!.compressed, true)
  const s = store.stats()
  assert.is(s.compressedEntries, 1)
  assert.is(s.rawBytes, 799)
  assert.is(s.storedBytes, 399 + compressIfSmaller(enc.encode(compressible))!.length)
})

test('compression off (compressMinBytes Infinity): nothing is compressed', () => {
  const { store } = make({ compressMinBytes: Infinity })
  put(store, 'c', compressible)
  const s = store.stats()
  assert.is(s.compressedEntries, 0)
  assert.is(s.rawBytes, 400)
  assert.is(s.storedBytes, 400)
  assert.is(s.usedBytes, charge('c', 400))
  assert.is(store.entry('c')!.compressed, false)
  assert.is(text(store, 'c'), compressible)
})

test('compression: incompressible data stays uncompressed (and small values that would grow)', () => {
  const { store } = make({ compressMinBytes: 0 })
  const rnd = noise(1000)
  put(store, 'rnd', rnd)
  put(store, 'tiny', 'aaaaaaaaaaaaaaaa') // 16 bytes: the LZ4 frame would be larger
  put(store, 'empty', new Uint8Array(0))
  const s = store.stats()
  assert.is(s.compressedEntries, 0)
  assert.is(s.rawBytes, 1016)
  assert.is(s.storedBytes, 1016)
  assert.equal(Array.from(store.get('rnd')!), Array.from(rnd))
  assert.is(store.get('empty')!.length, 0)
  store.checkInvariants()
})

test('compression: updating a compressed entry with an incompressible value keeps the counters right', () => {
  const { store } = make({ compressMinBytes: 64 })
  put(store, 'k', compressible)
  assert.is(store.stats().compressedEntries, 1)
  put(store, 'k', noise(100))
  let s = store.stats()
  assert.is(s.compressedEntries, 0)
  assert.is(s.storedBytes, 100)
  assert.is(s.rawBytes, 100)
  put(store, 'k', compressible)
  assert.is(store.delete('k'), true)
  s = store.stats()
  assert.is(s.compressedEntries, 0)
  assert.is(s.storedBytes, 0)
  store.checkInvariants()
})

test('corruption: a flipped byte anywhere in a compressed value reads as a miss, is counted and removed, never throws', () => {
  const raw = enc.encode(compressible)
  const storedLength = compressIfSmaller(raw)!.length
  for (let offset = 0; offset < storedLength; offset++) {
    for (const read of ['get', 'entry'] as const) {
      const { store } = make({ compressMinBytes: 64 })
      put(store, 'c', raw)
      put(store, 'ok', 'fine')
      store.corruptForTest('c', offset)
      let got: unknown
      try {
        got = read === 'get' ? store.get('c') : store.entry('c')
      } catch (err) {
        assert.unreachable(`${read}() threw at offset ${offset}: ${String(err)}`)
      }
      assert.is(got, undefined, `${read}() returned a value at corrupted offset ${offset}`)
      const s = store.stats()
      assert.is(s.corrupt, 1)
      assert.is(s.misses, 1)
      assert.is(s.hits, 0)
      assert.is(s.entries, 1)
      assert.is(s.compressedEntries, 0)
      assert.is(s.usedBytes, charge('ok', 4))
      assert.is(store.has('c'), false)
      assert.is(store.get('c'), undefined)
      assert.is(store.stats().corrupt, 1) // counted once
      assert.is(text(store, 'ok'), 'fine')
      store.checkInvariants()
    }
  }
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
    maxBytes: null,
    maxEntries: 2,
  })
  assert.is(before.entries, 2)
  assert.is(before.compressedEntries, 1)
  assert.is(text(store, 'e'), compressible)
  assert.is(store.stats().hits, 1)
  store.checkInvariants()
})

// ── model-based property test ────────────────────────────────────────────────

interface ModelEntry {
  slot: number
  raw: Uint8Array
  stored: number
  compressed: boolean
  /** Compressed entries: offsets of stored bytes flipped an odd number of times (a second flip restores the byte). */
  flipped: Set<number>
  tag: number
  meta: Uint8Array | undefined
  createdAt: number
  expiresAt: number
  charge: number
}

/**
 * The reference: a Map whose insertion order is the eviction order (head
 * first). It mirrors the documented behaviour: lazy expiry on touch, eviction
 * from the head sparing the entry just written, slot reuse (last freed, first
 * reused) for sweep's slot-by-slot cursor.
 */
class Model {
  readonly map = new Map<string, ModelEntry>()
  readonly slots: (string | undefined)[] = []
  free: number[] = []
  used = 0
  cursor = 0
  counters = { ...zeroCounters }

  constructor(
    readonly cfg: RegionShardConfig,
    readonly clock: Clock,
  ) {}

  #remove(key: string): void {
    const e = this.map.get(key)!
    this.map.delete(key)
    this.slots[e.slot] = undefined
    this.free.push(e.slot)
  }

  #live(key: string): ModelEntry | undefined {
    const e = this.map.get(key)
    if (e === undefined) return undefined
    if (e.expiresAt <= this.clock.t) {
      this.#remove(key)
      this.counters.evictionsExpired++
      return undefined
    }
    return e
  }

  #remaining(expiresAt: number): number {
    return expiresAt === Infinity ? Infinity : Math.max(1, Math.ceil(expiresAt - this.clock.t))
  }

  /** A read: undefined on a miss (also on corruption); refreshes under LRU. */
  read(key: string): ModelEntry | undefined {
    const e = this.#live(key)
    if (e === undefined) {
      this.counters.misses++
      return undefined
    }
    if (e.flipped.size > 0) {
      this.#remove(key)
      this.counters.corrupt++
      this.counters.misses++
      return undefined
    }
    if (this.cfg.policy === 'lru') {
      this.map.delete(key)
      this.map.set(key, e)
    }
    this.counters.hits++
    return e
  }

  has(key: string): boolean {
    return this.#live(key) !== undefined
  }

  ttl(key: string): number | undefined {
    const e = this.#live(key)
    return e === undefined ? undefined : this.#remaining(e.expiresAt)
  }

  set(key: string, tag: number, raw: Uint8Array, ttl: number | undefined, nx: boolean, xx: boolean, meta: Uint8Array | undefined): boolean {
    const found = this.#live(key)
    if (found === undefined ? xx : nx) return false
    let stored = raw.length
    let compressed = false
    if (raw.length >= this.cfg.compressMinBytes) {
      const c = compressIfSmaller(raw)
      if (c !== undefined) {
        stored = c.length
        compressed = true
      }
    }
    const now = this.clock.t
    const e: ModelEntry = {
      slot: found?.slot ?? -1,
      raw: raw.slice(),
      stored,
      compressed,
      flipped: new Set(),
      tag,
      meta: meta?.slice(),
      createdAt: now,
      expiresAt: now + (ttl ?? this.cfg.defaultTtl),
      charge: Buffer.byteLength(key) + stored + (meta?.length ?? 0) + O,
    }
    if (found === undefined) {
      e.slot = this.free.pop() ?? this.used++
      this.slots[e.slot] = key
      this.map.set(key, e)
    } else if (this.cfg.policy === 'lru') {
      this.map.delete(key)
      this.map.set(key, e)
    } else {
      this.map.set(key, e) // keeps its place in insertion order
    }
    this.counters.sets++
    while (this.map.size > this.cfg.maxEntries || this.usedBytes() > this.cfg.maxBytes) {
      let victim: string | undefined
      for (const k of this.map.keys()) {
        if (k !== key) {
          victim = k
          break
        }
      }
      if (victim === undefined) break
      this.#remove(victim)
      this.counters.evictionsSize++
    }
    return true
  }

  delete(key: string): boolean {
    if (this.#live(key) === undefined) return false
    this.#remove(key)
    this.counters.deletes++
    return true
  }

  keys(glob: Glob | undefined): string[] {
    const out: string[] = []
    for (const [k, e] of [...this.map]) {
      if (e.expiresAt <= this.clock.t) {
        this.#remove(k)
        this.counters.evictionsExpired++
      } else if (glob === undefined || glob.matches(k)) out.push(k)
    }
    return out
  }

  deleteMatching(glob: Glob): number {
    let n = 0
    for (const [k, e] of [...this.map]) {
      if (e.expiresAt <= this.clock.t) {
        this.#remove(k)
        this.counters.evictionsExpired++
      } else if (glob.matches(k)) {
        this.#remove(k)
        this.counters.deletes++
        n++
      }
    }
    return n
  }

  sweep(budget: number): number {
    if (this.map.size === 0) return 0
    const end = Math.min(this.used, budget === Infinity ? this.used : this.cursor + budget)
    let slot = budget === Infinity ? 0 : this.cursor
    let n = 0
    for (; slot < end; slot++) {
      const k = this.slots[slot]
      if (k !== undefined && this.map.get(k)!.expiresAt <= this.clock.t) {
        this.#remove(k)
        this.counters.evictionsExpired++
        n++
      }
    }
    this.cursor = slot >= this.used ? 0 : slot
    return n
  }

  clear(): number {
    this.sweep(Infinity)
    const live = this.map.size
    this.counters.deletes += live
    this.map.clear()
    this.slots.length = 0
    this.free = []
    this.used = 0
    this.cursor = 0
    return live
  }

  /** What corruptForTest does to the entry (expired or not). */
  corrupt(key: string, offset: number): void {
    const e = this.map.get(key)!
    if (e.compressed) {
      const at = offset % e.stored
      if (!e.flipped.delete(at)) e.flipped.add(at)
    } else if (e.raw.length > 0) {
      const at = offset % e.raw.length
      e.raw[at] = e.raw[at]! ^ 0x5a
    }
  }

  usedBytes(): number {
    let n = 0
    for (const e of this.map.values()) n += e.charge
    return n
  }

  stats(): RegionShardStats {
    let raw = 0
    let stored = 0
    let compressed = 0
    for (const e of this.map.values()) {
      raw += e.raw.length
      stored += e.stored
      if (e.compressed) compressed++
    }
    return {
      ...this.counters,
      // The model has no grace entries (getOrCompute's, tested in test/threads/grace.test.ts).
      staleServed: 0,
      entries: this.map.size,
      compressedEntries: compressed,
      usedBytes: this.usedBytes(),
      rawBytes: raw,
      storedBytes: stored,
      maxBytes: Number.isFinite(this.cfg.maxBytes) ? this.cfg.maxBytes : null,
      maxEntries: Number.isFinite(this.cfg.maxEntries) ? this.cfg.maxEntries : null,
    }
  }
}

const KEYS = ['a', 'b', 'c', 'd', 'e', 'ab', 'é', '__proto__', 'constructor']
const GLOBS = ['*', 'a*', '?', '[a-c]', '[!a]*', '_*', 'é', 'c*r', '']

const keyArb = fc.constantFrom(...KEYS)
/** Values up to 250 bytes: repetitive (compressible), random, or short. */
const valueArb = fc.oneof(
  fc.tuple(fc.constantFrom('ab', 'xyz', 'hello world ', '\u00e9\u{1F600}'), fc.integer({ min: 0, max: 20 })).map(([u, n]) => enc.encode(u.repeat(n)).slice(0, 250)),
  fc.uint8Array({ maxLength: 250, size: 'max' }),
  fc.uint8Array({ maxLength: 8 }),
)

type Op =
  | { op: 'set'; key: string; tag: number; value: Uint8Array; ttl: number | undefined; nx: boolean; xx: boolean; meta: Uint8Array | undefined }
  | { op: 'get' | 'entry' | 'has' | 'ttl' | 'delete'; key: string }
  | { op: 'advance'; ms: number }
  | { op: 'keys' | 'deleteMatching'; glob: string | undefined }
  | { op: 'clear' | 'cleanupExpired' }
  | { op: 'sweep'; budget: number }
  | { op: 'corrupt'; key: string; offset: number; then: 'get' | 'entry' | 'nothing' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      key: keyArb,
      tag: fc.integer({ min: 0, max: 15 }),
      value: valueArb,
      ttl: fc.option(fc.oneof(fc.integer({ min: 1, max: 50 }), fc.constant(0.25)), { nil: undefined }),
      // plain sets twice as often as NX or XX ones
      flags: fc.constantFrom<[boolean, boolean]>([false, false], [false, false], [true, false], [false, true]),
      meta: fc.option(fc.uint8Array({ maxLength: 8 }), { nil: undefined }),
    }).map(({ flags: [nx, xx], ...r }) => ({ ...r, nx, xx })),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('get' as const, 'entry' as const, 'has' as const, 'ttl' as const, 'delete' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.constant(0.5)) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('keys' as const, 'deleteMatching' as const), glob: fc.option(fc.constantFrom(...GLOBS), { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('clear' as const, 'cleanupExpired' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('sweep' as const), budget: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(Infinity)) }) },
  // A corruption is mostly read back at once (else it is rarely read at all).
  { weight: 1, arbitrary: fc.record({ op: fc.constant('corrupt' as const), key: keyArb, offset: fc.nat({ max: 300 }), then: fc.constantFrom('get' as const, 'entry' as const, 'nothing' as const) }) },
)

const configArb: fc.Arbitrary<RegionShardConfig> = fc.record({
  name: fc.constant('prop'),
  policy: fc.constantFrom('lru' as const, 'fifo' as const),
  // every entry fits alone: 11 (longest key) + 250 + 8 + overhead <= 340
  maxBytes: fc.constantFrom(Infinity, 340, 500, 900),
  maxEntries: fc.constantFrom(Infinity, 1, 2, 3, 5),
  defaultTtl: fc.constantFrom(Infinity, 25),
  compressMinBytes: fc.constantFrom(Infinity, 0, 32),
})

function bytesOf(v: Uint8Array | undefined): number[] | undefined {
  return v === undefined ? undefined : Array.from(v)
}

function describe(op: Op): string {
  return JSON.stringify(op, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v === Infinity ? 'Infinity' : v))
}

/** Applies one op to both, compares results, stats and invariants. */
function step(store: RegionStore, model: Model, clock: Clock, op: Op, i: number): void {
  const where = `op #${i} ${describe(op)}`
  switch (op.op) {
    case 'set':
      assert.is(store.set(op.key, op.tag, op.value, op.ttl, op.nx, op.xx, op.meta), model.set(op.key, op.tag, op.value, op.ttl, op.nx, op.xx, op.meta), where)
      break
    case 'get': {
      const want = model.read(op.key)
      const got = store.get(op.key)
      assert.equal(bytesOf(got), bytesOf(want?.raw), where)
      if (want !== undefined) assert.is(store.lastTag, want.tag, where)
      break
    }
    case 'entry': {
      const want = model.read(op.key)
      const got = store.entry(op.key)
      if (want === undefined) {
        assert.is(got, undefined, where)
      } else {
        assert.ok(got !== undefined, where)
        assert.equal(
          { ...got!, value: bytesOf(got!.value), metadata: bytesOf(got!.metadata) },
          {
            tag: want.tag,
            value: bytesOf(want.raw),
            createdAt: want.createdAt,
            expiresAt: want.expiresAt,
            ttlRemaining: want.expiresAt === Infinity ? Infinity : Math.max(1, Math.ceil(want.expiresAt - clock.t)),
            sizeBytes: want.raw.length,
            storedBytes: want.stored,
            compressed: want.compressed,
            metadata: bytesOf(want.meta),
          },
          where,
        )
      }
      break
    }
    case 'has':
      assert.is(store.has(op.key), model.has(op.key), where)
      break
    case 'ttl':
      assert.is(store.ttl(op.key), model.ttl(op.key), where)
      break
    case 'delete':
      assert.is(store.delete(op.key), model.delete(op.key), where)
      break
    case 'advance':
      clock.t += op.ms
      break
    case 'keys': {
      const glob = op.glob === undefined ? undefined : new Glob(op.glob)
      assert.equal(store.keys(glob), model.keys(glob), where)
      break
    }
    case 'deleteMatching': {
      const glob = new Glob(op.glob ?? '*')
      assert.is(store.deleteMatching(glob), model.deleteMatching(glob), where)
      break
    }
    case 'clear':
      assert.is(store.clear(), model.clear(), where)
      break
    case 'cleanupExpired':
      assert.is(store.cleanupExpired(), model.sweep(Infinity), where)
      break
    case 'sweep':
      assert.is(store.sweep(op.budget), model.sweep(op.budget), where)
      break
    case 'corrupt':
      // corruptForTest needs an indexed entry (expired or not); skip otherwise.
      if (!model.map.has(op.key)) return
      store.corruptForTest(op.key, op.offset)
      model.corrupt(op.key, op.offset)
      if (op.then !== 'nothing') step(store, model, clock, { op: op.then, key: op.key }, i)
      break
  }
  try {
    store.checkInvariants()
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`)
  }
  assert.equal(store.stats(), model.stats(), where)
  assert.is(store.size, model.map.size, where)
}

test('property: random op sequences keep the invariants and agree with a Map-based LRU/FIFO model', () => {
  fc.assert(
    fc.property(configArb, fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), (cfg, ops) => {
      const clock = new Clock()
      const store = new RegionStore(cfg, clock.now)
      const model = new Model(cfg, clock)
      ops.forEach((op, i) => step(store, model, clock, op, i))
      // Finally the live keys agree too.
      assert.equal(store.keys(), model.keys(undefined))
    }),
    { numRuns: 1000 },
  )
})

test('property: a long run on one store (slot reuse, array growth, many evictions)', () => {
  fc.assert(
    fc.property(
      fc.record({ ...configArbFields(), maxEntries: fc.constantFrom(300, Infinity), maxBytes: fc.constantFrom(Infinity, 30_000) }),
      fc.array(opArb, { minLength: 500, maxLength: 1500, size: 'max' }),
      (cfg, ops) => {
        const clock = new Clock()
        const store = new RegionStore(cfg, clock.now)
        const model = new Model(cfg, clock)
        // Enough distinct keys to pass the initial 256-slot capacity.
        const many = ops.map((op, i): Op => ('key' in op && i % 2 === 0 ? { ...op, key: `${op.key}${i % 400}` } : op))
        many.forEach((op, i) => step(store, model, clock, op, i))
      },
    ),
    { numRuns: 15 },
  )
})

function configArbFields() {
  return {
    name: fc.constant('long'),
    policy: fc.constantFrom('lru' as const, 'fifo' as const),
    defaultTtl: fc.constantFrom(Infinity, 400),
    compressMinBytes: fc.constantFrom(Infinity, 32),
  }
}

test.run()
