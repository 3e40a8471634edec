// Freed chunks of a region's arena are not written again while a reader thread may still be reading
// them (workers/reader_grace.ts): the half of the direct-read protocol that the JavaScript memory model
// needs, since a reader's plain loads of chunk bytes are ordered by nothing else.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { regionConfig } from '../fixtures/helpers.js'
import { RegionStore } from '../../workers/region_store.js'
import { ReaderGrace } from '../../workers/reader_grace.js'
import { AccessLogReader, AccessLogWriter, SLOT_WORDS, SharedRegionReader, Slot, allocateAccessLog, hashBytes, newFound } from '../../src/wire/shared_region.js'
import type { Found } from '../../src/wire/shared_region.js'
import { ValueTag } from '../../src/wire/protocol.js'

/** A store as a shard makes it, one reader thread's log (both ends here), and a reader of its memory. */
function setup(readersOf: (shardEnd: AccessLogReader) => AccessLogReader[] = (r) => [r]) {
  const logMemory = allocateAccessLog(1)
  const log = new AccessLogWriter(logMemory, () => {})
  const shardEnd = new AccessLogReader(logMemory)
  const store = new RegionStore(regionConfig({ name: 'default', maxEntries: 1000 }), undefined, undefined, undefined, new ReaderGrace(readersOf(shardEnd)))
  const reader = new SharedRegionReader(store.memory)
  const put = (k: string, v: string): void => void store.set(k, ValueTag.STRING, Buffer.from(v), undefined, false, false, undefined)
  /** The ref of `key`'s chunk, as a reader finds it. */
  const chunkOf = (key: string): number => {
    const kb = Buffer.from(key)
    const f: Found = newFound()
    assert.ok(reader.find(kb, kb.length, hashBytes(kb, 0, kb.length), f), `${key} found`)
    return reader.views.slotsU[f.slot * SLOT_WORDS + Slot.KEY_REF]!
  }
  const bytesAt = (ref: number, n: number): string => reader.views.values.toString('utf8', ref, ref + n)
  return { log, shardEnd, store, put, chunkOf, bytesAt }
}

test('a chunk freed while a reader is inside a read is not reused until that read ends', () => {
  const { log, store, put, chunkOf, bytesAt } = setup()
  put('a', 'value-a')
  const old = chunkOf('a')
  log.enterRead() // a reader on another thread is between its key compare and its last byte copied
  store.delete('a')
  put('b', 'value-b') // same size class: without the grace period it takes a's chunk
  assert.is.not(chunkOf('b'), old)
  assert.is(bytesAt(old, 8), 'avalue-a', "the reader still finds a's key and value bytes")
  put('c', 'value-c')
  assert.is.not(chunkOf('c'), old, 'still inside the read: still not reused')
  assert.is(store.retiredChunks, 1)
  log.exitRead()
  put('d', 'value-d')
  assert.is(chunkOf('d'), old, 'reused once the read ended')
  assert.is(store.retiredChunks, 0)
  store.checkInvariants()
})

test('a reader outside any read does not hold chunks back', () => {
  const { log, store, put, chunkOf } = setup()
  log.enterRead()
  log.exitRead()
  put('a', 'value-a')
  const old = chunkOf('a')
  store.delete('a')
  put('b', 'value-b')
  assert.is(chunkOf('b'), old)
})

test('an overwrite and a clear retire chunks the same way', () => {
  const { log, store, put, chunkOf } = setup()
  put('a', 'value-1')
  const first = chunkOf('a')
  log.enterRead()
  put('a', 'value-2') // overwrite: the old chunk is freed
  put('x', 'value-x')
  assert.is.not(chunkOf('x'), first)
  const second = chunkOf('a')
  store.clear()
  put('y', 'value-y')
  assert.ok(![first, second].includes(chunkOf('y')), 'chunks freed by clear wait too')
  log.exitRead()
  const reused = new Set<number>()
  for (const k of ['p', 'q', 'r']) {
    put(k, `value-${k}`)
    reused.add(chunkOf(k))
  }
  assert.ok(reused.has(first) && reused.has(second), 'both reused after the read')
})

test('a reader whose thread has gone holds nothing back', () => {
  const { log, shardEnd, store, put, chunkOf } = setup()
  put('a', 'value-a')
  const old = chunkOf('a')
  log.enterRead() // and its thread dies mid-read
  store.delete('a')
  put('b', 'value-b')
  assert.is.not(chunkOf('b'), old)
  shardEnd.detached = true // the shard saw its port close
  put('c', 'value-c')
  assert.is(chunkOf('c'), old)
})

test.run()
