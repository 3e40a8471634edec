/**
 * The operator's endpoint of `cache.serveAdmin()`: a small `node:http`
 * server, guarded by a bearer token, with
 *
 * - `GET /metrics`: the Prometheus text of `cache.metrics()`;
 * - `GET /status`: a JSON summary ({@link AdminStatus}): shards, regions,
 *   memory, hit rates, tiers, the bus, backups and firing alerts;
 * - `GET /events`: server-sent events, one per cache event (`event:` its
 *   name, `data:` its JSON), of the names in `?events=` (default: writes,
 *   removals, alerts, backups and the bus's; `hit` and `miss` only when
 *   asked, since listening to them sends every read to the shards).
 *
 * An `/events` client that stops reading has its stream closed once 1 MiB
 * waits for it, so a stuck client cannot grow this process's memory.
 *
 * The `shardcache status|metrics|events --url` commands (src/cli/admin.ts)
 * are its clients. Every request without `Authorization: Bearer <token>` is
 * answered 401, before its path is looked at; the token is compared in
 * constant time. It listens on 127.0.0.1 unless told otherwise.
 */
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { CacheStats } from './stats.js'

/** What the endpoint reads from the cache (the facade implements it). */
export interface AdminSource {
  stats(): Promise<CacheStats>
  metrics(): Promise<string>
  /** Alerts firing now; empty without `alerts`. */
  firing(): unknown[]
  on(event: string, listener: (e: unknown) => void): void
  off(event: string, listener: (e: unknown) => void): void
}

/** The events `/events` can stream, and those it streams when `?events=` is not given. */
export const ADMIN_EVENTS = ['set', 'delete', 'evict', 'expire', 'clear', 'hit', 'miss', 'alert', 'backup', 'invalidation', 'flush'] as const
const DEFAULT_EVENTS = ADMIN_EVENTS.filter((e) => e !== 'hit' && e !== 'miss')
/** Bytes an `/events` stream may have waiting for its client before it is closed (a client that stopped reading). */
const MAX_BUFFERED = 1 << 20
/** A comment line this often keeps idle `/events` streams (and proxies) from timing out. */
const HEARTBEAT_MS = 15_000

/** `GET /status`. */
export interface AdminStatus {
  uptimeSeconds: number
  shards: number
  shardsDown: number[]
  entries: number
  usedBytes: number
  hitRate: number
  /** Per shard, all regions summed. */
  byShard: { shard: number; entries: number; usedBytes: number; hitRate: number; evictions: number }[]
  /** Per region. */
  regions: Record<string, { entries: number; usedBytes: number; maxBytes: number | null; maxEntries: number | null; utilization: number; hitRate: number; evictions: number }>
  /** This process (the owner): RSS and the JS heap, in bytes. */
  memory: { rss: number; heapUsed: number }
  tiers: CacheStats['tiers'] | null
  bus: { connected: boolean; published: number; received: number } | null
  backup: CacheStats['backup'] | null
  /** Each write-through region's figures, when a region has one. */
  writeThrough: CacheStats['writeThrough'] | null
  /** Scheduled maintenance's figures, with `maintenance`. */
  maintenance: CacheStats['maintenance'] | null
  alerts: unknown[]
}

/** What `serveAdmin` resolves: the port it listens on, and how to stop it. */
export interface AdminServer {
  port: number
  /** Stops listening and ends every `/events` stream. */
  close(): Promise<void>
}

function toStatus(s: CacheStats, firing: unknown[]): AdminStatus {
  const regions: AdminStatus['regions'] = {}
  for (const [name, r] of Object.entries(s.byRegion)) {
    regions[name] = { entries: r.entries, usedBytes: r.usedBytes, maxBytes: r.maxBytes, maxEntries: r.maxEntries, utilization: r.utilization, hitRate: r.hitRate, evictions: r.evictions }
  }
  const m = process.memoryUsage()
  return {
    uptimeSeconds: Math.round(process.uptime()),
    shards: s.shards,
    shardsDown: s.shardsDown,
    entries: s.entries,
    usedBytes: s.usedBytes,
    hitRate: s.hitRate,
    byShard: s.byShard.map((b) => ({ shard: b.shard, entries: b.entries, usedBytes: b.usedBytes, hitRate: b.hitRate, evictions: b.evictions })),
    regions,
    memory: { rss: m.rss, heapUsed: m.heapUsed },
    tiers: s.tiers ?? null,
    bus: s.bus === undefined ? null : { connected: s.bus.connected, published: s.bus.published, received: s.bus.received },
    backup: s.backup ?? null,
    writeThrough: s.writeThrough ?? null,
    maintenance: s.maintenance ?? null,
    alerts: firing,
  }
}

/** Starts the endpoint on `host:port` (port 0: any free one). */
export async function startAdminServer(source: AdminSource, opts: { port: number; host: string; token: string }): Promise<AdminServer> {
  const expected = Buffer.from(`Bearer ${opts.token}`)
  const streams = new Set<ServerResponse>()
  const authorized = (req: IncomingMessage): boolean => {
    const given = Buffer.from(req.headers.authorization ?? '')
    return given.length === expected.length && timingSafeEqual(given, expected)
  }
  const send = (res: ServerResponse, code: number, type: string, body: string): void => {
    res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' })
    res.end(body)
  }
  const server = createServer((req, res) => {
    if (!authorized(req)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer', 'content-type': 'text/plain' })
      res.end('401: send Authorization: Bearer <token>\n')
      return
    }
    const url = new URL(req.url ?? '/', 'http://admin')
    if (req.method !== 'GET') return send(res, 405, 'text/plain', `405: ${req.method} is not allowed; use GET\n`)
    const fail = (err: unknown): void => send(res, 503, 'text/plain', `503: ${(err as Error).message}\n`)
    switch (url.pathname) {
      case '/metrics':
        source.metrics().then((text) => send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', text), fail)
        return
      case '/status':
        source.stats().then((s) => send(res, 200, 'application/json', `${JSON.stringify(toStatus(s, source.firing()))}\n`), fail)
        return
      case '/events':
        return streamEvents(source, url, res, streams)
      default:
        send(res, 404, 'text/plain', '404: the paths are /metrics, /status and /events\n')
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  let closing: Promise<void> | undefined
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const res of streams) res.end()
        server.close(() => resolve())
        // Kept-alive connections too: a closed endpoint answers nothing more, on any socket.
        server.closeAllConnections()
      })),
  }
}

/** An error in an event (a failed backup's) as its name, code and message: JSON.stringify gives `{}` for an Error. */
function errorsAsJson(_key: string, v: unknown): unknown {
  return v instanceof Error ? { name: v.name, code: (v as { code?: unknown }).code, message: v.message } : v
}

/** `GET /events`: the chosen events as server-sent events until the client goes (or the endpoint closes). */
function streamEvents(source: AdminSource, url: URL, res: ServerResponse, streams: Set<ServerResponse>): void {
  const asked = url.searchParams.get('events')
  const names = asked === null ? [...DEFAULT_EVENTS] : asked.split(',').filter((n) => n !== '')
  const unknown = names.filter((n) => !(ADMIN_EVENTS as readonly string[]).includes(n))
  if (unknown.length > 0 || names.length === 0) {
    res.writeHead(400, { 'content-type': 'text/plain' })
    res.end(`400: events must be a comma-separated list of ${ADMIN_EVENTS.join(', ')} (got ${JSON.stringify(asked)})\n`)
    return
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
  res.write(`: shardcache events: ${names.join(',')}\n\n`)
  const send = (name: string, e: unknown): void => {
    if (res.writableEnded) return
    // A client that does not read: its stream ends, rather than its events piling up in this process.
    if (res.writableLength > MAX_BUFFERED) {
      res.end(`: events were sent faster than this client read them (over ${MAX_BUFFERED} bytes waiting); stream closed\n\n`)
      return
    }
    res.write(`event: ${name}\ndata: ${JSON.stringify(e, errorsAsJson)}\n\n`)
  }
  const listeners = names.map((name) => [name, (e: unknown) => send(name, e)] as const)
  for (const [name, l] of listeners) source.on(name, l)
  const beat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS)
  beat.unref()
  streams.add(res)
  res.once('close', () => {
    clearInterval(beat)
    streams.delete(res)
    for (const [name, l] of listeners) source.off(name, l)
  })
}
