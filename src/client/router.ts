/**
 * The router: owns the shard threads, maps keys to shards, batches operations
 * into frames, matches replies to callers, and restarts shards that die.
 *
 * Batching: operations write themselves straight into their shard's open
 * frame. The first one in a tick schedules a flush with `process.nextTick`,
 * which Node runs only after the current microtask queue has drained, so all
 * the promise continuations woken by one reply frame add their next operation
 * to the same outgoing frame (the auto-pipelining ioredis does for Redis).
 *
 * Replies: a reply frame carries the request frame's id; results come in op
 * order. Each op was registered with a {@link Sink} and its index there, so one
 * failed op rejects only its own caller.
 *
 * Liveness: a shard thread is `ref`'d only while it has frames in flight, so an
 * idle cache never keeps the process alive, and a pending operation always does.
 *
 * Direct reads (src/client/direct_reads.ts, the class this one extends):
 * reads answered from the shards' shared memory or the near cache, held back
 * while a write of this thread that may change what they read is pending
 * (commitWrite counts those writes, the reply releases them).
 *
 * Here: the frames (open, in flight, flushed each tick, spun for when the
 * shard is awake), replies matched to their ops (each decoded next to its
 * request, in src/client/ops/), fill marks for L2, and the handling of shards
 * that crash or go away.
 */
import { FrameReader, FrameWriter, MAX_FRAME_ID, Status } from '../wire/protocol.js'
import { ClosedError, InternalError, ShardCrashedError } from '../errors.js'
import { plural } from '../messages.js'
import { newFound } from '../wire/shared_region.js'
import type { Found } from '../wire/shared_region.js'
import { decodeValue } from '../wire/values.js'
import type { Codec } from '../wire/values.js'
import type { FrameSender, Sink } from './ops/sender.js'
import { readStaleReply, readValueReply } from './ops/values.js'
import { readEntryReply } from './ops/entry.js'
import { readKeysReply, readScanPage } from './ops/scan.js'
import { readExportPage } from './ops/export.js'
import { readErrorReply } from './ops/errors.js'
import { DirectReads, keyHash16 } from './direct_reads.js'
import { FrameLatency } from './frame_latency.js'
import { PENDING_SLOTS, ShardChannel, newFrameOps } from './shard_channel.js'
import type { FrameOps, LinkEvents, ShardLink } from './shard_channel.js'

/**
 * Frames a shard may have unanswered before new ops wait for a reply. A shard
 * handles frames one at a time, so a second frame in flight only saves the
 * hand-over; more would fragment: with N shards, every reply's continuations
 * spread over all shards, and flushing each tick halves the frame size each
 * round trip until frames hold one op (measured: 512 concurrent callers on 2
 * shards fell to 1.0 op per frame and ~80k ops/s).
 */
const MAX_FRAMES_IN_FLIGHT = 1

/** Set in a FrameOps `writeSlots` entry (slots are below 2^20) for a write counted in `mayRemove`. */
const MAY_REMOVE = 1 << 30

/** A frame this large is sent even when the shard is busy, so frames stay bounded. */
const FRAME_SOFT_LIMIT_BYTES = 1 << 20

/** A shard that crashes again before answering its first frame is not restarted after this many tries in a row. */
const MAX_RESTARTS_IN_A_ROW = 5

/** How a router is set up; the same for the owner and attached threads, but for the links. */
export interface RouterConfig {
  shards: number
  /** Per region: whether its policy learns from hits (all but FIFO), so direct reads are logged ({@link policyLearnsFromHits}). */
  logHits: boolean[]
  /** Per region: whether it has no default TTL, so a set without one leaves its entry without expiry. */
  keepsForever: boolean[]
  codec: Codec | undefined
  /** Near-cache entries per region; 0: none. */
  nearCacheEntries: number
  replySpinMicros: number
  /** Makes the link to shard `index`. */
  link(index: number, events: LinkEvents): ShardLink
  /** Owner: restarts crashed shards itself and counts them. Attached: the owner does, links only reconnect. */
  owner: boolean
  /** Attached: the handle's state word, non-zero once the owner closed the cache (ops fail with E_CLOSED instead of E_SHARD_CRASHED). */
  ownerState?: Int32Array
}

export class Router extends DirectReads implements FrameSender {
  /** Round trips of this thread's frames to its shards. */
  readonly frameLatency = new FrameLatency()
  readonly #owner: boolean
  /** Non-zero once the owner closed the cache; a private zero for the owner itself. */
  readonly #ownerState: Int32Array
  /**
   * Writes this thread issued, per key slot and per whole region (wrapping
   * counters), and when a peer's invalidation was last applied to them
   * (performance.now()): an L2 fill read before either must not be stored
   * (see {@link fillMark}, {@link mayFill}).
   */
  readonly #writeGen: Uint32Array
  readonly #regionWriteGen: Uint32Array
  readonly #remoteAt: Float64Array
  readonly #remoteRegionAt: Float64Array
  /** The versions in a VALUE_AT answer (near.add copies them). */
  readonly #replyFound: Found = newFound()
  #nextFrameId = 1
  /** @internal Frames posted to shards so far (tests check batching with it). */
  framesSent = 0
  #flushScheduled = false
  #closing = false
  #closed: Promise<void> | undefined
  readonly #replySpinMs: number
  /** Shards whose small frame was just posted while they were awake: the flush may spin for their replies. */
  readonly #awaited: ShardChannel[] = []

  constructor(config: RouterConfig) {
    const regions = config.logHits.length
    super(Array.from({ length: config.shards }, (_, i) => new ShardChannel(i, regions)), config.logHits, config.codec, config.nearCacheEntries)
    this.#owner = config.owner
    this.#ownerState = config.ownerState ?? new Int32Array(1)
    this.#writeGen = new Uint32Array(config.logHits.length * PENDING_SLOTS)
    this.#regionWriteGen = new Uint32Array(config.logHits.length)
    this.#remoteAt = new Float64Array(config.logHits.length * PENDING_SLOTS).fill(-Infinity)
    this.#remoteRegionAt = new Float64Array(config.logHits.length).fill(-Infinity)
    this.#replySpinMs = config.replySpinMicros / 1000
    this.#keepsForever = config.keepsForever
    const events: LinkEvents = {
      reply: (shard, frame) => this.#onReply(this.shards[shard]!, frame),
      lost: (shard, cause) => this.#onLost(this.shards[shard]!, cause),
      ready: (shard) => this.#afterReply(this.shards[shard]!),
      dead: (shard, error) => {
        const ch = this.shards[shard]!
        this.#markDead(ch, error)
        this.#afterReply(ch)
      },
    }
    for (const ch of this.shards) ch.link = config.link(ch.index, events)
  }

  /** The link to shard `index` (the owner's are {@link ShardThread}s). */
  link(index: number): ShardLink {
    return this.shards[index]!.link
  }

  /** Shard restarts since the router started. */
  get restarts(): number {
    return this.shards.reduce((n, ch) => n + ch.restarts, 0)
  }

  /** Whether the cache was closed, here or (for an attached thread) by its owner. */
  get closed(): boolean {
    return this.#closing || this.#ownerState[0] !== 0
  }

  /**
   * The open frame of a shard: the caller writes one op (opcode, region,
   * operands) into it, then calls {@link commit} before yielding.
   */
  writer(shard: number): FrameWriter {
    return this.shards[shard]!.writer
  }

  readonly #keepsForever: boolean[]

  keepsForever(region: number): boolean {
    return this.#keepsForever[region] === true
  }

  /** Registers the op just written to `shard` and makes sure the frame is sent this tick. */
  commit(shard: number, sink: Sink, index: number): void {
    const ops = this.shards[shard]!.ops
    ops.sinks.push(sink)
    ops.indexes.push(index)
    ops.writeRegions.push(-1)
    ops.writeSlots.push(-1)
    ops.writeGrowth.push(0)
    this.#scheduleFlush()
  }

  /**
   * {@link commit} for an op that changes `key` in `region` (or, with `key`
   * undefined, the whole region): until it is answered, direct reads of what
   * it changes are sent to the shard instead, so they see it. `hash` is the
   * key's {@link keyHash} (the caller routed by it; ignored without a key).
   *
   * `grows` is, for a write that may add an entry (a set), an upper bound of
   * the bytes it may add to the region (0 for a delete or a TTL change). Such
   * a write may evict any other key of its shard's region slice, so while one
   * is pending, a direct read of that slice is sent to the shard too, unless
   * the slice has room for all of them (see {@link #roomFor}): reads issued
   * after a write see the state after it, evictions included, as on a
   * pipelined connection.
   *
   * A set of a key the slice holds without expiry adds no entry (it may still
   * add bytes): in a slice without room it counts for its bytes only, so a
   * full cache under steady overwrites keeps its direct reads (the real-server
   * bench's GC-heavy regime, 1M entries and 10k overwrites/s: 20% of reads
   * were answered on the serving thread before, the rest waited for the
   * shard). Its `writeGrowth` is then stored negated.
   *
   * `keeps`: the write leaves its key, if present, present and without
   * expiry (a set without a TTL in a region without a default one). Other
   * writes of a key (deletes, takes, touches, sets with a TTL) are counted
   * in {@link mayRemove} until answered: while one is pending on a key's
   * slot, a set of the key is not taken for an overwrite, since the key may
   * be gone by the time the set reaches it.
   */
  commitWrite(shard: number, sink: Sink, index: number, region: number, key: string | undefined, hash: number, grows = 0, keeps = false): void {
    const ch = this.shards[shard]!
    const ops = ch.ops
    ops.sinks.push(sink)
    ops.indexes.push(index)
    ops.writeRegions.push(region)
    this.unanswered[region]!++
    if (grows > 0) {
      // Before this write counts as pending: overwrites() reads the key's entry, which a pending write of the key forbids.
      const overwrite = key !== undefined && this.overwrites(shard, region, key, hash)
      ops.writeGrowth.push(overwrite ? -grows : grows)
      if (!overwrite) ch.growing[region]!++
      ch.growingBytes[region]! += grows
    } else {
      ops.writeGrowth.push(0)
    }
    if (key === undefined) {
      ops.writeSlots.push(-1)
      ch.barriers[region]!++
      this.#regionWriteGen[region]!++
    } else {
      const slot = region * PENDING_SLOTS + (hash & (PENDING_SLOTS - 1))
      ops.writeSlots.push(keeps ? slot : slot | MAY_REMOVE)
      if (!keeps) this.mayRemove[slot]!++
      this.#writeGen[slot]!++
      this.pending[slot]!++
      this.pendingInRegion[region]!++
      // Not needed for correctness (its slot's version will change), only to free it sooner.
      this.near?.[region]!.delete(key)
    }
    this.#scheduleFlush()
  }

  /**
   * Taken before an L2 read whose value may be stored in the shard (a fill):
   * it changes with every write this thread issues to the key's slot or to
   * its region, peers' invalidations applied here included.
   */
  fillMark(region: number, key: string): number {
    return this.#regionWriteGen[region]! + this.#writeGen[region * PENDING_SLOTS + (keyHash16(key) & (PENDING_SLOTS - 1))]!
  }

  /** A peer's invalidation of `key` (undefined: of the whole region) is being applied now. */
  remoteWrite(region: number, key: string | undefined): void {
    const now = performance.now()
    if (key === undefined) this.#remoteRegionAt[region] = now
    else this.#remoteAt[region * PENDING_SLOTS + (keyHash16(key) & (PENDING_SLOTS - 1))] = now
  }

  /**
   * Whether a fill of `key` read from L2 (started at `startedAt`, with
   * `mark` from {@link fillMark}) may be stored: no write issued here since,
   * and no peer's invalidation applied within `windowMs` before the read. A
   * peer publishes its invalidation as it writes, before its L2 write lands
   * (within its L2 timeout, or the write is lost and repaired, which
   * publishes again): a read of L2 that soon after the invalidation may
   * still see the old value.
   */
  mayFill(region: number, key: string, mark: number, startedAt: number, windowMs: number): boolean {
    if (this.fillMark(region, key) !== mark) return false
    const since = startedAt - windowMs
    return this.#remoteRegionAt[region]! < since && this.#remoteAt[region * PENDING_SLOTS + (keyHash16(key) & (PENDING_SLOTS - 1))]! < since
  }

  /** Releases what op `i` of `ops` held back ({@link commitWrite}). */
  #released(ch: ShardChannel, ops: FrameOps, i: number): void {
    const region = ops.writeRegions[i]!
    if (region < 0) return
    this.unanswered[region]!--
    const grows = ops.writeGrowth[i]!
    if (grows > 0) {
      ch.growing[region]!--
      ch.growingBytes[region]! -= grows
    } else if (grows < 0) {
      ch.growingBytes[region]! += grows // an overwrite's bytes only (see commitWrite)
    }
    const s = ops.writeSlots[i]!
    if (s < 0) {
      ch.barriers[region]!--
      return
    }
    const slot = s & ~MAY_REMOVE
    if (slot !== s) this.mayRemove[slot]!--
    this.pending[slot]!--
    this.pendingInRegion[region]!--
  }

  /** Empties a frame whose ops are all settled (see FrameOps): it may be old, and must not keep them alive. */
  #retire(ops: FrameOps): void {
    ops.sinks.length = 0
    ops.indexes.length = 0
    ops.writeRegions.length = 0
    ops.writeSlots.length = 0
    ops.writeGrowth.length = 0
  }

  /** Settles op `i` of `ops` with a result or an error. */
  #settle(ch: ShardChannel, ops: FrameOps, i: number, result: unknown, error?: Error): void {
    this.#released(ch, ops, i)
    if (error === undefined) ops.sinks[i]!.resolve(ops.indexes[i]!, result)
    else ops.sinks[i]!.reject(ops.indexes[i]!, error)
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    process.nextTick(this.#flush)
  }

  /** Whether shard `index` is down for good. */
  isDead(index: number): boolean {
    return this.shards[index]!.dead !== undefined
  }

  /** Resolves when every op issued so far has been answered. */
  drain(): Promise<void> {
    this.#flush()
    return Promise.all(
      this.shards.map((ch) =>
        ch.inflight.size === 0 && ch.ops.sinks.length === 0
          ? undefined
          : new Promise<void>((resolve) => ch.drained.push(resolve)),
      ),
    ).then(() => undefined)
  }

  /** Lets in-flight ops finish, then closes every link (the owner's stop their threads). Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.drain()
      this.#closing = true
      await Promise.all(this.shards.map((ch) => ch.link.close()))
    })()
    return this.#closed
  }

  #flush = (): void => {
    this.#flushScheduled = false
    for (const ch of this.shards) {
      if (ch.ops.sinks.length === 0) continue
      const w = ch.writer
      // Closed (here, or by the owner): an op that reaches the router after close() drained it
      // (an L2 promotion, a flight's re-read) is refused, not sent to a thread that is stopping.
      const down = ch.dead ?? (this.#closing || this.#ownerState[0] !== 0 ? new ClosedError() : undefined)
      if (down !== undefined) {
        // Nothing is encoded or sent for a shard that is down: its ops fail at once.
        const ops = ch.ops
        ch.ops = newFrameOps()
        w.pos = 8
        for (let i = 0; i < ops.sinks.length; i++) this.#settle(ch, ops, i, undefined, down)
        this.#retire(ops)
        this.#signalDrained(ch)
        continue
      }
      if (!ch.link.ready) continue // sent once the link is back
      if (ch.inflight.size >= MAX_FRAMES_IN_FLIGHT && w.pos < FRAME_SOFT_LIMIT_BYTES) continue
      const id = this.#nextFrameId
      this.#nextFrameId = id === MAX_FRAME_ID ? 1 : id + 1
      const count = ch.ops.sinks.length
      w.putU32(0, id)
      w.putU32(4, count)
      const alone = ch.inflight.size === 0
      const ops = ch.ops
      ch.ops = newFrameOps()
      if (alone) ch.link.ref()
      ops.sentAt = performance.now()
      ch.inflight.set(id, ops)
      this.framesSent++
      if (ch.link.send(w, id, count, alone)) this.#awaited.push(ch)
      w.pos = 8
    }
    if (this.#awaited.length > 0) this.#spinForReplies()
  }

  /** Takes the replies of small frames sent to awake shards by spinning (see ShardThread.takeReply). */
  #spinForReplies(): void {
    const awaited = this.#awaited
    const deadline = performance.now() + this.#replySpinMs
    for (let i = 0; i < awaited.length; i++) {
      const ch = awaited[i]!
      const reply = ch.link.takeReply(deadline)
      if (reply !== undefined) this.#onReply(ch, reply)
    }
    awaited.length = 0
  }

  #onReply = (ch: ShardChannel, frame: Uint8Array): void => {
    const r = new FrameReader(frame)
    const id = r.u32()
    const count = r.u32()
    const ops = ch.inflight.get(id)
    if (ops === undefined) return // answered after its shard was declared dead: already rejected
    this.frameLatency.record(performance.now() - ops.sentAt)
    ch.crashesInARow = 0
    ch.inflight.delete(id)
    if (ch.inflight.size === 0) ch.link.unref()
    let i = 0
    try {
      for (; i < count; i++) {
        const status = r.u8()
        if (status === Status.ERROR) {
          this.#settle(ch, ops, i, undefined, readErrorReply(r))
          continue
        }
        let result: unknown
        try {
          result = this.#readResult(ch, status, r)
        } catch (err) {
          // The bytes were read; only this op's decoding failed (e.g. a codec throwing).
          this.#settle(ch, ops, i, undefined, err instanceof Error ? err : new InternalError(String(err)))
          continue
        }
        this.#settle(ch, ops, i, result)
      }
    } catch (err) {
      const e = new InternalError(`shard ${ch.index} sent a malformed reply`, { cause: err })
      for (; i < ops.sinks.length; i++) this.#settle(ch, ops, i, undefined, e)
    }
    this.#retire(ops)
    this.#afterReply(ch)
  }

  /** Sends what waited for this shard's reply, or tells drain() the shard is idle. */
  #afterReply(ch: ShardChannel): void {
    if (ch.ops.sinks.length > 0) {
      this.#scheduleFlush()
    } else if (ch.inflight.size === 0) {
      this.#signalDrained(ch)
    }
  }

  /**
   * One reply's result, by its status: the few without operands here, the
   * others by the decoder next to the request that gets them (src/client/ops/).
   * VALUE_AT is read here: what follows its value is for this thread's near cache.
   */
  #readResult(ch: ShardChannel, status: number, r: FrameReader): unknown {
    switch (status) {
      case Status.MISS:
        return undefined
      case Status.TRUE:
        return true
      case Status.FALSE:
        return false
      case Status.NUMBER:
        return r.f64()
      case Status.VALUE:
        return readValueReply(r, this.codec)
      case Status.VALUE_AT: {
        const tag = r.u8()
        const value = decodeValue(tag, r.bytesView(), this.codec)
        const region = r.u8()
        const f = this.#replyFound
        f.slot = r.u32()
        f.seq = r.u32() | 0
        f.regionSeq = r.u32() | 0
        const epoch = r.u32() | 0
        const expiresAt = r.f64()
        this.keepNear(ch, region, r.bytesView(), value, tag, f, epoch, expiresAt)
        return value
      }
      case Status.STALE:
        return readStaleReply(r, this.codec)
      case Status.ENTRY:
        return readEntryReply(r, this.codec)
      case Status.EXPORT:
        return readExportPage(r)
      case Status.SCAN:
        return readScanPage(r)
      case Status.KEYS:
        return readKeysReply(r)
      default:
        throw new InternalError(`unknown reply status ${status}`)
    }
  }

  /** The link lost its shard thread: what was in flight fails; the link gets a new thread unless the shard keeps crashing. */
  #onLost(ch: ShardChannel, cause: Error): void {
    // Closing: what was in flight fails with E_CLOSED, and nothing restarts.
    const closed = this.#closing || this.#ownerState[0] !== 0
    const lostError = closed ? new ClosedError() : new ShardCrashedError(ch.index, { cause })
    const lost = [...ch.inflight.values()]
    ch.inflight.clear()
    ch.link.unref()
    for (const f of lost) {
      for (let i = 0; i < f.sinks.length; i++) this.#settle(ch, f, i, undefined, lostError)
      this.#retire(f)
    }
    if (closed) {
      this.#afterReply(ch) // rejects what waits
      return
    }
    if (this.#owner) {
      ch.crashesInARow++
      if (ch.crashesInARow > MAX_RESTARTS_IN_A_ROW) {
        const why = new Error(`shard ${ch.index} crashed ${plural(ch.crashesInARow, 'time')} in a row without answering a frame`, { cause })
        this.#markDead(ch, new ShardCrashedError(ch.index, { cause: why, restarting: false }))
        this.#afterReply(ch) // rejects what waits for it
        return
      }
      ch.restarts++
    }
    ch.link.restart()
    // Ops written while the thread was down are still in the open frame.
    this.#afterReply(ch)
  }

  /** The shard is given up on: its ops fail with `error`, and nothing read from its memory is served (its readers retire). */
  #markDead(ch: ShardChannel, error: Error): void {
    ch.dead = error
    for (const r of ch.link.readers) r.retired = true
  }

  #signalDrained(ch: ShardChannel): void {
    const waiting = ch.drained
    ch.drained = []
    for (const resolve of waiting) resolve()
  }
}

