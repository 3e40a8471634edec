/**
 * Prometheus metrics from `stats()`: `cache.metrics()` renders the text
 * exposition format; `registerMetrics(cache, registry)` adds the same
 * families to a `prom-client` registry (an optional peer dependency: the
 * families are plain objects with an async `get()`, which is all a registry
 * asks of a metric, so prom-client is never imported here).
 *
 * Per region (label `region`) and per shard (label `shard`): reads, writes,
 * evictions by cause, entries and bytes. The round trips of the owner's
 * frames to its shards, as a histogram. With a bus: its counters and the
 * propagation latency as a summary (quantiles 0.5, 0.9, 0.99). With an L2
 * tier: its counters and breaker state. With backups: their counts by
 * result, and when the last one was written.
 */
import type { CacheStats, WriteThroughStats } from './stats.js'
import type { L2Stats } from '../redis/l2.js'
import type { TierStats } from '../tiers/member.js'

/** A metric's labels, by name. */
export type Labels = Record<string, string>

/** One metric family, in prom-client's `get()` shape. */
export interface MetricFamily {
  name: string
  help: string
  type: 'counter' | 'gauge' | 'summary' | 'histogram'
  aggregator: 'sum'
  values: { labels: Labels; value: number; metricName?: string }[]
}

/** A source of stats: a cache (owner or attached). */
export interface StatsSource {
  stats(): Promise<CacheStats>
}

interface FamilyDef {
  name: string
  help: string
  type: MetricFamily['type']
  values(s: CacheStats): MetricFamily['values']
}

const perRegion = (pick: (r: CacheStats['byRegion'][string]) => number) => (s: CacheStats) =>
  Object.entries(s.byRegion).map(([region, r]) => ({ labels: { region }, value: pick(r) }))

const perShard = (pick: (r: CacheStats['byShard'][number]) => number) => (s: CacheStats) =>
  s.byShard.map((r) => ({ labels: { shard: String(r.shard) }, value: pick(r) }))

const one = (pick: (s: CacheStats) => number | undefined) => (s: CacheStats) => {
  const v = pick(s)
  return v === undefined ? [] : [{ labels: {}, value: v }]
}

/** One sample per tier below the shards (`stats().tiers.l2`, `l3`, …), labeled `tier` (the level) and `name` (`redis` for the l2 option). */
const perTier = (pick: (t: L2Stats) => number) => (s: CacheStats) =>
  s.tiers === undefined
    ? []
    : Object.entries(s.tiers)
        .filter(([level]) => level !== 'l1')
        .map(([tier, t]) => ({ labels: { tier, name: (t as TierStats).name ?? 'redis' }, value: pick(t as L2Stats) }))

const perWriteThrough = (pick: (w: WriteThroughStats) => number) => (s: CacheStats) =>
  Object.entries(s.writeThrough ?? {}).map(([region, w]) => ({ labels: { region }, value: pick(w) }))

/** Every family, fixed up front (a registry registers names once). */
const FAMILIES: FamilyDef[] = [
  { name: 'shardcache_hits_total', help: 'Reads that found a live entry.', type: 'counter', values: perRegion((r) => r.hits) },
  { name: 'shardcache_misses_total', help: 'Reads that found nothing, an expired or a corrupt entry.', type: 'counter', values: perRegion((r) => r.misses) },
  { name: 'shardcache_stale_served_total', help: 'getOrCompute answers from a stale value within grace.', type: 'counter', values: perRegion((r) => r.staleServed) },
  { name: 'shardcache_sets_total', help: 'Writes that stored a value.', type: 'counter', values: perRegion((r) => r.sets) },
  { name: 'shardcache_deletes_total', help: 'Entries removed by delete, pattern, tag or clear.', type: 'counter', values: perRegion((r) => r.deletes) },
  {
    name: 'shardcache_evictions_total',
    help: 'Entries removed by the cache itself, by cause.',
    type: 'counter',
    values: (s) =>
      Object.entries(s.byRegion).flatMap(([region, r]) => [
        { labels: { region, cause: 'size' }, value: r.evictionsByCause.size },
        { labels: { region, cause: 'expired' }, value: r.evictionsByCause.expired },
      ]),
  },
  { name: 'shardcache_corrupt_total', help: 'Compressed values that failed their checksum.', type: 'counter', values: perRegion((r) => r.corrupt) },
  { name: 'shardcache_entries', help: 'Live entries.', type: 'gauge', values: perRegion((r) => r.entries) },
  { name: 'shardcache_used_bytes', help: 'Bytes charged against maxBytes.', type: 'gauge', values: perRegion((r) => r.usedBytes) },
  { name: 'shardcache_arena_bytes', help: "Bytes of the shards' value arenas in use (they never shrink).", type: 'gauge', values: perRegion((r) => r.arenaBytes) },
  { name: 'shardcache_arena_free_bytes', help: 'Bytes of the value arenas holding no live entry.', type: 'gauge', values: perRegion((r) => r.arenaFreeBytes) },
  { name: 'shardcache_raw_bytes', help: 'Value bytes before compression.', type: 'gauge', values: perRegion((r) => r.rawBytes) },
  { name: 'shardcache_stored_bytes', help: 'Value bytes as stored.', type: 'gauge', values: perRegion((r) => r.storedBytes) },
  {
    name: 'shardcache_max_bytes',
    help: 'Byte budget (absent when unbounded).',
    type: 'gauge',
    values: (s) => Object.entries(s.byRegion).flatMap(([region, r]) => (r.maxBytes === null ? [] : [{ labels: { region }, value: r.maxBytes }])),
  },
  { name: 'shardcache_shard_hits_total', help: 'Reads that found a live entry, per shard.', type: 'counter', values: perShard((r) => r.hits) },
  { name: 'shardcache_shard_misses_total', help: 'Reads that found nothing, per shard.', type: 'counter', values: perShard((r) => r.misses) },
  { name: 'shardcache_shard_sets_total', help: 'Writes that stored a value, per shard.', type: 'counter', values: perShard((r) => r.sets) },
  { name: 'shardcache_shard_entries', help: 'Live entries, per shard.', type: 'gauge', values: perShard((r) => r.entries) },
  { name: 'shardcache_shard_used_bytes', help: 'Bytes charged against maxBytes, per shard.', type: 'gauge', values: perShard((r) => r.usedBytes) },
  {
    name: 'shardcache_frame_round_trip_seconds',
    help: "Round trips of the owner thread's frames to its shards (each carries the ops of one tick for one shard).",
    type: 'histogram',
    values: (s) => {
      const f = s.frameLatency
      if (f === undefined) return []
      const n = 'shardcache_frame_round_trip_seconds'
      return [
        ...f.cumulative.map((c, i) => ({ labels: { le: i < f.bounds.length ? String(f.bounds[i]) : '+Inf' }, value: c, metricName: `${n}_bucket` })),
        { labels: {}, value: f.sum, metricName: `${n}_sum` },
        { labels: {}, value: f.count, metricName: `${n}_count` },
      ]
    },
  },
  { name: 'shardcache_shards', help: 'Shard threads.', type: 'gauge', values: one((s) => s.shards) },
  { name: 'shardcache_shard_restarts_total', help: 'Shard threads that died and were restarted.', type: 'counter', values: one((s) => s.shardRestarts) },
  { name: 'shardcache_shards_down', help: 'Shards no longer restarted.', type: 'gauge', values: one((s) => s.shardsDown.length) },
  { name: 'shardcache_attached_threads', help: 'Threads attached with attachCache.', type: 'gauge', values: one((s) => s.attachedThreads) },
  { name: 'shardcache_bus_connected', help: '1 while the bus subscription is live.', type: 'gauge', values: one((s) => (s.bus === undefined ? undefined : s.bus.connected ? 1 : 0)) },
  { name: 'shardcache_bus_published_total', help: 'Bus messages sent.', type: 'counter', values: one((s) => s.bus?.published) },
  { name: 'shardcache_bus_received_total', help: 'Bus messages received from peers.', type: 'counter', values: one((s) => s.bus?.received) },
  { name: 'shardcache_bus_applied_total', help: 'Peer ops applied.', type: 'counter', values: one((s) => s.bus?.applied) },
  {
    name: 'shardcache_bus_dropped_total',
    help: 'Bus messages dropped, by reason.',
    type: 'counter',
    values: (s) => (s.bus === undefined ? [] : Object.entries(s.bus.dropped).filter(([k]) => k !== 'total').map(([reason, v]) => ({ labels: { reason }, value: v as number }))),
  },
  { name: 'shardcache_bus_queued', help: 'Bus messages not yet acknowledged by Redis.', type: 'gauge', values: one((s) => s.bus?.queued) },
  { name: 'shardcache_bus_reconnects_total', help: 'Bus resubscriptions after a loss.', type: 'counter', values: one((s) => s.bus?.reconnects) },
  { name: 'shardcache_bus_flushes_total', help: 'Local flushes for possibly lost invalidations.', type: 'counter', values: one((s) => s.bus?.flushes) },
  {
    name: 'shardcache_bus_propagation_seconds',
    help: "From a peer's send to applying here.",
    type: 'summary',
    values: (s) => {
      const l = s.bus?.latency
      if (l === undefined) return []
      const q = (quantile: string, ms: number | null) => (ms === null ? [] : [{ labels: { quantile }, value: ms / 1000 }])
      return [...q('0.5', l.p50Ms), ...q('0.99', l.p99Ms), { labels: {}, value: l.count, metricName: 'shardcache_bus_propagation_seconds_count' }]
    },
  },
  { name: 'shardcache_l2_hits_total', help: 'L2 reads that found a value.', type: 'counter', values: one((s) => s.tiers?.l2.hits) },
  { name: 'shardcache_l2_misses_total', help: 'L2 reads that found nothing usable.', type: 'counter', values: one((s) => s.tiers?.l2.misses) },
  { name: 'shardcache_l2_errors_total', help: 'Failed or timed-out L2 commands.', type: 'counter', values: one((s) => s.tiers?.l2.errors) },
  { name: 'shardcache_l2_promotions_total', help: 'L2 hits written into the shards.', type: 'counter', values: one((s) => s.tiers?.l2.promotions) },
  { name: 'shardcache_l2_breaker_open', help: '1 while the L2 circuit breaker keeps L2 out.', type: 'gauge', values: one((s) => (s.tiers === undefined ? undefined : s.tiers.l2.breaker === 'open' ? 1 : 0)) },
  // Every tier below the shards (l2 included), labeled by level and name: what `tiers` adds.
  { name: 'shardcache_tier_hits_total', help: 'Reads a tier below the shards answered with a value.', type: 'counter', values: perTier((t) => t.hits) },
  { name: 'shardcache_tier_misses_total', help: 'Reads a tier below the shards could not answer.', type: 'counter', values: perTier((t) => t.misses) },
  { name: 'shardcache_tier_errors_total', help: 'Failed or timed-out calls of a tier.', type: 'counter', values: perTier((t) => t.errors) },
  { name: 'shardcache_tier_promotions_total', help: 'Hits of a tier copied into the tiers above it.', type: 'counter', values: perTier((t) => t.promotions) },
  { name: 'shardcache_tier_unsynced', help: 'Keys whose last write to a tier failed, read as misses there until repaired.', type: 'gauge', values: perTier((t) => t.unsynced) },
  { name: 'shardcache_tier_breaker_open', help: "1 while a tier's circuit breaker keeps it out.", type: 'gauge', values: perTier((t) => (t.breaker === 'open' ? 1 : 0)) },
  // Write-through regions, labeled by region.
  { name: 'shardcache_write_through_writes_total', help: 'Store writes a write-through region had confirmed.', type: 'counter', values: perWriteThrough((w) => w.writes) },
  { name: 'shardcache_write_through_deletes_total', help: 'Store deletes a write-through region had confirmed.', type: 'counter', values: perWriteThrough((w) => w.deletes) },
  { name: 'shardcache_write_through_failures_total', help: 'Store calls of a write-through region that failed or timed out.', type: 'counter', values: perWriteThrough((w) => w.failures) },
  { name: 'shardcache_write_through_dropped_total', help: 'Writes an async write-through region gave up.', type: 'counter', values: perWriteThrough((w) => w.dropped) },
  { name: 'shardcache_write_through_queued', help: "Store calls waiting in an async write-through region's queue.", type: 'gauge', values: perWriteThrough((w) => w.queued) },
  {
    name: 'shardcache_backups_total',
    help: 'Backups by result: written, failed, or skipped (a scheduled one due while the last was still writing).',
    type: 'counter',
    values: (s) => (s.backup === undefined ? [] : (['written', 'failed', 'skipped'] as const).map((result) => ({ labels: { result }, value: s.backup![result] }))),
  },
  {
    name: 'shardcache_backup_last_success_timestamp_seconds',
    help: 'When the last backup that was written started (Unix time; alert on its age).',
    type: 'gauge',
    values: one((s) => (s.backup?.lastSuccessAt === undefined ? undefined : s.backup.lastSuccessAt / 1000)),
  },
  { name: 'shardcache_backup_last_entries', help: 'Entries in the last backup written.', type: 'gauge', values: one((s) => s.backup?.lastEntries) },
]

/** The metric families of one stats report. */
export function metricFamilies(s: CacheStats): MetricFamily[] {
  return FAMILIES.map((f) => ({ name: f.name, help: f.help, type: f.type, aggregator: 'sum', values: f.values(s) }))
}

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')

/** The Prometheus text exposition format (version 0.0.4) of `families`; families without values are left out. */
export function formatPrometheus(families: MetricFamily[]): string {
  const out: string[] = []
  for (const f of families) {
    if (f.values.length === 0) continue
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`)
    for (const v of f.values) {
      const labels = Object.entries(v.labels)
      const l = labels.length === 0 ? '' : `{${labels.map(([k, x]) => `${k}="${escapeLabel(x)}"`).join(',')}}`
      out.push(`${v.metricName ?? f.name}${l} ${Number.isFinite(v.value) ? v.value : v.value > 0 ? '+Inf' : '-Inf'}`)
    }
  }
  return `${out.join('\n')}\n`
}

/** A registry as prom-client's: `registerMetric` takes anything with a name and an async `get()`. */
export interface MetricRegistry {
  registerMetric(metric: object): void
}

/**
 * Adds the cache's metric families to a `prom-client` registry. One scrape
 * asks the cache for its stats once, whatever the number of families.
 */
export function registerMetrics(cache: StatsSource, registry: MetricRegistry): void {
  let current: Promise<MetricFamily[]> | undefined
  const families = (): Promise<MetricFamily[]> => {
    // Shared by the families of one scrape (they are collected in the same turn), fresh for the next.
    current ??= cache.stats().then(metricFamilies)
    setImmediate(() => (current = undefined))
    return current
  }
  for (const f of FAMILIES) {
    registry.registerMetric({
      name: f.name,
      help: f.help,
      type: f.type,
      aggregator: 'sum',
      get: async () => (await families()).find((x) => x.name === f.name)!,
      reset: () => {},
    })
  }
}
