// Regressions of the public API, each with the behaviour a user relies on: keys that UTF-8 cannot
// hold are refused (they collided), region('default') is a handle bound to `default`, a scan of an
// unknown region fails when iteration starts, and getOrCompute counts one read per call.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache, CacheError, InvalidKeyError, InvalidOptionError, InvalidValueError, UnknownRegionError } from '../../src/index.js'
import type { Cache, CacheStats } from '../../src/index.js'
import { ClientThread } from '../fixtures/client_thread.js'

/** Keys and values of every region, keys sorted: what a rejected call must leave as it was. */
async function dump(cache: Cache): Promise<Record<string, [string, unknown][]>> {
  const out: Record<string, [string, unknown][]> = {}
  for (const name of cache.regionNames) {
    const r = cache.region(name)
    const keys = (await r.keys()).sort()
    const values = await r.mget(keys)
    out[name] = keys.map((k, i) => [k, values[i]])
  }
  return out
}

/** The error `p` rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<CacheError> {
  assert.instance(p, Promise, 'async methods return a promise, never throw synchronously')
  try {
    await p
  } catch (err) {
    assert.instance(err, CacheError)
    return err as CacheError
  }
  assert.unreachable('expected a rejection, but the promise resolved')
  throw new Error('unreachable')
}

/** The error `fn` throws synchronously. */
function thrown(fn: () => unknown): CacheError {
  try {
    fn()
  } catch (err) {
    assert.instance(err, CacheError)
    return err as CacheError
  }
  assert.unreachable('expected a throw')
  throw new Error('unreachable')
}

/** A lone high surrogate, a lone low one, one inside a key, a low before a high (a pair reversed). */
const LONE = ['\uD800', '\uDC00', 'user:\uDBFFx', '\uDFFF\uD800']

async function seeded(): Promise<Cache> {
  const cache = await createCache({ shards: 2, regions: { q: { maxEntries: 100 } } })
  // U+FFFD is an ordinary key: it is what the UTF-8 encoder made of every lone surrogate.
  await cache.set('\uFFFD', 'replacement char', { tags: ['t'] })
  await cache.set('a', 'alpha', { tags: ['t'] })
  await cache.set('n', 1)
  await cache.region('q').set('\uFFFD', 'q replacement', { tags: ['t'] })
  await cache.region('q').set('qa', { in: 'q' }, { tags: ['t'] })
  return cache
}

// ── keys and strings that UTF-8 cannot hold ────────────────────────────────

test('a key with a lone surrogate is refused with E_INVALID_KEY by every key API, on the cache and a region handle, and changes nothing', async () => {
  const cache = await seeded()
  try {
    const before = await dump(cache)
    for (const target of [cache, cache.region('q'), cache.region('default')]) {
      for (const k of LONE) {
        const calls: [string, () => Promise<unknown>][] = [
          ['get', () => target.get(k)],
          ['set', () => target.set(k, 'x')],
          ['has', () => target.has(k)],
          ['delete', () => target.delete(k)],
          ['ttl', () => target.ttl(k)],
          ['touch', () => target.touch(k, '1m')],
          ['getEntry', () => target.getEntry(k)],
          ['getOrCompute', () => target.getOrCompute(k, () => 'computed')],
          ['incr', () => target.incr(k)],
          ['cas', () => target.cas(k, undefined, 'x')],
          ['take', () => target.take(k)],
          ['mget', () => target.mget(['a', k])],
          ['mset', () => target.mset([['fresh', 1], [k, 2]])],
          ['mdelete', () => target.mdelete(['a', k])],
          ['mhas', () => target.mhas(['a', k])],
          ['keys', () => target.keys(`${k}*`)],
          ['deleteByPattern', () => target.deleteByPattern(`*${k}`)],
          ['scan', () => target.scan({ match: k }).next()],
          ['scanEntries', () => target.scanEntries({ match: k }).next()],
        ]
        for (const [name, call] of calls) {
          const e = await rejection(call())
          assert.instance(e, InvalidKeyError, `${name}(${JSON.stringify(k)})`)
          assert.is(e.code, 'E_INVALID_KEY', `${name}(${JSON.stringify(k)})`)
          assert.match(e.message, 'lone surrogate', `${name}(${JSON.stringify(k)})`)
        }
        const sync = thrown(() => target.getSync(k))
        assert.is(sync.code, 'E_INVALID_KEY')
        const [[err, result]] = (await target.batch().set(k, 'x').exec()) as [[CacheError | null, unknown]]
        assert.is(err?.code, 'E_INVALID_KEY')
        assert.is(result, undefined)
      }
      for (const tag of LONE) {
        const e = await rejection(target.invalidateTag(tag))
        assert.instance(e, InvalidOptionError)
        assert.match(e.message, 'lone surrogate')
        const s = await rejection(target.set('fresh', 1, { tags: ['ok', tag] }))
        assert.is(s.code, 'E_INVALID_OPTION')
        assert.match(s.message, /options\.tags\[1\] must be well-formed/)
      }
    }
    assert.equal(await dump(cache), before)
    // The collision the check prevents: these were all '\uFFFD' on the wire.
    assert.is(await cache.get('\uFFFD'), 'replacement char')
    assert.equal((await cache.keys()).sort(), ['a', 'n', '\uFFFD'])
  } finally {
    await cache.close()
  }
})

test('the cache-wide invalidateTag refuses a lone-surrogate tag, and well-formed astral keys, tags and values are kept exactly', async () => {
  const cache = await seeded()
  try {
    const before = await dump(cache)
    const e = await rejection(cache.invalidateTag('\uD83D'))
    assert.is(e.code, 'E_INVALID_OPTION')
    assert.equal(await dump(cache), before)
    // A whole pair is well-formed: accepted, stored and read back exactly, by direct read and by the shard.
    assert.is(await cache.set('emoji:😀', 'smile 😀', { tags: ['😀'] }), true)
    assert.is(await cache.get('emoji:😀'), 'smile 😀')
    assert.is(cache.getSync('emoji:😀'), 'smile 😀')
    assert.equal(await cache.keys('emoji:*'), ['emoji:😀'])
    assert.is(await cache.invalidateTag('😀'), 1)
    assert.is(await cache.has('emoji:😀'), false)
  } finally {
    await cache.close()
  }
})

test('a string value with a lone surrogate is refused with E_INVALID_VALUE naming it (UTF-8 would change it); inside a JSON value it round-trips exactly', async () => {
  const cache = await seeded()
  try {
    const before = await dump(cache)
    const set = await rejection(cache.set('k', 'ab\uD800'))
    assert.instance(set, InvalidValueError)
    assert.match(set.message, /^value is a string with a lone surrogate at index 2/)
    const mset = await rejection(cache.mset([['k1', 'fine'], ['k2', '\uDC00']]))
    assert.is(mset.code, 'E_INVALID_VALUE')
    assert.match(mset.message, /^entries\[1\]: value is a string with a lone surrogate at index 0/)
    assert.is((await rejection(cache.cas('a', 'alpha', 'x\uDFFF'))).code, 'E_INVALID_VALUE')
    assert.is((await rejection(cache.region('q').set('k', '\uD800'))).code, 'E_INVALID_VALUE')
    // A loader's result is checked the same way: the caller gets the error, nothing is cached.
    assert.is((await rejection(cache.getOrCompute('loaded', () => 'z\uD800'))).code, 'E_INVALID_VALUE')
    assert.equal(await dump(cache), before)
    // The JSON codec escapes lone surrogates (\ud800): such a value comes back as it was.
    const odd = { s: 'a\uD800b', list: ['\uDC00'] }
    assert.is(await cache.set('json', odd), true)
    const back = (await cache.get('json')) as typeof odd
    assert.equal(back, odd)
    assert.is(back.s.charCodeAt(1), 0xd800)
    assert.is(back.list[0]!.charCodeAt(0), 0xdc00)
  } finally {
    await cache.close()
  }
})

test('an attached thread refuses lone-surrogate keys and values too, and changes nothing', async () => {
  const cache = await seeded()
  const t = new ClientThread()
  try {
    await t.attach(cache)
    const before = await dump(cache)
    for (const k of LONE) {
      const calls = [() => t.call('set', k, 'x'), () => t.call('get', k), () => t.callIn('q', 'delete', k), () => t.call('mset', [['ok', 1], [k, 2]]), () => t.call('getOrCompute', k, null)]
      for (const call of calls) {
        const e = await ClientThread.errorOf(call())
        assert.ok(e !== 'resolved', `${String(call)} with ${JSON.stringify(k)} resolved`)
        assert.is(e.code, 'E_INVALID_KEY')
      }
    }
    const v = await ClientThread.errorOf(t.call('set', 'k', '\uD800'))
    assert.ok(v !== 'resolved')
    assert.is(v.code, 'E_INVALID_VALUE')
    assert.equal(await dump(cache), before)
  } finally {
    await t.close()
    await t.worker.terminate()
    await cache.close()
  }
})

// ── region('default') ───────────────────────────────────────────────────────

test("region('default') is a handle bound to the default region: its invalidateTag and scan stay in it", async () => {
  const cache = await seeded()
  try {
    const d = cache.region('default')
    assert.is.not(d, cache as unknown)
    assert.is(d.regionName, 'default')
    assert.is(cache.region('default'), d, 'the same handle every time')
    // Only default's tagged entries: '\uFFFD' and 'a'; q's stay.
    assert.is(await d.invalidateTag('t'), 2)
    assert.equal(await dump(cache), {
      default: [['n', 1]],
      q: [
        ['qa', { in: 'q' }],
        ['\uFFFD', 'q replacement'],
      ],
    })
    // A region handle scans its own region: `region` is the cache's option.
    const scanned: string[] = []
    for await (const k of d.scan({ region: 'q' })) scanned.push(k)
    assert.equal(scanned, ['n'])
    const entries: [string, unknown][] = []
    for await (const e of d.scanEntries({ region: 'q' })) entries.push(e)
    assert.equal(entries, [['n', 1]])
    // The cache itself still spans every region.
    assert.is(await cache.invalidateTag('t'), 2)
    assert.equal(await dump(cache), { default: [['n', 1]], q: [] })
  } finally {
    await cache.close()
  }
})

// ── iterators fail on their first next() ────────────────────────────────────

test('scan and scanEntries of an unknown region, or with bad options, throw when iteration starts, not when called', async () => {
  const cache = await seeded()
  try {
    const before = await dump(cache)
    const bad: [string, () => AsyncGenerator<unknown, void>, new (...a: never[]) => CacheError, RegExp][] = [
      ['scan unknown region', () => cache.scan({ region: 'nope' }), UnknownRegionError, /region "nope" is not configured \(regions: default, q\)/],
      ['scanEntries unknown region', () => cache.scanEntries({ region: 'nope' }), UnknownRegionError, /region "nope" is not configured/],
      ['scan bad count', () => cache.scan({ count: 0 }), InvalidOptionError, /options\.count must be an integer/],
      ['scan empty glob', () => cache.scan({ match: '' }), InvalidKeyError, /^options\.match must be a non-empty string \(got an empty string\)$/],
      ['scan not an object', () => cache.scan(null as never), InvalidOptionError, /options must be an object/],
      ['scanEntries bad count', () => cache.scanEntries({ count: 1.5 }), InvalidOptionError, /options\.count/],
      ['region scan bad count', () => cache.region('q').scan({ count: -1 }), InvalidOptionError, /options\.count/],
    ]
    for (const [name, start, cls, message] of bad) {
      let it: AsyncGenerator<unknown, void> | undefined
      try {
        it = start()
      } catch (err) {
        assert.unreachable(`${name} threw synchronously: ${(err as Error).message}`)
      }
      const e = await rejection(it!.next())
      assert.instance(e, cls, name)
      assert.match(e.message, message, name)
      // A generator that threw is done.
      assert.equal(await it!.next(), { value: undefined, done: true }, name)
    }
    assert.equal(await dump(cache), before)
    // And a good one still scans the region it names.
    const keys: string[] = []
    for await (const k of cache.scan({ region: 'q' })) keys.push(k)
    assert.equal(keys.sort(), ['qa', '\uFFFD'])
  } finally {
    await cache.close()
  }
})

// ── getOrCompute counts one read per call ───────────────────────────────────

const counters = (s: CacheStats): Record<string, number> => ({ hits: s.hits, misses: s.misses, staleServed: s.staleServed, sets: s.sets })

/** Polls until `key` has a fresh entry again (has() is not a read: it counts nothing). */
async function refreshed(cache: Cache, key: string): Promise<void> {
  while (!(await cache.has(key))) await new Promise((r) => setTimeout(r, 5))
}

test('getOrCompute on the owner: one miss per miss, one hit per hit, one stale serve per stale serve, and the figures agree', async () => {
  const cache = await createCache({ shards: 2 })
  try {
    assert.is(await cache.getOrCompute('k', () => 'v1'), 'v1')
    assert.equal(counters(await cache.stats()), { hits: 0, misses: 1, staleServed: 0, sets: 1 })
    assert.is(await cache.getOrCompute('k', () => 'unused'), 'v1')
    const s = await cache.stats()
    assert.equal(counters(s), { hits: 1, misses: 1, staleServed: 0, sets: 1 })
    assert.is(s.hitRate, 0.5)
    assert.match(await cache.metrics(), /^shardcache_misses_total\{region="default"\} 1$/m)
    // Concurrent misses of one key: one flight, one loader run, and every caller's read counted once.
    await cache.resetStats()
    const all = await Promise.all(Array.from({ length: 5 }, () => cache.getOrCompute('m', () => 'once')))
    assert.equal(all, ['once', 'once', 'once', 'once', 'once'])
    assert.equal(counters(await cache.stats()), { hits: 0, misses: 5, staleServed: 0, sets: 1 })

    // Past its fresh time, within grace: served stale (counted as such), refreshed behind it.
    await cache.resetStats()
    assert.is(await cache.getOrCompute('g', () => 'old', { ttl: 30, grace: '10m' }), 'old')
    // A lower bound only: the entry is past its fresh time once 30 ms have passed.
    await new Promise((r) => setTimeout(r, 60))
    assert.is(await cache.getOrCompute('g', () => 'new', { ttl: '10m', grace: '10m' }), 'old')
    await refreshed(cache, 'g')
    assert.equal(counters(await cache.stats()), { hits: 0, misses: 1, staleServed: 1, sets: 2 })
    assert.is(await cache.getOrCompute('g', () => 'unused'), 'new')
    assert.equal(counters(await cache.stats()), { hits: 1, misses: 1, staleServed: 1, sets: 2 })
  } finally {
    await cache.close()
  }
})

test('getOrCompute on an attached thread counts the same', async () => {
  const cache = await createCache({ shards: 2 })
  const t = new ClientThread()
  try {
    await t.attach(cache)
    const counter = new SharedArrayBuffer(4)
    const run = (key: string, value: unknown, options?: Record<string, unknown>) => t.compute({ key, calls: 1, counter, delayMs: 0, value, options })
    assert.equal(await run('k', 'v1'), [{ value: 'v1' }])
    assert.equal(counters(await cache.stats()), { hits: 0, misses: 1, staleServed: 0, sets: 1 })
    assert.equal(await run('k', 'unused'), [{ value: 'v1' }])
    assert.equal(counters(await cache.stats()), { hits: 1, misses: 1, staleServed: 0, sets: 1 })
    assert.is(new Int32Array(counter)[0], 1, 'the loader ran once')

    await cache.resetStats()
    assert.equal(await run('g', 'old', { ttl: 30, grace: '10m' }), [{ value: 'old' }])
    await new Promise((r) => setTimeout(r, 60))
    assert.equal(await run('g', 'new', { ttl: '10m', grace: '10m' }), [{ value: 'old' }])
    await refreshed(cache, 'g')
    assert.equal(counters(await cache.stats()), { hits: 0, misses: 1, staleServed: 1, sets: 2 })
    assert.is(await cache.get('g'), 'new')
  } finally {
    await t.close()
    await t.worker.terminate()
    await cache.close()
  }
})

/**
 * 700 bytes, one shard: b (65 bytes: key, empty value, the fixed 64) and a with one tag
 * (65 + 2 + 128 for the tag link) leave 440; c with three tags needs 65 + 3 x 130 = 455,
 * so `write` (a set or an inserting cas of c) evicts b, the least recently used. The get
 * is issued after it, in the same tick.
 */
async function getAfterTaggedInsert(write: (cache: Cache) => Promise<boolean>): Promise<void> {
  const cache = await createCache({ shards: 1, regions: { default: { policy: 'lru', maxBytes: 700, compression: false } } })
  try {
    await cache.set('b', '')
    await cache.set('a', '', { tags: ['t1'] })
    const [stored, got] = await Promise.all([write(cache), cache.get('b')])
    // Before: the get read shared memory ahead of the write (its bound left out the tag links): ''.
    assert.is(stored, true)
    assert.is(got, undefined)
    assert.equal((await cache.keys()).sort(), ['a', 'c'])
  } finally {
    await cache.close()
  }
}

test('a get issued after a tagged set that evicts its key does not return the evicted value (the tags\' charge counts in the set\'s growth bound)', async () => {
  await getAfterTaggedInsert((cache) => cache.set('c', '', { tags: ['t1', 't2', 't3'] }))
})

// Found by the model test (profile "1 shard, exact eviction": a batch of a cas with two tags, then gets).
test('a get issued after a tagged cas that evicts its key does not return the evicted value (the cas\'s growth bound counts its tags too)', async () => {
  await getAfterTaggedInsert((cache) => cache.cas('c', undefined, '', { tags: ['t1', 't2', 't3'] }))
})

test.run()
