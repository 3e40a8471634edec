// KeyTable: open addressing over key bytes, backward-shift deletion, growth. Checked against a Map.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { KeyTable, hashBytes } from '../../workers/key_table.js'
import { ValueSlab } from '../../workers/value_slab.js'
import { RegionViews, SLOT_WORDS, allocateRegionMemory } from '../../src/wire/shared_region.js'

/** Where each table's caller stores key bytes (the region store puts them in the value arena too). */
const arenas = new WeakMap<KeyTable, ValueSlab>()

/** A table over fresh shared memory with room for `slots` slot records. */
function table(expectedKeys: number, slots: number): KeyTable {
  const memory = allocateRegionMemory(slots)
  memory.slots.grow(slots * SLOT_WORDS * 4)
  const views = new RegionViews(memory)
  const t = new KeyTable(views, expectedKeys, () => views.remap())
  arenas.set(t, new ValueSlab(memory.values, () => views.remap()))
  return t
}

const enc = (s: string) => Buffer.from(s, 'utf8')

function find(t: KeyTable, key: string): number {
  const b = enc(key)
  return t.find(b, 0, b.length, hashBytes(b, 0, b.length))
}

function insert(t: KeyTable, slot: number, key: string): void {
  // The key sits inside a larger buffer, as it does in a frame.
  const b = Buffer.concat([enc('<<'), enc(key), enc('>>')])
  const len = Buffer.byteLength(key)
  const ref = arenas.get(t)!.store(b.subarray(2, 2 + len))
  t.insert(slot, ref, len, hashBytes(b, 2, len))
}

test('finds keys by their bytes, not by buffer identity or position', () => {
  const t = table(10, 10)
  insert(t, 3, 'user:1')
  insert(t, 7, 'ünïcödé ✓')
  assert.is(find(t, 'user:1'), 3)
  assert.is(find(t, 'ünïcödé ✓'), 7)
  assert.is(find(t, 'user:2'), -1)
  assert.is(find(t, 'user:'), -1)
  assert.is(find(t, 'user:10'), -1)
  assert.is(t.keyString(7), 'ünïcödé ✓')
  assert.is(t.keyLength(7), Buffer.byteLength('ünïcödé ✓'))
  assert.is(t.size, 2)
})

test('random inserts and removes in a table that must grow agree with a Map', () => {
  // Started for 4 keys (16 buckets): it grows, and probe runs collide constantly.
  let seed = 12345
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
  const t = table(4, 1000)
  const model = new Map<string, number>()
  const freeSlots: number[] = []
  let nextSlot = 0
  for (let step = 0; step < 20_000; step++) {
    const key = `k${Math.floor(rand() * 600)}`
    const slot = find(t, key)
    assert.is(slot, model.get(key) ?? -1, `find ${key} at step ${step}`)
    if (slot < 0 && rand() < 0.6) {
      const s = freeSlots.pop() ?? nextSlot++
      insert(t, s, key)
      model.set(key, s)
    } else if (slot >= 0 && rand() < 0.5) {
      t.remove(slot)
      model.delete(key)
      freeSlots.push(slot)
    }
  }
  assert.is(t.size, model.size)
  for (const [key, slot] of model) {
    assert.is(find(t, key), slot)
    assert.ok(t.indexes(slot))
    assert.is(t.keyString(slot), key)
  }
  t.clear()
  assert.is(t.size, 0)
  for (const key of model.keys()) assert.is(find(t, key), -1)
})

test.run()
