/**
 * What the shards keep from L2 stays coherent with writes: a value read from
 * L2 is not stored over a newer write, and a write that never reached L2 (its
 * breaker open) is undone in L2 once it answers, and in peers' shards. Against
 * private redis-servers (one for L2, one for the bus), paused with SIGSTOP.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'
import { RedisProc } from '../fixtures/redis_proc.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function waitFor(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(20)
  }
}

const open: Cache[] = []
const servers: RedisProc[] = []

async function server(): Promise<RedisProc> {
  const r = await RedisProc.start()
  servers.push(r)
  return r
}

async function cache(o: CacheOptions): Promise<Cache> {
  const c = await createCache({ shards: 1, ...o })
  open.push(c)
  return c
}

test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
  for (const s of servers.splice(0)) {
    if (s.running) s.resume()
    await s.stop()
  }
})

test('a get that misses L1 and reads L2 does not store that value over a set issued meanwhile', async () => {
  const l2 = await server()
  const seed = await cache({ l2: { redis: l2.url } })
  const c = await cache({ l2: { redis: l2.url } })
  for (let round = 0; round < 20; round++) {
    const key = `k${round}`
    await seed.set(key, 'old')
    // The get misses the shard and asks L2 (which says 'old'); the set is issued before L2 answers.
    const read = c.get(key)
    const written = c.set(key, 'new')
    assert.ok((await read) === 'old' || (await read) === 'new')
    await written
    await sleep(5)
    assert.is(await c.get(key), 'new', `round ${round}: the shard kept the value of the set, not the older one read from L2`)
  }
})

test('a set skipped by an open L2 breaker is undone in L2 once it answers, and in a peer that read the old value meanwhile', async () => {
  const l2 = await server()
  const bus = await server()
  const o: CacheOptions = { bus: { redis: bus.url, heartbeat: 200 }, l2: { redis: l2.url, timeout: 150, breakDuration: 2500 } }
  const a = await cache(o)
  const b = await cache(o)
  await a.set('k', 'v1')
  assert.is(await b.get('k'), 'v1')
  // Five timeouts in a row open a's breaker.
  l2.pause()
  for (let i = 0; i < 5; i++) await a.get(`miss${i}`)
  l2.resume()
  assert.is((await a.stats()).tiers!.l2.breaker, 'open')
  // Skipped in L2, which still says v1. b drops its copy (the bus); past the fill window
  // (twice the L2 timeout after that invalidation) it reads v1 back from L2 and keeps it.
  const applied = (await b.stats()).bus!.applied
  await a.set('k', 'v2')
  await waitFor('b dropped k', 2000, async () => (await b.stats()).bus!.applied > applied)
  await sleep(400)
  assert.is(await b.get('k'), 'v1', 'during the outage b reads the old value L2 kept')
  await sleep(5)
  assert.is(await b.get('k'), 'v1', 'and holds it in its shard')
  const s = (await a.stats()).tiers!.l2
  assert.is(s.lostWrites, 1, 'the skipped write is remembered for repair')
  assert.is(s.repairPending, 1)
  await waitFor('the repair ran', 5000, async () => (await a.stats()).tiers!.l2.repairPending === 0)
  assert.is(await l2.command('EXISTS', 'shardcache:default:k'), 0, 'the old value is gone from L2')
  // The repair's invalidation reaches b, which held the old value.
  await waitFor('b no longer serves v1', 5000, async () => (await b.get('k')) !== 'v1')
  assert.is(await b.get('k'), undefined)
  assert.is(await a.get('k'), 'v2', 'the writer keeps its value')
  assert.is((await a.stats()).tiers!.l2.repaired, 1)
})

test.run()
