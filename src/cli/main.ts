#!/usr/bin/env node
/**
 * The `shardcache` command.
 *
 * `replay TRACE (--sizes S,S... | --size N) [--policy all|NAME[,NAME...]]
 * [--format keys|oracle] [--bytes] [--shards N,N...] [--json] [--chart out.svg]`
 * replays a trace (one key per line, or libCacheSim's oracleGeneral binary;
 * gzip or plain: src/cli/traces.ts) through the shards' own region store
 * with each policy at each size and shard count, the way cache papers do (a
 * get per request, a set on a miss: src/cli/replay.ts), and prints the hit
 * ratio: one line for one replay, else a table of one row per size (and
 * shard count) and one column per policy; `--chart` draws it
 * (src/cli/replay_chart.ts). Policies are EVICTION_POLICIES's, whatever it
 * lists.
 *
 * `bench [--workload zipf|uniform|trace FILE] [--shards N] [--ms N] [--json] [--chart out.svg]`
 * measures pipelined gets and sets (90/10) of shardcache, and of lru-cache
 * when it is installed, on the same key sequence, with a progress bar, and
 * prints a table (or JSON) and can draw an SVG chart. The full harness, with
 * Redis and the event-loop, memory and bus scenarios, is `npm run bench` in a
 * clone of the repository.
 *
 * `status|metrics|events --url URL` talk to a running cache's `serveAdmin()`
 * endpoint (src/cli/admin.ts).
 *
 * `--version` prints the package's version, `--help` the usage. Results go
 * to stdout; usage errors (exit code 2) and failures (exit code 1) to
 * stderr, each problem named with the value given.
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { createHistogram } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createCache } from '../api/create.js'
import { DEFAULTS } from '../options/defaults.js'
import { EVICTION_POLICIES } from '../wire/region_types.js'
import type { EvictionPolicy } from '../wire/region_types.js'
import { noun } from '../messages.js'
import { ZipfSampler, drawRing, mulberry32 } from './workload.js'
import { TRACE_FORMATS, formatOf, readTrace } from './traces.js'
import type { TraceFormat } from './traces.js'
import { budgetOf, cacheSizeText, formatBytes, parseCacheSize, prepareTrace, replayPlan } from './replay.js'
import type { CacheSize, ReplayReport, ReplayResult } from './replay.js'
import { replayChart } from './replay_chart.js'
import { textTable } from './text_table.js'
import { ADMIN_COMMANDS, ADMIN_HELP, ADMIN_USAGE, adminCommand } from './admin.js'
import type { AdminCommand } from './admin.js'

const REPLAY_USAGE =
  'usage: shardcache replay TRACE (--sizes S,S... | --size N) [--policy all|NAME[,NAME...]] [--format keys|oracle] [--bytes] [--shards N,N...] [--json] [--chart out.svg]'
const BENCH_USAGE = 'usage: shardcache bench [--workload zipf|uniform|trace FILE] [--shards N] [--ms N] [--json] [--chart out.svg]'

const USAGE = `${REPLAY_USAGE}
       shardcache bench [--workload zipf|uniform|trace FILE] [--shards N] [--ms N] [--json] [--chart out.svg]
       ${ADMIN_USAGE.replace('usage: ', '')}
       shardcache --version | --help

replay
  TRACE       a trace, gzip (name ending in .gz) or plain, in --format's format
  --format    keys: one key per line; oracle: libCacheSim's oracleGeneral binary (24-byte records:
              u32 timestamp, u64 id, u32 size, i64 next access). Default from the name: .bin or .bin.gz
              is oracle, anything else keys
  --sizes     cache sizes, comma-separated: entries (1000,5000) or percentages of the trace's unique
              keys (1%,5%,10%); with --bytes, bytes or percentages of its footprint (each object's size, summed)
  --size      one size in entries (bytes with --bytes): --size N is --sizes N
  --policy    ${EVICTION_POLICIES.join(', ')}, several comma-separated, or all (default lru)
  --bytes     store each object at its size under a byte budget (oracle traces); adds the byte hit ratio
  --shards    shard counts, comma-separated (default 1): the keys split as the router splits them,
              each shard holding its share of the size
  --json      print the results as JSON
  --chart     write an SVG line chart of hit ratio against cache size, one line per policy

bench
  --workload  zipf (default, s = 0.99 over 100,000 keys), uniform, or trace FILE (its keys, in order)
  --shards    shard threads of the cache measured, 1 to ${DEFAULTS.maxShards} (default 2)
  --ms        measured time per engine, at least 100 (default 2000)
  --json      print the results as JSON
  --chart     write an SVG chart of throughput and p99 latency per engine

${ADMIN_HELP}`

const COMMANDS = ['replay', 'bench', ...ADMIN_COMMANDS] as const

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

/** Writes the SVG `svg()` to `path`; the problem, said for the user, when it cannot. */
function writeChart(path: string, svg: () => string): string | undefined {
  try {
    writeFileSync(path, svg())
    return undefined
  } catch (e) {
    return `cannot write the chart ${path}: ${fileProblem(e)}`
  }
}

/** A usage error: each problem on its own line, then the command's usage; exit code 2. */
function usageError(err: Write, command: string, problems: readonly string[], usage: string): number {
  for (const p of problems) err(`shardcache ${command}: ${p}\n`)
  err(`${usage}\n`)
  return 2
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
  if ((ADMIN_COMMANDS as readonly string[]).includes(command)) return adminCommand(command as AdminCommand, rest, out, err)
  err(`shardcache: unknown ${command.startsWith('-') ? 'option' : 'command'} ${quoted(command)} (commands: ${COMMANDS.join(', ')}; see shardcache --help)\n`)
  return 2
}

const REPLAY_OPTIONS = ['--sizes', '--size', '--policy', '--format', '--bytes', '--shards', '--json', '--chart', '--help']

/** The items of a comma-separated list, or undefined when one is empty (`a,,b`, a trailing comma). */
function listItems(s: string): string[] | undefined {
  const items = s.split(',')
  return items.every((x) => x !== '') ? items : undefined
}

/** The first item listed twice, if any: a repeated size or policy is a typo more often than a wish. */
function repeated(items: readonly string[]): string | undefined {
  return items.find((x, i) => items.indexOf(x) !== i)
}

/** A budget in words: `568 entries`, `19.36 MB`. */
function budgetWords(r: ReplayResult): string {
  return r.bytes ? formatBytes(r.size) : count(r.size, 'entry', 'entries')
}

/** A table's cell: the size as asked and, for a percentage, what it came to: `10% = 568`, `1% = 19.36 MB`. */
function sizeCell(r: ReplayResult): string {
  const budget = r.bytes ? formatBytes(r.size) : r.size.toLocaleString('en-US')
  return r.sizeAsked.endsWith('%') ? `${r.sizeAsked} = ${budget}` : budget
}

const pct = (ratio: number): string => (ratio * 100).toFixed(2)

/** The report's first line: the trace and its counts. */
function traceLine(report: ReplayReport): string {
  const footprint = report.footprintBytes === undefined ? '' : `, footprint ${formatBytes(report.footprintBytes)} (${count(report.footprintBytes, 'byte')})`
  return `${report.trace} (${report.format}): ${count(report.requests, 'request')}, ${count(report.uniqueKeys, 'unique key')}${footprint}`
}

/**
 * The table of a report of several replays: a row per size (and shard count,
 * when several), a column per policy (two with --bytes: the object and the
 * byte hit ratio), and a line for the requests not stored, if any.
 */
export function replayTable(report: ReplayReport, policies: readonly EvictionPolicy[]): string {
  const rs = report.results
  const byBytes = rs[0]!.bytes
  const shardCounts = [...new Set(rs.map((r) => r.shards))]
  const showShards = shardCounts.length > 1 || shardCounts[0] !== 1
  const header = ['size', ...(showShards ? ['shards'] : []), ...policies.flatMap((p) => (byBytes ? [`${p} obj%`, `${p} byte%`] : [p]))]
  const rows: string[][] = []
  const notes: string[] = []
  // Results come size by size, then shard count, then policy (replayPlan's order).
  for (let i = 0; i < rs.length; i += policies.length) {
    const group = rs.slice(i, i + policies.length)
    const first = group[0]!
    rows.push([sizeCell(first), ...(showShards ? [String(first.shards)] : []), ...group.flatMap((r) => (byBytes ? [pct(r.hitRatio), pct(r.byteHitRatio!)] : [pct(r.hitRatio)]))])
    const tooLarge = group.map((r) => r.tooLarge ?? 0)
    if (tooLarge.some((n) => n > 0)) {
      notes.push(`at ${sizeCell(first)}${showShards ? `, ${count(first.shards, 'shard')}` : ''}: ${count(Math.max(...tooLarge), 'request')} for objects over a shard's budget, not stored (misses)`)
    }
  }
  const what = byBytes ? 'object and byte hit ratio (%) per policy' : 'hit ratio (%) per policy'
  return [traceLine(report), what, textTable(header, rows), ...notes].join('\n')
}

async function replayCommand(args: string[], out: Write, err: Write): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        sizes: { type: 'string' },
        size: { type: 'string' },
        policy: { type: 'string' },
        format: { type: 'string' },
        bytes: { type: 'boolean', default: false },
        shards: { type: 'string' },
        json: { type: 'boolean', default: false },
        chart: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  } catch (e) {
    return usageError(err, 'replay', [argsError(e, REPLAY_OPTIONS)], REPLAY_USAGE)
  }
  const { values, positionals } = parsed
  if (values.help) {
    out(`${USAGE}\n`)
    return 0
  }
  // Every problem is said, each on its own: a user fixes them all in one go.
  const problems: string[] = []
  if (positionals.length === 0) problems.push('needs a TRACE file (keys one per line, or oracleGeneral records; gzip or plain)')
  else if (positionals.length > 1) problems.push(`takes one TRACE file (got ${positionals.length}: ${positionals.map(quoted).join(', ')})`)
  const trace = positionals[0]

  const policyText = values.policy ?? DEFAULTS.policy
  let policies: EvictionPolicy[] = []
  if (policyText === 'all') policies = [...EVICTION_POLICIES]
  else {
    const names = listItems(policyText)
    if (names === undefined || !names.every((n) => (EVICTION_POLICIES as readonly string[]).includes(n))) {
      problems.push(`--policy must be all or one or more of ${EVICTION_POLICIES.join(', ')}, comma-separated (got ${quoted(policyText)})`)
    } else if (repeated(names) !== undefined) problems.push(`--policy names ${quoted(repeated(names)!)} twice`)
    else policies = names as EvictionPolicy[]
  }

  let format: TraceFormat | undefined = trace === undefined ? undefined : formatOf(trace)
  if (values.format !== undefined) {
    if ((TRACE_FORMATS as readonly string[]).includes(values.format)) format = values.format as TraceFormat
    else {
      problems.push(`--format must be ${TRACE_FORMATS.join(' or ')} (got ${quoted(values.format)})`)
      format = undefined
    }
  }

  const unit = values.bytes ? 'bytes' : 'entries'
  let sizes: CacheSize[] = []
  if (values.size !== undefined && values.sizes !== undefined) problems.push('--size and --sizes exclude each other (--size N is --sizes N)')
  else if (values.size !== undefined) {
    const n = positiveInteger(values.size)
    if (n === undefined) problems.push(`--size must be a positive integer (got ${quoted(values.size)})`)
    else sizes = [{ count: n }]
  } else if (values.sizes !== undefined) {
    const items = listItems(values.sizes)
    const parsedSizes = items?.map(parseCacheSize)
    if (parsedSizes === undefined || parsedSizes.some((x) => x === undefined)) {
      problems.push(`--sizes must be ${unit} (${values.bytes ? '1000000,5000000' : '1000,5000'}) or percentages (1%,5%,10%), comma-separated (got ${quoted(values.sizes)})`)
    } else {
      sizes = parsedSizes as CacheSize[]
      const twice = repeated(sizes.map(cacheSizeText))
      if (twice !== undefined) problems.push(`--sizes names ${quoted(twice)} twice`)
    }
  } else {
    problems.push(`--sizes (or --size) is required: the cache's sizes, in ${unit} or percentages of the trace's ${values.bytes ? 'footprint' : 'unique keys'} (--sizes 1%,5%,10%)`)
  }

  const shardsText = values.shards ?? '1'
  const shardItems = listItems(shardsText)
  const shardCounts = shardItems?.map(positiveInteger)
  if (shardCounts === undefined || shardCounts.some((n) => n === undefined || n > DEFAULTS.maxShards)) {
    problems.push(`--shards must be shard counts from 1 to ${DEFAULTS.maxShards}, comma-separated (got ${quoted(shardsText)})`)
  } else if (repeated(shardItems!) !== undefined) problems.push(`--shards names ${quoted(repeated(shardItems!)!)} twice`)

  if (values.bytes && format === 'keys') {
    const why = values.format === undefined ? 'its name does not end in .bin or .bin.gz' : '--format keys'
    problems.push(`--bytes needs object sizes, which only oracle traces have (this trace is read as keys: ${why})`)
  }
  if (problems.length > 0) return usageError(err, 'replay', problems, REPLAY_USAGE)

  const path = trace!
  let t
  try {
    t = await readTrace(path, format)
  } catch (e) {
    err(`shardcache replay: cannot read the trace ${path}: ${fileProblem(e)}\n`)
    return 1
  }
  if (t.keys.length === 0) {
    err(`shardcache replay: the trace ${path} holds no requests\n`)
    return 1
  }
  const p = prepareTrace(t)
  const shards = shardCounts as number[]
  if (!values.bytes) {
    // createCache refuses an entry budget smaller than the shard count (a shard would hold nothing); so does the replay.
    const most = Math.max(...shards)
    for (const size of sizes) {
      const n = budgetOf(p, size, false)
      if (n < most) problems.push(`--sizes ${cacheSizeText(size)} is ${count(n, 'entry', 'entries')}, fewer than ${most} shards: each shard holds a share`)
    }
    if (problems.length > 0) return usageError(err, 'replay', problems, REPLAY_USAGE)
  }
  const report = replayPlan(path, p, { policies, sizes, shards, bytes: values.bytes })

  // The results are printed even when the chart cannot be written.
  const chartProblem = values.chart === undefined ? undefined : writeChart(values.chart, () => replayChart(report))
  const single = report.results.length === 1 ? report.results[0]! : undefined
  if (values.json) {
    // One replay prints as one flat object (the shape replay --size N always printed); several as the report.
    // (JSON.stringify leaves out the `results: undefined`.)
    out(`${JSON.stringify(single === undefined ? report : { ...report, results: undefined, ...single })}\n`)
  } else if (single !== undefined) {
    const r = single
    const over = r.shards === 1 ? '' : ` over ${count(r.shards, 'shard')}`
    const ratios = r.bytes ? `hit ratio ${pct(r.hitRatio)}%, byte hit ratio ${pct(r.byteHitRatio!)}%` : `hit ratio ${pct(r.hitRatio)}%`
    out(
      `${report.trace}: ${count(r.requests, 'request')}, ${count(report.uniqueKeys, 'key')}; ` +
        `${r.policy} with ${budgetWords(r)}${over}: ${ratios} (${count(r.hits, 'hit')}, ${r.elapsedMs.toFixed(0)} ms)\n`,
    )
  } else {
    out(`${replayTable(report, policies)}\n`)
  }
  if (values.chart !== undefined && chartProblem === undefined && !values.json) out(`chart: ${values.chart}\n`)
  if (chartProblem !== undefined) {
    err(`shardcache replay: ${chartProblem}\n`)
    return 1
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
    const t = await readTrace(file!)
    if (t.keys.length === 0) throw new Error(`the trace ${file} holds no keys`)
    return { keys: t.names, ring: t.keys, name: `trace ${file}` }
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
  const chartProblem = values.chart === undefined ? undefined : writeChart(values.chart, () => chart(result))
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
