/**
 * One instance of the read-through section (forked by read_through.ts): a
 * process of its own with one cache, shardcache or bentocache, as one replica
 * of a service. It lives through one engine's run and answers requests by id:
 * open the cache, publish a probe invalidation (the bus handshake), run the
 * schedule, close. It exits when the parent says "close", and on its own when
 * the IPC channel goes away (the parent died), so it never outlives the harness.
 *
 * Both engines sit behind one small interface, so the driver loop, the loader
 * and every counter are the same code for both.
 */
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createHistogram } from 'node:perf_hooks'
import type { RedisOptions } from 'ioredis'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis'
import { createCache } from '../src/index.js'
import type { Cache, CacheStats } from '../src/index.js'
import { sleep } from './child.js'
import { servePeer } from './peer_process.js'
import { describeError, summarize } from './report.js'
import { buildSchedule, deletedKeys, prefillExpiryFractions, requestCounts } from './read_through_workload.js'
import type { InstanceResult, OpenResult, PrefillResult, ReadThroughConfig, ReadThroughEngine, RtRequest, RunNames, Schedule, ShardcacheStatsDiff, TierCounts } from './read_through_workload.js'
import { ZipfSampler } from '../src/cli/workload.js'

/** What the driver needs of an engine. */
interface Engine {
  /** The read-through call: the cached value, or the loader's (cached on the way). */
  read(key: string, loader: () => Promise<string>): Promise<string>
  /** An invalidation after the source changed: L1, L2 and peers. */
  del(key: string): Promise<unknown>
  /** Bus messages from the peer applied here so far. */
  busReceived(): number
  /** Cumulative tier counters. */
  tiers(): Promise<TierCounts>
  /** shardcache only: its own stats, for the window's difference. */
  stats?(): Promise<CacheStats>
  close(): Promise<void>
}

const epochNow = (): number => performance.timeOrigin + performance.now()

/** Version of an installed package, read from its package.json (bentocache's exports do not list it); shardcache's is this project's. */
function versionOf(pkg: string): string {
  try {
    if (pkg === 'shardcache') {
      return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '?'
    }
    const require = createRequire(import.meta.url)
    let dir = dirname(require.resolve(pkg))
    for (let i = 0; i < 5; i++) {
      try {
        const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
        if (p.name === pkg) return p.version ?? '?'
      } catch {
        // not here: one level up
      }
      dir = dirname(dir)
    }
  } catch {
    // fall through
  }
  return '?'
}

/** bentocache takes ioredis options, not a URL: the URL's parts, as ioredis would read them. */
function redisOptionsOf(url: string): RedisOptions {
  const u = new URL(url)
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined
  return {
    host: u.hostname,
    port: u.port === '' ? 6379 : Number(u.port),
    ...(u.username === '' ? {} : { username: decodeURIComponent(u.username) }),
    ...(u.password === '' ? {} : { password: decodeURIComponent(u.password) }),
    ...(db === undefined || !Number.isInteger(db) ? {} : { db }),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  }
}

async function openShardcache(url: string, names: RunNames, cfg: ReadThroughConfig): Promise<Engine> {
  const cache: Cache = await createCache({
    shards: cfg.shards,
    regions: { default: { maxEntries: cfg.l1Entries } },
    l2: { redis: url, prefix: names.keyPrefix },
    bus: { redis: url, channel: names.channel },
  })
  let received = 0
  cache.on('invalidation', () => {
    received++
  })
  const compute = { ttl: cfg.ttlMs }
  return {
    read: (key, loader) => cache.getOrCompute<string>(key, loader, compute),
    del: (key) => cache.delete(key),
    busReceived: () => received,
    async tiers() {
      const t = (await cache.stats()).tiers
      if (t === undefined) throw new Error('shardcache: stats().tiers is missing although an L2 is configured')
      // Every read that is not an L1 hit went to L2; those L2 did not answer are misses (loads, or waits on one).
      return { l1Hits: t.l1.hits, l2Hits: t.l2.hits, misses: 0 }
    },
    stats: () => cache.stats(),
    close: () => cache.close(),
  }
}

async function openBentocache(url: string, names: RunNames, cfg: ReadThroughConfig): Promise<Engine> {
  const connection = redisOptionsOf(url)
  // The multi-tier setup of bentocache's docs: memory L1, Redis L2, Redis bus. Grace off (its
  // default, and shardcache is not given one either); the TTL is passed per call as for shardcache.
  const bento = new BentoCache({
    default: names.store,
    prefix: names.keyPrefix,
    ttl: cfg.ttlMs,
    grace: false,
    stores: {
      [names.store]: bentostore()
        .useL1Layer(memoryDriver({ maxItems: cfg.l1Entries }))
        .useL2Layer(redisDriver({ connection }))
        .useBus(redisBusDriver({ connection })),
    },
  })
  // Stores are created, and their bus subscribed, on first use: without this an instance that
  // has only listened so far would not be subscribed at all (the handshake then waits for it).
  bento.use()
  let received = 0
  const counts: TierCounts = { l1Hits: 0, l2Hits: 0, misses: 0 }
  bento.on('bus:message:received', () => {
    received++
  })
  bento.on('cache:hit', (e) => {
    if (e.layer === 'l1') counts.l1Hits++
    else counts.l2Hits++
  })
  bento.on('cache:miss', () => {
    counts.misses++
  })
  return {
    read: (key, loader) => bento.getOrSet<string>({ key, factory: loader, ttl: cfg.ttlMs }),
    del: (key) => bento.delete({ key }),
    busReceived: () => received,
    tiers: async () => ({ ...counts }),
    close: () => bento.disconnect(),
  }
}

// ── the pre-fill ───────────────────────────────────────────────────────────

/** A writer of L2 entries in an engine's own format, with no bus (the serving instances must not hear about it). */
interface PrefillWriter {
  set(key: string, value: string, ttlMs: number): Promise<unknown>
  close(): Promise<void>
}

async function shardcacheWriter(url: string, names: RunNames): Promise<PrefillWriter> {
  // Its own L1 is small and thrown away: only what lands in L2 matters.
  const cache = await createCache({ shards: 1, regions: { default: { maxEntries: 1000 } }, l2: { redis: url, prefix: names.keyPrefix } })
  return { set: (key, value, ttl) => cache.set(key, value, { ttl }), close: () => cache.close() }
}

function bentocacheWriter(url: string, names: RunNames): PrefillWriter {
  // L2 only; same prefix as the serving instances, so the same Redis keys.
  const store = `${names.store}_prefill`
  const bento = new BentoCache({ default: store, prefix: names.keyPrefix, stores: { [store]: bentostore().useL2Layer(redisDriver({ connection: redisOptionsOf(url) })) } })
  return { set: (key, value, ttl) => bento.set({ key, value, ttl }), close: () => bento.disconnect() }
}

/**
 * Writes every key to L2 with the expiry prefillExpiryFractions gives it, so
 * that the parent knows each key's expiry exactly (for the ideal).
 */
async function prefill(o: Opened, url: string, names: RunNames): Promise<PrefillResult> {
  const { cfg, keys } = o
  const t0 = performance.now()
  const startedAt = epochNow()
  const fractions = prefillExpiryFractions(cfg)
  const pad = 'x'.repeat(Math.max(0, cfg.valueBytes - 24))
  const writer = o.kind === 'shardcache' ? await shardcacheWriter(url, names) : bentocacheWriter(url, names)
  try {
    let next = 0
    const worker = async (): Promise<void> => {
      for (let k = next++; k < keys.length; k = next++) {
        const ttl = Math.round(startedAt + fractions[k]! * cfg.ttlMs - epochNow())
        if (ttl > 0) await writer.set(keys[k]!, makeValue(startedAt, k, pad), ttl)
      }
    }
    await Promise.all(Array.from({ length: cfg.prefillConcurrency }, worker))
  } finally {
    await writer.close()
  }
  return { startedAt, ms: performance.now() - t0 }
}

// ── the run ────────────────────────────────────────────────────────────────

interface Opened {
  engine: Engine
  kind: ReadThroughEngine
  url: string
  names: RunNames
  cfg: ReadThroughConfig
  instance: number
  schedule: Schedule
  /** Keys that some instance deletes: their reads are logged for the stale check. */
  watched: Set<number>
  keys: string[]
  probes: number
}

let opened: Opened | undefined

/** Value of a load: when the source was read, which key, then padding to the configured size. */
function makeValue(stamp: number, keyIdx: number, pad: string): string {
  return `${stamp.toFixed(3)}|${keyIdx}|${pad}`
}

function diffShardcache(a: CacheStats, b: CacheStats): ShardcacheStatsDiff {
  const ta = a.tiers
  const tb = b.tiers
  if (ta === undefined || tb === undefined || a.bus === undefined || b.bus === undefined) throw new Error('shardcache: stats() lacks tiers or bus')
  return {
    l1: { hits: tb.l1.hits - ta.l1.hits, misses: tb.l1.misses - ta.l1.misses },
    l2: {
      hits: tb.l2.hits - ta.l2.hits,
      misses: tb.l2.misses - ta.l2.misses,
      errors: tb.l2.errors - ta.l2.errors,
      promotions: tb.l2.promotions - ta.l2.promotions,
      corrupt: tb.l2.corrupt - ta.l2.corrupt,
      skipped: tb.l2.skipped - ta.l2.skipped,
      breaker: tb.l2.breaker,
    },
    bus: {
      published: b.bus.published - a.bus.published,
      received: b.bus.received - a.bus.received,
      dropped: b.bus.dropped.total - a.bus.dropped.total,
      flushes: b.bus.flushes - a.bus.flushes,
      gaps: b.bus.gaps - a.bus.gaps,
      reconnects: b.bus.reconnects - a.bus.reconnects,
    },
  }
}

/**
 * Issues the schedule: request i at startAt + i / rate, without waiting for
 * earlier ones (open loop). A 1 ms timer paces it; when the timer runs late,
 * the requests that came due meanwhile are issued at once, as they would
 * arrive at a service, and their lateness is recorded as lag.
 */
async function run(o: Opened, startAt: number): Promise<InstanceResult> {
  const { engine, cfg, schedule, watched, keys } = o
  const { total, warmup } = requestCounts(cfg)
  const periodMs = 1000 / cfg.ratePerInstance
  const pad = 'x'.repeat(Math.max(0, cfg.valueBytes - 24))
  const cachedNs: number[] = []
  const loadedNs: number[] = []
  const deleteNs: number[] = []
  const lag = createHistogram()
  const readLog: number[] = []
  const deleteLog: number[] = []
  let loaderCalls = 0
  let loaderCallsTotal = 0
  let errors = 0
  let firstError: string | undefined
  let wrongValues = 0
  let inFlight = 0
  let lastAnswer = 0
  let idle: (() => void) | undefined

  // Window start: counters are read here and at the end; the difference is the window's.
  let windowStart = 0
  let cpuStart: NodeJS.CpuUsage | undefined
  let busStart = 0
  let tiersStart: Promise<TierCounts> | undefined
  let statsStart: Promise<CacheStats> | undefined

  const settle = (): void => {
    inFlight--
    lastAnswer = performance.now()
    if (inFlight === 0) idle?.()
  }
  const fail = (err: unknown): void => {
    errors++
    firstError ??= describeError(err)
  }
  const issue = (i: number, measured: boolean): void => {
    const k = schedule.keyIdx[i]!
    const key = keys[k]!
    inFlight++
    const t0 = performance.now()
    if (schedule.isDelete[i] === 1) {
      const start = epochNow()
      engine.del(key).then(
        () => {
          const t1 = performance.now()
          deleteLog.push(k, start, start + (t1 - t0))
          if (measured) deleteNs.push(Math.round((t1 - t0) * 1e6))
          settle()
        },
        (err: unknown) => {
          if (measured) fail(err)
          settle()
        },
      )
      return
    }
    // The loader of this request: counted against it when the engine calls it.
    let loaded = false
    const loader = async (): Promise<string> => {
      const stamp = epochNow()
      loaded = true
      loaderCallsTotal++
      if (measured) loaderCalls++
      await sleep(cfg.loaderMs)
      return makeValue(stamp, k, pad)
    }
    engine.read(key, loader).then(
      (v) => {
        const t1 = performance.now()
        if (measured) (loaded ? loadedNs : cachedNs).push(Math.round((t1 - t0) * 1e6))
        // The value must be this key's: a cheap check that the engine answered the right thing.
        const a = typeof v === 'string' ? v.indexOf('|') : -1
        const b = a < 0 ? -1 : v.indexOf('|', a + 1)
        if (b < 0 || Number(v.slice(a + 1, b)) !== k) {
          if (measured) wrongValues++
        } else if (watched.has(k)) {
          readLog.push(k, performance.timeOrigin + t0, Number(v.slice(0, a)))
        }
        settle()
      },
      (err: unknown) => {
        if (measured) fail(err)
        settle()
      },
    )
  }

  await sleep(Math.max(0, startAt - epochNow()))
  let i = 0
  while (i < total) {
    const now = epochNow()
    const due = Math.min(total, Math.floor((now - startAt) / periodMs) + 1)
    for (; i < due; i++) {
      const measured = i >= warmup
      if (i === warmup) {
        windowStart = performance.now()
        cpuStart = process.cpuUsage()
        busStart = engine.busReceived()
        tiersStart = engine.tiers()
        statsStart = engine.stats?.()
      }
      if (measured) lag.record(Math.max(1, Math.round((now - (startAt + i * periodMs)) * 1e6)))
      issue(i, measured)
    }
    if (i < total) await sleep(1)
  }
  // Drain: the last requests (and any load they started) finish before the counters are read.
  let unanswered = 0
  if (inFlight > 0) {
    const drained = new Promise<boolean>((resolve) => {
      idle = () => resolve(true)
      setTimeout(() => resolve(false), cfg.drainTimeoutMs)
    })
    if (!(await drained)) unanswered = inFlight
  }
  const cpu = process.cpuUsage(cpuStart)
  const elapsedMs = (unanswered > 0 ? performance.now() : lastAnswer) - windowStart
  const t0 = await (tiersStart ?? engine.tiers())
  const t1 = await engine.tiers()
  const statsA = await statsStart
  const statsB = await engine.stats?.()
  const reads = cachedNs.length + loadedNs.length
  const tiers: TierCounts = { l1Hits: t1.l1Hits - t0.l1Hits, l2Hits: t1.l2Hits - t0.l2Hits, misses: t1.misses - t0.misses }
  // shardcache counts hits per tier; what neither tier answered was a load (or a wait on one).
  if (o.kind === 'shardcache') tiers.misses = Math.max(0, reads - tiers.l1Hits - tiers.l2Hits)
  return {
    instance: o.instance,
    pid: process.pid,
    reads,
    deletes: deleteNs.length,
    loaderCalls,
    loaderCallsTotal,
    errors,
    firstError,
    wrongValues,
    elapsedMs,
    cachedNs,
    loadedNs,
    deleteNs,
    lag: summarize(lag),
    cpuMs: (cpu.user + cpu.system) / 1000,
    busReceived: engine.busReceived() - busStart,
    tiers,
    shardcache: statsA !== undefined && statsB !== undefined ? diffShardcache(statsA, statsB) : undefined,
    unanswered,
    readLog,
    deleteLog,
  }
}

async function handle(req: RtRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'open': {
      const { cfg, engine: kind, instance } = req
      const engine = kind === 'shardcache' ? await openShardcache(req.url, req.names, cfg) : await openBentocache(req.url, req.names, cfg)
      const sampler = new ZipfSampler(cfg.keys, cfg.zipfS, cfg.seed)
      const schedules = [buildSchedule(cfg, 0, sampler), buildSchedule(cfg, 1, sampler)]
      opened = {
        engine,
        kind,
        url: req.url,
        names: req.names,
        cfg,
        instance,
        schedule: schedules[instance]!,
        watched: deletedKeys(schedules),
        keys: Array.from({ length: cfg.keys }, (_, k) => `rt:${k}`),
        probes: 0,
      }
      const result: OpenResult = { pid: process.pid, engineVersion: versionOf(kind), ioredisVersion: versionOf('ioredis') }
      return result
    }
    case 'prefill': {
      const o = must()
      return prefill(o, o.url, o.names)
    }
    case 'probe': {
      const o = must()
      await o.engine.del(`rt:probe:${o.instance}:${o.probes++}`)
      return null
    }
    case 'received':
      return must().engine.busReceived()
    case 'run': {
      const o = must()
      return run(o, req.startAt)
    }
    case 'close': {
      const o = opened
      opened = undefined
      await o?.engine.close()
      return null
    }
  }
}

function must(): Opened {
  if (opened === undefined) throw new Error('no cache open in this instance')
  return opened
}

servePeer<RtRequest>('read_through_child', handle)
