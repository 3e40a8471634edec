/**
 * Least privilege and TLS for the bus and the L2 tier, against private
 * redis-servers whose default user is disabled (nothing works by accident):
 *
 * - the ACL users of docs/redis-security.md, created from the very lines the
 *   doc prints, run the bus between two caches and the L2 tier, and the
 *   server's ACL LOG stays empty (not one command denied);
 * - a user missing any one rule is refused at createCache with
 *   E_REDIS_NOPERM naming the command, never a hang;
 * - a wrong password and an untrusted certificate are E_REDIS_AUTH and
 *   E_REDIS_TLS at createCache, in a child process that must then exit on
 *   its own (no connection or reconnect timer left behind);
 * - over TLS (a CA and a server certificate made here with openssl), with
 *   the CA given, the bus and the L2 tier work;
 * - bus.maxMessageAge: the freshness window of signed messages.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'
import { BusOpType, encodeMessage, isFresh, stampAndSign } from '../../src/redis/bus_message.js'
import { RedisProc } from '../fixtures/redis_proc.js'
import type { RedisProcOptions } from '../fixtures/redis_proc.js'
import { eventually } from '../fixtures/bus_peer_client.js'
import { errorOf } from '../fixtures/helpers.js'

const ADMIN = { user: 'admin', password: 'admin-secret' }
/** An admin for the test's own commands; the default user is off, so a connection that does not log in can do nothing. */
const ADMIN_ARGS = ['--user', 'admin', 'on', `>${ADMIN.password}`, '~*', '&*', '+@all', '--user', 'default', 'off']
const PASSWORD = 'cache-secret'

/** The rules of docs/redis-security.md, as printed there (after `ACL SETUSER <user> `). */
const RULES = {
  bus: 'reset on >PASSWORD &shardcache +subscribe +publish +ping +multi +discard +client|setname',
  busStream: '~shardcache:stream +evalsha +eval +xadd +xrange +xrevrange',
  busLock: '~shardcache:lock:* +set +get +eval +unlink',
  l2: 'reset on >PASSWORD ~shardcache:* +get +pttl +set +pexpire +persist +unlink +sadd +smembers +scan +multi +discard +client|setname',
  l2Lock: '+eval',
  both: 'reset on >PASSWORD &shardcache ~shardcache:* +subscribe +publish +ping +get +pttl +set +pexpire +persist +unlink +sadd +smembers +scan +eval +multi +discard +client|setname',
  bothStream: '+evalsha +xadd +xrange +xrevrange',
}
const DOC = readFileSync(fileURLToPath(new URL('../../../docs/redis-security.md', import.meta.url)), 'utf8')

/** The tokens of a documented line (the test fails if the doc does not print it exactly), with the test's password. */
function documented(user: string, rules: string): string[] {
  const line = `ACL SETUSER ${user} ${rules}\n`
  assert.ok(DOC.includes(line), `docs/redis-security.md prints: ${line}`)
  return rules.split(' ').map((t) => (t === '>PASSWORD' ? `>${PASSWORD}` : t))
}

const open: Cache[] = []
const servers: RedisProc[] = []
let scratch: string | undefined

async function server(options: RedisProcOptions = {}): Promise<RedisProc> {
  const r = await RedisProc.start({ admin: ADMIN, ...options, args: [...ADMIN_ARGS, ...(options.args ?? [])] })
  servers.push(r)
  return r
}

async function cache(options: CacheOptions): Promise<Cache> {
  const c = await createCache({ shards: 1, ...options })
  open.push(c)
  return c
}

async function setUser(r: RedisProc, user: string, ...tokenLists: string[][]): Promise<void> {
  for (const tokens of tokenLists) assert.is(await r.command('ACL', 'SETUSER', user, ...tokens), 'OK')
}

/** The server's ACL log: every command, key or channel it refused since the last reset. */
async function denials(r: RedisProc): Promise<string[]> {
  const log = (await r.command('ACL', 'LOG')) as (string | Buffer | number)[][]
  return log.map((entry) => {
    const at = (name: string) => String(entry[entry.findIndex((x) => String(x) === name) + 1])
    return `${at('reason')} ${at('object')} (${at('username')})`
  })
}

const url = (r: RedisProc, user: string, password = PASSWORD) => `${r.url.split('://')[0]}://${user}:${password}@127.0.0.1:${r.port}`

/** `p`, or a failure naming `what` if it has not settled within `ms`: a hang fails the test instead of stalling it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
  for (const s of servers.splice(0)) await s.stop()
})

test.after(() => {
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true })
})

// ── ACL users ───────────────────────────────────────────────────────────────

test('the documented bus user: a write on one cache invalidates the other, and the server denies nothing', async () => {
  const r = await server()
  await setUser(r, 'shardcache-bus', documented('shardcache-bus', RULES.bus))
  const bus = { redis: url(r, 'shardcache-bus'), heartbeat: 100 }
  const a = await cache({ bus })
  const b = await cache({ bus })
  await b.mset([['k', 'old'], ['p:1', 'x'], ['keep', 'y']])
  await a.set('k', 'new')
  await a.deleteByPattern('p:*')
  await eventually(() => b.keys(), (ks) => ks.length === 1)
  assert.equal(await b.keys(), ['keep'])
  // Some heartbeats went by (PING on the subscriber connection).
  await eventually(async () => (await b.stats()).bus!.lastHeartbeatMs, (ms) => ms !== null)
  await a.close()
  await b.close()
  assert.equal(await denials(r), [])
})

test('the bus user with the stream and lock additions: catchUp "stream" replays after its subscriber is killed; lockAcrossInstances takes its lease', async () => {
  const r = await server()
  await setUser(r, 'shardcache-bus', documented('shardcache-bus', RULES.bus), documented('shardcache-bus', RULES.busStream), documented('shardcache-bus', RULES.busLock))
  const bus = { redis: url(r, 'shardcache-bus'), heartbeat: 100, catchUp: 'stream' as const, mode: 'update' as const }
  const a = await cache({ bus })
  const b = await cache({ bus })
  await a.set('k1', 'v1')
  await eventually(() => b.get('k1'), (v) => v === 'v1')
  // The replay reads the stream (XRANGE) for what was published while b was not subscribed.
  assert.is(await r.command('CLIENT', 'KILL', 'TYPE', 'pubsub'), 2)
  await a.set('k2', 'v2')
  await eventually(async () => (await b.stats()).bus!.catchUp.runs, (n) => n >= 1)
  await eventually(() => b.get('k2'), (v) => v === 'v2')
  assert.is((await b.stats()).bus!.catchUp.fallbacks, 0)
  let loads = 0
  assert.is(await a.getOrCompute('computed', async () => ++loads), 1)
  assert.is(await a.getOrCompute('leased', async () => ++loads, { lockAcrossInstances: true }), 2)
  // Every write was appended to the stream: k1, k2, computed, leased (a's sends may wait a heartbeat after its own resubscription).
  await eventually(() => r.command('XLEN', 'shardcache:stream'), (n) => n === 4)
  await a.close()
  await b.close()
  assert.equal(await denials(r), [])
})

test('the documented L2 user: a set on one cache is read through on the other; touch, tags, patterns, clear and leases work; nothing denied', async () => {
  const r = await server()
  await setUser(r, 'shardcache-l2', documented('shardcache-l2', RULES.l2), documented('shardcache-l2', RULES.l2Lock))
  const l2 = { redis: url(r, 'shardcache-l2'), required: true }
  const a = await cache({ l2, regions: { default: {}, sessions: {} } })
  const b = await cache({ l2, regions: { default: {}, sessions: {} } })
  await a.set('user:1', { name: 'ann' }, { tags: ['org:1'], ttl: 60_000 })
  await a.set('user:2', 'bob', { tags: ['org:2'] })
  await a.region('sessions').set('s1', 'x')
  assert.equal(await b.get('user:1'), { name: 'ann' })
  assert.ok((await b.ttl('user:1'))! > 50_000)
  assert.is(await a.touch('user:2', 30_000), true)
  assert.ok(((await r.command('PTTL', 'shardcache:default:user:2')) as number) > 20_000)
  await a.invalidateTag('org:1')
  assert.is(await r.command('EXISTS', 'shardcache:default:user:1'), 0)
  await a.deleteByPattern('user:*')
  assert.is(await r.command('EXISTS', 'shardcache:default:user:2'), 0)
  await a.region('sessions').clear()
  assert.is(await r.command('EXISTS', 'shardcache:sessions:s1'), 0)
  let loads = 0
  assert.is(await a.getOrCompute('leased', async () => ++loads, { lockAcrossInstances: true }), 1)
  assert.is(await b.getOrCompute('leased', async () => ++loads, { lockAcrossInstances: true }), 1) // read through L2
  assert.equal((await b.stats()).tiers!.l2.errors, 0)
  assert.equal((await a.stats()).tiers!.l2.errors, 0)
  await a.close()
  await b.close()
  assert.equal(await denials(r), [])
})

test('the documented combined user: bus (stream catch-up) and L2 tier together; nothing denied', async () => {
  const r = await server()
  await setUser(r, 'shardcache', documented('shardcache', RULES.both), documented('shardcache', RULES.bothStream))
  const options = (): CacheOptions => ({ bus: { redis: url(r, 'shardcache'), catchUp: 'stream' }, l2: { redis: url(r, 'shardcache'), required: true } })
  const a = await cache(options())
  const b = await cache(options())
  await a.set('k', 'v1')
  assert.is(await b.get('k'), 'v1') // from L2, now in b's shards
  await a.set('k', 'v2') // L2 written, b's copy invalidated by the bus
  await eventually(async () => (await b.stats()).bus!.received, (n) => n >= 1)
  assert.is(await b.get('k'), 'v2')
  await a.close()
  await b.close()
  assert.equal(await denials(r), [])
})

/** Runs `fn` over `items`, a few at a time (each starts a cache: shard threads and connections). */
async function inGroups<T>(items: T[], fn: (item: T, i: number) => Promise<void>, size = 4): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map((item, j) => fn(item, i + j)))
}

/** Every rule of a documented line that the check must miss when left out (not the login ones, nor the cosmetic CLIENT SETNAME). */
const needed = (rules: string) => rules.split(' ').filter((t) => !['reset', 'on', '>PASSWORD', '+client|setname'].includes(t))

test('without any one of its rules the bus user is refused at createCache with E_REDIS_NOPERM naming what it lacks, whether required or not', async () => {
  const r = await server()
  const cases = [
    ...needed(RULES.bus).map((drop) => ({ drop, extra: [] as string[], catchUp: 'flush' as const })),
    ...needed(RULES.busStream).map((drop) => ({ drop, extra: RULES.busStream.split(' '), catchUp: 'stream' as const })),
  ]
  await inGroups(cases, async ({ drop, extra, catchUp }, i) => {
    const user = `bus-without-${i}`
    const tokens = [...documented('shardcache-bus', RULES.bus), ...extra].filter((t) => t !== drop)
    await setUser(r, user, tokens)
    // A connect timeout far beyond the bound: the rejection must be the refusal, not the timeout.
    const start = createCache({ shards: 1, bus: { redis: url(r, user), catchUp, connectTimeout: 60_000, required: i % 2 === 0 } })
    const err = await within(errorOf(start), 15_000, `createCache for a bus user without ${drop}`)
    assert.is(err.code, 'E_REDIS_NOPERM', `without ${drop}: ${err.message}`)
    assert.is(err.name, 'RedisPermissionError')
    assert.match(err.message, 'options.bus.redis')
    assert.match(err.message, 'docs/redis-security.md')
    assert.match(String((err.cause as Error).message), /^NOPERM /)
    if (drop[0] === '+') {
      const command = drop.slice(1)
      assert.ok(err.message.includes(`'${command}'`), `without ${drop}, the message names the command: ${err.message}`)
    }
  })
  assert.is(((await r.command('CLIENT', 'LIST')) as Buffer).toString().trim().split('\n').length, 1) // only this command's connection is left
})

test('without any one of its rules the L2 user is refused at createCache with E_REDIS_NOPERM (also for a region outside its key patterns)', async () => {
  const r = await server()
  await inGroups(needed(RULES.l2), async (drop, i) => {
    const user = `l2-without-${i}`
    await setUser(r, user, documented('shardcache-l2', RULES.l2).filter((t) => t !== drop))
    const err = await within(errorOf(createCache({ shards: 1, l2: { redis: url(r, user) } })), 15_000, `createCache for an L2 user without ${drop}`)
    assert.is(err.code, 'E_REDIS_NOPERM', `without ${drop}: ${err.message}`)
    assert.match(err.message, 'options.l2.redis')
    assert.match(String((err.cause as Error).message), /^NOPERM /)
    if (drop[0] === '+') assert.ok(err.message.includes(`'${drop.slice(1)}'`), `without ${drop}: ${err.message}`)
    else assert.match(err.message, '(GET on shardcache:default:…)')
  })
  // Per-region key patterns: a region the user may not touch is named at createCache.
  await setUser(r, 'l2-default-only', ['reset', 'on', `>${PASSWORD}`, '~shardcache:default:*', '~shardcache:tag:*', '~shardcache:lock:*', ...RULES.l2.split(' ').filter((t) => t[0] === '+')])
  const ok = await cache({ l2: { redis: url(r, 'l2-default-only') } })
  await ok.close()
  const err = await errorOf(createCache({ shards: 1, regions: { default: {}, sessions: {} }, l2: { redis: url(r, 'l2-default-only') } }))
  assert.is(err.code, 'E_REDIS_NOPERM')
  assert.match(err.message, '(GET on shardcache:sessions:…)')
})

// ── Refused credentials and certificates, in a process that must exit on its own ──

const FIXTURE = fileURLToPath(new URL('../fixtures/refused_start.js', import.meta.url))

interface Outcome {
  started?: true
  code?: string
  name?: string
  message?: string
  cause?: string
  causeCode?: string
  ms?: number
}

/**
 * Runs createCache with each option set in turn in one child process;
 * resolves their outcomes once the process exited by itself (failing after
 * `boundMs`: a rejection that never comes, or something left running).
 */
function inChild(optionSets: unknown[], boundMs = 60_000): Promise<Outcome[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, JSON.stringify(optionSets)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the process did not exit within ${boundMs} ms after: ${out.trim() || '(no output)'} ${err.trim()}`))
    }, boundMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`exit code ${code}: ${out} ${err}`))
      try {
        resolve(JSON.parse(out.trim()) as Outcome[])
      } catch {
        reject(new Error(`unreadable output: ${out} ${err}`))
      }
    })
  })
}

test('a wrong password, or none, is E_REDIS_AUTH at createCache for the bus (required or not) and the L2 tier; the process then exits on its own', async () => {
  const r = await server()
  await setUser(r, 'shardcache', documented('shardcache', RULES.both))
  const wrong = url(r, 'shardcache', 'not-the-password')
  // Connect timeouts far beyond the bound: the rejections must be the refusals, not timeouts.
  const [busRequired, busOptional, l2, l2Required, noPassword] = await inChild([
    { shards: 1, bus: { redis: wrong, connectTimeout: 60_000 } },
    { shards: 1, bus: { redis: wrong, connectTimeout: 60_000, required: false } },
    { shards: 1, l2: { redis: wrong } },
    { shards: 1, l2: { redis: wrong, required: true } },
    { shards: 1, l2: { redis: r.url } },
  ])
  for (const [o, option] of [[busRequired!, 'options.bus.redis'], [busOptional!, 'options.bus.redis'], [l2!, 'options.l2.redis'], [l2Required!, 'options.l2.redis']] as const) {
    assert.is(o.code, 'E_REDIS_AUTH', JSON.stringify(o))
    assert.is(o.name, 'RedisAuthError')
    assert.match(o.message!, option)
    assert.match(o.message!, 'username and password')
    assert.match(o.cause!, /^WRONGPASS /)
  }
  assert.is(noPassword!.code, 'E_REDIS_AUTH', JSON.stringify(noPassword))
  assert.match(noPassword!.cause!, /^NOAUTH /)
  assert.is(((await r.command('CLIENT', 'LIST')) as Buffer).toString().trim().split('\n').length, 1)
})

// ── TLS ─────────────────────────────────────────────────────────────────────

interface Pki {
  ca: string
  otherCa: string
  serverArgs: string[]
}

/** A CA and a server certificate it signs (SAN 127.0.0.1 and localhost), and an unrelated CA, made with openssl. */
function makePki(): Pki {
  const dir = (scratch ??= mkdtempSync(join(tmpdir(), 'shardcache-tls-')))
  const f = (name: string) => join(dir, name)
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  for (const name of ['ca', 'other-ca']) {
    ssl('req', '-x509', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '2', '-subj', `/CN=shardcache test ${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  }
  ssl('req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1')
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('server.ext'))
  return {
    ca: f('ca.crt'),
    otherCa: f('other-ca.crt'),
    serverArgs: ['--tls-cert-file', f('server.crt'), '--tls-key-file', f('server.key'), '--tls-ca-cert-file', f('ca.crt'), '--tls-auth-clients', 'no'],
  }
}

let pki: Pki | undefined
const tlsServer = async () => {
  pki ??= makePki()
  const ca = readFileSync(pki.ca)
  return { r: await server({ args: pki.serverArgs, tls: { ca } }), ca, pki }
}

test('over TLS with the CA given (a rediss:// URL with the tls option, or ioredis options with tls), the bus and the L2 tier work', async () => {
  const { r, ca } = await tlsServer()
  assert.match(r.url, /^rediss:\/\//)
  await setUser(r, 'shardcache', documented('shardcache', RULES.both))
  const a = await cache({ bus: { redis: url(r, 'shardcache'), tls: { ca } }, l2: { redis: url(r, 'shardcache'), tls: { ca }, required: true } })
  const viaOptions = { host: '127.0.0.1', port: r.port, username: 'shardcache', password: PASSWORD, tls: { ca } }
  const b = await cache({ bus: { redis: viaOptions }, l2: { redis: viaOptions, required: true } })
  await a.set('k', 'v1')
  assert.is(await b.get('k'), 'v1') // read through L2
  await a.set('k', 'v2')
  await eventually(async () => (await b.stats()).bus!.received, (n) => n >= 1)
  assert.is(await b.get('k'), 'v2') // b's copy was invalidated by the bus
  await b.set('k', 'v3')
  await eventually(() => a.get('k'), (v) => v === 'v3')
  await a.close()
  await b.close()
  assert.equal(await denials(r), [])
})

test('an untrusted certificate (no CA given, or another CA) is E_REDIS_TLS at createCache for the bus and the L2 tier; the process then exits on its own', async () => {
  const { r, pki } = await tlsServer()
  await setUser(r, 'shardcache', documented('shardcache', RULES.both))
  const u = url(r, 'shardcache')
  // The bus cases twice: closing its second connection in the middle of its handshake could make
  // that socket emit an error nobody listened for (an uncaught exception, after the rejection).
  const busNoCa = { shards: 1, bus: { redis: u, connectTimeout: 60_000, required: false } }
  const busOtherCa = { shards: 1, bus: { redis: u, tls: { ca: pki.otherCa }, connectTimeout: 60_000 } }
  const outcomes = await inChild([busNoCa, busOtherCa, busNoCa, busOtherCa, { shards: 1, l2: { redis: u } }, { shards: 1, l2: { redis: u, tls: { ca: pki.otherCa }, required: true } }])
  assert.is(outcomes.length, 6)
  for (const [i, o] of outcomes.entries()) {
    const option = i < 4 ? 'options.bus' : 'options.l2'
    assert.is(o.code, 'E_REDIS_TLS', JSON.stringify(o))
    assert.is(o.name, 'RedisTlsError')
    assert.match(o.message!, `${option}.tls.ca`)
    // OpenSSL on the server sends the chain up to the root: a self-signed CA nobody here trusts.
    assert.is(o.causeCode, 'SELF_SIGNED_CERT_IN_CHAIN', JSON.stringify(o))
  }
  assert.is(((await r.command('CLIENT', 'LIST')) as Buffer).toString().trim().split('\n').length, 1)
})

test('bus.tls and l2.tls: an object, with a rediss:// URL when the connection is a URL', async () => {
  for (const part of ['bus', 'l2'] as const) {
    const bad = await errorOf(createCache({ shards: 1, [part]: { redis: 'redis://u:pw@127.0.0.1:1', tls: {} } }))
    assert.is(bad.code, 'E_INVALID_OPTION')
    assert.is(bad.message, `options.${part}.tls needs a rediss:// URL in options.${part}.redis (got the string "redis://…@127.0.0.1:1")`)
    const notObject = await errorOf(createCache({ shards: 1, [part]: { redis: 'rediss://127.0.0.1:1', tls: 'yes' as never } }))
    assert.is(notObject.message, `options.${part}.tls must be an object of TLS options like { ca } (got the string "yes")`)
  }
})

// ── Freshness of signed messages ────────────────────────────────────────────

test('isFresh: within maxAge of the receiver\'s clock either way, the boundary included', () => {
  const now = 1_700_000_000_000
  assert.is(isFresh(now - 10_000, now, 10_000), true)
  assert.is(isFresh(now - 10_001, now, 10_000), false)
  assert.is(isFresh(now + 10_000, now, 10_000), true)
  assert.is(isFresh(now + 10_001, now, 10_000), false)
  assert.is(isFresh(now, now, 1), true)
})

test('bus.maxMessageAge: a signed message older (or dated further ahead) than the window is dropped as stale, one inside it applied', async () => {
  const r = await server()
  await setUser(r, 'shardcache-bus', documented('shardcache-bus', RULES.bus))
  const secret = 'bus-secret'
  const b = await cache({ bus: { redis: url(r, 'shardcache-bus'), secret, maxMessageAge: '10s' } })
  const dflt = await cache({ bus: { redis: url(r, 'shardcache-bus'), secret } })
  const names = ['old', 'ahead', 'recent', 'ancient']
  // Keys of their own, so that neither cache's mset invalidates the other's.
  await b.mset(names.map((k, i): [string, number] => [`b:${k}`, i]))
  await dflt.mset(names.map((k, i): [string, number] => [`d:${k}`, i]))
  await eventually(async () => [(await b.stats()).bus!.received, (await dflt.stats()).bus!.received], ([x, y]) => x === 1 && y === 1)
  await b.resetStats()
  await dflt.resetStats()
  const origin = Buffer.alloc(16, 5)
  let seq = 0
  const send = (key: string, sentAt: number) =>
    r.command('PUBLISH', 'shardcache', stampAndSign(encodeMessage(origin, ++seq, [{ type: BusOpType.DELETE, region: 'default', keys: [`b:${key}`, `d:${key}`] }]), sentAt, Buffer.from(secret)))
  // Margins of seconds around the windows: delivery takes milliseconds even on a loaded machine.
  await send('old', Date.now() - 20_000)
  await send('ahead', Date.now() + 20_000)
  await send('recent', Date.now() - 3_000)
  await send('ancient', Date.now() - 45_000)
  // 10 s: only "recent" applies.
  await eventually(async () => (await b.stats()).bus!, (s) => s.received === 4 && s.applied + s.dropped.stale === 4)
  assert.is((await b.stats()).bus!.dropped.stale, 3)
  assert.equal(await b.mget(names.map((k) => `b:${k}`)), [0, 1, undefined, 3])
  // The default 30 s: all but "ancient" apply.
  await eventually(async () => (await dflt.stats()).bus!, (s) => s.received === 4 && s.applied + s.dropped.stale === 4)
  assert.is((await dflt.stats()).bus!.dropped.stale, 1)
  assert.equal(await dflt.mget(names.map((k) => `d:${k}`)), [undefined, undefined, undefined, 3])
})

test('bus.maxMessageAge must be a positive finite duration, and needs a secret', async () => {
  const base = { redis: 'redis://127.0.0.1:1', secret: 's' }
  const cases: [unknown, string][] = [
    [0, 'options.bus.maxMessageAge must be a positive number of milliseconds, Infinity, or a duration string like "30s" (got 0)'],
    [-5, 'options.bus.maxMessageAge must be a positive number of milliseconds, Infinity, or a duration string like "30s" (got -5)'],
    [Number.NaN, 'options.bus.maxMessageAge must be a positive number of milliseconds, Infinity, or a duration string like "30s" (got NaN)'],
    ['soon', 'options.bus.maxMessageAge must be a positive number of milliseconds, Infinity, or a duration string like "30s" (got the string "soon")'],
    [Infinity, 'options.bus.maxMessageAge must be a finite duration below 24 days (got Infinity)'],
  ]
  for (const [v, message] of cases) {
    const err = await errorOf(createCache({ shards: 1, bus: { ...base, maxMessageAge: v as number } }))
    assert.is(err.code, 'E_INVALID_OPTION')
    assert.is(err.message, message)
  }
  const unsigned = await errorOf(createCache({ shards: 1, bus: { redis: base.redis, maxMessageAge: 5000 } }))
  assert.is(unsigned.code, 'E_INVALID_OPTION')
  assert.is(unsigned.message, 'options.bus.maxMessageAge applies to signed messages only: set options.bus.secret too (or leave maxMessageAge out)')
})

test.run()
