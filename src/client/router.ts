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
 * (src/wire/shared_region.ts) and send an op only when that cannot answer for sure.
 * Order is kept: while a write to a key (or a clear or pattern delete of its
 * region) is queued or in flight, reads of that key go through the shard's
 * frames, behind the write, as they would on a pipelined connection.
 */
import {
  FrameReader,
  FrameWriter,
  MAX_FRAME_ID,
  Op,
  Status,
} from '../wire/protocol.js'
import { ValueTag } from '../wire/protocol.js'
import { CacheError, ClosedError, ErrorCodes, InternalError, NotANumberError, ShardCrashedError } from '../errors.js'
import type { ErrorCode } from '../errors.js'
import { plural } from '../messages.js'
import { Header, SLOT_WORDS, SlotFlag, hashBytes, monotonicNow, newFound } from '../wire/shared_region.js'
import type { AccessLogWriter, Found, SharedRegionReader } from '../wire/shared_region.js'
import { NEAR_EXPIRES_F64, NEAR_WORDS, NearFlag, NearRegion, NearWord } from './near_cache.js'
import { decodeValue, decodeText } from '../wire/values.js'
import type { Codec } from '../wire/values.js'
import type { FrameSender, Sink } from './ops/sender.js'
import { readStaleReply, readValueReply } from './ops/values.js'
import { readEntryReply } from './ops/entry.js'
import { readKeysReply, readScanPage } from './ops/scan.js'
import { readExportPage } from './ops/export.js'

/** What a direct read returns when only the shard can answer. */
export const ASK_SHARD: unique symbol = Symbol('ask the shard')

/**
 * How this thread reaches one shard thread: the owner's {@link ShardThread}
 * (src/client/shard_thread.ts) or an attached thread's port (src/client/attach.ts).
 */
export interface ShardLink {
  /** Readers of the current thread's shared memory, one per region. */
  readonly readers: SharedRegionReader[]
  /** This thread's log of direct reads for the shard. */
  readonly log: AccessLogWriter
  /** False while there is no shard thread to send to (an attached link waiting for its new port). */
  readonly ready: boolean
  /**
   * Sends the frame in `w[0, w.pos)` (`alone`: no other frame is in flight).
   * Returns whether the router should spin for the reply with {@link takeReply}.
   */
  send(w: FrameWriter, id: number, ops: number, alone: boolean): boolean
  /** Waits (spinning, until `deadline`) for the reply to the frame just sent; undefined: it will be posted. */
  takeReply(deadline: number): Uint8Array | undefined
  /** Keeps the process alive while frames are in flight. */
  ref(): void
  unref(): void
  /** After {@link LinkEvents.lost}: get a new shard thread (owner) or a port to it (attached). */
  restart(): void
  close(): Promise<void>
}

/** What links report to their router. */
export interface LinkEvents {
  reply(shard: number, frame: Uint8Array): void
  /** The shard thread died (or, for an attached link, its port closed): what is in flight is lost. */
  lost(shard: number, cause: Error): void
  /** A link that was not ready is again. */
  ready(shard: number): void
  /** The shard will not come back; every op to it fails with `error`. */
  dead(shard: number, error: Error): void
}

/**
 * Ops of a frame: who gets each result, and, for writes, what they hold back
 * (see {@link Router.commitWrite}): the region (-1: not a write) and the
 * key's slot in the pending-write counts (-1: the whole region).
 *
 * A frame's arrays are emptied once its ops are settled ({@link Router}'s
 * #retire). V8 pretenures this literal after a bulk load (frames of
 * thousands of ops in flight across scavenges teach it that they live long),
 * and an old-space object keeps everything it points to alive through every
 * scavenge until the next full GC, dead or not: the settled callbacks of every
 * later op were promoted with it (~440 KB per scavenge at 10k writes/s in the
 * event-loop scenario, ~120 KB once emptied).
 */
interface FrameOps {
  /** performance.now() when the frame was sent (its round trip goes to the latency histogram). */
  sentAt: number
  sinks: Sink[]
  indexes: number[]
  writeRegions: number[]
  writeSlots: number[]
  /** Per op: the bytes it may add to its region ({@link Router.commitWrite}'s `grows`), 0 for none. */
  writeGrowth: number[]
}

/**
 * Frames a shard may have unanswered before new ops wait for a reply. A shard
 * handles frames one at a time, so a second frame in flight only saves the
 * hand-over; more would fragment: with N shards, every reply's continuations
 * spread over all shards, and flushing each tick halves the frame size each
 * round trip until frames hold one op (measured: 512 concurrent callers on 2
 * shards fell to 1.0 op per frame and ~80k ops/s).
 */
const MAX_FRAMES_IN_FLIGHT = 1

/**
 * Slots per region of the pending-write counts. A write counts in its key's
 * slot until the shard answers it, and a direct read of any key in a counted
 * slot asks the shard instead: a shared slot costs a round trip, never a
 * stale read (with 50 writes in flight, ~1% of keys; while a 2,000-entry
 * mset is in flight, ~40%). Counts instead of a Map from key to count: that
 * Map, with the key strings it held and its table rebuilt as keys came and
 * went, was ~20 KB of the ~120 KB each scavenge promoted in the event-loop
 * scenario, and it cost a string hash per write and per read. 16 KB per
 * region and thread.
 */
const PENDING_SLOTS = 1 << 12
/** A frame this large is sent even when the shard is busy, so frames stay bounded. */
const FRAME_SOFT_LIMIT_BYTES = 1 << 20

/**
 * A near hit is logged for the shard's LRU order once in this many (a power
 * of two): a log entry is three shared stores and a check of the ring, on
 * the one path that must stay close to a Map lookup, and a key hot enough to
 * live in the near cache is still logged many times a second.
 */
const NEAR_LOG_EVERY = 16

/** A shard that crashes again before answering its first frame is not restarted after this many tries in a row. */
const MAX_RESTARTS_IN_A_ROW = 5

/** This thread's queue for one shard, whatever the link. */
class ShardChannel {
  readonly writer = new FrameWriter()
  /** The open frame's ops. */
  ops: FrameOps = newFrameOps()
  readonly inflight = new Map<number, FrameOps>()
  /** Per region: clears or pattern deletes queued or in flight. */
  readonly barriers: Int32Array
  /** Per region: writes queued or in flight that may add an entry (and so evict others), and the bytes they may add. */
  readonly growing: Int32Array
  readonly growingBytes: Float64Array
  restarts = 0
  crashesInARow = 0
  /** Set once the shard is down for good: every op to it fails. */
  dead: Error | undefined
  drained: (() => void)[] = []
  link!: ShardLink

  constructor(
    readonly index: number,
    regions: number,
  ) {
    this.writer.u32(0) // frame id, patched on flush
    this.writer.u32(0) // op count, patched on flush
    this.barriers = new Int32Array(regions)
    this.growing = new Int32Array(regions)
    this.growingBytes = new Float64Array(regions)
  }
}

/** How a router is set up; the same for the owner and attached threads, but for the links. */
export interface RouterConfig {
  shards: number
  /** Per region: whether reads reorder it (LRU), so direct reads are logged. */
  lru: boolean[]
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

/**
 * `String.prototype.charCodeAt`, called as `charCodeAt.call(s, i)` in the
 * loops that encode and hash keys (here and in FrameWriter#key).
 *
 * Why not `s.charCodeAt(i)`: V8 inlines that call only while the map of
 * `String.prototype` stays stable, and any `class X extends String` loaded in
 * the process (ioredis 6 has one, `VerbatimString`) makes it unstable for
 * good; each `s.charCodeAt(i)` is then a builtin call. Through `.call` on a
 * constant, TurboFan inlines it whatever that map is: a 15-character key took
 * 148 ns to encode the first way and 32 ns this way (Node 20). The constant
 * must be this module's own: an imported binding is not folded (94 ns).
 */
const charCodeAt = String.prototype.charCodeAt

/**
 * The shard of a key from its 32-bit FNV-1a: the finalizer (murmur3's fmix32)
 * decorrelates the shard from the hash's low bits, which pick the key's bucket
 * inside the shard. The shard is taken from the high bits by a multiply
 * (Lemire's fastrange) rather than `%`: a uint32 modulo is a float modulo in
 * V8, a C call that cost 19 ns per key against 1.6 ns for this.
 */
function shardOfHash(fnv: number, shards: number): number {
  let h = fnv | 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return Math.floor(((h >>> 0) * shards) / 4294967296)
}

/**
 * FNV-1a over the UTF-16 code units of `key`, as a uint32: what routes a key
 * to its shard and to its pending-write slot. For ASCII keys it equals the
 * FNV of the UTF-8 bytes, which the direct read computes anyway.
 */
function keyHash16(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ charCodeAt.call(key, i), 0x01000193)
  return h >>> 0
}

/**
 * Round trips of the frames a thread sends to its shards, in fixed
 * exponential buckets (Prometheus histogram style): one record per frame, not
 * per operation, so the hot path pays two clock reads per frame (send, reply).
 * Buckets rather than perf_hooks' HDR histogram (the bus's propagation
 * summary): bucket counts add up across shards and processes in Prometheus,
 * percentiles do not, and recording is a short loop, not a native call.
 */
export class FrameLatency {
  /** Upper bounds in seconds: 10 µs to ~1.3 s, doubling. */
  static readonly BOUNDS = Array.from({ length: 18 }, (_, i) => 10e-6 * 2 ** i)
  readonly counts = new Float64Array(FrameLatency.BOUNDS.length + 1)
  sum = 0
  count = 0

  /** Records a round trip of `ms` milliseconds. */
  record(ms: number): void {
    const s = ms / 1000
    let i = 0
    while (i < FrameLatency.BOUNDS.length && s > FrameLatency.BOUNDS[i]!) i++
    this.counts[i]!++
    this.sum += s
    this.count++
  }

  /** Cumulative counts per bound (the last is +Inf), the sum in seconds and the count. */
  snapshot(): { bounds: number[]; cumulative: number[]; sum: number; count: number } {
    const cumulative: number[] = []
    let c = 0
    for (const n of this.counts) cumulative.push((c += n))
    return { bounds: FrameLatency.BOUNDS, cumulative, sum: this.sum, count: this.count }
  }

  reset(): void {
    this.counts.fill(0)
    this.sum = 0
    this.count = 0
  }
}

export class Router implements FrameSender {
  /** Round trips of this thread's frames to its shards. */
  readonly frameLatency = new FrameLatency()
  /**
   * Whether reads may be answered on this thread (near cache, shared memory).
   * Off while someone listens to 'hit' or 'miss' events, which only shards see.
   */
  directReads = true
  readonly shardCount: number
  readonly #shards: ShardChannel[]
  readonly #codec: Codec | undefined
  readonly #lru: boolean[]
  readonly #owner: boolean
  /** Non-zero once the owner closed the cache; a private zero for the owner itself. */
  readonly #ownerState: Int32Array
  /**
   * Writes of this thread queued or in flight, counted per region and key
   * slot (region * PENDING_SLOTS + the key's hash bits): a direct read of a
   * key whose slot counts one goes to the shard (see {@link PENDING_SLOTS}).
   */
  readonly #pending: Int32Array
  /** The same per region, summed: zero (the common case for reads) needs no hash. */
  readonly #pendingInRegion: Int32Array
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
  /** Per region, when the near cache is on. */
  readonly #near: NearRegion[] | undefined
  /** Near hits so far: one in {@link NEAR_LOG_EVERY} is logged for the shard's LRU order. */
  #nearHits = 0
  /** UTF-8 bytes of the key of the current direct read (keys are at most 65535 bytes). */
  readonly #keyBytes = Buffer.allocUnsafe(0x10000)
  #keyHash = 0
  /** Whether the key #encodeKey last saw was ASCII (then #keyHash is also shardOf's FNV). */
  #keyAscii = true
  readonly #found: Found = newFound()
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
    this.shardCount = config.shards
    this.#codec = config.codec
    this.#lru = config.lru
    this.#owner = config.owner
    this.#ownerState = config.ownerState ?? new Int32Array(1)
    const regions = config.lru.length
    this.#pending = new Int32Array(config.lru.length * PENDING_SLOTS)
    this.#pendingInRegion = new Int32Array(config.lru.length)
    this.#writeGen = new Uint32Array(config.lru.length * PENDING_SLOTS)
    this.#regionWriteGen = new Uint32Array(config.lru.length)
    this.#remoteAt = new Float64Array(config.lru.length * PENDING_SLOTS).fill(-Infinity)
    this.#remoteRegionAt = new Float64Array(config.lru.length).fill(-Infinity)
    this.#near = config.nearCacheEntries > 0 ? config.lru.map(() => new NearRegion(config.nearCacheEntries)) : undefined
    this.#replySpinMs = config.replySpinMicros / 1000
    this.#shards = Array.from({ length: config.shards }, (_, i) => new ShardChannel(i, regions))
    const events: LinkEvents = {
      reply: (shard, frame) => this.#onReply(this.#shards[shard]!, frame),
      lost: (shard, cause) => this.#onLost(this.#shards[shard]!, cause),
      ready: (shard) => this.#afterReply(this.#shards[shard]!),
      dead: (shard, error) => {
        const ch = this.#shards[shard]!
        ch.dead = error
        this.#afterReply(ch)
      },
    }
    for (const ch of this.#shards) ch.link = config.link(ch.index, events)
  }

  /** The link to shard `index` (the owner's are {@link ShardThread}s). */
  link(index: number): ShardLink {
    return this.#shards[index]!.link
  }

  /** Shard restarts since the router started. */
  get restarts(): number {
    return this.#shards.reduce((n, ch) => n + ch.restarts, 0)
  }

  /** Whether the cache was closed, here or (for an attached thread) by its owner. */
  get closed(): boolean {
    return this.#closing || this.#ownerState[0] !== 0
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
    return this.shardCount === 1 ? 0 : shardOfHash(keyHash16(key), this.shardCount)
  }

  /** The hash {@link shardOf} routes by; writers pass it on to {@link commitWrite}, so a write hashes its key once. */
  keyHash(key: string): number {
    return keyHash16(key)
  }

  /** {@link shardOf} from the key's {@link keyHash}. */
  shardOfHash(hash: number): number {
    return this.shardCount === 1 ? 0 : shardOfHash(hash, this.shardCount)
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
   */
  commitWrite(shard: number, sink: Sink, index: number, region: number, key: string | undefined, hash: number, grows = 0): void {
    const ch = this.#shards[shard]!
    const ops = ch.ops
    ops.sinks.push(sink)
    ops.indexes.push(index)
    ops.writeRegions.push(region)
    ops.writeGrowth.push(grows)
    if (grows > 0) {
      ch.growing[region]!++
      ch.growingBytes[region]! += grows
    }
    if (key === undefined) {
      ops.writeSlots.push(-1)
      ch.barriers[region]!++
      this.#regionWriteGen[region]!++
    } else {
      const slot = region * PENDING_SLOTS + (hash & (PENDING_SLOTS - 1))
      ops.writeSlots.push(slot)
      this.#writeGen[slot]!++
      this.#pending[slot]!++
      this.#pendingInRegion[region]!++
      // Not needed for correctness (its slot's version will change), only to free it sooner.
      this.#near?.[region]!.delete(key)
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
    const grows = ops.writeGrowth[i]!
    if (grows > 0) {
      ch.growing[region]!--
      ch.growingBytes[region]! -= grows
    }
    const slot = ops.writeSlots[i]!
    if (slot < 0) {
      ch.barriers[region]!--
      return
    }
    this.#pending[slot]!--
    this.#pendingInRegion[region]!--
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

  // ── direct reads (see src/wire/shared_region.ts) ─────────────────────────────

  /**
   * The shard of `key` when its region's reader found a candidate entry (in
   * #found; callers read it, then check `valid`); undefined when only the shard can answer.
   */
  #directFind(shard: number, region: number, key: string): ShardChannel | undefined {
    const ch = this.#shards[shard]!
    const len = this.#encodeKey(key)
    if (!this.#readable(ch, region, key, this.#keyAscii ? this.#keyHash : -1)) return undefined
    // find() compares the key bytes in the entry's chunk: inside a read (see src/wire/shared_region.ts).
    // What callers read after it (flags, expiry, versions) are atomic slot words, checked by valid().
    const log = ch.link.log
    log.enterRead()
    try {
      return ch.link.readers[region]!.find(this.#keyBytes, len, this.#keyHash, this.#found) ? ch : undefined
    } finally {
      log.exitRead()
    }
  }

  /**
   * Whether shared memory may answer for `key`: the shard is up and no write
   * of this thread to the key (or to a key sharing its slot of the pending
   * counts) is in flight. `hash` is the key's {@link keyHash16} if the caller
   * has it, else -1: it is only computed while some write to the region is pending.
   */
  #readable(ch: ShardChannel, region: number, key: string, hash: number): boolean {
    if (ch.dead !== undefined || !ch.link.ready || ch.barriers[region] !== 0) return false
    if (ch.growing[region] !== 0 && !this.#roomFor(ch, region)) return false
    if (this.#pendingInRegion[region] === 0) return true
    const h = hash < 0 ? keyHash16(key) : hash
    return this.#pending[region * PENDING_SLOTS + (h & (PENDING_SLOTS - 1))] === 0
  }

  /**
   * Whether the shard's slice of `region` has room for every write of this
   * thread that may add to it and is not answered yet, so that none of them
   * can evict: the room the shard published after its last frame (src/wire/shared_region.ts
   * Header.ROOM_ENTRIES), less all of them, even those it has applied since.
   * A cache below its budgets keeps its direct reads under writes; a full one
   * sends reads that follow a set to the shard until the set is answered.
   */
  #roomFor(ch: ShardChannel, region: number): boolean {
    const header = ch.link.readers[region]!.views.header
    return Atomics.load(header, Header.ROOM_ENTRIES) >= ch.growing[region]! && Atomics.load(header, Header.ROOM_BYTES) >= ch.growingBytes[region]!
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
      const c = charCodeAt.call(key, i)
      if (c >= 0x80) {
        const len = kb.write(key, 0, 'utf8')
        this.#keyHash = hashBytes(kb, 0, len)
        this.#keyAscii = false
        return len
      }
      kb[i] = c
      h = Math.imul(h ^ c, 0x01000193)
    }
    this.#keyHash = h >>> 0
    this.#keyAscii = true
    return n
  }

  /**
   * The value of `key` from the near cache or straight from its shard's
   * memory, or {@link ASK_SHARD}. Counts a hit and logs the read for LRU
   * order. Compressed values are left to the shard, which decompresses them
   * off this thread.
   */
  readValue(region: number, key: string): unknown {
    if (!this.directReads) return ASK_SHARD
    const near = this.#near?.[region]
    if (near !== undefined) {
      const i = near.find(key)
      if (i >= 0) {
        const v = this.#nearHit(near, i, region, key)
        if (v !== ASK_SHARD) return v
        near.remove(i)
      }
    }
    return this.#readShared(region, key, near)
  }

  /**
   * The direct read of {@link readValue}, kept out of it so that the near-hit
   * path above stays small enough for V8 to inline into its callers.
   */
  #readShared(region: number, key: string, near: NearRegion | undefined): unknown {
    // One pass over the key gives its bytes, its bucket hash and (for ASCII keys,
    // whose UTF-8 bytes are their char codes) the FNV that shardOf would compute again.
    const len = this.#encodeKey(key)
    const shard = this.shardCount === 1 ? 0 : this.#keyAscii ? shardOfHash(this.#keyHash, this.shardCount) : this.shardOf(key)
    const ch = this.#shards[shard]!
    // For ASCII keys the bucket hash is also keyHash16 (UTF-8 bytes = UTF-16 code units).
    if (!this.#readable(ch, region, key, this.#keyAscii ? this.#keyHash : -1)) return ASK_SHARD
    const reader = ch.link.readers[region]!
    // Before the slot is read (see NearRegion): only a near entry needs it, and under writes its cache line moves.
    const epoch = near === undefined ? 0 : Atomics.load(reader.views.header, Header.EPOCH)
    const f = this.#found
    const log = ch.link.log
    let tag: number
    let expiresAt: number
    let text: string | undefined
    let bytes: Buffer | undefined
    // From the key compare to the last byte copied, this thread is inside a
    // read: the shard reuses no chunk it may be reading (see src/wire/shared_region.ts).
    // Decoding happens after, on this thread's own copy.
    log.enterRead()
    try {
      if (!reader.find(this.#keyBytes, len, this.#keyHash, f)) return ASK_SHARD
      const flags = reader.flags(f)
      // Compressed values are decompressed by the shard; grace entries may be stale, which the shard decides.
      if ((flags & (SlotFlag.COMPRESSED | SlotFlag.GRACE)) !== 0) return ASK_SHARD
      tag = flags & SlotFlag.TAG_MASK
      expiresAt = reader.expiresAt(f)
      if (tag === ValueTag.STRING || (tag === ValueTag.CODEC && this.#codec === undefined)) text = reader.valueString(f)
      else bytes = reader.valueCopy(f)
      if ((text === undefined && bytes === undefined) || !reader.valid(f)) return ASK_SHARD
    } finally {
      log.exitRead()
    }
    let value: unknown
    if (text !== undefined) value = decodeText(tag, text) // may throw: a stored value the codec cannot read
    else value = tag === ValueTag.BUFFER ? bytes : decodeValue(tag, bytes!, this.#codec)
    log.hits[region]!++
    if (this.#lru[region]) log.record(region, f.slot, f.seq)
    if (near !== undefined && near.admits(this.#keyHash)) addNear(near, key, value, tag, shard, reader, f, epoch, expiresAt)
    return value
  }

  /**
   * Near entry `i`'s value if shared memory proves it current: same shard
   * thread, no write of this thread pending, slot and region versions
   * unchanged, not expired. Else {@link ASK_SHARD}.
   */
  #nearHit(near: NearRegion, i: number, region: number, key: string): unknown {
    const m = near.meta
    const b = i * NEAR_WORDS
    const ch = this.#shards[m[b + NearWord.SHARD]!]!
    const reader = near.refs[2 * i + 1] as SharedRegionReader
    if (ch.link.readers[region] !== reader || !this.#readable(ch, region, key, -1)) return ASK_SHARD
    // Nothing in the region changed since the entry was last checked: current, without reading its slot.
    // Else the slot and region versions, read in place (not through a reader method), and the entry re-stamped.
    const views = reader.views
    const epoch = Atomics.load(views.header, Header.EPOCH)
    if (epoch !== m[b + NearWord.EPOCH]) {
      if (Atomics.load(views.slots, m[b + NearWord.SLOT]! * SLOT_WORDS) !== m[b + NearWord.SEQ] || Atomics.load(views.header, Header.SEQ) !== m[b + NearWord.REGION_SEQ]) {
        return ASK_SHARD
      }
      m[b + NearWord.EPOCH] = epoch
    }
    const expiresAt = near.metaF[i * (NEAR_WORDS / 2) + NEAR_EXPIRES_F64]!
    if (expiresAt !== Infinity && expiresAt <= monotonicNow()) return ASK_SHARD
    const flags = m[b + NearWord.FLAGS]!
    m[b + NearWord.FLAGS] = flags | NearFlag.USED
    const log = ch.link.log
    log.hits[region]!++
    // Hot keys are hit often enough that a sample keeps them recent in the shard's LRU.
    if (this.#lru[region] && (++this.#nearHits & (NEAR_LOG_EVERY - 1)) === 0) log.record(region, m[b + NearWord.SLOT]!, m[b + NearWord.SEQ]!)
    const v = near.refs[2 * i]
    // Binary values are copied per hit, as a direct read would: callers may write to them.
    return (flags & NearFlag.BINARY) !== 0 ? copyBytes(v as Uint8Array) : v
  }

  /**
   * Keeps a value its shard answered (GET_NEAR: one this thread could not
   * read from shared memory, such as a compressed one) in the near cache, if
   * admitted. The versions are the shard's as it read the value, so the
   * entry is current exactly while they are, as for one added by a direct read.
   */
  #keepNear(ch: ShardChannel, region: number, keyBytes: Buffer, value: unknown, tag: number, f: Found, epoch: number, expiresAt: number): void {
    const near = this.#near?.[region]
    if (near === undefined || ch.dead !== undefined || !ch.link.ready) return
    const reader = ch.link.readers[region]
    if (reader === undefined || !reader.covers(f.slot) || !near.admits(hashBytes(keyBytes, 0, keyBytes.length))) return
    addNear(near, keyBytes.toString('utf8'), value, tag, ch.index, reader, f, epoch, expiresAt)
  }

  /** The op a get sends its shard: GET_NEAR when this thread keeps a near cache, so the answer can go in it. */
  get getOp(): number {
    return this.#near === undefined ? Op.GET : Op.GET_NEAR
  }

  /** Whether this thread's near cache holds an entry (current or not) for `key` in `region`. */
  nearHas(region: number, key: string): boolean {
    return (this.#near?.[region]!.find(key) ?? -1) >= 0
  }

  /** Near-cache entries held for `region` on this thread. */
  nearSize(region: number): number {
    return this.#near?.[region]!.size ?? 0
  }

  /** Whether `key` has a live entry, read straight from shared memory: `true`, or {@link ASK_SHARD}. */
  readHas(shard: number, region: number, key: string): true | typeof ASK_SHARD {
    const ch = this.#directFind(shard, region, key)
    if (ch === undefined) return ASK_SHARD
    const reader = ch.link.readers[region]!
    const grace = (reader.flags(this.#found) & SlotFlag.GRACE) !== 0
    return !grace && reader.valid(this.#found) ? true : ASK_SHARD
  }

  /** Remaining ms of `key` (as TTL reports it), read straight from shared memory, or {@link ASK_SHARD}. */
  readTtl(shard: number, region: number, key: string): number | typeof ASK_SHARD {
    const ch = this.#directFind(shard, region, key)
    if (ch === undefined) return ASK_SHARD
    const reader = ch.link.readers[region]!
    const expiresAt = reader.expiresAt(this.#found)
    // A grace entry's expiry is its grace's end: the shard reports its fresh time.
    if ((reader.flags(this.#found) & SlotFlag.GRACE) !== 0 || !reader.valid(this.#found)) return ASK_SHARD
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

  /** Whether shard `index` is down for good. */
  isDead(index: number): boolean {
    return this.#shards[index]!.dead !== undefined
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

  /** Lets in-flight ops finish, then closes every link (the owner's stop their threads). Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.drain()
      this.#closing = true
      await Promise.all(this.#shards.map((ch) => ch.link.close()))
    })()
    return this.#closed
  }

  #flush = (): void => {
    this.#flushScheduled = false
    for (const ch of this.#shards) {
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
          const code = r.string()
          const message = r.string()
          this.#settle(ch, ops, i, undefined, toError(code, message))
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
        return readValueReply(r, this.#codec)
      case Status.VALUE_AT: {
        const tag = r.u8()
        const value = decodeValue(tag, r.bytesView(), this.#codec)
        const region = r.u8()
        const f = this.#replyFound
        f.slot = r.u32()
        f.seq = r.u32() | 0
        f.regionSeq = r.u32() | 0
        const epoch = r.u32() | 0
        const expiresAt = r.f64()
        this.#keepNear(ch, region, r.bytesView(), value, tag, f, epoch, expiresAt)
        return value
      }
      case Status.STALE:
        return readStaleReply(r, this.#codec)
      case Status.ENTRY:
        return readEntryReply(r, this.#codec)
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
        ch.dead = new ShardCrashedError(ch.index, { cause: why, restarting: false })
        this.#afterReply(ch) // rejects what waits for it
        return
      }
      ch.restarts++
    }
    ch.link.restart()
    // Ops written while the thread was down are still in the open frame.
    this.#afterReply(ch)
  }

  #signalDrained(ch: ShardChannel): void {
    const waiting = ch.drained
    ch.drained = []
    for (const resolve of waiting) resolve()
  }
}

function copyBytes(v: Uint8Array): Uint8Array {
  return Buffer.isBuffer(v) ? Buffer.from(v) : new Uint8Array(v)
}

/** Adds a value to a near cache; binary values get a copy of their own (the caller may write to the one it got). */
function addNear(near: NearRegion, key: string, value: unknown, tag: number, shard: number, reader: SharedRegionReader, f: Found, epoch: number, expiresAt: number): void {
  const binary = tag === ValueTag.BUFFER || tag === ValueTag.UINT8ARRAY
  near.add(key, binary ? copyBytes(value as Uint8Array) : value, binary, shard, reader, f, epoch, expiresAt)
}

function newFrameOps(): FrameOps {
  return { sentAt: 0, sinks: [], indexes: [], writeRegions: [], writeSlots: [], writeGrowth: [] }
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes))

function toError(code: string, message: string): CacheError {
  if (code === ErrorCodes.CLOSED) return new ClosedError(message)
  if (code === ErrorCodes.NOT_A_NUMBER) return new NotANumberError(message)
  return new CacheError((KNOWN_CODES.has(code) ? code : ErrorCodes.INTERNAL) as ErrorCode, message)
}
