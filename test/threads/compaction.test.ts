/**
 * Compaction of the shards' value arenas on real threads: after a churn that
 * changed the values' sizes, compact() gives the free part of the arenas
 * back, every value reads the same afterwards from the owner (through the
 * shard at first, then by direct reads of the new arena), from an attached
 * thread and from one that attaches later; writes and a second compaction
 * keep working; the schedule compacts only past its threshold.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'
import { ClientThread } from '../fixtures/client_thread.js'
import { until } from '../fixtures/helpers.js'

const open: { close(): Promise<unknown> }[] = []
async function cache(o: CacheOptions): Promise<Cache> {
  const c = await createCache(o)
  open.push(c)
  return c
}
test.after.each(async () => {
  for (const c of open.splice(0).reverse()) await c.close()
})

const small = 'x'.repeat(100)
const large = (i: number): string => `${i}:`.padEnd(1000, 'y')

/** 20k values of 100 bytes, all deleted, then 2k of 1,000 bytes: the small chunks' pages stay, free. */
async function churn(c: Cache): Promise<void> {
  for (let i = 0; i < 20_000; i += 1_000) await c.mset(Array.from({ length: 1_000 }, (_, j) => [`s${i + j}`, small] as [string, string]))
  for (let i = 0; i < 20_000; i += 1_000) await c.mdelete(Array.from({ length: 1_000 }, (_, j) => `s${i + j}`))
  for (let i = 0; i < 2_000; i += 500) await c.mset(Array.from({ length: 500 }, (_, j) => [`b${i + j}`, large(i + j)] as [string, string]))
}

test('compact() gives the arenas\' free bytes back; every value reads the same, from the owner and from attached threads', async () => {
  const c = await cache({ shards: 2, regions: { default: { compression: false } } })
  const early = new ClientThread()
  open.push({ close: () => early.worker.terminate() })
  await early.attach(c)
  await churn(c)
  const before = await c.stats()
  assert.ok(before.arenaFreeBytes > before.arenaBytes / 2, `free ${before.arenaFreeBytes} of ${before.arenaBytes}`)
  const results = await c.compact()
  assert.is(results.length, 2, 'one result per shard (the default region)')
  for (const r of results) {
    assert.ok(r.afterBytes < r.beforeBytes / 2, `shard ${r.shard}: ${r.beforeBytes} -> ${r.afterBytes}`)
    assert.ok(r.pauseMs >= 0)
  }
  const after = await c.stats()
  assert.is(after.entries, 2_000)
  assert.ok(after.arenaBytes < before.arenaBytes / 2, `${before.arenaBytes} -> ${after.arenaBytes}`)
  assert.ok(after.arenaFreeBytes < after.arenaBytes / 4, `free ${after.arenaFreeBytes} of ${after.arenaBytes}`)
  for (let i = 0; i < 2_000; i++) assert.is(await c.get(`b${i}`), large(i))
  // Direct reads resume once the owner maps the new arena: getSync answers only from memory.
  await until('the owner to map the new arenas', () => c.getSync('b7') === large(7))
  for (let i = 0; i < 2_000; i += 37) assert.is(c.getSync(`b${i}`), large(i))
  for (let i = 0; i < 2_000; i += 97) assert.is(await early.call('get', `b${i}`), large(i))
  const late = new ClientThread()
  open.push({ close: () => late.worker.terminate() })
  await late.attach(c)
  for (let i = 0; i < 2_000; i += 89) assert.is(await late.call('get', `b${i}`), large(i))
  // Writes go to the new arena; a second compaction keeps everything.
  await c.set('b3', 'changed')
  await c.set('new', small)
  await c.compact()
  assert.is(await c.get('b3'), 'changed')
  assert.is(await c.get('new'), small)
  assert.is(await early.call('get', 'b3'), 'changed')
  assert.is(await late.call('get', 'b4'), large(4))
  await until('the owner to map the second arenas', () => c.getSync('b5') === large(5))
})

test('maintenance.compact compacts only past its threshold; its figures are in stats().maintenance', async () => {
  const c = await cache({ shards: 2, regions: { default: { compression: false } }, maintenance: { compact: { every: 40, minFreeRatio: 0.5, minFreeBytes: '64kb' } } })
  for (let i = 0; i < 1_000; i++) await c.set(`k${i}`, large(i))
  const alive = setInterval(() => {}, 1000) // the schedule's timer is unref'd
  try {
    await new Promise((r) => setTimeout(r, 200))
    assert.is((await c.stats()).maintenance!.compactions, 0, 'little free: nothing to do')
    await churn(c)
    await until('a scheduled compaction', async () => (await c.stats()).maintenance!.compactions >= 2)
  } finally {
    clearInterval(alive)
  }
  const s = await c.stats()
  assert.ok(s.maintenance!.compactedBytes > 1_000_000, `${s.maintenance!.compactedBytes} bytes given back`)
  assert.ok(s.maintenance!.maxCompactPauseMs >= 0)
  for (let i = 0; i < 1_000; i += 13) assert.is(await c.get(`k${i}`), large(i))
  for (let i = 0; i < 2_000; i += 17) assert.is(await c.get(`b${i}`), large(i))
})

test.run()
