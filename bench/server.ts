/**
 * A real server, tried from the outside: a `node:http` server process
 * (server_app.ts) over 1M pre-filled users, and an open-loop client process
 * (server_client.ts) on loopback, in two regimes:
 *
 * - **light**: ~200-byte users, 4,000 req/s, one in ten a write, no other
 *   writes: an in-heap cache's old generation grows too slowly for V8 to
 *   collect it in the window, so this shows what shardcache costs where GC
 *   does not hurt;
 * - **GC-heavy**: larger users (a ~300-byte bio), the same requests plus a
 *   feed of 10,000 writes/s, and the server's old space limited to a fifth
 *   above what lru-cache's users need (a server sized to its data, as in a
 *   container): lru-cache's old generation is then really collected.
 *
 * Each mode (no cache, lru-cache, shardcache, shardcache with a near cache)
 * runs in a fresh server process per round; rounds run the modes in a
 * rotated order, so that the machine's drift spreads over all of them, and
 * the figures compared are each round's and the medians over rounds.
 */
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { forkTracked, runChild } from './child.js'
import { describeError, fmtMs, fmtRatio, heading, ratio, table } from './report.js'
import type { Column } from './report.js'
import { SERVER_MODES } from './server_types.js'
import type { ClientConfig, ClientResult, ServerMode, ServerReady, ServerRegime, ServerRound, ServerSetup, ServerWindow } from './server_types.js'

export type { ServerRound } from './server_types.js'

export interface ServerSectionConfig {
  regimes: ServerRegime[]
  rounds: number
  /** 0: the library's default. */
  shards: number
  nearEntries: number
  prefillChunk: number
  seed: number
}

const LIGHT: ServerRegime = {
  name: 'light',
  entries: 1_000_000,
  bioBytes: 0,
  zipfS: 0.99,
  requestsPerSec: 4000,
  writeEvery: 10,
  feedWritesPerSec: 0,
  missWorkMicros: 20,
  maxOldSpaceMb: 0,
  warmupMs: 1000,
  durationMs: 4000,
}

const GC_HEAVY: ServerRegime = {
  ...LIGHT,
  name: 'GC-heavy',
  bioBytes: 300,
  feedWritesPerSec: 10_000,
  // lru-cache's 1M users of this shape hold ~990 MiB after a full GC (Node 20). With 10% above
  // that, 10,000 writes/s bring a major GC every few seconds (both of two 6 s windows had one, the
  // busiest 100 ms at 100%); at 1,200 MiB a 6 s window often had none.
  maxOldSpaceMb: 1100,
  durationMs: 8000,
}

/**
 * `npm run bench`: one round of each regime, shortened windows (~90 s in all
 * here: the pre-fills, ~3–8 s per cache mode, are most of it).
 */
export const DEFAULT_SERVER: ServerSectionConfig = {
  regimes: [
    { ...LIGHT, durationMs: 3000 },
    { ...GC_HEAVY, durationMs: 6000 },
  ],
  rounds: 1,
  shards: 0,
  nearEntries: 10_000,
  prefillChunk: 2000,
  seed: 11,
}

/** `--full`: three interleaved rounds, the full windows. */
export const FULL_SERVER: ServerSectionConfig = { ...DEFAULT_SERVER, rounds: 3, regimes: [LIGHT, GC_HEAVY] }

export interface ServerRegimeResult {
  regime: ServerRegime
  rounds: ServerRound[]
}

export interface ServerSection {
  config: ServerSectionConfig
  regimes: ServerRegimeResult[]
  wallMs: number
}

const APP = fileURLToPath(new URL('./server_app.js', import.meta.url))
const CLIENT = fileURLToPath(new URL('./server_client.js', import.meta.url))

/** The next message of `type` from `child`, or a rejection when it fails, exits or takes longer than `ms`. */
function nextMessage<T>(child: ChildProcess, type: string, ms: number, label: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    const onMessage = (m: { type: string; error?: string }): void => {
      if (m.type === 'failed') {
        done()
        reject(new Error(`${label}: ${m.error}`))
      } else if (m.type === type) {
        done()
        resolve(m as T)
      }
    }
    const onExit = (code: number | null, signal: string | null): void => {
      done()
      reject(new Error(`${label}: server exited (${signal ?? `code ${code}`}) before '${type}'`))
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`${label}: no '${type}' within ${ms} ms`))
    }, ms)
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

async function runRound(cfg: ServerSectionConfig, regime: ServerRegime, mode: ServerMode, round: number): Promise<ServerRound> {
  const label = `${regime.name} ${mode}`
  const setup: ServerSetup = { regime, mode, shards: cfg.shards, nearEntries: cfg.nearEntries, prefillChunk: cfg.prefillChunk, seed: cfg.seed }
  const server = forkTracked(APP, regime.maxOldSpaceMb > 0 ? [`--max-old-space-size=${regime.maxOldSpaceMb}`] : [])
  try {
    const readyP = nextMessage<ServerReady>(server, 'ready', 240_000, label)
    server.send({ cmd: 'start', setup })
    const ready = await readyP
    const clientCfg: ClientConfig = { port: ready.port, regime, seed: cfg.seed + round }
    const client = await runChild<ClientConfig, ClientResult>(CLIENT, clientCfg, `${label} client`, regime.warmupMs + regime.durationMs + 60_000)
    const windowP = nextMessage<{ window: ServerWindow; error?: string }>(server, 'window', 30_000, label)
    server.send({ cmd: 'report' })
    const { window, error } = await windowP
    return { round, mode, prefillMs: ready.prefillMs, shards: ready.shards, client, server: window, ...(error !== undefined ? { error: `server: ${error}` } : {}) }
  } catch (err) {
    return { round, mode, error: describeError(err) }
  } finally {
    server.kill('SIGKILL')
  }
}

export async function runServerSection(cfg: ServerSectionConfig, log: (line: string) => void): Promise<ServerSection> {
  const started = performance.now()
  const regimes: ServerRegimeResult[] = []
  for (const regime of cfg.regimes) {
    const rounds: ServerRound[] = []
    for (let r = 0; r < cfg.rounds; r++) {
      const order = SERVER_MODES.map((_, i) => SERVER_MODES[(i + r) % SERVER_MODES.length]!)
      for (const mode of order) {
        const x = await runRound(cfg, regime, mode, r + 1)
        rounds.push(x)
        log(
          `  ${regime.name} round ${r + 1}/${cfg.rounds} ${mode.padEnd(17)} ` +
            (x.client !== undefined ? `p99 ${fmtMs(x.client.latency.p99)} p99.9 ${fmtMs(x.client.latency.p999)}, GC major ${x.server?.gc.major ?? "-"}, client CPU ${(x.client.cpuShare * 100).toFixed(0)}%, max in flight ${x.client.maxInFlight}` : '') +
            (x.error !== undefined ? ` FAILED: ${x.error}` : ''),
        )
      }
    }
    regimes.push({ regime, rounds })
  }
  return { config: cfg, regimes, wallMs: performance.now() - started }
}

/** The median (the mean of the middle two for an even count), undefined for none. */
export const medianOf = (xs: number[]): number | undefined => {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1]! + s[m]!) / 2
}
const mib = (b: number | undefined): string => (b === undefined ? '-' : `${(b / 2 ** 20).toFixed(0)} MiB`)
const cpuShare = (ms: number | undefined, windowMs: number): string => (ms === undefined ? '-' : `${((ms / windowMs) * 100).toFixed(0)}%`)

/** `mode`'s client figure (`pick`, p99 by default) in each round it completed. */
export function p99sOf(r: ServerRegimeResult, mode: ServerMode, pick: (c: ClientResult) => number = (c) => c.latency.p99): number[] {
  return r.rounds.filter((x) => x.mode === mode && x.client !== undefined && x.error === undefined).map((x) => pick(x.client!))
}

/** Per round, `mode`'s figure over `peer`'s in the same round. */
export function roundRatios(r: ServerRegimeResult, mode: ServerMode, peer: ServerMode, pick: (c: ClientResult) => number): number[] {
  const out: number[] = []
  for (const x of r.rounds) {
    if (x.mode !== mode || x.client === undefined) continue
    const p = r.rounds.find((y) => y.round === x.round && y.mode === peer && y.client !== undefined)
    if (p !== undefined) out.push(pick(x.client) / pick(p.client!))
  }
  return out
}

function shardsUsed(r: ServerRegimeResult, c: ServerSectionConfig): string {
  const n = r.rounds.find((x) => x.shards !== undefined)?.shards
  const count = n === undefined ? (c.shards > 0 ? String(c.shards) : '?') : String(n)
  return `${count} shard${count === '1' ? '' : 's'}${c.shards === 0 ? ' (the default here)' : ''}`
}

/** The server table's columns: rows with fewer cells (a failed round, the medians) are padded to these. */
const SERVER_COLUMNS: Column[] = [
  { header: 'round', align: 'left' },
  { header: 'mode', align: 'left' },
  { header: 'p50' },
  { header: 'p99' },
  { header: 'p99.9' },
  { header: 'max' },
  { header: 'loop delay p99 / busiest 100 ms' },
  { header: 'GC maj/min' },
  { header: 'GC max' },
  { header: 'RSS' },
  { header: 'CPU main / shards' },
  { header: 'write RTT p50 / p99' },
  { header: 'responses' },
  { header: 'reads served at once' },
]

const padded = (cells: string[]): string[] => [...cells, ...Array<string>(SERVER_COLUMNS.length - cells.length).fill('')]

export function printServerSection(s: ServerSection, title: string): string {
  const out = [heading(title)]
  const c = s.config
  for (const r of s.regimes) {
    const g = r.regime
    out.push(
      '',
      `${g.name}: ${g.entries.toLocaleString('en-US')} pre-filled users (${g.bioBytes === 0 ? '~200 bytes as JSON' : `~${200 + g.bioBytes} bytes as JSON, with a bio`}); ` +
        `client: ${g.requestsPerSec.toLocaleString('en-US')} req/s open loop, Zipf s=${g.zipfS}, 1 in ${g.writeEvery} a write; ` +
        (g.feedWritesPerSec > 0 ? `feed: ${g.feedWritesPerSec.toLocaleString('en-US')} writes/s in the server; ` : '') +
        `${g.missWorkMicros} µs of work per miss; ${g.maxOldSpaceMb > 0 ? `old space ${g.maxOldSpaceMb} MiB` : "V8's default heap"}; ` +
        `${g.warmupMs} ms warm-up, ${g.durationMs} ms measured; shardcache: ${shardsUsed(r, c)}${c.nearEntries > 0 ? `, near cache ${c.nearEntries.toLocaleString('en-US')} entries` : ''}.`,
    )
    const rows = r.rounds.map((x) => {
      const cl = x.client
      const sv = x.server
      if (cl === undefined || sv === undefined) return padded([String(x.round), x.mode, `FAILED: ${x.error ?? '?'}`])
      return [
        String(x.round),
        x.mode,
        fmtMs(cl.latency.p50),
        fmtMs(cl.latency.p99),
        fmtMs(cl.latency.p999),
        fmtMs(cl.latency.max),
        `${fmtMs(sv.delay.p99)} / ${(sv.busiest100ms * 100).toFixed(0)}%`,
        `${sv.gc.major}/${sv.gc.minor}`,
        fmtMs(sv.gc.maxMajorMs > 0 ? sv.gc.maxMajorMs : sv.gc.maxMs),
        mib(sv.rssBytes),
        `${cpuShare(sv.cpu.mainMs, sv.cpu.windowMs)} / ${cpuShare(sv.cpu.shardsMs, sv.cpu.windowMs)}`,
        sv.writeRoundTripMs === undefined ? '-' : `${fmtMs(sv.writeRoundTripMs.p50)} / ${fmtMs(sv.writeRoundTripMs.p99)}`,
        `${cl.completed.toLocaleString('en-US')}${cl.errors > 0 ? ` (${cl.errors} failed)` : ''}`,
        sv.requests.reads === 0 ? '-' : `${((sv.requests.syncReads / sv.requests.reads) * 100).toFixed(0)}%`,
      ]
    })
    for (const mode of SERVER_MODES) {
      const pick = (f: (c: ClientResult) => number): string => fmtMs(medianOf(p99sOf(r, mode, f)))
      rows.push(padded(['median', mode, pick((x) => x.latency.p50), pick((x) => x.latency.p99), pick((x) => x.latency.p999), pick((x) => x.latency.max)]))
    }
    out.push(
      table(
        SERVER_COLUMNS,
        rows,
        [],
      ),
    )
    const p99 = (x: ClientResult): number => x.latency.p99
    const p999 = (x: ClientResult): number => x.latency.p999
    const fmtList = (xs: number[]): string => (xs.length === 0 ? '-' : xs.map((x) => fmtRatio(x)).join(', '))
    const spread = (mode: ServerMode): string => {
      const xs = p99sOf(r, mode)
      return xs.length < 2 ? '-' : fmtRatio(ratio(Math.max(...xs), Math.min(...xs)))
    }
    if (g.feedWritesPerSec > 0) {
      const quiet = r.rounds.filter((x) => x.mode === 'lru-cache' && x.server !== undefined && x.server.gc.major === 0).map((x) => x.round)
      if (quiet.length > 0) out.push(`note: lru-cache ran no major GC in round(s) ${quiet.join(', ')} of this regime: those rounds do not show the pause shardcache removes (a longer window, --full, makes one likelier)`)
    }
    out.push(
      `per round, shardcache p99 over lru-cache's: ${fmtList(roundRatios(r, 'shardcache', 'lru-cache', p99))}; p99.9: ${fmtList(roundRatios(r, 'shardcache', 'lru-cache', p999))}; ` +
        `near cache p99 over plain shardcache's: ${fmtList(roundRatios(r, 'shardcache + near', 'shardcache', p99))}; ` +
        `spread of each mode's p99 over its rounds (max/min): ${SERVER_MODES.map((m) => `${m} ${spread(m)}`).join(', ')}`,
    )
  }
  out.push(
    '',
    'How to read: latencies are the client\'s, from each request\'s scheduled send time to its response (a stalled server delays every request behind it); lower is better. ' +
      '"loop delay": the server thread\'s event-loop delay; "busiest 100 ms": its event-loop utilization in its busiest 100 ms (V8 marks the old generation in steps on that thread before a major GC\'s final pause: the steps show here, not in the GC pause times); GC: the server thread\'s pauses in the window (major = mark-compact); ' +
      'CPU: the window\'s CPU time over its length, of the serving thread and of the shard threads (Linux; 100% = one core); ' +
      '"write RTT": a set\'s round trip to its shard, 1 write in 16 timed; "reads served at once": without waiting for a shard (a direct read from shared memory or a near hit; always, for lru-cache). Each mode runs in a fresh server process per round, rounds in rotated order.',
    `section wall time (children included): ${(s.wallMs / 1000).toFixed(1)} s`,
  )
  return out.join('\n')
}
