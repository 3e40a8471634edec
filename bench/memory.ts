/**
 * Memory: how much the whole process grows (RSS, shard threads and shared
 * buffers included) to hold 1M small JSON records, shardcache against
 * lru-cache holding the same records as JSON strings. Each engine loads in a
 * fresh child process (memory_child.ts), so RSS growth is that engine's alone:
 * no heap left over from another engine or from the other sections.
 *
 * RSS, not heap: shardcache keeps values in SharedArrayBuffers and its shard
 * threads have heaps of their own, none of which a main-heap figure would see.
 *
 * The children run side by side: what each measures is its own process's
 * memory after a full GC, which does not depend on how fast it got there (the
 * RSS figures matched those of runs one at a time within the day's spread),
 * and the section took 29 s that way on a quiet 2-core Intel machine against
 * 45 s one after another (54 s against 87 s on a loaded one). Their load
 * times then share the cores and are no throughput figure; `sideBySide:
 * false` runs them one at a time.
 */
import { fileURLToPath } from 'node:url'
import { availableParallelism } from 'node:os'
import { ChildError, runChild } from './child.js'
import { describeError, fmtCount, fmtRatio, heading, ratio, table } from './report.js'

export const MEMORY_ENGINES = ['lru-cache', 'shardcache', 'shardcache + dictionary'] as const
export type MemoryEngine = (typeof MEMORY_ENGINES)[number]

export interface MemoryBase {
  records: number
  /** Shard threads (shardcache rows). */
  shards: number
  /** Concurrent `cache.set` promises per batch while loading shardcache. */
  batch: number
  /** Region byte budget: far above what the records need, so nothing is evicted. */
  maxBytes: number
  /** Run the engines' children at the same time (see the top of the file). */
  sideBySide: boolean
  seed: number
}

export type MemoryConfig = MemoryBase & { engine: MemoryEngine }

export const DEFAULT_MEMORY: MemoryBase = {
  records: 1_000_000,
  // createCache's default, as in the event-loop scenario (1 on the 2-core reference machine). Each
  // shard thread more costs its own heap: with 2 shards the dictionary row read 227 MB instead of 212 MB.
  shards: Math.max(1, availableParallelism() - 1),
  batch: 1000,
  maxBytes: 2 ** 30,
  sideBySide: true,
  seed: 11,
}

export interface MemoryResult {
  engine: MemoryEngine
  /** Set when createCache rejected the engine's options (E_INVALID_OPTION): the feature is not there yet. */
  unsupported?: string
  records: number
  /** Sum of the records' JSON lengths (all ASCII, so bytes). */
  valueBytes: number
  /** RSS after start-up and a GC, before the engine exists. */
  rssBeforeBytes: number
  /** RSS once the empty engine exists (shard threads started), after a GC. */
  rssEmptyBytes: number
  /** RSS after loading every record and a GC. */
  rssAfterBytes: number
  /** The process's peak RSS (getrusage), loading included. */
  peakRssBytes: number
  heapUsedBeforeBytes: number
  heapUsedAfterBytes: number
  loadMs: number
  /** shardcache only: its own figures after loading. */
  stats?: { entries: number; evictions: number; usedBytes: number; rawBytes: number; storedBytes: number; compressedEntries: number; compressionRatio: number }
}

export interface MemoryRun {
  engine: MemoryEngine
  result?: MemoryResult
  error?: string
  errorDetail?: string
}

export interface MemorySection {
  base: MemoryBase
  runs: MemoryRun[]
  headline: { shardcacheRatio: number | undefined; dictionaryRatio: number | undefined }
  wallMs: number
}

const CHILD = fileURLToPath(new URL('./memory_child.js', import.meta.url))

const growth = (r: MemoryResult): number => r.rssAfterBytes - r.rssBeforeBytes

/** An engine's result when it was measured (not failed, not unsupported). */
function measured(runs: MemoryRun[], engine: MemoryEngine): MemoryResult | undefined {
  const r = runs.find((x) => x.engine === engine)?.result
  return r?.unsupported === undefined ? r : undefined
}

export async function runMemory(base: MemoryBase, log: (line: string) => void): Promise<MemorySection> {
  const started = performance.now()
  const one = async (engine: MemoryEngine): Promise<MemoryRun> => {
    // ~5-10 s per million records here, ~45 s on a loaded day side by side; only a hang should reach this.
    const timeoutMs = 90_000 + Math.ceil(base.records / 1e6) * 60_000
    try {
      const result = await runChild<MemoryConfig, MemoryResult>(CHILD, { ...base, engine }, engine, timeoutMs)
      log(
        result.unsupported !== undefined
          ? `  ${engine.padEnd(24)} not supported: ${result.unsupported}`
          : `  ${engine.padEnd(24)} RSS +${mb(growth(result))}  (load ${(result.loadMs / 1000).toFixed(2)} s)`,
      )
      return { engine, result }
    } catch (err) {
      const error = describeError(err)
      log(`  ${engine}: FAILED: ${error}`)
      return { engine, error, errorDetail: err instanceof ChildError ? err.detail : undefined }
    }
  }
  const runs: MemoryRun[] = []
  if (base.sideBySide) runs.push(...(await Promise.all(MEMORY_ENGINES.map(one))))
  else for (const engine of MEMORY_ENGINES) runs.push(await one(engine))
  const lru = measured(runs, 'lru-cache')
  const rel = (e: MemoryEngine): number | undefined => {
    const r = measured(runs, e)
    return r === undefined || lru === undefined ? undefined : ratio(growth(r), growth(lru))
  }
  return {
    base,
    runs,
    headline: { shardcacheRatio: rel('shardcache'), dictionaryRatio: rel('shardcache + dictionary') },
    wallMs: performance.now() - started,
  }
}

/** Bytes as decimal megabytes: with 1M records, MB of growth reads directly as bytes per record. */
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`

export function printMemory(s: MemorySection): string {
  const b = s.base
  const lru = measured(s.runs, 'lru-cache')
  const notes: string[] = []
  const rows = s.runs.flatMap((r) => {
    const x = r.result
    if (x === undefined) {
      notes.push(`${r.engine}: FAILED: ${r.error ?? 'unknown error'}`)
      return []
    }
    if (x.unsupported !== undefined) {
      notes.push(`${r.engine}: not supported by this build (createCache rejected the option: ${x.unsupported})`)
      return []
    }
    const g = growth(x)
    return [[
      r.engine,
      mb(g),
      (g / x.records).toFixed(0),
      fmtRatio(ratio(g, lru === undefined ? undefined : growth(lru))),
      mb(x.rssEmptyBytes - x.rssBeforeBytes),
      mb(x.peakRssBytes - x.rssBeforeBytes),
      mb(x.heapUsedAfterBytes - x.heapUsedBeforeBytes),
      x.stats === undefined ? '-' : mb(x.stats.usedBytes),
      `${(x.loadMs / 1000).toFixed(2)} s`,
    ]]
  })
  // The records' average JSON size, from any engine that loaded them.
  const avg = MEMORY_ENGINES.map((e) => measured(s.runs, e)).find((x) => x !== undefined)
  const out = [
    heading(`4. Memory: ${fmtCount(b.records)} JSON records, whole-process RSS growth`),
    `${b.records.toLocaleString('en-US')} seeded records (distinct id, name, email, ISO date + country, plan, active` +
      (avg === undefined ? '' : `; JSON ${(avg.valueBytes / avg.records).toFixed(0)} bytes on average`) +
      `); lru-cache holds JSON strings, shardcache (${b.shards} shard${b.shards === 1 ? '' : 's'} (the default: cores - 1), lru, maxBytes ${mb(b.maxBytes)}) the objects via cache.set, ` +
      `${b.batch} sets in flight per batch. Each engine in a fresh \`node --expose-gc\` child${b.sideBySide ? ', the three running side by side' : ''}; RSS before the engine exists and after loading, both after a GC. ` +
      'RSS includes the shard threads and shared buffers: total process memory.',
    table(
      [
        { header: 'engine', align: 'left' },
        { header: 'RSS growth' },
        { header: 'bytes/entry' },
        { header: 'vs lru-cache' },
        { header: 'empty engine' },
        { header: 'peak' },
        { header: 'main heap' },
        { header: 'usedBytes' },
        { header: 'load' },
      ],
      rows,
      notes,
    ),
    '"empty engine": growth from creating it (shard threads) before any record; "peak": highest RSS during the load, over the same baseline; ' +
      '"main heap": the calling thread\'s heap growth; "usedBytes": what shardcache charges against maxBytes' +
      (b.sideBySide ? '; "load": how long loading took, with the children sharing the cores (not a throughput figure).' : '.'),
    'How to read: RSS growth is the memory the whole process took to hold the records; lower is better. "vs lru-cache": over lru-cache\'s growth (below 1x: less memory).',
  ]
  for (const r of s.runs) {
    const st = r.result?.stats
    if (st === undefined) continue
    out.push(
      `${r.engine} stats(): entries ${st.entries.toLocaleString('en-US')}, evictions ${st.evictions}, rawBytes ${mb(st.rawBytes)}, ` +
        `storedBytes ${mb(st.storedBytes)} (compressionRatio ${st.compressionRatio.toFixed(2)}, ${st.compressedEntries.toLocaleString('en-US')} entries compressed)`,
    )
  }
  const h = s.headline
  const of = (e: MemoryEngine, rel: number | undefined): string => {
    const x = measured(s.runs, e)
    if (s.runs.find((r) => r.engine === e)?.result?.unsupported !== undefined) return 'not supported by this build'
    return `${x === undefined ? '-' : mb(growth(x))} / ${lru === undefined ? '-' : mb(growth(lru))} = ${fmtRatio(rel)}`
  }
  out.push(
    '',
    `summary: RSS growth shardcache / lru-cache = ${of('shardcache', h.shardcacheRatio)}; with dictionary compression: ${of('shardcache + dictionary', h.dictionaryRatio)}; lower is better`,
    `section wall time: ${(s.wallMs / 1000).toFixed(1)} s`,
  )
  return out.join('\n')
}
