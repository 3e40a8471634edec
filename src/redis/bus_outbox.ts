/**
 * The bus's sending side: local ops packed into messages, queued, and
 * published in order on the publisher connection. Apart from ./bus.ts because
 * it shares nothing with the subscriber's handling but the status it reads
 * (./bus_link.ts): it sends only while subscribed.
 *
 * Publishing never waits for Redis: a tick's ops are packed into messages on
 * the next turn of the event loop and queued; the queue is bounded
 * (`maxQueue`, the oldest dropped and counted), and drained whenever the
 * publisher connection is ready. Sequence numbers are assigned at queueing,
 * so a dropped message shows as a gap and its receivers flush.
 */
import type { Cluster, Redis } from 'ioredis'
import { BusOpType, encodeMessage, packOps, stampAndSign } from './bus_message.js'
import type { BusOp } from './bus_message.js'
import type { BusLink } from './bus_link.js'
import { epochNow, sleep } from './bus_types.js'
import type { BusCounters, ResolvedBus } from './bus_types.js'

/** Publishes in flight at once. */
const MAX_INFLIGHT = 256
/** A message whose send failed this many times is dropped (and counted). */
const MAX_SEND_TRIES = 3
/** After a failed publish, the wait before sending again (unless the connection comes back first). */
const RETRY_MS = 100

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

interface StreamPublisher {
  shardcacheStreamPublish(key: string, message: Buffer, maxLen: number, channel: string): Promise<unknown>
}

interface Outgoing {
  seq: number
  buf: Buffer
  tries: number
}

export class BusOutbox {
  readonly #opts: ResolvedBus
  readonly #origin: Buffer
  readonly #pub: Redis | Cluster
  readonly #link: BusLink
  readonly #c: BusCounters

  #pending: BusOp[] = []
  #packScheduled = false
  #seq = 0
  readonly #queue: Outgoing[] = []
  #inflight = 0
  #idle: (() => void) | undefined
  #retryTimer: NodeJS.Timeout | undefined
  /** performance.now() before which the queue waits after a resubscription (see {@link BusOutbox.holdFor}). */
  #sendAfter = 0

  constructor(opts: ResolvedBus, origin: Buffer, pub: Redis | Cluster, link: BusLink, counters: BusCounters) {
    this.#opts = opts
    this.#origin = origin
    this.#pub = pub
    this.#link = link
    this.#c = counters
    if (opts.catchUp === 'stream') {
      pub.defineCommand('shardcacheStreamPublish', { numberOfKeys: 1, lua: streamPublishLua(opts.cluster ? 'SPUBLISH' : 'PUBLISH') })
    }
  }

  /** Publishes a local op (coalesced with the tick's others). Never blocks, never throws. */
  publish(op: BusOp): void {
    if (this.#link.closing) return
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

  /** Messages not yet acknowledged by Redis: waiting in the queue or in flight (the tick's ops count as one). */
  get queued(): number {
    return this.#queue.length + this.#inflight + (this.#pending.length > 0 ? 1 : 0)
  }

  /**
   * What queued up while down waits `ms` more: peers that lost the same
   * server are reconnecting on the same schedule, and a message sent before
   * they resubscribe is lost to them (they flush on resubscribing, so it costs
   * only the invalidation's event, never coherence).
   */
  holdFor(ms: number): void {
    this.#sendAfter = performance.now() + ms
  }

  /** Packs the tick's ops now rather than on the next turn (close(), before the bus stops sending). */
  packNow(): void {
    if (this.#packScheduled) this.#pack()
  }

  /** Sends what is queued while the publisher is ready, until `deadline` (Date.now()); close() then cuts the connection. */
  async drain(deadline: number): Promise<void> {
    clearTimeout(this.#retryTimer)
    if (this.#pub.status === 'ready') {
      this.pump()
      while ((this.#inflight > 0 || this.#queue.length > 0) && this.#pub.status === 'ready' && Date.now() < deadline) {
        await Promise.race([new Promise<void>((resolve) => (this.#idle = resolve)), sleep(deadline - Date.now())])
      }
    }
  }

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
      this.#queue.push({ seq, buf: encodeMessage(this.#origin, seq, body.ops, body.bytes), tries: 0 })
    }
    this.pump()
  }

  /**
   * Sends while the publisher is ready and this instance is subscribed: a
   * message sent while the link is down would mostly reach peers that are
   * down too. Close sends what it can regardless.
   */
  pump(): void {
    const pub = this.#pub
    if (!this.#link.closing) {
      if (!this.#link.subscribed) return // the bus pumps once subscribed
      const wait = this.#sendAfter - performance.now()
      if (wait > 0) {
        // A timer may fire a little early by this clock: the +1 and the re-check keep it from stalling.
        this.#retryTimer ??= setTimeout(() => {
          this.#retryTimer = undefined
          this.pump()
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
          this.pump()
        },
        (err: Error) => {
          this.#inflight--
          this.#link.lastError = err
          if (++item.tries < MAX_SEND_TRIES && !this.#link.closing) this.#requeue(item)
          else this.#c.dropped.sendFailed++
          this.#settled()
          // Not at once: the connection that failed it may still say "ready". The next
          // 'ready' sends it, or this timer if the connection was fine after all.
          this.#retryTimer ??= setTimeout(() => {
            this.#retryTimer = undefined
            this.pump()
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
}
