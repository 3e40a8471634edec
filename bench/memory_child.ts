/**
 * One memory measurement in its own process (forked by memory.ts with
 * --expose-gc): RSS before the engine exists, then after loading every record,
 * both after a full GC of the main heap.
 *
 * Records are generated on the fly and dropped once stored, so what stays is
 * what the engine keeps: lru-cache its key and JSON strings, shardcache its
 * shared buffers and shard-thread heaps.
 */
import { LRUCache } from 'lru-cache'
import { createCache } from '../src/index.js'
import type { Cache } from '../src/index.js'
import { forceGc, serveChild, sleep } from './child.js'
import type { MemoryConfig, MemoryResult } from './memory.js'
import { mulberry32 } from '../src/cli/workload.js'

/** Name syllables: 2-3 of them per name part make names nearly all distinct, so that names are not a repeated string a compressor could exploit. */
const SYLLABLES = ['ka', 'lo', 'mi', 'ra', 'ne', 'so', 'ta', 'vi', 'den', 'mar', 'ell', 'ion', 'ber', 'cha', 'dra', 'fen',
  'gar', 'hol', 'ist', 'jun', 'kel', 'lin', 'mor', 'nad', 'ort', 'pel', 'qui', 'ros', 'sel', 'tor', 'ul', 'wen']
const DOMAINS = ['example.com', 'example.org', 'example.net', 'mail.example.com']
const COUNTRIES = ['US', 'DE', 'FR', 'BR', 'JP', 'IN', 'NG', 'AU', 'CA', 'PL', 'MX', 'KR']
const PLANS = ['free', 'pro', 'team', 'enterprise']
const EPOCH = Date.UTC(2019, 0, 1)
const SIX_YEARS_MS = 6 * 365 * 86_400_000

/** ~173 bytes as JSON, e.g. {"id":"u000596caab","name":"Ellnedra Torros","email":"ellnedra.torros5@example.com","createdAt":"2022-02-22T05:49:29.746Z","country":"PL","plan":"pro","active":false} */
interface UserRecord {
  id: string
  name: string
  email: string
  createdAt: string
  country: string
  plan: string
  active: boolean
}

/**
 * Record `i`, the same on every run and in every child: its own PRNG stream
 * (seeded from `i`) lets a read-back regenerate any record without the others.
 * The id and email carry `i`, so they are distinct; names are random
 * syllables (~99% distinct) and the date a random millisecond in six years,
 * so a compressor finds the repeated field names and value shapes, not
 * repeated records.
 */
function makeRecord(i: number, seed: number): UserRecord {
  const rnd = mulberry32((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!
  const word = (): string => pick(SYLLABLES) + pick(SYLLABLES) + (rnd() < 0.5 ? pick(SYLLABLES) : '')
  const cap = (w: string): string => w[0]!.toUpperCase() + w.slice(1)
  const first = word()
  const last = word()
  return {
    id: `u${i.toString(36).padStart(4, '0')}${Math.floor(rnd() * 2 ** 24).toString(16).padStart(6, '0')}`,
    name: `${cap(first)} ${cap(last)}`,
    email: `${first}.${last}${i}@${pick(DOMAINS)}`,
    createdAt: new Date(EPOCH + Math.floor(rnd() * SIX_YEARS_MS)).toISOString(),
    country: pick(COUNTRIES),
    plan: pick(PLANS),
    active: rnd() < 0.7,
  }
}

const keyOf = (i: number): string => `user:${i}`

/** RSS and heap after a full GC and a pause (lets freed pages go back and shard threads go idle). */
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  forceGc()
  await sleep(300)
  forceGc()
  return process.memoryUsage()
}

/** Every 9,973rd record read back and compared as JSON: a wrong value would make the figure meaningless. */
async function verify(get: (key: string) => Promise<string | undefined>, cfg: MemoryConfig): Promise<void> {
  for (let i = 0; i < cfg.records; i += 9_973) {
    const want = JSON.stringify(makeRecord(i, cfg.seed))
    const got = await get(keyOf(i))
    if (got !== want) throw new Error(`${cfg.engine}: ${keyOf(i)} read back ${got === undefined ? 'as a miss' : `as ${got.slice(0, 80)}`}, expected ${want.slice(0, 80)}`)
  }
}

async function run(cfg: MemoryConfig): Promise<MemoryResult> {
  // Warm the generator and JSON paths, so their code and caches are in the baseline.
  for (let i = 0; i < 1000; i++) JSON.stringify(makeRecord(cfg.records + i, cfg.seed))
  const before = await settledMemory()

  let lru: LRUCache<string, string> | undefined
  let cache: Cache | undefined
  if (cfg.engine === 'lru-cache') {
    lru = new LRUCache<string, string>({ max: cfg.records })
  } else {
    const compression = cfg.engine === 'shardcache + dictionary' ? { dictionary: true } : undefined
    try {
      // The dictionary option is being built: `as never` lets this compile against a build whose types lack it.
      cache = await createCache({ shards: cfg.shards, regions: { default: { policy: 'lru', maxBytes: cfg.maxBytes, ...(compression === undefined ? {} : { compression: compression as never }) } } })
    } catch (err) {
      if ((err as { code?: unknown }).code === 'E_INVALID_OPTION') return unsupported(cfg, (err as Error).message, before)
      throw err
    }
  }
  const empty = await settledMemory()

  let valueBytes = 0
  const t0 = performance.now()
  if (lru !== undefined) {
    for (let i = 0; i < cfg.records; i++) {
      const json = JSON.stringify(makeRecord(i, cfg.seed))
      valueBytes += json.length
      lru.set(keyOf(i), json)
    }
  } else {
    const c = cache!
    for (let start = 0; start < cfg.records; start += cfg.batch) {
      const pending: Promise<boolean>[] = []
      for (let i = start; i < Math.min(cfg.records, start + cfg.batch); i++) pending.push(c.set(keyOf(i), makeRecord(i, cfg.seed)))
      await Promise.all(pending)
    }
  }
  const loadMs = performance.now() - t0
  const after = await settledMemory()
  const peakRssBytes = process.resourceUsage().maxRSS * 1024

  const result: MemoryResult = {
    engine: cfg.engine,
    records: cfg.records,
    valueBytes,
    rssBeforeBytes: before.rss,
    rssEmptyBytes: empty.rss,
    rssAfterBytes: after.rss,
    peakRssBytes,
    heapUsedBeforeBytes: before.heapUsed,
    heapUsedAfterBytes: after.heapUsed,
    loadMs,
  }
  if (lru !== undefined) {
    if (lru.size !== cfg.records) throw new Error(`lru-cache holds ${lru.size} entries after loading ${cfg.records}`)
    await verify(async (k) => lru.get(k), cfg)
  } else {
    const c = cache!
    const s = await c.stats()
    result.stats = {
      entries: s.entries,
      evictions: s.evictions,
      usedBytes: s.usedBytes,
      rawBytes: s.rawBytes,
      storedBytes: s.storedBytes,
      compressedEntries: s.compressedEntries,
      compressionRatio: s.compressionRatio,
    }
    // A budget too small would evict, and the figure would be for fewer records.
    if (s.entries !== cfg.records || s.evictions !== 0) throw new Error(`shardcache holds ${s.entries} entries (${s.evictions} evicted) after loading ${cfg.records}: raise maxBytes`)
    // rawBytes counts the encoded values: the same JSON lru-cache holds.
    result.valueBytes = s.rawBytes
    await verify(async (k) => {
      const v = await c.get<UserRecord>(k)
      return v === undefined ? undefined : JSON.stringify(v)
    }, cfg)
    await c.close()
  }
  return result
}

function unsupported(cfg: MemoryConfig, message: string, before: NodeJS.MemoryUsage): MemoryResult {
  return {
    engine: cfg.engine,
    unsupported: message,
    records: 0,
    valueBytes: 0,
    rssBeforeBytes: before.rss,
    rssEmptyBytes: before.rss,
    rssAfterBytes: before.rss,
    peakRssBytes: before.rss,
    heapUsedBeforeBytes: before.heapUsed,
    heapUsedAfterBytes: before.heapUsed,
    loadMs: 0,
  }
}

serveChild(run)
