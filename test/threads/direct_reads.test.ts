// get/has/ttl/mget answered straight from the shards' shared memory: exact results, order
// kept behind queued writes, hits counted, LRU order kept, and nothing read from a dead shard's memory.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { withCache } from '../fixtures/helpers.js'


test('every hit is read directly, whichever shard holds it: ASCII and non-ASCII keys on 4 shards send no frame', async () => {
  await withCache({ shards: 4 }, async (cache) => {
    // The direct read derives an ASCII key's shard from the bucket hash it computes anyway;
    // a shard computed differently from the writes' would miss and go to a shard by frame.
    const keys = Array.from({ length: 2000 }, (_, i) => (i % 5 === 0 ? `ключ:${i}:é` : `user:${i}`))
    await cache.mset(keys.map((k, i) => [k, i] as [string, number]))
    assert.equal(new Set(keys.map((k) => cache.shardOfForTest(k))).size, 4)
    const frames = cache.framesSentForTest()
    for (let i = 0; i < keys.length; i++) assert.is(await cache.get(keys[i]!), i)
    assert.is(cache.framesSentForTest(), frames)
  })
})

test('hits are answered without a frame and counted exactly; misses go to the shard', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    await cache.mset([
      ['a', 'A'],
      ['b', { n: 1 }],
      ['c', Buffer.from([1, 2, 3])],
      ['d', new Uint8Array([4, 5])],
    ])
    const frames = cache.framesSentForTest()
    assert.is(await cache.get('a'), 'A')
    assert.equal(await cache.get('b'), { n: 1 })
    assert.equal(await cache.get('c'), Buffer.from([1, 2, 3]))
    const u8 = await cache.get('d')
    assert.ok(u8 instanceof Uint8Array && !Buffer.isBuffer(u8))
    assert.equal([...(u8 as Uint8Array)], [4, 5])
    assert.is(await cache.has('a'), true)
    assert.is(await cache.ttl('a'), Infinity)
    assert.equal(await cache.mget(['a', 'c']), ['A', Buffer.from([1, 2, 3])])
    assert.equal(await cache.mhas(['a', 'b']), [true, true])
    assert.is(cache.framesSentForTest(), frames, 'no frame was sent for hits')
    assert.is(await cache.get('nope'), undefined)
    assert.equal(await cache.mget(['a', 'nope2']), ['A', undefined])
    assert.ok(cache.framesSentForTest() > frames, 'misses were asked of the shards')
    const s = await cache.stats()
    assert.is(s.hits, 7) // 4 gets + 2 of mget + 1 of the second mget; has and ttl are not reads
    assert.is(s.misses, 2)
    await cache.resetStats()
    assert.is((await cache.stats()).hits, 0)
    await cache.get('a')
    assert.is((await cache.stats()).hits, 1)
  })
})

test('a read issued after a write in the same tick sees the write', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    await cache.mset([
      ['k', 'old'],
      ['gone', 'x'],
      ['p:1', 'x'],
      ['q', 'x'],
    ])
    // Without awaiting: the write is queued when the read is issued.
    const results = await Promise.all([
      cache.set('k', 'new'),
      cache.get('k'),
      cache.delete('gone'),
      cache.get('gone'),
      cache.has('gone'),
      cache.deleteByPattern('p:*'),
      cache.get('p:1'),
    ])
    assert.equal(results, [true, 'new', true, undefined, false, 1, undefined])
    const afterClear = await Promise.all([cache.clear(), cache.get('q'), cache.mget(['k', 'q'])])
    assert.equal(afterClear, [2, undefined, [undefined, undefined]])
  })
})

test('reads issued after a set in the same tick see the eviction it causes, on every read path', async () => {
  for (const shards of [1, 2]) {
    await withCache({ shards, regions: { default: { maxEntries: shards } } }, async (cache) => {
      // Two keys of one shard: its slice holds one entry, so setting b evicts a.
      const keys = Array.from({ length: 64 }, (_, i) => `k${i}`)
      const [a, b] = keys.filter((k) => cache.shardOfForTest(k) === 0)
      await cache.set(a!, 1)
      assert.is(cache.getSync(a!), 1, 'a is read directly before the set')
      const results = await Promise.all([cache.set(b!, 2), cache.getEntry(a!), cache.has(a!), cache.get(a!), cache.ttl(a!), cache.mget([a!, b!])])
      assert.equal(results, [true, undefined, false, undefined, undefined, [undefined, 2]], `${shards} shard(s)`)
      assert.is(cache.getSync(b!), 2, 'direct reads resume once the set is answered')
    })
  }
})

test('a pending set holds back direct reads of other keys only while it may evict: a region with room keeps them', async () => {
  await withCache({ shards: 1, regions: { default: { maxEntries: 3, policy: 'lru' } } }, async (cache) => {
    await cache.set('a', 1)
    // Room for two more entries: a pending set cannot evict, so a is still read directly.
    const set = cache.set('b', 2)
    assert.is(cache.getSync('a'), 1)
    await set
    // Full after c: a set of a new key may now evict, so reads wait for the shard until it is answered.
    await cache.set('c', 3)
    const evicting = cache.set('d', 4)
    assert.is(cache.getSync('c'), undefined, 'held back: the pending set may evict it')
    await evicting
    assert.is(cache.getSync('c'), 3)
    assert.is(cache.getSync('a'), undefined, 'a, the oldest, was evicted')
  })
})

test('in a full region, an overwrite of a key held without expiry does not hold back reads of other keys; one that may insert does', async () => {
  await withCache({ shards: 1, regions: { default: { maxEntries: 3, policy: 'lru' } } }, async (cache) => {
    await cache.mset([['a', 1], ['b', 2], ['c', 3]])
    await cache.set('t', 'x', { ttl: 60_000 }) // evicts a (LRU): b, c, t
    const frames = cache.framesSentForTest()
    const overwrite = cache.set('b', 20)
    assert.is(cache.getSync('c'), 3, 'an overwrite cannot evict: c is still read on this thread')
    assert.is(cache.framesSentForTest(), frames)
    assert.is(cache.getSync('b'), undefined, 'the key being written waits for its write')
    await overwrite
    // An entry with a TTL may expire before the set reaches it, and the set would then insert.
    const ttlOverwrite = cache.set('t', 'y')
    assert.is(cache.getSync('c'), undefined, 'held back: the set of a key with a TTL may insert and evict')
    await ttlOverwrite
    // Two sets of new keys in one tick: each may evict, so every read waits, and sees both evictions.
    const inserts = [cache.set('d', 4), cache.set('e', 5)]
    const reads = [cache.get('b'), cache.get('c'), cache.get('t')]
    assert.equal(await Promise.all(inserts), [true, true])
    assert.equal(await Promise.all(reads), [undefined, undefined, 'y'])
    assert.is(cache.getSync('b'), undefined)
    assert.equal(cache.getSync('e'), 5)
  })
})

test('in a full region, a key set again while its first set is pending is still an overwrite; after a pending delete of it, a set may insert', async () => {
  await withCache({ shards: 1, regions: { default: { maxEntries: 3, policy: 'lru' } } }, async (cache) => {
    await cache.mset([['a', 1], ['b', 2], ['c', 3]])
    const sets = [cache.set('b', 20), cache.set('b', 21)]
    assert.is(cache.getSync('c'), 3, 'two overwrites of b cannot evict c')
    assert.equal(await Promise.all(sets), [true, true])
    assert.is(cache.getSync('b'), 21)
    const del = cache.delete('b')
    const reinsert = cache.set('b', 22) // b is gone by then: this set inserts, and may evict
    assert.is(cache.getSync('c'), undefined, 'held back: the set after the delete may evict c')
    assert.equal(await Promise.all([del, reinsert]), [true, true])
    assert.equal([cache.getSync('a'), cache.getSync('b'), cache.getSync('c')], [1, 22, 3])
  })
})

test('a write in flight holds back direct reads of its key only, and every hold is released when writes are answered', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const keys = Array.from({ length: 3000 }, (_, i) => `k:${i}`)
    await cache.mset(keys.map((k, i) => [k, i] as [string, number]))
    // getSync answers only from shared memory: undefined means "ask the shard".
    const pending = cache.set('k:0', 'new')
    assert.is(cache.getSync('k:0'), undefined)
    assert.equal([cache.getSync('k:1'), cache.getSync('k:2999')], [1, 2999])
    assert.is(await pending, true)
    assert.is(cache.getSync('k:0'), 'new')
    // Thousands of writes and deletes in flight at once, some to the same key, some failing (nx):
    // once all are answered, no key is held back.
    const writes: Promise<unknown>[] = []
    for (let i = 0; i < keys.length; i++) {
      writes.push(cache.set(keys[i]!, -i))
      if (i % 3 === 0) writes.push(cache.set(keys[i]!, 'nx', { nx: true }))
      if (i % 7 === 0) writes.push(cache.delete(`absent:${i}`))
    }
    assert.is(cache.getSync('k:5'), undefined)
    await Promise.all(writes)
    const frames = cache.framesSentForTest()
    for (let i = 0; i < keys.length; i++) assert.is(cache.getSync(keys[i]!), -i)
    assert.is(cache.framesSentForTest(), frames)
  })
})

test('direct reads refresh LRU order: the entry read is not the one evicted', async () => {
  await withCache({ shards: 1, regions: { default: { maxEntries: 3, policy: 'lru' } } }, async (cache) => {
    await cache.set('a', 1)
    await cache.set('b', 2)
    await cache.set('c', 3)
    const frames = cache.framesSentForTest()
    assert.is(await cache.get('a'), 1) // a direct read: logged for the shard
    assert.is(cache.framesSentForTest(), frames)
    await cache.set('d', 4)
    assert.equal(await cache.mget(['a', 'b', 'c', 'd']), [1, undefined, 3, 4])
  })
})

test('SIEVE regions learn from direct reads: the entry read is spared by the hand', async () => {
  await withCache({ shards: 1, regions: { default: { maxEntries: 3, policy: 'sieve' } } }, async (cache) => {
    await cache.set('a', 1)
    await cache.set('b', 2)
    await cache.set('c', 3)
    const frames = cache.framesSentForTest()
    assert.is(await cache.get('a'), 1) // a direct read: logged for the shard, which marks a visited
    assert.is(cache.framesSentForTest(), frames)
    // The hand starts at the oldest entry: a is visited (cleared, passed), b is not: evicted.
    await cache.set('d', 4)
    assert.equal(await cache.mget(['a', 'b', 'c', 'd']), [1, undefined, 3, 4])
  })
})

test('S3-FIFO regions learn from direct reads: read twice while in the small queue, an entry moves to main instead of leaving', async () => {
  // 3 entries: the small queue holds 1, main 2; all three start in small.
  await withCache({ shards: 1, regions: { default: { maxEntries: 3, policy: 's3fifo' } } }, async (cache) => {
    await cache.set('a', 1)
    await cache.set('b', 2)
    await cache.set('c', 3)
    const frames = cache.framesSentForTest()
    assert.is(await cache.get('a'), 1) // direct reads: logged for the shard, which counts them
    assert.is(await cache.get('a'), 1)
    assert.is(await cache.get('c'), 3)
    assert.is(cache.framesSentForTest(), frames)
    // Small's oldest, a, was read twice: to main. b was not read: evicted.
    await cache.set('d', 4)
    assert.equal(await cache.mget(['a', 'b', 'c', 'd']), [1, undefined, 3, 4])
    // That mget read c a second time (and d a first): at e, c moves to main and d, read once, leaves.
    await cache.set('e', 5)
    assert.equal(await cache.mget(['a', 'c', 'd', 'e']), [1, 3, undefined, 5])
  })
})

test('FIFO regions ignore direct reads when evicting, and expired entries are never returned', async () => {
  await withCache({ shards: 1, regions: { default: { maxEntries: 2, policy: 'fifo' }, short: { ttl: 300 } } }, async (cache) => {
    await cache.set('a', 1)
    await cache.set('b', 2)
    assert.is(await cache.get('a'), 1)
    await cache.set('c', 3)
    assert.equal(await cache.mget(['a', 'b', 'c']), [undefined, 2, 3])
    const short = cache.region('short')
    await short.set('t', 'soon gone')
    assert.is(await short.get('t'), 'soon gone')
    await new Promise((r) => setTimeout(r, 320))
    assert.is(await short.get('t'), undefined)
    assert.is(await short.has('t'), false)
    assert.is(await short.ttl('t'), undefined)
    assert.is((await cache.stats()).byRegion.short!.evictionsByCause.expired, 1)
  })
})

test('after a shard crash, direct reads see the restarted (empty) shard, not the dead one’s memory', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    await cache.set('k', 'before')
    assert.is(await cache.get('k'), 'before')
    await cache.crashShardForTest(0).catch(() => {})
    assert.is(await cache.get('k'), undefined)
    await cache.set('k', 'after')
    assert.is(await cache.get('k'), 'after')
  })
})

test.run()
