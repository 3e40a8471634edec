// The fixtures the invalidation-bus tests stand on: a real, private
// redis-server that can be killed, restarted on its port and frozen, and a
// cache in another process driven over IPC. If these lie, every bus test does.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RedisProc, RedisReplyError, sendCommand } from '../fixtures/redis_proc.js'
import { BusPeer, eventually, PeerError } from '../fixtures/bus_peer_client.js'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'

const servers: RedisProc[] = []
const peers: BusPeer[] = []

async function redis(): Promise<RedisProc> {
  const r = await RedisProc.start()
  servers.push(r)
  return r
}

async function peer(options: Record<string, unknown>): Promise<BusPeer> {
  const p = await BusPeer.spawn(options)
  peers.push(p)
  return p
}

/** The error a promise rejected with, or fails the test when it resolved. */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p
  } catch (err) {
    return err as Error & { code?: string }
  }
  assert.unreachable('expected a rejection')
  throw new Error('unreachable')
}

test.after(async () => {
  for (const p of peers) p.kill()
  await Promise.all(servers.map((s) => s.stop()))
})

test('RedisProc: a private server with no persistence; SET then GET gives the bytes back as a Buffer', async () => {
  const r = await redis()
  assert.ok(r.port > 0)
  assert.is(r.url, `redis://127.0.0.1:${r.port}`)
  assert.is(await r.command('SET', 'k', 'v'), 'OK')
  const got = await r.command('GET', 'k')
  assert.ok(Buffer.isBuffer(got))
  assert.is((got as Buffer).toString(), 'v')
  assert.is(await r.command('GET', 'missing'), null)
  assert.is(await r.command('INCR', 'n'), 1)
  assert.equal(await r.command('CONFIG', 'GET', 'appendonly'), [Buffer.from('appendonly'), Buffer.from('no')])
  assert.equal(await r.command('CONFIG', 'GET', 'save'), [Buffer.from('save'), Buffer.from('')])
  const err = await rejection(r.command('INCR', 'k'))
  assert.instance(err, RedisReplyError)
  assert.is((err as RedisReplyError).prefix, 'ERR')
})

test('RedisProc: kill, then restart on the same port: PING answers again and the data set is empty', async () => {
  const r = await redis()
  await r.command('SET', 'k', 'v')
  const before = r.pid
  await r.kill()
  assert.not.ok(r.running)
  await r.kill() // safe when already dead
  assert.ok(await rejection(r.command('PING')))
  await r.restart()
  assert.ok(r.running)
  assert.is.not(r.pid, before)
  assert.is(await r.command('PING'), 'PONG')
  assert.is(await r.command('GET', 'k'), null)
  // Restarting a live server replaces it, still on the same port.
  await r.restart()
  assert.is(await r.command('PING'), 'PONG')
})

test('RedisProc: paused, a new connection is accepted but nothing answers; resumed, the queued command is answered', async () => {
  const r = await redis()
  r.pause()
  try {
    const started = Date.now()
    const err = await rejection(sendCommand(r.port, ['PING'], 500))
    assert.match(err.message, /no reply/)
    assert.ok(Date.now() - started >= 450)
    // A command sent while paused is answered once the server resumes.
    const queued = sendCommand(r.port, ['PING'], 5000)
    await new Promise((res) => setTimeout(res, 100))
    r.resume()
    assert.is(await queued, 'PONG')
  } finally {
    r.resume()
  }
  assert.is(await r.command('PING'), 'PONG')
  // stop() of a paused server must not hang on a SIGTERM the process cannot act on.
  r.pause()
  const t0 = Date.now()
  await r.stop()
  assert.ok(Date.now() - t0 < 1900, 'stop() of a paused server waited for the SIGKILL fallback')
  assert.not.ok(r.running)
  await r.stop() // safe twice
})

test('RedisProc: command is binary-safe: PUBLISH of arbitrary bytes returns 0 subscribers, and bytes round-trip', async () => {
  const r = await redis()
  const bytes = Buffer.from([0, 1, 2, 13, 10, 0xff, 0xfe, 0x24, 0x2a, 0])
  assert.is(await r.command('PUBLISH', 'shardcache:test', bytes), 0)
  const key = Buffer.from([0xc3, 0x28, 13, 10])
  assert.is(await r.command('SET', key, bytes), 'OK')
  assert.equal(await r.command('GET', key), bytes)
  const big = Buffer.alloc(256 * 1024, 7)
  await r.command('SET', 'big', big)
  assert.equal(await r.command('GET', 'big'), big)
})

test('BusPeer: a cache in another process: set/get, undefined, a remote error code, and a clean exit after close', async () => {
  const p = await peer({ shards: 1 })
  try {
    assert.is(await p.call('set', 'a', '1'), true)
    assert.is(await p.call('get', 'a'), '1')
    assert.is(await p.call('get', 'nope'), undefined)
    assert.equal(await p.call('mget', ['a', 'nope']), ['1', undefined])
    const err = await rejection(p.call('get', ''))
    assert.instance(err, PeerError)
    assert.is(err.code, 'E_INVALID_KEY')
    const stats = await p.call<{ sets: number }>('stats')
    assert.is(stats.sets, 1)
    assert.is(await eventually(() => p.call('get', 'a'), (v) => v === '1'), '1')
    assert.equal(p.events, [])
    const started = Date.now()
    assert.is(await p.close(5000), 0)
    assert.ok(Date.now() - started < 5000)
    assert.is(await p.exited, 0)
    assert.is(await p.close(), 0) // already exited
    assert.is((await rejection(p.call('get', 'a'))).code, 'E_PEER_EXITED')
  } finally {
    p.kill()
  }
})

test('BusPeer: regions, and createCache rejecting reaches spawn() with its code', async () => {
  const p = await peer({ shards: 2, regions: { r: { policy: 'fifo', maxEntries: 10 } } })
  try {
    assert.is(await p.in('r').call('set', 'x', { n: 1 }), true)
    assert.equal(await p.in('r').call('get', 'x'), { n: 1 })
    assert.is(await p.call('get', 'x'), undefined)
    assert.is((await rejection(p.in('nope').call('get', 'x'))).code, 'E_UNKNOWN_REGION')
    assert.is(await p.close(), 0)
  } finally {
    p.kill()
  }
  const err = await rejection(BusPeer.spawn({ shards: -1 }))
  assert.instance(err, PeerError)
  assert.is(err.code, 'E_INVALID_OPTION')
})

/** Whether `pid` is a live process (a zombie, dead but not yet reaped, counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..."; the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return process.platform !== 'linux'
  }
}

test('a test process killed by SIGKILL (no exit hook runs) leaves no redis-server behind: the fixture\'s and the bench helper\'s both die', async () => {
  const child = spawn(process.execPath, [new URL('../fixtures/redis_orphan_child.js', import.meta.url).pathname], { stdio: ['ignore', 'pipe', 'inherit'] })
  let pids: number[] = []
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout!.setEncoding('utf8')
      child.stdout!.on('data', (d: string) => {
        out += d
        if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')))
      })
      child.once('exit', (code) => reject(new Error(`the child exited (code ${String(code)}) before printing its servers' pids`)))
    })
    const { fixture, bench } = JSON.parse(line) as { fixture: number; bench: number }
    pids = [fixture, bench]
    assert.ok(pids.every((p) => Number.isInteger(p) && p > 0 && p !== child.pid), line)
    assert.ok(pids.every(alive), 'both servers run while their test process does')
    const gone = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await gone
    // The watchdog reacts at once; 10 s only bounds a machine that is very busy.
    const until = Date.now() + 10_000
    while (pids.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
    assert.equal(pids.filter(alive), [], 'redis-server processes outlived the test process that started them')
  } finally {
    child.kill('SIGKILL')
    for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL') // a failed run must not leak them either
  }
})

test('eventually: resolves once the probe is ok, and names the last value when it never is', async () => {
  let n = 0
  assert.is(await eventually(async () => ++n, (v) => v >= 3, 1000, 1), 3)
  const err = await rejection(eventually(async () => 'stuck', (v) => v === 'never', 100, 10))
  assert.match(err.message, /stuck/)
})

test.run()
