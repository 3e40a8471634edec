// The public API through real shard threads: every operation with exact results.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import { withCache } from '../fixtures/helpers.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))


test('the README example works as written', async () => {
  const cache = await createCache({
    shards: 2,
    regions: {
      default: { policy: 'lru', maxBytes: 256 * 2 ** 20 },
      sessions: { policy: 'fifo', maxEntries: 50_000, ttl: '30m', compression: { minBytes: 1024 } },
    },
  })
  assert.is(await cache.set('user:123', { name: 'Alice' }, { ttl: 3_600_000, metadata: { endpoint: '/api/users' } }), true)
  assert.equal(await cache.get('user:123'), { name: 'Alice' })
  assert.is(await cache.region('sessions').set('s:1', Buffer.from('...')), true)
  assert.equal(await cache.region('sessions').get('s:1'), Buffer.from('...'))
  await cache.close()
})

test('values come back as the type and bytes they went in as', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const bytes = new Uint8Array([0, 1, 2, 255, 128])
    const buf = Buffer.from([9, 8, 7, 0])
    const cases: [string, unknown][] = [
      ['str', 'héllo wörld ✓ 😀'],
      ['empty', ''],
      ['buf', buf],
      ['u8', bytes],
      ['obj', { a: 1, b: [true, null, 'x'], c: { d: -2.5 } }],
      ['arr', [1, 'two', { three: 3 }]],
      ['num', 42.125],
      ['zero', 0],
      ['neg', -7],
      ['t', true],
      ['f', false],
      ['null', null],
    ]
    for (const [k, v] of cases) assert.is(await cache.set(k, v), true)
    for (const [k, v] of cases) assert.equal(await cache.get(k), v, k)
    const b = await cache.get('buf')
    assert.ok(Buffer.isBuffer(b))
    const u = await cache.get('u8')
    assert.ok(u instanceof Uint8Array && !Buffer.isBuffer(u))
    assert.is(typeof (await cache.get('str')), 'string')
    // A returned Buffer is a copy: changing it changes nothing stored.
    ;(b as Buffer)[0] = 0
    assert.equal(await cache.get('buf'), buf)
  })
})

test('a custom codec handles structured values; strings and bytes bypass it', async () => {
  const seen: unknown[] = []
  const codec = {
    encode: (v: unknown) => {
      seen.push(v)
      return Buffer.from(`X${JSON.stringify(v)}`)
    },
    decode: (b: Uint8Array) => JSON.parse(Buffer.from(b).toString().slice(1)) as unknown,
  }
  await withCache({ shards: 1, codec }, async (cache) => {
    await cache.set('o', { n: 1 })
    await cache.set('s', 'plain')
    assert.equal(await cache.get('o'), { n: 1 })
    assert.is(await cache.get('s'), 'plain')
    assert.equal(seen, [{ n: 1 }])
  })
})

test('get, set, delete, has on single keys', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    assert.is(await cache.get('missing'), undefined)
    assert.is(await cache.has('k'), false)
    assert.is(await cache.set('k', 'v1'), true)
    assert.is(await cache.has('k'), true)
    assert.is(await cache.set('k', 'v2'), true)
    assert.is(await cache.get('k'), 'v2')
    assert.is(await cache.delete('k'), true)
    assert.is(await cache.delete('k'), false)
    assert.is(await cache.get('k'), undefined)
    assert.is(await cache.has('k'), false)
  })
})

test('nx sets only absent keys, xx only present ones; refused sets resolve false and change nothing', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    assert.is(await cache.set('a', 1, { xx: true }), false)
    assert.is(await cache.has('a'), false)
    assert.is(await cache.set('a', 1, { nx: true }), true)
    assert.is(await cache.set('a', 2, { nx: true }), false)
    assert.is(await cache.get('a'), 1)
    assert.is(await cache.set('a', 3, { xx: true }), true)
    assert.is(await cache.get('a'), 3)
    const s = await cache.stats()
    assert.is(s.sets, 2)
  })
})

test('keys like __proto__ and constructor are ordinary keys', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const keys = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'prototype']
    for (const k of keys) assert.is(await cache.get(k), undefined, k)
    assert.is(await cache.mset(keys.map((k, i): [string, number] => [k, i])), 5)
    assert.equal(await cache.mget(keys), [0, 1, 2, 3, 4])
    assert.equal((await cache.keys()).sort(), [...keys].sort())
    assert.is(await cache.mset(JSON.parse('{"__proto__":"own"}') as Record<string, unknown>), 1)
    assert.is(await cache.get('__proto__'), 'own')
    assert.is(await cache.delete('constructor'), true)
    assert.is(await cache.has('constructor'), false)
  })
})

test('ttl reports remaining ms, Infinity, or undefined; durations strings are parsed', async () => {
  await withCache({ shards: 2, regions: { short: { ttl: '1h' } } }, async (cache) => {
    await cache.set('forever', 1)
    await cache.set('ms', 1, { ttl: 60_000 })
    await cache.set('str', 1, { ttl: '5m' })
    assert.is(await cache.ttl('forever'), Infinity)
    const t1 = (await cache.ttl('ms'))!
    assert.ok(t1 > 59_000 && t1 <= 60_000, String(t1))
    const t2 = (await cache.ttl('str'))!
    assert.ok(t2 > 299_000 && t2 <= 300_000, String(t2))
    assert.is(await cache.ttl('missing'), undefined)
    await cache.region('short').set('x', 1)
    const t3 = (await cache.region('short').ttl('x'))!
    assert.ok(t3 > 3_599_000 && t3 <= 3_600_000, String(t3))
  })
})

test('expired entries are never returned, and count as expired evictions', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    // A TTL the first read surely beats even on a busy machine, then a wait until it has surely passed.
    // The TTL runs from when the shard applies the write (as Redis counts from when it receives
    // one): between the call and the reply, so it has surely passed 2 s after the reply.
    const setAt = Date.now()
    await cache.mset([['a', 1], ['b', 2], ['c', 3]], { ttl: 2000 })
    const appliedBy = Date.now()
    await cache.set('keep', 4)
    const before = await cache.mget(['a', 'b', 'c', 'keep'])
    if (Date.now() - setAt < 2000) assert.equal(before, [1, 2, 3, 4])
    await sleep(Math.max(0, appliedBy + 2050 - Date.now()))
    assert.equal(await cache.mget(['a', 'b', 'c', 'keep']), [undefined, undefined, undefined, 4])
    assert.equal(await cache.mhas(['a', 'keep']), [false, true])
    assert.equal(await cache.keys(), ['keep'])
    assert.is(await cache.getEntry('a'), undefined)
    const s = await cache.stats()
    assert.is(s.evictionsByCause.expired, 3)
    assert.is(s.evictions, 3)
    assert.is(s.entries, 1)
  })
})

test('cleanupExpired removes expired entries and says how many', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    await cache.mset(Array.from({ length: 10 }, (_, i) => [`e${i}`, i] as [string, number]), { ttl: 30 })
    await cache.mset(Array.from({ length: 5 }, (_, i) => [`l${i}`, i] as [string, number]))
    await sleep(60)
    const before = await cache.stats()
    // The background sweep may have removed some already, and may remove more
    // between stats() and cleanupExpired() (it runs every 100 ms): together
    // they removed all 10, and cleanupExpired() counted at most those left.
    const removed = await cache.cleanupExpired()
    const after = await cache.stats()
    assert.is(after.evictionsByCause.expired, 10)
    assert.ok(removed <= 10 - before.evictionsByCause.expired, `removed ${removed}, ${before.evictionsByCause.expired} swept before`)
    assert.is(await cache.cleanupExpired(), 0)
    assert.is(after.entries, 5)
  })
})

test('getEntry returns value, times, sizes, compression and metadata', async () => {
  await withCache({ shards: 2, regions: { z: { compression: { minBytes: 100 } } } }, async (cache) => {
    const before = Date.now()
    await cache.set('plain', 'abc', { ttl: 10_000, metadata: { endpoint: '/api', n: 1 } })
    const e = (await cache.getEntry('plain'))!
    assert.is(e.value, 'abc')
    assert.ok(Math.abs(e.createdAt - before) < 1000, `createdAt ${e.createdAt} vs ${before}`)
    assert.ok(Math.abs(e.expiresAt - e.createdAt - 10_000) < 1e-6)
    assert.ok(e.ttlRemaining > 9_000 && e.ttlRemaining <= 10_000)
    assert.is(e.sizeBytes, 3)
    assert.is(e.storedBytes, 3)
    assert.is(e.compressed, false)
    assert.equal(e.metadata, { endpoint: '/api', n: 1 })

    const big = 'abcdefgh'.repeat(500)
    await cache.region('z').set('big', big)
    const z = (await cache.region('z').getEntry('big'))!
    assert.is(z.value, big)
    assert.is(z.sizeBytes, 4000)
    assert.ok(z.storedBytes < 200, String(z.storedBytes))
    assert.is(z.compressed, true)
    assert.is(z.expiresAt, Infinity)
    assert.is(z.ttlRemaining, Infinity)
    assert.is(z.metadata, undefined)
    assert.is(await cache.getEntry('missing'), undefined)
  })
})

test('batch operations: mget in key order, mset counts, mdelete counts, mhas', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`)
    assert.is(await cache.mset(keys.map((k, i): [string, number] => [k, i])), 50)
    assert.equal(await cache.mget([...keys, 'nope']), [...keys.map((_, i) => i), undefined])
    assert.is(await cache.mset(new Map([['k0', 'x'], ['new', 'y']]), { nx: true }), 1)
    assert.is(await cache.mset({ k1: 'a', k2: 'b' }), 2)
    assert.equal(await cache.mget(['k0', 'k1', 'k2', 'new']), [0, 'a', 'b', 'y'])
    assert.equal(await cache.mhas(['k3', 'zzz', 'new']), [true, false, true])
    assert.is(await cache.mdelete(['k3', 'k4', 'zzz', 'k3']), 2)
    assert.equal(await cache.mget([]), [])
    assert.is(await cache.mset([]), 0)
    assert.is(await cache.mdelete([]), 0)
    assert.is((await cache.stats()).entries, 49)
  })
})

test('keys, deleteByPattern and clear with globs, per region', async () => {
  await withCache({ shards: 2, regions: { other: {} } }, async (cache) => {
    await cache.mset([['user:1', 1], ['user:2', 2], ['user:10', 10], ['order:1', 1], ['u?er', 0], ['user:*', 9]])
    await cache.region('other').set('user:1', 'other')
    assert.equal((await cache.keys()).sort(), ['order:1', 'u?er', 'user:*', 'user:1', 'user:10', 'user:2'])
    assert.equal((await cache.keys('user:?')).sort(), ['user:*', 'user:1', 'user:2'])
    assert.equal((await cache.keys('user:[12]*')).sort(), ['user:1', 'user:10', 'user:2'])
    assert.equal(await cache.keys('user:\\*'), ['user:*'])
    assert.equal(await cache.keys('u\\?er'), ['u?er'])
    assert.equal(await cache.keys('nothing*'), [])
    assert.is(await cache.deleteByPattern('user:*'), 4)
    assert.equal((await cache.keys()).sort(), ['order:1', 'u?er'])
    assert.equal(await cache.region('other').keys(), ['user:1'])
    assert.is(await cache.clear(), 2)
    assert.equal(await cache.keys(), [])
    assert.equal(await cache.region('other').keys(), ['user:1'])
    assert.is(await cache.region('other').clear(), 1)
  })
})

test('regions are separate keyspaces with their own policy', async () => {
  await withCache({ shards: 1, regions: { a: { policy: 'lru', maxEntries: 3 }, b: { policy: 'fifo', maxEntries: 3 } } }, async (cache) => {
    for (const name of ['a', 'b']) {
      const r = cache.region(name)
      await r.mset([['1', 1], ['2', 2], ['3', 3]])
      await r.get('1') // refreshes '1' under LRU only
      await r.set('4', 4)
    }
    assert.equal((await cache.region('a').keys()).sort(), ['1', '3', '4'])
    assert.equal((await cache.region('b').keys()).sort(), ['2', '3', '4'])
    assert.equal(await cache.get('1'), undefined)
    assert.equal(cache.regionNames, ['default', 'a', 'b'])
  })
})

test('budgets are split across shards and eviction keeps each shard within its share', async () => {
  await withCache({ shards: 2, regions: { default: { maxEntries: 101 } } }, async (cache) => {
    await cache.mset(Array.from({ length: 1000 }, (_, i) => [`key${i}`, i] as [string, number]))
    const s = await cache.stats()
    assert.is(s.maxEntries, 101)
    assert.equal(s.byShard.map((b) => b.maxEntries), [51, 50])
    assert.equal(s.byShard.map((b) => b.entries), [51, 50])
    assert.is(s.entries, 101)
    assert.is(s.sets, 1000)
    assert.is(s.evictionsByCause.size, 899)
  })
  await withCache({ shards: 2, regions: { default: { maxBytes: 10_000 } } }, async (cache) => {
    await cache.mset(Array.from({ length: 500 }, (_, i) => [`key${String(i).padStart(3, '0')}`, 'v'.repeat(100)] as [string, string]))
    const s = await cache.stats()
    // Each entry is charged 6 key bytes + 100 value bytes + 64 = 170; a 5,000-byte share holds 29.
    assert.equal(s.byShard.map((b) => b.entries), [29, 29])
    assert.equal(s.byShard.map((b) => b.usedBytes), [29 * 170, 29 * 170])
    assert.is(s.usedBytes, 58 * 170)
    assert.is(s.maxBytes, 10_000)
    assert.is(s.utilization, (58 * 170) / 10_000)
  })
})

test('stats: exact counters, byShard and byRegion sums, ratios, plain JSON; resetStats keeps entries', async () => {
  await withCache({ shards: 2, regions: { z: { compression: { minBytes: 64 } } } }, async (cache) => {
    await cache.mset([['a', 'x'], ['b', 'y'], ['c', 'z']])
    await cache.mget(['a', 'b', 'nope'])
    await cache.delete('c')
    await cache.region('z').set('big', 'q'.repeat(1000))
    await cache.region('z').get('big')
    const s = await cache.stats()
    assert.is(s.hits, 3)
    assert.is(s.misses, 1)
    assert.is(s.sets, 4)
    assert.is(s.deletes, 1)
    assert.is(s.entries, 3)
    assert.is(s.hitRate, 0.75)
    assert.is(s.shards, 2)
    assert.is(s.shardRestarts, 0)
    assert.is(s.byRegion.default!.entries, 2)
    assert.is(s.byRegion.default!.rawBytes, 2)
    assert.is(s.byRegion.default!.storedBytes, 2)
    assert.is(s.byRegion.default!.usedBytes, 2 * (1 + 1 + 64))
    assert.is(s.byRegion.z!.rawBytes, 1000)
    assert.is(s.byRegion.z!.compressedEntries, 1)
    assert.ok(s.byRegion.z!.storedBytes < 100)
    assert.is(s.byRegion.z!.compressionRatio, 1000 / s.byRegion.z!.storedBytes)
    assert.is(s.byShard.length, 2)
    for (const k of ['hits', 'misses', 'sets', 'deletes', 'entries', 'usedBytes', 'rawBytes', 'storedBytes'] as const) {
      assert.is(s.byShard[0]![k] + s.byShard[1]![k], s[k], k)
      assert.is(s.byRegion.default![k] + s.byRegion.z![k], s[k], k)
    }
    assert.equal(JSON.parse(JSON.stringify(s)), s)
    await cache.resetStats()
    const r = await cache.stats()
    assert.is(r.hits + r.misses + r.sets + r.deletes + r.evictions, 0)
    assert.is(r.entries, 3)
    assert.is(r.usedBytes, s.usedBytes)
    assert.is(r.hitRate, 0)
  })
})

test('operations issued in one tick travel in one frame per shard', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const before = cache.framesSentForTest()
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`)
    const sets = keys.map((k) => cache.set(k, k))
    const gets = keys.map((k) => cache.get(k))
    const results = await Promise.all([...sets, ...gets])
    assert.is(cache.framesSentForTest() - before, 2)
    assert.equal(results.slice(200), keys)
  })
})

test('many concurrent callers on several shards keep sharing frames (no fragmentation into one-op frames)', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const keys = Array.from({ length: 1000 }, (_, i) => `k${i}`)
    await cache.mset(keys.map((k): [string, string] => [k, k]))
    const before = cache.framesSentForTest()
    let ops = 0
    const caller = async (c: number): Promise<void> => {
      for (let i = 0; i < 20; i++) {
        const k = keys[(c * 31 + i * 7) % keys.length]!
        assert.is(await cache.get(k), k)
        ops++
      }
    }
    await Promise.all(Array.from({ length: 256 }, (_, c) => caller(c)))
    const frames = cache.framesSentForTest() - before
    // Flushing every tick to every shard halves the frame size each round trip:
    // this workload then ends at ~1 op per frame. One frame in flight per shard keeps dozens.
    assert.is(ops, 5120)
    assert.ok(ops / frames >= 16, `${(ops / frames).toFixed(1)} ops per frame over ${frames} frames`)
  })
})

test('a failed operation rejects only its own promise, not the others in its frame', async () => {
  // This codec cannot decode what it stored for "poison": the shard's answer is fine, decoding it fails.
  const codec = {
    encode: (v: unknown) => Buffer.from(JSON.stringify(v)),
    decode: (b: Uint8Array) => {
      const v = JSON.parse(Buffer.from(b).toString()) as unknown
      if (v === 'poison') throw new Error('cannot decode poison')
      return v
    },
  }
  await withCache({ shards: 1, codec }, async (cache) => {
    await cache.mset([['a', { n: 1 }], ['bad', 'x'], ['b', { n: 2 }]])
    await cache.set('bad', { toJSON: () => 'poison' })
    const before = cache.framesSentForTest()
    const results = await Promise.allSettled([cache.get('a'), cache.get('bad'), cache.get('b'), cache.set('c', 3)])
    assert.is(cache.framesSentForTest() - before, 1) // one frame carried all four
    assert.equal(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'])
    assert.equal((results[0] as PromiseFulfilledResult<unknown>).value, { n: 1 })
    const err = (results[1] as PromiseRejectedResult).reason as { code: string; message: string; cause: Error }
    assert.is(err.code, 'E_INVALID_VALUE')
    assert.is(err.message, 'stored value cannot be decoded by the configured codec')
    assert.is(err.cause.message, 'cannot decode poison')
    assert.equal((results[2] as PromiseFulfilledResult<unknown>).value, { n: 2 })
    assert.is(await cache.get('c'), 3)
  })
})

test('operations to one key apply in the order they were issued', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const ps: Promise<unknown>[] = []
    for (let i = 0; i < 100; i++) {
      ps.push(cache.set('k', i))
      ps.push(cache.get('k'))
    }
    const rs = await Promise.all(ps)
    for (let i = 0; i < 100; i++) assert.is(rs[2 * i + 1], i)
  })
})

test.run()
