/**
 * The L2 tier and the invalidation bus on a real Redis Cluster (3 masters, 3
 * replicas, private redis-server processes), with a master SIGKILLed while two
 * caches write and read: the cluster fails over to the replica, and what the
 * caches serve afterwards is checked key by key.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache, CacheError } from '../../src/index.js'
import type { Cache, CacheOptions, InvalidationEvent } from '../../src/index.js'
import { slotOf, keyInSlotOf } from '../../src/redis/cluster_slot.js'
import { RedisCluster } from '../fixtures/redis_cluster.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `check` every 25 ms until it holds; fails the test naming `what` after `ms`. */
async function waitFor(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(25)
  }
}

/** An op that has not settled after this long counts as hung (the L2 timeout is 500 ms, the bus never blocks a call). */
const HANG_MS = 8000
/** Every op must settle within this, failover or not (generous for a loaded 2-core machine). */
const OP_BOUND_MS = 5000
/** Keys each cache writes (and both read). */
const KEYS = 40
/** Concurrent traffic loops per cache; loop j writes the keys i with i % LOOPS === j, so one key's writes never overlap. */
const LOOPS = 4

let cluster: RedisCluster | undefined
const open: Cache[] = []

test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
  await cluster?.stop()
  cluster = undefined
})

test('slot helpers agree with the server: CLUSTER KEYSLOT, and the stream key in the channel\'s slot', async () => {
  cluster = await RedisCluster.start({ masters: 3, replicas: 0 })
  for (const k of ['shardcache', 'orders', '{orders}:x', 'a{b}c', 'x{}y', 'é', '{shardcache}:stream']) assert.is(slotOf(k), await cluster.keySlot(k), k)
  for (const ch of ['shardcache', 'orders', 'tenant:{42}:bus', 'x{y']) {
    const key = keyInSlotOf(ch, ':stream')!
    assert.is(await cluster.keySlot(key), await cluster.keySlot(ch), ch)
  }
  assert.is(keyInSlotOf('shardcache', ':stream'), '{shardcache}:stream')
  assert.is(keyInSlotOf('t:{42}', ':stream'), 't:{42}:stream')
  assert.is(keyInSlotOf('a}b', ':stream'), undefined)
  assert.is(keyInSlotOf('a{}b', ':stream'), undefined)
})

test('bad cluster options are E_INVALID_OPTION naming the option', async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ bus: { redis: { cluster: [] } } }, 'options.bus.redis.cluster'],
    [{ bus: { redis: { cluster: [{ host: '127.0.0.1', port: 0 }] } } }, 'options.bus.redis.cluster[0]'],
    [{ bus: { redis: { cluster: ['127.0.0.1:7000'], nodes: 1 } } }, 'options.bus.redis.nodes'],
    [{ bus: { redis: { cluster: ['127.0.0.1:7000'], options: 5 } } }, 'options.bus.redis.options'],
    [{ bus: { redis: { cluster: ['127.0.0.1:7000'] }, channel: 'a}b' } }, 'options.bus.channel'],
    [{ l2: { redis: { cluster: [42] } } }, 'options.l2.redis.cluster[0]'],
  ]
  for (const [o, name] of cases) {
    try {
      await createCache({ shards: 1, ...o } as CacheOptions)
      assert.unreachable(name)
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_INVALID_OPTION', (err as Error).message)
      assert.ok((err as Error).message.includes(name), `${(err as Error).message} names ${name}`)
    }
  }
})

test('catchUp "stream" on a cluster: the stream is {channel}:stream on the channel\'s master; a subscriber cut off resubscribes and replays what it missed', async () => {
  cluster = await RedisCluster.start({ masters: 3, replicas: 0 })
  const channel = 'orders'
  const master = await cluster.masterOf(await cluster.keySlot(channel))
  const options: CacheOptions = { shards: 1, bus: { redis: { cluster: cluster.startupNodes }, channel, catchUp: 'stream', heartbeat: 200 } }
  const a = await createCache(options)
  open.push(a)
  const b = await createCache(options)
  open.push(b)
  await b.set('k', 'old')
  await a.set('k', 'new')
  await waitFor('b dropped k', 5000, async () => (await b.get('k')) === undefined)
  const { sendCommand } = await import('../fixtures/redis_proc.js')
  assert.is(await sendCommand(master, ['XLEN', '{orders}:stream']), 2, 'both messages are in the stream, on the master of the channel\'s slot')
  // Cut b's subscriber off (the server closes it), and write while it is away.
  await b.set('x', 'stale')
  const runs = (await b.stats()).bus!.catchUp.runs
  const list = String(await sendCommand(master, ['CLIENT', 'LIST']))
  const id = list.split('\n').find((l) => l.includes('name=shardcache-bus-sub-'))
  assert.ok(id !== undefined, 'a sharded subscriber on the master')
  const sent = (await a.stats()).bus!.published
  await sendCommand(master, ['CLIENT', 'KILL', 'ID', id!.match(/id=(\d+)/)![1]!])
  // The kill lands on one of the two subscribers; both are reconnected within a heartbeat or two.
  await a.set('x', 'new')
  await waitFor('a published', 5000, async () => (await a.stats()).bus!.published > sent)
  await waitFor('the subscribers are back', 10_000, async () => (await a.stats()).bus!.connected && (await b.stats()).bus!.connected)
  await waitFor('b applied the invalidation of x', 10_000, async () => (await b.get('x')) === undefined)
  const s = (await b.stats()).bus!
  const sa = (await a.stats()).bus!
  assert.ok(s.catchUp.runs + sa.catchUp.runs > runs, 'a replay ran after the resubscription')
  assert.is(s.catchUp.fallbacks + sa.catchUp.fallbacks, 0, 'the stream reached back: no flush')
  assert.is(s.flushes + sa.flushes, 0)
})

interface Traffic {
  /** Values a read of the key may return now: the last set that resolved, plus any later one that rejected (it may have landed). */
  allowed: Map<string, Set<string>>
  ops: { at: number; ms: number; ok: boolean; kind: 'get' | 'set'; cache: string }[]
  rejected: { code: string }[]
  untyped: unknown[]
  hung: number
}

test('a master killed mid-traffic (the one serving the bus channel): failover, traffic goes on, no stale read after recovery', async () => {
  cluster = await RedisCluster.start({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 })
  const nodes = cluster.startupNodes
  const channel = 'shardcache:fo'
  const slot = await cluster.keySlot(channel)
  const victim = await cluster.masterOf(slot)
  const unhandled: unknown[] = []
  const onUnhandled = (e: unknown): void => {
    unhandled.push(e)
  }
  process.on('unhandledRejection', onUnhandled)
  try {
    const options: CacheOptions = {
      shards: 1,
      bus: { redis: { cluster: nodes }, channel, heartbeat: 250 },
      l2: { redis: { cluster: nodes }, prefix: 'fo:', timeout: 500, breakDuration: '1s' },
    }
    const a = await createCache(options)
    open.push(a)
    const b = await createCache(options)
    open.push(b)
    const caches: Record<string, Cache> = { a, b }
    const all = [...Array(KEYS).keys()].flatMap((i) => [`a:${i}`, `b:${i}`])
    const t: Traffic = { allowed: new Map(), ops: [], rejected: [], untyped: [], hung: 0 }
    for (const k of all) t.allowed.set(k, new Set())

    const timed = async <T>(name: string, kind: 'get' | 'set', p: Promise<T>): Promise<{ ok: boolean; value?: T }> => {
      const t0 = performance.now()
      let hang: NodeJS.Timeout | undefined
      const hung = new Promise<'hung'>((r) => (hang = setTimeout(() => r('hung'), HANG_MS)))
      try {
        const out = await Promise.race([p, hung])
        if (out === 'hung') {
          t.hung++
          p.catch(() => {})
          return { ok: false }
        }
        t.ops.push({ at: Date.now(), ms: performance.now() - t0, ok: true, kind, cache: name })
        return { ok: true, value: out as T }
      } catch (err) {
        t.ops.push({ at: Date.now(), ms: performance.now() - t0, ok: false, kind, cache: name })
        if (err instanceof CacheError) t.rejected.push({ code: err.code })
        else t.untyped.push(err)
        return { ok: false }
      } finally {
        clearTimeout(hang)
      }
    }

    let running = true
    let seq = 0
    const loop = async (name: string, j: number): Promise<void> => {
      const c = caches[name]!
      const mine = [...Array(KEYS).keys()].filter((i) => i % LOOPS === j).map((i) => `${name}:${i}`)
      while (running) {
        const key = mine[Math.floor(Math.random() * mine.length)]!
        const value = `${key}#${++seq}`
        const r = await timed(name, 'set', c.set(key, value))
        const allowed = t.allowed.get(key)!
        if (r.ok) allowed.clear()
        allowed.add(value)
        for (let n = 0; n < 3; n++) await timed(name, 'get', c.get(all[Math.floor(Math.random() * all.length)]!))
      }
    }
    const loops = ['a', 'b'].flatMap((name) => [...Array(LOOPS).keys()].map((j) => loop(name, j)))

    await sleep(800)
    const killedAt = Date.now()
    await cluster.kill(victim)
    const promoted = await cluster.waitForFailover(slot, victim)
    const failoverMs = Date.now() - killedAt
    await waitFor('both buses subscribed again', 15_000, async () => (await a.stats()).bus!.connected && (await b.stats()).bus!.connected)
    const busBackMs = Date.now() - killedAt
    // Traffic after the failover, then quiet.
    const recoveredAt = Date.now()
    await sleep(1000)
    running = false
    await Promise.all(loops)

    // Nothing in flight on either bus, then a fence each way: a peer that applied the fence applied everything before it.
    await waitFor('bus queues drained', 10_000, async () => (await a.stats()).bus!.queued === 0 && (await b.stats()).bus!.queued === 0)
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const seen = new Promise<void>((resolve) => {
        const on = (e: InvalidationEvent): void => {
          if (e.keys?.includes('fence')) resolve()
        }
        to.on('invalidation', on)
      })
      await from.set('fence', Date.now())
      await Promise.race([seen, sleep(10_000).then(() => Promise.reject(new Error('fence not seen within 10 s')))])
    }

    // Key by key, on both caches: the last value written (or a later one whose set was rejected), never an older one.
    const stale: string[] = []
    let misses = 0
    for (const c of [a, b]) {
      for (const k of all) {
        const got = await c.get<string>(k)
        const allowed = t.allowed.get(k)!
        if (got === undefined) {
          if (allowed.size > 0) misses++
        } else if (!allowed.has(got)) {
          const { Cluster } = await import('ioredis')
          const raw = new Cluster(nodes)
          const l2v = await raw.getBuffer(`fo:default:${k}`)
          raw.disconnect()
          stale.push(`${c === a ? 'A' : 'B'} ${k}=${got} (allowed ${[...allowed].join('|')}) L2=${l2v?.subarray(13).toString()}`)
        }
      }
    }

    const sa = await a.stats()
    const sb = await b.stats()
    const window = t.ops.filter((o) => o.at >= killedAt && o.at < recoveredAt)
    const after = t.ops.filter((o) => o.at >= recoveredAt)
    // A loop, not Math.max(...ops): a quiet machine issues enough ops in the window to overflow
    // the call stack with one argument each (it did: "Maximum call stack size exceeded").
    let maxMs = 0
    for (const o of t.ops) if (o.ms > maxMs) maxMs = o.ms
    const figures = {
      failoverMs,
      busBackMs,
      promoted: promoted !== victim,
      ops: t.ops.length,
      windowOps: window.length,
      windowFailed: window.filter((o) => !o.ok).length,
      windowOver100ms: window.filter((o) => o.ms > 100).length,
      maxOpMs: Math.round(maxMs),
      afterOps: after.length,
      rejected: t.rejected.length,
      l2Errors: sa.tiers!.l2.errors + sb.tiers!.l2.errors,
      l2Skipped: sa.tiers!.l2.skipped + sb.tiers!.l2.skipped,
      busFlushes: [sa.bus!.flushes, sb.bus!.flushes],
      misses,
      stale: stale.length,
    }
    console.log(`cluster failover figures: ${JSON.stringify(figures)}`)

    assert.equal(unhandled, [], 'no unhandled rejection')
    assert.is(t.hung, 0, 'no op hung')
    assert.equal(t.untyped, [], 'every rejection is a typed CacheError')
    assert.ok(maxMs < OP_BOUND_MS, `every op settled within ${OP_BOUND_MS} ms (slowest ${Math.round(maxMs)} ms)`)
    assert.ok(after.filter((o) => o.cache === 'a' && o.ok).length > 0 && after.filter((o) => o.cache === 'b' && o.ok).length > 0, 'traffic goes on after the failover')
    assert.ok(after.filter((o) => o.ok).length === after.length, 'no op fails after the failover')
    assert.equal(stale, [], 'no stale read after recovery')
    for (const s of [sa.bus!, sb.bus!]) {
      assert.ok(s.connected)
      assert.ok(s.reconnects >= 1, 'the subscription was re-established')
      // The lost link flushed (its 'disconnect'), and the new subscription flushed again ('reconnect').
      assert.ok(s.flushes >= 2, `the gap was flushed (${s.flushes} flushes)`)
    }
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
})

test.run()
