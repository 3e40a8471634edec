/**
 * Threshold alerts: every `intervalMs`, the owner reads its stats and checks
 * each region's memory use (the share of its budget in use: `utilization`)
 * and its eviction rate (size evictions per second since the last check)
 * against the thresholds. An alert fires when a value reaches its threshold
 * and resolves when it falls below again: one event each way, not one per
 * check, so a listener can page on `firing` without being flooded.
 *
 * Why from stats and not from the shards: the figures are the ones users see
 * in `stats()` and in the metrics, and a check every few seconds costs one
 * stats round trip, nothing on the data path.
 */
import type { CacheStats } from './stats.js'

/** `createCache({ alerts })` after validation (src/options/alerts.ts). */
export interface ResolvedAlerts {
  memoryUse: number | undefined
  evictionsPerSecond: number | undefined
  intervalMs: number
}

/** What an alert is about. */
export type AlertKind = 'memoryUse' | 'evictionsPerSecond'

/** What `cache.on('alert')` listeners receive. */
export interface AlertEvent {
  kind: AlertKind
  region: string
  /** The value checked: a share of the budget (0 to 1) for `memoryUse`, evictions per second for `evictionsPerSecond`. */
  value: number
  threshold: number
  /** `firing`: the value reached the threshold; `resolved`: it fell below again. */
  state: 'firing' | 'resolved'
}

/** The checks of one cache, and which alerts fire now. */
export class AlertWatch {
  readonly #opts: ResolvedAlerts
  readonly #stats: () => Promise<CacheStats>
  readonly #report: (e: AlertEvent) => void
  readonly #timer: NodeJS.Timeout
  /** Firing alerts, by `kind:region`. */
  readonly #firing = new Map<string, AlertEvent>()
  /** Each region's size evictions at the last check, and when that was. */
  #last: { at: number; evictions: Map<string, number> } | undefined
  #checking: Promise<void> | undefined

  constructor(opts: ResolvedAlerts, stats: () => Promise<CacheStats>, report: (e: AlertEvent) => void) {
    this.#opts = opts
    this.#stats = stats
    this.#report = report
    this.#timer = setInterval(() => {
      // One check at a time: a slow stats round trip is not piled on.
      this.#checking ??= this.check().finally(() => (this.#checking = undefined))
    }, opts.intervalMs)
    this.#timer.unref()
  }

  /** The alerts firing now. */
  firing(): AlertEvent[] {
    return [...this.#firing.values()]
  }

  /** Stops checking (and waits for a check in progress). */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#checking
  }

  /** One check now; a failed stats read (the cache closing) skips it. */
  async check(): Promise<void> {
    let s: CacheStats
    try {
      s = await this.#stats()
    } catch {
      return
    }
    const now = performance.now()
    const evictions = new Map(Object.entries(s.byRegion).map(([r, c]) => [r, c.evictionsByCause.size]))
    const last = this.#last
    this.#last = { at: now, evictions }
    for (const [region, c] of Object.entries(s.byRegion)) {
      if (this.#opts.memoryUse !== undefined) this.#judge('memoryUse', region, c.utilization, this.#opts.memoryUse)
      const before = last?.evictions.get(region)
      // No rate before a second check, nor across a resetStats (the counter went down).
      if (this.#opts.evictionsPerSecond !== undefined && last !== undefined && before !== undefined && before <= c.evictionsByCause.size) {
        const rate = ((c.evictionsByCause.size - before) * 1000) / Math.max(1, now - last.at)
        this.#judge('evictionsPerSecond', region, rate, this.#opts.evictionsPerSecond)
      }
    }
  }

  #judge(kind: AlertKind, region: string, value: number, threshold: number): void {
    const id = `${kind}:${region}`
    const firing = this.#firing.has(id)
    if (value >= threshold && !firing) {
      const e: AlertEvent = { kind, region, value, threshold, state: 'firing' }
      this.#firing.set(id, e)
      this.#report(e)
    } else if (value < threshold && firing) {
      this.#firing.delete(id)
      this.#report({ kind, region, value, threshold, state: 'resolved' })
    } else if (firing) {
      this.#firing.get(id)!.value = value // the latest, for status
    }
  }
}
