/**
 * Tags: set/mset/getOrCompute with `tags`, invalidateTag across shards and
 * regions, the tag index kept exact through overwrites, deletes and clears,
 * near caches that stop serving invalidated entries, and bad tags.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { errorOf, withCache } from '../fixtures/helpers.js'
import { ENTRY_OVERHEAD_BYTES, TAG_LINK_OVERHEAD_BYTES } from '../../src/wire/protocol.js'

test('invalidateTag removes exactly the entries carrying the tag, in every shard, and counts them', async () => {
  await withCache({ shards: 4 }, async (cache) => {
    const keys = Array.from({ length: 200 }, (_, i) => `k:${i}`)
    for (const k of keys) {
      const n = Number(k.slice(2))
      await cache.set(k, n, { tags: n % 2 === 0 ? ['even', 'all'] : ['all'] })
    }
    await cache.set('untagged', 1)
    assert.equal(new Set(keys.map((k) => cache.shardOfForTest(k))).size, 4)
    assert.is(await cache.invalidateTag('even'), 100)
    assert.is((await cache.keys()).length, 101)
    assert.is(await cache.get('k:2'), undefined)
    assert.is(await cache.get('k:3'), 3)
    // The odd entries still carry "all"; the removed ones left the index.
    assert.is(await cache.invalidateTag('all'), 100)
    assert.equal(await cache.keys(), ['untagged'])
    assert.is(await cache.invalidateTag('even'), 0)
    assert.is(await cache.invalidateTag('never-used'), 0)
    const s = await cache.stats()
    assert.is(s.deletes, 200)
  })
})

test('an overwrite replaces the tags, a delete or clear drops them; mset and getOrCompute take tags', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    await cache.set('a', 1, { tags: ['t1'] })
    await cache.set('a', 2, { tags: ['t2'] })
    assert.is(await cache.invalidateTag('t1'), 0)
    assert.is(await cache.get('a'), 2)
    await cache.set('a', 3) // no tags now
    assert.is(await cache.invalidateTag('t2'), 0)
    assert.is(await cache.get('a'), 3)
    await cache.mset([['m1', 1], ['m2', 2]], { tags: ['batch'] })
    await cache.set('d', 1, { tags: ['batch'] })
    await cache.delete('d')
    assert.is(await cache.invalidateTag('batch'), 2)
    let calls = 0
    const loader = () => {
      calls++
      return { profile: true }
    }
    await cache.getOrCompute('p', loader, { tags: ['user:1'] })
    assert.is(await cache.invalidateTag('user:1'), 1)
    await cache.getOrCompute('p', loader, { tags: ['user:1'] })
    assert.is(calls, 2)
    await cache.set('c', 1, { tags: ['cleared'] })
    await cache.clear()
    await cache.set('c', 2)
    assert.is(await cache.invalidateTag('cleared'), 0)
    assert.is(await cache.get('c'), 2)
  })
})

test('on the cache invalidateTag covers every region; on a region handle only that region', async () => {
  await withCache({ shards: 2, regions: { sessions: {} } }, async (cache) => {
    await cache.set('a', 1, { tags: ['u'] })
    await cache.region('sessions').set('s', 1, { tags: ['u'] })
    await cache.region('sessions').set('s2', 1, { tags: ['u'] })
    assert.is(await cache.region('sessions').invalidateTag('u'), 2)
    assert.is(await cache.get('a'), 1)
    await cache.region('sessions').set('s', 1, { tags: ['u'] })
    assert.is(await cache.invalidateTag('u'), 2)
    assert.is(await cache.get('a'), undefined)
    assert.is(await cache.region('sessions').get('s'), undefined)
  })
})

test('a near cache never serves an entry invalidated by tag', async () => {
  await withCache({ shards: 2, nearCache: { maxEntries: 100 } }, async (cache) => {
    await cache.set('hot', { v: 1 }, { tags: ['t'] })
    assert.equal(await cache.get('hot'), { v: 1 })
    assert.equal(cache.getSync('hot'), { v: 1 })
    assert.is(cache.nearCacheSizeForTest(), 1)
    await cache.invalidateTag('t')
    assert.is(cache.getSync('hot'), undefined)
    assert.is(await cache.get('hot'), undefined)
  })
})

test('tags count against maxBytes: stats.usedBytes includes them, and tags alone make room by eviction', async () => {
  const T = TAG_LINK_OVERHEAD_BYTES
  const entry = 2 + 1 + ENTRY_OVERHEAD_BYTES // key 'k1', value 'v'
  await withCache({ shards: 1, regions: { default: { policy: 'fifo', maxBytes: entry * 3 + 200 } } }, async (cache) => {
    await cache.mset([['k1', 'v'], ['k2', 'v'], ['k3', 'v']])
    assert.is((await cache.stats()).usedBytes, entry * 3)
    assert.is(await cache.set('k3', 'v', { tags: ['org:1', 'ü'] }), true) // 5 + 2 UTF-8 bytes
    const s = await cache.stats()
    assert.is(s.evictions, 1)
    assert.is(s.usedBytes, entry * 2 + (5 + T) + (2 + T))
    assert.equal((await cache.keys()).sort(), ['k2', 'k3'])
    assert.is(await cache.invalidateTag('ü'), 1)
    assert.is((await cache.stats()).usedBytes, entry)
  })
})

test('an entry whose key + value + tags exceed the per-shard budget is E_VALUE_TOO_LARGE, and changes nothing', async () => {
  await withCache({ shards: 1, regions: { small: { maxBytes: 1000 } } }, async (cache) => {
    const small = cache.region('small')
    const value = 'x'.repeat(500) // 1 + 500 + 64 = 565 bytes: fits without tags
    await small.set('k', 'old', { tags: ['keep'] })
    const tags = ['a'.repeat(100), 'b'.repeat(100)] // + 2 x (100 + 128) = 1021
    const msg = /^(entries\[0\]: )?entry is 1021 bytes \(key \+ value \+ metadata \+ 456 for 2 tags \(UTF-8 bytes \+ 128 each\) \+ 64\), over region "small"'s per-shard budget of 1000 bytes \(regions.small.maxBytes 1000 over 1 shard\)$/
    const calls = [() => small.set('k', value, { tags }), () => small.mset([['k', value]], { tags }), () => small.getOrCompute('q', () => value, { tags }), () => small.cas('k', 'old', value, { tags })]
    for (const call of calls) {
      const err = await errorOf(call())
      assert.is(err.code, 'E_VALUE_TOO_LARGE', err.message)
      assert.match(err.message, msg, err.message)
    }
    assert.is(await small.get('k'), 'old')
    assert.is(await small.get('q'), undefined)
    assert.equal(await small.keys(), ['k'])
    assert.is(await small.set('k', value, { tags: ['a'.repeat(100)] }), true) // 565 + 228 = 793 fits
    assert.is((await cache.stats()).byRegion.small!.usedBytes, 793)
    assert.is(await small.invalidateTag('keep'), 0)
  })
})

test('bad tags are E_INVALID_OPTION naming the option, and change nothing', async () => {
  await withCache({ shards: 1, maxKeyBytes: 16 }, async (cache) => {
    await cache.set('k', 'v', { tags: ['keep'] })
    const cases: [Promise<unknown>, string][] = [
      [cache.set('k', 'x', { tags: 'keep' as never }), 'options.tags'],
      [cache.set('k', 'x', { tags: [''] }), 'options.tags[0]'],
      [cache.set('k', 'x', { tags: ['ok', 7 as never] }), 'options.tags[1]'],
      [cache.set('k', 'x', { tags: ['x'.repeat(17)] }), 'maxKeyBytes (16)'],
      [cache.set('k', 'x', { tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }), 'at most 32'],
      [cache.mset([['k', 'x']], { tags: [null as never] }), 'options.tags[0]'],
      [cache.invalidateTag('' as never), 'tag'],
      [cache.getOrCompute('z', () => 1, { tags: [1 as never] }), 'options.tags[0]'],
    ]
    for (const [p, name] of cases) {
      try {
        await p
        assert.unreachable(name)
      } catch (err) {
        assert.is((err as { code?: string }).code, 'E_INVALID_OPTION', (err as Error).message)
        assert.match((err as Error).message, name)
      }
    }
    assert.is(await cache.get('k'), 'v')
    assert.equal(await cache.keys(), ['k'])
    assert.is(await cache.invalidateTag('keep'), 1)
  })
})

test.run()
