/**
 * How the getSync study (sync_tiers.ts) times its subjects: one loop per
 * subject, rounds that rotate their order, medians of 5 rounds, and the runs
 * with a concurrent writer thread.
 */
import { LRUCache } from 'lru-cache'
import { fmtNs, fmtPct, fmtRate, fmtRatio, heading, ratio, table } from '../report.js'
import { SharedMapLike, N, MASK, BATCH, keyOf, checkValue, RegionDirect, NearCache } from './sync_tiers_subjects.js'

// ── measuring ───────────────────────────────────────────────────────────────

export interface Counters {
  ops: number
  misses: number
}

export interface Subject {
  name: string
  /** Where the value lives, for the table. */
  where: string
  /** Runs `ops` operations from the subject's own ring position; counts into `counts`. */
  batch: (ops: number) => void
  counts: Counters
  /** Extra column text, computed after the rounds. */
  note?: () => string
}

export interface Measured {
  name: string
  where: string
  medianOpsPerSec: number
  minOpsPerSec: number
  maxOpsPerSec: number
  rounds: number[]
  missRate: number
  note?: string
}

export interface Timing {
  warmupMs: number
  roundMs: number
  rounds: number
}

/** Whatever the loops compute lands here, so the JIT cannot drop a read. */
export let sink = 0

export function runFor(s: Subject, ms: number): number {
  const t0 = performance.now()
  let ops = 0
  let t = 0
  do {
    s.batch(BATCH)
    ops += BATCH
    t = performance.now() - t0
  } while (t < ms)
  return (ops * 1000) / t
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function measure(subjects: Subject[], timing: Timing, log: (s: string) => void): Measured[] {
  for (const s of subjects) runFor(s, timing.warmupMs)
  for (const s of subjects) s.counts.ops = s.counts.misses = 0
  const rates: number[][] = subjects.map(() => [])
  for (let r = 0; r < timing.rounds; r++) {
    for (let j = 0; j < subjects.length; j++) {
      const k = (j + r) % subjects.length
      rates[k]!.push(runFor(subjects[k]!, timing.roundMs))
    }
    log(`  round ${r + 1}/${timing.rounds} done`)
  }
  return subjects.map((s, i) => ({
    name: s.name,
    where: s.where,
    medianOpsPerSec: median(rates[i]!),
    minOpsPerSec: Math.min(...rates[i]!),
    maxOpsPerSec: Math.max(...rates[i]!),
    rounds: rates[i]!,
    missRate: s.counts.ops === 0 ? 0 : s.counts.misses / s.counts.ops,
    note: s.note?.(),
  }))
}

export function printMeasured(title: string, rows: Measured[], baseline: string, unit = 'get'): string {
  const base = rows.find((r) => r.name === baseline)?.medianOpsPerSec
  return [
    heading(title),
    table(
      [
        { header: 'subject', align: 'left' },
        { header: 'where the value lives', align: 'left' },
        { header: 'median' },
        { header: 'min..max' },
        { header: `ns/${unit}` },
        { header: `vs ${baseline}` },
        { header: 'miss' },
        { header: 'notes', align: 'left' },
      ],
      rows.map((r) => [
        r.name,
        r.where,
        fmtRate(r.medianOpsPerSec),
        `${fmtRate(r.minOpsPerSec)}..${fmtRate(r.maxOpsPerSec)}`,
        fmtNs(1e9 / r.medianOpsPerSec),
        fmtRatio(ratio(r.medianOpsPerSec, base)),
        fmtPct(r.missRate),
        r.note,
      ]),
    ),
  ].join('\n')
}

// Each factory below has its own loop on purpose (see the header comment).

export function lruGets(lru: LRUCache<string, string>, ringKeys: string[], c: Counters): (ops: number) => void {
  let pos = 0
  return (ops) => {
    let sum = 0
    let misses = 0
    for (let n = 0; n < ops; n++) {
      const v = lru.get(ringKeys[pos++ & MASK]!)
      if (v === undefined) misses++
      else sum += v.length
    }
    sink += sum
    counts(c, ops, misses)
  }
}

export function counts(c: Counters, ops: number, misses: number): void {
  c.ops += ops
  c.misses += misses
}

export function subject(name: string, where: string, make: (c: Counters) => (ops: number) => void, note?: () => string): Subject {
  const c: Counters = { ops: 0, misses: 0 }
  return { name, where, batch: make(c), counts: c, note }
}

export function mapGets(map: Map<string, string>, ringKeys: string[], c: Counters): (ops: number) => void {
  let pos = 0
  return (ops) => {
    let sum = 0
    let misses = 0
    for (let n = 0; n < ops; n++) {
      const v = map.get(ringKeys[pos++ & MASK]!)
      if (v === undefined) misses++
      else sum += v.length
    }
    sink += sum
    counts(c, ops, misses)
  }
}

export function sharedMapGets(map: SharedMapLike, ringKeys: string[], c: Counters): (ops: number) => void {
  let pos = 0
  return (ops) => {
    let sum = 0
    let misses = 0
    for (let n = 0; n < ops; n++) {
      const v = map.get(ringKeys[pos++ & MASK]!)
      if (v === undefined) misses++
      else sum += v.length
    }
    sink += sum
    counts(c, ops, misses)
  }
}

export function regionGets(direct: RegionDirect, ringKeys: string[], c: Counters): (ops: number) => void {
  let pos = 0
  return (ops) => {
    let sum = 0
    let misses = 0
    for (let n = 0; n < ops; n++) {
      const v = direct.get(ringKeys[pos++ & MASK]!)
      if (v === undefined) misses++
      else sum += v.length
    }
    sink += sum
    counts(c, ops, misses)
  }
}

export function nearGets(near: NearCache, ringKeys: string[], c: Counters): (ops: number) => void {
  let pos = 0
  return (ops) => {
    let sum = 0
    let misses = 0
    for (let n = 0; n < ops; n++) {
      const v = near.get(ringKeys[pos++ & MASK]!)
      if (v === undefined) misses++
      else sum += v.length
    }
    sink += sum
    counts(c, ops, misses)
  }
}

export function nearPlainGets(near: NearCache, ringKeys: string[], c: Counters): (ops: number) => void {
  let pos = 0
  return (ops) => {
    let sum = 0
    let misses = 0
    for (let n = 0; n < ops; n++) {
      const v = near.getPlainLoads(ringKeys[pos++ & MASK]!)
      if (v === undefined) misses++
      else sum += v.length
    }
    sink += sum
    counts(c, ops, misses)
  }
}

/** The near cache without its SEQ checks: what the validation itself costs, by difference. Not a usable tier. */
export function nearUncheckedGets(near: NearCache, ringKeys: string[], c: Counters): (ops: number) => void {
  const map = near.map
  let pos = 0
  return (ops) => {
    let sum = 0
    let misses = 0
    for (let n = 0; n < ops; n++) {
      const e = map.get(ringKeys[pos++ & MASK]!)
      if (e === undefined) misses++
      else sum += e.value.length
    }
    sink += sum
    counts(c, ops, misses)
  }
}

/**
 * Reads every key once through `get` and counts values that are not the
 * expected one (a wrong tier would otherwise look fast).
 */
export function verifyAll(get: (k: string) => string | undefined, expected: (i: number) => string): number {
  let wrong = 0
  for (let i = 0; i < N; i++) if (get(keyOf(i)) !== expected(i)) wrong++
  return wrong
}

/**
 * Reads Zipf-chosen keys for `ms` while a writer runs: every value must be
 * one the writer made for that key (not torn, not foreign), and its version
 * never lower than one this thread read before.
 */
export function raceCheck(get: (k: string) => string | undefined, ringKeys: string[], ring: Uint32Array, ms: number): RaceResult {
  const seen = new Float64Array(N)
  const r: RaceResult = { reads: 0, hits: 0, malformed: 0, older: 0 }
  const until = performance.now() + ms
  for (let pos = 0; performance.now() < until; ) {
    for (let n = 0; n < 256; n++, pos++) {
      const i = ring[pos & MASK]!
      const v = get(ringKeys[pos & MASK]!)
      r.reads++
      if (v === undefined) continue
      r.hits++
      const version = checkValue(i, v)
      if (version < 0) r.malformed++
      else if (version < seen[i]!) r.older++
      else seen[i] = version
    }
  }
  return r
}

export interface RaceResult {
  reads: number
  hits: number
  malformed: number
  older: number
}
