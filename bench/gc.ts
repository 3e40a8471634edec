/**
 * The main thread's garbage collections over a window, by kind, from the
 * `gc` performance entries (each entry is one pause of this thread).
 */
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks'
import type { PerformanceEntry } from 'node:perf_hooks'
import type { GcSummary } from './event_loop_types.js'

export type { GcSummary } from './event_loop_types.js'

const emptyGc = (): GcSummary => ({ count: 0, minor: 0, major: 0, other: 0, totalMs: 0, maxMs: 0, maxMajorMs: 0, maxMinorMs: 0 })

/** Starts observing; `reset` begins a new window, `summary` reads it, `stop` ends the observation. */
export function gcObserver(): { summary(): GcSummary; reset(): void; stop(): void } {
  let s = emptyGc()
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
      s.count++
      s.totalMs += e.duration
      if (e.duration > s.maxMs) s.maxMs = e.duration
      const kind = e.detail?.kind
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
        s.major++
        s.maxMajorMs = Math.max(s.maxMajorMs, e.duration)
      } else if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) {
        s.minor++
        s.maxMinorMs = Math.max(s.maxMinorMs, e.duration)
      } else {
        s.other++
      }
    }
  })
  obs.observe({ entryTypes: ['gc'] })
  return {
    summary: () => ({ ...s }),
    reset: () => {
      s = emptyGc()
    },
    stop: () => obs.disconnect(),
  }
}
