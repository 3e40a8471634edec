// The region store's byte accounting and compression: what an entry is charged,
// and when values are stored LZ4-compressed (and read back).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { compressIfSmaller } from '../../src/wire/compression.js'
import { O, enc, dec, make, put, text, charge, noise, compressible } from '../fixtures/region_store.js'

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

test.run()
