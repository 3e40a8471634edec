/**
 * The invalidation bus against a real redis-server (a private one per test,
 * started by RedisProc, so that tests can kill, pause and restart it): what
 * peers see of each other's writes, and every way the link can fail.
 *
 * Each cache here is its own bus instance (own origin, own connections), so
 * two caches in this process behave as two processes would; test/redis/bus_processes.test.ts
 * runs the same operations across real processes.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Redis } from 'ioredis'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions, FlushEvent, InvalidationEvent } from '../../src/index.js'
import { BusOpType, encodeMessage, stampAndSign } from '../../src/redis/bus_message.js'
import type { BusOp } from '../../src/redis/bus_message.js'
import { RedisProc } from '../fixtures/redis_proc.js'
import { eventually } from '../fixtures/bus_peer_client.js'
import { ClientThread } from '../fixtures/client_thread.js'
import { errorOf } from '../fixtures/helpers.js'

const HEARTBEAT = 100
/** The publisher's heartbeat, and so its hold after resubscribing, in the test that kills Redis while it deletes. */
const A_HOLD_MS = 1_000
/** How late a timer may fire on a loaded 2-core machine: detection is promised in heartbeat ticks, and ticks can slip. */
const TIMER_SLACK_MS = 100
const SECRET = 'test-secret'

type BusExtra = Partial<NonNullable<CacheOptions['bus']>>

const open: Cache[] = []
const servers: RedisProc[] = []

async function server(): Promise<RedisProc> {
  const r = await RedisProc.start()
  servers.push(r)
  return r
}

async function cache(redis: RedisProc, bus: BusExtra = {}, more: CacheOptions = {}): Promise<Cache> {
  const c = await createCache({ shards: 2, ...more, bus: { redis: redis.url, heartbeat: HEARTBEAT, ...bus } })
  open.push(c)
  return c
}

/** Records a cache's bus events with the time they came. */
function record(c: Cache): { invalidations: InvalidationEvent[]; flushes: (FlushEvent & { at: number })[] } {
  const out = { invalidations: [] as InvalidationEvent[], flushes: [] as (FlushEvent & { at: number })[] }
  c.on('invalidation', (e) => out.invalidations.push(e))
  c.on('flush', (e) => out.flushes.push({ ...e, at: performance.now() }))
  return out
}

const busStats = async (c: Cache) => (await c.stats()).bus!
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
  for (const s of servers.splice(0)) await s.stop()
})

test('invalidate mode: a set, delete, mset, mdelete, pattern and clear on one instance remove the other\'s copies', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r, {}, { regions: { sessions: {} } })
  const seen = record(b)
  await b.mset([['k1', 'b1'], ['k2', 'b2'], ['k3', 'b3'], ['k4', 'b4'], ['user:1', 'u1'], ['user:2', 'u2'], ['keep', 'x']])
  await b.region('sessions').set('s1', 'v')
  // b's own writes invalidate a's keys too: let them land before a writes.
  await eventually(async () => [await busStats(a), await busStats(b)], ([sa, sb]) => sb!.queued === 0 && sb!.published > 0 && sa!.received === sb!.published)
  await a.set('k1', 'a1')
  await a.delete('k2')
  await a.mset([['k3', 'a3']])
  await a.mdelete(['k4'])
  await a.deleteByPattern('user:*')
  await eventually(() => b.keys(), (ks) => ks.length === 1)
  assert.equal(await b.keys(), ['keep'])
  // Invalidate mode never carries values: b has no k1 or k3 now, a still has its own.
  assert.is(await a.get('k1'), 'a1')
  // Ops of one tick share a message and a batch: compare what was applied, in order, op by op.
  assert.equal(
    seen.invalidations.flatMap((e) => (e.keys ?? [e.pattern]).map((k) => `${e.type} ${e.region} ${k}`)),
    ['delete default k1', 'delete default k2', 'delete default k3', 'delete default k4', 'pattern default user:*'],
  )
  // Regions match by name: a's clear of "default" leaves b's "sessions" alone.
  await a.clear()
  await eventually(() => b.keys(), (ks) => ks.length === 0)
  assert.is(await b.region('sessions').get('s1'), 'v')
  const s = await busStats(b)
  assert.is(s.received, (await busStats(a)).published)
  assert.is(s.applied, seen.invalidations.length)
  assert.is(seen.invalidations[seen.invalidations.length - 1]!.type, 'clear')
  assert.is(s.dropped.total, 0)
  assert.is(s.flushes, 0)
  assert.ok(s.latency.count === s.received && s.latency.p50Ms! > 0 && s.latency.p99Ms! >= s.latency.p50Ms!)
  const text = await b.metrics()
  assert.match(text, `\nshardcache_bus_received_total ${s.received}\n`)
  assert.match(text, `\nshardcache_bus_propagation_seconds_count ${s.latency.count}\n`)
  assert.match(text, '\nshardcache_bus_connected 1\n')
})

test('update mode: peers store the value with its type, TTL and metadata; nx/xx sets only invalidate', async () => {
  const r = await server()
  const a = await cache(r, { mode: 'update' })
  const b = await cache(r, { mode: 'update' })
  const seen = record(b)
  await a.set('s', 'text', { ttl: '1h', metadata: { from: 'a' } })
  await a.set('buf', Buffer.from([1, 2, 3]))
  await a.set('obj', { n: 1, list: [true, null] })
  await b.set('guarded', 'b')
  await a.set('guarded', 'a', { nx: true })
  // Per key, not per event: sets queued while the publisher's connection is busy travel in one message
  // (on a loaded machine 'buf' and 'obj' arrived as one update of two keys, and counting events failed).
  const perKey = (): [string, string][] => seen.invalidations.flatMap((e) => (e.keys ?? []).map((k): [string, string] => [e.type, k]))
  await eventually(async () => perKey().length, (n) => n === 4)
  assert.is(await b.get('s'), 'text')
  const e = await b.getEntry('s')
  assert.equal(e!.metadata, { from: 'a' })
  assert.ok(e!.ttlRemaining > 3_590_000 && e!.ttlRemaining <= 3_600_000, `ttl ${e!.ttlRemaining}`)
  assert.equal(await b.get('buf'), Buffer.from([1, 2, 3]))
  assert.ok(Buffer.isBuffer(await b.get('buf')))
  assert.equal(await b.get('obj'), { n: 1, list: [true, null] })
  // The nx set's outcome is unknown when it is published: peers drop their copy.
  assert.is(await b.get('guarded'), undefined)
  assert.equal(perKey(), [['update', 's'], ['update', 'buf'], ['update', 'obj'], ['delete', 'guarded']])
})

test('incr, cas and take on one instance remove the other\'s copy', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  await b.mset([['n', 1], ['c', 'x'], ['t', 'y']])
  await a.incr('n')
  await a.cas('c', undefined, 'new')
  await a.take('t')
  await eventually(() => b.keys(), (ks) => ks.length === 0)
})

test('invalidate mode: a getOrCompute load is a fill, not an invalidation: two instances reading one key load it once each', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  let loads = 0
  const loader = (): Promise<{ id: number }> => {
    loads++
    return Promise.resolve({ id: 7 })
  }
  // Turn by turn; after each, a set of a key of its own that the other must see: messages
  // of one origin arrive in order, so any message the load sent has arrived before it.
  for (let i = 0; i < 6; i++) {
    const [reader, other] = i % 2 === 0 ? [a, b] : [b, a]
    assert.equal(await reader.getOrCompute('user:7', loader, { ttl: '1m' }), { id: 7 })
    await reader.set(`turn:${i}`, i)
    await eventually(() => busStats(other), (st) => st.received === Math.floor(i / 2) + 1)
  }
  // Before: 6 (each load dropped the other instance's copy, so every turn was a miss).
  assert.is(loads, 2)
  assert.is((await busStats(a)).published, 3)
  assert.is((await busStats(b)).published, 3)
  // A set is still an invalidation.
  await a.set('user:7', { id: 8 })
  await eventually(() => b.has('user:7'), (has) => !has)
})

test('invalidateTag reaches every instance; in update mode the tags travel with the values', async () => {
  const r = await server()
  const a = await cache(r, { mode: 'update' })
  const b = await cache(r, { mode: 'update' })
  const seen = record(b)
  await b.mset([['p:1', 1], ['p:2', 2]], { tags: ['product'] })
  await b.set('other', 3)
  await eventually(() => busStats(a), (s) => s.received === 2)
  await a.invalidateTag('product')
  await eventually(() => b.keys(), (ks) => ks.length === 1)
  assert.equal(await b.keys(), ['other'])
  assert.equal(seen.invalidations.map((e) => [e.type, e.tag]), [['tag', 'product']])
  // a stored b's values with their tags (update mode): its own invalidation removed them too.
  assert.is(await a.get('p:1'), undefined)
  assert.is(await a.get('other'), 3)
  await a.set('q', 1, { tags: ['late'] })
  await eventually(() => b.get('q'), (v) => v === 1)
  assert.is(await b.invalidateTag('late'), 1)
})

test('lockAcrossInstances over the bus (update mode, no L2): one of three instances runs the loader, the others get its value by the bus', async () => {
  const r = await server()
  const caches = [await cache(r, { mode: 'update' }), await cache(r, { mode: 'update' }), await cache(r, { mode: 'update' })]
  let calls = 0
  const loader = async () => {
    calls++
    await sleep(100)
    return { shared: true }
  }
  const results = await Promise.all(caches.map((c) => c.getOrCompute('k', loader, { lockAcrossInstances: true, timeout: 2000 })))
  assert.is(calls, 1)
  for (const v of results) assert.equal(v, { shared: true })
  const plain = await cache(r)
  // An invalidate-mode bus carries no values.
  const err = await errorOf(plain.getOrCompute('x', () => 1, { lockAcrossInstances: true }))
  assert.is(err.code, 'E_INVALID_OPTION')
  assert.match(err.message, 'options.lockAcrossInstances')
})

test('an instance ignores its own messages, and a tick of writes is one message, split under maxMessageBytes', async () => {
  const r = await server()
  // The default heartbeat (1 s), not the tests' 100 ms: with two busy cores and 4,000 writes through
  // Redis, two 100 ms heartbeats can go unanswered, and the flush that follows (correctly) empties a.
  const a = await cache(r, { maxMessageBytes: '8kb', heartbeat: 1000 })
  const b = await cache(r, { maxMessageBytes: '8kb', heartbeat: 1000 })
  const seen = record(a)
  const keys = Array.from({ length: 2000 }, (_, i) => `key:${i}`)
  await b.mset(keys.map((k) => [k, 'v'] as [string, string]))
  // b's invalidations must reach a before a writes: one arriving after a's set drops a's newer
  // value (the bus is conservative), and on a loaded machine Redis delivers them late.
  await eventually(async () => [await busStats(a), await busStats(b)], ([sa, sb]) => sb!.queued === 0 && sb!.published > 0 && sa!.received === sb!.published)
  await Promise.all(keys.map((k) => a.set(k, 'a')))
  await eventually(() => b.keys(), (ks) => ks.length === 0)
  const sa = await busStats(a)
  const sb = await busStats(b)
  // 2000 keys of ~10 bytes do not fit one 8 KiB message; b received every message a sent.
  assert.ok(sa.published >= 3 && sa.published <= 4, `published ${sa.published}`)
  assert.is(sb.received, sa.published)
  // b's mset (as many messages) reached a; a's own messages did not come back to it.
  assert.is(sa.received, (await busStats(b)).published)
  assert.is(seen.invalidations.length, sa.received)
  assert.equal(seen.invalidations.flatMap((e) => e.keys), keys)
  assert.is((await a.keys()).length, 2000, `flushes of a: ${JSON.stringify(seen.flushes)}`)
})

test('killing Redis while a peer deletes: after the reconnect the other instance never returns the deleted value', async () => {
  const r = await server()
  // a's heartbeat is its hold after resubscribing: what it queued while down waits that long, so
  // that peers resubscribe first (each reconnects on its own ioredis backoff, up to 2 s apart).
  const a = await cache(r, { heartbeat: A_HOLD_MS })
  const b = await cache(r)
  const seenA = record(a)
  const seen = record(b)
  await b.set('k', 'stale')
  await r.kill()
  // The delete succeeds locally at once; its message waits in a's queue.
  const t0 = performance.now()
  assert.is(await a.delete('k'), false)
  assert.ok(performance.now() - t0 < 200, 'a local op must not wait for Redis')
  await eventually(() => busStats(a), (s) => s.queued === 1)
  await eventually(() => busStats(b), (s) => !s.connected)
  const published = (await busStats(a)).published
  await r.restart()
  await eventually(() => busStats(b), (s) => s.connected && s.reconnects === 1)
  // From the moment b is subscribed again, k is gone: the reconnect flush went ahead of this read.
  assert.is(await b.get('k'), undefined)
  assert.equal(
    seen.flushes.map((f) => f.reason),
    ['disconnect', 'reconnect'],
  )
  // a's queued delete reaches Redis after the restart: a reconnects on ioredis's backoff (up to
  // 2 s between attempts), then holds; on a loaded machine that can take seconds.
  await eventually(() => busStats(a), (s) => s.queued === 0 && s.published === published + 1, 20_000)
  const aBack = seenA.flushes.find((f) => f.reason === 'reconnect')!.at
  const bBack = seen.flushes[1]!.at
  // b gets it as an event when it was subscribed before a sent it (a sends no sooner than its hold
  // after resubscribing). Later, b's reconnect flush already dropped k: the event is not owed, and
  // the read above is what b's users rely on.
  if (bBack < aBack + A_HOLD_MS) {
    await eventually(async () => seen.invalidations.length, (n) => n === 1, 20_000)
    assert.equal(seen.invalidations[0]!.keys, ['k'])
  } else {
    assert.ok(seen.invalidations.length <= 1)
  }
})

test('a paused server (SIGSTOP, a half-open link) is detected by the heartbeat within 3 heartbeats, then flushed; SIGCONT recovers', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  const seen = record(b)
  await b.set('k', 'v')
  await eventually(() => busStats(b), (s) => s.lastHeartbeatMs !== null)
  const t0 = performance.now()
  r.pause()
  try {
    await eventually(async () => seen.flushes.length, (n) => n === 1, 3000, 5)
  } finally {
    r.resume()
  }
  const took = seen.flushes[0]!.at - t0
  assert.is(seen.flushes[0]!.reason, 'heartbeat')
  assert.ok(took <= 3 * HEARTBEAT + TIMER_SLACK_MS, `detected after ${took.toFixed(0)} ms (heartbeat ${HEARTBEAT} ms)`)
  assert.is(await b.get('k'), undefined)
  await eventually(() => busStats(b), (s) => s.connected && s.reconnects === 1, 10_000)
  assert.equal(seen.flushes.map((f) => f.reason), ['heartbeat', 'reconnect'])
  await b.set('k2', 'v')
  await a.delete('k2')
  await eventually(() => b.get('k2'), (v) => v === undefined)
})

test('CLIENT PAUSE on the server is detected by the heartbeat within 3 heartbeats, then flushed', async () => {
  const r = await server()
  const b = await cache(r)
  const seen = record(b)
  await eventually(() => busStats(b), (s) => s.lastHeartbeatMs !== null)
  const t0 = performance.now()
  await r.command('CLIENT', 'PAUSE', '1000', 'ALL')
  await eventually(async () => seen.flushes.length, (n) => n >= 1, 3000, 5)
  assert.is(seen.flushes[0]!.reason, 'heartbeat')
  assert.ok(seen.flushes[0]!.at - t0 <= 3 * HEARTBEAT + TIMER_SLACK_MS, `detected after ${(seen.flushes[0]!.at - t0).toFixed(0)} ms`)
  await eventually(() => busStats(b), (s) => s.connected && s.reconnects === 1, 10_000)
})

test('CLIENT KILL TYPE pubsub: the bus resubscribes and flushes, and invalidations flow again', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  const seen = record(b)
  await b.set('k', 'v')
  const killed = await r.command('CLIENT', 'KILL', 'TYPE', 'pubsub')
  assert.is(killed, 2) // a's and b's subscriber connections
  await eventually(() => busStats(b), (s) => s.connected && s.reconnects === 1)
  assert.equal(seen.flushes.map((f) => f.reason), ['disconnect', 'reconnect'])
  assert.is(await b.get('k'), undefined)
  await b.set('k', 'again')
  await a.set('k', 'new')
  await eventually(() => b.get('k'), (v) => v === undefined)
})

test('forged, garbage, oversize, replayed, unsigned and wrongly signed messages are dropped and counted; the cache is intact', async () => {
  const r = await server()
  const a = await cache(r, { secret: SECRET, maxMessageBytes: '16kb' })
  const b = await cache(r, { secret: SECRET, maxMessageBytes: '16kb' })
  await b.mset([['k', 'v'], ['other', 'w']])
  // A spy on the channel catches one of a's real messages, for the replay.
  const spy = new Redis(r.url)
  const captured: Buffer[] = []
  spy.on('messageBuffer', (_c: Buffer, m: Buffer) => captured.push(m))
  await spy.subscribe('shardcache')
  try {
    await a.delete('other')
    await eventually(async () => captured.length, (n) => n === 1)
    await eventually(() => b.get('other'), (v) => v === undefined)
    await b.set('other', 'w2')
    const origin = Buffer.alloc(16, 9)
    const del = (): BusOp[] => [{ type: BusOpType.DELETE, region: 'default', keys: ['k'] }]
    const publish = (m: Buffer | string) => r.command('PUBLISH', 'shardcache', m)
    await publish('garbage that is not a message')
    await publish(Buffer.alloc(20_000, 0x53)) // over maxMessageBytes
    await publish(stampAndSign(encodeMessage(origin, 1, del()), Date.now(), undefined)) // unsigned
    await publish(stampAndSign(encodeMessage(origin, 1, del()), Date.now(), Buffer.from('wrong'))) // wrong key
    const forged = stampAndSign(encodeMessage(origin, 1, del()), Date.now(), Buffer.from(SECRET))
    forged[forged.length - 40] = forged[forged.length - 40]! ^ 1 // tampered after signing
    await publish(forged)
    await publish(stampAndSign(encodeMessage(origin, 1, del()), Date.now() - 60_000, Buffer.from(SECRET))) // too old
    await publish(captured[0]!) // a's delete of "other", again
    await eventually(() => busStats(b), (s) => s.dropped.total === 7)
    const d = (await busStats(b)).dropped
    assert.equal(
      { malformed: d.malformed, oversize: d.oversize, unsigned: d.unsigned, badSignature: d.badSignature, stale: d.stale, replayed: d.replayed },
      { malformed: 1, oversize: 1, unsigned: 1, badSignature: 2, stale: 1, replayed: 1 },
    )
    assert.is(await b.get('k'), 'v')
    assert.is(await b.get('other'), 'w2')
    assert.is((await busStats(b)).flushes, 0)
  } finally {
    spy.disconnect()
  }
})

test('a sequence gap from an origin flushes; a queue overflow while down is such a gap', async () => {
  const r = await server()
  const b = await cache(r, { secret: SECRET })
  const seen = record(b)
  await b.set('k', 'v')
  const origin = Buffer.alloc(16, 3)
  const msg = (seq: number, key: string) =>
    stampAndSign(encodeMessage(origin, seq, [{ type: BusOpType.DELETE, region: 'default', keys: [key] }]), Date.now(), Buffer.from(SECRET))
  await r.command('PUBLISH', 'shardcache', msg(1, 'x'))
  await r.command('PUBLISH', 'shardcache', msg(3, 'y'))
  await eventually(async () => seen.flushes.length, (n) => n === 1)
  assert.is(seen.flushes[0]!.reason, 'gap')
  assert.is(await b.get('k'), undefined)
  const s = await busStats(b)
  assert.is(s.gaps, 1)
  assert.is(s.applied, 2)

  // A publisher with room for 2 messages makes 5 while Redis is down.
  const a = await cache(r, { secret: SECRET, maxQueue: 2 })
  await a.delete('first')
  await eventually(() => busStats(b), (x) => x.received === 3)
  await r.kill()
  for (let i = 0; i < 5; i++) {
    await a.delete(`down:${i}`)
    await sleep(5) // one tick, one message
  }
  const sa = await busStats(a)
  assert.is(sa.queued, 2)
  assert.is(sa.dropped.queueFull, 3)
  await r.restart()
  await eventually(() => busStats(b), (x) => x.received === 5, 10_000)
  assert.is((await busStats(b)).gaps, 2)
  assert.equal(seen.invalidations.slice(-2).map((e) => e.keys), [['down:3'], ['down:4']])
})

/** Appends a message to the catch-up stream like a publisher in stream mode; publishes it too (with its id) unless `lost`. */
async function streamPublish(r: RedisProc, m: Buffer, lost = false): Promise<void> {
  const id = (await r.command('XADD', 'shardcache:stream', '*', 'm', m)) as Buffer
  if (!lost) await r.command('PUBLISH', 'shardcache', Buffer.concat([m, id, Buffer.from([id.length])]))
}

test('catchUp "stream": a sequence gap is replayed from the stream, in order, without a flush', async () => {
  const r = await server()
  const b = await cache(r, { secret: SECRET, catchUp: 'stream' })
  const seen = record(b)
  await b.mset([['x', 1], ['k', 2], ['y', 3], ['keep', 4]])
  const origin = Buffer.alloc(16, 5)
  const msg = (seq: number, key: string) =>
    stampAndSign(encodeMessage(origin, seq, [{ type: BusOpType.DELETE, region: 'default', keys: [key] }]), Date.now(), Buffer.from(SECRET))
  await streamPublish(r, msg(1, 'x'))
  await streamPublish(r, msg(2, 'k'), true) // in the stream, lost on the channel
  await streamPublish(r, msg(3, 'y'))
  await eventually(async () => seen.invalidations.length, (n) => n === 3)
  assert.equal(seen.invalidations.map((e) => e.keys![0]), ['x', 'k', 'y'])
  assert.equal((await b.keys()).sort(), ['keep'])
  const s = await busStats(b)
  assert.equal({ gaps: s.gaps, flushes: s.flushes, catchUp: s.catchUp }, { gaps: 1, flushes: 0, catchUp: { runs: 1, messages: 2, fallbacks: 0 } })
  assert.is(s.dropped.total, 0)
})

test('catchUp "stream": a gap the trimmed stream no longer covers falls back to a flush', async () => {
  const r = await server()
  const b = await cache(r, { catchUp: 'stream' })
  const seen = record(b)
  await b.mset([['k', 1], ['keep', 2]])
  const origin = Buffer.alloc(16, 6)
  const msg = (seq: number, key: string) => stampAndSign(encodeMessage(origin, seq, [{ type: BusOpType.DELETE, region: 'default', keys: [key] }]), Date.now(), undefined)
  await streamPublish(r, msg(1, 'x'))
  await eventually(async () => seen.invalidations.length, (n) => n === 1)
  await streamPublish(r, msg(2, 'k'), true)
  await r.command('XTRIM', 'shardcache:stream', 'MAXLEN', '0')
  await streamPublish(r, msg(3, 'y'))
  await eventually(async () => seen.flushes.length, (n) => n === 1)
  assert.is(seen.flushes[0]!.reason, 'gap')
  assert.equal(await b.keys(), [])
  const s = await busStats(b)
  assert.equal(s.catchUp, { runs: 1, messages: 0, fallbacks: 1 })
  await eventually(async () => seen.invalidations.length, (n) => n === 2)
  assert.equal(seen.invalidations[1]!.keys, ['y'])
})

test('catchUp "stream": after its subscriber is killed, an instance replays what it missed and keeps the rest', async () => {
  const r = await server()
  const a = await cache(r, { catchUp: 'stream' })
  const b = await cache(r, { catchUp: 'stream' })
  const seenA = record(a)
  await b.mset([['k', 'v'], ['keep', 'v']])
  await eventually(async () => seenA.invalidations.length, (n) => n === 1)
  const bId = seenA.invalidations[0]!.origin.slice(0, 8)
  const list = ((await r.command('CLIENT', 'LIST')) as Buffer).toString()
  const line = list.split('\n').find((l) => l.includes(`name=shardcache-bus-sub-${bId}`))!
  const id = /\bid=(\d+)/.exec(line)![1]!
  assert.is(await r.command('CLIENT', 'KILL', 'ID', id), 1)
  await a.delete('k')
  await eventually(() => busStats(b), (s) => s.connected && s.reconnects === 1 && s.catchUp.runs === 1)
  assert.is(await b.get('k'), undefined)
  assert.is(await b.get('keep'), 'v')
  const s = await busStats(b)
  assert.is(s.flushes, 0)
  assert.is(s.catchUp.fallbacks, 0)
})

test('createCache rejects with E_BUS_CONNECT when Redis is unreachable; with required: false it starts and recovers', async () => {
  const r = await server()
  await r.kill()
  try {
    await createCache({ shards: 1, bus: { redis: r.url, connectTimeout: 500 } })
    assert.unreachable('createCache should have rejected')
  } catch (err) {
    assert.is((err as { code?: string }).code, 'E_BUS_CONNECT')
    assert.match((err as Error).message, 'options.bus.redis')
    assert.ok((err as Error).cause instanceof Error)
  }
  const c = await cache(r, { required: false })
  await c.set('k', 'v')
  assert.is(await c.get('k'), 'v')
  assert.is((await busStats(c)).connected, false)
  await r.restart()
  await eventually(() => busStats(c), (s) => s.connected, 10_000)
  // Entries cached while no invalidation could arrive are dropped once subscribed.
  assert.is(await c.get('k'), undefined)
  assert.is((await busStats(c)).flushes, 1)
})

test('close with the server down (or paused) does not hang, and nothing is left running', async () => {
  const r = await server()
  const a = await createCache({ shards: 1, bus: { redis: r.url, heartbeat: HEARTBEAT } })
  const b = await createCache({ shards: 1, bus: { redis: r.url, heartbeat: HEARTBEAT } })
  await a.set('k', 'v')
  r.pause()
  try {
    const t0 = performance.now()
    await b.close()
    assert.ok(performance.now() - t0 < 2000, `close took ${(performance.now() - t0).toFixed(0)} ms with the server paused`)
  } finally {
    r.resume()
  }
  await r.kill()
  await a.delete('k') // queued: close must not wait for it forever
  const t1 = performance.now()
  await a.close()
  assert.ok(performance.now() - t1 < 2000, `close took ${(performance.now() - t1).toFixed(0)} ms with the server down`)
  try {
    await a.get('k')
    assert.unreachable('a closed cache must reject')
  } catch (err) {
    assert.is((err as { code?: string }).code, 'E_CLOSED')
  }
})

test('bus.redis takes ioredis options or a client; a client is duplicated, and left open by close()', async () => {
  const r = await server()
  const client = new Redis(r.url)
  try {
    const a = await createCache({ shards: 1, bus: { redis: client, heartbeat: HEARTBEAT } })
    open.push(a)
    const b = await createCache({ shards: 1, bus: { redis: { host: '127.0.0.1', port: r.port }, heartbeat: HEARTBEAT } })
    open.push(b)
    await b.set('k', 'v')
    await a.set('k', 'new')
    await eventually(() => b.get('k'), (v) => v === undefined)
    const names = ((await r.command('CLIENT', 'LIST')) as Buffer).toString().match(/name=shardcache-bus-\w+-\w+/g)!
    assert.is(names.length, 4) // two connections per cache, none of them the application's client
    await a.close()
    assert.is(await client.ping(), 'PONG')
  } finally {
    client.disconnect()
  }
})

test('bad bus options are E_INVALID_OPTION naming the option, and no shard is left running', async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ redis: 'redis://127.0.0.1:1', secret: '' }, 'options.bus.secret'],
    [{ redis: 'redis://127.0.0.1:1', mode: 'push' }, 'options.bus.mode'],
    [{ redis: 'redis://127.0.0.1:1', maxMessageBytes: 100 }, 'options.bus.maxMessageBytes'],
    [{ redis: 'redis://127.0.0.1:1', heartbeat: 'soon' }, 'options.bus.heartbeat'],
    [{ redis: 'redis://127.0.0.1:1', maxQueue: 0 }, 'options.bus.maxQueue'],
    [{ redis: 'redis://127.0.0.1:1', required: 'yes' }, 'options.bus.required'],
    [{ redis: 'redis://127.0.0.1:1', chanel: 'x' }, 'options.bus.chanel'],
    [{ redis: 42 }, 'options.bus.redis'],
    [{}, 'options.bus.redis'],
  ]
  for (const [bus, name] of cases) {
    try {
      await createCache({ shards: 1, bus: bus as never })
      assert.unreachable(`${JSON.stringify(bus)} should be refused`)
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_INVALID_OPTION', JSON.stringify(bus))
      assert.match((err as Error).message, name)
    }
  }
  const c = await createCache({ shards: 1 })
  open.push(c)
  assert.throws(() => c.on('invalidations' as never, () => {}), (e: Error & { code?: string }) => e.code === 'E_INVALID_OPTION')
  assert.is((await c.stats()).bus, undefined)
})

test('writes from an attached worker thread are published by the owner\'s bus', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  await b.mset([['from-thread', 'stale'], ['t2', 'stale']])
  const t = new ClientThread()
  try {
    await t.attach(a)
    await t.call('set', 'from-thread', 'fresh')
    await t.call('mdelete', ['t2'])
    await eventually(() => b.keys(), (ks) => ks.length === 0)
    assert.is(await a.get('from-thread'), 'fresh')
    assert.is((await busStats(a)).published >= 1, true)
  } finally {
    await t.close()
    await t.worker.terminate()
  }
})

test.run()
