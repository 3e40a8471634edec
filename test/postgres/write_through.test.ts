/**
 * Write-through to a real PostgreSQL (a private server for this file, that the
 * tests kill, pause and restart) through `shardcache/postgres`: sync writes
 * reach the table before the cache, and a failing or hanging store rejects
 * them and leaves the key out of the cache; async writes are acknowledged by
 * the cache and reach the table behind, through a bounded queue that retries
 * across a server restart, refuses writes when full (changing nothing), and
 * reports what it gives up; incr, cas, take, nx and xx are refused on such a
 * region; a getOrCompute fill does not overwrite a pending write; attached
 * threads' writes go through the owner's store.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { AdminStatus, Cache, CacheOptions, WriteErrorEvent, WriteStore } from '../../src/index.js'
import { renderStatus } from '../../src/cli/admin.js'
import { postgresStore } from '../../src/adapters/postgres.js'
import type { PostgresStore } from '../../src/adapters/postgres.js'
import { PgProc } from '../../tools/postgres_server.js'
import { errorOf, until } from '../fixtures/helpers.js'
import { ClientThread } from '../fixtures/client_thread.js'
import type pg from 'pg'

let server: PgProc
let sql: pg.Pool
const open: { close(): Promise<unknown> }[] = []
let tables = 0

test.before(async () => {
  server = await PgProc.start()
  sql = server.pool()
})
test.after.each(async () => {
  for (const c of open.splice(0).reverse()) await c.close()
})
test.after(async () => {
  await sql.end()
  await server.stop()
})

/** A store on a table of its own (each test starts empty). */
function freshStore(): PostgresStore {
  const store = postgresStore({ connectionString: server.url, table: `t${++tables}` })
  open.push(store)
  return store
}

async function cacheWith(store: WriteStore, wt: Record<string, unknown> = {}, more: CacheOptions = {}): Promise<Cache> {
  const c = await createCache({ shards: 2, regions: { users: { writeThrough: { store, ...wt } } }, ...more })
  open.push(c)
  return c
}

async function rows(store: PostgresStore): Promise<Record<string, unknown>> {
  await store.ready() // the table exists even when no write reached the server
  const r = await sql.query(`SELECT key, value, bytes FROM ${store.table} ORDER BY key`)
  return Object.fromEntries(r.rows.map((row: { key: string; value: unknown; bytes: Buffer | null }) => [row.key, row.bytes ?? row.value]))
}

test('sync: set, mset, delete and mdelete reach the table, then the cache; TTLs become expires_at; binary values are bytea', async () => {
  const store = freshStore()
  const c = await cacheWith(store)
  const users = c.region('users')
  assert.is(await users.set('u:1', { name: 'Ada', n: 1 }), true)
  assert.equal(await rows(store), { 'u:1': { name: 'Ada', n: 1 } })
  assert.equal(await users.get('u:1'), { name: 'Ada', n: 1 })
  assert.is(await users.mset([['u:2', 'two'], ['u:3', Buffer.from([1, 2, 3])], ['u:4', null]]), 3)
  assert.equal(await rows(store), { 'u:1': { name: 'Ada', n: 1 }, 'u:2': 'two', 'u:3': Buffer.from([1, 2, 3]), 'u:4': null })
  assert.equal(await store.read('users', 'u:3'), Buffer.from([1, 2, 3]))
  await users.set('u:5', 5, { ttl: '1h' })
  const ttl = await sql.query(`SELECT extract(epoch FROM expires_at - now()) AS s, expires_at IS NULL AS none FROM ${store.table} WHERE key = $1 OR key = 'u:1' ORDER BY key`, ['u:5'])
  assert.is(ttl.rows[0].none, true) // u:1: no TTL
  assert.ok(Number(ttl.rows[1].s) > 3590 && Number(ttl.rows[1].s) <= 3600, `expires in ${ttl.rows[1].s} s`)
  assert.is(await users.delete('u:1'), true)
  assert.is(await users.delete('u:1'), false) // absent: the store's delete is still made, and is no error
  assert.is(await users.mdelete(['u:2', 'u:3', 'nope']), 2)
  assert.equal(await rows(store), { 'u:4': null, 'u:5': 5 })
  assert.is(await users.get('u:2'), undefined)
  const s = (await c.stats()).writeThrough!.users!
  assert.equal(s, { mode: 'sync', writes: 5, deletes: 5, failures: 0, retries: 0, dropped: 0, coalesced: 0, queued: 0 })
  // A region without writeThrough writes nothing to the table.
  await c.set('other', 1)
  assert.equal(Object.keys(await rows(store)), ['u:4', 'u:5'])
})

test('sync: one key\'s concurrent writes end in the same order in the table and the cache', async () => {
  const store = freshStore()
  const c = await cacheWith(store)
  const users = c.region('users')
  await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 7 === 6 ? users.delete('k') : users.set('k', i))))
  // Write 39 is the last: a set.
  assert.equal(await rows(store), { k: 39 })
  assert.is(await users.get('k'), 39)
})

test('sync: a store that is down rejects the write with E_WRITE_THROUGH and the key leaves the cache; after a restart it works again', async () => {
  const store = freshStore()
  const c = await cacheWith(store, { timeout: '2s' })
  const users = c.region('users')
  await users.set('a', 'old')
  await users.set('b', 'old')
  await server.kill()
  try {
    const e = (await errorOf(users.set('a', 'new'))) as Error & { code?: string; keys?: string[] }
    assert.is(e.code, 'E_WRITE_THROUGH')
    assert.equal(e.keys, ['a'])
    assert.match(e.message, /regions\.users\.writeThrough\.store failed to write "a"/)
    assert.is(await users.get('a'), undefined, 'the old value is not served: the store may hold either')
    const m = (await errorOf(users.mset([['b', 'new'], ['c', 'new']]))) as Error & { code?: string; keys?: string[] }
    assert.is(m.code, 'E_WRITE_THROUGH')
    assert.equal(m.keys, ['b', 'c'])
    assert.match(m.message, /failed 2 keys of 2/)
    assert.is(await users.get('b'), undefined)
    const d = (await errorOf(users.delete('b'))) as Error & { code?: string }
    assert.is(d.code, 'E_WRITE_THROUGH')
  } finally {
    await server.restart()
  }
  assert.equal(await rows(store), { a: 'old', b: 'old' })
  assert.is(await users.set('a', 'new'), true)
  assert.equal(await rows(store), { a: 'new', b: 'old' })
  assert.is(await users.get('a'), 'new')
  const s = (await c.stats()).writeThrough!.users!
  assert.is(s.failures, 4)
})

test('sync: a store that hangs fails the write after writeThrough.timeout, and the key leaves the cache', async () => {
  const store = freshStore()
  const c = await cacheWith(store, { timeout: 300 })
  const users = c.region('users')
  await users.set('a', 'old')
  server.signal('SIGSTOP')
  let e: Error & { code?: string; cause?: unknown }
  const started = Date.now()
  try {
    e = (await errorOf(users.set('a', 'new'))) as typeof e
  } finally {
    server.signal('SIGCONT')
  }
  assert.is(e.code, 'E_WRITE_THROUGH')
  assert.match((e.cause as Error).message, /no answer to write\("a"\) within 300 ms \(writeThrough\.timeout\)/)
  assert.ok(Date.now() - started >= 290)
  assert.is(await users.get('a'), undefined)
  // The timed-out write may land once the server runs again; either way the next read loads from the store.
  await until('the server to answer', async () => (await rows(store)).a !== undefined)
  assert.ok(['old', 'new'].includes((await rows(store)).a as string))
})

test('async: set resolves from the cache, the table follows; many writes of one key coalesce; close() flushes the queue', async () => {
  const store = freshStore()
  const c = await cacheWith(store, { mode: 'async', concurrency: 2 })
  const users = c.region('users')
  server.signal('SIGSTOP')
  try {
    for (let i = 0; i < 50; i++) assert.is(await users.set('hot', i), true)
    for (let i = 0; i < 20; i++) await users.set(`k${i}`, i)
    assert.is(await users.get('hot'), 49, 'the cache has every write at once')
    const s = (await c.stats()).writeThrough!.users!
    // Two calls run (blocked by the paused server); the rest wait, hot's writes replacing each other.
    assert.ok(s.queued <= 22, `queued ${s.queued}`)
    assert.ok(s.coalesced >= 47, `coalesced ${s.coalesced}`)
  } finally {
    server.signal('SIGCONT')
  }
  await users.delete('k0')
  await c.close()
  open.splice(open.indexOf(c), 1)
  const table = await rows(store)
  assert.is(table.hot, 49)
  assert.is(table.k0, undefined)
  for (let i = 1; i < 20; i++) assert.is(table[`k${i}`], i)
})

test('async: writes made while the server is down are retried and land after it restarts, nothing lost', async () => {
  const store = freshStore()
  const c = await cacheWith(store, { mode: 'async', retryDelay: 50, attempts: 100, timeout: '1s' })
  const users = c.region('users')
  await users.set('before', 1)
  await until('the first write', async () => (await rows(store)).before === 1)
  await server.kill()
  try {
    for (let i = 0; i < 30; i++) await users.set(`k${i}`, { i })
    await users.delete('before')
    await until('failed calls', async () => (await c.stats()).writeThrough!.users!.failures >= 5)
  } finally {
    await server.restart()
  }
  await until('the queue to drain', async () => (await c.stats()).writeThrough!.users!.queued === 0)
  const table = await rows(store)
  assert.equal(Object.keys(table).length, 30)
  for (let i = 0; i < 30; i++) assert.equal(table[`k${i}`], { i })
  const s = (await c.stats()).writeThrough!.users!
  assert.is(s.dropped, 0)
  assert.ok(s.retries >= 5 && s.failures >= 5)
  assert.is(s.writes, 31)
  assert.is(s.deletes, 1)
  for (let i = 0; i < 30; i++) assert.equal(await users.get(`k${i}`), { i })
})

test('async: a full queue refuses the write with E_WRITE_QUEUE_FULL and changes nothing', async () => {
  const store = freshStore()
  const c = await cacheWith(store, { mode: 'async', maxQueue: 3, concurrency: 1, timeout: '10s' })
  const users = c.region('users')
  await users.set('x', 'kept')
  await until('the first write', async () => (await rows(store)).x === 'kept')
  server.signal('SIGSTOP')
  try {
    await users.set('a', 1) // its call runs (and hangs)
    await users.set('b', 1)
    await users.set('c', 1)
    await users.set('b', 2) // b is waiting: replaced, no more room needed
    const e = await errorOf(users.set('x', 'lost'))
    assert.is(e.code, 'E_WRITE_QUEUE_FULL')
    assert.match(e.message, /regions\.users\.writeThrough: the write-behind queue holds 3 store calls \(maxQueue 3\)/)
    assert.is(await users.get('x'), 'kept')
    assert.is((await errorOf(users.mset([['b', 3], ['y', 1]]))).code, 'E_WRITE_QUEUE_FULL')
    assert.is(await users.get('b'), 2, 'a refused mset stores none of its entries')
    assert.is((await errorOf(users.mdelete(['y', 'z']))).code, 'E_WRITE_QUEUE_FULL')
  } finally {
    server.signal('SIGCONT')
  }
  await until('the queue to drain', async () => (await c.stats()).writeThrough!.users!.queued === 0)
  assert.equal(await rows(store), { a: 1, b: 2, c: 1, x: 'kept' })
})

test('async: a write given up after its attempts is reported and dropped from the cache', async () => {
  const store = freshStore()
  const c = await cacheWith(store, { mode: 'async', attempts: 2, retryDelay: 20, timeout: '1s' })
  const users = c.region('users')
  const events: WriteErrorEvent[] = []
  c.on('writeError', (e) => events.push(e))
  await server.kill()
  try {
    await users.set('a', 1)
    assert.is(await users.get('a'), 1)
    await until('the write to be given up', async () => events.length === 1)
  } finally {
    await server.restart()
  }
  assert.is(events[0]!.region, 'users')
  assert.is(events[0]!.key, 'a')
  assert.is(events[0]!.op, 'write')
  assert.is(events[0]!.attempts, 2)
  assert.ok(events[0]!.error instanceof Error)
  await until('the cached copy to go', async () => (await users.get('a')) === undefined)
  const s = (await c.stats()).writeThrough!.users!
  assert.is(s.dropped, 1)
  assert.is(s.failures, 2)
  assert.is(s.retries, 1)
  assert.equal(await rows(store), {})
  // What an operator sees: metrics, and the status the command line draws.
  const text = await c.metrics()
  assert.match(text, '\nshardcache_write_through_dropped_total{region="users"} 1\n')
  assert.match(text, '\nshardcache_write_through_failures_total{region="users"} 2\n')
  assert.match(text, '\nshardcache_write_through_queued{region="users"} 0\n')
  const admin = await c.serveAdmin({ token: 't' })
  const status = (await (await fetch(`http://127.0.0.1:${admin.port}/status`, { headers: { authorization: 'Bearer t' } })).json()) as AdminStatus
  await admin.close()
  assert.match(renderStatus(status, 'here'), '\nwrite-through users (async): 0 writes, 0 deletes, 2 failures, 0 queued, 1 dropped\n')
})

test('incr, cas, take, nx and xx are refused on a write-through region, changing nothing', async () => {
  const store = freshStore()
  const c = await cacheWith(store)
  const users = c.region('users')
  await users.set('n', 1)
  for (const [what, p] of [
    ['incr', users.incr('n')],
    ['cas', users.cas('n', 1, 2)],
    ['take', users.take('n')],
    ['options.nx', users.set('n', 5, { nx: true })],
    ['options.xx', users.mset([['n', 5]], { xx: true })],
  ] as const) {
    const e = await errorOf(p)
    assert.is(e.code, 'E_UNSUPPORTED', what)
    assert.ok(e.message.startsWith(`${what} cannot be used on region "users": it writes through to a store (regions.users.writeThrough)`), e.message)
  }
  assert.is(await users.get('n'), 1)
  assert.equal(await rows(store), { n: 1 })
  // Other regions keep them.
  assert.is(await c.incr('n'), 1)
})

test('bad writeThrough options are refused, naming the option', async () => {
  const store = { write: () => {}, delete: () => {} }
  const cases: [unknown, RegExp][] = [
    [{}, /regions\.users\.writeThrough\.store must be an object with write\(key, value, info\) and delete\(key, info\) functions, or a Tier \(got undefined\)/],
    [{ store: { write: () => {} } }, /regions\.users\.writeThrough\.store must be an object with write/],
    [{ store, mode: 'later' }, /regions\.users\.writeThrough\.mode must be "sync" or "async" \(got the string "later"\)/],
    [{ store, timeout: Infinity }, /regions\.users\.writeThrough\.timeout must be finite/],
    [{ store, maxQueue: 0 }, /regions\.users\.writeThrough\.maxQueue/],
    [{ store, retryDelay: '1m' }, /regions\.users\.writeThrough\.retryDelay must be at most 5000 ms/],
    [{ store, queue: 1 }, /regions\.users\.writeThrough\.queue/],
    ['pg', /regions\.users\.writeThrough must be an object like \{ store: \{ write, delete \}, mode: 'sync' \}/],
  ]
  for (const [wt, re] of cases) {
    const e = await errorOf(createCache({ shards: 1, regions: { users: { writeThrough: wt as never } } }))
    assert.is(e.code, 'E_INVALID_OPTION', String(re))
    assert.match(e.message, re)
  }
  assert.throws(() => postgresStore({ connectionString: server.url, table: 'x; drop table y' }), /options\.table must be a table name/)
  assert.throws(() => postgresStore({} as never), /give exactly one of pool and connectionString/)
})

test('getOrCompute does not cache what its loader read while a write of the key was pending with the store', async () => {
  const table = freshStore()
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  // The store of the test: PostgreSQL, whose write of "k" waits for the gate.
  const store: WriteStore = {
    write: async (key, value, info) => {
      if (key === 'k') await gate
      await table.write(key, value, info)
    },
    delete: (key, info) => table.delete(key, info),
  }
  const c = await cacheWith(store, { timeout: '10s' })
  const users = c.region('users')
  const written = users.set('k', 'new')
  // The loader reads the table before the write landed: "old" is served, not cached.
  assert.is(await users.getOrCompute('k', () => 'old'), 'old')
  release()
  assert.is(await written, true)
  assert.is(await users.get('k'), 'new')
  // A write made (and done) while the loader ran: the loader's older read is not cached either.
  assert.is(await users.getOrCompute('m', async () => (await users.set('m', 'new'), 'old')), 'old')
  assert.is(await users.get('m'), 'new')
  // Without a pending write the fill is cached.
  assert.is(await users.getOrCompute('j', async () => (await table.read('users', 'j')) ?? 'loaded'), 'loaded')
  assert.is(await users.get('j'), 'loaded')
})

test('an attached thread\'s writes of a write-through region are made by the owner, through its store', async () => {
  const store = freshStore()
  const c = await cacheWith(store)
  const t = new ClientThread()
  open.push({ close: () => t.worker.terminate() })
  await t.attach(c)
  assert.is(await t.callIn('users', 'set', 'from-thread', { t: 1 }), true)
  assert.is(await t.callIn('users', 'mset', [['m1', 1], ['m2', 2]]), 2)
  assert.equal(await rows(store), { 'from-thread': { t: 1 }, m1: 1, m2: 2 })
  assert.equal(await c.region('users').get('from-thread'), { t: 1 })
  assert.is(await t.callIn('users', 'delete', 'm1'), true)
  assert.equal(Object.keys(await rows(store)), ['from-thread', 'm2'])
  const e = await ClientThread.errorOf(t.callIn('users', 'incr', 'm2'))
  assert.is(e !== 'resolved' && e.code, 'E_UNSUPPORTED')
  await server.kill()
  try {
    const f = await ClientThread.errorOf(t.callIn('users', 'set', 'm2', 3))
    assert.is(f !== 'resolved' && f.code, 'E_WRITE_THROUGH')
  } finally {
    await server.restart()
  }
  assert.is(await c.region('users').get('m2'), undefined)
})

test.run()
