/**
 * Threshold alerts: a region's memory use and eviction rate fire an `'alert'`
 * once when they reach their threshold and resolve once when they fall back,
 * for that region only; bad options are refused with the option named.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { AlertEvent, Cache, CacheOptions } from '../../src/index.js'
import { errorOf } from '../fixtures/helpers.js'

const open: Cache[] = []
async function cache(options: CacheOptions): Promise<Cache> {
  const c = await createCache({ shards: 2, ...options })
  open.push(c)
  return c
}
test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
})

/** Collects `c`'s alerts; `next(n)` resolves once `n` have come in all. */
function alerts(c: Cache): { got: AlertEvent[]; next(n: number): Promise<AlertEvent[]> } {
  const got: AlertEvent[] = []
  const waiters: { n: number; resolve: () => void }[] = []
  c.on('alert', (e) => {
    got.push(e)
    for (const w of waiters.splice(0)) {
      if (got.length >= w.n) w.resolve()
      else waiters.push(w)
    }
  })
  return {
    got,
    next: (n) =>
      new Promise((resolve) => {
        // The checks' timer is unref'd: this wait keeps the process alive.
        const alive = setInterval(() => {}, 1000)
        const done = (): void => {
          clearInterval(alive)
          resolve(got.slice(0, n))
        }
        if (got.length >= n) done()
        else waiters.push({ n, resolve: done })
      }),
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('memoryUse fires once when a region reaches the share of its budget, and resolves once when it falls below', async () => {
  const c = await cache({ regions: { default: { maxEntries: 1000 }, other: { maxEntries: 1000 } }, alerts: { memoryUse: 0.5, intervalMs: 50 } })
  const a = alerts(c)
  await c.region('other').set('one', 1)
  await c.mset(Array.from({ length: 600 }, (_, i) => [`k:${i}`, i] as [string, number]))
  const [firing] = await a.next(1)
  // A check may land between the shards' parts of the mset: at or above the threshold, at most all of it.
  assert.equal({ ...firing!, value: undefined }, { kind: 'memoryUse', region: 'default', value: undefined, threshold: 0.5, state: 'firing' })
  assert.ok(firing!.value >= 0.5 && firing!.value <= 0.6, `${firing!.value}`)
  assert.is((await c.stats()).byRegion.default!.utilization, 0.6)
  // Still above for several checks: no second event.
  await sleep(300)
  assert.is(a.got.length, 1)
  for (let i = 0; i < 300; i++) await c.delete(`k:${i}`)
  const [, resolved] = await a.next(2)
  // Checked at some point of the deletes, below the threshold.
  assert.equal({ ...resolved!, value: undefined }, { kind: 'memoryUse', region: 'default', value: undefined, threshold: 0.5, state: 'resolved' })
  assert.ok(resolved!.value < 0.5 && resolved!.value >= 0.3, `${resolved!.value}`)
  await sleep(300)
  assert.is(a.got.length, 2)
  assert.is((await c.stats()).byRegion.default!.utilization, 0.3)
})

test('evictionsPerSecond fires while a region evicts faster than the limit, and resolves when it stops', async () => {
  const c = await cache({ regions: { default: { maxEntries: 100, policy: 'lru' } }, alerts: { evictionsPerSecond: 50, intervalMs: 100 } })
  const a = alerts(c)
  // Far more distinct keys than the region holds, written until the alert fires.
  let i = 0
  const writing = (async () => {
    while (a.got.length === 0) {
      await c.mset(Array.from({ length: 500 }, () => [`k:${i++}`, i] as [string, number]))
      await sleep(10)
    }
  })()
  const [firing] = await a.next(1)
  await writing
  assert.is(firing!.kind, 'evictionsPerSecond')
  assert.is(firing!.region, 'default')
  assert.is(firing!.state, 'firing')
  assert.is(firing!.threshold, 50)
  assert.ok(firing!.value >= 50, `${firing!.value}/s`)
  // No more writes: the next check sees no eviction.
  const [, resolved] = await a.next(2)
  assert.equal(resolved, { kind: 'evictionsPerSecond', region: 'default', value: 0, threshold: 50, state: 'resolved' })
  assert.ok((await c.stats()).evictionsByCause.size >= 400)
})

test('bad alert options are refused with the option named', async () => {
  const cases: [unknown, RegExp][] = [
    [true, /options\.alerts must be an object/],
    [{}, /options\.alerts needs a threshold: memoryUse, evictionsPerSecond or both/],
    [{ memoryUse: 0 }, /options\.alerts\.memoryUse must be a share of the budget above 0 and at most 1.*\(got 0\)/],
    [{ memoryUse: 1.5 }, /options\.alerts\.memoryUse .*\(got 1\.5\)/],
    [{ memoryUse: '90%' }, /options\.alerts\.memoryUse .*\(got the string "90%"\)/],
    [{ evictionsPerSecond: -1 }, /options\.alerts\.evictionsPerSecond must be a positive number \(got -1\)/],
    [{ memoryUse: 0.9, intervalMs: 'often' }, /options\.alerts\.intervalMs/],
    [{ memoryUse: 0.9, every: 10 }, /options\.alerts\.every is not an option/],
  ]
  for (const [alerts, why] of cases) {
    const err = await errorOf(createCache({ shards: 1, alerts } as CacheOptions))
    assert.is(err.code, 'E_INVALID_OPTION', `${JSON.stringify(alerts)}: ${err.message}`)
    assert.match(err.message, why)
  }
})

test.run()
