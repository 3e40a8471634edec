/**
 * How long a `get` takes when each tier answers it: the shards (L1), the
 * Redis `l2`, and tiers of `tiers`: a Keyv `Map`, `@keyv/postgres` and
 * `postgresTier` on a private PostgreSQL (tools/postgres_server.ts, fsync
 * off, loopback). Each subject is a cache whose one tier holds 2,000 keys
 * of ~60-byte records and never copies a hit up (promotion frequency 1e9),
 * so that every read of a key the shards do not hold goes down to it.
 * Latency: reads one at a time (p50, p99, over 2,000 reads); throughput:
 * 64 in flight for `--ms`. Subjects interleaved over `--rounds`; medians.
 *
 *   node dist/bench/studies/tier_latency.js [--rounds 5] [--ms 1000]
 */
import { parseArgs } from 'node:util'
import KeyvPostgres from '@keyv/postgres'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'
import { postgresTier } from '../../src/adapters/postgres.js'
import { PgProc } from '../../tools/postgres_server.js'
import { resolveRedis } from '../../tools/redis_server.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, ms: { type: 'string', default: '1000' } } })
const ROUNDS = Number(values.rounds)
const MS = Number(values.ms)
const N = 2000
const KEYS = Array.from({ length: N }, (_, i) => `user:${i}`)
const NEVER = { promotion: { frequency: 1e9 } }

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!
const pct = (xs: number[], p: number): number => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!

async function latency(c: Cache): Promise<{ p50: number; p99: number }> {
  const t: number[] = []
  for (const k of KEYS) {
    const s = performance.now()
    await c.get(k)
    t.push((performance.now() - s) * 1000)
  }
  return { p50: pct(t, 0.5), p99: pct(t, 0.99) }
}

async function throughput(c: Cache): Promise<number> {
  let n = 0
  const end = performance.now() + MS
  const started = performance.now()
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (performance.now() < end) await c.get(KEYS[n++ % N]!)
    }),
  )
  return n / ((performance.now() - started) / 1000)
}

const server = await PgProc.start()
const redis = await resolveRedis()
const map = new Map<string, unknown>()
const keyvPg = new KeyvPostgres({ uri: server.url, table: 'bench_keyv' })
const pgTier = postgresTier({ connectionString: server.url, table: 'bench_tier' })
// Each tier is filled by a writer cache; the measured cache starts with empty shards, on the same tier.
const subjects: [string, CacheOptions][] = [
  ['L1 (the shards)', {}],
  ['tiers: Keyv Map', { tiers: [{ keyv: map, ...NEVER }] }],
  ['tiers: postgresTier', { tiers: [{ tier: pgTier, ...NEVER }] }],
  ['tiers: @keyv/postgres', { tiers: [{ keyv: keyvPg, ...NEVER }] }],
]
if (redis.target !== undefined) subjects.push(['l2: Redis', { l2: { redis: redis.target.url, prefix: 'bench-tier:', ...NEVER } }])
else console.log(`l2: Redis skipped: ${redis.skipped}`)

const record = (i: number): unknown => ({ id: i, name: `user ${i}`, plan: 'pro', n: i })
const caches: [string, Cache][] = []
for (const [name, o] of subjects) {
  const c = await createCache({ shards: 2, ...o })
  if (name === 'L1 (the shards)') for (let i = 0; i < N; i++) await c.set(KEYS[i]!, record(i))
  else {
    const writer = await createCache({ shards: 1, ...o })
    for (let i = 0; i < N; i++) await writer.set(KEYS[i]!, record(i))
    // Not closed: closing would close the shared tier (postgresTier's pool); its shards are never read.
    caches.push([`(writer of ${name})`, writer])
  }
  caches.push([name, c])
}
const measured = caches.filter(([n]) => !n.startsWith('('))
const figures = new Map(measured.map(([n]) => [n, { p50: [] as number[], p99: [] as number[], rate: [] as number[] }]))
for (let r = 0; r < ROUNDS; r++) {
  for (let i = 0; i < measured.length; i++) {
    const [name, c] = measured[(r + i) % measured.length]!
    const f = figures.get(name)!
    const l = await latency(c)
    f.p50.push(l.p50)
    f.p99.push(l.p99)
    f.rate.push(await throughput(c))
  }
}
console.log(`get served by each tier: ${N} keys, ${ROUNDS} rounds, medians (latency one read at a time; throughput 64 in flight)`)
console.log(`${'tier'.padEnd(24)} ${'p50 µs'.padStart(8)} ${'p99 µs'.padStart(8)} ${'gets/s'.padStart(10)}`)
for (const [name, f] of figures) {
  console.log(`${name.padEnd(24)} ${median(f.p50).toFixed(1).padStart(8)} ${median(f.p99).toFixed(1).padStart(8)} ${Math.round(median(f.rate)).toLocaleString('en-US').padStart(10)}`)
}
for (const [name, c] of measured) {
  const t = (await c.stats()).tiers
  if (t !== undefined) console.log(`${name}: tier hits ${t.l2.hits}, misses ${t.l2.misses}, errors ${t.l2.errors}`)
}
for (const [, c] of caches) await c.close()
await keyvPg.disconnect()
await redis.target?.stop()
await server.stop()
