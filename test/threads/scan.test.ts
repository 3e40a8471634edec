/**
 * scan / scanEntries: every live key once, page by page from each shard;
 * exactly once for keys present for the whole scan even while others are
 * written, deleted and added; globs, regions and bad options.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { withCache } from '../fixtures/helpers.js'

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

test('scan returns every live key once, count at a time; match filters; scanEntries pairs keys with values; region picks the region', async () => {
  await withCache({ shards: 4, regions: { other: {} } }, async (cache) => {
    const keys = Array.from({ length: 5000 }, (_, i) => `k:${i}`)
    await cache.mset(keys.map((k, i) => [k, i] as [string, number]))
    await cache.region('other').set('o:1', 'x')
    const seen = await collect(cache.scan({ count: 97 }))
    assert.is(seen.length, 5000)
    assert.equal([...seen].sort(), [...keys].sort())
    assert.equal((await collect(cache.scan({ match: 'k:12?' }))).sort(), ['k:120', 'k:121', 'k:122', 'k:123', 'k:124', 'k:125', 'k:126', 'k:127', 'k:128', 'k:129'])
    const entries = await collect(cache.scanEntries<number>({ match: 'k:4999', count: 10 }))
    assert.equal(entries, [['k:4999', 4999]])
    assert.equal(await collect(cache.scan({ region: 'other' })), ['o:1'])
    assert.equal(await collect(cache.region('other').scan()), ['o:1'])
  })
})

test('under concurrent writes, deletes and inserts, each key present for the whole scan comes exactly once', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const stable = Array.from({ length: 4000 }, (_, i) => `stable:${i}`)
    const churn = Array.from({ length: 4000 }, (_, i) => `churn:${i}`)
    await cache.mset([...stable, ...churn].map((k) => [k, 0] as [string, number]))
    let stop = false
    let round = 0
    const writer = (async () => {
      while (!stop) {
        round++
        // Stable keys are updated (same slot), churn keys deleted and re-added, new keys inserted.
        await cache.mset(stable.filter((_, i) => i % 7 === round % 7).map((k) => [k, round] as [string, number]))
        await cache.mdelete(churn.filter((_, i) => i % 5 === round % 5))
        await cache.mset(churn.filter((_, i) => i % 5 === (round + 2) % 5).map((k) => [k, round] as [string, number]))
        await cache.mset(Array.from({ length: 50 }, (_, i) => [`new:${round}:${i}`, round] as [string, number]))
      }
    })()
    const seen = await collect(cache.scan({ count: 64 }))
    stop = true
    await writer
    assert.ok(round >= 2, `the writer ran during the scan (${round} rounds)`)
    const counts = new Map<string, number>()
    for (const k of seen) counts.set(k, (counts.get(k) ?? 0) + 1)
    for (const k of stable) assert.is(counts.get(k), 1, k)
  })
})

test('bad scan options are E_INVALID_OPTION or E_INVALID_KEY, raised when iteration starts', async () => {
  await withCache({ shards: 1 }, async (cache) => {
    for (const [opts, code, name] of [
      [{ count: 0 }, 'E_INVALID_OPTION', 'options.count'],
      [{ count: 1.5 }, 'E_INVALID_OPTION', 'options.count'],
      [{ match: '' }, 'E_INVALID_KEY', 'options.match must be a non-empty string (got an empty string)'],
    ] as const) {
      try {
        await collect(cache.scan(opts as never))
        assert.unreachable(name)
      } catch (err) {
        assert.is((err as { code?: string }).code, code)
        assert.match((err as Error).message, name)
      }
    }
  })
})

test.run()
