/**
 * Atomic operations, executed in the key's shard: incr, cas, take, touch.
 * Exact results, bad input that changes nothing, and races between real
 * threads (attached workers) that only a single-writer shard can win cleanly.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import { errorOf, withCache } from '../fixtures/helpers.js'
import { ClientThread } from '../fixtures/client_thread.js'

test('incr creates at 0, adds, keeps a string a string and the entry\'s TTL, metadata and tags; a non-number is E_NOT_A_NUMBER and unchanged', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    assert.is(await cache.incr('n'), 1)
    assert.is(await cache.incr('n', 5), 6)
    assert.is(await cache.incr('n', -2.5), 3.5)
    assert.is(await cache.get('n'), 3.5)
    await cache.set('s', '41', { ttl: '1h', metadata: { m: 1 }, tags: ['t'] })
    assert.is(await cache.incr('s'), 42)
    assert.is(await cache.get('s'), '42')
    const e = await cache.getEntry('s')
    assert.equal(e!.metadata, { m: 1 })
    assert.ok(e!.ttlRemaining > 3_590_000 && e!.ttlRemaining <= 3_600_000, `ttl ${e!.ttlRemaining}`)
    assert.is(await cache.invalidateTag('t'), 1)
    await cache.set('obj', { n: 1 })
    await cache.set('word', 'forty')
    await cache.set('buf', Buffer.from('1'))
    for (const k of ['obj', 'word', 'buf']) {
      const err = await errorOf(cache.incr(k))
      assert.is(err.code, 'E_NOT_A_NUMBER', k)
    }
    assert.equal(await cache.get('obj'), { n: 1 })
    assert.is(await cache.get('word'), 'forty')
    const bad = await errorOf(cache.incr('n', Number.NaN))
    assert.is(bad.code, 'E_INVALID_OPTION')
    assert.match(bad.message, 'by')
    assert.is(await cache.get('n'), 3.5)
  })
})

test('cas swaps only on the expected value (by encoded bytes), and "undefined" means only if absent', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    assert.is(await cache.cas('k', undefined, { v: 1 }), true)
    assert.is(await cache.cas('k', undefined, { v: 2 }), false)
    assert.is(await cache.cas('k', { v: 9 }, { v: 2 }), false)
    assert.is(await cache.cas('k', { v: 1 }, { v: 2 }, { ttl: 1000 }), true)
    assert.equal(await cache.get('k'), { v: 2 })
    const ttl = (await cache.ttl('k'))!
    assert.ok(ttl > 0 && ttl <= 1000)
    // Same bytes, other type: a string "1" is not the number 1.
    await cache.set('n', 1)
    assert.is(await cache.cas('n', '1', 2), false)
    assert.is(await cache.cas('n', 1, 2), true)
    const e = await errorOf(cache.cas('n', 2, 3, { nx: true }))
    assert.is(e.code, 'E_INVALID_OPTION')
    assert.is(await cache.get('n'), 2)
  })
})

test('take returns the value and removes it; touch sets a new TTL and keeps the value', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    await cache.set('job', { id: 7 })
    assert.equal(await cache.take('job'), { id: 7 })
    assert.is(await cache.take('job'), undefined)
    assert.is(await cache.has('job'), false)
    await cache.set('t', 'v', { ttl: '1h' })
    assert.is(await cache.touch('t', 500), true)
    const ttl = (await cache.ttl('t'))!
    assert.ok(ttl > 0 && ttl <= 500, `ttl ${ttl}`)
    assert.is(await cache.get('t'), 'v')
    assert.is(await cache.touch('missing', 500), false)
    const e = await errorOf(cache.touch('t', -1))
    assert.is(e.code, 'E_INVALID_TTL')
    const s = await cache.stats()
    assert.is(s.deletes, 1)
  })
})

test('races between threads: incr loses no update, one cas and one take win', async () => {
  const cache = await createCache({ shards: 2 })
  const threads = [new ClientThread(), new ClientThread(), new ClientThread()]
  try {
    for (const t of threads) await t.attach(cache)
    await Promise.all([
      ...threads.map((t) => Promise.all(Array.from({ length: 300 }, () => t.call('incr', 'counter')))),
      Promise.all(Array.from({ length: 300 }, () => cache.incr('counter'))),
    ])
    assert.is(await cache.get('counter'), 1200)
    await cache.set('slot', 'free')
    const swaps = await Promise.all([...threads.map((t, i) => t.call<boolean>('cas', 'slot', 'free', `thread ${i}`)), cache.cas('slot', 'free', 'owner')])
    assert.is(swaps.filter(Boolean).length, 1)
    await cache.set('ticket', 'only one')
    const taken = await Promise.all([...threads.map((t) => t.call('take', 'ticket')), cache.take('ticket')])
    assert.equal(taken.filter((v) => v !== undefined), ['only one'])
  } finally {
    for (const t of threads) await t.worker.terminate()
    await cache.close()
  }
})

test.run()
