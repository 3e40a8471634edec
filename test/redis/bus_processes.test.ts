/**
 * The invalidation bus across real processes: two and three caches, each in
 * its own child process (test/fixtures/bus_peer.ts), on one private
 * redis-server (or REDIS_URL, on a channel of this run's own). Every write
 * operation of one instance must remove (or, in update mode, replace) the
 * others' copies, and they converge to the same contents.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomUUID } from 'node:crypto'
import { RedisProc } from '../fixtures/redis_proc.js'
import { BusPeer, eventually } from '../fixtures/bus_peer_client.js'

let redis: RedisProc | undefined
let url = process.env.REDIS_URL ?? ''
const peers: BusPeer[] = []

test.before(async () => {
  if (url === '') {
    redis = await RedisProc.start()
    url = redis.url
  }
})

test.after.each(async () => {
  for (const p of peers.splice(0)) {
    const code = await p.close().catch(() => {
      p.kill()
      return -1
    })
    assert.is(code, 0, 'a peer must exit by itself after close(): nothing may keep it alive')
  }
})

test.after(async () => {
  for (const p of peers) p.kill()
  await redis?.stop()
})

/** `n` peers on one fresh channel, so that runs sharing a REDIS_URL cannot hear each other. */
async function peersOn(n: number, bus: Record<string, unknown> = {}): Promise<BusPeer[]> {
  const channel = `shardcache:test:${randomUUID()}`
  const list = await Promise.all(
    Array.from({ length: n }, () => BusPeer.spawn({ shards: 2, regions: { default: {}, sessions: {} }, bus: { redis: url, channel, heartbeat: 200, ...bus } })),
  )
  peers.push(...list)
  return list
}

const sorted = async (p: BusPeer, region = 'default'): Promise<string[]> => ((await p.in(region).call<string[]>('keys')) ?? []).sort()

/**
 * Waits until every peer sent everything it queued (an op is queued when its
 * call is made) and received every message the others published.
 */
async function settled(list: BusPeer[]): Promise<void> {
  await eventually(
    async () => Promise.all(list.map((p) => p.call<{ bus: { published: number; received: number; queued: number } }>('stats'))),
    (stats) => {
      const published = stats.reduce((n, s) => n + s.bus.published, 0)
      return stats.every((s) => s.bus.queued === 0 && s.bus.received === published - s.bus.published)
    },
    8000,
  )
}

for (const catchUp of ['flush', 'stream'] as const) test(`two processes (catchUp "${catchUp}") converge after set, delete, mset, mdelete, deleteByPattern and clear`, async () => {
  const [a, b] = await peersOn(2, { catchUp })
  await b!.call('mset', [['k1', 'b'], ['k2', 'b'], ['k3', 'b'], ['k4', 'b'], ['user:1', 'b'], ['user:2', 'b'], ['keep', 'b']])
  await b!.in('sessions').call('set', 's1', 'b')
  await settled([a!, b!])
  await a!.call('set', 'k1', 'a')
  await a!.call('delete', 'k2')
  await a!.call('mset', [['k3', 'a']])
  await a!.call('mdelete', ['k4'])
  await a!.call('deleteByPattern', 'user:*')
  await settled([a!, b!])
  assert.equal(await sorted(b!), ['keep'])
  assert.equal(await sorted(a!), ['k1', 'k3'])
  assert.equal(await sorted(b!, 'sessions'), ['s1'])
  await a!.in('sessions').call('clear')
  await settled([a!, b!])
  assert.equal(await sorted(b!, 'sessions'), [])
  assert.equal(await sorted(b!), ['keep'])
  // b saw each of a's ops as an event, in order (ops of one tick may share an event).
  const events = b!.events as { type: string; region: string; keys?: string[]; pattern?: string }[]
  assert.equal(
    events.flatMap((e) => (e.keys ?? [e.pattern ?? '']).map((k) => `${e.type} ${e.region} ${k}`.trim())),
    ['delete default k1', 'delete default k2', 'delete default k3', 'delete default k4', 'pattern default user:*', 'clear sessions'],
  )
  const s = await b!.call<{ bus: { flushes: number; dropped: { total: number } } }>('stats')
  assert.equal([s.bus.flushes, s.bus.dropped.total], [0, 0])
})

test('three processes in update mode end with the same contents whoever wrote last', async () => {
  const list = await peersOn(3, { mode: 'update' })
  const [a, b, c] = list
  await a!.call('set', 'shared', 'from-a')
  await settled(list)
  assert.equal(await Promise.all(list.map((p) => p.call('get', 'shared'))), ['from-a', 'from-a', 'from-a'])
  await b!.call('mset', [['x', 1], ['y', { deep: [1, 2] }]])
  await c!.call('set', 'shared', 'from-c')
  await settled(list)
  for (const p of list) {
    assert.is(await p.call('get', 'shared'), 'from-c')
    assert.is(await p.call('get', 'x'), 1)
    assert.equal(await p.call('get', 'y'), { deep: [1, 2] })
  }
  await a!.call('deleteByPattern', '[xy]')
  await c!.call('mdelete', ['shared'])
  await settled(list)
  for (const p of list) assert.equal(await sorted(p), [])
})

test('three processes: a peer\'s delete reaches both others, and a region clear only its region', async () => {
  const list = await peersOn(3)
  for (const p of list) {
    await p.call('set', 'k', 'v')
    await p.in('sessions').call('set', 's', 'v')
  }
  await settled(list)
  // Each set invalidated the others' copies, so only the last writer still holds k.
  await list[2]!.call('delete', 'k')
  await list[0]!.in('sessions').call('clear')
  await settled(list)
  for (const p of list) {
    assert.is(await p.call('get', 'k'), undefined)
    assert.is(await p.in('sessions').call('get', 's'), undefined)
  }
})

test.run()
