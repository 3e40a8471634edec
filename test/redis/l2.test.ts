/**
 * The Redis L2 tier against a real, private redis-server: reads that miss in
 * the shards and promote (with L2's remaining TTL, 1 in promotion.frequency),
 * writes and removals in both tiers, the stored encoding (compressed as the
 * shards do; corrupt or foreign values are misses), tags, getOrCompute
 * through L2, writes of attached threads, an L2 that dies and comes back
 * (breaker), and `required`.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'
import { RedisProc } from '../fixtures/redis_proc.js'
import { Cluster } from 'ioredis'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, spawnRedisServer } from '../../tools/redis_server.js'
import { eventually } from '../fixtures/bus_peer_client.js'
import { ClientThread } from '../fixtures/client_thread.js'
import { errorOf } from '../fixtures/helpers.js'

const open: Cache[] = []
const servers: RedisProc[] = []

async function server(): Promise<RedisProc> {
  const r = await RedisProc.start()
  servers.push(r)
  return r
}

async function cache(r: RedisProc, l2: Record<string, unknown> = {}, more: CacheOptions = {}): Promise<Cache> {
  const c = await createCache({ shards: 2, ...more, l2: { redis: r.url, ...l2 } })
  open.push(c)
  return c
}

const tiers = async (c: Cache) => (await c.stats()).tiers!
const raw = async (r: RedisProc, key: string) => (await r.command('GET', `shardcache:default:${key}`)) as Buffer | null

test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
  for (const s of servers.splice(0)) await s.stop()
})

test('a miss in the shards reads L2 and promotes the value with L2\'s remaining TTL; types survive', async () => {
  const r = await server()
  const a = await cache(r, { ttlScale: 2 })
  const b = await cache(r, { ttlScale: 2 })
  await a.set('obj', { n: 1, list: [true] }, { ttl: 10_000 })
  await a.set('buf', Buffer.from([0, 1, 255]))
  await a.set('str', 'text')
  // L2's TTL is ttl x ttlScale.
  const pttl = (await r.command('PTTL', 'shardcache:default:obj')) as number
  assert.ok(pttl > 19_000 && pttl <= 20_000, `pttl ${pttl}`)
  assert.equal(await b.get('obj'), { n: 1, list: [true] })
  assert.equal(await b.get('buf'), Buffer.from([0, 1, 255]))
  assert.ok(Buffer.isBuffer(await b.get('buf')))
  assert.is(await b.get('str'), 'text')
  assert.equal(await b.mget(['str', 'nope', 'obj']), ['text', undefined, { n: 1, list: [true] }])
  // Promoted: the shards answer now, with the TTL L2 had left.
  const ttl = (await b.ttl('obj'))!
  assert.ok(ttl > 19_000 && ttl <= 20_000, `promoted ttl ${ttl}`)
  assert.is(await b.ttl('str'), Infinity)
  const t = await tiers(b)
  assert.equal(t.l2, { hits: 3, misses: 1, errors: 0, promotions: 3, corrupt: 0, skipped: 0, resynced: 0, resyncFlushes: 0, breaker: 'closed', unsynced: 0, unsyncedOverflow: false, pending: 0, lostWrites: 0, repaired: 0, repairPending: 0 })
  assert.is(t.l1.misses, 4) // obj, buf, str, nope; the mget's str and obj were promoted
  const text = await b.metrics()
  assert.match(text, '\nshardcache_l2_hits_total 3\n')
  assert.match(text, '\nshardcache_l2_breaker_open 0\n')
})

test('with promotion.frequency, L2 hits are served without being written into the shards', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r, { promotion: { frequency: 1_000_000_000 } })
  await a.set('k', 'v')
  for (let i = 0; i < 5; i++) assert.is(await b.get('k'), 'v')
  assert.is(await b.has('k'), false)
  const t = await tiers(b)
  assert.is(t.l2.hits, 5)
  assert.is(t.l2.promotions, 0)
})

test('deletes, mdelete, deleteByPattern, clear and invalidateTag reach L2; nx sets refused by the shards are not written there', async () => {
  const r = await server()
  const a = await cache(r, {}, { regions: { other: {} } })
  await a.mset([['k1', 1], ['k2', 2], ['user:1', 'u'], ['user:2', 'u'], ['tagged', 't']])
  await a.set('tagged', 't', { tags: ['t'] })
  await a.region('other').set('o', 1)
  await a.delete('k1')
  await a.mdelete(['k2'])
  await a.deleteByPattern('user:[1]')
  assert.is(await raw(r, 'k1'), null)
  assert.is(await raw(r, 'k2'), null)
  assert.is(await raw(r, 'user:1'), null)
  assert.ok((await raw(r, 'user:2')) !== null)
  await a.invalidateTag('t')
  assert.is(await raw(r, 'tagged'), null)
  assert.is(await r.command('EXISTS', 'shardcache:tag:t'), 0)
  await a.clear()
  assert.is(await raw(r, 'user:2'), null)
  assert.is(await r.command('EXISTS', 'shardcache:other:o'), 1)
  await a.set('n', 'first')
  assert.is(await a.set('n', 'second', { nx: true }), false)
  const b = await cache(r)
  assert.is(await b.get('n'), 'first')
})

test('a value promoted from L2 keeps its tags: a peer\'s invalidateTag removes the promoted copy too', async () => {
  const r = await server()
  // timeout 200 ms: a fill window of 400 ms after a peer's invalidation.
  const a = await cache(r, { timeout: 200 }, { bus: { redis: r.url } })
  const b = await cache(r, { timeout: 200 }, { bus: { redis: r.url } })
  // b reads each value after a's invalidation of it arrived (else that invalidation could drop b's copy).
  const arrived = (): Promise<void> =>
    new Promise((resolve) => {
      const on = (): void => {
        b.off('invalidation', on)
        resolve()
      }
      b.on('invalidation', on)
    })
  let seen = arrived()
  await a.set('doc', { v: 1 }, { tags: ['org:7'] })
  await seen
  await new Promise((r) => setTimeout(r, 450)) // the promotion waits out the fill window after a peer's invalidation
  assert.equal(await b.get('doc'), { v: 1 }) // from L2, promoted into b's shards
  assert.is((await tiers(b)).l2.promotions, 1)
  assert.is(await b.invalidateTag('org:7'), 1, 'b\'s promoted copy carries the tag')
  seen = arrived()
  await a.set('doc2', { v: 2 }, { tags: ['org:8'] })
  await seen
  await new Promise((r) => setTimeout(r, 450))
  assert.equal(await b.get('doc2'), { v: 2 })
  assert.is((await tiers(b)).l2.promotions, 2)
  await a.invalidateTag('org:8')
  // The peer's invalidation reaches b's promoted copy.
  await eventually(() => b.get('doc2'), (v) => v === undefined)
})

test('atomic operations keep L2 coherent: incr, cas and take remove the key there, touch sets its TTL', async () => {
  const r = await server()
  const a = await cache(r, { ttlScale: 2 })
  await a.mset([['n', 1], ['c', 'x'], ['t', 'y'], ['ttl', 'z']])
  assert.is(await a.incr('n'), 2)
  assert.is(await a.cas('c', 'x', 'x2'), true)
  assert.is(await a.take('t'), 'y')
  for (const k of ['n', 'c', 't']) assert.is(await raw(r, k), null, k)
  assert.is(await a.touch('ttl', 1000), true)
  const pttl = (await r.command('PTTL', 'shardcache:default:ttl')) as number
  assert.ok(pttl > 1900 && pttl <= 2000, `pttl ${pttl}`)
})

test('values are stored as the shards store them, compressed from minBytes; corrupt and foreign values are misses, counted', async () => {
  const r = await server()
  const a = await cache(r, {}, { regions: { default: { compression: { minBytes: 100 } } } })
  const text = 'abc'.repeat(1000)
  await a.set('big', text)
  await a.set('small', 'tiny')
  const big = (await raw(r, 'big'))!
  assert.equal([...big.subarray(0, 5)], [0x53, 0x43, 1, 0, 1]) // "SC", version 1, string, LZ4
  assert.ok(big.length < 200, `compressed to ${big.length} bytes`)
  assert.is((await raw(r, 'small'))![4], 0)
  const b = await cache(r, {}, { regions: { default: { compression: { minBytes: 100 } } } })
  assert.is(await b.get('big'), text)
  await r.command('SET', 'shardcache:default:foreign', 'hello')
  const flipped = Buffer.from(big)
  flipped[big.length - 3] = flipped[big.length - 3]! ^ 0xff
  await r.command('SET', 'shardcache:default:flipped', flipped)
  const c = await cache(r)
  assert.is(await c.get('foreign'), undefined)
  assert.is(await c.get('flipped'), undefined)
  const t = await tiers(c)
  assert.is(t.l2.corrupt, 2)
  assert.is(t.l2.misses, 2)
})

test('getOrCompute reads L2 before running the loader; its result goes to both tiers', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  let calls = 0
  const loader = async () => {
    calls++
    return { computed: true }
  }
  assert.equal(await a.getOrCompute('c', loader, { ttl: '1m' }), { computed: true })
  // One L2 read before the loader, not a second one in the flight's re-check.
  assert.equal((await tiers(a)).l2, { hits: 0, misses: 1, errors: 0, promotions: 0, corrupt: 0, skipped: 0, resynced: 0, resyncFlushes: 0, breaker: 'closed', unsynced: 0, unsyncedOverflow: false, pending: 0, lostWrites: 0, repaired: 0, repairPending: 0 })
  assert.equal(await b.getOrCompute('c', loader, { ttl: '1m' }), { computed: true })
  assert.is(calls, 1)
  assert.is((await tiers(b)).l2.hits, 1)
})

test('lockAcrossInstances: of three instances missing a key at once, one runs the loader; the others take its value from L2', async () => {
  const r = await server()
  const caches = [await cache(r), await cache(r), await cache(r)]
  let calls = 0
  const loader = async () => {
    calls++
    await new Promise((res) => setTimeout(res, 150))
    return { report: 42 }
  }
  const results = await Promise.all(caches.map((c) => c.getOrCompute('report', loader, { ttl: '1m', lockAcrossInstances: true })))
  assert.is(calls, 1)
  for (const v of results) assert.equal(v, { report: 42 })
  // The lease is released once the value is in L2.
  assert.is(await r.command('EXISTS', 'shardcache:lock:default:report'), 0)
  // Without the option every instance runs its own loader.
  await Promise.all(caches.map((c) => c.delete('plain')))
  await Promise.all(caches.map((c) => c.getOrCompute('plain', loader)))
  assert.is(calls, 4)
})

test('lockAcrossInstances: when the lease holder fails, the waiters stop waiting at the lease\'s end and load themselves', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  let bCalls = 0
  // b starts once a's loader runs, which is once a holds the lease (a fixed head start lost the race on a
  // loaded machine: b took the lease first and loaded at once).
  let aLoading!: () => void
  const aHoldsLease = new Promise<void>((res) => (aLoading = res))
  const failing = async () => {
    aLoading()
    await new Promise((res) => setTimeout(res, 50))
    throw new Error('a failed')
  }
  // The lease is taken after this moment, so it ends 300 ms after it at the earliest, however slow the machine.
  const t0 = Date.now()
  const aRun = a.getOrCompute('k', failing, { lockAcrossInstances: true, timeout: 300 }).catch((e: Error) => e.message)
  await aHoldsLease
  const bRun = b.getOrCompute('k', async () => `b${++bCalls}`, { lockAcrossInstances: true, timeout: 300 })
  assert.is(await aRun, 'a failed')
  // b looked for a's value in L2 until the lease's end; none came, so it loaded itself.
  assert.is(await bRun, 'b1')
  const waited = Date.now() - t0
  assert.ok(waited >= 299 && waited < 10_000, `b finished ${waited} ms after a asked`)
  assert.is(bCalls, 1)
  // Without L2 (or an update-mode bus) there is no shared place for the value.
  const err = await errorOf(
    createCache({ shards: 1 }).then(async (c) => {
      open.push(c)
      await c.getOrCompute('x', () => 1, { lockAcrossInstances: true })
    }),
  )
  assert.is(err.code, 'E_INVALID_OPTION')
  assert.match(err.message, 'options.lockAcrossInstances')
})

test('writes of an attached thread reach L2 through the owner', async () => {
  const r = await server()
  const a = await cache(r)
  const b = await cache(r)
  const t = new ClientThread()
  try {
    await t.attach(a)
    await t.call('set', 'from-thread', { x: 1 }, { tags: ['th'] })
    await eventually(() => b.get('from-thread'), (v) => v !== undefined)
    assert.equal(await b.get('from-thread'), { x: 1 })
    await t.call('invalidateTag', 'th')
    await eventually(() => raw(r, 'from-thread'), (v) => v === null)
  } finally {
    await t.worker.terminate()
  }
})

test('when L2 dies the shards keep serving; the breaker opens after 5 failures and closes once L2 answers again', async () => {
  const r = await server()
  const a = await cache(r, { breakDuration: 300, timeout: 200 })
  await a.set('k', 'v')
  await r.kill()
  for (let i = 0; i < 5; i++) assert.is(await a.set(`down:${i}`, i), true)
  assert.is(await a.get('k'), 'v')
  assert.is(await a.get('never'), undefined)
  let t = await tiers(a)
  assert.is(t.l2.errors, 5)
  assert.is(t.l2.breaker, 'open')
  assert.is(t.l2.skipped, 1) // the miss of "never" did not call L2
  await r.restart()
  await new Promise((res) => setTimeout(res, 350))
  await eventually(
    async () => {
      await a.set('after', 1)
      return raw(r, 'after')
    },
    (v) => v !== null,
    5000,
    100,
  )
  t = await tiers(a)
  assert.is(t.l2.breaker, 'closed')
})

test('required: createCache rejects with E_L2_UNAVAILABLE when L2 is unreachable, and operations reject when it fails, naming where and why', async () => {
  const r = await server()
  const at = `Redis at 127.0.0.1:${r.port} (options.l2.redis)`
  await r.kill()
  try {
    await createCache({ shards: 1, l2: { redis: r.url, required: true, timeout: 200 } })
    assert.unreachable('should reject')
  } catch (err) {
    assert.is((err as { code?: string }).code, 'E_L2_UNAVAILABLE')
    assert.is((err as Error).message, `cannot connect the L2 tier to ${at}: connection refused (ECONNREFUSED)`)
  }
  await r.restart()
  const a = await cache(r, { required: true, timeout: 200, breakDuration: '10m' })
  await a.set('k', 'v')
  await r.kill()
  // Not ioredis's "Stream isn't writeable and enableOfflineQueue options is false": the
  // address, the option, and (once a reconnect was refused) why.
  const first = await errorOf(a.delete('k'))
  assert.is(first.code, 'E_L2_UNAVAILABLE')
  assert.match(first.message, new RegExp(`^the L2 tier failed on ${at.replace(/[.()]/g, '\\$&')}: not connected(: connection refused \\(ECONNREFUSED\\))?$`))
  assert.ok((first.cause as Error).message.length > 0)
  // Then the breaker opens (5 failures in a row) and says so, with the last failure's reason.
  const breaker =
    `the L2 tier is unavailable: its circuit breaker is open after 5 failures in a row on ${at}; ` +
    'the last: not connected: connection refused (ECONNREFUSED); it tries again after options.l2.breakDuration (600000 ms)'
  const last = await eventually(
    async () => (await errorOf(a.delete('k'))).message,
    (m) => m === breaker,
    10_000,
    100,
  )
  assert.is(last, breaker)
  assert.is((await tiers(a)).l2.breaker, 'open')
})

test('Redis Cluster (three local masters, slots split between them), through ioredis\' Cluster client: reads, writes, patterns, tags', async () => {
  const { sendCommand } = await import('../fixtures/redis_proc.js')
  const dir = mkdtempSync(join(tmpdir(), 'shardcache-cluster-'))
  const nodes: Awaited<ReturnType<typeof spawnRedisServer>>[] = []
  const ranges = [
    ['0', '5460'],
    ['5461', '10922'],
    ['10923', '16383'],
  ]
  let cluster: Cluster | undefined
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const args = ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${i}.conf`), '--cluster-announce-ip', '127.0.0.1']
      nodes.push(await spawnRedisServer(port, 'redis-server', 5000, args))
    }
    for (let i = 0; i < 3; i++) {
      assert.is(await sendCommand(nodes[i]!.port, ['CLUSTER', 'ADDSLOTSRANGE', ...ranges[i]!]), 'OK')
      if (i > 0) await sendCommand(nodes[i]!.port, ['CLUSTER', 'MEET', '127.0.0.1', String(nodes[0]!.port)])
    }
    for (const n of nodes) {
      await eventually(async () => String(await sendCommand(n.port, ['CLUSTER', 'INFO'])), (info) => info.includes('cluster_state:ok') && info.includes('cluster_known_nodes:3'), 15_000, 50)
    }
    cluster = new Cluster([{ host: '127.0.0.1', port: nodes[0]!.port }], { lazyConnect: true })
    const make = async (shards: number): Promise<Cache> => {
      const c = await createCache({ shards, l2: { redis: cluster!, prefix: 'c:' } })
      open.push(c)
      return c
    }
    const a = await make(2)
    const b = await make(2)
    // Keys in many slots on three nodes: one mset spans them, and so do the tag set and the pattern delete (a SCAN per master).
    const entries = Array.from({ length: 60 }, (_, i) => [`item:${i}`, { i }] as [string, { i: number }])
    await a.mset(entries, { tags: ['items'] })
    const owners = new Set<string>()
    for (const [k] of entries) owners.add(String(await sendCommand(nodes[0]!.port, ['CLUSTER', 'KEYSLOT', `c:default:${k}`])))
    assert.ok(owners.size > 30, 'the keys fall in many slots')
    assert.equal(await b.mget(['item:0', 'item:59']), [{ i: 0 }, { i: 59 }])
    await a.deleteByPattern('item:1*')
    const c = await make(1)
    assert.is(await c.get('item:1'), undefined)
    assert.is(await c.get('item:12'), undefined)
    assert.equal(await c.get('item:2'), { i: 2 })
    await a.invalidateTag('items')
    const d = await make(1)
    assert.equal(await d.mget(['item:2', 'item:59']), [undefined, undefined])
    assert.is((await d.stats()).tiers!.l2.errors, 0)
    // The application's Cluster client is not closed (nor connected) by the caches.
    for (const x of open.splice(0)) await x.close()
    assert.is(cluster.status, 'wait')
  } finally {
    cluster?.disconnect()
    for (const n of nodes) await n.stop()
  }
})

test('bad l2 options are E_INVALID_OPTION naming the option', async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ redis: 42 }, 'options.l2.redis'],
    [{ redis: 'redis://127.0.0.1:1', ttlScale: 0.5 }, 'options.l2.ttlScale'],
    [{ redis: 'redis://127.0.0.1:1', promotion: { frequency: 0 } }, 'options.l2.promotion.frequency'],
    [{ redis: 'redis://127.0.0.1:1', timeout: 'soon' }, 'options.l2.timeout'],
    [{ redis: 'redis://127.0.0.1:1', required: 'yes' }, 'options.l2.required'],
    [{ redis: 'redis://127.0.0.1:1', ttl: 5 }, 'options.l2.ttl'],
  ]
  for (const [l2, name] of cases) {
    try {
      await createCache({ shards: 1, l2: l2 as never })
      assert.unreachable(name)
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_INVALID_OPTION', (err as Error).message)
      assert.match((err as Error).message, name)
    }
  }
})

test.run()
