/**
 * Redis killed and restarted, then paused (SIGSTOP) for seconds and resumed,
 * under continuous writes on two caches that share it as their invalidation
 * bus and their L2 tier (two caches in one process: each has its own bus
 * origin, connections and L2 client, as two processes would).
 *
 * What must hold:
 * - writes never hang: every set settles within a bound, during each outage;
 * - queues stay bounded: the bus's (`maxQueue` messages + in-flight
 *   publishes) and L2's commands awaiting Redis, sampled throughout;
 * - no stale read once things recovered: every key read on either cache is
 *   the last value written to it (on whichever cache), or a miss, never an
 *   older value, though L2 missed writes while Redis was gone or hung.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { Cache } from '../../src/index.js'
import { RedisProc } from '../fixtures/redis_proc.js'
import { eventually } from '../fixtures/bus_peer_client.js'

const HEARTBEAT_MS = 200
const L2_TIMEOUT_MS = 500
const BREAK_MS = 500
/** A set during an outage waits for L2 at most its timeout; the rest is a loaded machine's slack. */
const MAX_WRITE_MS = 10_000
const KEYS_PER_CACHE = 200
/** Concurrent writers per cache; each owns every WRITERS-th key, so a key's writes are sequential. */
const WRITERS = 4
const MAX_QUEUE = 10_000

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Phase {
  name: string
  issued: number
  failed: number
  maxWriteMs: number
  maxBusQueued: number
  maxL2Pending: number
}

test('Redis killed, restarted, paused and resumed under writes on two caches with bus and L2: writes settle, queues stay bounded, no stale read after recovery', async () => {
  const redis = await RedisProc.start()
  const caches: Cache[] = []
  let sampling = true
  let sampler: Promise<void> = Promise.resolve()
  try {
    const make = () =>
      createCache({
        shards: 1,
        bus: { redis: redis.url, heartbeat: HEARTBEAT_MS, maxQueue: MAX_QUEUE },
        l2: { redis: redis.url, timeout: L2_TIMEOUT_MS, breakDuration: BREAK_MS },
      })
    const a = await make()
    caches.push(a)
    const b = await make()
    caches.push(b)

    /** Last value written to each key, and whether a write of it failed (then the key's value is unknown). */
    const last = new Map<string, string>()
    const uncertain = new Set<string>()
    let phase: Phase = { name: 'warm-up', issued: 0, failed: 0, maxWriteMs: 0, maxBusQueued: 0, maxL2Pending: 0 }
    const phases: Phase[] = [phase]
    const nextPhase = (name: string): void => {
      phase = { name, issued: 0, failed: 0, maxWriteMs: 0, maxBusQueued: 0, maxL2Pending: 0 }
      phases.push(phase)
    }
    let stop = false
    let seq = 0
    const errors: string[] = []
    const writer = async (c: Cache, prefix: string, w: number): Promise<void> => {
      const keys = Array.from({ length: KEYS_PER_CACHE }, (_, i) => `${prefix}:${i}`).filter((_, i) => i % WRITERS === w)
      for (let n = 0; !stop; n++) {
        const key = keys[n % keys.length]!
        const value = `${prefix}#${++seq}`
        const p = phase
        p.issued++
        last.set(key, value)
        const t0 = performance.now()
        try {
          const stored = await c.set(key, value)
          if (stored !== true) throw new Error(`set resolved ${stored}`)
          uncertain.delete(key)
        } catch (err) {
          p.failed++
          uncertain.add(key)
          if (errors.length < 5) errors.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`)
        }
        p.maxWriteMs = Math.max(p.maxWriteMs, performance.now() - t0)
        if (n % 50 === 49) await sleep(1) // lets timers (heartbeats, samplers) run on a busy loop
      }
    }
    const writers = [a, b].flatMap((c, ci) => Array.from({ length: WRITERS }, (_, w) => writer(c, ci === 0 ? 'a' : 'b', w)))

    sampler = (async () => {
      while (sampling) {
        for (const c of [a, b]) {
          const s = await c.stats()
          phase.maxBusQueued = Math.max(phase.maxBusQueued, s.bus!.queued)
          phase.maxL2Pending = Math.max(phase.maxL2Pending, s.tiers!.l2.pending)
        }
        await sleep(50)
      }
    })()
    /** Both buses subscribed and both L2 breakers closed (a read gives a half-open breaker its probe). */
    const recovered = () =>
      eventually(
        async () =>
          Promise.all(
            [a, b].map(async (c) => {
              await c.get('probe')
              const s = await c.stats()
              return s.bus!.connected && s.tiers!.l2.breaker === 'closed'
            }),
          ),
        (up) => up.every(Boolean),
        30_000,
        50,
      )

    await sleep(1000)
    nextPhase('killed')
    await redis.kill()
    await sleep(1500)
    nextPhase('restarted')
    await redis.restart()
    await recovered()
    // Long enough for L2 to hold values again, which the pause then leaves behind.
    await sleep(1000)
    nextPhase('paused')
    redis.pause()
    await sleep(3000)
    redis.resume()
    // The last writes of most keys were made while Redis hung (those in flight now finish after it).
    stop = true
    await Promise.all(writers)
    nextPhase('recovery')
    await recovered()
    // Everything published has been sent, L2 has caught up, and peers had time to apply it.
    await eventually(
      async () => Promise.all([a, b].map(async (c) => (await c.stats()))),
      (ss) => ss.every((s) => s.bus!.queued === 0 && s.tiers!.l2.pending === 0 && ((s.tiers!.l2 as { unsynced?: number }).unsynced ?? 0) === 0),
      30_000,
      50,
    )
    await sleep(HEARTBEAT_MS * 3)
    sampling = false
    await sampler

    for (const p of phases) {
      console.log(
        `  ${p.name.padEnd(9)} writes ${String(p.issued).padStart(5)}, failed ${p.failed}, slowest ${p.maxWriteMs.toFixed(0)} ms; ` +
          `max bus queued ${p.maxBusQueued}, max L2 pending ${p.maxL2Pending}`,
      )
    }
    const sa = await a.stats()
    const sb = await b.stats()
    console.log(`  bus a ${JSON.stringify({ ...sa.bus, latency: undefined })}`)
    console.log(`  bus b ${JSON.stringify({ ...sb.bus, latency: undefined })}`)
    console.log(`  l2 a ${JSON.stringify(sa.tiers!.l2)} / b ${JSON.stringify(sb.tiers!.l2)}`)
    if (errors.length > 0) console.log(`  first errors: ${errors.join(' | ')}`)

    // Writes settled, within the bound, in every phase.
    for (const p of phases) {
      if (p.name !== 'recovery') assert.ok(p.issued > 0, `no write in phase ${p.name}`)
      assert.ok(p.maxWriteMs < MAX_WRITE_MS, `a write took ${p.maxWriteMs.toFixed(0)} ms in phase ${p.name}`)
      // queued = the queue (at most maxQueue, the oldest dropped beyond) + publishes in flight
      // (at most 256) + 1 for the tick's ops not yet packed.
      assert.ok(p.maxBusQueued <= MAX_QUEUE + 256 + 1, `bus queued ${p.maxBusQueued} in phase ${p.name}`)
    }
    // The flushes and reconnects the outages caused were seen.
    for (const s of [sa, sb]) {
      assert.ok(s.bus!.reconnects >= 2, `reconnects ${s.bus!.reconnects}`)
      assert.ok(s.bus!.flushes >= 2, `flushes ${s.bus!.flushes}`)
      assert.ok(s.tiers!.l2.errors > 0)
    }

    // No stale read: each key, on each cache, is its last value or a miss.
    const keys = [...last.keys()].filter((k) => !uncertain.has(k))
    assert.is(keys.length, 2 * KEYS_PER_CACHE)
    const stale: string[] = []
    const counts = { exact: 0, miss: 0 }
    for (const c of [a, b]) {
      const values = await c.mget<string>(keys)
      keys.forEach((k, i) => {
        const v = values[i]
        if (v === last.get(k)) counts.exact++
        else if (v === undefined) counts.miss++
        else stale.push(`${c === a ? 'a' : 'b'} ${k}: ${v}, last written ${last.get(k)}`)
      })
    }
    console.log(`  reads after recovery: ${counts.exact} current, ${counts.miss} misses, ${stale.length} stale`)
    assert.equal(stale.slice(0, 10), [], `${stale.length} stale reads`)

    // And the caches work normally again: every key written once more is read, exactly, on both.
    await Promise.all(keys.map((k) => (k.startsWith('a:') ? a : b).set(k, `${k} after`)))
    await eventually(
      async () => Promise.all([a, b].map(async (c) => (await c.stats()).bus!.queued)),
      (q) => q.every((n) => n === 0),
      10_000,
    )
    await eventually(
      async () => [...(await a.mget<string>(keys)), ...(await b.mget<string>(keys))],
      (vs) => vs.every((v, i) => v === `${keys[i % keys.length]} after`),
      10_000,
    )
  } finally {
    sampling = false
    await sampler.catch(() => {})
    for (const c of caches) await c.close()
    await redis.stop()
  }
})

test.run()
