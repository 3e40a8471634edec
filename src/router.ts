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
 * Direct reads: `get`, `has` and `ttl` first try the shard's shared memory
 * (src/shared_region.ts) and send an op only when that cannot answer for sure.
 * Order is kept: while a write to a key (or a clear or pattern delete of its
 * region) is queued or in flight, reads of that key go through the shard's
 * frames, behind the write, as they would on a pipelined connection.
 */
import { Worker, MessageChannel } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import type { MessagePort } from 'node:worker_threads'
import { wrap, releaseProxy } from 'comlink'
import type { Remote } from 'comlink'
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs'
import {
  FrameReader,
  FrameWriter,
  MAX_FRAME_ID,
  Op,
  REPLY_TAKEN,
  SHARED_FRAME_BYTES,
  SIGNAL_SLOTS,
  SMALL_FRAME_OPS,
  Signal,
  Status,
} from './protocol.js'
import { DRAIN_ACCESS_LOG, ValueTag } from './protocol.js'
import type { EntryInfo, FrameMessage } from './protocol.js'
import { CacheError, ClosedError, ErrorCodes, InternalError, ShardCrashedError } from './errors.js'
import type { ErrorCode } from './errors.js'
import type { ShardControl, ShardInit } from '../workers/shard.js'
import { slotsFor } from '../workers/region_store.js'
import type { RegionShardConfig } from '../workers/region_store.js'
import { AccessLogWriter, SharedRegionReader, SlotFlag, allocateAccessLog, allocateRegionMemory, hashBytes, monotonicNow } from './shared_region.js'
import type { Found } from './shared_region.js'
import { decodeValue, decodeText } from './values.js'
import type { Codec } from './options.js'

/** Receives the results of the ops registered with it. */
export interface Sink {
  resolve(index: number, result: unknown): void
  reject(index: number, error: Error): void
}

/** A shard's answer to GET_ENTRY, value already decoded. */
export interface RawEntry extends EntryInfo {
  value: unknown
  metadata: Buffer | undefined
}

/** What a direct read returns when only the shard can answer. */
export const ASK_SHARD: unique symbol = Symbol('ask the shard')

/**
 * Ops of a frame: who gets each result, and, for writes, what they hold back
 * (see {@link Router.commitWrite}): the region (-1: not a write) and the key
 * (undefined: the whole region).
 */
interface FrameOps {
  sinks: Sink[]
  indexes: number[]
  writeRegions: number[]
  writeKeys: (string | undefined)[]
}

const SHARD_FILE = new URL('../workers/shard.js', import.meta.url)

/**
 * Frames a shard may have unanswered before new ops wait for a reply. A shard
 * handles frames one at a time, so a second frame in flight only saves the
 * hand-over; more would fragment: with N shards, every reply's continuations
 * spread over all shards, and flushing each tick halves the frame size each
 * round trip until frames hold one op (measured: 512 concurrent callers on 2
 * shards fell to 1.0 op per frame and ~80k ops/s).
 */
const MAX_FRAMES_IN_FLIGHT = 1
/** A frame this large is sent even when the shard is busy, so frames stay bounded. */
const FRAME_SOFT_LIMIT_BYTES = 1 << 20

/** A shard that crashes again before answering its first frame is not restarted after this many tries in a row. */
const MAX_RESTARTS_IN_A_ROW = 5

class ShardChannel {
  worker!: Worker
  control!: Remote<ShardControl>
  controlPort!: MessagePort
  /** Rejects when the current worker dies: control calls race it so they never hang. */
  died!: Promise<never>
  #markDied!: (err: Error) => void

  readonly writer = new FrameWriter()
  /** Signals shared with the shard thread, indexed by {@link Signal} (see src/protocol.ts). */
  readonly signals = new Int32Array(new SharedArrayBuffer(SIGNAL_SLOTS * 4))
  /** Shared frame buffers (see src/protocol.ts): requests written here, replies read there. */
  readonly requests = Buffer.from(new SharedArrayBuffer(SHARED_FRAME_BYTES))
  readonly replies = Buffer.from(new SharedArrayBuffer(SHARED_FRAME_BYTES))
  /** The open frame's ops. */
  ops: FrameOps = newFrameOps()
  readonly inflight = new Map<number, FrameOps>()
  /** Direct readers of each region's shared memory, and the log of their reads; replaced when the thread is. */
  readers: SharedRegionReader[] = []
  log!: AccessLogWriter
  /** Per region: whether reads reorder it (LRU), and clears or pattern deletes queued or in flight. */
  readonly lru: boolean[]
  readonly barriers: Int32Array
  restarts = 0
  crashesInARow = 0
  /** Set after MAX_RESTARTS_IN_A_ROW: every op to this shard fails. */
  dead: Error | undefined
  drained: (() => void)[] = []

  constructor(
    readonly index: number,
    readonly regions: RegionShardConfig[],
    readonly idleSpinMicros: number,
    readonly spinners: Int32Array,
    readonly onReply: (ch: ShardChannel, frame: Uint8Array) => void,
    readonly onExit: (ch: ShardChannel, code: number, error: Error | undefined) => void,
  ) {
    this.writer.u32(0) // frame id, patched on flush
    this.writer.u32(0) // op count, patched on flush
    this.lru = regions.map((r) => r.policy === 'lru')
    this.barriers = new Int32Array(regions.length)
    this.spawn()
  }

  spawn(): void {
    const { port1, port2 } = new MessageChannel()
    this.signals.fill(0) // a new thread has seen no frame
    // A new thread starts empty, in new memory: readers of the old one are dropped with it.
    const memory = this.regions.map((r) => allocateRegionMemory(slotsFor(r)))
    const log = allocateAccessLog(this.regions.length)
    this.readers = memory.map((m) => new SharedRegionReader(m))
    this.log = new AccessLogWriter(log, () => this.worker.postMessage(DRAIN_ACCESS_LOG))
    const init: ShardInit = {
      memory,
      logs: [log],
      shard: this.index,
      regions: this.regions,
      control: port2,
      signals: this.signals.buffer as SharedArrayBuffer,
      requests: this.requests.buffer as SharedArrayBuffer,
      replies: this.replies.buffer as SharedArrayBuffer,
      idleSpinMicros: this.idleSpinMicros,
      spinners: this.spinners.buffer as SharedArrayBuffer,
      spinSlots: Math.max(0, availableParallelism() - 1),
    }
    const worker = new Worker(SHARD_FILE, { workerData: init, transferList: [port2] })
    let lastError: Error | undefined
    worker.on('message', (msg: FrameMessage) =>
      this.onReply(this, typeof msg === 'number' ? this.replies.subarray(0, msg) : msg),
    )
    worker.on('error', (err) => {
      lastError = err
    })
    worker.on('exit', (code) => this.onExit(this, code, lastError))
    worker.unref()
    this.worker = worker
    this.controlPort = port1
    this.control = wrap<ShardControl>(nodeEndpoint(port1))
    port1.unref()
    this.died = new Promise<never>((_, reject) => {
      this.#markDied = reject
    })
    this.died.catch(() => {})
  }

  markDied(err: Error): void {
    this.#markDied(err)
  }
}

export class Router {
  readonly shardCount: number
  readonly #shards: ShardChannel[]
  readonly #codec: Codec | undefined
  /** Per region: keys with writes queued or in flight, and how many. */
  readonly #pendingWrites: Map<string, number>[]
  /** UTF-8 bytes of the key of the current direct read (keys are at most 65535 bytes). */
  readonly #keyBytes = Buffer.allocUnsafe(0x10000)
  #keyHash = 0
  readonly #found: Found = { slot: 0, seq: 0, regionSeq: 0 }
  #nextFrameId = 1
  /** @internal Frames posted to shards so far (tests check batching with it). */
  framesSent = 0
  #flushScheduled = false
  #closing = false
  #closed: Promise<void> | undefined
  readonly #replySpinMs: number
  /** Shards whose small frame was just posted while they were awake: the flush may spin for their replies. */
  readonly #awaited: ShardChannel[] = []

  constructor(regionsByShard: RegionShardConfig[][], codec: Codec | undefined, spin: { idleMicros: number; replyMicros: number }) {
    this.shardCount = regionsByShard.length
    this.#codec = codec
    this.#pendingWrites = regionsByShard[0]!.map(() => new Map<string, number>())
    this.#replySpinMs = spin.replyMicros / 1000
    // Shards spinning now, across this cache (see the transport notes in src/protocol.ts).
    const spinners = new Int32Array(new SharedArrayBuffer(4))
    this.#shards = regionsByShard.map(
      (regions, i) => new ShardChannel(i, regions, spin.idleMicros, spinners, this.#onReply, this.#onExit),
    )
  }

  /** Resolves once every shard thread answers on its control port. */
  async ready(): Promise<void> {
    await Promise.all(this.#shards.map((ch) => this.#controlCall(ch, (c) => c.stats())))
  }

  /** Shard restarts since the router started. */
  get restarts(): number {
    return this.#shards.reduce((n, ch) => n + ch.restarts, 0)
  }

  /**
   * Stable key → shard mapping: FNV-1a over the key's UTF-16 code units, then
   * murmur3's finalizer. Hashing code units avoids encoding the key just to
   * route it. The finalizer matters: for ASCII keys this FNV equals the shard's
   * bucket hash, whose low bits pick the bucket; routing on those same bits
   * puts every key of a shard in even home buckets (with 2 shards): with the
   * benchmark's 100k keys the mean probe distance rose from 0.36 to 0.48.
   */
  shardOf(key: string): number {
    if (this.shardCount === 1) return 0
    let h = 0x811c9dc5
    for (let i = 0; i < key.length; i++) {
      h ^= key.charCodeAt(i)
      h = Math.imul(h, 0x01000193)
    }
    h ^= h >>> 16
    h = Math.imul(h, 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    h ^= h >>> 16
    return (h >>> 0) % this.shardCount
  }

  /**
   * The open frame of a shard: the caller writes one op (opcode, region,
   * operands) into it, then calls {@link commit} before yielding.
   */
  writer(shard: number): FrameWriter {
    return this.#shards[shard]!.writer
  }

  /** Registers the op just written to `shard` and makes sure the frame is sent this tick. */
  commit(shard: number, sink: Sink, index: number): void {
    const ops = this.#shards[shard]!.ops
    ops.sinks.push(sink)
    ops.indexes.push(index)
    ops.writeRegions.push(-1)
    ops.writeKeys.push(undefined)
    this.#scheduleFlush()
  }

  /**
   * {@link commit} for an op that changes `key` in `region` (or, with `key`
   * undefined, the whole region): until it is answered, direct reads of what
   * it changes are sent to the shard instead, so they see it.
   */
  commitWrite(shard: number, sink: Sink, index: number, region: number, key: string | undefined): void {
    const ch = this.#shards[shard]!
    const ops = ch.ops
    ops.sinks.push(sink)
    ops.indexes.push(index)
    ops.writeRegions.push(region)
    ops.writeKeys.push(key)
    if (key === undefined) {
      ch.barriers[region]!++
    } else {
      const pending = this.#pendingWrites[region]!
      pending.set(key, (pending.get(key) ?? 0) + 1)
    }
    this.#scheduleFlush()
  }

  /** Releases what op `i` of `ops` held back ({@link commitWrite}). */
  #released(ch: ShardChannel, ops: FrameOps, i: number): void {
    const region = ops.writeRegions[i]!
    if (region < 0) return
    const key = ops.writeKeys[i]
    if (key === undefined) {
      ch.barriers[region]!--
      return
    }
    const pending = this.#pendingWrites[region]!
    const n = pending.get(key)!
    if (n === 1) pending.delete(key)
    else pending.set(key, n - 1)
  }

  /** Settles op `i` of `ops` with a result or an error. */
  #settle(ch: ShardChannel, ops: FrameOps, i: number, result: unknown, error?: Error): void {
    this.#released(ch, ops, i)
    if (error === undefined) ops.sinks[i]!.resolve(ops.indexes[i]!, result)
    else ops.sinks[i]!.reject(ops.indexes[i]!, error)
  }

  // ── direct reads (see src/shared_region.ts) ─────────────────────────────

  /**
   * The shard of `key` when its region's reader found a candidate entry (in
   * #found; callers read it, then check `valid`); undefined when only the shard can answer.
   */
  #directFind(shard: number, region: number, key: string): ShardChannel | undefined {
    const ch = this.#shards[shard]!
    if (ch.dead !== undefined || ch.barriers[region] !== 0) return undefined
    const pending = this.#pendingWrites[region]!
    if (pending.size !== 0 && pending.has(key)) return undefined
    const len = this.#encodeKey(key)
    return ch.readers[region]!.find(this.#keyBytes, len, this.#keyHash, this.#found) ? ch : undefined
  }

  /**
   * Writes the UTF-8 bytes of `key` to #keyBytes and their FNV-1a hash to
   * #keyHash; returns the length. ASCII keys take one loop for both (~4x
   * faster than Buffer#write then hashing, measured on 9-byte keys).
   */
  #encodeKey(key: string): number {
    const kb = this.#keyBytes
    const n = key.length
    let h = 0x811c9dc5
    for (let i = 0; i < n; i++) {
      const c = key.charCodeAt(i)
      if (c >= 0x80) {
        const len = kb.write(key, 0, 'utf8')
        this.#keyHash = hashBytes(kb, 0, len)
        return len
      }
      kb[i] = c
      h = Math.imul(h ^ c, 0x01000193)
    }
    this.#keyHash = h >>> 0
    return n
  }

  /**
   * The value of `key` read straight from its shard's memory, or
   * {@link ASK_SHARD}. Counts a hit and logs the read for LRU order.
   * Compressed values are left to the shard, which decompresses them off this thread.
   */
  readValue(shard: number, region: number, key: string): unknown {
    const ch = this.#directFind(shard, region, key)
    if (ch === undefined) return ASK_SHARD
    const reader = ch.readers[region]!
    const f = this.#found
    const flags = reader.flags(f)
    if ((flags & SlotFlag.COMPRESSED) !== 0) return ASK_SHARD
    const tag = flags & SlotFlag.TAG_MASK
    let value: unknown
    if (tag === ValueTag.STRING || (tag === ValueTag.CODEC && this.#codec === undefined)) {
      const text = reader.valueString(f)
      if (text === undefined || !reader.valid(f)) return ASK_SHARD
      value = decodeText(tag, text) // may throw: a stored value the codec cannot read
    } else {
      const bytes = reader.valueCopy(f)
      if (bytes === undefined || !reader.valid(f)) return ASK_SHARD
      value = tag === ValueTag.BUFFER ? bytes : decodeValue(tag, bytes, this.#codec)
    }
    ch.log.hits[region]!++
    if (ch.lru[region]) ch.log.record(region, f.slot, f.seq)
    return value
  }

  /** Whether `key` has a live entry, read straight from shared memory: `true`, or {@link ASK_SHARD}. */
  readHas(shard: number, region: number, key: string): true | typeof ASK_SHARD {
    const ch = this.#directFind(shard, region, key)
    return ch !== undefined && ch.readers[region]!.valid(this.#found) ? true : ASK_SHARD
  }

  /** Remaining ms of `key` (as TTL reports it), read straight from shared memory, or {@link ASK_SHARD}. */
  readTtl(shard: number, region: number, key: string): number | typeof ASK_SHARD {
    const ch = this.#directFind(shard, region, key)
    if (ch === undefined) return ASK_SHARD
    const reader = ch.readers[region]!
    const expiresAt = reader.expiresAt(this.#found)
    if (!reader.valid(this.#found)) return ASK_SHARD
    return expiresAt === Infinity ? Infinity : Math.max(1, Math.ceil(expiresAt - monotonicNow()))
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    process.nextTick(this.#flush)
  }

  /** Writes a whole op with no operands but opcode and region (CLEAR, CLEANUP, CRASH). */
  simple(shard: number, op: number, region: number, sink: Sink, index: number): void {
    const w = this.writer(shard)
    w.u8(op)
    w.u8(region)
    this.commit(shard, sink, index)
  }

  /** @internal Makes a shard thread die of an uncaught exception (tests of crash handling). */
  crashShard(shard: number, sink: Sink): void {
    this.simple(shard, Op.CRASH, 0, sink, 0)
  }

  /** Calls every shard's control API and returns the answers in shard order; `undefined` for a shard that is down for good. */
  async control<T>(call: (c: Remote<ShardControl>) => Promise<T>): Promise<(T | undefined)[]> {
    await this.drain()
    return Promise.all(this.#shards.map((ch) => (ch.dead === undefined ? this.#controlCall(ch, call) : undefined)))
  }

  /** Resolves when every op issued so far has been answered. */
  drain(): Promise<void> {
    this.#flush()
    return Promise.all(
      this.#shards.map((ch) =>
        ch.inflight.size === 0 && ch.ops.sinks.length === 0
          ? undefined
          : new Promise<void>((resolve) => ch.drained.push(resolve)),
      ),
    ).then(() => undefined)
  }

  /** Lets in-flight ops finish, then stops every shard thread. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true
      await this.drain()
      await Promise.all(
        this.#shards.map(async (ch) => {
          ch.control[releaseProxy]()
          ch.controlPort.close()
          await ch.worker.terminate()
        }),
      )
    })()
    return this.#closed
  }

  async #controlCall<T>(ch: ShardChannel, call: (c: Remote<ShardControl>) => Promise<T>): Promise<T> {
    if (ch.dead !== undefined) throw ch.dead
    // An unref'd port would let the process exit while we wait for the answer.
    ch.controlPort.ref()
    try {
      return await Promise.race([call(ch.control), ch.died])
    } finally {
      ch.controlPort.unref()
    }
  }

  #flush = (): void => {
    this.#flushScheduled = false
    for (const ch of this.#shards) {
      if (ch.ops.sinks.length === 0) continue
      const w = ch.writer
      if (ch.dead !== undefined) {
        // Nothing is encoded or sent for a shard that is down: its ops fail at once.
        const ops = ch.ops
        ch.ops = newFrameOps()
        w.pos = 8
        for (let i = 0; i < ops.sinks.length; i++) this.#settle(ch, ops, i, undefined, ch.dead)
        this.#signalDrained(ch)
        continue
      }
      if (ch.inflight.size >= MAX_FRAMES_IN_FLIGHT && w.pos < FRAME_SOFT_LIMIT_BYTES) continue
      const id = this.#nextFrameId
      this.#nextFrameId = id === MAX_FRAME_ID ? 1 : id + 1
      w.putU32(0, id)
      w.putU32(4, ch.ops.sinks.length)
      // The shared buffer is free only when no frame is in flight (its reply would share the reply buffer).
      const shared = ch.inflight.size === 0 && w.pos <= SHARED_FRAME_BYTES
      let frame: Uint8Array | undefined
      let length = 0
      if (shared) {
        length = w.pos
        w.buf.copy(ch.requests, 0, 0, length)
      } else {
        frame = w.take()
      }
      w.pos = 8
      const ops = ch.ops
      ch.ops = newFrameOps()
      if (ch.inflight.size === 0) ch.worker.ref()
      ch.inflight.set(id, ops)
      const awaited =
        frame === undefined && ops.sinks.length <= SMALL_FRAME_OPS && this.#replySpinMs > 0 && Atomics.load(ch.signals, Signal.AWAKE) === 1
      if (awaited) {
        Atomics.store(ch.signals, Signal.WAITING, id)
        this.#awaited.push(ch)
      }
      this.framesSent++
      if (frame === undefined) ch.worker.postMessage(length)
      else ch.worker.postMessage(frame, [frame.buffer as ArrayBuffer])
      // After the post, so a shard that sees the count change finds the message already queued.
      Atomics.add(ch.signals, Signal.FRAMES_POSTED, 1)
    }
    if (this.#awaited.length > 0) this.#spinForReplies()
  }

  /**
   * A small frame sent to a shard that is awake is answered in a few µs, while
   * letting this thread sleep until the reply's message arrives costs ~25 µs
   * more (a thread wake-up). So the flush waits for such replies by spinning,
   * for at most `replySpinMicros`, and reads them straight from the shared
   * reply buffer. The compare-and-swap on WAITING settles the race with a
   * shard that answers just as we give up: whoever loses, nothing is lost.
   */
  #spinForReplies(): void {
    const awaited = this.#awaited
    const deadline = performance.now() + this.#replySpinMs
    for (let i = 0; i < awaited.length; i++) {
      const ch = awaited[i]!
      const signals = ch.signals
      for (let n = 1; Atomics.load(signals, Signal.WAITING) !== REPLY_TAKEN; n++) {
        if ((n & 31) === 0 && performance.now() > deadline) break
      }
      const waitingFor = Atomics.load(signals, Signal.WAITING)
      if (waitingFor !== REPLY_TAKEN && Atomics.compareExchange(signals, Signal.WAITING, waitingFor, 0) === waitingFor) {
        continue // gave up first: the shard will post the reply
      }
      Atomics.store(signals, Signal.WAITING, 0)
      this.#onReply(ch, ch.replies.subarray(0, Atomics.load(signals, Signal.REPLY_LENGTH)))
    }
    awaited.length = 0
  }

  #onReply = (ch: ShardChannel, frame: Uint8Array): void => {
    ch.crashesInARow = 0
    const r = new FrameReader(frame)
    const id = r.u32()
    const count = r.u32()
    const ops = ch.inflight.get(id)
    if (ops === undefined) return // answered after its shard was declared dead: already rejected
    ch.inflight.delete(id)
    if (ch.inflight.size === 0) ch.worker.unref()
    let i = 0
    try {
      for (; i < count; i++) {
        const status = r.u8()
        if (status === Status.ERROR) {
          const code = r.string()
          const message = r.string()
          this.#settle(ch, ops, i, undefined, toError(code, message))
          continue
        }
        let result: unknown
        try {
          result = this.#readResult(status, r)
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

  #readResult(status: number, r: FrameReader): unknown {
    switch (status) {
      case Status.MISS:
        return undefined
      case Status.TRUE:
        return true
      case Status.FALSE:
        return false
      case Status.NUMBER:
        return r.f64()
      case Status.VALUE: {
        const tag = r.u8()
        return decodeValue(tag, r.bytesView(), this.#codec)
      }
      case Status.ENTRY: {
        const tag = r.u8()
        const bytes = r.bytesView()
        const createdAt = r.f64()
        const expiresAt = r.f64()
        const ttlRemaining = r.f64()
        const sizeBytes = r.u32()
        const storedBytes = r.u32()
        const compressed = r.u8() === 1
        const meta = r.bytesView()
        const entry: RawEntry = {
          value: decodeValue(tag, bytes, this.#codec),
          createdAt,
          expiresAt,
          ttlRemaining,
          sizeBytes,
          storedBytes,
          compressed,
          // Copied: the reply buffer is reused once this frame is read.
          metadata: meta.length === 0 ? undefined : Buffer.from(meta),
        }
        return entry
      }
      case Status.KEYS: {
        const n = r.u32()
        const keys = new Array<string>(n)
        for (let i = 0; i < n; i++) keys[i] = r.string()
        return keys
      }
      default:
        throw new InternalError(`unknown reply status ${status}`)
    }
  }

  #onExit = (ch: ShardChannel, code: number, error: Error | undefined): void => {
    if (this.#closing && error === undefined) return
    const crash = new ShardCrashedError(ch.index, { cause: error ?? new Error(`shard thread exited with code ${code}`) })
    ch.markDied(crash)
    ch.controlPort.close()
    const lost = [...ch.inflight.values()]
    ch.inflight.clear()
    for (const f of lost) {
      for (let i = 0; i < f.sinks.length; i++) this.#settle(ch, f, i, undefined, crash)
    }
    if (this.#closing) {
      this.#signalDrained(ch)
      return
    }
    ch.crashesInARow++
    if (ch.crashesInARow > MAX_RESTARTS_IN_A_ROW) {
      const cause = new Error(`shard ${ch.index} crashed ${ch.crashesInARow} times in a row without answering a frame`, { cause: crash.cause })
      ch.dead = new ShardCrashedError(ch.index, { cause, restarting: false })
      this.#afterReply(ch) // rejects what waits for it
      return
    }
    ch.restarts++
    ch.spawn()
    // Ops written while the thread was down are still in the open frame.
    this.#afterReply(ch)
  }

  #signalDrained(ch: ShardChannel): void {
    const waiting = ch.drained
    ch.drained = []
    for (const resolve of waiting) resolve()
  }
}

function newFrameOps(): FrameOps {
  return { sinks: [], indexes: [], writeRegions: [], writeKeys: [] }
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes))

function toError(code: string, message: string): CacheError {
  if (code === ErrorCodes.CLOSED) return new ClosedError(message)
  return new CacheError((KNOWN_CODES.has(code) ? code : ErrorCodes.INTERNAL) as ErrorCode, message)
}
