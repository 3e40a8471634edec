// Compaction of a region store's value arena (workers/region_slots.ts
// `compact`), with a reader of its shared memory as another thread has one:
// the reader's found-and-validated reads are never wrong, whatever point of
// the compaction they straddle; it asks the shard (find() false) from the
// compaction until it adopts the new arena, then reads the same values there;
// the store's entries, stats and invariants survive any number of
// compactions between random ops.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { regionConfig } from '../fixtures/helpers.js'
import { RegionStore } from '../../workers/region_store.js'
import { ReaderGrace } from '../../workers/reader_grace.js'
import { AccessLogReader, SharedRegionReader, allocateAccessLog, hashBytes, newFound } from '../../src/wire/shared_region.js'
import { ValueTag } from '../../src/wire/protocol.js'

function setup() {
  const shardEnd = new AccessLogReader(allocateAccessLog(1))
  const store = new RegionStore(regionConfig({ name: 'default', maxEntries: 5000 }), undefined, undefined, undefined, new ReaderGrace([shardEnd]))
  const reader = new SharedRegionReader(store.memory)
  const put = (k: string, v: string): void => void store.set(k, ValueTag.STRING, Buffer.from(v), undefined, false, false, undefined)
  /** What the reader reads of `key` from shared memory: the value, or undefined when only the shard can answer. */
  const read = (key: string): string | undefined => {
    const kb = Buffer.from(key)
    const f = newFound()
    if (!reader.find(kb, kb.length, hashBytes(kb, 0, kb.length), f)) return undefined
    const v = reader.valueString(f)
    return reader.valid(f) ? v : undefined
  }
  return { store, reader, put, read }
}

test('a reader asks the shard from a compaction until it adopts the new arena, then reads the same values there', () => {
  const { store, reader, put, read } = setup()
  for (let i = 0; i < 3000; i++) put(`s${i}`, 'x'.repeat(90))
  for (let i = 0; i < 3000; i++) store.delete(`s${i}`)
  for (let i = 0; i < 300; i++) put(`b${i}`, `${i}`.padEnd(900, 'y'))
  assert.is(read('b7'), '7'.padEnd(900, 'y'))
  const before = store.stats()
  assert.ok(before.arenaFreeBytes >= 3000 * 95, String(before.arenaFreeBytes)) // 3,000 chunks of 96 bytes (key and value)
  const oldArena = store.memory.values
  const r = store.compact()
  assert.is(r.gen, 1)
  assert.ok(r.afterBytes < r.beforeBytes, `${r.beforeBytes} -> ${r.afterBytes}`)
  const after = store.stats()
  assert.is(after.entries, 300)
  assert.is(after.arenaFreeBytes, 0)
  assert.ok(after.arenaBytes < before.arenaBytes - 250_000)
  store.checkInvariants()
  // The reader still maps the old arena: it must not read the new refs there.
  assert.is(reader.arenaGen, 0)
  for (let i = 0; i < 300; i++) assert.is(read(`b${i}`), undefined, 'asks the shard')
  assert.ok(oldArena !== store.memory.values)
  reader.adoptArena(r.values, r.gen)
  for (let i = 0; i < 300; i++) assert.is(read(`b${i}`), `${i}`.padEnd(900, 'y'))
  reader.adoptArena(oldArena, 0) // an older arena's message, late: ignored
  assert.is(read('b1'), '1'.padEnd(900, 'y'))
  for (let i = 0; i < 300; i++) assert.is(store.get(`b${i}`)?.toString(), `${i}`.padEnd(900, 'y'))
})

test('a read that straddles the compaction is refused by its closing check', () => {
  const { store, reader, put } = setup()
  for (let i = 0; i < 50; i++) put(`k${i}`, `value ${i}`)
  const kb = Buffer.from('k3')
  const f = newFound()
  assert.ok(reader.find(kb, kb.length, hashBytes(kb, 0, kb.length), f))
  store.compact() // between this reader's find and its last check
  assert.is(reader.valid(f), false)
})

type Op = { op: 'set'; key: number; size: number } | { op: 'delete'; key: number } | { op: 'compact' } | { op: 'adopt' }

test('property: compactions between random sets and deletes keep every entry, the invariants and what the reader reads', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 80 }), size: fc.integer({ min: 0, max: 600 }) }) },
          { weight: 3, arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 80 }) }) },
          { weight: 1, arbitrary: fc.record({ op: fc.constant('compact' as const) }) },
          { weight: 1, arbitrary: fc.record({ op: fc.constant('adopt' as const) }) },
        ),
        { minLength: 1, maxLength: 200 },
      ),
      (ops) => {
        const { store, reader, put, read } = setup()
        const model = new Map<string, string>()
        let latest: { values: SharedArrayBuffer; gen: number } | undefined
        for (const o of ops) {
          if (o.op === 'set') {
            const v = String(o.key).padEnd(o.size, 'v')
            put(`k${o.key}`, v)
            model.set(`k${o.key}`, v)
          } else if (o.op === 'delete') {
            store.delete(`k${o.key}`)
            model.delete(`k${o.key}`)
          } else if (o.op === 'compact') latest = store.compact()
          else if (latest !== undefined) reader.adoptArena(latest.values, latest.gen)
          store.checkInvariants()
          for (const [k, v] of model) {
            assert.is(store.get(k)?.toString(), v)
            const seen = read(k)
            assert.ok(seen === undefined || seen === v, `${k}: the reader read ${seen?.slice(0, 20)} for ${v.slice(0, 20)}`)
          }
        }
        assert.is(store.stats().entries, model.size)
      },
    ),
    { numRuns: 200 },
  )
})

test.run()
