/**
 * What each eviction policy costs: pipelined get and set throughput of a
 * 2-shard cache whose region uses the policy, beside the same cache under LRU,
 * and the bytes of the policy's own state per entry. What each policy earns
 * (hit ratios on real traces) is the hit-ratio section's.
 *
 * The region holds a quarter of the keys, so Zipf gets both hit and miss and
 * every set of an absent key evicts: the policy's work (insert, victim choice,
 * replayed direct-read hits) is on the measured path. Policies are measured in
 * interleaved rounds, each round in a rotated order, and compared by the
 * median of their per-round ratios to LRU: the machine drifts more between
 * rounds than a policy's cost differs.
 */
import { createCache } from '../src/index.js'
import type { Cache } from '../src/index.js'
import { EVICTION_POLICIES } from '../src/wire/region_types.js'
import type { EvictionPolicy } from '../src/wire/region_types.js'
import { ValueTag } from '../src/wire/protocol.js'
import { drawOpRing } from '../src/cli/workload.js'
import { RegionStore } from '../workers/region_store.js'
import { buildWorkload, median, pipelinedAsync, RING } from './throughput_loops.js'
import type { Workload } from './throughput_loops.js'
import { cacheKv } from './throughput_engines.js'
import { fmtRate, fmtRatio, heading, table } from './report.js'

export interface PolicyCostConfig {
  keys: number
  /** The region's entry budget (each shard gets its share). */
  maxEntries: number
  valueBytes: number
  zipfS: number
  shards: number
  concurrency: number
  rounds: number
  /** Each policy's get run and set run per round. */
  roundMs: number
  /** Entries of the in-thread store whose policy state is weighed. */
  footprintEntries: number
  seed: number
}

export const DEFAULT_POLICY_COST: PolicyCostConfig = {
  keys: 100_000,
  maxEntries: 25_000,
  valueBytes: 220,
  zipfS: 0.99,
  shards: 2,
  concurrency: 512,
  rounds: 3,
  roundMs: 250,
  footprintEntries: 100_000,
  seed: 7,
}

export interface PolicyCostRow {
  policy: EvictionPolicy
  /** Per round, ops/s. */
  get: number[]
  set: number[]
  /** Median over rounds of this policy's ops/s over LRU's in the same round. */
  getVsLru: number
  setVsLru: number
  hitRate: number
  /** Bytes of the policy's own state per slot (typed arrays, ghost, sketch), at `footprintEntries` entries. */
  stateBytesPerEntry: number
}

export interface PolicyCostSection {
  config: PolicyCostConfig
  rows: PolicyCostRow[]
}


/**
 * The policy's state bytes per slot in a store of `entries` entries, written
 * in-thread with 3x as many distinct keys: the store is full and has evicted
 * twice its size, so a ghost of evicted keys is at its largest.
 */
function footprint(policy: EvictionPolicy, entries: number): number {
  const store = new RegionStore({ name: 'footprint', policy, maxBytes: Infinity, maxEntries: entries, defaultTtl: Infinity, compressMinBytes: Infinity })
  const v = new Uint8Array(1)
  for (let i = 0; i < 3 * entries; i++) store.set(`k${i}`, ValueTag.UINT8ARRAY, v, undefined, false, false, undefined)
  const { bytes, slots } = store.policyFootprint()
  return bytes / slots
}

export async function runPolicyCost(cfg: PolicyCostConfig, log: (line: string) => void): Promise<PolicyCostSection> {
  const w: Workload = buildWorkload(cfg)
  const gets = new Uint8Array(RING)
  const sets = drawOpRing(1, RING, cfg.seed)
  const caches = new Map<EvictionPolicy, Cache>()
  try {
    for (const policy of EVICTION_POLICIES) {
      const cache = await createCache({ shards: cfg.shards, regions: { default: { policy, maxEntries: cfg.maxEntries } } })
      caches.set(policy, cache)
      await cacheKv(cache, policy).prefill(w.keys, (i) => w.values[i % w.values.length]!)
    }
    const get = new Map<EvictionPolicy, number[]>(EVICTION_POLICIES.map((p) => [p, []]))
    const set = new Map<EvictionPolicy, number[]>(EVICTION_POLICIES.map((p) => [p, []]))
    for (let r = 0; r < cfg.rounds; r++) {
      const order = EVICTION_POLICIES.map((_, i) => EVICTION_POLICIES[(i + r) % EVICTION_POLICIES.length]!)
      for (const p of order) {
        const kv = cacheKv(caches.get(p)!, p)
        get.get(p)!.push((await pipelinedAsync(kv, w, gets, cfg.roundMs, cfg.concurrency)).opsPerSec)
        set.get(p)!.push((await pipelinedAsync(kv, w, sets, cfg.roundMs, cfg.concurrency)).opsPerSec)
      }
      log(`  round ${r + 1}/${cfg.rounds}: ${order.map((p) => `${p} get ${fmtRate(get.get(p)!.at(-1))} set ${fmtRate(set.get(p)!.at(-1))}`).join(', ')}`)
    }
    const vsLru = (m: Map<EvictionPolicy, number[]>, p: EvictionPolicy): number => median(m.get(p)!.map((x, i) => x / m.get('lru')![i]!))
    const rows: PolicyCostRow[] = []
    for (const p of EVICTION_POLICIES) {
      const s = await caches.get(p)!.stats()
      rows.push({
        policy: p,
        get: get.get(p)!,
        set: set.get(p)!,
        getVsLru: vsLru(get, p),
        setVsLru: vsLru(set, p),
        hitRate: s.hitRate,
        stateBytesPerEntry: footprint(p, cfg.footprintEntries),
      })
    }
    return { config: cfg, rows }
  } finally {
    for (const c of caches.values()) await c.close()
  }
}

export function printPolicyCost(s: PolicyCostSection): string {
  const c = s.config
  return [
    heading('Eviction policies: what each costs'),
    `${c.shards} shards, region of ${c.maxEntries.toLocaleString('en-US')} entries over ${c.keys.toLocaleString('en-US')} keys (Zipf s=${c.zipfS}, ${c.valueBytes}-byte values), ` +
      `${c.concurrency} ops in flight; ${c.rounds} interleaved rounds of ${c.roundMs} ms per run.`,
    table(
      [
        { header: 'policy', align: 'left' },
        { header: 'get, pipelined' },
        { header: 'vs lru' },
        { header: 'set, pipelined' },
        { header: 'vs lru' },
        { header: 'hit rate' },
        { header: 'policy bytes/entry' },
      ],
      s.rows.map((r) => [
        r.policy,
        fmtRate(median(r.get)),
        fmtRatio(r.getVsLru),
        fmtRate(median(r.set)),
        fmtRatio(r.setVsLru),
        `${(r.hitRate * 100).toFixed(1)}%`,
        r.stateBytesPerEntry.toFixed(1),
      ]),
      [
        'ops/s: median over rounds; "vs lru": median of the per-round ratios to LRU in the same round (above 1x: faster). ' +
          'hit rate: of every get the cache served in the section (the Zipf keys, not a real trace: see the hit-ratio section for those). ' +
          'policy bytes/entry: the policy\'s own state (links, bits, queues, ghost, sketch) per slot of a store of ' +
          `${c.footprintEntries.toLocaleString('en-US')} entries after ${(3 * c.footprintEntries).toLocaleString('en-US')} distinct keys were written (a ghost at its largest), beside what every policy shares: the slot record (32 bytes), the index (8 to 16) and the store's per-slot arrays (13).`,
      ],
    ),
  ].join('\n')
}
