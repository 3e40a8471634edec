/**
 * `shardcache status|metrics|events --url URL`: the clients of a running
 * cache's `serveAdmin()` endpoint (src/ops/admin_server.ts).
 *
 * - `status [--watch [SECONDS]] [--json]`: shards, regions, memory, hit rates,
 *   tiers, the bus, backups and firing alerts, as tables; `--watch` redraws
 *   them in place every SECONDS (default 2) until interrupted (on a terminal;
 *   piped, each refresh is printed after the last);
 * - `metrics`: the Prometheus text;
 * - `events [--events set,delete,...]`: one line per event, as they happen,
 *   until interrupted.
 *
 * The token comes from `--token` or the `SHARDCACHE_TOKEN` environment
 * variable (which keeps it out of the process list). Requests use Node's
 * fetch. Exit codes as the other commands: 0, 1 when the endpoint cannot be
 * reached or refuses (the reason said), 2 for a usage error.
 */
import { parseArgs } from 'node:util'
import type { AdminStatus } from '../ops/admin_server.js'
import { ADMIN_EVENTS } from '../ops/admin_server.js'
import { formatBytes } from './replay.js'
import { textTable } from './text_table.js'

/** Where a command writes. */
type Write = (s: string) => void

export const ADMIN_COMMANDS = ['status', 'metrics', 'events'] as const
export type AdminCommand = (typeof ADMIN_COMMANDS)[number]

export const ADMIN_USAGE = `usage: shardcache status --url URL [--token T] [--watch [SECONDS]] [--json]
       shardcache metrics --url URL [--token T]
       shardcache events --url URL [--token T] [--events NAME,NAME...]`

export const ADMIN_HELP = `status, metrics, events: a running cache's serveAdmin() endpoint
  --url       the endpoint, like http://127.0.0.1:9464
  --token     its bearer token (default: the SHARDCACHE_TOKEN environment variable)
  --watch     status: redraw every SECONDS (default 2) until interrupted
  --json      status: print the endpoint's JSON
  --events    events: which, comma-separated: ${ADMIN_EVENTS.join(', ')}
              (default all but hit and miss, which send every read to the shards)`

/** Runs one admin command; returns its exit code. `signal` ends --watch and events (tests; the program ends on Ctrl-C). */
export async function adminCommand(command: AdminCommand, args: string[], out: Write, err: Write, signal?: AbortSignal): Promise<number> {
  let values: { url?: string; token?: string; watch?: boolean; json?: boolean; events?: string }
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { url: { type: 'string' }, token: { type: 'string' }, watch: { type: 'boolean' }, json: { type: 'boolean' }, events: { type: 'string' } },
    }))
  } catch (e) {
    return usage(err, command, [(e as Error).message])
  }
  const problems: string[] = []
  // --watch takes an optional number: parseArgs leaves it as a positional.
  let every = 2
  if (values.watch === true && positionals.length > 0) {
    every = Number(positionals.shift())
    if (!(every > 0 && every <= 3600)) problems.push(`--watch takes a number of seconds from 0 to 3600 (got ${JSON.stringify(String(every))})`)
  }
  if (positionals.length > 0) problems.push(`unexpected argument ${JSON.stringify(positionals[0])}`)
  const allowed: Record<AdminCommand, string[]> = { status: ['watch', 'json'], metrics: [], events: ['events'] }
  for (const k of ['watch', 'json', 'events'] as const) if (values[k] !== undefined && !allowed[command].includes(k)) problems.push(`--${k} is not an option of ${command}`)
  let base: URL | undefined
  if (values.url === undefined) problems.push('--url is required: the endpoint serveAdmin() listens on, like http://127.0.0.1:9464')
  else {
    try {
      base = new URL(values.url)
      if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError('not http')
    } catch {
      problems.push(`--url must be an http:// or https:// URL (got ${JSON.stringify(values.url)})`)
    }
  }
  const token = values.token ?? process.env.SHARDCACHE_TOKEN
  if (token === undefined || token === '') problems.push('--token (or the SHARDCACHE_TOKEN environment variable) is required')
  if (problems.length > 0) return usage(err, command, problems)
  const get = (path: string): Promise<Response> => request(new URL(path, base), token!, signal)
  try {
    if (command === 'metrics') out(await (await get('/metrics')).text())
    else if (command === 'events') await tailEvents(get, values.events, out, signal)
    else if (values.watch !== true) out(await statusText(get, values.json === true, base!))
    else await watch(() => statusText(get, values.json === true, base!), every, out, signal)
    return 0
  } catch (e) {
    if (signal?.aborted === true) return 0
    err(`shardcache ${command}: ${(e as Error).message}\n`)
    return 1
  }
}

function usage(err: Write, command: string, problems: readonly string[]): number {
  for (const p of problems) err(`shardcache ${command}: ${p}\n`)
  err(`${ADMIN_USAGE}\n`)
  return 2
}

/** A GET with the token; a failure said for the user (unreachable, refused, an error status). */
async function request(url: URL, token: string, signal: AbortSignal | undefined): Promise<Response> {
  let res: Response
  try {
    res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal })
  } catch (e) {
    if (signal?.aborted === true) throw e
    const cause = (e as { cause?: { code?: string; message?: string } }).cause
    throw new Error(`cannot reach ${url.origin}: ${cause?.message ?? (e as Error).message}${cause?.code !== undefined && !cause.message?.includes(cause.code) ? ` (${cause.code})` : ''}`)
  }
  if (res.status === 401) throw new Error(`${url.origin} refused the token (401): check --token or SHARDCACHE_TOKEN`)
  if (!res.ok) throw new Error(`${url.href} answered ${res.status}: ${(await res.text()).trim()}`)
  return res
}

async function statusText(get: (path: string) => Promise<Response>, json: boolean, base: URL): Promise<string> {
  const res = await get('/status')
  if (json) return await res.text()
  return renderStatus((await res.json()) as AdminStatus, base.origin)
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
const int = (n: number): string => n.toLocaleString('en-US')

function uptime(s: number): string {
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s}s`
}

/** The status as a terminal would show it. */
export function renderStatus(s: AdminStatus, origin: string): string {
  const parts = [
    `shardcache at ${origin} · up ${uptime(s.uptimeSeconds)} · ${s.shards} shard${s.shards === 1 ? '' : 's'}${s.shardsDown.length > 0 ? ` (down: ${s.shardsDown.join(', ')})` : ''}`,
    `${int(s.entries)} entries · ${formatBytes(s.usedBytes)} in use · hit rate ${pct(s.hitRate)} · process RSS ${formatBytes(s.memory.rss)}, heap ${formatBytes(s.memory.heapUsed)}`,
    '',
    textTable(
      ['shard', 'entries', 'memory', 'hit rate', 'evictions'],
      s.byShard.map((b) => [String(b.shard), int(b.entries), formatBytes(b.usedBytes), pct(b.hitRate), int(b.evictions)]),
    ),
    '',
    textTable(
      ['region', 'entries', 'memory', 'budget', 'use', 'hit rate', 'evictions'],
      Object.entries(s.regions).map(([name, r]) => [
        name,
        int(r.entries),
        formatBytes(r.usedBytes),
        r.maxBytes !== null ? formatBytes(r.maxBytes) : r.maxEntries !== null ? `${int(r.maxEntries)} entries` : 'none',
        pct(r.utilization),
        pct(r.hitRate),
        int(r.evictions),
      ]),
    ),
  ]
  const extra: string[] = []
  if (s.tiers !== null && s.tiers !== undefined) {
    // One line per tier below the shards: l2 (Redis, or the first of `tiers`), l3, …
    for (const [level, t] of Object.entries(s.tiers)) {
      if (level === 'l1') continue
      const tier = t as { hits: number; misses: number; breaker: string; name?: string; unsynced: number }
      const unsynced = tier.unsynced > 0 ? `, ${int(tier.unsynced)} unsynced` : ''
      extra.push(`${level.toUpperCase()}${tier.name !== undefined ? ` (${tier.name})` : ''}: ${int(tier.hits)} hits, ${int(tier.misses)} misses, breaker ${tier.breaker}${unsynced}`)
    }
  }
  if (s.bus !== null) extra.push(`bus: ${s.bus.connected ? 'connected' : 'DISCONNECTED'}, ${int(s.bus.published)} published, ${int(s.bus.received)} received`)
  if (s.backup !== null && s.backup !== undefined) {
    const b = s.backup
    extra.push(`backups: ${int(b.written)} written, ${int(b.failed)} failed${b.lastSuccessAt !== undefined ? `, last at ${new Date(b.lastSuccessAt).toISOString()}` : ''}${b.lastError !== undefined ? ` (last error: ${b.lastError})` : ''}`)
  }
  for (const [region, w] of Object.entries(s.writeThrough ?? {})) {
    extra.push(`write-through ${region} (${w.mode}): ${int(w.writes)} writes, ${int(w.deletes)} deletes, ${int(w.failures)} failures${w.mode === 'async' ? `, ${int(w.queued)} queued, ${int(w.dropped)} dropped` : ''}`)
  }
  if (s.maintenance !== null && s.maintenance !== undefined) {
    const m = s.maintenance
    const budgets = Object.entries(m.budgets).map(([r, b]) => ` ${r} ${b.map((n) => formatBytes(n)).join(' / ')}`)
    extra.push(`maintenance: ${int(m.cleanups)} cleanups (${int(m.cleaned)} removed), ${int(m.moves)} budget moves${budgets.length > 0 ? `; budgets per shard:${budgets.join(';')}` : ''}`)
  }
  for (const a of s.alerts as { kind: string; region: string; value: number; threshold: number }[]) {
    extra.push(`ALERT ${a.kind} on ${a.region}: ${a.kind === 'memoryUse' ? pct(a.value) : `${a.value.toFixed(0)}/s`} (threshold ${a.kind === 'memoryUse' ? pct(a.threshold) : `${a.threshold}/s`})`)
  }
  if (extra.length > 0) parts.push('', ...extra)
  return `${parts.join('\n')}\n`
}

/** Redraws `render()` every `seconds` until aborted: in place on a terminal, one after another when piped. */
async function watch(render: () => Promise<string>, seconds: number, out: Write, signal: AbortSignal | undefined): Promise<void> {
  const tty = process.stdout.isTTY === true
  while (signal?.aborted !== true) {
    const text = await render()
    // Cursor home, each line cleared to its end, the rest of the screen below: the old frame is overwritten
    // in place (no scrolling, and no blank flash between frames as clearing the whole screen first gives).
    out(tty ? `\x1b[H${text.replace(/\n/g, '\x1b[K\n')}\x1b[J` : `${text}\n`)
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, seconds * 1000)
      signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(t)
          resolve()
        },
        { once: true },
      )
    })
  }
}

/** Prints each server-sent event as `time name data` until the stream ends or is aborted. */
async function tailEvents(get: (path: string) => Promise<Response>, events: string | undefined, out: Write, signal: AbortSignal | undefined): Promise<void> {
  const res = await get(events === undefined ? '/events' : `/events?events=${encodeURIComponent(events)}`)
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true })
    let end: number
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      let name = 'message'
      const data: string[] = []
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7)
        else if (line.startsWith('data: ')) data.push(line.slice(6))
      }
      if (data.length > 0) out(`${new Date().toISOString()} ${name} ${data.join('\n')}\n`)
    }
    if (signal?.aborted === true) return
  }
}
