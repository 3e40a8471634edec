/**
 * The real-server scenario's load generator (forked by server.ts): an open
 * loop of HTTP requests to the server process over loopback. Requests are
 * sent on a schedule computed from the clock, whatever the responses do, and
 * each one's latency runs from its scheduled time to its response's end, so
 * a stalled server counts against every request it delays (no coordinated
 * omission). Ids are Zipf; one request in `writeEvery` is a write.
 *
 * Why raw sockets and not `node:http`'s client: on these 2-core machines the
 * client shares the cores with the server it measures, and `http.request`
 * took half a core at 4,000 req/s (measured), enough to queue requests for
 * hundreds of milliseconds whatever the server did. Here each request is one
 * pipelined `GET` written to a keep-alive connection (HTTP/1.1, which Node's
 * server answers in order per connection), and a response is found by its
 * `content-length`: the server's own, which always sends one.
 */
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { createHistogram } from 'node:perf_hooks'
import { drawRing, ZipfSampler } from '../src/cli/workload.js'
import { serveChild, sleep } from './child.js'
import type { ClientConfig, ClientResult } from './server_types.js'

/** Connections to the server; requests go round-robin, pipelined on each. */
const CONNECTIONS = 16
/** How long requests still out after the window may take before they count as lost. */
const DRAIN_MS = 10_000

const HEADER_END = Buffer.from('\r\n\r\n')
const CONTENT_LENGTH = 'content-length:'

/**
 * One keep-alive connection: requests written in order, and for each the
 * callback its response calls with the status (0 when the connection died).
 */
class Connection {
  readonly #socket: Socket
  readonly #waiting: ((status: number) => void)[] = []
  #head = 0
  #buf: Buffer = Buffer.alloc(0)
  #failure: Error | undefined

  constructor(socket: Socket) {
    this.#socket = socket
    socket.setNoDelay(true)
    socket.on('data', (d: Buffer) => this.#read(d))
    socket.on('error', (err) => this.#fail(err))
    socket.on('close', () => this.#fail(new Error('connection closed')))
  }

  static open(port: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new Connection(s)))
      s.once('error', reject)
    })
  }

  get pending(): number {
    return this.#waiting.length - this.#head
  }

  get failure(): Error | undefined {
    return this.#failure
  }

  send(path: string, done: (status: number) => void): void {
    if (this.#failure !== undefined) {
      done(0)
      return
    }
    this.#waiting.push(done)
    this.#socket.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`)
  }

  close(): void {
    this.#socket.destroy()
  }

  #read(d: Buffer): void {
    let buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d])
    for (;;) {
      const end = buf.indexOf(HEADER_END)
      if (end < 0) break
      const head = buf.toString('latin1', 0, end)
      const at = head.toLowerCase().indexOf(CONTENT_LENGTH)
      const length = at < 0 ? 0 : parseInt(head.slice(at + CONTENT_LENGTH.length), 10)
      const total = end + HEADER_END.length + length
      if (buf.length < total) break
      const status = parseInt(head.slice(9, 12), 10)
      buf = buf.subarray(total)
      const done = this.#waiting[this.#head++]!
      if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
        this.#waiting.splice(0, this.#head)
        this.#head = 0
      }
      done(status)
    }
    this.#buf = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf)
  }

  #fail(err: Error): void {
    if (this.#failure !== undefined) return
    this.#failure = err
    const waiting = this.#waiting.splice(this.#head)
    this.#head = 0
    this.#waiting.length = 0
    for (const done of waiting) done(0)
  }
}

async function run(cfg: ClientConfig): Promise<ClientResult> {
  const { regime } = cfg
  const conns = await Promise.all(Array.from({ length: CONNECTIONS }, () => Connection.open(cfg.port)))
  const ring = drawRing(new ZipfSampler(regime.entries, regime.zipfS, cfg.seed), 1 << 20, cfg.seed + 1)
  const mask = ring.length - 1
  const hist = createHistogram()
  let sent = 0
  let completed = 0
  let errors = 0
  let inFlight = 0
  let maxInFlight = 0
  let firstError: Error | undefined
  const msPer = 1000 / regime.requestsPerSec
  const start = performance.now()
  const measureFrom = start + regime.warmupMs
  const end = measureFrom + regime.durationMs

  const issue = (seq: number): void => {
    const intended = start + seq * msPer
    const counted = intended >= measureFrom
    const id = ring[seq & mask]!
    const path = seq % regime.writeEvery === regime.writeEvery - 1 ? `/w/${id}` : `/u/${id}`
    if (counted) sent++
    inFlight++
    if (inFlight > maxInFlight) maxInFlight = inFlight
    conns[seq % CONNECTIONS]!.send(path, (status) => {
      inFlight--
      if (!counted) return
      if (status !== 200) {
        errors++
        firstError ??= new Error(`${path}: ${status === 0 ? 'connection lost' : `HTTP ${status}`}`)
        return
      }
      completed++
      hist.record(Math.max(1, Math.round((performance.now() - intended) * 1e6)))
    })
  }

  let seq = 0
  let windowOpen = false
  let cpu0 = process.cpuUsage()
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (!windowOpen && performance.now() >= measureFrom) {
        // The server's own window (event-loop delay, GC, CPU) starts now too.
        windowOpen = true
        cpu0 = process.cpuUsage()
        conns[0]!.send('/_measure', () => {})
      }
      const now = Math.min(performance.now(), end)
      const due = Math.floor((now - start) / msPer)
      while (seq < due) issue(seq++)
      if (now >= end) {
        clearInterval(timer)
        resolve()
      }
    }, 1)
  })
  const cpu = process.cpuUsage(cpu0)
  const drainUntil = performance.now() + DRAIN_MS
  while (inFlight > 0 && performance.now() < drainUntil) await sleep(5)
  for (const c of conns) c.close()
  if (completed === 0) throw new Error(`no request completed${firstError === undefined ? '' : `: ${firstError.message}`}`)
  return {
    latency: { p50: hist.percentile(50) / 1e6, p99: hist.percentile(99) / 1e6, p999: hist.percentile(99.9) / 1e6, max: hist.max / 1e6 },
    sent,
    completed,
    errors: errors + inFlight,
    sentPerSec: sent / (regime.durationMs / 1000),
    maxInFlight,
    cpuShare: (cpu.user + cpu.system) / 1000 / regime.durationMs,
  }
}

serveChild(run)
