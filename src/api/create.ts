/**
 * How a {@link Cache} comes to be: createCache starts the shard threads, the
 * broker for attached threads, the loader pool, L2 and the bus, and wires
 * them into the cache's core; attachCache builds a client of an existing
 * cache in another thread, from its handle.
 */
import { CacheError, InvalidOptionError, ShardCrashedError, ShardStartError } from '../errors.js'
import { regionShare } from '../options/regions.js'
import { rejectUnknownKeys } from '../options/parse.js'
import { resolveOptions } from '../options/cache.js'
import type { CacheOptions, ResolvedOptions } from '../options/cache.js'
import { describe } from '../messages.js'
import { Router } from '../client/router.js'
import { aggregateStats } from '../ops/stats.js'
import { emptyRegionStats, policyLearnsFromHits } from '../wire/region_types.js'
import type { CacheStats } from '../ops/stats.js'
import { ShardThread } from '../client/shard_thread.js'
import { workerExecArgv } from '../client/worker_argv.js'
import { AttachedLink, Broker, BrokerClient, BusRelay, FlightRelay, WriteRelay, checkHandle } from '../client/attach.js'
import { FlightCoordinator } from '../client/flights.js'
import { EventEmitter } from 'node:events'
import { BusOpType } from '../redis/bus_message.js'
import type { Bus } from '../redis/bus.js'
import { BackupSchedule, prepareBackupDir } from '../ops/backup.js'
import { AlertWatch } from '../ops/alerts.js'
import { Maintenance } from '../ops/maintenance.js'
import { loadTracer } from '../ops/tracing.js'
import type { AttachOptions, CacheHandle } from '../client/attach.js'
import { control, emit } from './core.js'
import type { Admin, Core, PoolTask } from './core.js'
import { Cache, EVENT_OF_BIT } from './cache.js'
import type { EntryEvent } from './cache.js'
import { busHost, relayToL2, repairedToBus } from './remote.js'
import { RegionScope } from './scope.js'
import { TierChain } from '../tiers/chain.js'
import type { ChainEntry } from '../tiers/chain.js'
import { TierMember } from '../tiers/member.js'
import { WriteThrough, decodeCopy } from '../backing/write_through.js'
import type { CacheSide, WriteErrorEvent } from '../backing/write_through.js'

/**
 * Starts the shard threads and resolves to a ready {@link Cache}. Rejects with
 * `E_INVALID_OPTION` (the message names the option) or `E_INVALID_TTL` on bad options.
 *
 * @example
 * ```ts
 * const cache = await createCache({ shards: 2, regions: { default: { maxBytes: '256mb' } } })
 * await cache.set('user:1', { name: 'Alice' }, { ttl: '10m' })
 * await cache.get('user:1') // → { name: 'Alice' }
 * await cache.close()
 * ```
 */
export async function createCache(options?: CacheOptions): Promise<Cache> {
  const resolved = resolveOptions(options)
  const { shards, regions, codec } = resolved
  if (resolved.backup !== undefined) prepareBackupDir(resolved.backup.dir)
  // Before anything starts: a missing @opentelemetry/api is a bad option.
  const tracer = resolved.tracing === undefined ? undefined : await loadTracer(resolved.tracing, (m) => new InvalidOptionError(m))
  const perShard = Array.from({ length: shards }, (_, s) =>
    regions.map((r) => {
      const share = regionShare(r, s, shards)
      // With rebalancing, each shard reserves slots for the largest budget it may be given.
      const ceiling = Maintenance.ceiling(resolved.maintenance, r, shards)
      if (ceiling !== undefined) share.maxBytesCeiling = ceiling
      return share
    }),
  )
  // Shards spinning now, across this cache (see the transport notes in src/wire/protocol.ts).
  const spinners = new Int32Array(new SharedArrayBuffer(4))
  const threads: ShardThread[] = []
  let router: Router
  try {
    router = new Router({
      shards,
      logHits: regions.map((r) => policyLearnsFromHits(r.policy)),
      keepsForever: regions.map((r) => r.defaultTtl === Infinity),
      codec,
      nearCacheEntries: resolved.nearCacheEntries,
      replySpinMicros: resolved.replySpinMicros,
      owner: true,
      link: (i, events) => {
        const t = new ShardThread(i, perShard[i]!, resolved.idleSpinMicros, resolved.replySpinMicros, spinners, events, resolved.resourceLimits)
        threads.push(t)
        return t
      },
    })
  } catch (err) {
    // A thread could not even be created: the ones that were are stopped.
    await Promise.all(threads.map((t) => t.close()))
    throw new ShardStartError(threads.length, { cause: err })
  }
  // Set once the bus and the L2 tier started; the broker and stats read them late.
  let bus: Bus | undefined
  let l2: TierChain | undefined
  let backups: BackupSchedule | undefined
  const writers = new Map<number, WriteThrough>()
  const stats = async (): Promise<CacheStats> => {
    const reports = await control(router, threads, (c) => c.stats())
    const down: number[] = []
    const perShardStats = reports.map((r, shard) => {
      if (r !== undefined) return r.regions
      down.push(shard)
      return regions.map((region) => emptyRegionStats(regionShare(region, shard, shards)))
    })
    const attachedThreads = reports.reduce((n, r) => Math.max(n, r?.attachedThreads ?? 0), 0)
    const out: CacheStats = { ...aggregateStats(regions.map((r) => r.name), perShardStats, router.restarts, down), attachedThreads }
    if (bus !== undefined) out.bus = bus.stats()
    out.frameLatency = router.frameLatency.snapshot()
    if (l2 !== undefined) out.tiers = { l1: { hits: out.hits, misses: out.misses }, ...l2.levelStats() } as CacheStats['tiers']
    if (backups !== undefined) out.backup = backups.stats()
    if (resolved.maintenance !== undefined && core.maintenance !== undefined) out.maintenance = core.maintenance.stats()
    if (writers.size > 0) out.writeThrough = Object.fromEntries([...writers].map(([i, w]) => [regions[i]!.name, w.stats()]))
    return out
  }
  const resetStats = async (): Promise<void> => {
    await control(router, threads, (c) => c.resetStats())
    router.frameLatency.reset()
    bus?.resetStats()
    l2?.resetStats()
    backups?.resetStats()
    for (const w of writers.values()) w.resetStats()
    core.maintenance?.resetStats()
  }
  const flights = new FlightCoordinator()
  const broker = new Broker(resolved, {
    threads: () => threads,
    isDead: (i) => router.isDead(i),
    stats,
    resetStats,
    publish: (ops) => {
      for (const op of ops) {
        if (bus !== undefined) {
          // Relayed with values for L2; an invalidate-mode bus sends only the keys, and nothing for a fill.
          if (bus.mode !== 'invalidate' || op.type !== BusOpType.UPDATE) bus.publish(op)
          else if (op.fill !== true) bus.publish({ type: BusOpType.DELETE, region: op.region, keys: op.entries.map((e) => e.key) })
        }
        if (l2 !== undefined) void relayToL2(l2, regions, op)
      }
    },
    flights,
    write: (region, sets, opts, deletes) => {
      const w = writers.get(region)
      if (w === undefined) return Promise.reject(new InvalidOptionError(`region ${regions[region]?.name ?? region} has no writeThrough`))
      return sets !== undefined ? w.mset(sets, opts!) : w.delete(deletes!)
    },
  })
  const pool = resolved.loaderPool === undefined ? undefined : loaderPool(resolved.loaderPool)
  const admin: Admin = {
    stats,
    resetStats,
    broker,
    threads: () => threads,
    close: async () => {
      // A backup or an alert check in progress reads the shards: it ends first, and no other starts.
      await quietly(backups?.stop())
      await quietly(core.alerts?.stop())
      await quietly(core.maintenance?.stop())
      // Writes queued for the stores are made (or given up) while the shards still run.
      await quietly(Promise.all([...writers.values()].map((w) => w.flush())))
      flights.closeAll()
      // Each part is closed whatever happened to the others before it: a failure to close one
      // (a pool that never started, a Redis that went away) must not leave the shard threads running.
      await quietly(pool?.destroy())
      // Ops issued before close() are still published (the bus packs them now).
      await quietly(bus?.close())
      await quietly(l2?.close())
      // Attached threads must see E_CLOSED, not a crash, when the shards stop.
      broker.close()
      await router.close()
    },
  }
  const core: Core = {
    router,
    options: resolved,
    closed: false,
    admin,
    bus: undefined,
    events: new EventEmitter(),
    flights,
    loading: new Map(),
    runTask: pool?.run,
    l2: undefined,
    backups: undefined,
    alerts: undefined,
    writes: writers,
    maintenance: undefined,
    tracer,
  }
  for (const [index, w] of resolved.writes) {
    const r = regions[index]!
    const scope = new RegionScope(core, r)
    const side: CacheSide = {
      name: r.name,
      defaultTtl: r.defaultTtl,
      compressMinBytes: r.compressMinBytes,
      store: (key, enc, opts) => scope.store(key, enc, opts),
      deleteKeys: (keys) => scope.deleteKeys(keys),
      decode: (enc) => decodeCopy(enc, codec),
    }
    writers.set(index, new WriteThrough(w, side, (e) => reportWriteError(core.events, e)))
  }
  const cache = new Cache(core)
  const regionNames = regions.map((r) => r.name)
  for (const t of threads) {
    t.onEvents = (list) => {
      for (let i = 0; i + 2 < list.length; i += 3) {
        const type = EVENT_OF_BIT.get(list[i] as number)
        if (type === undefined) continue
        const key = list[i + 2] as string
        const e: EntryEvent = { type, region: regionNames[list[i + 1] as number]! }
        if (type !== 'clear') e.key = key
        if (type === 'evict') e.cause = 'size'
        if (type === 'expire') e.cause = 'expired'
        emit(core.events, type, e)
      }
    }
  }
  try {
    // The first answer of every shard: a thread that dies before it (its modules failed to
    // load) rejects createCache with E_SHARD_START and the thread's error as the cause.
    await Promise.all(
      threads.map((t) =>
        t.call((c) => c.stats()).catch((err: unknown) => {
          throw err instanceof ShardCrashedError ? new ShardStartError(t.index, { cause: err.cause }) : err
        }),
      ),
    )
    if (resolved.l2 !== undefined || resolved.tiers.length > 0) {
      const levels: ChainEntry[] = []
      if (resolved.l2 !== undefined) {
        // Loaded only when used: ioredis is not needed by a cache without Redis.
        const { L2Tier } = await import('../redis/l2.js')
        const redis = new L2Tier(resolved.l2)
        levels.push({ level: redis, ttlScale: resolved.l2.ttlScale, redis })
      }
      for (const t of resolved.tiers) {
        // A region writing through to this very tier has its writes made there by the write-through.
        const through = new Set([...resolved.writes].filter(([, w]) => w.tier === t.tier).map(([i]) => regions[i]!.name))
        levels.push({ level: new TierMember(t, through), ttlScale: t.ttlScale, redis: undefined })
      }
      l2 = new TierChain(levels)
      await l2.start(regions.map((r) => r.name))
      core.l2 = l2
    }
    if (resolved.restore !== undefined) {
      await cache.restore(resolved.restore).catch((err: unknown) => {
        // createCache's caller fixes the option: say which.
        if (err instanceof CacheError) err.message = `options.restore: ${err.message}`
        throw err
      })
    }
    if (resolved.bus !== undefined) {
      // Loaded only when used: ioredis is not needed by a cache without a bus.
      const { Bus } = await import('../redis/bus.js')
      bus = await Bus.start(resolved.bus, busHost(cache, core))
      core.bus = bus
      // What L2 repairs after losing writes, peers may have read from it meanwhile: they drop it too.
      if (l2 !== undefined) l2.onRepaired = repairedToBus(bus, core.options.regions)
    }
    if (resolved.backup !== undefined) {
      backups = new BackupSchedule(
        resolved.backup,
        (file) => cache.snapshot(file),
        (e) => emit(core.events, 'backup', e),
        () => core.events.listenerCount('backup') > 0,
      )
      core.backups = backups
    }
    if (resolved.alerts !== undefined) core.alerts = new AlertWatch(resolved.alerts, stats, (e) => emit(core.events, 'alert', e))
    {
      // Always (its schedules only with the option): cache.compact() works without one.
      core.maintenance = new Maintenance(resolved.maintenance ?? { cleanupMs: undefined, rebalance: undefined, compact: undefined }, {
        regions,
        perShard,
        shardStats: async () => (await control(router, threads, (c) => c.stats())).map((r) => r?.regions),
        setMaxBytes: (shard, region, maxBytes) => threads[shard]!.call((c) => c.setMaxBytes(region, maxBytes)),
        compact: (shard, region) => threads[shard]!.call((c) => c.compact(region)),
        cleanup: async () => (await Promise.all(regions.map((r) => cache.region(r.name).cleanupExpired()))).reduce((a, b) => a + b, 0),
      })
    }
  } catch (err) {
    core.closed = true
    await admin.close()
    throw err
  }
  return cache
}

/** The piscina pool of `loaders.pool`, started on the first task (piscina is loaded only then). */
function loaderPool(o: { filename: string; maxThreads: number | undefined }): { run: (t: PoolTask) => Promise<unknown>; destroy: () => Promise<void> } {
  let pool: Promise<import('piscina').Piscina> | undefined
  const start = async (): Promise<import('piscina').Piscina> => {
    const { Piscina } = await import('piscina')
    const p = new Piscina({
      filename: LOADER_TASK_FILE,
      // Not the main entry's options (`--input-type` kills a worker at startup): see src/client/worker_argv.ts.
      execArgv: workerExecArgv(),
      ...(o.maxThreads === undefined ? {} : { maxThreads: o.maxThreads, minThreads: Math.min(1, o.maxThreads) }),
    })
    // Piscina emits 'error' for a pool thread that died with no task on it; unheard, that is an
    // uncaught exception. Tasks that were on a thread get its error as their rejection, and the
    // pool replaces the thread on the next task: nothing to do here.
    p.on('error', () => {})
    return p
  }
  return {
    run: async (t) => {
      pool ??= start()
      return (await pool).run({ filename: o.filename, name: t.task, args: t.args ?? [] })
    },
    destroy: async () => {
      if (pool !== undefined) await (await pool).destroy()
    },
  }
}

/** The pool threads' entry: runs a named export of the user's loader module. */
const LOADER_TASK_FILE = new URL('../../workers/loader_task.js', import.meta.url).href

/** Waits for a cleanup step and drops its failure: closing goes on whatever one part did. */
async function quietly(p: Promise<unknown> | undefined): Promise<void> {
  try {
    await p
  } catch {
    // Nobody is left to act on it: the part is released either way.
  }
}

/** Clients attached in this thread, by cache id: attaching twice returns the same one. */
const attached = new Map<string, Cache>()

/**
 * In a worker thread (or a piscina task), returns a client of the cache whose
 * {@link Cache.handle} was posted here: the same API as the owner's, with its
 * own ports to every shard and direct reads of their shared memory. Writes
 * from any thread are visible to every thread once their promise resolved.
 * Rejects with `E_INVALID_OPTION` for something that is not a handle, or when
 * the owner uses a custom codec and `options.codec` is missing; `E_CLOSED`
 * when the owner already closed the cache.
 *
 * @example
 * ```ts
 * // main thread
 * const h = cache.handle()
 * worker.postMessage({ cache: h }, h.transfer)
 * // worker thread
 * parentPort.on('message', async ({ cache: h }) => {
 *   const cache = await attachCache(h)
 *   await cache.set('from-worker', 1)
 * })
 * ```
 */
export async function attachCache(handle: CacheHandle, options?: AttachOptions): Promise<Cache> {
  checkHandle(handle)
  const existing = attached.get(handle.id)
  if (existing !== undefined && !existing.closed) {
    handle.port.close() // this thread already has its ports
    return existing
  }
  const o = handle.options
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new InvalidOptionError(`options must be an object like { codec, nearCache, tracing } (got ${describe(options)})`)
  }
  if (options !== undefined) rejectUnknownKeys(options, ['codec', 'nearCache', 'tracing'], 'options.')
  if (o.customCodec && options?.codec === undefined) {
    throw new InvalidOptionError('options.codec is required: the owner created the cache with a custom codec, and functions cannot be posted to a thread')
  }
  const resolvedOwn = resolveOptions({ shards: o.shards, codec: options?.codec, nearCache: options?.nearCache, tracing: options?.tracing })
  // Before this thread attaches: a missing @opentelemetry/api is a bad option.
  const tracer = resolvedOwn.tracing === undefined ? undefined : await loadTracer(resolvedOwn.tracing, (m) => new InvalidOptionError(m))
  const nearCacheEntries = options?.nearCache === undefined ? o.nearCacheEntries : resolvedOwn.nearCacheEntries
  const resolved: ResolvedOptions = {
    shards: o.shards,
    maxKeyBytes: o.maxKeyBytes,
    maxValueBytes: o.maxValueBytes,
    codec: resolvedOwn.codec,
    idleSpinMicros: 0,
    replySpinMicros: 0,
    nearCacheEntries,
    regions: o.regions,
    tiers: [],
    writes: new Map(),
  }
  const state = new Int32Array(handle.state)
  const broker = new BrokerClient(handle.port, state)
  const links: AttachedLink[] = []
  const router = new Router({
    shards: o.shards,
    logHits: o.regions.map((r) => policyLearnsFromHits(r.policy)),
    keepsForever: o.regions.map((r) => r.defaultTtl === Infinity),
    codec: resolved.codec,
    nearCacheEntries,
    replySpinMicros: 0,
    owner: false,
    ownerState: state,
    link: (i, events) => {
      const l = new AttachedLink(i, o.regions.length, broker, events)
      links.push(l)
      return l
    },
  })
  const reply = await broker.request<{ id: number; shards: { port: import('node:worker_threads').MessagePort; memory: import('../wire/shared_region.js').RegionMemory[]; arenas: number[]; generation: number }[] }>({
    type: 'attach',
    logs: links.map((l) => l.logMemory),
  })
  reply.shards.forEach((access, i) => links[i]!.connect(access))
  const admin: Admin = {
    broker: undefined,
    stats: () => broker.request<{ id: number; stats: CacheStats }>({ type: 'stats' }).then((r) => r.stats),
    resetStats: () => broker.request({ type: 'resetStats' }).then(() => undefined),
    close: async () => {
      attached.delete(handle.id)
      await router.close()
      broker.port.close()
    },
  }
  const bus = o.relayMode === undefined ? undefined : new BusRelay(o.relayMode, broker)
  const cache = new Cache({
    router,
    options: resolved,
    closed: false,
    admin,
    bus,
    events: new EventEmitter(),
    flights: new FlightRelay(broker),
    loading: new Map(),
    runTask: undefined,
    l2: undefined,
    backups: undefined,
    alerts: undefined,
    maintenance: undefined,
    // A write-through region's writes are made by the owner, where its store is.
    writes: new Map(o.regions.filter((r) => r.writeMode !== undefined).map((r) => [r.index, new WriteRelay(r.writeMode!, r.index, broker)])),
    tracer,
  })
  attached.set(handle.id, cache)
  return cache
}

/** An async write-through's given-up write: an event, or a process warning when nobody listens (it must not pass unseen). */
function reportWriteError(events: EventEmitter, e: WriteErrorEvent): void {
  if (events.listenerCount('writeError') > 0) emit(events, 'writeError', e)
  else process.emitWarning(`regions.${e.region}.writeThrough gave up a ${e.op} of ${JSON.stringify(e.key)} after ${e.attempts} attempts: ${e.error.message}`, { code: 'SHARDCACHE_WRITE_DROPPED' })
}
