/**
 * The examples in examples/ run as a user runs them (`node examples/x.mjs`,
 * importing the built package by its name) and answer real HTTP requests
 * with exactly the bodies and headers their comments promise; each one exits
 * by itself on SIGTERM, leaving no process behind, with nothing on stderr.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ExampleProcess, request } from '../fixtures/example_process.js'
import type { Reply } from '../fixtures/example_process.js'
import { RedisProc } from '../fixtures/redis_proc.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const ADA = '{"id":1,"name":"Ada Lovelace","email":"ada@example.com"}'
const ADA_KING = '{"id":1,"name":"Ada King","email":"ada@example.com"}'
const ALAN = '{"id":3,"name":"Alan Turing","email":"alan@example.com"}'

const running: ExampleProcess[] = []
let redis: RedisProc | undefined

test.after.each(() => {
  for (const p of running.splice(0)) p.kill()
})

test.after(async () => {
  await redis?.stop()
})

function start(file: string, env: Record<string, string> = {}): ExampleProcess {
  const p = ExampleProcess.start(file, { PORT: '0', ...env })
  running.push(p)
  return p
}

/** Status, the cache header and the body: what each request is checked against. */
const seen = (r: Reply): [number, string | undefined, string] => [r.status, r.headers['x-cache'] as string | undefined, r.body]

/** SIGTERM: the example closes its cache and exits 0, with nothing left running and nothing on stderr. */
async function stopsCleanly(p: ExampleProcess): Promise<void> {
  assert.equal(await p.stop('SIGTERM'), { code: 0, lingering: false }, `${p.file} after SIGTERM; stderr:\n${p.stderr}`)
  assert.is(p.stderr, '')
}

test('http-server.mjs: a miss runs the query, the next GET is a hit, a PUT updates both; SIGTERM closes it', async () => {
  const p = start('http-server.mjs')
  const url = await p.url()
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
  const first = await request(`${url}/users/1`)
  assert.equal(seen(first), [200, 'miss', ADA])
  assert.is(first.headers['content-type'], 'application/json')
  assert.equal(seen(await request(`${url}/users/1`)), [200, 'hit', ADA])
  // "Not found" is cached too.
  assert.equal(seen(await request(`${url}/users/9`)), [404, 'miss', '{"error":"no user 9"}'])
  assert.equal(seen(await request(`${url}/users/9`)), [404, 'hit', '{"error":"no user 9"}'])
  assert.equal(seen(await request(`${url}/users/1`, { method: 'PUT', body: '{"name":"Ada King"}' })), [200, undefined, ADA_KING])
  assert.equal(seen(await request(`${url}/users/1`)), [200, 'hit', ADA_KING])
  assert.equal(seen(await request(`${url}/users/1`, { method: 'PUT', body: '{"name":' })), [400, undefined, '{"error":"expected a JSON object with \\"name\\" and/or \\"email\\" strings"}'])
  assert.equal(seen(await request(`${url}/users/9`, { method: 'PUT', body: '{"name":"Nobody"}' })), [404, undefined, '{"error":"no user 9"}'])
  assert.equal(seen(await request(`${url}/users/1`)), [200, 'hit', ADA_KING])
  assert.equal(seen(await request(`${url}/nope`)), [404, undefined, '{"error":"not found"}'])
  await stopsCleanly(p)
})

test('operations.mjs: the operator endpoint answers with the token only; SIGTERM writes a last backup, and a restart serves from it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shardcache-operations-'))
  try {
    const env = { ADMIN_TOKEN: 'example-token', ADMIN_PORT: '0', BACKUP_DIR: dir }
    const p = start('operations.mjs', env)
    const url = await p.url()
    const admin = (await p.lines(/^admin on (http:\/\/\S+)$/))[0]![1]!
    assert.equal(seen(await request(`${url}/users/1`)), [200, 'miss', ADA])
    assert.is((await request(`${admin}/status`)).status, 401)
    const status = await request(`${admin}/status`, { headers: { authorization: 'Bearer example-token' } })
    assert.is(status.status, 200)
    assert.is((JSON.parse(status.body) as { entries: number }).entries, 1)
    await stopsCleanly(p)
    assert.match(p.stdout, /^backup .*\/shardcache-[\dT-]+Z\.snap: 1 entries$/m)
    // Started again on the same directory: the user is a hit without the database.
    const q = start('operations.mjs', env)
    assert.equal(seen(await request(`${await q.url()}/users/1`)), [200, 'hit', ADA])
    await stopsCleanly(q)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('piscina-workers.mjs: pool threads share one cache: one loader run for concurrent misses, a PUT in one thread is a hit in another', async () => {
  const p = start('piscina-workers.mjs', { THREADS: '2' })
  const url = await p.url()
  // Concurrent misses of one key, on whichever threads they land: the loader runs once.
  const cold = await Promise.all(Array.from({ length: 6 }, () => request(`${url}/users/3`)))
  assert.equal(cold.map((r) => [r.status, r.body]), Array.from({ length: 6 }, () => [200, ALAN]))
  assert.equal(cold.map((r) => r.headers['x-cache']).sort(), ['hit', 'hit', 'hit', 'hit', 'hit', 'miss'])
  // The pool gives a task to its first idle thread, so only requests in flight
  // together reach the other one: rounds of a PUT and then concurrent GETs,
  // until a GET runs on another thread than the PUT did. Every GET must be a
  // hit with the value just written, whichever thread answers it.
  const deadline = Date.now() + 10_000
  for (let round = 1; ; round++) {
    const name = `Grace ${round}`
    const body = `{"id":2,"name":"${name}","email":"grace@example.com"}`
    const put = await request(`${url}/users/2`, { method: 'PUT', body: JSON.stringify({ name }) })
    assert.equal(seen(put), [200, undefined, body])
    const writer = put.headers['x-thread-id']
    const reads = await Promise.all(Array.from({ length: 6 }, () => request(`${url}/users/2`)))
    for (const r of reads) assert.equal(seen(r), [200, 'hit', body], `round ${round}`)
    if (reads.some((r) => r.headers['x-thread-id'] !== writer)) break
    if (Date.now() > deadline) assert.unreachable(`in ${round} rounds every GET ran on the PUT's thread ${String(writer)}`)
  }
  const stats = JSON.parse((await request(`${url}/stats`)).body) as { attachedThreads: number; entries: number }
  assert.equal([stats.attachedThreads, stats.entries], [2, 2])
  await stopsCleanly(p)
})

test('keyv.mjs: Keyv and cache-manager over shardcache print exactly what the calls return', async () => {
  const p = start('keyv.mjs')
  assert.equal(await p.exit(), { code: 0, lingering: false }, p.stderr)
  assert.is(p.stderr, '')
  assert.is(
    p.stdout,
    [
      `users.get('1') -> {"name":"Ada Lovelace"}`,
      `users.has('2') -> false`,
      `cache.get('users:1') -> "{\\"value\\":{\\"name\\":\\"Ada Lovelace\\"}}"`,
      `cache.ttl('users:otp') is within Keyv's 60 s -> true`,
      `users.get('flash') 20 ms after its 1 ms TTL -> undefined`,
      `after users.clear(): users.get('1') -> undefined`,
      `after users.clear(): sessions.get('s1') -> {"user":1}`,
      `manager.wrap('profile:2') first -> {"id":2,"name":"Grace Hopper"}`,
      `manager.wrap('profile:2') again -> {"id":2,"name":"Grace Hopper"}`,
      `queries run -> 1`,
      `cache.has('cm:profile:2') -> true`,
      `after manager.del: manager.get('profile:2') -> undefined`,
      '',
    ].join('\n'),
  )
})

test('multi-process-bus.mjs: a PUT through one process reaches the copy another process cached, through Redis', async () => {
  redis = await RedisProc.start()
  const p = start('multi-process-bus.mjs', { WORKERS: '2', REDIS_URL: redis.url })
  const listening = await p.lines(/^(worker \d+) \(pid \d+\) listening on (http:\/\/\S+)$/, 2)
  const urls = Object.fromEntries(listening.map((m) => [m[1]!, m[2]!]))
  const a = urls['worker 1']!
  const b = urls['worker 2']!
  assert.ok(a !== undefined && b !== undefined && a !== b, JSON.stringify(urls))
  const first = await request(`${a}/users/1`)
  assert.equal(seen(first), [200, 'miss', ADA])
  assert.is(first.headers['x-served-by'], 'worker 1')
  assert.equal(seen(await request(`${a}/users/1`)), [200, 'hit', ADA])
  const put = await request(`${b}/users/1`, { method: 'PUT', body: '{"name":"Ada King"}' })
  assert.equal(seen(put), [200, undefined, ADA_KING])
  assert.is(put.headers['x-served-by'], 'worker 2')
  // Until the bus delivers B's set, A serves its old copy; then the new one.
  // Either way from A's own cache: it never goes back to the database.
  const deadline = Date.now() + 10_000
  for (;;) {
    const r = await request(`${a}/users/1`)
    assert.is(r.headers['x-served-by'], 'worker 1')
    if (r.body === ADA_KING) {
      assert.equal(seen(r), [200, 'hit', ADA_KING])
      break
    }
    assert.equal(seen(r), [200, 'hit', ADA])
    if (Date.now() > deadline) assert.unreachable('worker 1 still serves the old value 10 s after the PUT through worker 2')
    await new Promise((r) => setTimeout(r, 50))
  }
  assert.equal(seen(await request(`${b}/users/1`)), [200, 'hit', ADA_KING])
  // Each worker logged what the bus applied: worker 2 got worker 1's load, worker 1 got worker 2's PUT.
  await p.lines(/^worker 1: bus update default user:1$/)
  await p.lines(/^worker 2: bus update default user:1$/)
  await stopsCleanly(p)
})

test.run()
