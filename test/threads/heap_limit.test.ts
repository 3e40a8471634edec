/**
 * A shard thread that runs out of heap (options.resourceLimits): it dies like
 * a crashed one. Its pending ops reject with E_SHARD_CRASHED, it restarts
 * empty with the same limits, the other shard keeps its data, and the cache
 * keeps working.
 *
 * What grows the heap is a user call: `keys()` builds the list of a shard's
 * keys as strings in the shard's heap (entries themselves live in shared
 * memory, outside it). With `maxOldGenerationSizeMb: 8` a shard holding some
 * 200k keys cannot build that list.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache, InvalidOptionError, ShardCrashedError } from '../../src/index.js'
import type { Cache } from '../../src/index.js'
import { resolveOptions } from '../../src/options/cache.js'

/** The owner's shard threads (internal: to check the limits a restarted thread got). */
function workers(cache: Cache): { resourceLimits?: Record<string, number> }[] {
  const core = (cache as unknown as { core: { admin: { threads(): { worker: { resourceLimits?: Record<string, number> } }[] } } }).core
  return core.admin.threads().map((t) => t.worker)
}

test('resourceLimits: merged over the default young-generation cap; bad values name the option', async () => {
  assert.equal(resolveOptions({}).resourceLimits, { maxYoungGenerationSizeMb: 2 })
  assert.equal(resolveOptions({ resourceLimits: { maxOldGenerationSizeMb: 64 } }).resourceLimits, { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 64 })
  assert.equal(resolveOptions({ resourceLimits: { maxYoungGenerationSizeMb: 16, stackSizeMb: 8 } }).resourceLimits, { maxYoungGenerationSizeMb: 16, stackSizeMb: 8 })
  const bad: [unknown, string][] = [
    [128, 'options.resourceLimits must be an object like { maxOldGenerationSizeMb: 256 } (got 128)'],
    [{ maxOldGenerationSizeMb: 4 }, 'options.resourceLimits.maxOldGenerationSizeMb must be a number of MB from 8 to 1048576 (got 4)'],
    [{ maxOldGenerationSizeMb: '1gb' }, 'options.resourceLimits.maxOldGenerationSizeMb must be a number of MB from 8 to 1048576 (got the string "1gb")'],
    [{ maxYoungGenerationSizeMb: Number.NaN }, 'options.resourceLimits.maxYoungGenerationSizeMb must be a number of MB from 1 to 1048576 (got NaN)'],
    [{ maxOld: 64 }, 'options.resourceLimits.maxOld is not an option (options are: maxOldGenerationSizeMb, maxYoungGenerationSizeMb, codeRangeSizeMb, stackSizeMb)'],
  ]
  for (const [resourceLimits, message] of bad) {
    const err = (await createCache({ shards: 1, resourceLimits: resourceLimits as never }).then(
      () => assert.unreachable('createCache resolved'),
      (e: unknown) => e,
    )) as InvalidOptionError
    assert.instance(err, InvalidOptionError)
    assert.is(err.code, 'E_INVALID_OPTION')
    assert.is(err.message, message)
  }
})

test('a shard past its old-generation limit restarts empty; its pending ops reject with E_SHARD_CRASHED; the other shard keeps its data', async () => {
  const cache = await createCache({ shards: 2, resourceLimits: { maxOldGenerationSizeMb: 8 }, regions: { default: { maxBytes: '512mb' } } })
  try {
    assert.equal(workers(cache).map((w) => w.resourceLimits?.maxOldGenerationSizeMb), [8, 8])
    // Shard 1 holds a few keys; shard 0 gets keys in steps until listing them exceeds its heap.
    const onShard1 = Array.from({ length: 600 }, (_, i) => `other:${i}`).filter((k) => cache.shardOfForTest(k) === 1)
    let n = 0
    const keyOfShard0 = (): string => {
      for (;;) {
        const k = `user:session:${n++}`
        if (cache.shardOfForTest(k) === 0) return k
      }
    }
    const probe = keyOfShard0()
    await cache.set(probe, 'before')
    await cache.mset(onShard1.map((k): [string, string] => [k, `v:${k}`]))
    const STEP = 100_000
    const MAX_KEYS = 1_200_000 // 12x the 100k that crashed it when measured
    let loaded = 1
    let outcomes: PromiseSettledResult<unknown>[] | undefined
    while (loaded < MAX_KEYS) {
      for (let i = 0; i < STEP; i += 10_000) await cache.mset(Array.from({ length: 10_000 }, (): [string, number] => [keyOfShard0(), i]))
      loaded += STEP
      // Issued in one tick: these travel in the same frame to shard 0 as its KEYS op.
      const attempt = await Promise.allSettled([cache.set(probe, 'during'), cache.getEntry(probe), cache.keys(), cache.get(probe)])
      if (attempt.some((o) => o.status === 'rejected')) {
        outcomes = attempt
        break
      }
      assert.is((attempt[2] as PromiseFulfilledResult<string[]>).value.length, loaded + onShard1.length)
    }
    assert.ok(outcomes !== undefined, `keys() of ${loaded} keys never exceeded an 8 MB heap`)
    console.log(`  shard 0 ran out of heap listing ${loaded} keys (maxOldGenerationSizeMb 8)`)
    for (const o of outcomes) {
      assert.is(o.status, 'rejected')
      const err = (o as PromiseRejectedResult).reason as ShardCrashedError
      assert.instance(err, ShardCrashedError)
      assert.is(err.code, 'E_SHARD_CRASHED')
      assert.is(err.shard, 0)
      assert.is(err.restarting, true)
      assert.is((err.cause as { code?: string }).code, 'ERR_WORKER_OUT_OF_MEMORY')
    }

    // Shard 1 kept everything; shard 0 is back, empty, with the same limits.
    assert.equal(await cache.mget(onShard1), onShard1.map((k) => `v:${k}`))
    const s = await cache.stats()
    assert.is(s.shardRestarts, 1)
    assert.equal(s.shardsDown, [])
    assert.is(s.byShard[0]!.entries, 0)
    assert.is(s.byShard[1]!.entries, onShard1.length)
    assert.is(await cache.get(probe), undefined)
    assert.equal(workers(cache).map((w) => w.resourceLimits?.maxOldGenerationSizeMb), [8, 8])
    assert.equal(workers(cache).map((w) => w.resourceLimits?.maxYoungGenerationSizeMb), [2, 2])

    // And works.
    assert.is(await cache.set(probe, 'after'), true)
    assert.is(await cache.get(probe), 'after')
    assert.equal((await cache.keys()).sort(), [probe, ...onShard1].sort())
  } finally {
    await cache.close()
  }
})

test.run()
