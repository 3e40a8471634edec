#!/usr/bin/env node
/**
 * The `shardcache` command.
 *
 * `replay TRACE --policy lru|fifo --size N [--json]` replays a key trace (one
 * key per line, gzip or plain) against a region store of N entries with the
 * given policy, the way cache papers do (a get per request, a set on a miss),
 * and prints the hit ratio. The store is the shards' own
 * (workers/region_store.ts), run in this thread.
 *
 * `bench [--workload zipf|uniform|trace FILE] [--shards N] [--json] [--chart out.svg]`
 * measures pipelined gets and sets (90/10) of shardcache, and of lru-cache
 * when it is installed, on the same key sequence, with a progress bar, and
 * prints a table (or JSON) and can draw an SVG chart. The full harness, with
 * Redis and the event-loop, memory and bus scenarios, is `npm run bench` in a
 * clone of the repository.
 */
import { createReadStream, realpathSync, writeFileSync } from 'node:fs'
import { createHistogram } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { createGunzip } from 'node:zlib'
import { parseArgs } from 'node:util'
import type { Readable } from 'node:stream'
import { RegionStore } from '../workers/region_store.js'
import { ValueTag } from './protocol.js'
import { createCache } from './cache.js'
import { ZipfSampler, drawRing, mulberry32 } from './workload.js'

const USAGE = `usage: shardcache replay TRACE --policy lru|fifo --size N [--json]
       shardcache bench [--workload zipf|uniform|trace FILE] [--shards N] [--json] [--chart out.svg]

replay
  TRACE       a key trace: one key per line, gzip (.gz) or plain
  --policy    lru (default) or fifo
  --size      the cache's size in entries
  --json      print the result as JSON

bench
  --workload  zipf (default, s = 0.99 over 100,000 keys), uniform, or trace FILE (its keys, in order)
  --shards    shard threads of the cache measured (default 2)
  --ms        measured time per engine (default 2000)
  --json      print the results as JSON
  --chart     write an SVG chart of throughput and p99 latency per engine`

export interface ReplayResult {
  trace: string
  policy: 'lru' | 'fifo'
  size: number
  requests: number
  hits: number
  hitRatio: number
  uniqueKeys: number
  elapsedMs: number
}

/** The keys of a trace file, one per line (gzip when it ends in .gz), blank lines skipped. */
async function* traceKeys(path: string): AsyncGenerator<string> {
  let input: Readable = createReadStream(path)
  if (path.endsWith('.gz')) input = input.pipe(createGunzip())
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    const key = line.trim()
    if (key !== '') yield key
  }
}

/** Replays the trace at `path`; keys are the lines, blank ones skipped. */
export async function replay(path: string, policy: 'lru' | 'fifo', size: number): Promise<ReplayResult> {
  const store = new RegionStore({ name: 'replay', policy, maxBytes: Infinity, maxEntries: size, defaultTtl: Infinity, compressMinBytes: Infinity })
  const value = new Uint8Array(1)
  const seen = new Set<string>()
  let requests = 0
  let hits = 0
  const t0 = performance.now()
  for await (const key of traceKeys(path)) {
    requests++
    seen.add(key)
    if (store.get(key) !== undefined) hits++
    else store.set(key, ValueTag.BUFFER, value, undefined, false, false, undefined)
  }
  return { trace: path, policy, size, requests, hits, hitRatio: requests === 0 ? 0 : hits / requests, uniqueKeys: seen.size, elapsedMs: performance.now() - t0 }
}

/** Runs the command line; returns the exit code. */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const [command, ...rest] = argv
  if (command === 'bench') return benchCommand(rest, out)
  if (command !== 'replay') {
    out(`${USAGE}\n`)
    return command === undefined || command === '--help' ? 0 : 2
  }
  let parsed
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, options: { policy: { type: 'string', default: 'lru' }, size: { type: 'string' }, json: { type: 'boolean', default: false } } })
  } catch (err) {
    out(`shardcache replay: ${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  const { values, positionals } = parsed
  const size = Number(values.size)
  if (positionals.length !== 1 || (values.policy !== 'lru' && values.policy !== 'fifo') || !Number.isInteger(size) || size < 1) {
    out(`shardcache replay: needs one TRACE, --policy lru|fifo and --size N (a positive integer)\n${USAGE}\n`)
    return 2
  }
  let r: ReplayResult
  try {
    r = await replay(positionals[0]!, values.policy, size)
  } catch (err) {
    out(`shardcache replay: ${(err as Error).message}\n`)
    return 1
  }
  if (values.json) out(`${JSON.stringify(r)}\n`)
  else {
    out(
      `${r.trace}: ${r.requests.toLocaleString('en-US')} requests, ${r.uniqueKeys.toLocaleString('en-US')} keys; ` +
        `${r.policy} with ${r.size.toLocaleString('en-US')} entries: hit ratio ${(r.hitRatio * 100).toFixed(2)}% ` +
        `(${r.hits.toLocaleString('en-US')} hits, ${r.elapsedMs.toFixed(0)} ms)\n`,
    )
  }
  return 0
}

// ── bench ──────────────────────────────────────────────────────────────────

/** One engine's figures. */
export interface BenchRow {
  engine: string
  opsPerSec: number
  p50Us: number
  p99Us: number
}

export interface BenchResult {
  workload: string
  keys: number
  requests: number
  shards: number
  ms: number
  rows: BenchRow[]
  /** Engines not measured, and why. */
  skipped: { engine: string; reason: string }[]
}

interface Engine {
  name: string
  get(key: string): unknown
  set(key: string, value: string): unknown
  close(): Promise<void>
}

const RING = 1 << 20
const VALUE = 'v'.repeat(220)

/** The key sequence of a workload: indices into `keys`. */
async function workload(kind: string, file: string | undefined): Promise<{ keys: string[]; ring: Uint32Array; name: string }> {
  if (kind === 'trace') {
    const index = new Map<string, number>()
    const seq: number[] = []
    for await (const k of traceKeys(file!)) {
      let i = index.get(k)
      if (i === undefined) index.set(k, (i = index.size))
      seq.push(i)
    }
    if (seq.length === 0) throw new Error(`the trace ${file} holds no keys`)
    return { keys: [...index.keys()], ring: Uint32Array.from(seq), name: `trace ${file}` }
  }
  const n = 100_000
  const keys = Array.from({ length: n }, (_, i) => `bench:${i}`)
  if (kind === 'uniform') {
    const rnd = mulberry32(7)
    return { keys, ring: Uint32Array.from({ length: RING }, () => Math.floor(rnd() * n)), name: 'uniform' }
  }
  return { keys, ring: drawRing(new ZipfSampler(n, 0.99, 42), RING, 43), name: 'zipf s=0.99' }
}

/** 512 loops keeping ops in flight for `ms`, 1 set in 10 (the sequence's 10th ops), 1 op in 16 timed. */
async function measure(e: Engine, keys: string[], ring: Uint32Array, ms: number, tick: (fraction: number) => void): Promise<BenchRow> {
  const hist = createHistogram()
  let done = 0
  let cursor = 0
  const start = performance.now()
  const deadline = start + ms
  const loop = async (): Promise<void> => {
    for (let n = 0; ; n++) {
      const timed = (n & 15) === 0
      const t0 = timed ? performance.now() : 0
      if (timed && t0 >= deadline) return
      const i = cursor++ % ring.length
      const key = keys[ring[i]!]!
      await (i % 10 === 9 ? e.set(key, VALUE) : e.get(key))
      if (timed) hist.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)))
      done++
    }
  }
  const progress = setInterval(() => tick(Math.min(1, (performance.now() - start) / ms)), 100)
  try {
    await Promise.all(Array.from({ length: 512 }, loop))
  } finally {
    clearInterval(progress)
    tick(1)
  }
  return { engine: e.name, opsPerSec: (done / (performance.now() - start)) * 1000, p50Us: hist.percentile(50) / 1e3, p99Us: hist.percentile(99) / 1e3 }
}

async function benchCommand(args: string[], out: (s: string) => void): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        workload: { type: 'string', default: 'zipf' },
        shards: { type: 'string', default: '2' },
        ms: { type: 'string', default: '2000' },
        json: { type: 'boolean', default: false },
        chart: { type: 'string' },
      },
    })
  } catch (err) {
    out(`shardcache bench: ${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  const { values, positionals } = parsed
  const shards = Number(values.shards)
  const ms = Number(values.ms)
  const kind = values.workload
  const traceFile = kind === 'trace' ? positionals[0] : undefined
  if (
    !['zipf', 'uniform', 'trace'].includes(kind) ||
    (kind === 'trace') !== (positionals.length === 1) ||
    (kind !== 'trace' && positionals.length > 0) ||
    !Number.isInteger(shards) ||
    shards < 1 ||
    !Number.isInteger(ms) ||
    ms < 100
  ) {
    out(`shardcache bench: --workload zipf|uniform|trace FILE, --shards N (positive), --ms (at least 100)\n${USAGE}\n`)
    return 2
  }
  let w
  try {
    w = await workload(kind, traceFile)
  } catch (err) {
    out(`shardcache bench: ${(err as Error).message}\n`)
    return 1
  }
  const bar = (name: string) => (f: number): void => {
    if (!process.stderr.isTTY) return
    const n = Math.round(f * 30)
    process.stderr.write(`\r${name.padEnd(24)} [${'#'.repeat(n)}${'.'.repeat(30 - n)}] ${Math.round(f * 100)}%${f >= 1 ? '\n' : ''}`)
  }
  const result: BenchResult = { workload: w.name, keys: w.keys.length, requests: w.ring.length, shards, ms, rows: [], skipped: [] }
  const engines: (() => Promise<Engine>)[] = [
    async () => {
      const cache = await createCache({ shards, regions: { default: { maxBytes: Math.max(64 * 2 ** 20, w.keys.length * 600) } } })
      return { name: `shardcache ${shards} shard${shards === 1 ? '' : 's'}`, get: (k) => cache.get(k), set: (k, v) => cache.set(k, v), close: () => cache.close() }
    },
    async () => {
      const { LRUCache } = (await import('lru-cache')) as { LRUCache: new (o: { max: number }) => { get(k: string): unknown; set(k: string, v: string): unknown } }
      const lru = new LRUCache({ max: w.keys.length * 2 })
      return { name: 'lru-cache (same thread)', get: (k) => lru.get(k), set: (k, v) => lru.set(k, v), close: async () => {} }
    },
  ]
  for (const make of engines) {
    let e: Engine
    try {
      e = await make()
    } catch (err) {
      result.skipped.push({ engine: make === engines[1] ? 'lru-cache' : 'shardcache', reason: (err as Error).message.split('\n')[0]! })
      continue
    }
    try {
      // Pre-filled 1,000 keys at a time in flight: sequential awaits would make this the slow part.
      for (let i = 0; i < w.keys.length; i += 1000) await Promise.all(w.keys.slice(i, i + 1000).map((k) => e.set(k, VALUE)))
      result.rows.push(await measure(e, w.keys, w.ring, ms, bar(e.name)))
    } finally {
      await e.close()
    }
  }
  if (values.chart !== undefined) writeFileSync(values.chart, chart(result))
  if (values.json) out(`${JSON.stringify(result)}\n`)
  else {
    out(`workload: ${result.workload}, ${result.keys.toLocaleString('en-US')} keys; pipelined 90/10 gets/sets, 512 in flight, ${ms} ms per engine\n`)
    out(`${'engine'.padEnd(26)} ${'ops/s'.padStart(12)} ${'p50 µs'.padStart(10)} ${'p99 µs'.padStart(10)}\n`)
    for (const r of result.rows) out(`${r.engine.padEnd(26)} ${Math.round(r.opsPerSec).toLocaleString('en-US').padStart(12)} ${r.p50Us.toFixed(1).padStart(10)} ${r.p99Us.toFixed(1).padStart(10)}\n`)
    for (const s of result.skipped) out(`${s.engine}: skipped (${s.reason})\n`)
    if (values.chart !== undefined) out(`chart: ${values.chart}\n`)
  }
  return 0
}

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** Two bar charts side by side: throughput and p99 latency per engine. */
export function chart(r: BenchResult): string {
  const W = 720
  const H = 60 + r.rows.length * 40
  const panel = (x0: number, title: string, value: (row: BenchRow) => number, unit: string): string => {
    const max = Math.max(...r.rows.map(value), 1e-9)
    const bars = r.rows
      .map((row, i) => {
        const y = 50 + i * 40
        const w = Math.max(1, (value(row) / max) * 200)
        return (
          `<text x="${x0}" y="${y + 14}" font-size="12">${escapeXml(row.engine)}</text>` +
          `<rect x="${x0 + 150}" y="${y}" width="${w.toFixed(1)}" height="20" fill="#4a78c2"/>` +
          `<text x="${x0 + 155 + w}" y="${y + 14}" font-size="11">${escapeXml(value(row).toLocaleString('en-US', { maximumFractionDigits: 1 }))} ${unit}</text>`
        )
      })
      .join('')
    return `<text x="${x0}" y="30" font-size="14" font-weight="bold">${escapeXml(title)}</text>${bars}`
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">` +
    `<title>shardcache bench: ${escapeXml(r.workload)}</title>` +
    panel(10, 'throughput (ops/s)', (x) => Math.round(x.opsPerSec), 'ops/s') +
    panel(370, 'p99 latency (µs)', (x) => x.p99Us, 'µs') +
    `</svg>\n`
  )
}

/** Run as a program (also through npm's bin link), not imported. */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
  } catch {
    return false
  }
}

if (isMain()) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
