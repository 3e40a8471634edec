// The error matrix: one test per code. Every rejected call must leave the cache exactly as it was.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  BusConnectError,
  CacheError,
  ClosedError,
  createCache,
  L2Error,
  InvalidKeyError,
  InvalidOptionError,
  InvalidTtlError,
  InvalidValueError,
  UnknownRegionError,
  ValueTooLargeError,
} from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'
import { EVICTION_POLICIES } from '../../src/wire/region_types.js'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../../tools/redis_server.js'
import { describe, plural } from '../../src/messages.js'
import { errorOf } from '../fixtures/helpers.js'

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
    await rejects(cache.get(5 as unknown as string), InvalidKeyError, 'E_INVALID_KEY', /^key must be a non-empty string \(got 5\)$/)
    await rejects(cache.set('', 1), InvalidKeyError, 'E_INVALID_KEY', /^key must be a non-empty string \(got an empty string\)$/)
    await rejects(cache.set('k'.repeat(17), 1), InvalidKeyError, 'E_INVALID_KEY', /^key is 17 UTF-8 bytes, over options.maxKeyBytes \(16\)$/)
    await rejects(cache.set('ééééééééé', 1), InvalidKeyError, 'E_INVALID_KEY', /^key is 18 UTF-8 bytes, over options.maxKeyBytes \(16\)$/) // 9 chars, 18 UTF-8 bytes
    await rejects(cache.delete(null as unknown as string), InvalidKeyError, 'E_INVALID_KEY', /^key must be a non-empty string \(got null\)$/)
    await rejects(cache.has(undefined as unknown as string), InvalidKeyError, 'E_INVALID_KEY')
    await rejects(cache.ttl({} as unknown as string), InvalidKeyError, 'E_INVALID_KEY', /^key must be a non-empty string \(got an object\)$/)
    await rejects(cache.getEntry(''), InvalidKeyError, 'E_INVALID_KEY')
    await rejects(cache.mget(['a', 7 as unknown as string]), InvalidKeyError, 'E_INVALID_KEY', /keys\[1\]/)
    await rejects(cache.mget('a' as unknown as string[]), InvalidKeyError, 'E_INVALID_KEY', /^keys must be an array of keys \(got the string "a"\)$/)
    await rejects(cache.mdelete(['a', '']), InvalidKeyError, 'E_INVALID_KEY', /keys\[1\]/)
    await rejects(cache.mhas([1 as unknown as string]), InvalidKeyError, 'E_INVALID_KEY')
    await rejects(cache.mset([['a', 'changed'], ['', 'x']]), InvalidKeyError, 'E_INVALID_KEY', /entries\[1\]/)
    await rejects(cache.keys(''), InvalidKeyError, 'E_INVALID_KEY', /^glob must be a non-empty string \(got an empty string\)$/)
    await rejects(cache.deleteByPattern(3 as unknown as string), InvalidKeyError, 'E_INVALID_KEY', /^glob must be a non-empty string \(got 3\)$/)
    await rejects(cache.keys('g'.repeat(17)), InvalidKeyError, 'E_INVALID_KEY', /^glob is 17 UTF-8 bytes, over options.maxKeyBytes \(16\)$/)
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
  await rejects(createCache({ shards: 1, regions: { s: { ttl: 'soon' } } }), InvalidTtlError, 'E_INVALID_TTL', /regions.s.ttl .*\(got the string "soon"\)$/)
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
    assert.throws(() => cache.region(1 as never), (err: unknown) => {
      assert.instance(err, UnknownRegionError)
      assert.is((err as Error).message, 'region must be the name of a configured region (got 1; regions: default, sessions)')
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
    // bytes.parse alone reads these as 10, 1, 1 and 5 bytes.
    [{ regions: { x: { maxBytes: '10 parsecs' } } }, /^regions.x.maxBytes must be a positive integer or a size string like "100mb" \(got the string "10 parsecs"\)$/],
    [{ regions: { x: { maxBytes: '1e3' } } }, /^regions.x.maxBytes must be .* \(got the string "1e3"\)$/],
    [{ maxValueBytes: '1,000' }, /^options.maxValueBytes must be .* \(got the string "1,000"\)$/],
    [{ maxValueBytes: '1.5' }, /^options.maxValueBytes must be .* \(got the string "1.5"\)$/],
    [{ regions: { x: { policy: 'lfu' } } }, new RegExp(`^regions.x.policy must be one of ${EVICTION_POLICIES.map((p) => `"${p}"`).join(', ')} \\(got the string "lfu"\\)$`)],
    [{ shards: '2' }, /^options.shards must be a positive integer of at most 256 \(got the string "2"\)$/],
    [{ maxValueBytes: [1] }, /^options.maxValueBytes must be a positive integer or a size string like "100mb" \(got an array of 1 item\)$/],
    [{ codec: { encode: () => '' } }, /^options.codec must be an object with encode\(value\) and decode\(bytes\) functions \(got an object whose decode is undefined\)$/],
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
    await rejects(cache.set('a', 'changed', 500 as never), InvalidOptionError, 'E_INVALID_OPTION', /^options must be an object like \{ ttl, nx, xx, metadata \} \(got 500; for a TTL, pass \{ ttl: 500 \}\)$/)
    await rejects(cache.set('a', 'changed', '5m' as never), InvalidOptionError, 'E_INVALID_OPTION', /^options must be an object like \{ ttl, nx, xx, metadata \} \(got the string "5m"; for a TTL, pass \{ ttl: "5m" \}\)$/)
    await rejects(cache.mset('a' as never), InvalidOptionError, 'E_INVALID_OPTION', /^entries must be an array of \[key, value\] pairs, a Map, or a plain object \(got the string "a"\)$/)
    await rejects(cache.mset([['a', 'changed'], ['b'] as never]), InvalidOptionError, 'E_INVALID_OPTION', /^entries\[1\] must be a \[key, value\] pair \(got an array of 1 item\)$/)
    // A number given as a string says so: "(got 2)" would read as the number it should have been.
    await rejects(cache.incr('a', '2' as never), InvalidOptionError, 'E_INVALID_OPTION', /^by must be a finite number \(got the string "2"\)$/)
    await rejects(cache.incr('a', NaN), InvalidOptionError, 'E_INVALID_OPTION', /^by must be a finite number \(got NaN\)$/)
    await rejects(cache.set('a', 'changed', { nx: 'true' } as never), InvalidOptionError, 'E_INVALID_OPTION', /^options.nx must be a boolean \(got the string "true"\)$/)
    await rejects(cache.set('a', 'changed', { tags: 'x' } as never), InvalidOptionError, 'E_INVALID_OPTION', /^options.tags must be an array of strings \(got the string "x"\)$/)
    await rejects(cache.getOrCompute('a', 'load' as never), InvalidOptionError, 'E_INVALID_OPTION', /^loader must be a function or \{ task, args \} for the loader pool \(got the string "load"\)$/)
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

test('createCache({ restore }) that cannot read the file names the option', async () => {
  const missing = join(mkdtempSync(join(tmpdir(), 'shardcache-errors-')), 'missing.snap')
  const err = await errorOf(createCache({ shards: 1, restore: missing }))
  assert.is(err.code, 'E_SNAPSHOT_CORRUPT')
  assert.is(err.message, `options.restore: snapshot ${JSON.stringify(missing)} cannot be read: ENOENT: no such file or directory, open '${missing}'`)
})

test('counts in messages are singular for 1: one shard, one tag', async () => {
  // 1000 bytes in 1 shard; 'k' + 900 + 64 + the tag's (1 UTF-8 byte + 128) = 1094.
  const cache = await createCache({ shards: 1, regions: { tiny: { maxBytes: 1000 } } })
  const tiny = cache.region('tiny')
  await rejects(
    tiny.set('k', 'y'.repeat(900), { tags: ['t'] }),
    ValueTooLargeError,
    'E_VALUE_TOO_LARGE',
    /^entry is 1094 bytes \(key \+ value \+ metadata \+ 129 for 1 tag \(UTF-8 bytes \+ 128 each\) \+ 64\), over region "tiny"'s per-shard budget of 1000 bytes \(regions.tiny.maxBytes 1000 over 1 shard\)$/,
  )
  assert.is(await tiny.has('k'), false)
  await cache.close()
  assert.is(plural(1, 'shard'), '1 shard')
  assert.is(plural(0, 'shard'), '0 shards')
  assert.is(plural(2, 'entry', 'entries'), '2 entries')
})

test('a value echoed in a message reads as what it is: a string quoted and called a string, a number bare, anything else by its kind', () => {
  const cases: [unknown, string][] = [
    ['2', 'the string "2"'],
    ['', 'an empty string'],
    ['x'.repeat(61), `the string "${'x'.repeat(60)}"… (61 characters)`],
    [2, '2'],
    [-0, '-0'],
    [NaN, 'NaN'],
    [-Infinity, '-Infinity'],
    [2n, 'the bigint 2n'],
    [true, 'true'],
    [null, 'null'],
    [undefined, 'undefined'],
    [Symbol('s'), 'a symbol'],
    [() => 1, 'a function'],
    [[], 'an array of 0 items'],
    [['a'], 'an array of 1 item'],
    [{ a: 1 }, 'an object'],
    [Object.create(null), 'an object'],
    [new Map(), 'a Map'],
    [Buffer.alloc(1), 'a Buffer'],
    [new Uint8Array(1), 'a Uint8Array'],
    [new Error('e'), 'an Error'],
  ]
  for (const [v, shown] of cases) assert.is(describe(v), shown, shown)
})

/**
 * A closed port: free a moment ago, nothing listening (the OS would have to
 * hand it to another process in between). Redis refuses nothing here: the
 * connection is refused, and the message says to where and which option.
 */
test('E_BUS_CONNECT and E_L2_UNAVAILABLE: a refused connection names the address, the option and why; cause is the original error', async () => {
  const port = await freePort()
  const at = `127.0.0.1:${port}`
  for (const redis of [`redis://${at}`, { host: '127.0.0.1', port }]) {
    const bus = await errorOf(createCache({ shards: 1, bus: { redis } }))
    assert.instance(bus, BusConnectError)
    assert.is(bus.code, 'E_BUS_CONNECT')
    assert.is(bus.message, `cannot connect the bus to Redis at ${at} (options.bus.redis): connection refused (ECONNREFUSED)`)
    assert.is((bus.cause as { code?: string }).code, 'ECONNREFUSED')
    assert.is((bus.cause as Error).message, `connect ECONNREFUSED ${at}`)
    const l2 = await errorOf(createCache({ shards: 1, l2: { redis, required: true } }))
    assert.instance(l2, L2Error)
    assert.is(l2.code, 'E_L2_UNAVAILABLE')
    assert.is(l2.message, `cannot connect the L2 tier to Redis at ${at} (options.l2.redis): connection refused (ECONNREFUSED)`)
    assert.is((l2.cause as { code?: string }).code, 'ECONNREFUSED')
  }
  // A Cluster by its startup nodes: ioredis asks them for the slots on connections whose errors it drops.
  const cluster = { cluster: [at] }
  const bus = await errorOf(createCache({ shards: 1, bus: { redis: cluster } }))
  assert.is(bus.message, `cannot connect the bus to the Redis Cluster at ${at} (options.bus.redis): no node of the cluster answered (the connection closed)`)
  assert.is((bus.cause as Error).name, 'ClusterAllFailedError')
  const l2 = await errorOf(createCache({ shards: 1, l2: { redis: cluster, required: true } }))
  assert.is(l2.message, `cannot connect the L2 tier to the Redis Cluster at ${at} (options.l2.redis): no node of the cluster answered (the connection closed)`)
})

test.run()
