/**
 * getOrCompute's `grace`: past its ttl an entry is served stale (to
 * getOrCompute only) while one background refresh runs; a failed or timed-out
 * refresh keeps the stale value until grace ends; `get`, `has`, `ttl` and
 * `keys` never see a stale entry; a tag invalidation removes it for good.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { withCache } from '../fixtures/helpers.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const TTL = 100

/** Polls `ok` every 5 ms, for up to 2 s: background refreshes start a few awaits after the stale answer. */
async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (ok()) return
    await sleep(5)
  }
  throw new Error(`timed out waiting for ${what}`)
}

test('a stale value is served at once while one background refresh replaces it; get never sees it', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    let calls = 0
    let release: (() => void) | undefined
    const loader = async () => {
      calls++
      if (calls > 1) await new Promise<void>((r) => (release = r))
      return `v${calls}`
    }
    assert.is(await cache.getOrCompute('k', loader, { ttl: TTL, grace: '1m' }), 'v1')
    assert.is(await cache.getOrCompute('k', loader, { ttl: TTL, grace: '1m' }), 'v1')
    await sleep(TTL + 30)
    // Stale now: plain reads see nothing.
    assert.is(await cache.get('k'), undefined)
    assert.is(await cache.has('k'), false)
    assert.is(await cache.ttl('k'), undefined)
    assert.equal(await cache.keys(), [])
    // getOrCompute answers with the stale value at once, 50 times, and runs one refresh.
    const stale = await Promise.all(Array.from({ length: 50 }, () => cache.getOrCompute('k', loader, { ttl: TTL, grace: '1m' })))
    assert.ok(stale.every((v) => v === 'v1'))
    await until(() => release !== undefined, 'the refresh')
    assert.is(calls, 2)
    assert.is((await cache.stats()).staleServed, 50)
    release!()
    await sleep(20)
    assert.is(await cache.get('k'), 'v2')
    assert.is(await cache.getOrCompute('k', loader, { ttl: TTL, grace: '1m' }), 'v2')
    assert.is(calls, 2)
    const ttl = (await cache.ttl('k'))!
    assert.ok(ttl > 0 && ttl <= TTL, `ttl reports the fresh time left, not grace: ${ttl}`)
  })
})

test('a failing or timed-out refresh keeps the stale value until grace ends; then the loader\'s error reaches the caller', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    let calls = 0
    let mode: 'ok' | 'fail' | 'hang' = 'ok'
    const loader = async () => {
      calls++
      if (mode === 'fail') throw new Error('upstream down')
      if (mode === 'hang') return new Promise<string>(() => {})
      return 'good'
    }
    const opts = { ttl: TTL, grace: 400, timeout: 50 }
    assert.is(await cache.getOrCompute('k', loader, opts), 'good')
    await sleep(TTL + 20)
    mode = 'fail'
    assert.is(await cache.getOrCompute('k', loader, opts), 'good')
    await sleep(20) // the refresh failed
    mode = 'hang'
    assert.is(await cache.getOrCompute('k', loader, opts), 'good')
    await sleep(80) // past the refresh's timeout
    assert.is(await cache.getOrCompute('k', loader, opts), 'good')
    await until(() => calls === 4, 'the third refresh')
    await sleep(20)
    assert.is(calls, 4)
    assert.is((await cache.stats()).staleServed, 3)
    await sleep(400) // grace is over: a miss
    mode = 'fail'
    try {
      await cache.getOrCompute('k', loader, opts)
      assert.unreachable('the loader fails and nothing stale is left')
    } catch (err) {
      assert.is((err as Error).message, 'upstream down')
    }
  })
})

test('an entry invalidated by tag is never served again, not even as a stale value within grace', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    let calls = 0
    const loader = async () => `v${++calls}`
    const opts = { ttl: TTL, grace: '1m', tags: ['product:1'] }
    assert.is(await cache.getOrCompute('p', loader, opts), 'v1')
    await sleep(TTL + 20)
    assert.is(await cache.invalidateTag('product:1'), 1)
    assert.is(await cache.getOrCompute('p', loader, opts), 'v2')
    assert.is((await cache.stats()).staleServed, 0)
  })
})

test.run()
