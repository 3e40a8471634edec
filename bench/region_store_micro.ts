/**
 * Micro-benchmarks of the region store on the calling thread (no workers, no
 * frames): the cost of the data structure alone, with lru-cache doing the same
 * work as the peer. When shardcache is slower end to end, these tell whether
 * the store or the transport is to blame.
 */
import Benchmark from 'benchmark'
import { LRUCache } from 'lru-cache'
import { RegionStore } from '../workers/region_store.js'
import type { EvictionPolicy, RegionShardConfig } from '../src/wire/region_types.js'
import { ValueTag } from '../src/wire/protocol.js'
import { drawRing, ZipfSampler } from '../src/cli/workload.js'
import { fmtNs, fmtRate, fmtRatio, heading, ratio, table } from './report.js'

export interface MicroConfig {
  /** Keys in the get/update stores. */
  keys: number
  /** Entry budget of the eviction store: small, so every set of a new key evicts. */
  evictionEntries: number
  valueBytes: number
  zipfS: number
  maxTimeSec: number
  seed: number
}

export const DEFAULT_MICRO: MicroConfig = {
  keys: 100_000,
  evictionEntries: 10_000,
  valueBytes: 220,
  zipfS: 0.99,
  maxTimeSec: 0.3,
  seed: 3,
}

export interface MicroResult {
  subject: string
  case: string
  opsPerSec: number
  meanNs: number
  rmePct: number
  samples: number
}

export interface MicroSection {
  config: MicroConfig
  results: MicroResult[]
}

const RING = 1 << 18
const MASK = RING - 1
/** Distinct fresh keys cycled by the eviction case; far more than the budget, so a key is long gone when it comes round again. */
const FRESH = 1 << 17

const config = (policy: EvictionPolicy, maxEntries: number): RegionShardConfig => ({
  name: 'bench',
  policy,
  maxBytes: Infinity,
  maxEntries,
  defaultTtl: Infinity,
  compressMinBytes: Infinity, // compression has its own cost; this measures the structure
})

/** Cases as closures: the suite only sees `fn`, the state lives here. */
interface Case {
  subject: string
  name: string
  fn: () => void
}

export function runMicro(cfg: MicroConfig, log: (line: string) => void): MicroSection {
  const keys = Array.from({ length: cfg.keys }, (_, i) => `bench:rs:${i}`)
  const fresh = Array.from({ length: FRESH }, (_, i) => `bench:fresh:${i}`)
  const value = new Uint8Array(cfg.valueBytes).fill(120)
  // A shard looks keys up from the frame's bytes (getAt/setAt); lru-cache takes strings. Each gets its native form.
  const keyBytes = keys.map((k) => Buffer.from(k))
  const freshBytes = fresh.map((k) => Buffer.from(k))
  const ring = drawRing(new ZipfSampler(cfg.keys, cfg.zipfS, cfg.seed), RING, cfg.seed + 1)
  // Store results somewhere observable so the JIT cannot drop the calls.
  let sink = 0

  const cases: Case[] = []
  for (const policy of ['lru', 'fifo'] as const) {
    const store = new RegionStore(config(policy, cfg.keys))
    for (let i = 0; i < keys.length; i++) store.set(keys[i]!, ValueTag.UINT8ARRAY, value, undefined, false, false, undefined)
    const small = new RegionStore(config(policy, cfg.evictionEntries))
    for (let i = 0; i < cfg.evictionEntries; i++) small.set(keys[i]!, ValueTag.UINT8ARRAY, value, undefined, false, false, undefined)
    let gi = 0
    let si = 0
    let ei = 0
    const subject = `RegionStore ${policy}`
    cases.push(
      {
        subject,
        name: 'get hit',
        fn: () => {
          const k = keyBytes[ring[gi++ & MASK]!]!
          sink += store.getAt(k, 0, k.length)?.length ?? 0
        },
      },
      {
        subject,
        name: 'set (update)',
        fn: () => {
          const k = keyBytes[ring[si++ & MASK]!]!
          store.setAt(k, 0, k.length, ValueTag.UINT8ARRAY, value, undefined, false, false, undefined)
        },
      },
      {
        subject,
        name: 'set with eviction',
        fn: () => {
          const k = freshBytes[ei++ & (FRESH - 1)]!
          small.setAt(k, 0, k.length, ValueTag.UINT8ARRAY, value, undefined, false, false, undefined)
        },
      },
    )
  }

  // The peer does the same work; it copies the value too, as the store copies
  // out of a transient frame, so the comparison charges both for the copy.
  const lru = new LRUCache<string, Uint8Array>({ max: cfg.keys })
  for (const k of keys) lru.set(k, value.slice())
  const lruSmall = new LRUCache<string, Uint8Array>({ max: cfg.evictionEntries })
  for (let i = 0; i < cfg.evictionEntries; i++) lruSmall.set(keys[i]!, value.slice())
  let pg = 0
  let ps = 0
  let pe = 0
  cases.push(
    { subject: 'lru-cache (peer)', name: 'get hit', fn: () => { sink += lru.get(keys[ring[pg++ & MASK]!]!)?.length ?? 0 } },
    { subject: 'lru-cache (peer)', name: 'set (update)', fn: () => { lru.set(keys[ring[ps++ & MASK]!]!, value.slice()) } },
    { subject: 'lru-cache (peer)', name: 'set with eviction', fn: () => { lruSmall.set(fresh[pe++ & (FRESH - 1)]!, value.slice()) } },
  )

  const results: MicroResult[] = []
  for (const c of cases) {
    // One Benchmark per case, run synchronously: closures over module state are
    // fine here because Benchmark falls back to calling `fn` when it cannot
    // decompile it into its own loop.
    const bench = new Benchmark(`${c.subject} ${c.name}`, c.fn, { maxTime: cfg.maxTimeSec, minSamples: 5, async: false })
    bench.run()
    if (bench.error !== undefined && bench.error !== null) {
      throw new Error(`${c.subject} ${c.name}: ${String(bench.error)}`)
    }
    const r: MicroResult = {
      subject: c.subject,
      case: c.name,
      opsPerSec: bench.hz,
      meanNs: bench.stats.mean * 1e9,
      rmePct: bench.stats.rme,
      samples: bench.stats.sample.length,
    }
    results.push(r)
    log(`  ${`${c.subject} ${c.name}`.padEnd(40)} ${fmtRate(r.opsPerSec).padStart(9)}  ±${r.rmePct.toFixed(1)}%`)
  }
  if (sink === 0) throw new Error('micro-benchmarks read nothing: the get cases did not hit')
  return { config: cfg, results }
}

export function printMicro(s: MicroSection): string {
  const peer = (name: string): MicroResult | undefined => s.results.find((r) => r.subject.startsWith('lru-cache') && r.case === name)
  const rows = s.results.map((r) => [
    r.subject,
    r.case,
    fmtRate(r.opsPerSec),
    fmtNs(r.meanNs),
    `±${r.rmePct.toFixed(1)}%`,
    String(r.samples),
    r.subject.startsWith('lru-cache') ? '-' : fmtRatio(ratio(r.opsPerSec, peer(r.case)?.opsPerSec)),
  ])
  return [
    heading('5. Region store micro-benchmarks (in-thread, benchmark.js)'),
    `${s.config.keys.toLocaleString('en-US')} keys, ${s.config.valueBytes}-byte Uint8Array values, Zipf s=${s.config.zipfS} for get/update; ` +
      `eviction case: budget ${s.config.evictionEntries.toLocaleString('en-US')} entries, every set a new key; maxTime ${s.config.maxTimeSec} s per case.`,
    table(
      [
        { header: 'subject', align: 'left' },
        { header: 'case', align: 'left' },
        { header: 'ops/s' },
        { header: 'mean' },
        { header: 'rme' },
        { header: 'samples' },
        { header: 'vs lru-cache' },
      ],
      rows,
      [
        'How to read: the store a shard keeps its entries in, driven directly in this thread (no workers, no messages), against lru-cache doing the same; ' +
          'ops/s higher is better, "vs lru-cache" over lru-cache\'s ops/s for the same case (above 1x: faster); rme: benchmark.js\'s relative margin of error.',
      ],
    ),
  ].join('\n')
}
