/**
 * The invalidation bus: keeps the caches of many processes coherent through
 * Redis pub/sub (ioredis). Every local write is published; every other
 * instance applies it to its own shards. The wire format is in
 * ./bus_message.ts. This file holds the subscription and its state
 * (./bus_link.ts): connecting, subscribing, noticing a loss, the heartbeat,
 * and the cluster's subscriber; what is sent is ./bus_outbox.ts's, what is
 * received and replayed ./bus_inbox.ts's, the connections' options
 * ./bus_connections.ts's.
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
 * With catchUp 'stream' the last two replay the stream instead, and flush
 * only when it does not reach back far enough.
 *
 * On a Redis Cluster the bus uses sharded pub/sub (SPUBLISH / SSUBSCRIBE,
 * Redis 7+): the channel lives in one slot, so its messages stay on the shard
 * that owns it instead of being broadcast over the cluster bus to every node.
 * The publisher is an ioredis Cluster (it follows MOVED and failovers); the
 * subscriber is a plain connection to the master of the channel's slot, which
 * the bus resolves again from the cluster's slot map after every loss (a
 * failover moves the slot to the promoted replica, whose address differs), so
 * that each new subscription is a moment the bus knows and flushes at, as on a
 * single server. The catch-up stream's key carries the channel's hash tag
 * (`{channel}:stream`), so that the script appending to it and publishing runs
 * on one shard.
 */
import { Redis } from 'ioredis'
import type { Cluster } from 'ioredis'
import { newOrigin } from './bus_message.js'
import type { BusOp } from './bus_message.js'
import { BusConnectError } from '../errors.js'
import type { CacheError } from '../errors.js'
import { slotOf } from './cluster_slot.js'
import { cannotConnect, checkPermissionsApart, hangUp, moreTelling, refusal, whereOf } from './redis_access.js'
import type { Probe, RefusalContext } from './redis_access.js'
import { BusLink } from './bus_link.js'
import { BusInbox } from './bus_inbox.js'
import { BusOutbox } from './bus_outbox.js'
import { backoffMs, clusterConnection, connection, subscriberOptions } from './bus_connections.js'
import { resetCounters, sleep, zeroCounters } from './bus_types.js'
import type { BusHost, BusPublisher, BusStats, FlushReason, ResolvedBus } from './bus_types.js'

export type { BusStatus } from './bus_link.js'
export type { BusHost, BusPublisher, BusRedis, BusStats, ClusterNodesConfig, FlushEvent, FlushReason, InvalidationEvent, ResolvedBus } from './bus_types.js'

/** Deletes a lease only if it still holds our token (UNLINK, which the L2 tier needs anyway, rather than one more command in the ACL rules). */
const UNLOCK_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) else return 0 end`

const REFUSAL: RefusalContext = { what: 'the bus', option: 'options.bus' }

/** How long close() waits for in-flight publishes and a polite QUIT before it cuts the sockets. */
const CLOSE_GRACE_MS = 1000

export class Bus implements BusPublisher {
  readonly origin = newOrigin()
  /** The origin's first 8 hex digits: in the connections' names (CLIENT LIST), to tell instances apart. */
  readonly originId = this.origin.toString('hex').slice(0, 8)
  readonly #opts: ResolvedBus
  readonly #pub: Redis | Cluster
  /** The subscriber; on a cluster replaced after every loss (undefined until the cluster is first ready). */
  #sub: Redis | undefined
  /** Cluster only: the channel's slot, the pending reconnection of the subscriber, and its attempts in a row. */
  readonly #slot: number
  #subTimer: NodeJS.Timeout | undefined
  #subAttempts = 0
  #opening = false

  /** The status of the subscription, and the connections' last error. */
  readonly #link = new BusLink(this.originId)
  readonly #c = zeroCounters()
  readonly #out: BusOutbox
  readonly #in: BusInbox

  /** Bumped on every loss, so late replies of an older connection are ignored. */
  #linkGen = 0
  #pingOutstanding = false
  #missed = 0
  readonly #heartbeat: NodeJS.Timeout
  #onSubscribed: (() => void) | undefined
  /** Until start() returns: a refusal (credentials, certificate, permission) then fails createCache at once. */
  #starting = true
  #onRefused: ((err: CacheError) => void) | undefined

  private constructor(opts: ResolvedBus, host: BusHost) {
    this.#opts = opts
    this.#slot = opts.cluster ? slotOf(opts.channel) : -1
    this.#pub = opts.cluster ? clusterConnection(opts, `pub-${this.originId}`) : connection(opts, `pub-${this.originId}`)
    // Without a listener ioredis prints every connection error; the bus reports them through stats and E_BUS_CONNECT.
    this.#pub.on('error', (err: Error) => {
      this.#link.lastError = moreTelling(this.#link.lastError, err)
      if (this.#starting) this.#refused(err)
    })
    if (opts.cluster) {
      // A Cluster reports its nodes' connection errors (WRONGPASS, a certificate) as 'node
      // error'; its own 'error' only says that the slots could not be refreshed.
      this.#pub.on('node error', (err: Error) => {
        this.#link.lastError = moreTelling(this.#link.lastError, err)
        if (this.#starting) this.#refused(err)
      })
    }
    this.#out = new BusOutbox(opts, this.origin, this.#pub, this.#link, this.#c)
    this.#in = new BusInbox(opts, this.origin, host, this.#pub, this.#link, this.#c)
    this.#pub.on('ready', () => {
      if (opts.cluster && this.#sub === undefined) void this.#openClusterSub()
      this.#out.pump()
    })
    if (!opts.cluster) this.#wireSub(connection(opts, `sub-${this.originId}`))
    this.#heartbeat = setInterval(() => this.#beat(), opts.heartbeatMs)
    this.#heartbeat.unref()
  }

  /**
   * Connects, subscribes and checks the ACL permissions the bus will use,
   * waiting for the first connection attempt (at most `connectTimeoutMs`).
   * Rejects with RedisAuthError, RedisTlsError or RedisPermissionError when
   * Redis refuses the credentials, the certificate or a permission: no retry
   * fixes those, whatever `required` says. Otherwise, with `required`, rejects
   * with {@link BusConnectError} when there is no subscription within
   * `connectTimeoutMs` or the first attempt fails; without, resolves then and
   * keeps trying in the background.
   */
  static async start(opts: ResolvedBus, host: BusHost): Promise<Bus> {
    const bus = new Bus(opts, host)
    try {
      await bus.#firstConnect()
    } catch (err) {
      await bus.close()
      throw err
    } finally {
      bus.#starting = false
    }
    return bus
  }

  async #firstConnect(): Promise<void> {
    const opts = this.#opts
    // On a cluster the subscriber is opened once the publisher knows the slots (its 'ready'):
    // 'up' still means subscribed, to the channel slot's master.
    const connecting = opts.cluster ? this.#pub.connect() : Promise.all([this.#pub.connect(), this.#sub!.connect()])
    let timer: NodeJS.Timeout | undefined
    let outcome: 'up' | 'down' | 'timeout'
    let failed: unknown
    try {
      outcome = await Promise.race([
        connecting.then(
          () => new Promise<'up'>((resolve) => (this.#link.subscribed ? resolve('up') : (this.#onSubscribed = () => resolve('up')))),
          (err: unknown) => {
            failed = err
            return 'down' as const
          },
        ),
        // A refusal is reported (by an 'error' event) before the connection closes.
        new Promise<never>((_, reject) => (this.#onRefused = reject)),
        new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), opts.connectTimeoutMs)
        }),
      ])
    } finally {
      clearTimeout(timer)
      this.#onRefused = undefined
      this.#onSubscribed = undefined
    }
    if (outcome === 'up') {
      // On a cluster the check runs on a duplicate of the subscriber, a plain connection to the
      // master of the channel's slot: the channel and the stream key are both in that slot, so
      // every probe is served there (a MULTI cannot span nodes through an ioredis Cluster).
      const on = opts.cluster ? this.#sub : (this.#pub as Redis)
      if (on === undefined) return
      const denied = await checkPermissionsApart(on, this.#probes(), REFUSAL, `shardcache-bus-check-${this.originId}`, opts.connectTimeoutMs)
      if (denied !== undefined) throw denied
      return
    }
    connecting.catch(() => {}) // retried by ioredis; the bus runs degraded meanwhile
    // Either connection's promise may reject before the other's 'error' event has been
    // heard: a refusal seen by then is still reported as what it is, whatever `required` says.
    const lastError = this.#link.lastError
    const refused = lastError === undefined ? undefined : refusal(lastError, REFUSAL)
    if (refused !== undefined) throw refused
    if (!opts.required) return
    // The connection's own error says why (refused, reset, a host not found); the failed connect() only that it closed.
    const cause = lastError ?? failed ?? new Error(`not subscribed within options.bus.connectTimeout (${opts.connectTimeoutMs} ms)`)
    throw new BusConnectError(cannotConnect(REFUSAL, whereOf(this.#pub), cause), { cause })
  }

  /** Fails the start when `err` is a refusal no reconnect fixes. */
  #refused(err: unknown): void {
    const typed = refusal(err, REFUSAL)
    if (typed !== undefined) this.#onRefused?.(typed)
  }

  /**
   * What the bus sends on its publisher connection, as the permission check
   * queues it (the subscription itself was just made; PING is the
   * subscriber's heartbeat, but the user is the same). A lease of
   * lockAcrossInstances without L2 is not checked: without its permissions the
   * loader runs without the lease.
   */
  #probes(): Probe[] {
    const o = this.#opts
    const probes: Probe[] = [{ args: [o.cluster ? 'SPUBLISH' : 'PUBLISH', o.channel, ''], on: `channel ${o.channel}` }, { args: ['PING'] }]
    if (o.catchUp === 'stream') {
      const on = o.streamKey
      probes.push(
        { args: ['EVALSHA', '0000000000000000000000000000000000000000', 1, on, '', o.streamMaxLen, o.channel], on },
        { args: ['EVAL', 'return 0', 1, on, '', o.streamMaxLen, o.channel], on },
        { args: ['XADD', on, 'MAXLEN', '~', o.streamMaxLen, '*', 'm', ''], on },
        { args: ['XRANGE', on, '-', '+', 'COUNT', 1], on },
        { args: ['XREVRANGE', on, '+', '-', 'COUNT', 1], on },
      )
    }
    return probes
  }

  /** Publishes a local op (coalesced with the tick's others). Never blocks, never throws. */
  publish(op: BusOp): void {
    this.#out.publish(op)
  }

  get mode(): 'invalidate' | 'update' {
    return this.#opts.mode
  }

  /** Takes a lease (`SET NX PX` on `<channel>:lock:<name>`): true, false when held elsewhere, undefined when Redis failed. */
  async lock(name: string, token: string, ms: number): Promise<boolean | undefined> {
    try {
      return (await this.#pub.set(`${this.#opts.channel}:lock:${name}`, token, 'PX', Math.max(1, Math.round(ms)), 'NX')) === 'OK'
    } catch {
      return undefined
    }
  }

  /** Releases a lease if it still holds `token`. */
  async unlock(name: string, token: string): Promise<void> {
    try {
      await this.#pub.eval(UNLOCK_LUA, 1, `${this.#opts.channel}:lock:${name}`, token)
    } catch {
      // It expires on its own.
    }
  }

  stats(): BusStats {
    const c = this.#c
    const d = c.dropped
    const h = this.#in.latency
    const ms = (ns: number): number => Math.round(ns / 1e3) / 1e3
    return {
      connected: this.#link.connected,
      channel: this.#opts.channel,
      mode: this.#opts.mode,
      published: c.published,
      received: c.received,
      applied: c.applied,
      dropped: { ...d, total: Object.values(d).reduce((a, b) => a + b, 0) },
      queued: this.#out.queued,
      reconnects: c.reconnects,
      flushes: c.flushes,
      gaps: c.gaps,
      catchUp: { ...c.catchUp },
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
    resetCounters(this.#c)
    this.#in.latency.reset()
  }

  /**
   * Sends what is queued (for up to a second when Redis answers), then
   * unsubscribes and closes both connections. Never hangs on a dead server.
   */
  async close(): Promise<void> {
    if (this.#link.closing) return
    this.#out.packNow()
    this.#link.setStatus('closing', 'close()')
    clearInterval(this.#heartbeat)
    clearTimeout(this.#subTimer)
    const deadline = Date.now() + CLOSE_GRACE_MS
    await this.#out.drain(deadline)
    const conns: (Redis | Cluster)[] = this.#sub === undefined ? [this.#pub] : [this.#sub, this.#pub]
    await Promise.all(
      conns.map(async (c) => {
        if (c.status === 'ready') await Promise.race([c.quit().catch(() => {}), sleep(Math.max(50, deadline - Date.now()))])
        hangUp(c)
      }),
    )
    this.#link.setStatus('closed', 'connections closed')
  }

  // ── subscribing ──────────────────────────────────────────────────────────

  /** Listens to a subscriber connection; events of one replaced since (cluster) are ignored. */
  #wireSub(sub: Redis): void {
    this.#sub = sub
    const current = (): boolean => this.#sub === sub
    sub.on('error', (err: Error) => {
      this.#link.lastError = moreTelling(this.#link.lastError, err)
      // The subscriber meets a refusal as the publisher does, and may meet it first.
      if (this.#starting) this.#refused(err)
    })
    sub.on('ready', () => {
      if (current()) void this.#subscribe()
    })
    sub.on('close', () => {
      if (current()) this.#lost('disconnect', 'connection closed')
    })
    if (!this.#opts.cluster) {
      sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.#in.receive(message))
      return
    }
    sub.on('smessageBuffer', (_channel: Buffer, message: Buffer) => {
      if (current()) this.#in.receive(message)
    })
    // No reconnection of its own (retryStrategy null): the next attempt may be another node.
    sub.on('end', () => {
      if (current()) this.#reopenClusterSubLater()
    })
    // An unsolicited SUNSUBSCRIBE: the slot moved to another node (resharding). Whatever was
    // published meanwhile did not reach us; the new owner is resolved by the next connection.
    sub.on('moved', () => {
      if (!current()) return
      this.#lost('disconnect', "the channel's slot moved")
      sub.disconnect()
    })
  }

  /**
   * Cluster: connects a subscriber to the master that owns the channel's slot
   * now, as the cluster's refreshed slot map says (after a failover, the
   * promoted replica). Retried with a backoff until it subscribes.
   */
  async #openClusterSub(): Promise<void> {
    if (this.#link.closing || this.#opening) return
    this.#opening = true
    try {
      await this.#openClusterSubOnce()
    } finally {
      this.#opening = false
    }
  }

  async #openClusterSubOnce(): Promise<void> {
    const pub = this.#pub as Cluster
    // A refresh answers from the first node that does; bounded, since every node may be down.
    await Promise.race([new Promise<void>((resolve) => pub.refreshSlotsCache(() => resolve())), sleep(this.#opts.connectTimeoutMs)])
    if (this.#link.closing) return
    const key = pub.slots[this.#slot]?.[0]
    const node = key === undefined ? undefined : pub.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === key)
    if (node === undefined) {
      this.#link.lastError = new Error(`no master known for the channel's slot ${this.#slot}`)
      this.#reopenClusterSubLater()
      return
    }
    const sub = new Redis({
      // The node's options carry the cluster's redisOptions (password, TLS, natMap's address).
      ...node.options,
      ...subscriberOptions(this.#opts, `sub-${this.originId}`),
      lazyConnect: true,
      retryStrategy: () => null,
    })
    this.#wireSub(sub)
    sub.connect().catch(() => {
      // 'end' follows a failed connect: it schedules the next attempt.
    })
  }

  #reopenClusterSubLater(): void {
    if (this.#link.closing || this.#subTimer !== undefined) return
    this.#subTimer = setTimeout(() => {
      this.#subTimer = undefined
      void this.#openClusterSub()
    }, backoffMs(this.#subAttempts++)).unref()
  }

  async #subscribe(): Promise<void> {
    const gen = this.#linkGen
    const sub = this.#sub!
    try {
      if (this.#opts.cluster) await sub.ssubscribe(this.#opts.channel)
      else await sub.subscribe(this.#opts.channel)
    } catch (err) {
      this.#link.lastError = err as Error
      if (this.#starting) this.#refused(err) // a NOPERM: the user may not subscribe to the channel
      if (this.#opts.cluster) {
        if (/unknown command/i.test((err as Error).message)) {
          this.#link.lastError = new Error(`sharded pub/sub (SSUBSCRIBE), which the bus uses on a cluster, needs Redis 7 or later: ${(err as Error).message}`)
        }
        // MOVED (the slot left this node) or CLUSTERDOWN: another connection, to the slot's master then.
        if (sub === this.#sub) sub.disconnect()
      }
      return // the connection failed again; 'ready' comes back with the next one
    }
    if (gen !== this.#linkGen || this.#link.closing || sub !== this.#sub) return
    this.#subAttempts = 0
    this.#pingOutstanding = false
    this.#missed = 0
    const stream = this.#opts.catchUp === 'stream'
    // 'reconnecting': a subscription existed before, and this one follows its loss.
    const again = this.#link.status === 'reconnecting'
    // The first subscription made while createCache waits protects everything from the start.
    const missed = again || !this.#starting
    // Subscribed; replaying first when the stream may hold what was missed (or a replay runs still).
    const next = (missed && stream) || this.#in.replaying ? 'catching-up' : 'ready'
    this.#link.setStatus(next, `${again ? 'resubscribed' : 'subscribed'} to '${this.#opts.channel}'`)
    if (missed) {
      // Whatever peers published while we were not subscribed is lost (or in the stream).
      if (again) this.#c.reconnects++
      if (stream) void this.#in.catchUp('reconnect')
      else this.#in.flush('reconnect')
      // What queued up while down waits one more heartbeat (see holdFor).
      this.#out.holdFor(this.#opts.heartbeatMs)
    }
    if (!again && stream) await this.#in.startStreamPos()
    this.#out.pump()
    this.#onSubscribed?.()
    this.#onSubscribed = undefined
  }

  /** The subscription is gone (`why`, for the log): until the next one, what peers publish is lost to us. */
  #lost(reason: FlushReason, why: string): void {
    this.#linkGen++
    this.#pingOutstanding = false
    if (!this.#link.subscribed) return // not yet, again, or closing
    this.#link.setStatus('reconnecting', why)
    // With a stream, what is missed meanwhile is replayed on resubscribing.
    if (this.#opts.catchUp !== 'stream') this.#in.flush(reason)
  }

  /** Pings on the subscriber connection; two intervals without an answer mean the link is dead, whatever TCP says. */
  #beat(): void {
    if (!this.#link.subscribed) return
    if (this.#pingOutstanding) {
      if (++this.#missed >= 2) {
        this.#lost('heartbeat', 'two heartbeats unanswered')
        // Destroyed, not ended: a FIN to a dead peer can wait minutes for an answer
        // (ioredis's disconnect() ends it). ioredis sees the close and reconnects, and the
        // next subscription flushes again.
        const sub = this.#sub!
        const stream = sub.stream as { destroy?: () => void } | undefined
        if (stream?.destroy !== undefined) stream.destroy()
        else sub.disconnect(!this.#opts.cluster)
      }
      return
    }
    const gen = this.#linkGen
    const t0 = performance.now()
    this.#pingOutstanding = true
    this.#sub!.ping().then(
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
}
