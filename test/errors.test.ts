// The error matrix: one test per code. Every rejected call must leave the cache exactly as it was.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  CacheError,
  ClosedError,
  createCache,
  InvalidKeyError,
  InvalidOptionError,
  InvalidTtlError,
  InvalidValueError,
  UnknownRegionError,
  ValueTooLargeError,
} from '../src/index.js'
import type { Cache, CacheOptions } from '../src/index.js'

type ErrorClass = new (...args: never[]) => CacheError

/** Awaits a promise that must reject with `cls` / `code`, and returns the error. */
async function rejects(p: Promise<unknown>, cls: ErrorClass, code: string, message?: RegExp): Promise<CacheError> {
  assert.instance(p, Promise, 'async methods return a promise, never throw synchronously')
  try {
    await p
  } catch (err) {
    assert.instance(err, cls)
    assert.instance(err, CacheError)
    assert.is((err as CacheError).code, code)
    if (message !== undefined) assert.match((err as Error).message, message)
    return err as CacheError
  }
  assert.unreachable(`expected ${code}, but the promise resolved`)
  throw new Error('unreachable')
}

const SEED: [string, unknown][] = [
  ['a', 'alpha'],
  ['b', { n: 2 }],
  ['c', Buffer.from([1, 2, 3])],
]

async function seeded(options: CacheOptions = {}): Promise<Cache> {
  const cache = await createCache({ shards: 2, ...options })
  await cache.mset(SEED)
  return cache
}

/** Everything observable about the default region: keys, values, TTLs and counters. */
async function observe(cache: Cache): Promise<unknown> {
  const keys = (await cache.keys()).sort()
  const s = await cache.stats()
  return {
    keys,
    values: await cache.mget(keys),
    ttls: await Promise.all(keys.map((k) => cache.ttl(k))),
    counters: [s.hits, s.misses, s.sets, s.deletes, s.evictions, s.entries, s.usedBytes, s.rawBytes, s.storedBytes],
  }
}

/**
 * Runs `bad` and checks it changed nothing. Observing reads the seeded keys
 * once (SEED.length hits, counted by the next observation's stats), so the
 * only expected difference is those hits.
 */
async function unchanged(cache: Cache, bad: () => Promise<void>): Promise<void> {
  const before = (await observe(cache)) as { counters: number[] }
  await bad()
  const after = (await observe(cache)) as { counters: number[] }
  assert.equal({ ...after, counters: undefined }, { ...before, counters: undefined })
  assert.is(after.counters[0], before.counters[0]! + SEED.length)
  assert.equal(after.counters.slice(1), before.counters.slice(1))
}

test('E_INVALID_KEY: non-strings, empty and over-long keys, bad key lists and globs', async () => {
  const cache = await seeded({ maxKeyBytes: 16 })
  await unchanged(cache, async () => {
    await rejects(cache.get(5 as unknown as string), InvalidKeyError, 'E_INVALID_KEY', /key must be a non-empty string \(got number\)/)
    await rejects(cache.set('', 1), InvalidKeyError, 'E_INVALID_KEY', /got an empty|non-empty/)
    await rejects(cache.set('k'.repeat(17), 1), InvalidKeyError, 'E_INVALID_KEY', /maxKeyBytes \(16\).*got 17/)
    await rejects(cache.set('ééééééééé', 1), InvalidKeyError, 'E_INVALID_KEY', /got 18/) // 9 chars, 18 UTF-8 bytes
    await rejects(cache.delete(null as unknown as string), InvalidKeyError, 'E_INVALID_KEY', /got null/)
    await rejects(cache.has(undefined as unknown as string), InvalidKeyError, 'E_INVALID_KEY')
    await rejects(cache.ttl({} as unknown as string), InvalidKeyError, 'E_INVALID_KEY')
    await rejects(cache.getEntry(''), InvalidKeyError, 'E_INVALID_KEY')
    await rejects(cache.mget(['a', 7 as unknown as string]), InvalidKeyError, 'E_INVALID_KEY', /keys\[1\]/)
    await rejects(cache.mget('a' as unknown as string[]), InvalidKeyError, 'E_INVALID_KEY', /array/)
    await rejects(cache.mdelete(['a', '']), InvalidKeyError, 'E_INVALID_KEY', /keys\[1\]/)
    await rejects(cache.mhas([1 as unknown as string]), InvalidKeyError, 'E_INVALID_KEY')
    await rejects(cache.mset([['a', 'changed'], ['', 'x']]), InvalidKeyError, 'E_INVALID_KEY', /entries\[1\]/)
    await rejects(cache.keys(''), InvalidKeyError, 'E_INVALID_KEY', /glob/)
    await rejects(cache.deleteByPattern(3 as unknown as string), InvalidKeyError, 'E_INVALID_KEY', /glob/)
  })
  await cache.close()
})

test('E_INVALID_VALUE: undefined, functions, symbols, values the codec cannot encode', async () => {
  const cache = await seeded()
  const circular: Record<string, unknown> = {}
  circular.self = circular
  await unchanged(cache, async () => {
    await rejects(cache.set('a', undefined), InvalidValueError, 'E_INVALID_VALUE', /undefined/)
    await rejects(cache.set('a', () => 1), InvalidValueError, 'E_INVALID_VALUE', /function/)
    await rejects(cache.set('a', Symbol('s')), InvalidValueError, 'E_INVALID_VALUE', /symbol/)
    await rejects(cache.set('a', 10n), InvalidValueError, 'E_INVALID_VALUE', /JSON codec/)
    await rejects(cache.set('a', circular), InvalidValueError, 'E_INVALID_VALUE', /circular/i)
    // One bad value in a batch rejects the batch: the good ones are not stored either.
    await rejects(cache.mset([['a', 'changed'], ['new', undefined]]), InvalidValueError, 'E_INVALID_VALUE', /entries\[1\]/)
    await rejects(cache.mset({ a: 'changed', b: () => 0 }), InvalidValueError, 'E_INVALID_VALUE', /entries\[1\]/)
  })
  await cache.close()
  const refusing = await createCache({ shards: 1, codec: { encode: () => undefined, decode: (b) => b } })
  await rejects(refusing.set('k', { a: 1 }), InvalidValueError, 'E_INVALID_VALUE', /configured codec returned undefined/)
  assert.is(await refusing.has('k'), false)
  await refusing.close()
})

test('E_VALUE_TOO_LARGE: over maxValueBytes, or over the region share of its byte budget', async () => {
  const cache = await seeded({ maxValueBytes: 1000, regions: { small: { maxBytes: 2000 } } })
  await unchanged(cache, async () => {
    await rejects(cache.set('a', 'x'.repeat(1001)), ValueTooLargeError, 'E_VALUE_TOO_LARGE', /1001 bytes, over options.maxValueBytes \(1000\)/)
    await rejects(cache.set('a', Buffer.alloc(1001)), ValueTooLargeError, 'E_VALUE_TOO_LARGE')
    await rejects(cache.mset([['a', 'ok'], ['z', 'x'.repeat(5000)]]), ValueTooLargeError, 'E_VALUE_TOO_LARGE', /entries\[1\]/)
  })
  // 2000 bytes over 2 shards: 1000 per shard. 1 + 936 + 64 = 1001 is one too many; 1000 fits.
  const small = cache.region('small')
  await small.set('k', 'keep')
  await rejects(small.set('k', 'y'.repeat(936)), ValueTooLargeError, 'E_VALUE_TOO_LARGE', /per-shard budget of 1000 bytes \(regions.small.maxBytes 2000 over 2 shards\)/)
  assert.is(await small.get('k'), 'keep')
  assert.is(await small.set('k', 'y'.repeat(935)), true)
  assert.is(await small.get('k'), 'y'.repeat(935))
  await cache.close()
})

test('E_INVALID_TTL: zero, negative, NaN and unparseable durations, in set and in region options', async () => {
  const cache = await seeded()
  await unchanged(cache, async () => {
    for (const ttl of [0, -1, NaN, 'abc', '0s', '-5m', '', {} as unknown as string]) {
      await rejects(cache.set('a', 'changed', { ttl }), InvalidTtlError, 'E_INVALID_TTL', /options.ttl must be a positive number of milliseconds/)
    }
    await rejects(cache.mset([['a', 'changed']], { ttl: -3 }), InvalidTtlError, 'E_INVALID_TTL', /got -3/)
  })
  await cache.close()
  await rejects(createCache({ shards: 1, regions: { s: { ttl: 'soon' } } }), InvalidTtlError, 'E_INVALID_TTL', /regions.s.ttl .*got "soon"/)
})

test('E_UNKNOWN_REGION: region() names the regions that exist', async () => {
  const cache = await seeded({ regions: { sessions: {} } })
  await unchanged(cache, async () => {
    assert.throws(() => cache.region('nope'), (err: unknown) => {
      assert.instance(err, UnknownRegionError)
      assert.is((err as CacheError).code, 'E_UNKNOWN_REGION')
      assert.is((err as Error).message, 'region "nope" is not configured (regions: default, sessions)')
      return true
    })
  })
  await cache.close()
})

test('E_INVALID_OPTION: cache, region and operation options, each message naming the option', async () => {
  const cases: [unknown, RegExp][] = [
    [{ shards: 0 }, /^options.shards must be a positive integer of at most 256 \(got 0\)$/],
    [{ shards: 1.5 }, /options.shards/],
    [{ shard: 2 }, /^options.shard is not an option/],
    [{ regions: { x: { maxBytes: -1 } } }, /^regions.x.maxBytes must be a positive integer or a size string like "100mb" \(got -1\)$/],
    [{ regions: { x: { maxBytes: 'lots' } } }, /regions.x.maxBytes/],
    [{ regions: { x: { policy: 'lfu' } } }, /^regions.x.policy must be "lru" or "fifo" \(got "lfu"\)$/],
    [{ regions: { x: { maxEntries: 1 } }, shards: 2 }, /regions.x.maxEntries \(1\) must be at least the number of shards \(2\)/],
    [{ regions: { x: { compression: 'yes' } } }, /regions.x.compression/],
    [{ regions: { x: { compress: false } } }, /regions.x.compress is not an option/],
    [{ maxKeyBytes: 70000 }, /options.maxKeyBytes must be a positive integer of at most 65535/],
    [{ codec: { encode: () => '' } }, /options.codec/],
    [{ idleSpinMicros: -1 }, /options.idleSpinMicros/],
    ['fast', /options must be an object/],
  ]
  for (const [options, message] of cases) {
    await rejects(createCache(options as CacheOptions), InvalidOptionError, 'E_INVALID_OPTION', message)
  }
  const cache = await seeded()
  await unchanged(cache, async () => {
    await rejects(cache.set('a', 'changed', { nx: true, xx: true }), InvalidOptionError, 'E_INVALID_OPTION', /options.nx and options.xx cannot both be true/)
    await rejects(cache.set('a', 'changed', { ttl: 5, ttlMs: 5 } as never), InvalidOptionError, 'E_INVALID_OPTION', /options.ttlMs is not an option/)
    await rejects(cache.set('a', 'changed', { nx: 'yes' } as never), InvalidOptionError, 'E_INVALID_OPTION', /options.nx must be a boolean/)
    await rejects(cache.set('a', 'changed', { metadata: [1] } as never), InvalidOptionError, 'E_INVALID_OPTION', /options.metadata must be a plain object/)
    await rejects(cache.mset('a' as never), InvalidOptionError, 'E_INVALID_OPTION', /entries must be/)
    await rejects(cache.mset([['a', 'changed'], ['b'] as never]), InvalidOptionError, 'E_INVALID_OPTION', /entries\[1\] must be a \[key, value\] pair/)
  })
  await cache.close()
})

test('E_CLOSED: every operation after close rejects, and close is idempotent', async () => {
  const cache = await seeded()
  await cache.close()
  await cache.close()
  const calls: Promise<unknown>[] = [
    cache.get('a'), cache.set('a', 1), cache.delete('a'), cache.has('a'), cache.ttl('a'), cache.getEntry('a'),
    cache.mget(['a']), cache.mset([['a', 1]]), cache.mdelete(['a']), cache.mhas(['a']),
    cache.keys(), cache.deleteByPattern('*'), cache.clear(), cache.cleanupExpired(), cache.stats(), cache.resetStats(),
  ]
  for (const p of calls) await rejects(p, ClosedError, 'E_CLOSED', /^the cache is closed$/)
})

test.run()
