// The near cache: decoded values on the calling thread, served only while
// shared memory proves them current. Every way an entry can change (a write,
// delete, clear, expiry, eviction or restart, from any thread) must make it miss.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { Cache } from '../../src/index.js'
import { withCache } from '../fixtures/helpers.js'
import { ClientThread } from '../fixtures/client_thread.js'
import { runCoherenceClient } from '../fixtures/coherence.js'
import type { CoherenceResult } from '../fixtures/coherence.js'

const near = { nearCache: { maxEntries: 1000 } }

test('repeated gets are served by the near cache: no frames, exact hit counts', async () => {
  await withCache({ shards: 2, ...near }, async (cache) => {
    await cache.set('k', { n: 1 })
    assert.equal(await cache.get('k'), { n: 1 })
    assert.is(cache.nearCacheSizeForTest(), 1)
    const frames = cache.framesSentForTest()
    for (let i = 0; i < 100; i++) assert.equal(cache.getSync('k'), { n: 1 })
    assert.equal(await cache.get('k'), { n: 1 })
    assert.is(cache.framesSentForTest(), frames)
    const s = await cache.stats()
    assert.is(s.hits, 102)
    assert.is(s.misses, 0)
  })
})

test('a write, delete or clear from another thread makes the near entry miss at once', async () => {
  await withCache({ shards: 2, ...near }, async (cache) => {
    const t = new ClientThread()
    try {
      await t.attach(cache)
      await cache.mset([['a', 'a1'], ['b', 'b1'], ['c', 'c1']])
      for (const k of ['a', 'b', 'c']) await cache.get(k)
      assert.is(cache.nearCacheSizeForTest(), 3)
      await t.call('set', 'a', 'a2')
      assert.is(cache.getSync('a'), 'a2')
      await t.call('delete', 'b')
      assert.is(cache.getSync('b'), undefined)
      assert.is(await cache.get('b'), undefined)
      assert.is(cache.getSync('c'), 'c1')
      await t.call('clear')
      assert.is(cache.getSync('a'), undefined)
      assert.is(cache.getSync('c'), undefined)
    } finally {
      await t.worker.terminate()
    }
  })
})

test('a caller spinning on getSync, never yielding, sees another thread\'s delete of the key', async () => {
  await withCache({ shards: 1, ...near }, async (cache) => {
    const t = new ClientThread()
    try {
      await t.attach(cache)
      await cache.set('k', 'v')
      assert.is(await t.call('get', 'k'), 'v') // the thread's link to the shard is up
      assert.is(await cache.get('k'), 'v')
      assert.is(cache.getSync('k'), 'v')
      const deleted = t.call('delete', 'k')
      // The other thread deletes through its own link while this one spins: nothing here yields.
      const deadline = performance.now() + 30_000
      let spins = 0
      while (cache.getSync('k') !== undefined && performance.now() < deadline) spins++
      assert.is(cache.getSync('k'), undefined, `still served after ${spins} spins`)
      assert.is(await deleted, true)
    } finally {
      await t.worker.terminate()
    }
  })
})

test('writes to other keys of the region leave a near entry served without a frame; a touch of its key from another thread reaches it', async () => {
  // One shard, so every write below moves the region epoch the near entry was stamped with. Writes
  // come from another thread: this thread's own writes drop its near entry for the key outright.
  await withCache({ shards: 1, ...near }, async (cache) => {
    const t = new ClientThread()
    try {
      await t.attach(cache)
      await cache.set('k', 'v')
      assert.is(await cache.get('k'), 'v')
      for (let i = 0; i < 5; i++) {
        await t.call('set', `other:${i}`, i)
        const frames = cache.framesSentForTest()
        assert.is(cache.getSync('k'), 'v') // re-checked against its slot, still current
        assert.is(cache.getSync('k'), 'v')
        assert.is(cache.framesSentForTest(), frames)
      }
      // A shorter TTL changes the slot: the near entry, cached with no expiry, must not outlive it.
      assert.is(await t.call('touch', 'k', 100), true)
      assert.is(cache.getSync('k'), 'v')
      await new Promise((r) => setTimeout(r, 150))
      assert.is(cache.getSync('k'), undefined)
      assert.is(await cache.get('k'), undefined)
    } finally {
      await t.worker.terminate()
    }
  })
})

test('in a full region, a pending set of a new key sends a near read to the shard but keeps the entry: served again once the set is answered', async () => {
  // Full (maxEntries reached): a set of a new key evicts, so while one is pending no read is answered on this thread.
  await withCache({ shards: 1, regions: { default: { maxEntries: 4, policy: 'lru' } }, ...near }, async (cache) => {
    await cache.mset([['b', 2], ['c', 3], ['d', 4], ['a', 1]])
    assert.is(await cache.get('a'), 1) // the most recent: LRU evicts 'b' for the next new key
    assert.is(cache.nearCacheHasForTest('a'), true)
    const set = cache.set('e', 5)
    assert.is(cache.getSync('a'), undefined) // only the shard can answer now
    assert.is(cache.nearCacheHasForTest('a'), true)
    await set
    const frames = cache.framesSentForTest()
    assert.is(cache.getSync('a'), 1)
    assert.is(cache.framesSentForTest(), frames)
    assert.is(await cache.get('b'), undefined)
  })
})

test('a full near cache admits a key on its second miss, not its first; while it has room, on the first', async () => {
  await withCache({ shards: 1, nearCache: { maxEntries: 16 } }, async (cache) => {
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`)
    await cache.mset(keys.map((k, i) => [k, i] as [string, number]))
    for (let i = 0; i < 16; i++) assert.is(await cache.get(keys[i]!), i)
    assert.is(cache.nearCacheSizeForTest(), 16)
    assert.equal(keys.slice(0, 16).filter((k) => !cache.nearCacheHasForTest(k)), [])
    assert.is(await cache.get('k20'), 20)
    assert.is(cache.nearCacheHasForTest('k20'), false)
    assert.is(await cache.get('k20'), 20)
    assert.is(cache.nearCacheHasForTest('k20'), true)
    assert.is(cache.nearCacheSizeForTest(), 16)
    // A near entry found stale frees its place: the key's next read is admitted at once.
    await cache.set('k20', 'changed')
    assert.is(cache.nearCacheSizeForTest(), 15)
    assert.is(await cache.get('k21'), 21)
    assert.is(cache.nearCacheHasForTest('k21'), true)
  })
})

test('an expired near entry is never served', async () => {
  await withCache({ shards: 1, ...near }, async (cache) => {
    await cache.set('t', 'short', { ttl: 150 })
    assert.is(await cache.get('t'), 'short')
    assert.is(cache.getSync('t'), 'short')
    await new Promise((r) => setTimeout(r, 200))
    assert.is(cache.getSync('t'), undefined)
    assert.is(await cache.get('t'), undefined)
  })
})

test('an entry evicted in the shard misses in the near cache; near hits keep LRU order in the shard', async () => {
  await withCache({ shards: 1, ...near, regions: { default: { policy: 'lru', maxEntries: 2 } } }, async (cache) => {
    await cache.set('a', 1)
    await cache.set('b', 2)
    assert.is(await cache.get('a'), 1)
    assert.is(cache.getSync('a'), 1) // a near hit: logged for the shard's LRU
    await cache.set('c', 3) // evicts b, the least recently read
    assert.is(cache.getSync('a'), 1)
    assert.is(await cache.get('b'), undefined)
    assert.is(await cache.get('c'), 3)
    await cache.set('d', 4) // evicts a now
    assert.is(cache.getSync('a'), undefined)
    assert.is(await cache.get('a'), undefined)
  })
})

test('a restarted shard invalidates the near entries read from it', async () => {
  await withCache({ shards: 1, ...near }, async (cache) => {
    await cache.set('r', 'before')
    assert.is(await cache.get('r'), 'before')
    await cache.crashShardForTest(0).catch(() => undefined)
    assert.is(await cache.get('r'), undefined)
    assert.is(cache.getSync('r'), undefined)
    await cache.set('r', 'after')
    assert.is(await cache.get('r'), 'after')
  })
})

test('binary values from the near cache are copies: writing to one changes nothing', async () => {
  await withCache({ shards: 1, ...near }, async (cache) => {
    await cache.set('bin', Buffer.from([1, 2, 3]))
    const first = (await cache.get('bin')) as Buffer
    first[0] = 99
    const second = cache.getSync('bin') as Buffer
    assert.ok(Buffer.isBuffer(second))
    assert.equal([...second], [1, 2, 3])
    second[1] = 99
    assert.equal([...(cache.getSync('bin') as Buffer)], [1, 2, 3])
  })
})

test('getSync: undefined while a write of this thread is pending, or when absent; throws on a bad key or a closed cache', async () => {
  const cache = await createCache({ shards: 1 })
  await cache.set('p', 'old')
  assert.is(cache.getSync('p'), 'old') // no near cache: straight from shared memory
  const pending = cache.set('p', 'new')
  assert.is(cache.getSync('p'), undefined)
  await pending
  assert.is(cache.getSync('p'), 'new')
  assert.is(cache.getSync('absent'), undefined)
  assert.throws(() => cache.getSync(''), (e: Error & { code?: string }) => e.code === 'E_INVALID_KEY')
  assert.throws(() => cache.getSync(42 as unknown as string), (e: Error & { code?: string }) => e.code === 'E_INVALID_KEY')
  await cache.close()
  assert.throws(() => cache.getSync('p'), (e: Error & { code?: string }) => e.code === 'E_CLOSED')
})

test('nearCache options are validated', async () => {
  for (const [bad, named] of [
    [{ nearCache: true }, 'options.nearCache'],
    [{ nearCache: { maxEntries: 0 } }, 'options.nearCache.maxEntries'],
    [{ nearCache: { size: 10 } }, 'options.nearCache.size'],
  ] as const) {
    const err = await createCache(bad as never).catch((e: Error & { code?: string }) => e)
    assert.is((err as { code?: string }).code, 'E_INVALID_OPTION')
    assert.match((err as Error).message, named)
  }
})

test('a compressed value, which only its shard decodes, enters the near cache from the shard\'s answer and misses once changed from any thread', async () => {
  const compressed = { regions: { default: { maxEntries: 1000, compression: { minBytes: 64 } } } }
  await withCache({ shards: 2, ...near, ...compressed }, async (cache) => {
    const big = (c: string): string => c.repeat(500)
    const t = new ClientThread()
    try {
      await t.attach(cache)
      await cache.mset([['a', big('a')], ['b', big('b')]])
      assert.is((await cache.getEntry('a'))!.compressed, true)
      // Not readable from shared memory: the first get asks the shard, whose answer is kept.
      assert.is(cache.getSync('a'), undefined)
      assert.is(await cache.get('a'), big('a'))
      assert.equal(await cache.mget(['b']), [big('b')])
      assert.is(cache.nearCacheSizeForTest(), 2)
      const frames = cache.framesSentForTest()
      for (let i = 0; i < 10; i++) assert.is(cache.getSync('a'), big('a'))
      assert.is(await cache.get('b'), big('b'))
      assert.is(cache.framesSentForTest(), frames)
      await t.call('set', 'a', big('c'))
      assert.is(cache.getSync('a'), undefined)
      assert.is(await cache.get('a'), big('c'))
      assert.is(cache.getSync('a'), big('c'))
      await t.call('delete', 'b')
      assert.is(cache.getSync('b'), undefined)
      assert.is(await cache.get('b'), undefined)
      await t.call('clear')
      assert.is(cache.getSync('a'), undefined)
      assert.is(await cache.get('a'), undefined)
      // A get and a set of one key in the same tick share a frame: the get's answer, kept near,
      // is older than the set, and must not be served once the set resolved.
      await cache.set('e', big('e'))
      const [first, stored] = await Promise.all([cache.get('e'), cache.set('e', big('f'))])
      assert.is(first, big('e'))
      assert.is(stored, true)
      assert.is(cache.getSync('e'), undefined)
      assert.is(await cache.get('e'), big('f'))
      assert.is(cache.getSync('e'), big('f'))
      // An entry with a grace period is the shard's to serve (it may be stale): never kept near.
      await cache.getOrCompute('g', async () => big('g'), { ttl: 60_000, grace: '1m' })
      assert.is(await cache.get('g'), big('g'))
      assert.is(cache.nearCacheHasForTest('g'), false)
      const s = await cache.stats()
      assert.is(s.byRegion.default!.entries, 2)
    } finally {
      await t.worker.terminate()
    }
  })
})

/**
 * The coherence run (test/fixtures/coherence.ts) on this thread and two attached ones at
 * once, over 240 keys (more than the region's 200 entries, so evictions happen too).
 * Seeded: runs differ by seed, but a failure replays.
 */
async function coherenceOnThreeThreads(cache: Cache, ops: number, seed: number, pad = 0): Promise<CoherenceResult[]> {
  const keys = 240
  const published = new SharedArrayBuffer(keys * 4)
  const threads = [new ClientThread(), new ClientThread()]
  try {
    await Promise.all(threads.map((t) => t.attach(cache)))
    const task = (writer: number) => ({ published, keys, writer, writers: 3, ops, seed: seed + writer, pad })
    const results = await Promise.all([runCoherenceClient(cache, task(0)), threads[0]!.coherence(task(1)), threads[1]!.coherence(task(2))])
    for (const r of results) assert.is(r.stale, 0, r.firstStale)
    return results
  } finally {
    await Promise.all(threads.map((t) => t.worker.terminate()))
  }
}

test('coherence under concurrent writers on three threads: no near cache ever serves a stale value', async () => {
  await withCache({ shards: 2, nearCache: { maxEntries: 64 }, regions: { default: { maxEntries: 200 } } }, async (cache: Cache) => {
    for (const r of await coherenceOnThreeThreads(cache, 6000, 1000)) {
      assert.ok(r.values > 500, `reads found values (${r.values} of ${r.reads})`)
    }
    // The near cache took part: entries held, and most reads never reached a shard.
    assert.ok(cache.nearCacheSizeForTest() > 0)
    const stats = await cache.stats()
    assert.ok(stats.evictions > 0, 'evictions happened during the run')
  })
})

test('coherence with compressed values: those kept from the shard\'s answers are never served stale either', async () => {
  const regions = { default: { maxEntries: 200, compression: { minBytes: 64 } } }
  await withCache({ shards: 2, nearCache: { maxEntries: 64 }, regions }, async (cache: Cache) => {
    for (const r of await coherenceOnThreeThreads(cache, 4000, 2000, 200)) {
      assert.ok(r.values > 300, `reads found values (${r.values} of ${r.reads})`)
      assert.ok(r.syncValues > 100, `getSync found values (${r.syncValues}): compressed entries were kept near`)
    }
    const s = await cache.stats()
    assert.ok(s.byRegion.default!.compressionRatio > 1, 'values were stored compressed')
  })
})

test.run()
