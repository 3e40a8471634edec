/**
 * The bus's receiving side: each message from a peer checked (size,
 * signature, age, sequence) and handed to the cache, and with catchUp
 * 'stream' the replay that fetches from the stream what the channel lost.
 * Apart from ./bus.ts because what it keeps (every origin's last sequence
 * number, the stream position, the messages held during a replay) is about
 * the messages, not the connections that carry them.
 *
 * A sequence gap from any origin means messages were lost: without a stream
 * the cache is flushed; with one, the gap's messages are replayed from it
 * (live messages are held meanwhile, then handled in order), and a replay
 * that cannot reach back to the last message seen falls back to a flush.
 * While a replay runs the bus is 'catching-up' (./bus_link.ts), unless the
 * subscription was lost meanwhile: the replay reads on the publisher
 * connection and carries on.
 */
import type { Cluster, Redis } from 'ioredis'
import { createHistogram } from 'node:perf_hooks'
import type { RecordableHistogram } from 'node:perf_hooks'
import { BusMessageError, HEADER_BYTES, ORIGIN_OFFSET, decodeMessage, isFresh } from './bus_message.js'
import type { DropReason } from './bus_message.js'
import type { BusLink } from './bus_link.js'
import { epochNow } from './bus_types.js'
import type { BusCounters, BusHost, FlushReason, ResolvedBus } from './bus_types.js'

/** Origins remembered for gap and replay checks; the oldest are forgotten beyond this. */
const MAX_ORIGINS = 10_000
/** Stream entries read per XRANGE during a replay. */
const REPLAY_PAGE = 1000
/** A Redis stream id: milliseconds-sequence. */
const STREAM_ID = /^\d+-\d+$/

export class BusInbox {
  readonly #opts: ResolvedBus
  readonly #origin: Buffer
  readonly #host: BusHost
  readonly #pub: Redis | Cluster
  readonly #link: BusLink
  readonly #c: BusCounters

  readonly #lastSeq = new Map<string, number>()
  /** Stream id of the last message handled (catchUp 'stream'); undefined: unknown, so a replay cannot start. */
  #streamPos: string | undefined
  /** Whether a replay runs: its own, not the status, since it outlives a lost subscription. */
  #replaying = false
  /** A reason to replay again once the running replay is done. */
  #catchUpAgain: FlushReason | undefined
  /** Live messages that came during a replay, handled after it. */
  #held: Buffer[] = []
  readonly latency: RecordableHistogram = createHistogram()

  constructor(opts: ResolvedBus, origin: Buffer, host: BusHost, pub: Redis | Cluster, link: BusLink, counters: BusCounters) {
    this.#opts = opts
    this.#origin = origin
    this.#host = host
    this.#pub = pub
    this.#link = link
    this.#c = counters
  }

  get replaying(): boolean {
    return this.#replaying
  }

  /** Where replays start: the stream's newest entry when this instance first subscribed ('0-0': it was empty). */
  async startStreamPos(): Promise<void> {
    try {
      const last = await this.#pub.xrevrangeBuffer(this.#opts.streamKey, '+', '-', 'COUNT', 1)
      this.#streamPos ??= last.length > 0 ? last[0]![0].toString() : '0-0'
    } catch (err) {
      this.#link.lastError = err as Error // no position: the first catch-up falls back to a flush
    }
  }

  /**
   * Replays from the stream what came after the last message handled, then
   * the live messages held meanwhile; falls back to a flush when the stream
   * no longer holds that message (trimmed) or cannot be read.
   */
  async catchUp(reason: FlushReason): Promise<void> {
    if (this.#replaying) {
      this.#catchUpAgain = reason
      return
    }
    this.#replaying = true
    // After a reconnect the bus is 'catching-up' already: it entered it on subscribing.
    if (this.#link.status === 'ready') this.#link.setStatus('catching-up', reason === 'gap' ? 'a sequence gap' : reason)
    let ok = false
    try {
      for (let r: FlushReason | undefined = reason; r !== undefined; r = this.#catchUpAgain) {
        this.#catchUpAgain = undefined
        this.#c.catchUp.runs++
        ok = false
        try {
          ok = await this.#replay()
        } catch (err) {
          this.#link.lastError = err as Error
        }
        if (!ok) {
          this.#c.catchUp.fallbacks++
          this.flush(r)
        }
        const held = this.#held
        this.#held = []
        // After a flush nothing before these messages matters any more: their gaps are covered.
        for (const raw of held) this.#handle(raw, ok ? 'held' : 'afterFlush')
      }
    } finally {
      this.#replaying = false
      // Not when the subscription was lost meanwhile ('reconnecting') or the bus is closing.
      if (this.#link.status === 'catching-up') this.#link.setStatus('ready', ok ? 'replayed from the stream' : 'the stream did not reach back: flushed')
    }
  }

  /** Handles the stream's entries after #streamPos; false when the stream does not reach back to it. */
  async #replay(): Promise<boolean> {
    let pos = this.#streamPos
    if (pos === undefined || this.#link.closing) return false
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

  flush(reason: FlushReason): void {
    this.#c.flushes++
    this.#host.flush(reason).catch(() => {
      // A flush fails only when the cache is closing or a shard crashed (which emptied it anyway).
    })
  }

  #drop(reason: DropReason): void {
    this.#c.dropped[reason]++
  }

  /** A live message from the channel. Never throws: a bad message is counted and dropped. */
  receive(raw: Buffer): void {
    if (this.#link.closing) return
    if (this.#replaying) {
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
    if (buf.length >= HEADER_BYTES && buf.compare(this.#origin, 0, 16, ORIGIN_OFFSET, ORIGIN_OFFSET + 16) === 0) {
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
        void this.catchUp('gap')
        return
      }
      this.flush('gap')
    }
    // Re-inserted so that the Map's order is least recently heard first.
    this.#lastSeq.delete(origin)
    this.#lastSeq.set(origin, m.seq)
    if (this.#lastSeq.size > MAX_ORIGINS) this.#lastSeq.delete(this.#lastSeq.keys().next().value!)
    if (id !== undefined) this.#streamPos = id
    if (how !== 'replay') this.latency.record(Math.max(1, Math.round((now - m.sentAt) * 1e6)))
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
