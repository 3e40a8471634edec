/**
 * What write-through costs a `set`: throughput of plain sets against sets
 * of a `sync` and an `async` write-through region on a private PostgreSQL
 * (tools/postgres_server.ts, fsync off, loopback) through `shardcache/postgres`
 * (a pg.Pool of 10), 64 sets in flight over 10,000 keys of ~60-byte records.
 * For `async`, two figures: how fast sets are acknowledged (the queue large
 * enough to hold the round), and the rate at which the store drains the queue
 * after it (the end-to-end rate the store sustains). Also the direct upsert
 * rate of the same pool (64 in flight), the store's own ceiling. Interleaved
 * rounds; medians.
 *
 *   node dist/bench/studies/write_through.js [--rounds 5] [--ms 1000]
 */
import { parseArgs } from 'node:util'
import pg from 'pg'
import { createCache } from '../../src/index.js'
import type { CacheRegion } from '../../src/index.js'
import { postgresStore } from '../../src/adapters/postgres.js'
import { PgProc } from '../../tools/postgres_server.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, ms: { type: 'string', default: '1000' } } })
const ROUNDS = Number(values.rounds)
const MS = Number(values.ms)
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user:${i}`)
const IN_FLIGHT = 64

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!

/** Ops per second of `op`, IN_FLIGHT at a time (each caller issues its next op when its last settled), for MS. */
async function rate(op: (key: string, i: number) => Promise<unknown>): Promise<{ perSecond: number; n: number }> {
  let n = 0
  const end = performance.now() + MS
  const started = performance.now()
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) {
        const i = n++
        await op(KEYS[i % KEYS.length]!, i)
      }
    }),
  )
  return { perSecond: n / ((performance.now() - started) / 1000), n }
}

const server = await PgProc.start()
const pool = new pg.Pool({ connectionString: server.url, max: 10 })
pool.on('error', () => {})
const store = postgresStore({ pool })
await store.ready()
const cache = await createCache({
  shards: 2,
  regions: {
    plain: {},
    sync: { writeThrough: { store, mode: 'sync' } },
    async: { writeThrough: { store, mode: 'async', concurrency: 10, maxQueue: 1_000_000 } },
  },
})
const record = (i: number): { id: number; name: string; plan: string; n: number } => ({ id: i, name: `user ${i}`, plan: 'pro', n: i })
const regions: Record<string, CacheRegion> = { plain: cache.region('plain'), sync: cache.region('sync'), async: cache.region('async') }
const figures: Record<string, number[]> = { plain: [], sync: [], asyncAck: [], asyncDrain: [], upsert: [] }
const subjects: [string, () => Promise<void>][] = [
  ['plain', async () => void figures.plain!.push((await rate((k, i) => regions.plain!.set(k, record(i)))).perSecond)],
  ['sync', async () => void figures.sync!.push((await rate((k, i) => regions.sync!.set(k, record(i)))).perSecond)],
  [
    'async',
    async () => {
      const started = performance.now()
      const r = await rate((k, i) => regions.async!.set(k, record(i)))
      figures.asyncAck!.push(r.perSecond)
      // Every write acknowledged was queued: the drain ends when the store took them (coalesced ones count as taken).
      while ((await cache.stats()).writeThrough!.async!.queued > 0) await new Promise((res) => setTimeout(res, 5))
      figures.asyncDrain!.push(r.n / ((performance.now() - started) / 1000))
    },
  ],
  ['upsert', async () => void figures.upsert!.push((await rate(async (k, i) => void (await store.write(k, record(i), { region: 'direct', ttlMs: undefined, tags: undefined })))).perSecond)],
]
for (let r = 0; r < ROUNDS; r++) {
  for (let i = 0; i < subjects.length; i++) await subjects[(r + i) % subjects.length]![1]()
}
const s = (await cache.stats()).writeThrough!
await cache.close()
await pool.end()
await server.stop()

const plain = median(figures.plain!)
const row = (name: string, xs: number[]): string => `${name.padEnd(34)} ${Math.round(median(xs)).toLocaleString('en-US').padStart(10)}/s  ${(median(xs) / plain).toFixed(4)}x plain`
console.log(`set throughput, ${IN_FLIGHT} in flight, ${ROUNDS} rounds of ${MS} ms, medians (PostgreSQL ${server.port}, fsync off)`)
console.log(row('plain set', figures.plain!))
console.log(row('sync write-through set', figures.sync!))
console.log(row('async write-through set (ack)', figures.asyncAck!))
console.log(row('async write-through (store drained)', figures.asyncDrain!))
console.log(row('direct upsert, same pool', figures.upsert!))
console.log(`async: ${s.async!.writes} store writes, ${s.async!.coalesced} coalesced, ${s.async!.failures} failures; sync: ${s.sync!.writes} writes, ${s.sync!.failures} failures`)
