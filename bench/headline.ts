/**
 * The table printed at the end of a run: one row per headline figure,
 * shardcache against the peer it is measured with, in this run only. Every
 * figure comes from a section's own result (nothing is measured here), so a
 * section that did not run, or a peer that failed, simply leaves its row out.
 */
import type { ThroughputResult } from './throughput.js'
import type { BusSection } from './bus.js'
import type { ReadThroughSection } from './read_through.js'
import { sampled } from './event_loop.js'
import type { EventLoopSection } from './event_loop.js'
import type { MemorySection } from './memory.js'
import { medianOf, p99sOf, roundRatios } from './server.js'
import type { ServerSection } from './server.js'
import { fmtMs, fmtNs, fmtRate, fmtRatio, heading, ratio, table } from './report.js'

export interface HeadlineRow {
  /** What is measured. */
  what: string
  shardcache: string
  /** The peer's name and its figure. */
  peer: string
  /** shardcache's figure over the peer's (for the interleaved rows: the median of the per-round ratios). */
  ratio: number | undefined
  /** Which way of the ratio is better for shardcache. */
  better: 'higher' | 'lower'
}

export interface HeadlineInput {
  throughput?: ThroughputResult
  bus?: BusSection
  readThrough?: ReadThroughSection
  server?: ServerSection
  eventLoop?: EventLoopSection
  memory?: MemorySection
}

export function headlineRows(r: HeadlineInput): HeadlineRow[] {
  const rows: HeadlineRow[] = []
  const add = (what: string, sc: string | undefined, peer: string | undefined, rat: number | undefined, better: HeadlineRow['better']): void => {
    if (sc !== undefined && peer !== undefined && rat !== undefined && Number.isFinite(rat)) rows.push({ what, shardcache: sc, peer, ratio: rat, better })
  }
  const t = r.throughput
  if (t !== undefined) {
    const row = (engine: string, mix: string) => t.results.find((x) => x.engine.startsWith(engine) && x.mix === mix)
    const h = t.headline
    const rounds = t.headlineRounds
    add(
      rounds === undefined ? 'get, pipelined (read-only, one run each)' : `get, pipelined (read-only, median of ${rounds.scOverRedis.length} interleaved rounds)`,
      h.sc2Gets === undefined ? undefined : `${fmtRate(h.sc2Gets)} (2 shards)`,
      h.redisGets === undefined ? undefined : `ioredis ${fmtRate(h.redisGets)}`,
      h.sc2OverRedisGet,
      'higher',
    )
    const sc = row('shardcache 2 shards', 'read-only 100/0')
    const lru = row('lru-cache', 'read-only 100/0')
    add('get, pipelined (read-only, one run each)', sc && `${fmtRate(sc.pipelined.opsPerSec)} (2 shards)`,
      lru && `lru-cache ${fmtRate(lru.pipelined.opsPerSec)} (same thread)`, ratio(sc?.pipelined.opsPerSec, lru?.pipelined.opsPerSec), 'higher')
    const sc90 = row('shardcache 2 shards', 'read-heavy 90/10')
    const redis90 = row('ioredis', 'read-heavy 90/10')
    add('90% get / 10% set, pipelined (one run each)', sc90 && `${fmtRate(sc90.pipelined.opsPerSec)} (2 shards)`,
      redis90 && `ioredis ${fmtRate(redis90.pipelined.opsPerSec)}`, ratio(sc90?.pipelined.opsPerSec, redis90?.pipelined.opsPerSec), 'higher')
    const scOne = row('shardcache 2 shards', 'read-only 100/0')
    const redisOne = row('ioredis', 'read-only 100/0')
    add('get, one in flight, p50 latency', scOne && fmtNs(scOne.single.latency.p50Ns), redisOne && `ioredis ${fmtNs(redisOne.single.latency.p50Ns)}`,
      ratio(scOne?.single.latency.p50Ns, redisOne?.single.latency.p50Ns), 'lower')
    const nl = t.nearVsLru
    if (nl !== undefined) {
      const mid = (xs: number[]): number => [...xs].sort((p, q) => p - q)[xs.length >> 1]!
      add(`getSync near hit (median of ${nl.ratios.length} interleaved rounds)`, fmtRate(mid(nl.a)), `lru-cache ${fmtRate(mid(nl.b))}`, nl.median, 'higher')
    }
    const hl = t.hotNearVsLru
    if (hl !== undefined) {
      const mid = (xs: number[]): number => [...xs].sort((p, q) => p - q)[xs.length >> 1]!
      add(`getSync near hit, 1,000 hot keys in a tight loop (median of ${hl.ratios.length} rounds)`, fmtRate(mid(hl.a)), `lru-cache ${fmtRate(mid(hl.b))}`, hl.median, 'higher')
    }
  }
  const sv = r.server
  if (sv !== undefined) {
    for (const g of sv.regimes) {
      const p99 = (x: { latency: { p99: number } }): number => x.latency.p99
      const sc = medianOf(p99sOf(g, 'shardcache'))
      const lru = medianOf(p99sOf(g, 'lru-cache'))
      const n = g.rounds.filter((x) => x.mode === 'lru-cache').length
      const entries = g.regime.entries >= 1e6 ? `${g.regime.entries / 1e6}M` : g.regime.entries.toLocaleString('en-US')
      add(`node:http server, ${entries} users, ${g.regime.name}: client p99${n > 1 ? ` (median of ${n} rounds)` : ''}`, sc === undefined ? undefined : fmtMs(sc),
        lru === undefined ? undefined : `lru-cache ${fmtMs(lru)}`, medianOf(roundRatios(g, 'shardcache', 'lru-cache', p99)), 'lower')
    }
  }
  const el = r.eventLoop
  if (el !== undefined) {
    const p99 = (engine: string): number | undefined => el.runs.find((x) => x.engine === engine && x.result !== undefined && sampled(x.result))?.result?.delay.p99Ms
    const entries = el.base.entries >= 1e6 ? `${el.base.entries / 1e6}M` : el.base.entries.toLocaleString('en-US')
    const sc = p99('shardcache')
    add(`event-loop delay p99, ${entries} entries under churn`, sc === undefined ? undefined : fmtMs(sc),
      p99('lru-cache') === undefined ? undefined : `lru-cache ${fmtMs(p99('lru-cache'))}`, ratio(sc, p99('lru-cache')), 'lower')
  }
  const m = r.memory
  if (m !== undefined) {
    const growth = (engine: string): number | undefined => {
      const x = m.runs.find((y) => y.engine === engine)?.result
      return x === undefined || x.unsupported !== undefined ? undefined : x.rssAfterBytes - x.rssBeforeBytes
    }
    const mb = (b: number | undefined): string | undefined => (b === undefined ? undefined : `${(b / 1e6).toFixed(0)} MB`)
    const lru = growth('lru-cache')
    const records = m.base.records >= 1e6 ? `${m.base.records / 1e6}M` : m.base.records.toLocaleString('en-US')
    add(`memory for ${records} JSON records (RSS growth)`, mb(growth('shardcache')), lru === undefined ? undefined : `lru-cache ${mb(lru)}`,
      ratio(growth('shardcache'), lru), 'lower')
    add('  the same, dictionary compression on', mb(growth('shardcache + dictionary')), lru === undefined ? undefined : `lru-cache ${mb(lru)}`,
      ratio(growth('shardcache + dictionary'), lru), 'lower')
  }
  const rt = r.readThrough
  if (rt !== undefined) {
    const e = (name: string) => rt.engines.find((x) => x.engine === name && x.error === undefined && x.latency !== undefined)
    const sc = e('shardcache')
    const bc = e('bentocache')
    add('read-through: loader calls per 1,000 reads', sc?.loaderCallsPer1k?.toFixed(1), bc?.loaderCallsPer1k === undefined ? undefined : `bentocache ${bc.loaderCallsPer1k.toFixed(1)}`,
      ratio(sc?.loaderCallsPer1k, bc?.loaderCallsPer1k), 'lower')
    add('read-through: read p50 latency', sc && fmtNs(sc.latency!.p50Ns), bc && `bentocache ${fmtNs(bc.latency!.p50Ns)}`, ratio(sc?.latency?.p50Ns, bc?.latency?.p50Ns), 'lower')
  }
  const b = r.bus
  if (b !== undefined) {
    const h = b.headline
    add('bus: write to peer process, p99', h.propagationP99Ms === undefined ? undefined : fmtMs(h.propagationP99Ms),
      h.rawP99Ms === undefined ? undefined : `raw pub/sub ${fmtMs(h.rawP99Ms)}`, ratio(h.propagationP99Ms, h.rawP99Ms), 'lower')
  }
  return rows
}

export function printHeadline(rows: HeadlineRow[]): string {
  if (rows.length === 0) return ''
  return [
    heading('Headline: shardcache against its peers, this run'),
    table(
      [{ header: 'what is measured', align: 'left' }, { header: 'shardcache', align: 'left' }, { header: 'peer', align: 'left' }, { header: 'ratio' }, { header: 'better', align: 'left' }],
      rows.map((x) => [x.what, x.shardcache, x.peer, fmtRatio(x.ratio), x.better]),
      [
        'ratio: shardcache\'s figure over the peer\'s (for interleaved rounds, the median of the per-round ratios); "better" says which way favours shardcache: ' +
          'for ops/s a ratio above 1x, for latency and memory one below 1x. The sections above give each figure\'s conditions.',
      ],
    ),
  ].join('\n')
}
