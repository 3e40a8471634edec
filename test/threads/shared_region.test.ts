// Direct reads of a region's shared memory while its writer runs on another thread:
// every value read must be exactly one the writer stored for that key, and never older than one read before.
import { test } from 'uvu'
import { regionConfig } from '../fixtures/helpers.js'
import * as assert from 'uvu/assert'
import { Worker } from 'node:worker_threads'
import { RegionStore } from '../../workers/region_store.js'
import { slotsFor } from '../../src/wire/region_types.js'
import type { RegionShardConfig } from '../../src/wire/region_types.js'
import { AccessLogReader, AccessLogWriter, Header, LOG_CAPACITY, SharedRegionReader, allocateAccessLog, allocateRegionMemory, hashBytes, newFound } from '../../src/wire/shared_region.js'
import type { Found } from '../../src/wire/shared_region.js'
import { ENTRY_OVERHEAD_BYTES, MAX_KEY_BYTES_LIMIT, ValueTag } from '../../src/wire/protocol.js'
import { checkValue } from '../fixtures/region_values.js'

const config = (over: Partial<RegionShardConfig> = {}): RegionShardConfig => regionConfig({ name: 'default', ...over })

/** Reads `key` through a reader the way the router does (inside a read of `log`, if given); undefined when the reader cannot answer. */
function read(reader: SharedRegionReader, key: string, log?: AccessLogWriter): string | undefined {
  const kb = Buffer.from(key)
  const f: Found = newFound()
  log?.enterRead()
  try {
    if (!reader.find(kb, kb.length, hashBytes(kb, 0, kb.length), f)) return undefined
    const s = reader.valueString(f)
    return s !== undefined && reader.valid(f) ? s : undefined
  } finally {
    log?.exitRead()
  }
}

test('reads racing a writer thread never return a torn, foreign or older value', async () => {
  // A small byte budget forces evictions too; the value sizes change with every version.
  const cfg = config({ maxBytes: 150_000 })
  const keys = 300
  const memory = allocateRegionMemory(slotsFor(cfg))
  const stop = new SharedArrayBuffer(8)
  const logMemory = allocateAccessLog(1)
  const log = new AccessLogWriter(logMemory, () => {})
  const worker = new Worker(new URL('../fixtures/region_writer.js', import.meta.url), { workerData: { config: cfg, memory, stop, keys, log: logMemory } })
  const done = new Promise<number>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  await new Promise((r) => setTimeout(r, 50)) // let the writer start
  const reader = new SharedRegionReader(memory)
  const seen = new Float64Array(keys)
  let reads = 0
  let hits = 0
  // 1.5 s, or longer until the reader has its 50k hits and the writer its 50k writes: on a loaded machine
  // the writer can be descheduled mid-write, and reads of what it holds miss meanwhile (one parallel run
  // got 12,669 hits in 1.5 s; one with two other test suites running, 43,776 writes).
  const start = performance.now()
  const progress = new Int32Array(stop)
  try {
    while (performance.now() < start + 1500 || ((hits <= 50_000 || Atomics.load(progress, 1) <= 50_000) && performance.now() < start + 60_000)) {
      for (let i = 0; i < 1000; i++) {
        const k = (reads * 7919 + i) % keys
        const v = read(reader, `k${k}`, log)
        reads++
        if (v === undefined) continue
        hits++
        const version = checkValue(k, v)
        assert.ok(version >= seen[k]!, `k${k}: read version ${version} after ${seen[k]}`)
        seen[k] = version
      }
    }
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1)
  }
  const writes = await done
  // The race really happened: both sides did a lot while the other ran.
  assert.ok(writes > 50_000, `${writes} writes`)
  assert.ok(hits > 50_000, `${hits} hits in ${reads} reads`)
})

test('a reader sees sets, updates, deletes, expiry and clear, and grows with the store', () => {
  let now = 1000
  const store = new RegionStore(config({ maxEntries: 100_000 }), () => now)
  const reader = new SharedRegionReader(store.memory, () => now)
  const put = (k: string, v: string, ttl?: number) => store.set(k, ValueTag.STRING, Buffer.from(v), ttl, false, false, undefined)
  put('a', 'one')
  assert.is(read(reader, 'a'), 'one')
  put('a', 'two, longer than one')
  assert.is(read(reader, 'a'), 'two, longer than one')
  store.delete('a')
  assert.is(read(reader, 'a'), undefined)
  // Growth of slots, buckets and arenas while the reader holds old views.
  for (let i = 0; i < 20_000; i++) put(`key:${i}`, `value:${i}`)
  for (let i = 0; i < 20_000; i += 997) assert.is(read(reader, `key:${i}`), `value:${i}`)
  assert.is(read(reader, 'key:20000'), undefined)
  put('t', 'short-lived', 50)
  assert.is(read(reader, 't'), 'short-lived')
  now += 50
  assert.is(read(reader, 't'), undefined, 'expired: left to the shard')
  store.clear()
  assert.is(read(reader, 'key:0'), undefined)
})

/**
 * Runs `write` with a near-cache check made between every two of its atomic
 * steps on `store`'s shared memory, one thread interleaving with itself at the
 * points another thread could. The check is the router's (src/client/direct_reads.ts):
 * load the region's epoch, then read `key` and validate it (a near entry stamped
 * with that epoch when the read is valid). A stamp that equals the epoch once the
 * write is done would let a near hit serve the value read, without a look at its
 * slot: so it must not, unless that value is still the key's.
 */
function stampsDuring(store: RegionStore, key: string, write: () => void): { checks: number; stamps: { epoch: number; value: string }[] } {
  const reader = new SharedRegionReader(store.memory)
  const header = reader.views.header
  const stamps: { epoch: number; value: string }[] = []
  const add = Atomics.add
  let inside = false
  let checks = 0
  const check = (): void => {
    inside = true
    checks++
    try {
      const epoch = Atomics.load(header, Header.EPOCH)
      const value = read(reader, key)
      if (value !== undefined) stamps.push({ epoch, value })
    } finally {
      inside = false
    }
  }
  ;(Atomics as { add: typeof Atomics.add }).add = ((ta: Int32Array, i: number, v: number) => {
    const r = add(ta, i, v)
    if (!inside) check()
    return r
  }) as typeof Atomics.add
  try {
    write()
  } finally {
    ;(Atomics as { add: typeof Atomics.add }).add = add
  }
  return { checks, stamps }
}

test('a near-cache stamp taken at any point of a write or a clear is stale once it is done (the slot change is begun before the epoch moves)', () => {
  const store = new RegionStore(config({ maxEntries: 100 }))
  const put = (k: string, v: string) => store.set(k, ValueTag.STRING, Buffer.from(v), undefined, false, false, undefined)
  put('k', 'old')
  const epochNow = (): number => Atomics.load(new SharedRegionReader(store.memory).views.header, Header.EPOCH)
  for (const [what, write, after] of [
    ['an update', () => put('k', 'new'), 'new'],
    ['a delete', () => store.delete('k'), undefined],
    ['a clear', () => store.clear(), undefined],
  ] as const) {
    put('k', 'old')
    const { checks, stamps } = stampsDuring(store, 'k', write)
    assert.ok(checks >= 2, `${what}: reads were made between its steps`)
    for (const s of stamps) {
      if (s.epoch === epochNow()) assert.is(s.value, after, `${what}: a read stamped with the final epoch holds the final value`)
    }
  }
})

test('the longest key the options allow (65535 bytes) keeps its length, flags and charge beside each other in the slot record', () => {
  const store = new RegionStore(config({ maxBytes: 10_000_000 }))
  const reader = new SharedRegionReader(store.memory)
  const long = 'k'.repeat(MAX_KEY_BYTES_LIMIT - 2) + 'é' // multi-byte at the end: 65535 UTF-8 bytes
  const near = long.slice(0, -1) + 'e' // same length in chars, one byte shorter
  store.set(long, ValueTag.STRING, Buffer.from('long'), undefined, false, false, new Uint8Array(3))
  store.set(near, ValueTag.STRING, Buffer.from('near'), undefined, false, false, undefined)
  assert.is(read(reader, long), 'long')
  assert.is(read(reader, near), 'near')
  assert.equal(store.keys().sort(), [near, long].sort())
  assert.is(store.stats().usedBytes, MAX_KEY_BYTES_LIMIT + 4 + 3 + ENTRY_OVERHEAD_BYTES + (MAX_KEY_BYTES_LIMIT - 1 + 4 + ENTRY_OVERHEAD_BYTES))
  // An update rewrites the flags (tag, compression) and must leave the key length alone.
  store.set(long, ValueTag.BUFFER, Buffer.from('longer'), undefined, false, false, undefined)
  assert.is(store.get(long)?.toString(), 'longer')
  assert.is(store.lastTag, ValueTag.BUFFER)
  assert.is(store.delete(long), true)
  assert.is(read(reader, long), undefined)
  assert.is(read(reader, near), 'near')
  assert.is(store.stats().usedBytes, MAX_KEY_BYTES_LIMIT - 1 + 4 + ENTRY_OVERHEAD_BYTES)
  store.checkInvariants()
})

test('the access log carries reads to the store in order, counts hits, and drops reads when full', () => {
  const log = allocateAccessLog(2)
  let kicks = 0
  const writer = new AccessLogWriter(log, () => kicks++)
  const shardEnd = new AccessLogReader(log)
  writer.record(1, 5, 2)
  writer.record(0, 7, 4)
  writer.hits[1]! += 2
  const got: number[][] = []
  shardEnd.drain((r, slot, seq) => got.push([r, slot, seq]))
  assert.equal(got, [
    [1, 5, 2],
    [0, 7, 4],
  ])
  assert.is(shardEnd.hitsOf(1), 2)
  shardEnd.resetHits()
  assert.is(shardEnd.hitsOf(1), 0)
  for (let i = 0; i < LOG_CAPACITY + 10; i++) writer.record(0, i, 0)
  assert.is(kicks, 1, 'asked to drain once, at half full')
  let n = 0
  shardEnd.drain(() => n++)
  assert.is(n, LOG_CAPACITY)
})

test('hit counts are tear-free integer words, and the shard adds each wrap-around of 2^32 to its total', () => {
  const log = allocateAccessLog(1)
  const writer = new AccessLogWriter(log, () => {})
  const shardEnd = new AccessLogReader(log)
  assert.ok(writer.hits instanceof Uint32Array)
  writer.hits[0] = 2 ** 32 - 2 // as after 2^32 - 2 hits
  assert.is(shardEnd.hitsOf(0), 2 ** 32 - 2)
  writer.hits[0]! += 5 // wraps to 3
  assert.is(writer.hits[0], 3)
  assert.is(shardEnd.hitsOf(0), 2 ** 32 + 3)
  shardEnd.resetHits()
  writer.hits[0]! += 1
  assert.is(shardEnd.hitsOf(0), 1)
})

test.run()
