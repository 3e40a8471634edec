// One cache for every thread: attached worker threads (plain and piscina)
// use the owner's shards directly, see each other's writes, and leave nothing
// behind when they exit; the owner's close reaches them as E_CLOSED.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Piscina } from 'piscina'
import { attachCache, createCache } from '../../src/index.js'
import type { CacheHandle } from '../../src/index.js'
import { withCache } from '../fixtures/helpers.js'
import { ClientThread } from '../fixtures/client_thread.js'
import type { CacheTask } from '../fixtures/piscina_task.js'

/** Polls `check` until it holds or `ms` pass; returns its last answer. */
async function eventually(check: () => Promise<boolean>, ms = 2000): Promise<boolean> {
  const until = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > until) return false
    await new Promise((r) => setTimeout(r, 10))
  }
}

test('read-your-writes across threads: a piscina task sees the main thread’s writes, and the main thread sees the task’s', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const pool = new Piscina({ filename: new URL('../fixtures/piscina_task.js', import.meta.url).href, minThreads: 2, maxThreads: 2 })
    try {
      const threads = new Set<number>()
      const run = async (t: Omit<CacheTask, 'handle'>): Promise<unknown> => {
        const handle = cache.handle()
        const [thread, result] = (await pool.run({ ...t, handle }, { transferList: handle.transfer })) as [number, unknown]
        threads.add(thread)
        return result
      }
      for (let i = 0; i < 20; i++) {
        await cache.set(`main:${i}`, { from: 'main', i })
        assert.equal(await run({ op: 'get', key: `main:${i}` }), { from: 'main', i })
        assert.is(await run({ op: 'set', key: `task:${i}`, value: `v${i}` }), true)
        assert.is(await cache.get(`task:${i}`), `v${i}`)
        assert.is(cache.getSync(`task:${i}`), `v${i}`)
        // Overwrites, both ways.
        await cache.set(`task:${i}`, `w${i}`)
        assert.is(await run({ op: 'getSync', key: `task:${i}` }), `w${i}`)
      }
      // Every pool thread that ran a task attached once, however many handles it received.
      assert.is((await cache.stats()).attachedThreads, threads.size)
      assert.ok(threads.size >= 1)
    } finally {
      await pool.destroy()
    }
  })
})

test('an attached thread has the whole API, regions included, and its stats are the owner’s', async () => {
  await withCache({ shards: 2, regions: { s: { policy: 'fifo', maxEntries: 100 } } }, async (cache) => {
    const t = new ClientThread()
    try {
      await t.attach(cache)
      assert.is(await t.call('mset', [['a', 1], ['b', 'two'], ['c', null]]), 3)
      assert.equal(await cache.mget(['a', 'b', 'c', 'd']), [1, 'two', null, undefined])
      assert.is(await t.callIn('s', 'set', 'x', 'in s'), true)
      assert.is(await cache.region('s').get('x'), 'in s')
      assert.is(await cache.get('x'), undefined)
      assert.equal((await t.call<string[]>('keys')).sort(), ['a', 'b', 'c'])
      assert.is(await t.call('deleteByPattern', '[ab]'), 2)
      assert.equal(await cache.mhas(['a', 'b', 'c']), [false, false, true])
      const theirs = await t.call<{ sets: number; entries: number; attachedThreads: number }>('stats')
      const ours = await cache.stats()
      assert.is(theirs.sets, 4)
      assert.is(theirs.entries, 2)
      assert.is(theirs.sets, ours.sets)
      assert.is(theirs.attachedThreads, 1)
    } finally {
      await t.worker.terminate()
    }
  })
})

test('an attached thread that exits leaves nothing in the shards; its hits stay counted', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    await cache.mset([['h1', 1], ['h2', 2]])
    const t = new ClientThread()
    await t.attach(cache)
    assert.equal(await t.call('mget', ['h1', 'h2', 'nope']), [1, 2, undefined])
    assert.is((await cache.stats()).attachedThreads, 1)
    await t.worker.terminate()
    assert.ok(await eventually(async () => (await cache.stats()).attachedThreads === 0), 'both shards dropped the exited thread')
    const s = await cache.stats()
    assert.is(s.hits, 2)
    assert.is(s.misses, 1)
  })
})

test('a thread that detaches with close() leaves the cache working for everyone else', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const t = new ClientThread()
    try {
      await t.attach(cache)
      await t.call('set', 'k', 1)
      await t.close()
      const err = await ClientThread.errorOf(t.call('get', 'k'))
      assert.is(err !== 'resolved' && err.code, 'E_CLOSED')
      assert.is(await cache.get('k'), 1)
      assert.ok(await eventually(async () => (await cache.stats()).attachedThreads === 0))
    } finally {
      await t.worker.terminate()
    }
  })
})

test('when the owner closes, attached threads reject with E_CLOSED, and their in-flight ops settle', async () => {
  const cache = await createCache({ shards: 2 })
  const t = new ClientThread()
  try {
    await t.attach(cache)
    await t.call('set', 'k', 'v')
    const inflight = ClientThread.errorOf(t.call('mset', Array.from({ length: 2000 }, (_, i) => [`m${i}`, i])))
    await cache.close()
    // Settled one way or the other: never left hanging.
    const settled = await inflight
    assert.ok(settled === 'resolved' || settled.code === 'E_CLOSED', `in-flight mset settled (${JSON.stringify(settled)})`)
    const calls = [t.call('get', 'k'), t.call('set', 'k', 2), t.call('stats'), t.call('getSync', 'k')].map((c) => ClientThread.errorOf(c))
    for (const err of await Promise.all(calls)) assert.is(err !== 'resolved' && err.code, 'E_CLOSED')
  } finally {
    await t.worker.terminate()
  }
})

test('after a shard crash an attached thread reconnects to the new shard thread', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const t = new ClientThread()
    try {
      await t.attach(cache)
      const keys = Array.from({ length: 40 }, (_, i) => `c${i}`)
      const on0 = keys.filter((k) => cache.shardOfForTest(k) === 0)
      const on1 = keys.filter((k) => cache.shardOfForTest(k) === 1)
      await t.call('mset', keys.map((k) => [k, k]))
      await cache.crashShardForTest(0).catch(() => undefined)
      // Shard 0 restarted empty; shard 1 kept its data. The attached thread gets a new port on its own.
      assert.ok(await eventually(async () => (await t.call<boolean>('set', on0[0]!, 'again').catch(() => false)) === true))
      assert.is(await t.call('get', on0[0]!), 'again')
      assert.is(await cache.get(on0[0]!), 'again')
      assert.is(await t.call('get', on0[1]!), undefined)
      assert.is(await t.call('get', on1[0]!), on1[0])
      assert.is((await cache.stats()).shardRestarts, 1)
    } finally {
      await t.worker.terminate()
    }
  })
})

test('attachCache rejects what is not a handle, and a custom codec it was not given', async () => {
  for (const bad of [undefined, null, {}, { kind: 'shardcache.handle', version: 99 }]) {
    const err = await attachCache(bad as unknown as CacheHandle).catch((e: Error & { code?: string }) => e)
    assert.instance(err, Error)
    assert.is((err as { code?: string }).code, 'E_INVALID_OPTION')
  }
  const codec = { encode: (v: unknown) => JSON.stringify(v), decode: (b: Uint8Array) => JSON.parse(Buffer.from(b).toString()) as unknown }
  await withCache({ shards: 1, codec }, async (cache) => {
    const t = new ClientThread()
    try {
      const err = await ClientThread.errorOf(t.attach(cache))
      assert.is(err !== 'resolved' && err.code, 'E_INVALID_OPTION')
      assert.match(err !== 'resolved' ? err.message : '', 'options.codec')
      // Nothing attached, nothing changed.
      assert.is((await cache.stats()).attachedThreads, 0)
    } finally {
      await t.worker.terminate()
    }
  })
})

test('handle() is the owner’s: an attached client cannot make one', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    const t = new ClientThread()
    try {
      await t.attach(cache)
      const err = await ClientThread.errorOf(t.call('handle'))
      assert.is(err !== 'resolved' && err.code, 'E_INVALID_OPTION')
    } finally {
      await t.worker.terminate()
    }
  })
})

test.run()
