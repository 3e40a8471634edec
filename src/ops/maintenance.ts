/**
 * Scheduled upkeep of a cache's shards (`createCache({ maintenance })`):
 * the cleanup of expired entries, the compaction of value arenas a churn
 * left mostly free (workers/region_slots.ts `compact`), and the rebalance of
 * byte budgets between a region's shards.
 *
 * Why a rebalance: keys hash to shards evenly, but what they hold need not
 * be even (a few large values, a hot key family with churn), and each shard
 * evicts from its own share. When one shard evicts far more than the others,
 * part of the budget of the one that evicts least moves to it. The cold
 * shard is shrunk first (it evicts down to its new budget at once), then the
 * hot one grown, so the region's total is never exceeded. The shards'
 * configurations are updated too, so that a restarted shard starts with its
 * current budget.
 */
import type { CompactResult, RegionShardConfig, RegionShardStats } from '../wire/region_types.js'

/** What the maintenance needs of a region (a `RegionInfo`, src/options/regions.ts, which this layer does not import). */
interface RegionInfo {
  name: string
  index: number
  maxBytes: number
}

/** `maintenance` after validation (src/options/maintenance.ts). */
export interface ResolvedMaintenance {
  cleanupMs: number | undefined
  rebalance: { everyMs: number; threshold: number; step: number; minShare: number; maxShare: number; minEvictions: number } | undefined
  compact: { everyMs: number; minFreeRatio: number; minFreeBytes: number } | undefined
}

/** One budget move of a rebalance. */
export interface RebalanceMove {
  region: string
  /** The shard that evicted most, and got the bytes. */
  to: number
  /** The shard that evicted least, and gave them. */
  from: number
  bytes: number
  /** Size evictions of each shard since the previous check, by shard. */
  evictions: number[]
}

/** `stats().maintenance`. */
export interface MaintenanceStats {
  /** Scheduled cleanups run, and the expired entries they removed. */
  cleanups: number
  cleaned: number
  /** Rebalance checks run, the moves they made, and the bytes moved. */
  rebalanceChecks: number
  moves: number
  movedBytes: number
  /** Compactions run (one per shard and region), the arena bytes they gave back, and the longest pause one cost its shard. */
  compactions: number
  compactedBytes: number
  maxCompactPauseMs: number
  /** Each rebalanced region's byte budget per shard now (regions without a byte budget are left out). */
  budgets: Record<string, number[]>
}

/** What the maintenance needs of its cache. */
export interface MaintenanceHost {
  regions: RegionInfo[]
  /** Each shard's region configurations (updated in place: a restarted shard starts from them). */
  perShard: RegionShardConfig[][]
  /** Each shard's region stats; undefined for a shard that is down. */
  shardStats(): Promise<(RegionShardStats[] | undefined)[]>
  setMaxBytes(shard: number, region: number, maxBytes: number): Promise<number>
  cleanup(): Promise<number>
  compact(shard: number, region: number): Promise<CompactResult>
}

export class Maintenance {
  readonly #o: ResolvedMaintenance
  readonly #host: MaintenanceHost
  readonly #timers: NodeJS.Timeout[] = []
  #running: Promise<unknown> = Promise.resolve()
  #stopped = false
  /** Size evictions per region and shard at the last rebalance check. */
  #last: number[][] | undefined
  readonly #c = { cleanups: 0, cleaned: 0, rebalanceChecks: 0, moves: 0, movedBytes: 0, compactions: 0, compactedBytes: 0, maxCompactPauseMs: 0 }

  constructor(o: ResolvedMaintenance, host: MaintenanceHost) {
    this.#o = o
    this.#host = host
    // Each tick runs its task through #serial once: the tasks themselves are not serialized again (that would wait on itself).
    const every = (ms: number, task: () => Promise<unknown>): void => {
      const t = setInterval(() => void this.#serial(task).catch(() => {}), ms)
      t.unref()
      this.#timers.push(t)
    }
    if (o.cleanupMs !== undefined) every(o.cleanupMs, () => this.#cleanup())
    if (o.rebalance !== undefined) every(o.rebalance.everyMs, () => this.#rebalance())
    const c = o.compact
    if (c !== undefined) every(c.everyMs, () => this.#compact((free, live) => free >= c.minFreeBytes && free >= c.minFreeRatio * live))
  }

  /**
   * Compacts every shard's region slices whose value arena `worth` compacting
   * (its free and live bytes), one at a time; resolves what each did.
   */
  compact(worth: (freeBytes: number, liveBytes: number) => boolean = (free) => free > 0): Promise<CompactResult[]> {
    return this.#serial(() => this.#compact(worth))
  }

  async #compact(worth: (freeBytes: number, liveBytes: number) => boolean): Promise<CompactResult[]> {
    const reports = await this.#host.shardStats()
    const done: CompactResult[] = []
    for (let shard = 0; shard < reports.length; shard++) {
      const rep = reports[shard]
      if (rep === undefined) continue
      for (let region = 0; region < rep.length; region++) {
        const r = rep[region]!
        if (!worth(r.arenaFreeBytes, r.arenaBytes - r.arenaFreeBytes)) continue
        const res = await this.#host.compact(shard, region)
        this.#c.compactions++
        this.#c.compactedBytes += Math.max(0, res.beforeBytes - res.afterBytes)
        this.#c.maxCompactPauseMs = Math.max(this.#c.maxCompactPauseMs, res.pauseMs)
        done.push(res)
      }
    }
    return done
  }

  /** The largest budget a rebalance may give one shard of `region`, for the slots it reserves; undefined without rebalancing. */
  static ceiling(o: ResolvedMaintenance | undefined, region: RegionInfo, shards: number): number | undefined {
    if (o?.rebalance === undefined || !Number.isFinite(region.maxBytes) || shards < 2) return undefined
    return Math.floor((region.maxBytes / shards) * o.rebalance.maxShare)
  }

  /** The smallest budget a rebalance may leave one shard of `region` (what the facade checks an entry's size against). */
  static floor(o: ResolvedMaintenance | undefined, region: RegionInfo, shards: number): number {
    const even = Math.floor(region.maxBytes / shards)
    if (o?.rebalance === undefined || !Number.isFinite(region.maxBytes) || shards < 2) return even
    return Math.floor(even * o.rebalance.minShare)
  }

  cleanup(): Promise<number> {
    return this.#serial(() => this.#cleanup())
  }

  async #cleanup(): Promise<number> {
    const n = await this.#host.cleanup()
    this.#c.cleanups++
    this.#c.cleaned += n
    return n
  }

  /** One rebalance check now: at most one move per region. */
  rebalance(): Promise<RebalanceMove[]> {
    return this.#serial(() => this.#rebalance())
  }

  stats(): MaintenanceStats {
    const budgets: Record<string, number[]> = {}
    for (const r of this.#host.regions) {
      if (Number.isFinite(r.maxBytes) && this.#o.rebalance !== undefined) budgets[r.name] = this.#host.perShard.map((s) => s[r.index]!.maxBytes)
    }
    return { ...this.#c, budgets }
  }

  resetStats(): void {
    Object.assign(this.#c, { cleanups: 0, cleaned: 0, rebalanceChecks: 0, moves: 0, movedBytes: 0, compactions: 0, compactedBytes: 0, maxCompactPauseMs: 0 })
  }

  /** Stops the schedules, after the task in progress. */
  async stop(): Promise<void> {
    this.#stopped = true
    for (const t of this.#timers) clearInterval(t)
    await this.#running.catch(() => {})
  }

  /** One task at a time: a slow check is not piled on, and a rebalance never races another. */
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#running.catch(() => {}).then(() => (this.#stopped ? Promise.reject(new Error('maintenance stopped')) : task()))
    this.#running = run
    return run
  }

  async #rebalance(): Promise<RebalanceMove[]> {
    const o = this.#o.rebalance
    if (o === undefined) return []
    const { regions, perShard } = this.#host
    const shards = perShard.length
    const reports = await this.#host.shardStats()
    this.#c.rebalanceChecks++
    const now = regions.map((r) => reports.map((rep) => rep?.[r.index]?.evictionsSize ?? 0))
    const last = this.#last
    this.#last = now
    // The first check only takes the counts: moves follow evictions between two checks.
    if (last === undefined || shards < 2 || reports.some((r) => r === undefined)) return []
    const moves: RebalanceMove[] = []
    for (const r of regions) {
      if (!Number.isFinite(r.maxBytes)) continue
      const evictions = now[r.index]!.map((n, s) => Math.max(0, n - last[r.index]![s]!))
      const even = r.maxBytes / shards
      const budget = (s: number): number => perShard[s]![r.index]!.maxBytes
      let hot = 0
      for (let s = 1; s < shards; s++) if (evictions[s]! > evictions[hot]!) hot = s
      const others = evictions.reduce((a, b) => a + b, 0) - evictions[hot]!
      if (evictions[hot]! < o.minEvictions || evictions[hot]! < o.threshold * (others / (shards - 1))) continue
      // The giver: the shard that evicted least among those above their floor.
      let from = -1
      for (let s = 0; s < shards; s++) {
        if (s === hot || budget(s) <= Math.floor(even * o.minShare)) continue
        if (from < 0 || evictions[s]! < evictions[from]!) from = s
      }
      if (from < 0) continue
      const bytes = Math.floor(Math.min(o.step * even, budget(from) - Math.floor(even * o.minShare), Math.floor(even * o.maxShare) - budget(hot)))
      if (bytes <= 0) continue
      // Shrink first, then grow: the region's total is never exceeded.
      perShard[from]![r.index]!.maxBytes = budget(from) - bytes
      await this.#host.setMaxBytes(from, r.index, budget(from))
      perShard[hot]![r.index]!.maxBytes = budget(hot) + bytes
      await this.#host.setMaxBytes(hot, r.index, budget(hot))
      this.#c.moves++
      this.#c.movedBytes += bytes
      moves.push({ region: r.name, to: hot, from, bytes, evictions })
    }
    return moves
  }
}
