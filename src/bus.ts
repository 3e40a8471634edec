/**
 * The invalidation bus: keeps the caches of many processes coherent through
 * Redis pub/sub (ioredis). Every local write is published; every other
 * instance applies it to its own shards. The wire format is in
 * ./bus_message.ts.
 *
 * Pub/sub is at-most-once, so the bus assumes it lost messages whenever it
 * cannot prove otherwise, and then flushes the local cache (every region):
 * - the subscriber connection closed, or its heartbeat PING went unanswered
 *   for two intervals (a half-open link: a paused server, a dead peer that TCP
 *   has not noticed);
 * - a sequence gap from any origin;
 * - and again once it is subscribed again: invalidations published while the
 *   link was down are gone, so entries cached before the reconnect are
 *   dropped before any later read (the flush's clear ops reach the shards
 *   ahead of every op issued after it).
 *
 * Publishing never waits for Redis: a tick's ops are packed into messages on
 * the next turn of the event loop and queued; the queue is bounded
 * (`maxQueue`, the oldest dropped and counted), and drained whenever the
 * publisher connection is ready. Sequence numbers are assigned at queueing,
 * so a dropped message shows as a gap and its receivers flush.
 *
 * Two connections, because a subscribed connection cannot publish. Both are
 * our own (a client passed in is duplicated), so the bus can set the options
 * it relies on (no offline queue, no automatic resubscribe) and close them.
 */
import { Redis } from 'ioredis'
import type { RedisOptions } from 'ioredis'
import { createHistogram } from 'node:perf_hooks'
import type { RecordableHistogram } from 'node:perf_hooks'
import { BusMessageError, BusOpType, decodeMessage, encodeMessage, newOrigin, packOps, stampAndSign } from './bus_message.js'
import type { BusOp, DropReason } from './bus_message.js'
import { BusConnectError } from './errors.js'
import { isRedisClient } from './options.js'

/** Where the bus connects: a URL, ioredis options, or an ioredis client (duplicated, never used or closed by the bus). */
export type BusRedis = string | RedisOptions | Redis

/** The bus options after validation (see `BusOptions` in ./options.ts for their meaning). */
export interface ResolvedBus {
  redis: BusRedis
  channel: string
  secret: Buffer | undefined
  mode: 'invalidate' | 'update'
  maxMessageBytes: number
  heartbeatMs: number
  maxQueue: number
  required: boolean
  connectTimeoutMs: number
}

/** Why the bus flushed the local cache. */
export type FlushReason = 'disconnect' | 'heartbeat' | 'gap' | 'reconnect'

/** What `cache.on('invalidation', listener)` receives: one op of a peer, applied here. */
export interface InvalidationEvent {
  /** Hex id of the instance that published it. */
  origin: string
  region: string
  type: 'delete' | 'update' | 'pattern' | 'clear'
  /** For `delete` and `update`. */
  keys?: string[]
  /** For `pattern`. */
  pattern?: string
}

/** What `cache.on('flush', listener)` receives: the bus emptied every region because invalidations may have been lost. */
export interface FlushEvent {
  reason: FlushReason
  regions: string[]
}

/** Publishes local writes: the bus on the owner, a relay to it on attached threads. */
export interface BusPublisher {
  readonly mode: 'invalidate' | 'update'
  publish(op: BusOp): void
}

/** What the bus needs from the cache it serves. */
export interface BusHost {
  /** Applies a peer's ops to the local shards without publishing them; resolves how many ops applied. */
  apply(ops: BusOp[], origin: string): Promise<number>
  /** Clears every region locally. Must issue its ops before it returns, so that ops issued later run after it. */
  flush(reason: FlushReason): Promise<void>
}

/** `stats().bus`. Counters since the cache was created (resetStats zeroes them, except the gauges). */
export interface BusStats {
  /** Whether the subscription is live now. */
  connected: boolean
  channel: string
  mode: 'invalidate' | 'update'
  /** Messages sent to Redis. */
  published: number
  /** Messages received from other instances (own messages excluded). */
  received: number
  /** Ops (a batch of keys, a pattern, a clear) applied from received messages. */
  applied: number
  /** Messages dropped, by reason; `queueFull` are our own, dropped before sending. */
  dropped: Record<DropReason | 'queueFull' | 'sendFailed', number> & { total: number }
  /** Messages not yet acknowledged by Redis: waiting in the queue or in flight. */
  queued: number
  /** Times the subscription was re-established after it was lost. */
  reconnects: number
  /** Local flushes because invalidations may have been lost. */
  flushes: number
  /** Sequence gaps seen (each also flushed). */
  gaps: number
  /** Round trip of the last answered heartbeat, in ms; null before the first. */
  lastHeartbeatMs: number | null
  /** From a publisher's send time to applying here, over received messages. */
  latency: { count: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null }
}

/** Signed messages more than this far from our clock are refused: an old message cannot be replayed to a fresh instance. */
export const MAX_CLOCK_SKEW_MS = 30_000
/** Origins remembered for gap and replay checks; the oldest are forgotten beyond this. */
const MAX_ORIGINS = 10_000
/** Publishes in flight at once. */
const MAX_INFLIGHT = 256
/** A message whose send failed this many times is dropped (and counted). */
const MAX_SEND_TRIES = 3
/** After a failed publish, the wait before sending again (unless the connection comes back first). */
const RETRY_MS = 100
/** How long close() waits for in-flight publishes and a polite QUIT before it cuts the sockets. */
const CLOSE_GRACE_MS = 1000

/** Epoch ms with sub-ms precision: the propagation latency is well under a millisecond on loopback. */
const epochNow = (): number => performance.timeOrigin + performance.now()

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms).unref()
  })

interface Outgoing {
  seq: number
  buf: Buffer
  tries: number
}

export class Bus implements BusPublisher {
  readonly origin = newOrigin()
  readonly #opts: ResolvedBus
  readonly #host: BusHost
  readonly #pub: Redis
  readonly #sub: Redis

  #pending: BusOp[] = []
  #packScheduled = false
  #seq = 0
  readonly #queue: Outgoing[] = []
  #inflight = 0
  #idle: (() => void) | undefined
  #retryTimer: NodeJS.Timeout | undefined
  /** performance.now() before which the queue waits after a resubscription (see #subscribe). */
  #sendAfter = 0

  #subscribed = false
  /** Whether a subscription existed before: every later one follows a loss and flushes. */
  #everSubscribed = false
  #closing = false
  /** Bumped on every loss, so late replies of an older connection are ignored. */
  #linkGen = 0
  #pingOutstanding = false
  #missed = 0
  readonly #heartbeat: NodeJS.Timeout
  #lastError: Error | undefined
  #onSubscribed: (() => void) | undefined

  readonly #lastSeq = new Map<string, number>()
  readonly #latency: RecordableHistogram = createHistogram()
  #c = Bus.#zero()

  static #zero() {
    return {
      published: 0,
      received: 0,
      applied: 0,
      reconnects: 0,
      flushes: 0,
      gaps: 0,
      lastHeartbeatMs: null as number | null,
      dropped: { malformed: 0, version: 0, oversize: 0, unsigned: 0, badSignature: 0, replayed: 0, stale: 0, queueFull: 0, sendFailed: 0 },
    }
  }

  private constructor(opts: ResolvedBus, host: BusHost) {
    this.#opts = opts
    this.#host = host
    this.#pub = connection(opts, 'pub')
    this.#sub = connection(opts, 'sub')
    for (const c of [this.#pub, this.#sub]) {
      // Without a listener ioredis prints every connection error; the bus reports them through stats and E_BUS_CONNECT.
      c.on('error', (err: Error) => {
        this.#lastError = err
      })
    }
    this.#pub.on('ready', () => this.#pump())
    this.#sub.on('ready', () => void this.#subscribe())
    this.#sub.on('close', () => this.#lost('disconnect'))
    this.#sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.#receive(message))
    this.#heartbeat = setInterval(() => this.#beat(), opts.heartbeatMs)
    this.#heartbeat.unref()
  }

  /**
   * Connects and subscribes. With `required`, resolves once the subscription
   * is confirmed and rejects with {@link BusConnectError} when it cannot be
   * within `connectTimeoutMs` (or the first connection attempt fails);
   * otherwise resolves at once and keeps trying in the background.
   */
  static async start(opts: ResolvedBus, host: BusHost): Promise<Bus> {
    const bus = new Bus(opts, host)
    const connecting = Promise.all([bus.#pub.connect(), bus.#sub.connect()])
    if (!opts.required) {
      connecting.catch(() => {}) // retried by ioredis; the bus runs degraded meanwhile
      return bus
    }
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        connecting.then(() => new Promise<void>((resolve) => (bus.#subscribed ? resolve() : (bus.#onSubscribed = resolve)))),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(bus.#lastError ?? new Error(`no subscription within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs)
        }),
      ])
    } catch (cause) {
      await bus.close()
      throw new BusConnectError(`cannot connect the bus (options.bus.redis): ${(cause as Error).message}`, { cause })
    } finally {
      clearTimeout(timer)
    }
    return bus
  }

  /** Publishes a local op (coalesced with the tick's others). Never blocks, never throws. */
  publish(op: BusOp): void {
    if (this.#closing) return
    const last = this.#pending[this.#pending.length - 1]
    if (last !== undefined && last.type === op.type && last.region === op.region) {
      if (op.type === BusOpType.DELETE && last.type === BusOpType.DELETE) {
        for (const k of op.keys) last.keys.push(k)
        return
      }
      if (op.type === BusOpType.UPDATE && last.type === BusOpType.UPDATE) {
        for (const e of op.entries) last.entries.push(e)
        return
      }
    }
    this.#pending.push(op)
    if (!this.#packScheduled) {
      this.#packScheduled = true
      // setImmediate, not nextTick: ops issued after awaits in this turn of the loop share the message.
      setImmediate(() => this.#pack())
    }
  }

  get mode(): 'invalidate' | 'update' {
    return this.#opts.mode
  }

  get connected(): boolean {
    return this.#subscribed
  }

  stats(): BusStats {
    const c = this.#c
    const d = c.dropped
    const h = this.#latency
    const ms = (ns: number): number => Math.round(ns / 1e3) / 1e3
    return {
      connected: this.#subscribed,
      channel: this.#opts.channel,
      mode: this.#opts.mode,
      published: c.published,
      received: c.received,
      applied: c.applied,
      dropped: { ...d, total: Object.values(d).reduce((a, b) => a + b, 0) },
      queued: this.#queue.length + this.#inflight + (this.#pending.length > 0 ? 1 : 0),
      reconnects: c.reconnects,
      flushes: c.flushes,
      gaps: c.gaps,
      lastHeartbeatMs: c.lastHeartbeatMs,
      latency: {
        count: h.count,
        p50Ms: h.count === 0 ? null : ms(h.percentile(50)),
        p99Ms: h.count === 0 ? null : ms(h.percentile(99)),
        maxMs: h.count === 0 ? null : ms(h.max),
      },
    }
  }

  resetStats(): void {
    const last = this.#c.lastHeartbeatMs
    this.#c = Bus.#zero()
    this.#c.lastHeartbeatMs = last
    this.#latency.reset()
  }

  /**
   * Sends what is queued (for up to a second when Redis answers), then
   * unsubscribes and closes both connections. Never hangs on a dead server.
   */
  async close(): Promise<void> {
    if (this.#closing) return
    if (this.#packScheduled) this.#pack()
    this.#closing = true
    clearInterval(this.#heartbeat)
    clearTimeout(this.#retryTimer)
    const deadline = Date.now() + CLOSE_GRACE_MS
    if (this.#pub.status === 'ready') {
      this.#pump()
      while ((this.#inflight > 0 || this.#queue.length > 0) && this.#pub.status === 'ready' && Date.now() < deadline) {
        await Promise.race([new Promise<void>((resolve) => (this.#idle = resolve)), sleep(deadline - Date.now())])
      }
    }
    await Promise.all(
      [this.#sub, this.#pub].map(async (c) => {
        if (c.status === 'ready') await Promise.race([c.quit().catch(() => {}), sleep(Math.max(50, deadline - Date.now()))])
        c.disconnect()
      }),
    )
    this.#subscribed = false
  }

  // ── publishing ───────────────────────────────────────────────────────────

  #pack(): void {
    this.#packScheduled = false
    const ops = this.#pending
    if (ops.length === 0) return
    this.#pending = []
    for (const body of packOps(ops, this.#opts.maxMessageBytes)) {
      if (this.#queue.length >= this.#opts.maxQueue) {
        this.#queue.shift()
        this.#c.dropped.queueFull++
      }
      const seq = ++this.#seq
      this.#queue.push({ seq, buf: encodeMessage(this.origin, seq, body), tries: 0 })
    }
    this.#pump()
  }

  /**
   * Sends while the publisher is ready and this instance is subscribed: a
   * message sent while the link is down would mostly reach peers that are
   * down too. Close sends what it can regardless.
   */
  #pump(): void {
    const pub = this.#pub
    if (!this.#closing) {
      if (!this.#subscribed) return // #subscribe pumps
      const wait = this.#sendAfter - performance.now()
      if (wait > 0) {
        // A timer may fire a little early by this clock: the +1 and the re-check keep it from stalling.
        this.#retryTimer ??= setTimeout(() => {
          this.#retryTimer = undefined
          this.#pump()
        }, wait + 1).unref()
        return
      }
    }
    while (pub.status === 'ready' && this.#queue.length > 0 && this.#inflight < MAX_INFLIGHT) {
      const item = this.#queue.shift()!
      const bytes = stampAndSign(item.buf, epochNow(), this.#opts.secret)
      this.#inflight++
      pub.publish(this.#opts.channel, bytes).then(
        () => {
          this.#inflight--
          this.#c.published++
          this.#settled()
          this.#pump()
        },
        (err: Error) => {
          this.#inflight--
          this.#lastError = err
          if (++item.tries < MAX_SEND_TRIES && !this.#closing) this.#requeue(item)
          else this.#c.dropped.sendFailed++
          this.#settled()
          // Not at once: the connection that failed it may still say "ready". The next
          // 'ready' sends it, or this timer if the connection was fine after all.
          this.#retryTimer ??= setTimeout(() => {
            this.#retryTimer = undefined
            this.#pump()
          }, RETRY_MS).unref()
        },
      )
    }
  }

  /** Puts a failed message back in sequence order (failures come back in send order, ahead of the queue). */
  #requeue(item: Outgoing): void {
    const q = this.#queue
    let i = 0
    while (i < q.length && q[i]!.seq < item.seq) i++
    q.splice(i, 0, item)
  }

  #settled(): void {
    if (this.#inflight === 0 && this.#queue.length === 0) {
      this.#idle?.()
      this.#idle = undefined
    }
  }

  // ── subscribing ──────────────────────────────────────────────────────────

  async #subscribe(): Promise<void> {
    const gen = this.#linkGen
    try {
      await this.#sub.subscribe(this.#opts.channel)
    } catch (err) {
      this.#lastError = err as Error
      return // the connection failed again; 'ready' comes back with the next one
    }
    if (gen !== this.#linkGen || this.#closing) return
    this.#subscribed = true
    this.#pingOutstanding = false
    this.#missed = 0
    if (this.#everSubscribed || !this.#opts.required) {
      // Whatever peers published while we were not subscribed is lost.
      if (this.#everSubscribed) this.#c.reconnects++
      this.#flush('reconnect')
      // What queued up while down waits one more heartbeat: peers that lost the same
      // server are reconnecting on the same schedule, and a message sent before they
      // resubscribe is lost to them (they flush on resubscribing, so it costs only the
      // invalidation's event, never coherence).
      this.#sendAfter = performance.now() + this.#opts.heartbeatMs
    }
    this.#everSubscribed = true
    this.#pump()
    this.#onSubscribed?.()
    this.#onSubscribed = undefined
  }

  #lost(reason: FlushReason): void {
    this.#linkGen++
    this.#pingOutstanding = false
    if (!this.#subscribed || this.#closing) return
    this.#subscribed = false
    this.#flush(reason)
  }

  #flush(reason: FlushReason): void {
    this.#c.flushes++
    this.#host.flush(reason).catch(() => {
      // A flush fails only when the cache is closing or a shard crashed (which emptied it anyway).
    })
  }

  /** Pings on the subscriber connection; two intervals without an answer mean the link is dead, whatever TCP says. */
  #beat(): void {
    if (!this.#subscribed || this.#closing) return
    if (this.#pingOutstanding) {
      if (++this.#missed >= 2) {
        this.#lost('heartbeat')
        // Destroyed, not ended: a FIN to a dead peer can wait minutes for an answer
        // (ioredis's disconnect() ends it). ioredis sees the close and reconnects, and the
        // next subscription flushes again.
        const stream = this.#sub.stream as { destroy?: () => void } | undefined
        if (stream?.destroy !== undefined) stream.destroy()
        else this.#sub.disconnect(true)
      }
      return
    }
    const gen = this.#linkGen
    const t0 = performance.now()
    this.#pingOutstanding = true
    this.#sub.ping().then(
      () => {
        if (gen !== this.#linkGen) return
        this.#pingOutstanding = false
        this.#missed = 0
        this.#c.lastHeartbeatMs = Math.round((performance.now() - t0) * 1000) / 1000
      },
      () => {
        // The connection failed: its 'close' handles it.
      },
    )
  }

  #drop(reason: DropReason): void {
    this.#c.dropped[reason]++
  }

  /** Never throws: a bad message is counted and dropped. */
  #receive(buf: Buffer): void {
    if (this.#closing) return
    if (buf.length > this.#opts.maxMessageBytes) return this.#drop('oversize')
    let m
    try {
      m = decodeMessage(buf, this.#opts.secret)
    } catch (err) {
      return this.#drop(err instanceof BusMessageError ? err.reason : 'malformed')
    }
    if (m.origin.equals(this.origin)) return
    this.#c.received++
    const now = epochNow()
    if (this.#opts.secret !== undefined && Math.abs(now - m.sentAt) > MAX_CLOCK_SKEW_MS) return this.#drop('stale')
    const origin = m.origin.toString('hex')
    const last = this.#lastSeq.get(origin)
    if (last !== undefined && m.seq <= last) return this.#drop('replayed')
    // Re-inserted so that the Map's order is least recently heard first.
    this.#lastSeq.delete(origin)
    this.#lastSeq.set(origin, m.seq)
    if (this.#lastSeq.size > MAX_ORIGINS) this.#lastSeq.delete(this.#lastSeq.keys().next().value!)
    if (last !== undefined && m.seq > last + 1) {
      this.#c.gaps++
      this.#flush('gap')
    }
    this.#latency.record(Math.max(1, Math.round((now - m.sentAt) * 1e6)))
    this.#host.apply(m.ops, origin).then(
      (n) => {
        this.#c.applied += n
      },
      () => {
        // Only a closing cache or a crashed shard (emptied anyway) fails an apply.
      },
    )
  }
}

/** One of the bus's two connections, with the options it relies on. */
function connection(opts: ResolvedBus, role: 'pub' | 'sub'): Redis {
  const own: RedisOptions = {
    lazyConnect: true,
    // The bus queues and counts what it publishes; a command sent while down fails at once.
    enableOfflineQueue: false,
    // Resubscribing is the bus's job: it must flush between the new subscription and the next message.
    autoResubscribe: false,
    // A publish cut off by a disconnect fails back to the bus, which queues it again in order
    // (ioredis would resend it on its own, unbounded and invisible to maxQueue and stats).
    autoResendUnfulfilledCommands: false,
    connectionName: `shardcache-bus-${role}`,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 10), 1000),
    connectTimeout: opts.connectTimeoutMs,
  }
  const r = opts.redis
  if (typeof r === 'string') return new Redis(r, own)
  if (isRedisClient(r)) return r.duplicate(own) as Redis
  return new Redis({ ...(r as RedisOptions), ...own })
}
