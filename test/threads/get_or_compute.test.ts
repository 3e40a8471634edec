/**
 * getOrCompute: single flight per key on a thread and across attached
 * threads (real worker threads), rejections shared and not cached, timeouts,
 * a leader thread that goes away, loaders in a real piscina pool, and bad
 * input that changes nothing.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCache } from '../../src/index.js'
import type { Cache } from '../../src/index.js'
import { errorOf, withCache } from '../fixtures/helpers.js'
import { ClientThread } from '../fixtures/client_thread.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

test('10,000 concurrent calls on a missing key run the loader once; all get the same value, and it is cached', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    let calls = 0
    const loader = async () => {
      calls++
      await sleep(20)
      return { id: 123, name: 'Alice' }
    }
    const results = await Promise.all(Array.from({ length: 10_000 }, () => cache.getOrCompute('user:123', loader, { ttl: '10m' })))
    assert.is(calls, 1)
    assert.ok(results.every((r) => r === results[0]), 'every caller on this thread gets the same object')
    assert.equal(results[0], { id: 123, name: 'Alice' })
    assert.equal(await cache.get('user:123'), { id: 123, name: 'Alice' })
    const ttl = (await cache.ttl('user:123'))!
    assert.ok(ttl > 599_000 && ttl <= 600_000, `ttl ${ttl}`)
    // A hit does not call the loader.
    assert.equal(await cache.getOrCompute('user:123', loader), { id: 123, name: 'Alice' })
    assert.is(calls, 1)
  })
})

test('a rejection reaches every caller once, is not cached, and the next call runs the loader again', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    let calls = 0
    const boom = new Error('db down')
    const failing = async () => {
      calls++
      await sleep(10)
      throw boom
    }
    const settled = await Promise.allSettled(Array.from({ length: 100 }, () => cache.getOrCompute('k', failing)))
    assert.is(calls, 1)
    assert.ok(settled.every((r) => r.status === 'rejected' && r.reason === boom), 'the loader\'s own error, for every caller')
    assert.is(await cache.has('k'), false)
    assert.is(await cache.getOrCompute('k', async () => 'ok'), 'ok')
    assert.is(await cache.get('k'), 'ok')
  })
})

test('a loader past its timeout rejects every caller with E_LOAD_TIMEOUT and caches nothing, not even its late result', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    let release!: (v: string) => void
    const slow = () => new Promise<string>((r) => (release = r))
    const settled = await Promise.allSettled(Array.from({ length: 10 }, () => cache.getOrCompute('slow', slow, { timeout: 50 })))
    for (const r of settled) {
      assert.is(r.status, 'rejected')
      assert.is((r as PromiseRejectedResult).reason.code, 'E_LOAD_TIMEOUT')
      assert.match((r as PromiseRejectedResult).reason.message, 'options.timeout (50 ms)')
    }
    release('late')
    await sleep(20)
    assert.is(await cache.get('slow'), undefined)
  })
})

test('undefined from a loader is E_INVALID_VALUE (nothing cached); null is cached', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    const e = await errorOf(cache.getOrCompute('u', () => undefined))
    assert.is(e.code, 'E_INVALID_VALUE')
    assert.match(e.message, 'return null')
    assert.is(await cache.has('u'), false)
    assert.is(await cache.getOrCompute('n', () => null), null)
    assert.is(await cache.has('n'), true)
  })
})

test('bad input rejects with a typed error naming the argument and changes nothing', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    await cache.set('k', 'v')
    const cases: [Promise<unknown>, string, string][] = [
      [cache.getOrCompute('', () => 1), 'E_INVALID_KEY', 'key'],
      [cache.getOrCompute('x', 42 as never), 'E_INVALID_OPTION', 'loader'],
      [cache.getOrCompute('x', { task: 'square' }), 'E_INVALID_OPTION', 'loaders: { pool'],
      [cache.getOrCompute('x', () => 1, { timeout: -1 }), 'E_INVALID_OPTION', 'options.timeout'],
      [cache.getOrCompute('x', () => 1, { ttl: 'soon' }), 'E_INVALID_TTL', 'options.ttl'],
      [cache.getOrCompute('x', () => 1, { grace: 'soon' }), 'E_INVALID_OPTION', 'options.grace'],
      [cache.getOrCompute('x', () => 1, { retries: 3 } as never), 'E_INVALID_OPTION', 'options.retries'],
    ]
    for (const [p, code, name] of cases) {
      const e = await errorOf(p)
      assert.is(e.code, code, e.message)
      assert.match(e.message, name)
    }
    assert.equal(await cache.keys(), ['k'])
  })
  const e = await errorOf(createCache({ loaders: { pool: { filename: '/nonexistent/loaders.js' } } }))
  assert.is(e.code, 'E_INVALID_OPTION')
  assert.match(e.message, 'options.loaders.pool.filename')
})

test('across threads: the owner and two attached threads missing one key run one loader; every caller gets its value', async () => {
  const cache = await createCache({ shards: 2 })
  const threads = [new ClientThread(), new ClientThread()]
  try {
    for (const t of threads) await t.attach(cache)
    const counter = new SharedArrayBuffer(4)
    const runs = new Int32Array(counter)
    const value = { shared: [1, 2, 3] }
    const local = async () => {
      Atomics.add(runs, 0, 1)
      await sleep(100)
      return value
    }
    const [mine, ...theirs] = await Promise.all([
      Promise.all(Array.from({ length: 50 }, () => cache.getOrCompute('hot', local))),
      ...threads.map((t) => t.compute({ key: 'hot', calls: 50, counter, delayMs: 100, value })),
    ])
    assert.is(Atomics.load(runs, 0), 1)
    for (const v of mine!) assert.equal(v, value)
    for (const list of theirs) for (const r of list) assert.equal(r, { value })
    // Failures are shared across threads too, with the loader's message (E_LOADER elsewhere).
    const failed = await Promise.all(threads.map((t) => t.compute({ key: 'cold', calls: 20, counter, delayMs: 100, error: 'upstream 503' })))
    assert.is(Atomics.load(runs, 0), 2)
    const errors = failed.flat().map((r) => ('error' in r ? r.error : undefined))
    assert.is(errors.length, 40)
    assert.ok(errors.every((e) => e !== undefined && e.message === 'upstream 503'))
    // One thread ran the loader (its callers get the Error itself), the other waited (E_LOADER).
    assert.equal(errors.map((e) => e!.code ?? 'own').sort().filter((c, i, a) => a.indexOf(c) === i), ['E_LOADER', 'own'])
    assert.is(await cache.has('cold'), false)
  } finally {
    for (const t of threads) await t.worker.terminate()
    await cache.close()
  }
})

test('when the thread running a loader exits, the threads waiting on it reject with E_LOAD_ABORTED; the next call leads again', async () => {
  const cache = await createCache({ shards: 1 })
  const leader = new ClientThread()
  try {
    await leader.attach(cache)
    const counter = new SharedArrayBuffer(4)
    void leader.compute({ key: 'k', calls: 1, counter, delayMs: 10_000, value: 'never' }).catch(() => {})
    while (Atomics.load(new Int32Array(counter), 0) === 0) await sleep(5)
    const waiting = errorOf(cache.getOrCompute('k', () => 'mine'))
    await sleep(20)
    await leader.worker.terminate()
    const e = await waiting
    assert.is(e.code, 'E_LOAD_ABORTED')
    assert.is(await cache.getOrCompute('k', () => 'mine'), 'mine')
  } finally {
    await leader.worker.terminate()
    await cache.close()
  }
})

test('loaders in the piscina pool: the named export runs off the calling thread, once per flight, and its result is cached', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shardcache-loaders-'))
  const file = join(dir, 'loaders.mjs')
  writeFileSync(
    file,
    [
      "import { threadId } from 'node:worker_threads'",
      'export function profile(id, size) { return { id, size, thread: threadId } }',
      "export function fails() { throw new RangeError('no such profile') }",
    ].join('\n'),
  )
  const cache: Cache = await createCache({ shards: 1, loaders: { pool: { filename: file, maxThreads: 1 } } })
  try {
    const results = await Promise.all(Array.from({ length: 100 }, () => cache.getOrCompute<{ id: number; size: string; thread: number }>('p:7', { task: 'profile', args: [7, 'large'] })))
    assert.ok(results.every((r) => r === results[0]))
    assert.is(results[0]!.id, 7)
    assert.is(results[0]!.size, 'large')
    assert.ok(results[0]!.thread !== 0, 'it ran in a pool thread, not the main thread')
    assert.equal(await cache.get('p:7'), results[0])
    const e = await errorOf(cache.getOrCompute('p:8', { task: 'fails' }))
    assert.is(e.name, 'RangeError')
    assert.is(e.message, 'no such profile')
    const missing = await errorOf(cache.getOrCompute('p:9', { task: 'nope' }))
    assert.match(missing.message, 'no exported function named "nope"')
    assert.is(await cache.has('p:8'), false)
  } finally {
    await cache.close()
  }
})

test.run()
