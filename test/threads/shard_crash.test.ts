// A shard thread that dies: its pending ops fail fast, it restarts empty, the other shards keep their data.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache, ShardCrashedError } from '../../src/index.js'

test('a crashed shard rejects its pending ops with E_SHARD_CRASHED, restarts empty, and the others keep their data', async () => {
  const cache = await createCache({ shards: 2 })
  const keys = Array.from({ length: 200 }, (_, i) => `key:${i}`)
  await cache.mset(keys.map((k): [string, string] => [k, `v${k}`]))
  const onShard0 = keys.filter((k) => cache.shardOfForTest(k) === 0)
  const onShard1 = keys.filter((k) => cache.shardOfForTest(k) === 1)
  assert.ok(onShard0.length > 50 && onShard1.length > 50)

  const started = Date.now()
  // Issued in one tick: these ops travel in the same frame as the crash. (A
  // plain get of a stored key would not: it is answered from shared memory.)
  const pending = [
    cache.getEntry(onShard0[0]!),
    cache.set(onShard0[1]!, 'new'),
    cache.get(onShard0[1]!), // behind the set, so it goes through the shard
    cache.crashShardForTest(0),
  ]
  const other = cache.get(onShard1[0]!)
  const outcomes = await Promise.allSettled(pending)
  const elapsed = Date.now() - started
  assert.ok(elapsed < 1000, `rejected after ${elapsed} ms`)
  for (const o of outcomes) {
    assert.is(o.status, 'rejected')
    const err = (o as PromiseRejectedResult).reason as ShardCrashedError
    assert.instance(err, ShardCrashedError)
    assert.is(err.code, 'E_SHARD_CRASHED')
    assert.is(err.shard, 0)
    assert.match(err.message, /^shard 0 crashed/)
  }
  assert.is(await other, `v${onShard1[0]}`)

  // Shard 1 kept everything; shard 0 came back empty and works.
  assert.equal(await cache.mget(onShard1), onShard1.map((k) => `v${k}`))
  assert.equal(await cache.mget(onShard0), onShard0.map(() => undefined))
  const s = await cache.stats()
  assert.is(s.shardRestarts, 1)
  assert.is(s.byShard[0]!.entries, 0)
  assert.is(s.byShard[1]!.entries, onShard1.length)
  assert.is(await cache.set(onShard0[0]!, 'again'), true)
  assert.is(await cache.get(onShard0[0]!), 'again')
  await cache.close()
})

test('ops issued while a shard restarts reach the new thread', async () => {
  const cache = await createCache({ shards: 1 })
  await cache.set('k', 1)
  const crash = cache.crashShardForTest(0)
  await crash.catch(() => {})
  // The old thread is gone; these are queued for the new one.
  const results = await Promise.all([cache.set('k', 2), cache.get('k')])
  assert.equal(results, [true, 2])
  assert.is((await cache.stats()).shardRestarts, 1)
  await cache.close()
})

test('stats and resetStats are answered after a crash, not left hanging', async () => {
  const cache = await createCache({ shards: 2 })
  await cache.crashShardForTest(1).catch(() => {})
  const s = await cache.stats()
  assert.is(s.shardRestarts, 1)
  await cache.resetStats()
  await cache.close()
})

test('a shard that keeps crashing before answering is given up after 5 restarts; the others and stats keep working', async () => {
  const cache = await createCache({ shards: 2 })
  const onShard1 = Array.from({ length: 40 }, (_, i) => `k${i}`).filter((k) => cache.shardOfForTest(k) === 1)
  const onShard0 = Array.from({ length: 40 }, (_, i) => `k${i}`).filter((k) => cache.shardOfForTest(k) === 0)
  await cache.mset(onShard1.map((k): [string, string] => [k, k]))
  // Each crash request is the first frame of the restarted thread: six crashes without an answer.
  for (let i = 0; i < 6; i++) {
    const err = (await cache.crashShardForTest(0).catch((e: unknown) => e)) as ShardCrashedError
    assert.instance(err, ShardCrashedError)
    assert.is(err.restarting, true)
  }
  const err = (await cache.get(onShard0[0]!).catch((e: unknown) => e)) as ShardCrashedError
  assert.instance(err, ShardCrashedError)
  assert.is(err.code, 'E_SHARD_CRASHED')
  assert.is(err.restarting, false)
  assert.is(err.message, 'shard 0 is down: it crashed repeatedly before answering and is not restarted; recreate the cache')
  assert.equal(await cache.mget(onShard1), onShard1)
  const s = await cache.stats()
  assert.is(s.shardRestarts, 5)
  assert.equal(s.shardsDown, [0])
  assert.is(s.byShard[0]!.entries, 0)
  assert.is(s.byShard[1]!.entries, onShard1.length)
  assert.is(s.entries, onShard1.length)
  await cache.resetStats()
  await cache.close()
})

test.run()
