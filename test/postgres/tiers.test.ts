/**
 * Tiers below the shards (`createCache({ tiers })`): Keyv stores as tiers, a
 * real PostgreSQL through `@keyv/postgres` (a private server, killed and
 * restarted here), a `Map`, the user's own Tier, and the Redis `l2` as the
 * first of them. Reads go down the list and copy a hit up; writes, deletes,
 * pattern deletes, clears and tags reach every tier; a failing tier is
 * skipped by its own breaker, and the writes it missed are deleted from it
 * once it answers, so that no instance reads them back stale.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import KeyvPostgres from '@keyv/postgres'
import { createCache } from '../../src/index.js'
import type { AdminStatus, Cache, CacheOptions, Tier, TierStats } from '../../src/index.js'
import { renderStatus } from '../../src/cli/admin.js'
import { postgresTier } from '../../src/adapters/postgres.js'
import { redisTier } from '../../src/index.js'
import { PgProc } from '../../tools/postgres_server.js'
import { RedisProc } from '../fixtures/redis_proc.js'
import { errorOf, until } from '../fixtures/helpers.js'
import { ClientThread } from '../fixtures/client_thread.js'
import type pg from 'pg'

let server: PgProc
let sql: pg.Pool
let redis: RedisProc
const open: { close?(): Promise<unknown>; disconnect?(): Promise<unknown> }[] = []
let tables = 0

test.before(async () => {
  server = await PgProc.start()
  sql = server.pool()
  redis = await RedisProc.start()
})
test.after.each(async () => {
  for (const c of open.splice(0).reverse()) await (c.close ?? c.disconnect)!.call(c)
})
test.after(async () => {
  await sql.end()
  await server.stop()
  await redis.stop()
})

/** A @keyv/postgres store on a table of its own. */
function pgStore(): { store: KeyvPostgres; table: string } {
  const table = `keyv${++tables}`
  const store = new KeyvPostgres({ uri: server.url, table })
  store.on('error', () => {})
  open.push(store)
  return { store, table }
}

async function cache(options: CacheOptions): Promise<Cache> {
  const c = await createCache({ shards: 2, ...options })
  open.push(c)
  return c
}

async function pgKeys(table: string): Promise<string[]> {
  const r = await sql.query(`SELECT key FROM ${table} ORDER BY key`)
  return r.rows.map((row: { key: string }) => row.key)
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const level = async (c: Cache, l: string): Promise<TierStats> => (await c.stats()).tiers![l as 'l2'] as TierStats

test('a read goes down the tiers and copies the hit up: L1, a Map, then PostgreSQL', async () => {
  const { store, table } = pgStore()
  // The writer has only the PostgreSQL tier: the value is there and in its own shards.
  const writer = await cache({ tiers: [{ keyv: store }] })
  await writer.set('user:1', { name: 'Ada' }, { ttl: '1h', tags: ['org:1'] })
  assert.equal(await pgKeys(table), ['shardcache:default:user:1'])
  const map = new Map<string, unknown>()
  const reader = await cache({ tiers: [{ keyv: map, name: 'memory' }, { keyv: store, name: 'pg' }] })
  assert.equal(await reader.get('user:1'), { name: 'Ada' })
  const s = await reader.stats()
  assert.is((s.tiers!.l2 as TierStats).name, 'memory')
  assert.is(s.tiers!.l2.misses, 1)
  assert.is((s.tiers!.l3 as TierStats).name, 'pg')
  assert.is((s.tiers!.l3 as TierStats).hits, 1)
  assert.is((s.tiers!.l3 as TierStats).promotions, 1)
  // Copied into the Map (with its remaining TTL and its tags) and into the shards.
  await until('the copy into the Map', () => map.has('shardcache:default:user:1'))
  const stored = JSON.parse(map.get('shardcache:default:user:1') as string) as { e: number; t: string[] }
  assert.ok(stored.e > Date.now() + 3_590_000 && stored.e <= Date.now() + 3_600_000, `expires at ${stored.e}`)
  assert.equal(stored.t, ['org:1'])
  assert.equal(await reader.get('user:1'), { name: 'Ada' })
  assert.is((await level(reader, 'l3')).hits, 1, 'the second read is the shards\' hit')
  const text = await reader.metrics()
  assert.match(text, '\nshardcache_tier_hits_total{tier="l3",name="pg"} 1\n')
  assert.match(text, '\nshardcache_tier_misses_total{tier="l2",name="memory"} 1\n')
  assert.match(text, '\nshardcache_tier_breaker_open{tier="l3",name="pg"} 0\n')
  // The operator's view lists every tier.
  const admin = await reader.serveAdmin({ token: 'secret' })
  const status = (await (await fetch(`http://127.0.0.1:${admin.port}/status`, { headers: { authorization: 'Bearer secret' } })).json()) as AdminStatus
  await admin.close()
  const shown = renderStatus(status, 'here')
  assert.match(shown, '\nL2 (memory): 0 hits, 1 misses, breaker closed\n')
  assert.match(shown, '\nL3 (pg): 1 hits, 0 misses, breaker closed\n')
  assert.is(await reader.ttl('user:1') !== undefined, true)
  // The tag came up with it: invalidating it removes every copy.
  assert.is(await reader.invalidateTag('org:1'), 1)
  assert.is(map.has('shardcache:default:user:1'), false)
  assert.equal(await pgKeys(table), [])
})

test('writes, deletes, pattern deletes and clears reach every tier; TTLs are scaled per tier', async () => {
  const { store, table } = pgStore()
  const map = new Map<string, unknown>()
  const c = await cache({ regions: { users: {} }, tiers: [{ keyv: map }, { keyv: store, ttlScale: 3 }] })
  const users = c.region('users')
  await users.mset([['a:1', 1], ['a:2', 2], ['b:1', 3]], { ttl: '10s' })
  await c.set('x', 'in default')
  const expiry = await sql.query(`SELECT value FROM ${table} WHERE key = 'shardcache:users:a:1'`)
  const e = (JSON.parse(expiry.rows[0].value as string) as { e: number }).e
  assert.ok(e > Date.now() + 29_000 && e <= Date.now() + 30_000, 'PostgreSQL keeps it 3 x 10 s')
  const m = (JSON.parse(map.get('shardcache:users:a:1') as string) as { e: number }).e
  assert.ok(m > Date.now() + 9_000 && m <= Date.now() + 10_000, 'the Map keeps it 10 s')
  assert.is(await users.delete('b:1'), true)
  assert.equal(await pgKeys(table), ['shardcache:default:x', 'shardcache:users:a:1', 'shardcache:users:a:2'])
  assert.is(await users.deleteByPattern('a:*'), 2)
  assert.equal(await pgKeys(table), ['shardcache:default:x'])
  assert.equal([...map.keys()], ['shardcache:default:x'])
  await users.set('y', 1)
  assert.is(await users.clear(), 1)
  assert.equal(await pgKeys(table), ['shardcache:default:x'])
  // touch cannot change a TTL in a Keyv tier: it drops the copy there (a miss, never a stale TTL).
  await c.touch('x', '1h')
  assert.equal(await pgKeys(table), [])
})

test('a tier whose server dies is skipped by its breaker; the writes it missed are deleted from it once it answers, so nobody reads them back', async () => {
  const table = `tier${++tables}`
  const tier = postgresTier({ connectionString: server.url, table })
  const c = await cache({ tiers: [{ tier, timeout: 500, breakDuration: 200 }] })
  await c.set('k', 'old')
  await c.set('j', 'kept')
  await server.kill()
  try {
    assert.is(await c.set('k', 'new'), true, 'the shards take the write')
    assert.is(await c.get('k'), 'new')
    for (let i = 0; i < 6; i++) assert.is(await c.get(`absent:${i}`), undefined)
    const down = await level(c, 'l2')
    assert.ok(down.errors >= 5, `errors ${down.errors}`)
    assert.is(down.unsynced, 1)
    assert.is(down.lostWrites, 1)
    assert.ok(down.breaker === 'open' || down.breaker === 'half-open', down.breaker)
  } finally {
    await server.restart()
  }
  // The old value is still in PostgreSQL until the repair deletes it; a second instance on the same table must not get it.
  await until('the repair', async () => (await level(c, 'l2')).unsynced === 0)
  assert.equal((await sql.query(`SELECT key FROM ${table}`)).rows, [{ key: 'j' }])
  const s = await level(c, 'l2')
  assert.is(s.resynced, 1)
  assert.is(s.breaker, 'closed')
  const other = await cache({ tiers: [{ tier: postgresTier({ connectionString: server.url, table }) }] })
  assert.is(await other.get('k'), undefined)
  assert.is(await other.get('j'), 'kept')
})

test('a Keyv tier that hangs (@keyv/postgres on a paused server) times out, opens its breaker, and is repaired when it answers', async () => {
  const { store, table } = pgStore()
  const c = await cache({ tiers: [{ keyv: store, timeout: 200, breakDuration: 100 }] })
  await c.set('k', 'old')
  server.signal('SIGSTOP')
  try {
    assert.is(await c.set('k', 'new'), true)
    for (let i = 0; i < 5; i++) assert.is(await c.get(`absent:${i}`), undefined)
    const s = await level(c, 'l2')
    assert.ok(s.errors >= 5, `errors ${s.errors}`)
    assert.is(s.unsynced, 1)
  } finally {
    server.signal('SIGCONT')
  }
  await until('the repair', async () => (await level(c, 'l2')).unsynced === 0)
  // The write that timed out may have landed before the repair's delete, never after it: the key is gone.
  assert.equal(await pgKeys(table), [])
  assert.is(await c.get('k'), 'new')
})

test('the Redis l2 is the first tier: a PostgreSQL hit is copied into Redis and the shards', async () => {
  const { store } = pgStore()
  const writer = await cache({ tiers: [{ keyv: store }] })
  await writer.set('deep', [1, 2, 3])
  const c = await cache({ l2: { redis: redis.url, prefix: `t${tables}:` }, tiers: [{ keyv: store, name: 'pg' }] })
  assert.equal(await c.get('deep'), [1, 2, 3])
  const s = await c.stats()
  assert.is(s.tiers!.l2.misses, 1)
  assert.is((s.tiers!.l3 as TierStats).hits, 1)
  await until('the copy into Redis', async () => (await redis.command('EXISTS', `t${tables}:default:deep`)) === 1)
  // A third instance with Redis alone finds it there.
  const top = await cache({ l2: { redis: redis.url, prefix: `t${tables}:` } })
  assert.equal(await top.get('deep'), [1, 2, 3])
  assert.is((await top.stats()).tiers!.l2.hits, 1)
})

test('redisTier: Redis anywhere in tiers, through the Tier contract (TTLs scaled by its options in tiers, tags kept)', async () => {
  const prefix = `rt${++tables}:`
  const writer = await cache({ tiers: [{ tier: await redisTier({ redis: redis.url, prefix }), ttlScale: 2 }] })
  await writer.set('k', { v: 1 }, { ttl: '1h', tags: ['t1'] })
  const pttl = (await redis.command('PTTL', `${prefix}default:k`)) as number
  assert.ok(pttl > 7_190_000 && pttl <= 7_200_000, `2 x 1 h in Redis (${pttl} ms)`)
  const map = new Map<string, unknown>()
  const reader = await cache({ tiers: [{ keyv: map }, { tier: await redisTier({ redis: redis.url, prefix }), name: 'redis' }] })
  assert.equal(await reader.get('k'), { v: 1 })
  const s = await reader.stats()
  assert.is((s.tiers!.l3 as TierStats).hits, 1)
  assert.equal((s.tiers!.l3 as TierStats).store, { hits: 1, misses: 0, errors: 0, unsynced: 0, pending: 0 })
  await until('the copy into the Map', () => map.has('shardcache:default:k'))
  assert.equal((JSON.parse(map.get('shardcache:default:k') as string) as { t: string[] }).t, ['t1'])
  assert.is(await reader.invalidateTag('t1'), 1)
  assert.is(await redis.command('EXISTS', `${prefix}default:k`), 0)
  await reader.set('p:1', 1)
  await reader.deleteByPattern('p:*')
  assert.is(await redis.command('EXISTS', `${prefix}default:p:1`), 0)
})

test('a Tier of the user\'s own, with 1 in promotion.frequency hits copied up', async () => {
  const rows = new Map<string, { bytes: Uint8Array; ttlMs: number }>()
  let reads = 0
  const mine: Tier = {
    async get(region, key) {
      reads++
      return rows.get(`${region}/${key}`)
    },
    async set(region, key, e) {
      rows.set(`${region}/${key}`, { bytes: e.bytes, ttlMs: e.ttlMs })
    },
    async delete(region, keys) {
      for (const k of keys) rows.delete(`${region}/${k}`)
    },
    async deleteMatching(region, _glob, matches) {
      for (const k of [...rows.keys()]) if (k.startsWith(`${region}/`) && matches(k.slice(region.length + 1))) rows.delete(k)
    },
    async clear(region) {
      for (const k of [...rows.keys()]) if (k.startsWith(`${region}/`)) rows.delete(k)
    },
    async invalidateTag() {
      rows.clear()
    },
    async health() {
      return true
    },
    stats: () => ({ rows: rows.size }),
  }
  const writer = await cache({ tiers: [{ tier: mine }] })
  await writer.set('v', 'from mine')
  const c = await cache({ tiers: [{ keyv: new Map() }, { tier: mine, promotion: { frequency: 1_000_000_000 } }] })
  for (let i = 0; i < 5; i++) assert.is(await c.get('v'), 'from mine')
  const l3 = await level(c, 'l3')
  assert.is(l3.name, 'tier-l3')
  assert.is(l3.hits, 5, 'never copied up: every read comes down to it')
  assert.is(l3.promotions, 0)
  assert.equal(l3.store, { rows: 1 })
  assert.is(reads, 5)
})

test('an attached thread\'s writes reach the owner\'s tiers', async () => {
  const map = new Map<string, unknown>()
  const c = await cache({ tiers: [{ keyv: map }] })
  const t = new ClientThread()
  open.push({ close: () => t.worker.terminate() })
  await t.attach(c)
  assert.is(await t.call('set', 'from-thread', { t: 1 }, { tags: ['x'] }), true)
  await until('the relayed write', () => map.has('shardcache:default:from-thread'))
  assert.equal((JSON.parse(map.get('shardcache:default:from-thread') as string) as { t: string[] }).t, ['x'])
  assert.is(await t.call('delete', 'from-thread'), true)
  await until('the relayed delete', () => !map.has('shardcache:default:from-thread'))
})

test('a tier as a region\'s write-through store: written once, before the cache, and read back through tiers by another instance', async () => {
  const table = `tier${++tables}`
  const tier = postgresTier({ connectionString: server.url, table })
  let sets = 0
  const counted: Tier = { ...tier, set: (r, k, e) => (sets++, tier.set(r, k, e)), get: (r, k) => tier.get(r, k), close: () => tier.close() }
  const c = await cache({ regions: { users: { writeThrough: { store: counted } } }, tiers: [{ tier: counted }] })
  await c.region('users').set('u:1', { name: 'Ada' }, { tags: ['org:1'] })
  assert.is(sets, 1, 'once, by the write-through (the chain leaves the region to it)')
  assert.equal((await sql.query(`SELECT region, key, tags FROM ${table}`)).rows, [{ region: 'users', key: 'u:1', tags: ['org:1'] }])
  await c.region('users').touch('u:1', '1h')
  assert.is((await sql.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, 1, 'a touch leaves the stored row')
  // Another region of the same cache goes through the chain as usual.
  await c.set('plain', 1)
  assert.is(sets, 2)
  const reader = await cache({ regions: { users: {} }, tiers: [{ tier: postgresTier({ connectionString: server.url, table }) }] })
  assert.equal(await reader.region('users').get('u:1'), { name: 'Ada' })
  assert.is(await c.region('users').delete('u:1'), true)
  assert.is((await sql.query(`SELECT count(*)::int AS n FROM ${table} WHERE region = 'users'`)).rows[0].n, 0)
})

test('lockAcrossInstances with tiers but no Redis l2: the lease is the bus\'s (update mode); without such a bus it is refused, not ignored', async () => {
  const map = new Map<string, unknown>()
  const caches = await Promise.all([0, 1, 2].map(() => cache({ tiers: [{ keyv: map }], bus: { redis: redis.url, mode: 'update', channel: `lock${tables}` } })))
  let calls = 0
  const loader = async (): Promise<unknown> => {
    calls++
    await sleep(100)
    return { shared: true }
  }
  const results = await Promise.all(caches.map((c) => c.getOrCompute('k', loader, { lockAcrossInstances: true, timeout: 2000 })))
  assert.is(calls, 1)
  for (const v of results) assert.equal(v, { shared: true })
  const alone = await cache({ tiers: [{ keyv: new Map() }] })
  const e = await errorOf(alone.getOrCompute('x', () => 1, { lockAcrossInstances: true }))
  assert.is(e.code, 'E_INVALID_OPTION')
  assert.match(e.message, 'options.lockAcrossInstances needs the Redis L2 tier (createCache({ l2 })) or a bus in update mode')
})

test('bad tiers are refused, naming the option', async () => {
  const cases: [unknown, RegExp][] = [
    [{ keyv: new Map() }, /options\.tiers must be an array of tiers like \[\{ keyv: store \}\]/],
    [[{}], /options\.tiers\[0\] must have exactly one of keyv and tier/],
    [[{ keyv: new Map(), tier: {} }], /options\.tiers\[0\] must have exactly one of keyv and tier/],
    [[{ keyv: { get() {} } }], /options\.tiers\[0\]\.keyv must be a Keyv store \(get, set, delete, clear\) or a Keyv instance/],
    [[{ keyv: new Map() }, { tier: { get() {}, set() {} } }], /options\.tiers\[1\]\.tier must implement the Tier contract: missing delete, deleteMatching, clear, invalidateTag, health/],
    [[{ keyv: new Map(), ttlScale: 0 }], /options\.tiers\[0\]\.ttlScale must be a positive number \(got 0\)/],
    [[{ keyv: new Map(), promotion: { frequency: 0.5 } }], /options\.tiers\[0\]\.promotion\.frequency/],
    [[{ keyv: new Map(), timeout: Infinity }], /options\.tiers\[0\]\.timeout must be finite/],
    [[{ keyv: new Map(), store: 1 }], /options\.tiers\[0\]\.store/],
  ]
  for (const [tiers, re] of cases) {
    const e = await errorOf(createCache({ shards: 1, tiers: tiers as never }))
    assert.is(e.code, 'E_INVALID_OPTION', String(re))
    assert.match(e.message, re)
  }
})

test.run()
