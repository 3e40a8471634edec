#!/usr/bin/env node
/**
 * The `shardcache` command.
 *
 * `replay TRACE --size N [--policy lru|fifo] [--json]` replays a key trace (one
 * key per line, gzip or plain) against a region store of N entries with the
 * given policy, the way cache papers do (a get per request, a set on a miss),
 * and prints the hit ratio. The store is the shards' own
 * (workers/region_store.ts), run in this thread.
 *
 * `bench [--workload zipf|uniform|trace FILE] [--shards N] [--ms N] [--json] [--chart out.svg]`
 * measures pipelined gets and sets (90/10) of shardcache, and of lru-cache
 * when it is installed, on the same key sequence, with a progress bar, and
 * prints a table (or JSON) and can draw an SVG chart. The full harness, with
 * Redis and the event-loop, memory and bus scenarios, is `npm run bench` in a
 * clone of the repository.
 *
 * `--version` prints the package's version, `--help` the usage. Results go
 * to stdout; usage errors (exit code 2) and failures (exit code 1) to
 * stderr, each problem named with the value given.
 */
import { createReadStream, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { createHistogram } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { createGunzip } from 'node:zlib'
import { parseArgs } from 'node:util'
import { pipeline } from 'node:stream'
import type { Readable } from 'node:stream'
import { RegionStore } from '../../workers/region_store.js'
import { ValueTag } from '../wire/protocol.js'
import { createCache } from '../api/create.js'
import { DEFAULTS } from '../options/defaults.js'
import { noun } from '../messages.js'
import { ZipfSampler, drawRing, mulberry32 } from './workload.js'

const REPLAY_USAGE = 'usage: shardcache replay TRACE --size N [--policy lru|fifo] [--json]'
const BENCH_USAGE = 'usage: shardcache bench [--workload zipf|uniform|trace FILE] [--shards N] [--ms N] [--json] [--chart out.svg]'

const USAGE = `usage: shardcache replay TRACE --size N [--policy lru|fifo] [--json]
       shardcache bench [--workload zipf|uniform|trace FILE] [--shards N] [--ms N] [--json] [--chart out.svg]
       shardcache --version | --help

replay
  TRACE       a key trace: one key per line, gzip (.gz) or plain
  --size      the cache's size in entries (required)
  --policy    lru (default) or fifo
  --json      print the result as JSON

bench
  --workload  zipf (default, s = 0.99 over 100,000 keys), uniform, or trace FILE (its keys, in order)
  --shards    shard threads of the cache measured, 1 to ${DEFAULTS.maxShards} (default 2)
  --ms        measured time per engine, at least 100 (default 2000)
  --json      print the results as JSON
  --chart     write an SVG chart of throughput and p99 latency per engine`

const COMMANDS = ['replay', 'bench'] as const

/** Where the command writes: results to `out` (stdout), usage and errors to `err` (stderr). */
type Write = (s: string) => void

/**
 * The package's version, from its package.json: two levels up from this
 * module (dist/src/cli/main.js), wherever the package is installed, not from
 * the working directory.
 */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
  if (typeof pkg.version !== 'string') throw new Error('package.json has no version')
  return pkg.version
}

/** `n` grouped in thousands, and the noun (singular for 1): `1,000 entries`, `1 hit`. */
const count = (n: number, singular: string, pluralForm?: string): string => `${n.toLocaleString('en-US')} ${noun(n, singular, pluralForm)}`

/** An argument as the user typed it, quoted (every argument is a string: the quotes say where it starts and ends). */
const quoted = (s: string): string => JSON.stringify(s)

/**
 * node:util parseArgs's errors, said the way the other messages are: the
 * option named, with the command's options for an unknown one.
 */
function argsError(err: unknown, options: readonly string[]): string {
  const code = (err as { code?: unknown }).code
  const msg = (err as Error).message
  const named = /'(-[^' ]+)/.exec(msg)?.[1]
  if (named !== undefined) {
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${quoted(named)} (options: ${options.join(', ')})`
    if (/argument missing/.test(msg)) return `${named} needs a value`
    if (/does not take an argument/.test(msg)) return `${named} takes no value`
    if (/is ambiguous/.test(msg)) return `${named} needs a value (one starting with "-" is written ${named}=VALUE)`
  }
  return msg
}

/** A file that could not be read, in words: `no such file or directory (ENOENT)`. */
function fileProblem(err: unknown): string {
  const msg = (err as Error).message
  const code = (err as { code?: unknown }).code
  if (typeof code !== 'string') return msg
  // Node's fs messages are "ENOENT: no such file or directory, open '/x'": the path is said already.
  const m = /^[A-Z0-9_]+: (.*?)(?:, [a-z]+(?: '.*')?)?$/.exec(msg)
  return `${m === null ? msg : m[1]} (${code})`
}

/** A positive integer as typed (digits only), or undefined. */
function positiveInteger(s: string | undefined): number | undefined {
  if (s === undefined || !/^[0-9]+$/.test(s)) return undefined
  const n = Number(s)
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined
}

/** A usage error: each problem on its own line, then the command's usage; exit code 2. */
function usageError(err: Write, command: string, problems: readonly string[], usage: string): number {
  for (const p of problems) err(`shardcache ${command}: ${p}\n`)
  err(`${usage}\n`)
  return 2
}

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
  // pipeline, not pipe: a file that cannot be opened must fail the read, not be an unhandled 'error'.
  const input: Readable = path.endsWith('.gz') ? pipeline(createReadStream(path), createGunzip(), () => {}) : createReadStream(path)
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

/**
 * Runs the command line; returns the exit code: 0, 1 when the command
 * failed (a trace that cannot be read), 2 for a usage error. Results go to
 * `out`, usage and errors to `err`.
 */
export async function main(argv: string[], out: Write = (s) => process.stdout.write(s), err: Write = (s) => process.stderr.write(s)): Promise<number> {
  const [command, ...rest] = argv
  if (command === '--version' || command === '-v') {
    out(`${packageVersion()}\n`)
    return 0
  }
  if (command === '--help' || command === '-h') {
    out(`${USAGE}\n`)
    return 0
  }
  if (command === undefined) {
    err(`${USAGE}\n`)
    return 2
  }
  if (command === 'replay') return replayCommand(rest, out, err)
  if (command === 'bench') return benchCommand(rest, out, err)
  err(`shardcache: unknown ${command.startsWith('-') ? 'option' : 'command'} ${quoted(command)} (commands: ${COMMANDS.join(', ')}; see shardcache --help)\n`)
  return 2
}

async function replayCommand(args: string[], out: Write, err: Write): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { policy: { type: 'string' }, size: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    })
  } catch (e) {
    return usageError(err, 'replay', [argsError(e, ['--size', '--policy', '--json', '--help'])], REPLAY_USAGE)
  }
  const { values, positionals } = parsed
  if (values.help) {
    out(`${USAGE}\n`)
    return 0
  }
  // Every problem is said, each on its own: a user fixes them all in one go.
  const problems: string[] = []
  if (positionals.length === 0) problems.push('needs a TRACE file (one key per line, gzip or plain)')
  else if (positionals.length > 1) problems.push(`takes one TRACE file (got ${positionals.length}: ${positionals.map(quoted).join(', ')})`)
  const policy = values.policy ?? 'lru'
  if (policy !== 'lru' && policy !== 'fifo') problems.push(`--policy must be lru or fifo (got ${quoted(policy)})`)
  const size = positiveInteger(values.size)
  if (values.size === undefined) problems.push("--size is required: the cache's size in entries, a positive integer")
  else if (size === undefined) problems.push(`--size must be a positive integer (got ${quoted(values.size)})`)
  if (problems.length > 0) return usageError(err, 'replay', problems, REPLAY_USAGE)
  const trace = positionals[0]!
  let r: ReplayResult
  try {
    r = await replay(trace, policy as 'lru' | 'fifo', size!)
  } catch (e) {
    err(`shardcache replay: cannot read the trace ${trace}: ${fileProblem(e)}\n`)
    return 1
  }
  if (values.json) out(`${JSON.stringify(r)}\n`)
  else {
    out(
      `${r.trace}: ${count(r.requests, 'request')}, ${count(r.uniqueKeys, 'key')}; ` +
        `${r.policy} with ${count(r.size, 'entry', 'entries')}: hit ratio ${(r.hitRatio * 100).toFixed(2)}% ` +
        `(${count(r.hits, 'hit')}, ${r.elapsedMs.toFixed(0)} ms)\n`,
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

async function benchCommand(args: string[], out: Write, err: Write): Promise<number> {
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
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  } catch (e) {
    return usageError(err, 'bench', [argsError(e, ['--workload', '--shards', '--ms', '--json', '--chart', '--help'])], BENCH_USAGE)
  }
  const { values, positionals } = parsed
  if (values.help) {
    out(`${USAGE}\n`)
    return 0
  }
  const problems: string[] = []
  const kind = values.workload
  if (kind !== 'zipf' && kind !== 'uniform' && kind !== 'trace') problems.push(`--workload must be zipf, uniform or trace (got ${quoted(kind)})`)
  if (kind === 'trace') {
    if (positionals.length === 0) problems.push('--workload trace needs a FILE: shardcache bench --workload trace FILE')
    else if (positionals.length > 1) problems.push(`--workload trace takes one FILE (got ${positionals.length}: ${positionals.map(quoted).join(', ')})`)
  } else if (positionals.length > 0) {
    problems.push(`unexpected argument ${quoted(positionals[0]!)} (only --workload trace takes a FILE)`)
  }
  const shards = positiveInteger(values.shards)
  if (shards === undefined || shards > DEFAULTS.maxShards) problems.push(`--shards must be an integer from 1 to ${DEFAULTS.maxShards} (got ${quoted(values.shards)})`)
  const ms = positiveInteger(values.ms)
  if (ms === undefined || ms < 100) problems.push(`--ms must be an integer of at least 100 (got ${quoted(values.ms)})`)
  if (problems.length > 0) return usageError(err, 'bench', problems, BENCH_USAGE)
  const traceFile = kind === 'trace' ? positionals[0] : undefined
  let w
  try {
    w = await workload(kind, traceFile)
  } catch (e) {
    // An empty trace is said as such; anything else is the file (or its gzip) failing to read.
    const why = typeof (e as { code?: unknown }).code === 'string' ? `cannot read the trace ${traceFile}: ${fileProblem(e)}` : (e as Error).message
    err(`shardcache bench: ${why}\n`)
    return 1
  }
  const bar = (name: string) => (f: number): void => {
    if (!process.stderr.isTTY) return
    const n = Math.round(f * 30)
    process.stderr.write(`\r${name.padEnd(24)} [${'#'.repeat(n)}${'.'.repeat(30 - n)}] ${Math.round(f * 100)}%${f >= 1 ? '\n' : ''}`)
  }
  const result: BenchResult = { workload: w.name, keys: w.keys.length, requests: w.ring.length, shards: shards!, ms: ms!, rows: [], skipped: [] }
  const engines: (() => Promise<Engine>)[] = [
    async () => {
      const cache = await createCache({ shards, regions: { default: { maxBytes: Math.max(64 * 2 ** 20, w.keys.length * 600) } } })
      return { name: `shardcache ${count(shards!, 'shard')}`, get: (k) => cache.get(k), set: (k, v) => cache.set(k, v), close: () => cache.close() }
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
      result.rows.push(await measure(e, w.keys, w.ring, ms!, bar(e.name)))
    } finally {
      await e.close()
    }
  }
  // The results are printed even when the chart cannot be written: they took seconds to measure.
  let chartProblem: string | undefined
  if (values.chart !== undefined) {
    try {
      writeFileSync(values.chart, chart(result))
    } catch (e) {
      chartProblem = `cannot write the chart ${values.chart}: ${fileProblem(e)}`
    }
  }
  if (values.json) out(`${JSON.stringify(result)}\n`)
  else {
    out(`workload: ${result.workload}, ${count(result.keys, 'key')}; pipelined 90/10 gets/sets, 512 in flight, ${ms} ms per engine\n`)
    out(`${'engine'.padEnd(26)} ${'ops/s'.padStart(12)} ${'p50 µs'.padStart(10)} ${'p99 µs'.padStart(10)}\n`)
    for (const r of result.rows) out(`${r.engine.padEnd(26)} ${Math.round(r.opsPerSec).toLocaleString('en-US').padStart(12)} ${r.p50Us.toFixed(1).padStart(10)} ${r.p99Us.toFixed(1).padStart(10)}\n`)
    for (const s of result.skipped) out(`${s.engine}: skipped (${s.reason})\n`)
    if (values.chart !== undefined && chartProblem === undefined) out(`chart: ${values.chart}\n`)
  }
  if (chartProblem !== undefined) {
    err(`shardcache bench: ${chartProblem}\n`)
    return 1
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
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (e: unknown) => {
      // A bug, not a usage error: the stack says where.
      process.stderr.write(`shardcache: ${(e as Error)?.stack ?? String(e)}\n`)
      process.exitCode = 1
    },
  )
}
