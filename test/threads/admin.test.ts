/**
 * The operator's endpoint (`cache.serveAdmin`) end to end over real HTTP:
 * the token guard, /metrics, /status, /events (server-sent events of entry
 * events and alerts), and the `shardcache status|metrics|events` commands
 * against it, in this process and as the installed program.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { get } from 'node:http'
import type { IncomingMessage } from 'node:http'
import { fileURLToPath } from 'node:url'
import { createCache } from '../../src/index.js'
import type { AdminStatus, Cache, CacheOptions } from '../../src/index.js'
import { adminCommand } from '../../src/cli/admin.js'
import { main } from '../../src/cli/main.js'
import { errorOf } from '../fixtures/helpers.js'

const TOKEN = 'test-token-0123456789abcdef'
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
const open: Cache[] = []
async function cache(options: CacheOptions = {}): Promise<Cache> {
  const c = await createCache({ shards: 2, ...options })
  open.push(c)
  return c
}
test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
})

const auth = { authorization: `Bearer ${TOKEN}` }

/** Reads server-sent events from `res` until `until` says stop; returns them as [name, data]. */
async function readEvents(res: Response, until: (got: [string, unknown][]) => boolean): Promise<[string, unknown][]> {
  const got: [string, unknown][] = []
  const decoder = new TextDecoder()
  let text = ''
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true })
    let end: number
    while ((end = text.indexOf('\n\n')) >= 0) {
      const block = text.slice(0, end)
      text = text.slice(end + 2)
      const name = /^event: (.*)$/m.exec(block)?.[1]
      const data = /^data: (.*)$/m.exec(block)?.[1]
      if (name !== undefined && data !== undefined) got.push([name, JSON.parse(data)])
    }
    if (until(got)) break
  }
  return got
}

/** Output of the CLI in this process. */
async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const code = await main(args, (s) => (out += s), (s) => (err += s))
  return { code, out, err }
}

test('every path needs the bearer token: 401 without it or with a wrong one; then 404 and 405 for what is not served', async () => {
  const c = await cache()
  const admin = await c.serveAdmin({ token: TOKEN })
  const base = `http://127.0.0.1:${admin.port}`
  const tries: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }, { authorization: `Bearer ${TOKEN}x` }]
  for (const headers of tries) {
    for (const path of ['/metrics', '/status', '/events', '/nothing']) {
      const res = await fetch(base + path, { headers })
      assert.is(res.status, 401, `${path} with ${JSON.stringify(headers)}`)
      assert.is(res.headers.get('www-authenticate'), 'Bearer')
      await res.text()
    }
  }
  const missing = await fetch(`${base}/nothing`, { headers: auth })
  assert.is(missing.status, 404)
  assert.is(await missing.text(), '404: the paths are /metrics, /status and /events\n')
  const post = await fetch(`${base}/status`, { method: 'POST', headers: auth })
  assert.is(post.status, 405)
  await post.text()
})

test('/metrics is the Prometheus text of cache.metrics(); /status sums up shards and regions', async () => {
  const c = await cache({ regions: { default: { maxEntries: 1000 }, sessions: { maxBytes: '1mb' } } })
  const admin = await c.serveAdmin({ token: TOKEN, port: 0 })
  const base = `http://127.0.0.1:${admin.port}`
  for (let i = 0; i < 10; i++) await c.set(`k:${i}`, i)
  await c.region('sessions').set('s', 'x')
  await c.get('k:1')
  await c.get('absent')
  const metrics = await fetch(`${base}/metrics`, { headers: auth })
  assert.is(metrics.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
  const text = await metrics.text()
  assert.match(text, /shardcache_entries\{region="default"\} 10/)
  assert.match(text, /shardcache_entries\{region="sessions"\} 1/)
  const res = await fetch(`${base}/status`, { headers: auth })
  assert.is(res.headers.get('content-type'), 'application/json')
  const s = (await res.json()) as AdminStatus
  assert.is(s.shards, 2)
  assert.equal(s.shardsDown, [])
  assert.is(s.entries, 11)
  assert.is(s.hitRate, 0.5)
  assert.is(s.byShard.length, 2)
  assert.is(s.byShard[0]!.entries + s.byShard[1]!.entries, 11)
  assert.equal(Object.keys(s.regions), ['default', 'sessions'])
  assert.is(s.regions.default!.entries, 10)
  assert.is(s.regions.default!.maxEntries, 1000)
  assert.is(s.regions.default!.utilization, 0.01)
  assert.is(s.regions.sessions!.maxBytes, 1024 * 1024)
  assert.ok(s.memory.rss > s.memory.heapUsed && s.memory.heapUsed > 0)
  assert.is(s.tiers, null)
  assert.is(s.bus, null)
  assert.is(s.backup, null)
  assert.equal(s.alerts, [])
})

test('/events streams entry events and alerts as server-sent events, picked by ?events=; the stream ends when the endpoint closes', async () => {
  const c = await cache({ regions: { default: { maxEntries: 100 } }, alerts: { memoryUse: 0.05, intervalMs: 50 } })
  const admin = await c.serveAdmin({ token: TOKEN })
  const base = `http://127.0.0.1:${admin.port}`
  const bad = await fetch(`${base}/events?events=set,bogus`, { headers: auth })
  assert.is(bad.status, 400)
  assert.match(await bad.text(), /events must be a comma-separated list of set, delete, .* \(got "set,bogus"\)/)

  const res = await fetch(`${base}/events?events=set,delete,alert`, { headers: auth })
  assert.is(res.headers.get('content-type'), 'text/event-stream')
  // Until the alert (it fires at the first check after the fifth entry) and all eight entry events.
  const reading = readEvents(res, (got) => got.some(([name]) => name === 'alert') && got.filter(([name]) => name !== 'alert').length === 8)
  await c.set('a', 1)
  await c.delete('a')
  // Six entries of a 100-entry budget: 6% of it, past the 5% threshold.
  for (let i = 0; i < 6; i++) await c.set(`m:${i}`, i)
  const got = await reading
  // One key's events come in order; each shard reports its own, so keys on different shards may interleave.
  assert.equal(
    got.filter(([, e]) => (e as { key?: string }).key === 'a'),
    [
      ['set', { type: 'set', region: 'default', key: 'a' }],
      ['delete', { type: 'delete', region: 'default', key: 'a' }],
    ],
  )
  const sets = got.filter(([name]) => name === 'set').map(([, e]) => (e as { key: string }).key)
  assert.equal(sets.sort(), ['a', 'm:0', 'm:1', 'm:2', 'm:3', 'm:4', 'm:5'])
  const [, e] = got.find(([name]) => name === 'alert')!
  assert.equal({ ...(e as object), value: undefined }, { kind: 'memoryUse', region: 'default', value: undefined, threshold: 0.05, state: 'firing' })
  const status = (await (await fetch(`${base}/status`, { headers: auth })).json()) as AdminStatus
  assert.is((status.alerts as { kind: string }[])[0]!.kind, 'memoryUse')

  // Closing the endpoint ends the stream (the loop below returns) and refuses new connections.
  const stream = await fetch(`${base}/events`, { headers: auth })
  const ended = readEvents(stream, () => false)
  await admin.close()
  assert.equal(await ended, [])
  // Refused, or (on a socket fetch kept alive) closed by the other side: no answer either way.
  const err = await errorOf(fetch(`${base}/status`, { headers: auth }))
  assert.match(String((err as { cause?: { code?: string } }).cause?.code), /^(ECONNREFUSED|UND_ERR_SOCKET|ECONNRESET)$/)
})

test('an /events client that stops reading has its stream closed, not its events piled up in the cache process', async () => {
  const c = await cache({ regions: { default: { maxEntries: 1_000_000 } } })
  const admin = await c.serveAdmin({ token: TOKEN })
  const res = await new Promise<IncomingMessage>((resolve) => get({ port: admin.port, path: '/events?events=set', headers: auth }, resolve))
  res.pause() // reads nothing: the sockets' buffers fill, then the server's
  // 500,000 set events of ~70 bytes: ~35 MB, far more than loopback socket buffers and the 1 MiB the server keeps.
  const SETS = 500_000
  for (let i = 0; i < SETS; i += 5000) await c.mset(Array.from({ length: 5000 }, (_, j) => [`k:${i + j}`, j] as [string, number]))
  let text = ''
  res.setEncoding('utf8')
  res.on('data', (d: string) => (text += d))
  res.resume()
  // Without the limit the stream would stay open, every event queued for it: a generous bound says so.
  const ended = await new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), 60_000)
    res.once('end', () => {
      clearTimeout(t)
      resolve(true)
    })
  })
  assert.ok(ended, 'the server kept the stream open')
  const events = text.split('\n\n').filter((b) => b.startsWith('event: set'))
  assert.ok(events.length > 0 && events.length < SETS, `${events.length} events`)
  assert.match(text, /: events were sent faster than this client read them \(over 1048576 bytes waiting\); stream closed\n\n$/)
  // The cache serves on.
  assert.is(await c.get('k:0'), 0)
})

test('shardcache status, metrics and events against the endpoint', async () => {
  const c = await cache({ regions: { default: { maxEntries: 1000 } } })
  const admin = await c.serveAdmin({ token: TOKEN })
  const url = `http://127.0.0.1:${admin.port}`
  for (let i = 0; i < 20; i++) await c.set(`k:${i}`, i)
  await c.get('k:0')

  const status = await cli(['status', '--url', url, '--token', TOKEN])
  assert.is(status.code, 0, status.err)
  const lines = status.out.split('\n')
  assert.match(lines[0]!, new RegExp(`^shardcache at ${url} · up \\d+(s|m \\d+s|h \\d+m) · 2 shards$`))
  assert.match(lines[1]!, /^20 entries · .* in use · hit rate 100\.0% · process RSS /)
  assert.match(lines[3]!, /^shard +entries +memory +hit rate +evictions$/)
  assert.match(status.out, /\ndefault +20 +[\d.]+ [KMG]?B +1,000 entries +2\.0% +100\.0% +0\n/)
  const json = await cli(['status', '--url', url, '--token', TOKEN, '--json'])
  assert.is((JSON.parse(json.out) as AdminStatus).entries, 20)

  const metrics = await cli(['metrics', '--url', url, '--token', TOKEN])
  assert.is(metrics.code, 0)
  assert.match(metrics.out, /^# HELP /)
  assert.match(metrics.out, /shardcache_entries\{region="default"\} 20\n/)

  const ac = new AbortController()
  let out = ''
  const tail = adminCommand('events', ['--url', url, '--token', TOKEN, '--events', 'set'], (s) => {
    out += s
    if (out.includes('"k:new"')) ac.abort()
  }, () => {}, ac.signal)
  // The stream is open once the endpoint has its listener: set until a line comes.
  for (let i = 0; !ac.signal.aborted && i < 500; i++) {
    await c.set('k:new', i)
    await new Promise((r) => setTimeout(r, 20))
  }
  assert.is(await tail, 0)
  assert.match(out, /^\d{4}-\d\d-\d\dT[\d:.]+Z set \{"type":"set","region":"default","key":"k:new"\}\n/m)
})

test('the commands say what is wrong: a refused token and an unreachable endpoint exit 1, usage errors 2', async () => {
  const c = await cache()
  const admin = await c.serveAdmin({ token: TOKEN })
  const url = `http://127.0.0.1:${admin.port}`
  const refused = await cli(['status', '--url', url, '--token', 'nope'])
  assert.is(refused.code, 1)
  assert.is(refused.err, `shardcache status: ${url} refused the token (401): check --token or SHARDCACHE_TOKEN\n`)
  await admin.close()
  const gone = await cli(['metrics', '--url', url, '--token', TOKEN])
  assert.is(gone.code, 1)
  assert.match(gone.err, new RegExp(`^shardcache metrics: cannot reach ${url}: .*ECONNREFUSED`))
  const usage = await cli(['status', '--token', TOKEN, '--events', 'set'])
  assert.is(usage.code, 2)
  assert.match(usage.err, /^shardcache status: --events is not an option of status\nshardcache status: --url is required/)
  const badUrl = await cli(['events', '--url', 'ftp://x', '--token', TOKEN])
  assert.is(badUrl.code, 2)
  assert.match(badUrl.err, /--url must be an http:\/\/ or https:\/\/ URL \(got "ftp:\/\/x"\)/)
  const env = process.env.SHARDCACHE_TOKEN
  delete process.env.SHARDCACHE_TOKEN
  const noToken = await cli(['metrics', '--url', url])
  if (env !== undefined) process.env.SHARDCACHE_TOKEN = env
  assert.is(noToken.code, 2)
  assert.match(noToken.err, /--token \(or the SHARDCACHE_TOKEN environment variable\) is required/)
})

test('the installed program: status --watch redraws until stopped, with the token from SHARDCACHE_TOKEN', async () => {
  const c = await cache()
  const admin = await c.serveAdmin({ token: TOKEN })
  await c.set('a', 1)
  const child = spawn(process.execPath, [CLI, 'status', '--url', `http://127.0.0.1:${admin.port}`, '--watch', '0.1'], {
    env: { ...process.env, SHARDCACHE_TOKEN: TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stderr.on('data', (d: Buffer) => (err += d))
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d
      // Piped (not a terminal): each refresh is printed after the last.
      if (out.split('shardcache at ').length > 3) resolve()
    })
    child.once('exit', () => reject(new Error(`exited early: ${err}`)))
  })
  child.kill()
  assert.ok(out.split('\n').filter((l) => l.startsWith('shardcache at ')).length >= 3, out)
  assert.match(out, /^1 entries · /m)
})

test('status --watch on a terminal redraws in place: cursor home, each line cleared to its end, the rest cleared below', async () => {
  const c = await cache()
  const admin = await c.serveAdmin({ token: TOKEN })
  await c.set('a', 1)
  // util-linux script(1) runs the command on a pseudo-terminal, so stdout is a TTY.
  const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} status --url http://127.0.0.1:${admin.port} --watch 0.1`
  const child = spawn('script', ['-qfec', command, '/dev/null'], { env: { ...process.env, SHARDCACHE_TOKEN: TOKEN }, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d
      if (out.split('\x1b[H').length > 3) resolve()
    })
    child.once('exit', (code) => reject(new Error(`exited early (${code}): ${out}`)))
  })
  child.kill()
  const frames = out.split('\x1b[H').slice(1, 3)
  for (const f of frames) {
    assert.match(f, /^shardcache at http:\/\/127\.0\.0\.1:\d+ · up /)
    assert.ok(f.endsWith('\x1b[J') || f.includes('\x1b[J'), JSON.stringify(f.slice(-40)))
    // The terminal turns \n into \r\n: every line ends with clear-to-end-of-line first.
    for (const line of f.split('\x1b[J')[0]!.split('\n').slice(0, -1)) assert.ok(line.replace(/\r$/, '').endsWith('\x1b[K'), JSON.stringify(line))
  }
})

test('serveAdmin refuses bad options with the option named, and a port in use', async () => {
  const c = await cache()
  const cases: [unknown, RegExp][] = [
    [undefined, /options must be an object like \{ port: 9464, token \}/],
    [{}, /options\.token must be a non-empty string/],
    [{ token: '' }, /options\.token must be a non-empty string/],
    [{ token: TOKEN, port: 70000 }, /options\.port must be an integer from 0 to 65535 \(got 70000\)/],
    [{ token: TOKEN, host: '' }, /options\.host must be a host name or address/],
    [{ token: TOKEN, tls: true }, /options\.tls is not an option/],
  ]
  for (const [o, why] of cases) {
    const err = await errorOf(c.serveAdmin(o as { token: string }))
    assert.is(err.code, 'E_INVALID_OPTION', err.message)
    assert.match(err.message, why)
  }
  const first = await c.serveAdmin({ token: TOKEN })
  const err = await errorOf(c.serveAdmin({ token: TOKEN, port: first.port }))
  assert.is(err.code, 'E_INVALID_OPTION')
  assert.match(err.message, new RegExp(`options\\.port ${first.port} on 127\\.0\\.0\\.1 cannot be listened on: .*EADDRINUSE`))
  // cache.close() closes its endpoints.
  await c.close()
  const refused = await errorOf(fetch(`http://127.0.0.1:${first.port}/status`, { headers: auth }))
  assert.match(String((refused as { cause?: { code?: string } }).cause?.code), /^(ECONNREFUSED|UND_ERR_SOCKET|ECONNRESET)$/)
})

test.run()
