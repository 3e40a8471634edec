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
import { Cluster, Redis } from 'ioredis'
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis'
import { createHistogram } from 'node:perf_hooks'
import type { RecordableHistogram } from 'node:perf_hooks'
import type { ConnectionOptions } from 'node:tls'
import { BusMessageError, BusOpType, HEADER_BYTES, ORIGIN_OFFSET, decodeMessage, encodeMessage, isFresh, newOrigin, packOps, stampAndSign } from './bus_message.js'
import type { BusOp, DropReason } from './bus_message.js'
import { BusConnectError } from '../errors.js'
import type { CacheError } from '../errors.js'
import { isClusterClient, isClusterNodes, isRedisClient } from './redis_access.js'
import { slotOf } from './cluster_slot.js'
import { LEAST_PRIVILEGE, cannotConnect, checkPermissionsApart, hangUp, moreTelling, refusal, whereOf, withTls } from './redis_access.js'
import type { Probe, RefusalContext } from './redis_access.js'

/**
 * A Redis Cluster by its startup nodes (what a config file can hold): the
 * nodes as ioredis takes them (`'127.0.0.1:7000'`, `{ host, port }`), and
 * ioredis Cluster options (`redisOptions` for every node's connection).
 */
export interface ClusterNodesConfig {
  cluster: ClusterNode[]
  options?: ClusterOptions
}

/**
 * Where the bus connects: a URL, ioredis options, an ioredis client, or a
 * Redis Cluster (an ioredis `Cluster`, or {@link ClusterNodesConfig}). A client
 * is duplicated, never used or closed by the bus.
 */
export type BusRedis = string | RedisOptions | Redis | Cluster | ClusterNodesConfig

/** The bus options after validation (see `BusOptions` in ./options.ts for their meaning). */
export interface ResolvedBus {
  redis: BusRedis
  /** Merged over the connection's own TLS options (never with a Cluster: options.ts refuses it). */
  tls: ConnectionOptions | undefined
  /** Whether `redis` is a Redis Cluster: sharded pub/sub, hash-tagged stream key. */
  cluster: boolean
  channel: string
  secret: Buffer | undefined
  /** Signed messages further than this from our clock are dropped as stale. */
  maxMessageAgeMs: number
  mode: 'invalidate' | 'update'
  maxMessageBytes: number
  heartbeatMs: number
  maxQueue: number
  required: boolean
  connectTimeoutMs: number
  /** 'stream': every message is also appended to a Redis Stream, replayed after a gap or a reconnect. */
  catchUp: 'flush' | 'stream'
  /** The stream's key (catchUp 'stream'); on a cluster in the channel's slot. */
  streamKey: string
  /** Entries the stream keeps (approximately: XADD MAXLEN ~). */
  streamMaxLen: number
}

/** Why the bus flushed the local cache. */
export type FlushReason = 'disconnect' | 'heartbeat' | 'gap' | 'reconnect'

/** What `cache.on('invalidation', listener)` receives: one op of a peer, applied here. */
export interface InvalidationEvent {
  /** Hex id of the instance that published it. */
  origin: string
  region: string
  type: 'delete' | 'update' | 'pattern' | 'clear' | 'tag'
  /** For `delete` and `update`. */
  keys?: string[]
  /** For `pattern`. */
  pattern?: string
  /** For `tag`: the tag passed to invalidateTag. */
  tag?: string
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
  /** getOrCompute's lockAcrossInstances without an L2 tier: a lease on the bus's Redis (owner only). */
  lock?(name: string, token: string, ms: number): Promise<boolean | undefined>
  unlock?(name: string, token: string): Promise<void>
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
  /** Sequence gaps seen (each flushed, or replayed from the stream). */
  gaps: number
  /**
   * With `catchUp: 'stream'`: replays after a gap or a reconnect (`runs`),
   * the messages they applied, and those that fell back to a flush because
   * the stream no longer reached back to the last message seen.
   */
  catchUp: { runs: number; messages: number; fallbacks: number }
  /** Round trip of the last answered heartbeat, in ms; null before the first. */
  lastHeartbeatMs: number | null
  /** From a publisher's send time to this instance handing the message's ops to its shards, over live messages received. */
  latency: { count: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null }
}

/** Origins remembered for gap and replay checks; the oldest are forgotten beyond this. */
const MAX_ORIGINS = 10_000
/** Publishes in flight at once. */
const MAX_INFLIGHT = 256
/** A message whose send failed this many times is dropped (and counted). */
const MAX_SEND_TRIES = 3
/** After a failed publish, the wait before sending again (unless the connection comes back first). */
const RETRY_MS = 100
/** Stream entries read per XRANGE during a replay. */
const REPLAY_PAGE = 1000
/** A Redis stream id: milliseconds-sequence. */
const STREAM_ID = /^\d+-\d+$/

/**
 * catchUp 'stream': appends the message to the stream and publishes it with
 * its new stream id after it (then the id's length in one byte), atomically,
 * so that a receiver knows where in the stream each live message is. The
 * channel is an argument, not a key: declared as a key it would need a key
 * permission in Redis ACLs (`~<channel>`) besides its channel permission.
 *
 * On a cluster (SPUBLISH) the argument is enough too: the script runs on the
 * node of its one key, the stream's, and Redis checks every command a script
 * runs against the script's slot, shard channels included (an SPUBLISH to
 * another slot fails with "Script attempted to access keys that do not hash
 * to the same slot"). The stream key is `{channel}:stream` (or the channel's
 * own hash tag + `:stream`, see keyInSlotOf), so its slot is the channel's by
 * construction, and test/redis/redis_cluster.test.ts publishes through it.
 */
const streamPublishLua = (publish: 'PUBLISH' | 'SPUBLISH'): string => `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
redis.call('${publish}', ARGV[3], ARGV[1] .. id .. string.char(#id))
return id`

/** The subscriber's reconnection backoff, as ioredis's retryStrategy gives it on a single server. */
const backoffMs = (attempt: number): number => Math.min(50 * 2 ** Math.min(attempt, 10), 1000)

/** Deletes a lease only if it still holds our token (UNLINK, which the L2 tier needs anyway, rather than one more command in the ACL rules). */
const UNLOCK_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) else return 0 end`

interface StreamPublisher {
  shardcacheStreamPublish(key: string, message: Buffer, maxLen: number, channel: string): Promise<unknown>
}

const REFUSAL: RefusalContext = { what: 'the bus', option: 'options.bus' }

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
  /** The origin's first 8 hex digits: in the connections' names (CLIENT LIST), to tell instances apart. */
  readonly originId = this.origin.toString('hex').slice(0, 8)
  readonly #opts: ResolvedBus
  readonly #host: BusHost
  readonly #pub: Redis | Cluster
  /** The subscriber; on a cluster replaced after every loss (undefined until the cluster is first ready). */
  #sub: Redis | undefined
  /** Cluster only: the channel's slot, the pending reconnection of the subscriber, and its attempts in a row. */
  readonly #slot: number
  #subTimer: NodeJS.Timeout | undefined
  #subAttempts = 0
  #opening = false

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
  /** Until start() returns: a refusal (credentials, certificate, permission) then fails createCache at once. */
  #starting = true
  #onRefused: ((err: CacheError) => void) | undefined

  readonly #lastSeq = new Map<string, number>()
  /** Stream id of the last message handled (catchUp 'stream'); undefined: unknown, so a replay cannot start. */
  #streamPos: string | undefined
  #catchingUp = false
  /** A reason to replay again once the running replay is done. */
  #catchUpAgain: FlushReason | undefined
  /** Live messages that came during a replay, handled after it. */
  #held: Buffer[] = []
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
      catchUp: { runs: 0, messages: 0, fallbacks: 0 },
      lastHeartbeatMs: null as number | null,
      dropped: { malformed: 0, version: 0, oversize: 0, unsigned: 0, badSignature: 0, replayed: 0, stale: 0, queueFull: 0, sendFailed: 0 },
    }
  }

  private constructor(opts: ResolvedBus, host: BusHost) {
    this.#opts = opts
    this.#host = host
    this.#slot = opts.cluster ? slotOf(opts.channel) : -1
    this.#pub = opts.cluster ? clusterConnection(opts, `pub-${this.originId}`) : connection(opts, `pub-${this.originId}`)
    // Without a listener ioredis prints every connection error; the bus reports them through stats and E_BUS_CONNECT.
    this.#pub.on('error', (err: Error) => {
      this.#lastError = moreTelling(this.#lastError, err)
      if (this.#starting) this.#refused(err)
    })
    if (opts.cluster) {
      // A Cluster reports its nodes' connection errors (WRONGPASS, a certificate) as 'node
      // error'; its own 'error' only says that the slots could not be refreshed.
      this.#pub.on('node error', (err: Error) => {
        this.#lastError = moreTelling(this.#lastError, err)
        if (this.#starting) this.#refused(err)
      })
    }
    if (opts.catchUp === 'stream') {
      this.#pub.defineCommand('shardcacheStreamPublish', { numberOfKeys: 1, lua: streamPublishLua(opts.cluster ? 'SPUBLISH' : 'PUBLISH') })
    }
    this.#pub.on('ready', () => {
      if (opts.cluster && this.#sub === undefined) void this.#openClusterSub()
      this.#pump()
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
          () => new Promise<'up'>((resolve) => (this.#subscribed ? resolve('up') : (this.#onSubscribed = () => resolve('up')))),
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
    const refused = this.#lastError === undefined ? undefined : refusal(this.#lastError, REFUSAL)
    if (refused !== undefined) throw refused
    if (!opts.required) return
    // The connection's own error says why (refused, reset, a host not found); the failed connect() only that it closed.
    const cause = this.#lastError ?? failed ?? new Error(`not subscribed within options.bus.connectTimeout (${opts.connectTimeoutMs} ms)`)
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
    clearTimeout(this.#subTimer)
    const deadline = Date.now() + CLOSE_GRACE_MS
    if (this.#pub.status === 'ready') {
      this.#pump()
      while ((this.#inflight > 0 || this.#queue.length > 0) && this.#pub.status === 'ready' && Date.now() < deadline) {
        await Promise.race([new Promise<void>((resolve) => (this.#idle = resolve)), sleep(deadline - Date.now())])
      }
    }
    const conns: (Redis | Cluster)[] = this.#sub === undefined ? [this.#pub] : [this.#sub, this.#pub]
    await Promise.all(
      conns.map(async (c) => {
        if (c.status === 'ready') await Promise.race([c.quit().catch(() => {}), sleep(Math.max(50, deadline - Date.now()))])
        hangUp(c)
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
      this.#queue.push({ seq, buf: encodeMessage(this.origin, seq, body.ops, body.bytes), tries: 0 })
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
      const sent =
        this.#opts.catchUp === 'stream'
          ? (pub as unknown as StreamPublisher).shardcacheStreamPublish(this.#opts.streamKey, bytes, this.#opts.streamMaxLen, this.#opts.channel)
          : this.#opts.cluster
            ? pub.spublish(this.#opts.channel, bytes)
            : pub.publish(this.#opts.channel, bytes)
      sent.then(
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

  /** Listens to a subscriber connection; events of one replaced since (cluster) are ignored. */
  #wireSub(sub: Redis): void {
    this.#sub = sub
    const current = (): boolean => this.#sub === sub
    sub.on('error', (err: Error) => {
      this.#lastError = moreTelling(this.#lastError, err)
      // The subscriber meets a refusal as the publisher does, and may meet it first.
      if (this.#starting) this.#refused(err)
    })
    sub.on('ready', () => {
      if (current()) void this.#subscribe()
    })
    sub.on('close', () => {
      if (current()) this.#lost('disconnect')
    })
    if (!this.#opts.cluster) {
      sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.#receive(message))
      return
    }
    sub.on('smessageBuffer', (_channel: Buffer, message: Buffer) => {
      if (current()) this.#receive(message)
    })
    // No reconnection of its own (retryStrategy null): the next attempt may be another node.
    sub.on('end', () => {
      if (current()) this.#reopenClusterSubLater()
    })
    // An unsolicited SUNSUBSCRIBE: the slot moved to another node (resharding). Whatever was
    // published meanwhile did not reach us; the new owner is resolved by the next connection.
    sub.on('moved', () => {
      if (!current()) return
      this.#lost('disconnect')
      sub.disconnect()
    })
  }

  /**
   * Cluster: connects a subscriber to the master that owns the channel's slot
   * now, as the cluster's refreshed slot map says (after a failover, the
   * promoted replica). Retried with a backoff until it subscribes.
   */
  async #openClusterSub(): Promise<void> {
    if (this.#closing || this.#opening) return
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
    if (this.#closing) return
    const key = pub.slots[this.#slot]?.[0]
    const node = key === undefined ? undefined : pub.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === key)
    if (node === undefined) {
      this.#lastError = new Error(`no master known for the channel's slot ${this.#slot}`)
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
    if (this.#closing || this.#subTimer !== undefined) return
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
      this.#lastError = err as Error
      if (this.#starting) this.#refused(err) // a NOPERM: the user may not subscribe to the channel
      if (this.#opts.cluster) {
        if (/unknown command/i.test((err as Error).message)) {
          this.#lastError = new Error(`sharded pub/sub (SSUBSCRIBE), which the bus uses on a cluster, needs Redis 7 or later: ${(err as Error).message}`)
        }
        // MOVED (the slot left this node) or CLUSTERDOWN: another connection, to the slot's master then.
        if (sub === this.#sub) sub.disconnect()
      }
      return // the connection failed again; 'ready' comes back with the next one
    }
    if (gen !== this.#linkGen || this.#closing || sub !== this.#sub) return
    this.#subAttempts = 0
    this.#subscribed = true
    this.#pingOutstanding = false
    this.#missed = 0
    // The first subscription made while createCache waits protects everything from the start.
    if (this.#everSubscribed || !this.#starting) {
      // Whatever peers published while we were not subscribed is lost (or in the stream).
      if (this.#everSubscribed) this.#c.reconnects++
      if (this.#opts.catchUp === 'stream') void this.#catchUp('reconnect')
      else this.#flush('reconnect')
      // What queued up while down waits one more heartbeat: peers that lost the same
      // server are reconnecting on the same schedule, and a message sent before they
      // resubscribe is lost to them (they flush on resubscribing, so it costs only the
      // invalidation's event, never coherence).
      this.#sendAfter = performance.now() + this.#opts.heartbeatMs
    }
    if (!this.#everSubscribed && this.#opts.catchUp === 'stream') await this.#startStreamPos()
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
    // With a stream, what is missed meanwhile is replayed on resubscribing.
    if (this.#opts.catchUp !== 'stream') this.#flush(reason)
  }

  /** Where replays start: the stream's newest entry when this instance first subscribed ('0-0': it was empty). */
  async #startStreamPos(): Promise<void> {
    try {
      const last = await this.#pub.xrevrangeBuffer(this.#opts.streamKey, '+', '-', 'COUNT', 1)
      this.#streamPos ??= last.length > 0 ? last[0]![0].toString() : '0-0'
    } catch (err) {
      this.#lastError = err as Error // no position: the first catch-up falls back to a flush
    }
  }

  /**
   * Replays from the stream what came after the last message handled, then
   * the live messages held meanwhile; falls back to a flush when the stream
   * no longer holds that message (trimmed) or cannot be read.
   */
  async #catchUp(reason: FlushReason): Promise<void> {
    if (this.#catchingUp) {
      this.#catchUpAgain = reason
      return
    }
    this.#catchingUp = true
    try {
      for (let r: FlushReason | undefined = reason; r !== undefined; r = this.#catchUpAgain) {
        this.#catchUpAgain = undefined
        this.#c.catchUp.runs++
        let ok = false
        try {
          ok = await this.#replay()
        } catch (err) {
          this.#lastError = err as Error
        }
        if (!ok) {
          this.#c.catchUp.fallbacks++
          this.#flush(r)
        }
        const held = this.#held
        this.#held = []
        // After a flush nothing before these messages matters any more: their gaps are covered.
        for (const raw of held) this.#handle(raw, ok ? 'held' : 'afterFlush')
      }
    } finally {
      this.#catchingUp = false
    }
  }

  /** Handles the stream's entries after #streamPos; false when the stream does not reach back to it. */
  async #replay(): Promise<boolean> {
    let pos = this.#streamPos
    if (pos === undefined || this.#closing) return false
    for (;;) {
      const entries = await this.#pub.xrangeBuffer(this.#opts.streamKey, pos === '0-0' ? '-' : pos, '+', 'COUNT', REPLAY_PAGE)
      let i = 0
      if (pos !== '0-0') {
        // The range starts at the last entry handled: if it is gone, so may be what followed it.
        if (entries.length === 0 || entries[0]![0].toString() !== pos) return false
        i = 1
      }
      for (; i < entries.length; i++) {
        const [id, fields] = entries[i]!
        const m = fields[1]
        if (m !== undefined) this.#handle(m, 'replay', id.toString())
        this.#streamPos = id.toString()
      }
      if (entries.length < REPLAY_PAGE) return true
      pos = this.#streamPos!
    }
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

  #drop(reason: DropReason): void {
    this.#c.dropped[reason]++
  }

  /** A live message from the channel. Never throws: a bad message is counted and dropped. */
  #receive(raw: Buffer): void {
    if (this.#closing) return
    if (this.#catchingUp) {
      this.#held.push(raw)
      return
    }
    this.#handle(raw, 'live')
  }

  /**
   * Decodes, checks and applies one message. `live`: from the channel (in
   * stream mode with its stream id at the end); `held`: live but kept during
   * a replay (`afterFlush`: during a replay that fell back to a flush, so a
   * gap before it is no longer a loss); `replay`: from the stream (with
   * `streamId`), which is read by this instance, so neither old age nor an
   * already-applied copy counts as a drop.
   */
  #handle(raw: Buffer, how: 'live' | 'held' | 'afterFlush' | 'replay', streamId?: string): void {
    let buf = raw
    let id = streamId
    if (how !== 'replay' && this.#opts.catchUp === 'stream') {
      const n = raw.length > 0 ? raw[raw.length - 1]! : 0
      id = n > 0 && n < 48 && raw.length > n ? raw.toString('latin1', raw.length - 1 - n, raw.length - 1) : ''
      if (!STREAM_ID.test(id)) return this.#drop('malformed')
      buf = raw.subarray(0, raw.length - 1 - n)
    }
    if (buf.length > this.#opts.maxMessageBytes) return this.#drop('oversize')
    // Redis sends our own messages back: recognise them by the origin before paying for a decode
    // (in update mode that copies every value). A forgery carrying our origin is ignored, which is safe.
    if (buf.length >= HEADER_BYTES && buf.compare(this.origin, 0, 16, ORIGIN_OFFSET, ORIGIN_OFFSET + 16) === 0) {
      if (id !== undefined) this.#streamPos = id
      return
    }
    let m
    try {
      m = decodeMessage(buf, this.#opts.secret)
    } catch (err) {
      return this.#drop(err instanceof BusMessageError ? err.reason : 'malformed')
    }
    if (how === 'replay') this.#c.catchUp.messages++
    else this.#c.received++
    const now = epochNow()
    if (how === 'live' && this.#opts.secret !== undefined && !isFresh(m.sentAt, now, this.#opts.maxMessageAgeMs)) return this.#drop('stale')
    const origin = m.origin.toString('hex')
    const last = this.#lastSeq.get(origin)
    if (last !== undefined && m.seq <= last) {
      if (how === 'live') this.#drop('replayed')
      return
    }
    if (last !== undefined && m.seq > last + 1 && (how === 'live' || how === 'held')) {
      this.#c.gaps++
      // A held message is handled after a replay or a flush: a gap left then is not in the
      // stream, and replaying again would find the same hole (and loop): flush.
      if (this.#opts.catchUp === 'stream' && how === 'live') {
        // The missing messages are before this one in the stream: the replay applies them, then this one.
        this.#held.push(raw)
        void this.#catchUp('gap')
        return
      }
      this.#flush('gap')
    }
    // Re-inserted so that the Map's order is least recently heard first.
    this.#lastSeq.delete(origin)
    this.#lastSeq.set(origin, m.seq)
    if (this.#lastSeq.size > MAX_ORIGINS) this.#lastSeq.delete(this.#lastSeq.keys().next().value!)
    if (id !== undefined) this.#streamPos = id
    if (how !== 'replay') this.#latency.record(Math.max(1, Math.round((now - m.sentAt) * 1e6)))
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

/** The options the bus relies on, for each of its connections to a server (see {@link connection}). */
function subscriberOptions(opts: ResolvedBus, role: string): RedisOptions {
  return {
    lazyConnect: true,
    // The bus queues and counts what it publishes; a command sent while down fails at once.
    enableOfflineQueue: false,
    // Resubscribing is the bus's job: it must flush between the new subscription and the next message.
    autoResubscribe: false,
    // A publish cut off by a disconnect fails back to the bus, which queues it again in order
    // (ioredis would resend it on its own, unbounded and invisible to maxQueue and stats).
    autoResendUnfulfilledCommands: false,
    // Needed for the line above to hold: without it, ioredis keeps the commands that were in
    // flight when the connection closed aside, and on reconnecting, with resending off, drops
    // them without settling their promises. Each such publish then counted as in flight for
    // good (stats().bus.queued never went back to 0, and after 256 of them over a few
    // outages nothing was published any more). With 0, every close rejects them at once.
    maxRetriesPerRequest: 0,
    connectionName: `shardcache-bus-${role}`,
    retryStrategy: backoffMs,
    connectTimeout: opts.connectTimeoutMs,
    ...LEAST_PRIVILEGE,
  }
}

/** One of the bus's two connections to a single server, with the options it relies on. */
function connection(opts: ResolvedBus, role: string): Redis {
  const own = subscriberOptions(opts, role)
  const r = opts.redis
  if (typeof r === 'string') return new Redis(r, withTls(own, undefined, opts.tls))
  if (isRedisClient(r)) return (r as Redis).duplicate(withTls(own, (r as Redis).options?.tls, opts.tls))
  return new Redis({ ...(r as RedisOptions), ...withTls(own, (r as RedisOptions).tls, opts.tls) })
}

/**
 * The publisher on a cluster: an ioredis Cluster of our own (a Cluster passed
 * in is duplicated, keeping its nodes and options), with the bus's options on
 * every node's connection and no offline queue at the cluster level either.
 */
function clusterConnection(opts: ResolvedBus, role: string): Cluster {
  // The nodes' connecting and reconnecting are the Cluster's business (it gives them no retryStrategy of their own).
  const { lazyConnect: _lazy, retryStrategy: _retry, ...own } = subscriberOptions(opts, role)
  const r = opts.redis
  const base: ClusterOptions = isClusterClient(r) ? (r as Cluster).options : ((r as ClusterNodesConfig).options ?? {})
  const options: ClusterOptions = {
    ...base,
    lazyConnect: true,
    enableOfflineQueue: false,
    clusterRetryStrategy: backoffMs,
    redisOptions: { ...base.redisOptions, ...own },
  }
  if (isClusterClient(r)) return (r as Cluster).duplicate(undefined, options)
  if (isClusterNodes(r)) return new Cluster((r as ClusterNodesConfig).cluster, options)
  throw new Error('internal: a cluster bus without a cluster')
}
