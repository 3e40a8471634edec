/**
 * One event-loop scenario in its own process (forked by event_loop.ts with
 * --expose-gc): a fresh heap per engine, so one engine's million objects and GC
 * history never inflate the next engine's pauses.
 *
 * The simulated server: requests arrive open-loop at a fixed rate (a stalled
 * loop does not slow the arrivals down, as with real clients); each one parses
 * a request head, reads a user by a Zipf-chosen id, builds and stores it on a
 * miss, and serialises the response. Alongside, brand-new keys are set at a steady rate so a full cache
 * keeps evicting, which is what keeps an in-heap cache's old generation busy.
 */
import { monitorEventLoopDelay, createHistogram } from 'node:perf_hooks'
import { LRUCache } from 'lru-cache'
import { createCache } from '../src/index.js'
import type { Cache } from '../src/index.js'
import { drawRing, ZipfSampler } from '../src/cli/workload.js'
import type { EventLoopConfig, EventLoopResult } from './event_loop_types.js'
import { gcObserver } from './gc.js'
import { makeUser } from './users.js'
import type { User } from './users.js'
import { forceGc, serveChild, sleep } from './child.js'

/**
 * The head of a typical browser/API request. Every request parses one: real
 * servers allocate the parsed headers, the URL and the response per request,
 * and that request-scoped garbage sets how often the young generation is
 * collected, which is when a large old generation gets in the way.
 */
const REQUEST_HEAD = [
  'GET /api/users/{id}?fields=id,name,email&include=profile HTTP/1.1',
  'Host: api.example.com',
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  'Accept: application/json, text/plain, */*',
  'Accept-Language: en-US,en;q=0.9,de;q=0.8',
  'Accept-Encoding: gzip, deflate, br',
  'Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
  'Cookie: session=3f9a1c2b7d; theme=dark; consent=analytics,ads; _ga=GA1.2.123456789.1700000000',
  'X-Request-Id: {seq}',
  'X-Forwarded-For: 203.0.113.7, 198.51.100.23',
  'Connection: keep-alive',
  'Cache-Control: no-cache',
].join('\r\n')

interface ParsedRequest {
  method: string
  path: string
  query: URLSearchParams
  headers: Record<string, string>
}

function parseRequest(id: number, seq: number): ParsedRequest {
  const raw = REQUEST_HEAD.replace('{id}', String(id)).replace('{seq}', String(seq))
  const lines = raw.split('\r\n')
  const [method = '', target = ''] = (lines[0] ?? '').split(' ')
  const headers: Record<string, string> = {}
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  const q = target.indexOf('?')
  return { method, path: q < 0 ? target : target.slice(0, q), query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)), headers }
}

/** The response work every request does, cache or not: an envelope, a JSON body and headers. */
let responseBytes = 0
function respond(user: User, req: ParsedRequest): void {
  const body = JSON.stringify({ ok: true, requestId: req.headers['x-request-id'], data: user })
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(body.length),
    'x-request-id': req.headers['x-request-id'] ?? '',
    'cache-control': 'private, max-age=60',
  }
  responseBytes += body.length + headers['content-length']!.length
}

const userKey = (id: number): string => `user:${id}`

/** A request's outcome; `complete` is called exactly once, synchronously or later. */
interface Engine {
  prefill(entries: number, chunk: number): Promise<void>
  request(id: number, req: ParsedRequest, complete: (hit: boolean) => void, fail: (err: unknown) => void): void
  churn(seq: number, fail: (err: unknown) => void): void
  close(): Promise<void>
}

function noCache(): Engine {
  return {
    async prefill() {},
    request(id, req, complete) {
      respond(makeUser(id), req)
      complete(false)
    },
    churn(seq) {
      // Same allocation as the cached engines' churn, minus the storage.
      makeUser(10_000_000 + seq)
    },
    async close() {},
  }
}

function lruEngine(entries: number, out: { lru?: LRUCache<string, User> }): Engine {
  const lru = new LRUCache<string, User>({ max: entries })
  out.lru = lru
  return {
    async prefill(n) {
      for (let id = 0; id < n; id++) lru.set(userKey(id), makeUser(id))
    },
    request(id, req, complete) {
      const key = userKey(id)
      let user = lru.get(key)
      const hit = user !== undefined
      if (user === undefined) {
        user = makeUser(id)
        lru.set(key, user)
      }
      respond(user, req)
      complete(hit)
    },
    churn(seq) {
      lru.set(`churn:${seq}`, makeUser(10_000_000 + seq))
    },
    async close() {
      lru.clear()
    },
  }
}

async function shardcacheEngine(cfg: EventLoopConfig, out: { cache?: Cache }): Promise<Engine> {
  // The entry budget equals the pre-fill, so every churned key evicts one; the
  // byte budget is generous so that entries, not bytes, decide.
  const cache = await createCache({
    shards: cfg.shards,
    regions: { default: { maxEntries: cfg.entries, maxBytes: Math.max(256 * 2 ** 20, cfg.entries * 1024) } },
  })
  out.cache = cache
  return {
    async prefill(n, chunk) {
      // Two chunks in flight: the main thread encodes the next while a shard stores the last.
      let pending: Promise<number> | undefined
      for (let start = 0; start < n; start += chunk) {
        const pairs: [string, User][] = []
        for (let id = start; id < Math.min(n, start + chunk); id++) pairs.push([userKey(id), makeUser(id)])
        const p = cache.mset(pairs)
        if (pending !== undefined) await pending
        pending = p
      }
      await pending
    },
    request(id, req, complete, fail) {
      const key = userKey(id)
      cache.get<User>(key).then(
        (cached) => {
          let user = cached
          if (user === undefined) {
            user = makeUser(id)
            cache.set(key, user).catch((err: unknown) => fail(new Error(`shardcache set(${JSON.stringify(key)}) after a miss failed`, { cause: err })))
          } else if (cached?.id !== id) {
            fail(new Error(`shardcache get(${JSON.stringify(key)}) returned the entry of id ${JSON.stringify(cached?.id)}`))
          }
          respond(user, req)
          complete(cached !== undefined)
        },
        (err: unknown) => fail(new Error(`shardcache get(${JSON.stringify(key)}) failed`, { cause: err })),
      )
    },
    churn(seq, fail) {
      const key = `churn:${seq}`
      cache.set(key, makeUser(10_000_000 + seq)).catch((err: unknown) => fail(new Error(`shardcache set(${JSON.stringify(key)}) failed`, { cause: err })))
    },
    close: () => cache.close(),
  }
}

async function run(cfg: EventLoopConfig): Promise<EventLoopResult> {
  const handles: { lru?: LRUCache<string, User>; cache?: Cache } = {}
  const engine =
    cfg.engine === 'no cache' ? noCache() : cfg.engine === 'lru-cache' ? lruEngine(cfg.entries, handles) : await shardcacheEngine(cfg, handles)

  const zipf = new ZipfSampler(cfg.entries, cfg.zipfS, cfg.seed)
  const ring = drawRing(zipf, 1 << 20, cfg.seed + 7)
  const mask = ring.length - 1

  const t0 = performance.now()
  await engine.prefill(cfg.entries, cfg.prefillChunk)
  const prefillMs = performance.now() - t0
  forceGc()
  await sleep(200)

  const eld = monitorEventLoopDelay({ resolution: 1 })
  const reqHist = createHistogram()
  const gc = gcObserver()
  let failure: unknown
  const fail = (err: unknown): void => {
    failure ??= err
  }

  let issued = 0
  let completed = 0
  let hits = 0
  let misses = 0
  let inFlight = 0
  let maxInFlight = 0
  let churned = 0
  let measuring = false

  const msPerReq = 1000 / cfg.requestsPerSec
  const start = performance.now()
  const measureFrom = start + cfg.warmupMs
  const end = measureFrom + cfg.durationMs
  let reqSeq = 0
  let churnSeq = 0

  const issue = (seq: number): void => {
    const intended = start + seq * msPerReq
    const id = ring[seq & mask]!
    const counted = measuring
    if (counted) issued++
    inFlight++
    if (inFlight > maxInFlight) maxInFlight = inFlight
    engine.request(
      id,
      parseRequest(id, seq),
      (hit) => {
        inFlight--
        if (!counted) return
        completed++
        if (hit) hits++
        else misses++
        reqHist.record(Math.max(1, Math.round((performance.now() - intended) * 1e6)))
      },
      (err) => {
        inFlight--
        fail(err)
      },
    )
  }

  await new Promise<void>((resolve) => {
    // Arrivals are computed from the clock, not counted per tick: however late a
    // tick runs, the requests that should have arrived meanwhile are all issued.
    const timer = setInterval(() => {
      const now = performance.now()
      if (!measuring && now >= measureFrom) {
        measuring = true
        eld.reset()
        gc.reset()
        eld.enable()
      }
      const dueReq = Math.floor((Math.min(now, end) - start) / msPerReq)
      while (reqSeq < dueReq) issue(reqSeq++)
      const dueChurn = Math.floor(((Math.min(now, end) - start) * cfg.churnPerSec) / 1000)
      while (churnSeq < dueChurn) {
        engine.churn(churnSeq++, fail)
        if (measuring) churned++
      }
      if (now >= end || failure !== undefined) {
        clearInterval(timer)
        eld.disable()
        resolve()
      }
    }, 1)
  })
  if (failure !== undefined) throw failure

  // Let async requests still in flight finish so their latencies count.
  const drainUntil = performance.now() + 5000
  while (inFlight > 0 && performance.now() < drainUntil) await sleep(5)
  gc.stop()
  if (failure !== undefined) throw failure

  const ns = 1e6
  const mem = process.memoryUsage()
  const result: EventLoopResult = {
    engine: cfg.engine,
    config: cfg,
    prefillMs,
    delay: {
      p50Ms: eld.percentile(50) / ns,
      p90Ms: eld.percentile(90) / ns,
      p99Ms: eld.percentile(99) / ns,
      maxMs: eld.max / ns,
      meanMs: eld.mean / ns,
      samples: eld.count,
    },
    requestLatency: {
      p50Ms: reqHist.percentile(50) / ns,
      p99Ms: reqHist.percentile(99) / ns,
      maxMs: reqHist.count === 0 ? 0 : reqHist.max / ns,
    },
    requests: { issued, completed, hits, misses, maxInFlight, churnSets: churned },
    gc: gc.summary(),
    memory: { heapUsedBytes: mem.heapUsed, rssBytes: mem.rss, externalBytes: mem.external },
  }
  if (handles.cache !== undefined) {
    const s = await handles.cache.stats()
    result.cacheStats = { hitRate: s.hitRate, entries: s.entries, evictions: s.evictions, sets: s.sets, shards: s.shards, shardRestarts: s.shardRestarts }
  }
  if (handles.lru !== undefined) result.lruSize = handles.lru.size
  await engine.close()
  if (responseBytes === 0) throw new Error('no response was built: the request loop did not run')
  return result
}

serveChild(run)
