/**
 * One event-loop scenario in its own process (forked by event_loop.ts with
 * --expose-gc): a fresh heap per engine, so one engine's million objects and GC
 * history never inflate the next engine's pauses.
 *
 * The simulated server: requests arrive open-loop at a fixed rate (a stalled
 * loop does not slow the arrivals down, as with real clients); each one reads a
 * user by a Zipf-chosen id, builds and stores it on a miss, and serialises the
 * response. Alongside, brand-new keys are set at a steady rate so a full cache
 * keeps evicting, which is what keeps an in-heap cache's old generation busy.
 */
import { monitorEventLoopDelay, createHistogram, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks'
import type { PerformanceEntry } from 'node:perf_hooks'
import { LRUCache } from 'lru-cache'
import { createCache } from '../src/index.js'
import type { Cache } from '../src/index.js'
import { drawRing, ZipfSampler } from './zipf.js'
import type { ChildMessage, EventLoopConfig, EventLoopResult, GcSummary } from './event_loop_types.js'

interface User {
  id: number
  name: string
  email: string
  createdAt: string
  role: string
  country: string
  tags: string[]
}

const SURNAMES = ['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Rodriguez', 'Martinez']
const ROLES = ['viewer', 'editor', 'admin', 'owner']
const COUNTRIES = ['DE', 'FR', 'US', 'BR', 'JP', 'IN', 'NG', 'AU']
const EPOCH = Date.UTC(2020, 0, 1)

/** A ~200-byte (as JSON) object with fresh strings, like a row just read from a database. */
function makeUser(id: number): User {
  const surname = SURNAMES[id % SURNAMES.length]!
  return {
    id,
    name: `User ${id} ${surname}`,
    email: `user.${id}.${surname.toLowerCase()}@example-${id % 97}.com`,
    createdAt: new Date(EPOCH + id * 1000).toISOString(),
    role: ROLES[id % ROLES.length]!,
    country: COUNTRIES[id % COUNTRIES.length]!,
    tags: [`group-${id % 13}`, `plan-${id % 5}`],
  }
}

/** The response work every request does, cache or not. */
let responseBytes = 0
function respond(user: User): void {
  responseBytes += JSON.stringify(user).length
}

const userKey = (id: number): string => `user:${id}`

/** A request's outcome; `complete` is called exactly once, synchronously or later. */
interface Engine {
  prefill(entries: number, chunk: number): Promise<void>
  request(id: number, complete: (hit: boolean) => void, fail: (err: unknown) => void): void
  churn(seq: number, fail: (err: unknown) => void): void
  close(): Promise<void>
}

function noCache(): Engine {
  return {
    async prefill() {},
    request(id, complete) {
      respond(makeUser(id))
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
    request(id, complete) {
      const key = userKey(id)
      let user = lru.get(key)
      const hit = user !== undefined
      if (user === undefined) {
        user = makeUser(id)
        lru.set(key, user)
      }
      respond(user)
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
    request(id, complete, fail) {
      const key = userKey(id)
      cache.get<User>(key).then((cached) => {
        let user = cached
        if (user === undefined) {
          user = makeUser(id)
          cache.set(key, user).catch(fail)
        }
        respond(user)
        complete(cached !== undefined)
      }, fail)
    },
    churn(seq, fail) {
      cache.set(`churn:${seq}`, makeUser(10_000_000 + seq)).catch(fail)
    },
    close: () => cache.close(),
  }
}

function gcObserver(): { summary(): GcSummary; reset(): void; stop(): void } {
  let s: GcSummary = { count: 0, minor: 0, major: 0, totalMs: 0, maxMs: 0 }
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
      s.count++
      s.totalMs += e.duration
      if (e.duration > s.maxMs) s.maxMs = e.duration
      const kind = e.detail?.kind
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) s.major++
      else if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) s.minor++
    }
  })
  obs.observe({ entryTypes: ['gc'] })
  return {
    summary: () => ({ ...s }),
    reset: () => {
      s = { count: 0, minor: 0, major: 0, totalMs: 0, maxMs: 0 }
    },
    stop: () => obs.disconnect(),
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function forceGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) {
    gc()
    gc()
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

function send(msg: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) {
      console.log(JSON.stringify(msg))
      resolve()
      return
    }
    process.send(msg, undefined, {}, () => resolve())
  })
}

process.once('message', (cfg: EventLoopConfig) => {
  run(cfg).then(
    (result) => send({ ok: true, result }),
    (err: unknown) => send({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  ).finally(() => process.exit(0))
})
