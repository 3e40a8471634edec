/**
 * The hit-ratio section (`hit-ratio`): every policy in EVICTION_POLICIES on
 * the shipped traces (traces/), through the replay `shardcache replay` runs
 * (src/cli/replay.ts: the shards' own region store, in this thread). Three
 * tables: each trace at its reference size (the LIRS traces at the sizes of
 * the published tables, lirs-cs at 10% of its unique keys, cloudphysics at
 * 4,897 entries); cloudphysics with real object sizes at 1% and 10% of its
 * footprint (object and byte hit ratio); and the hit ratio at 1, 2 and 4
 * shards. Deterministic: figures, not timings (the section's wall time is
 * reported with the others).
 */
import { fileURLToPath } from 'node:url'
import { readTraceSync } from '../src/cli/traces.js'
import { budgetOf, prepareTrace, replayTrace } from '../src/cli/replay.js'
import type { CacheSize, PreparedTrace } from '../src/cli/replay.js'
import { EVICTION_POLICIES } from '../src/wire/region_types.js'
import type { EvictionPolicy } from '../src/wire/region_types.js'
import { heading, table } from './report.js'

const TRACES = fileURLToPath(new URL('../../traces/', import.meta.url))

/** Trace file, and its reference size. */
const REFERENCE: [string, CacheSize][] = [
  ['lirs-multi2.keys.gz', { count: 568 }],
  ['lirs-ps.keys.gz', { count: 308 }],
  ['lirs-sprite.keys.gz', { count: 707 }],
  ['lirs-gli.keys.gz', { count: 252 }],
  ['lirs-cpp.keys.gz', { count: 122 }],
  ['lirs-cs.keys.gz', { percent: 10 }],
  ['cloudphysics.oracleGeneral.bin.gz', { count: 4897 }],
]
const CLOUDPHYSICS = 'cloudphysics.oracleGeneral.bin.gz'
const BYTE_SIZES = [1, 10]
const SHARD_COUNTS = [1, 2, 4]
const SHARDED = ['lirs-multi2.keys.gz', CLOUDPHYSICS]

export interface HitRatioRow {
  trace: string
  entries: number
  shards: number
  /** Per policy: hit ratio, 0..1. */
  hitRatio: Partial<Record<EvictionPolicy, number>>
}
export interface ByteRow {
  percentOfFootprint: number
  bytes: number
  hitRatio: Partial<Record<EvictionPolicy, number>>
  byteHitRatio: Partial<Record<EvictionPolicy, number>>
}
export interface HitRatioSection {
  policies: EvictionPolicy[]
  reference: HitRatioRow[]
  cloudphysicsBytes: ByteRow[]
  sharded: HitRatioRow[]
}

function row(name: string, p: PreparedTrace, entries: number, shards: number): HitRatioRow {
  const r: HitRatioRow = { trace: name, entries, shards, hitRatio: {} }
  for (const policy of EVICTION_POLICIES) r.hitRatio[policy] = replayTrace(p, { policy, budget: entries, bytes: false, shards }).hits / p.trace.keys.length
  return r
}

export function runHitRatio(log: (line: string) => void): HitRatioSection {
  const prepared = new Map<string, PreparedTrace>()
  const trace = (f: string): PreparedTrace => {
    let p = prepared.get(f)
    if (p === undefined) prepared.set(f, (p = prepareTrace(readTraceSync(`${TRACES}${f}`))))
    return p
  }
  const section: HitRatioSection = { policies: [...EVICTION_POLICIES], reference: [], cloudphysicsBytes: [], sharded: [] }
  for (const [f, size] of REFERENCE) section.reference.push(row(f, trace(f), budgetOf(trace(f), size, false), 1))
  log('  reference sizes done')
  const cp = trace(CLOUDPHYSICS)
  for (const percent of BYTE_SIZES) {
    const budget = budgetOf(cp, { percent }, true)
    const r: ByteRow = { percentOfFootprint: percent, bytes: budget, hitRatio: {}, byteHitRatio: {} }
    for (const policy of EVICTION_POLICIES) {
      const c = replayTrace(cp, { policy, budget, bytes: true, shards: 1 })
      r.hitRatio[policy] = c.hits / cp.trace.keys.length
      r.byteHitRatio[policy] = c.hitBytes / cp.requestBytes!
    }
    section.cloudphysicsBytes.push(r)
  }
  log('  cloudphysics with sizes done')
  for (const f of SHARDED) {
    const entries = REFERENCE.find(([n]) => n === f)![1] as { count: number }
    for (const shards of SHARD_COUNTS) section.sharded.push(row(f, trace(f), entries.count, shards))
  }
  return section
}

const pct = (x: number | undefined): string => (x === undefined ? '-' : (x * 100).toFixed(2))

export function printHitRatio(s: HitRatioSection): string {
  const cols = (first: { header: string; align?: 'left' }[]) => [...first, ...s.policies.map((p) => ({ header: p }))]
  const out = [heading('6. Hit ratio (%) per eviction policy, shipped traces (higher is better)')]
  out.push(table(cols([{ header: 'trace', align: 'left' }, { header: 'entries' }]), s.reference.map((r) => [r.trace, r.entries.toLocaleString('en-US'), ...s.policies.map((p) => pct(r.hitRatio[p]))])))
  out.push('\ncloudphysics with real object sizes (byte budget, % of the 2.03 GB footprint): object / byte hit ratio (%)')
  out.push(table(cols([{ header: 'budget', align: 'left' }]), s.cloudphysicsBytes.map((r) => [`${r.percentOfFootprint}% = ${(r.bytes / 1e6).toFixed(1)} MB`, ...s.policies.map((p) => `${pct(r.hitRatio[p])} / ${pct(r.byteHitRatio[p])}`)])))
  out.push('\nsharded: the keys split as the router splits them, each shard holding its share of the entries')
  out.push(table(cols([{ header: 'trace', align: 'left' }, { header: 'entries' }, { header: 'shards' }]), s.sharded.map((r) => [r.trace, r.entries.toLocaleString('en-US'), String(r.shards), ...s.policies.map((p) => pct(r.hitRatio[p]))])))
  return out.join('\n')
}
