/**
 * The cache itself: the data operations of its `default` region (it extends
 * {@link CacheRegion}, src/api/region.ts), plus what spans the whole cache:
 * region handles, events, stats and metrics, snapshots, handles for other
 * threads, and close. createCache and attachCache (src/api/create.ts) build it.
 */
import { ClosedError, InvalidOptionError, UnknownRegionError } from '../errors.js'
import { ShardEvent } from '../wire/protocol.js'
import { checkTag } from '../options/operations.js'
import type { ResolvedSet } from '../options/operations.js'
import { describe } from '../messages.js'
import { sendCrash } from '../client/ops/crash.js'
import { sendExport } from '../client/ops/export.js'
import type { ExportPage } from '../client/ops/export.js'
import type { CacheStats } from '../ops/stats.js'
import type { FlushEvent, InvalidationEvent } from '../redis/bus.js'
import { formatPrometheus, metricFamilies } from '../ops/metrics.js'
import { SnapshotCorruptError, SnapshotWriter, fileSink } from '../ops/snapshot.js'
import { readRestorable } from '../ops/backup.js'
import type { BackupEvent, BackupResult } from '../ops/backup.js'
import type { AlertEvent } from '../ops/alerts.js'
import type { WriteErrorEvent } from '../backing/write_through.js'
import type { RebalanceMove } from '../ops/maintenance.js'
import type { CompactResult } from '../wire/region_types.js'
import { startAdminServer } from '../ops/admin_server.js'
import type { AdminServer } from '../ops/admin_server.js'
import { resolveAdminOptions } from '../options/admin.js'
import type { AdminOptions } from '../options/admin.js'
import type { SnapshotProgress } from '../ops/snapshot.js'
import type { ShardMemory } from '../wire/region_types.js'
import { decompress } from '../wire/compression.js'
import type { Writable } from 'node:stream'
import type { CacheHandle } from '../client/attach.js'
import { Deferred, addNumbers, control, rejected } from './core.js'
import type { Core } from './core.js'
import { CacheRegion } from './region.js'
import type { ScanOptions } from './region.js'

/** The entry events of `cache.on` (owner only), reported by the shards while someone listens. */
export type EntryEventName = 'set' | 'delete' | 'evict' | 'expire' | 'clear' | 'hit' | 'miss'

/** What an entry event's listener receives; `clear` has no key. */
export interface EntryEvent {
  type: EntryEventName
  region: string
  key?: string
  /** For `evict` and `expire`: why the cache removed the entry. */
  cause?: 'size' | 'expired'
}

type CacheEventName = 'invalidation' | 'flush' | 'backup' | 'alert' | 'writeError' | EntryEventName
const EVENT_NAMES = ['invalidation', 'flush', 'backup', 'alert', 'writeError', 'set', 'delete', 'evict', 'expire', 'clear', 'hit', 'miss'] as const
const ENTRY_EVENT_BITS: Record<EntryEventName, number> = {
  set: ShardEvent.SET,
  delete: ShardEvent.DELETE,
  evict: ShardEvent.EVICT,
  expire: ShardEvent.EXPIRE,
  clear: ShardEvent.CLEAR,
  hit: ShardEvent.HIT,
  miss: ShardEvent.MISS,
}
/** Entry event names by their shard event bit (createCache's listener of the shards' events). */
export const EVENT_OF_BIT = new Map<number, EntryEventName>(Object.entries(ENTRY_EVENT_BITS).map(([n, b]) => [b, n as EntryEventName]))

/** Entries per EXPORT page (and per batch of restored sets). */
const SNAPSHOT_PAGE = 1000

/** A sharded cache. Its data operations act on the `default` region; {@link Cache.region} gives the others. */
export class Cache extends CacheRegion {
  readonly #regions: Map<string, CacheRegion>
  #closing: Promise<void> | undefined
  /** Endpoints of serveAdmin, closed with the cache. */
  readonly #adminServers = new Set<AdminServer>()

  /** @internal Use {@link createCache}. */
  constructor(core: Core) {
    const byName = new Map(core.options.regions.map((r) => [r.name, r]))
    super(core, byName.get('default')!)
    this.#regions = new Map()
    // `default` gets a handle of its own too: the cache's own invalidateTag and scan span or pick
    // regions, and region('default') must be bound to `default` as any other handle is to its region.
    for (const r of core.options.regions) this.#regions.set(r.name, new CacheRegion(core, r))
  }

  /** Number of shard threads. */
  get shards(): number {
    return this.core.router.shardCount
  }

  /** Names of the configured regions (`default` included). */
  get regionNames(): string[] {
    return [...this.#regions.keys()]
  }

  /**
   * {@link CacheRegion.scan} of `options.region` (default: `default`). Bad
   * input, an unknown region included, throws when iteration starts.
   */
  override async *scan(options: ScanOptions = {}): AsyncGenerator<string, void> {
    yield* this.#scanned(options).scan(options)
  }

  /** {@link CacheRegion.scanEntries} of `options.region` (default: `default`); bad input throws when iteration starts. */
  override async *scanEntries<T = unknown>(options: ScanOptions = {}): AsyncGenerator<[string, T], void> {
    yield* this.#scanned(options).scanEntries<T>(options)
  }

  /** The region a scan names; a bad `options` is left to the region's scan, which says what is wrong with it. */
  #scanned(options: ScanOptions): CacheRegion {
    const region = options !== null && typeof options === 'object' ? options.region : undefined
    return this.region(region ?? 'default')
  }

  /** Removes the entries carrying `tag` in every region (see {@link CacheRegion.invalidateTag}); resolves how many. */
  override invalidateTag(tag: string): Promise<number> {
    if (this.#regions.size === 1) return super.invalidateTag(tag)
    try {
      if (this.closed) throw new ClosedError()
      checkTag(tag, 'tag', this.core.options.maxKeyBytes)
    } catch (err) {
      return rejected(err)
    }
    const local = Promise.all([...this.#regions.values()].map((r) => r.invalidateTagHere(tag))).then(addNumbers)
    // L2's tag sets span the regions: one invalidation covers them all.
    const l2 = this.core.l2
    return l2 === undefined ? local : Promise.all([local, l2.invalidateTag(tag)]).then(([n]) => n)
  }

  /** The data operations bound to region `name`. Throws {@link UnknownRegionError} for a region that was not configured. */
  region(name: string): CacheRegion {
    const r = this.#regions.get(name)
    if (r === undefined) {
      const names = [...this.#regions.keys()].join(', ')
      if (typeof name !== 'string') throw new UnknownRegionError(`region must be the name of a configured region (got ${describe(name)}; regions: ${names})`)
      throw new UnknownRegionError(`region ${JSON.stringify(name)} is not configured (regions: ${names})`)
    }
    return r
  }

  /**
   * Listens to the invalidation bus (owner only; attached threads never see
   * these events):
   * - `'invalidation'`: a peer's op was applied here ({@link InvalidationEvent});
   * - `'flush'`: every region was emptied because invalidations may have been
   *   lost (disconnect, missed heartbeat, sequence gap, resubscription; {@link FlushEvent});
   *
   * to backups (owner only, with `backup`):
   * - `'backup'`: a backup was written (`ok: true`, with its file, entries,
   *   size, duration and the old backups removed) or failed (`ok: false`,
   *   with the error; nothing is left behind). A scheduled backup's failure
   *   that no listener hears of is a process warning (`SHARDCACHE_BACKUP_FAILED`);
   *
   * to thresholds (owner only, with `alerts`):
   * - `'alert'`: a region's memory use or eviction rate reached its
   *   threshold (`state: 'firing'`) or fell below it again (`'resolved'`),
   *   once each way ({@link AlertEvent});
   *
   * to write-through stores (owner only, with an `async` `writeThrough`):
   * - `'writeError'`: the store never took a write or delete after its last
   *   attempt ({@link WriteErrorEvent}); a written value given up is dropped
   *   from the cache too. Without a listener it is a process warning
   *   (`SHARDCACHE_WRITE_DROPPED`);
   *
   * and to entries, the events of {@link EntryEventName}.
   */
  on(event: 'invalidation', listener: (e: InvalidationEvent) => void): this
  on(event: 'flush', listener: (e: FlushEvent) => void): this
  on(event: 'backup', listener: (e: BackupEvent) => void): this
  on(event: 'alert', listener: (e: AlertEvent) => void): this
  on(event: 'writeError', listener: (e: WriteErrorEvent) => void): this
  on(event: EntryEventName, listener: (e: EntryEvent) => void): this
  on(event: CacheEventName, listener: (e: InvalidationEvent & FlushEvent & EntryEvent & BackupEvent & AlertEvent & WriteErrorEvent) => void): this {
    this.#checkEvent(event, listener)
    this.core.events.on(event, listener)
    this.#updateEventMask()
    return this
  }

  /** Removes a listener added with {@link Cache.on}. */
  off(event: 'invalidation', listener: (e: InvalidationEvent) => void): this
  off(event: 'flush', listener: (e: FlushEvent) => void): this
  off(event: 'backup', listener: (e: BackupEvent) => void): this
  off(event: 'alert', listener: (e: AlertEvent) => void): this
  off(event: 'writeError', listener: (e: WriteErrorEvent) => void): this
  off(event: EntryEventName, listener: (e: EntryEvent) => void): this
  off(event: CacheEventName, listener: (e: InvalidationEvent & FlushEvent & EntryEvent & BackupEvent & AlertEvent & WriteErrorEvent) => void): this {
    this.#checkEvent(event, listener)
    this.core.events.off(event, listener)
    this.#updateEventMask()
    return this
  }

  #checkEvent(event: unknown, listener: unknown): void {
    if (!(EVENT_NAMES as readonly unknown[]).includes(event)) {
      throw new InvalidOptionError(`event must be one of ${EVENT_NAMES.map((n) => `"${n}"`).join(', ')} (got ${describe(event)})`)
    }
    if (typeof listener !== 'function') throw new InvalidOptionError(`listener must be a function (got ${describe(listener)})`)
  }

  /** Tells the shards which entry events someone listens to: they send only those (none when nobody listens). */
  #updateEventMask(): void {
    const threads = this.core.admin.threads
    if (threads === undefined) return // attached: only the owner's shards report to it
    let mask = 0
    for (const [name, bit] of Object.entries(ENTRY_EVENT_BITS)) if (this.core.events.listenerCount(name) > 0) mask |= bit
    // Hits and misses happen in the shards only if reads go there.
    this.core.router.directReads = (mask & (ShardEvent.HIT | ShardEvent.MISS)) === 0
    for (const t of threads()) if (t.eventMask !== mask) t.setEventMask(mask)
  }

  /**
   * Counters and gauges, in total, `byShard` and `byRegion`. Reflects every
   * operation whose promise resolved before the call. Plain JSON. On an
   * attached thread, the owner computes them (the same figures).
   */
  stats(): Promise<CacheStats> {
    if (this.core.closed || this.core.router.closed) return rejected(new ClosedError())
    return this.core.admin.stats()
  }

  /**
   * The stats as Prometheus text exposition (counters and gauges per region
   * and per shard; the bus's and L2's figures when configured). To serve
   * them from a `prom-client` registry instead, see {@link registerMetrics}.
   */
  async metrics(): Promise<string> {
    return formatPrometheus(metricFamilies(await this.stats()))
  }

  /** Zeroes the counters (hits, misses, sets, deletes, evictions, corrupt); entries and byte gauges stay. */
  resetStats(): Promise<void> {
    if (this.core.closed || this.core.router.closed) return rejected(new ClosedError())
    return this.core.admin.resetStats()
  }

  /**
   * Writes every shard's live entries (stored values, remaining TTLs as
   * expiry times, metadata, tags) to `target`, a file path (written to
   * `<path>.tmp-<host>-<pid>-<n>`, flushed to disk and renamed over `path`
   * when complete, so `path` always holds a whole snapshot) or a Writable (written, not
   * ended), while the cache keeps serving: each shard answers a page at a
   * time between other operations. Resolves the entry count. The format is
   * documented in docs/formats.md.
   */
  async snapshot(target: string | Writable, options: { onProgress?: (p: SnapshotProgress) => void } = {}): Promise<number> {
    if (this.closed) throw new ClosedError()
    if (typeof target !== 'string' && (target === null || typeof (target as Writable).write !== 'function')) {
      throw new InvalidOptionError(`target must be a file path or a Writable stream (got ${describe(target)})`)
    }
    const sink = typeof target === 'string' ? fileSink(target) : undefined
    const writer = new SnapshotWriter(sink?.out ?? (target as Writable))
    const router = this.core.router
    const regions = this.core.options.regions
    try {
      await writer.header(Date.now(), regions.map((r) => r.name))
      for (const r of regions) {
        for (let s = 0; s < router.shardCount; s++) {
          for (let cursor = 0; cursor !== -1; ) {
            if (this.closed) throw new ClosedError()
            const d = new Deferred<ExportPage>()
            sendExport(router, s, r.index, cursor, SNAPSHOT_PAGE, d, 0)
            const page = await d.promise
            cursor = page.next
            await writer.records(r.index, page.entries)
            options.onProgress?.(writer.progress)
          }
        }
      }
      await writer.trailer()
      await sink?.commit()
    } catch (err) {
      sink?.abort()
      throw err
    }
    return writer.progress.entries
  }

  /**
   * Loads a snapshot into this cache: every entry of a region this cache has,
   * with the TTL it has left (entries that expired meanwhile are skipped, as
   * are those too large for this cache's region budgets). Checks the whole
   * file first: a truncated or corrupt one rejects with `E_SNAPSHOT_CORRUPT`
   * and loads nothing. Restored entries are not published on the bus nor
   * written to L2. Resolves how many entries were loaded.
   *
   * `path` may be a directory of backups (`createCache({ backup })`): its
   * newest backup that reads whole is loaded; each newer one that does not is
   * skipped with a process warning (`SHARDCACHE_BACKUP_SKIPPED`). A directory
   * without backups loads nothing (resolves 0); one whose every backup is
   * corrupt rejects with `E_SNAPSHOT_CORRUPT`.
   */
  async restore(path: string, options: { onProgress?: (p: SnapshotProgress) => void } = {}): Promise<number> {
    if (this.closed) throw new ClosedError()
    if (typeof path !== 'string' || path === '') throw new InvalidOptionError(`path must be a snapshot file's or a backup directory's path (got ${describe(path)})`)
    const snap = readRestorable(path)
    if (snap === undefined) return 0
    const now = Date.now()
    let loaded = 0
    let bytes = 0
    const pending: Promise<boolean>[] = []
    for (const { region, entry: e } of snap.entries) {
      const name = snap.regions[region]!
      if (!this.regionNames.includes(name)) continue
      const left = e.expiresAt - now
      if (left <= 0) continue
      let raw = e.bytes
      if (e.compressed) {
        const out = decompress(e.bytes, e.rawSize)
        if (out === undefined) throw new SnapshotCorruptError(`snapshot ${JSON.stringify(snap.file)}: a value of ${JSON.stringify(e.key)} does not decompress; nothing more was loaded`)
        raw = out
      }
      const fresh = e.freshUntil === undefined ? undefined : Math.max(1, e.freshUntil - now)
      const opts: ResolvedSet = {
        ttl: fresh ?? left,
        nx: false,
        xx: false,
        metadata: e.metadata,
        tags: e.tags,
        grace: fresh === undefined ? undefined : Math.max(1, left - fresh),
      }
      pending.push((this.region(name) as CacheRegion).restoreEntry(e.key, { tag: e.tag, bytes: raw }, opts))
      bytes += raw.length
      if (pending.length >= SNAPSHOT_PAGE) {
        loaded += (await Promise.all(pending.splice(0))).filter(Boolean).length
        options.onProgress?.({ entries: loaded, bytes })
      }
    }
    loaded += (await Promise.all(pending)).filter(Boolean).length
    options.onProgress?.({ entries: loaded, bytes })
    return loaded
  }

  /**
   * Writes a backup now into `options.backup.dir` (after the one in
   * progress, if any), then removes the oldest beyond `options.backup.keep`.
   * Resolves the file written, its entries and size. Owner only; needs
   * `createCache({ backup })` (`every` may be left out for backups on
   * demand only). A failure rejects and leaves no file behind.
   */
  backup(): Promise<BackupResult> {
    if (this.closed) return rejected(new ClosedError())
    const backups = this.core.backups
    if (backups === undefined) {
      const why = this.core.admin.broker === undefined ? 'is for the cache createCache() returned, not an attached one' : "needs createCache({ backup: { dir } })"
      return rejected(new InvalidOptionError(`backup() ${why}`))
    }
    return backups.backup()
  }

  /**
   * One rebalance check now (as `maintenance.rebalance.every` runs them):
   * in each region with a byte budget, moves budget to the shard that evicted
   * far more than the others since the previous check. Resolves the moves
   * made (none on the first check, which only takes the counts). Owner only;
   * needs `createCache({ maintenance: { rebalance } })`.
   */
  rebalance(): Promise<RebalanceMove[]> {
    if (this.closed) return rejected(new ClosedError())
    const m = this.core.maintenance
    if (m === undefined || this.core.options.maintenance?.rebalance === undefined) {
      const why = this.core.admin.broker === undefined ? 'is for the cache createCache() returned, not an attached one' : "needs createCache({ maintenance: { rebalance: { every } } })"
      return rejected(new InvalidOptionError(`rebalance() ${why}`))
    }
    return m.rebalance()
  }

  /**
   * Compacts now every shard's value arena that holds free bytes: each
   * shard copies a region's live entries into a new arena and drops the old
   * one, so the memory a churn left free (`stats().arenaFreeBytes`) is given
   * back once no thread maps it. A shard does nothing else while it copies
   * (each result's `pauseMs`); other threads' direct reads of the region go
   * through the shard until they map the new arena. Resolves what each shard
   * did, per region. Owner only. `maintenance.compact` runs it on a schedule,
   * past a threshold.
   */
  compact(): Promise<CompactResult[]> {
    if (this.closed) return rejected(new ClosedError())
    const m = this.core.maintenance
    if (m === undefined) return rejected(new InvalidOptionError('compact() is for the cache createCache() returned, not an attached one'))
    return m.compact()
  }

  /**
   * A descriptor that lets one other worker thread use this cache:
   * post it with `handle.transfer` as the transfer list, then call
   * {@link attachCache} in that thread. Each handle is for one thread; make
   * one per thread (or per task: attaching again in a thread that already
   * did returns its existing client). Owner only.
   */
  handle(): CacheHandle {
    const broker = this.core.admin.broker
    if (broker === undefined) {
      throw new InvalidOptionError('handle() is only available on the cache createCache() returned; post that cache\'s handle to other threads')
    }
    if (this.core.closed) throw new ClosedError()
    return broker.handle()
  }

  /**
   * Lets in-flight operations finish, then stops the shard threads. Operations
   * issued afterwards reject with `E_CLOSED`, on this thread and on attached
   * ones. Safe to call more than once. On an attached thread, `close()` only
   * detaches that thread: the cache lives on.
   */
  close(): Promise<void> {
    this.core.closed = true
    this.#closing ??= Promise.all([...this.#adminServers].map((s) => s.close())).then(() => this.core.admin.close())
    return this.#closing
  }

  /**
   * Serves an operator's endpoint over HTTP until `close()` (of it or of the
   * cache): `GET /metrics` (Prometheus text), `GET /status` (JSON: shards,
   * regions, memory, hit rates, tiers, bus, backups, firing alerts) and
   * `GET /events` (server-sent events; `?events=set,delete,alert,...` picks
   * them, see docs/operations.md). Every request must carry
   * `Authorization: Bearer <token>`, else it is answered 401. Listens on
   * `host` (default `127.0.0.1`) and `port` (default 0: a free one);
   * resolves the port. The `shardcache status|metrics|events --url` commands
   * are its clients. Owner only.
   *
   * @example
   * ```ts
   * const admin = await cache.serveAdmin({ port: 9464, token: process.env.CACHE_ADMIN_TOKEN! })
   * // shardcache status --url http://127.0.0.1:9464 --token $CACHE_ADMIN_TOKEN --watch
   * ```
   */
  async serveAdmin(options: AdminOptions): Promise<AdminServer> {
    if (this.closed) throw new ClosedError()
    if (this.core.admin.broker === undefined) throw new InvalidOptionError("serveAdmin() is for the cache createCache() returned, not an attached one")
    const { port, host, token } = resolveAdminOptions(options)
    const source = {
      stats: () => this.stats(),
      metrics: () => this.metrics(),
      firing: () => this.core.alerts?.firing() ?? [],
      on: (event: string, l: (e: unknown) => void) => this.on(event as EntryEventName, l),
      off: (event: string, l: (e: unknown) => void) => this.off(event as EntryEventName, l),
    }
    let server: AdminServer
    try {
      server = await startAdminServer(source, { port, host, token })
    } catch (err) {
      throw new InvalidOptionError(`options.port ${port} on ${host} cannot be listened on: ${(err as Error).message}`, { cause: err })
    }
    const tracked: AdminServer = {
      port: server.port,
      close: () => {
        this.#adminServers.delete(tracked)
        return server.close()
      },
    }
    this.#adminServers.add(tracked)
    return tracked
  }

  /** Whether this client is closed: `close()` was called here, or the owner closed the cache. */
  get closed(): boolean {
    return this.core.closed || this.core.router.closed
  }

  /** @internal Near-cache entries this thread holds for region `name`. */
  nearCacheSizeForTest(name = 'default'): number {
    return this.core.router.nearSize(this.core.options.regions.findIndex((r) => r.name === name))
  }

  /** @internal Whether this thread's near cache holds an entry for `key` in region `name`. */
  nearCacheHasForTest(key: string, name = 'default'): boolean {
    return this.core.router.nearHas(this.core.options.regions.findIndex((r) => r.name === name), key)
  }

  /** @internal Makes shard `shard` die of an uncaught exception, as a bug would. For crash tests. */
  crashShardForTest(shard: number): Promise<unknown> {
    const d = new Deferred<unknown>()
    sendCrash(this.core.router, shard, d)
    return d.promise
  }

  /** @internal Frames sent to shards since creation. */
  framesSentForTest(): number {
    return this.core.router.framesSent
  }

  /**
   * @internal Each shard thread's heap and the process's RSS (after a full GC
   * in each when `gc` and the process runs with --expose-gc); undefined for a
   * shard that is down. Owner only. For soak tests (bench/soak.ts).
   */
  shardMemoryForTest(gc = false): Promise<(ShardMemory | undefined)[]> {
    const threads = this.core.admin.threads
    if (threads === undefined) return rejected(new InvalidOptionError('shardMemoryForTest is for the cache createCache returned, not an attached one'))
    return control(this.core.router, threads(), (c) => c.memory(gc))
  }

  /** @internal Which shard owns `key`. */
  shardOfForTest(key: string): number {
    return this.core.router.shardOf(key)
  }
}
