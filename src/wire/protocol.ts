/**
 * The data-plane protocol between the router (calling thread) and a shard
 * (worker thread). This module is the single definition both sides import.
 *
 * The router collects every operation issued in one tick for a shard into one
 * request frame; the shard answers with one response frame holding one result
 * per operation, in the same order. Frames are plain bytes, transferred (not
 * cloned) with `postMessage`, because one structured-clone message per
 * operation costs ~8 µs while a frame of hundreds of operations costs about
 * the same as one.
 *
 * ```
 * request frame                         response frame
 * ┌────────────┬──────────┬──────┐      ┌────────────┬──────────┬────────┐
 * │ u32 frameId│ u32 count│ ops… │      │ u32 frameId│ u32 count│ results│
 * └────────────┴──────────┴──────┘      └────────────┴──────────┴────────┘
 * op:     u8 opcode, u8 region, operands (below)
 * key:    u16 byteLength, UTF-8 bytes
 * string: u32 byteLength, UTF-8 bytes
 * bytes:  u32 byteLength, bytes
 *
 * GET, HAS, TTL, GET_ENTRY, DELETE: key
 * SET:     u8 flags (SET_NX | SET_XX | SET_TTL | SET_META), key,
 *          [f64 ttl ms if SET_TTL], u8 value tag, bytes value, [bytes metadata if SET_META]
 * KEYS, DELETE_PATTERN: u8 hasPattern, [string glob]
 * CLEAR, CLEANUP: no operands
 *
 * result: u8 status, then
 *   MISS, TRUE, FALSE: nothing
 *   VALUE:  u8 value tag, bytes value
 *   NUMBER: f64
 *   ENTRY:  u8 value tag, bytes value, f64 createdAt, f64 expiresAt, f64 ttlRemaining, u32 sizeBytes,
 *           u32 storedBytes, u8 compressed, bytes metadata (length 0: none)
 *   KEYS:   u32 count, count × string
 *   ERROR:  string code, string message
 * ```
 * Transport: each shard has two shared buffers of SHARED_FRAME_BYTES, one per
 * direction. The router keeps at most one frame in flight per shard (see
 * src/client/router.ts), so a frame that fits is copied into the shared request
 * buffer and only its length is posted; the reply comes back the same way.
 * Posting a number costs ~0.6 µs where allocating and transferring a 22 KB
 * buffer costs ~8 µs plus its garbage collection. Frames that do not fit, or
 * that are sent while another is in flight, travel as transferred buffers.
 * A {@link FrameMessage} is therefore a length or a frame.
 *
 * Latency-bound callers (frames of at most {@link SMALL_FRAME_OPS} ops) get two
 * more shortcuts through a small shared Int32Array of {@link Signal}s, because
 * waking a sleeping thread costs ~25 µs on the reference machine while the
 * work of a small frame costs ~3 µs:
 * - after answering a small frame the shard stays awake (spinning) for a
 *   moment, watching FRAMES_POSTED, so the next frame finds it running;
 * - when the router sends a small frame to a shard that is awake, it may wait
 *   for the answer by spinning too: it publishes the frame id in WAITING, and
 *   the shard, instead of posting the reply, swaps WAITING to REPLY_TAKEN. The
 *   compare-and-swap on WAITING decides who delivers: if the router gives up
 *   first (swapping its id back to 0), the shard posts the reply as usual.
 * Spinning threads must not outnumber the cores: three spinning threads on two
 * cores made one-op round trips 4x slower at the median and 10x at p90, as the
 * scheduler preempted one of them. So shards share a count of spinning
 * shards, capped at the core count minus one (the calling thread's core).
 *
 * All integers are little-endian. Times are epoch milliseconds measured on a
 * monotonic clock (`performance.timeOrigin + performance.now()`); a missing
 * expiry is `Infinity`.
 */
/** Called as `charCodeAt.call(s, i)`, not `s.charCodeAt(i)`: see the same constant in src/client/direct_reads.ts for why (and why it is not imported). */
const charCodeAt = String.prototype.charCodeAt

export const Op = {
  GET: 1,
  HAS: 2,
  TTL: 3,
  GET_ENTRY: 4,
  SET: 5,
  DELETE: 6,
  KEYS: 7,
  DELETE_PATTERN: 8,
  CLEAR: 9,
  CLEANUP: 10,
  /** Removes the entries carrying a tag: region, tag (string) → NUMBER (entries removed). */
  INVALIDATE_TAG: 11,
  /** getOrCompute's read: VALUE when fresh, STALE for an entry past its fresh time but within grace, else MISS. */
  GET_STALE: 12,
  /** key, f64 by → NUMBER (the sum), or ERROR E_NOT_A_NUMBER. */
  INCR: 13,
  /** u8 flags (CasFlag), key, [expected tag u8 + bytes], new tag u8 + bytes, [f64 ttl], [meta bytes], [u16 n + n tags] → TRUE/FALSE. */
  CAS: 14,
  /** key → VALUE (and the entry is deleted) or MISS. */
  TAKE: 15,
  /** key, f64 ttl → TRUE (new TTL set) or FALSE (no live entry). */
  TOUCH: 16,
  /** f64 cursor, u32 count, glob (as KEYS) → SCAN: f64 next cursor (-1: done), u32 n, n strings. */
  SCAN: 17,
  /** f64 cursor, u32 count → EXPORT: f64 next cursor, u32 n, n entries (see workers/shard.ts writeExported). */
  EXPORT: 18,
  /**
   * key → as GET, but a hit on an entry without a grace period answers
   * VALUE_AT: sent by a thread with a near cache, which can then keep a value
   * it could not read from shared memory itself (a compressed one, say).
   */
  GET_NEAR: 19,
  /**
   * key → VALUE when there is a fresh entry, else MISS; counts nothing (no
   * hit, miss or event) and leaves LRU order alone: getOrCompute's re-check
   * before its loader runs, whose caller's read was counted already.
   */
  PEEK: 20,
  /** @internal Makes the shard throw an uncaught exception: the crash tests' real fault. */
  CRASH: 255,
} as const

export const Status = {
  MISS: 0,
  VALUE: 1,
  TRUE: 2,
  FALSE: 3,
  NUMBER: 4,
  ENTRY: 5,
  KEYS: 6,
  ERROR: 7,
  /** Like VALUE, for an entry past its fresh time but within its grace period. */
  STALE: 8,
  /** A page of a scan: next cursor and keys. */
  SCAN: 9,
  /** A page of a snapshot: next cursor and entries. */
  EXPORT: 10,
  /**
   * VALUE (tag, bytes) and what a near entry is checked against: u8 region,
   * u32 slot, u32 slot sequence, u32 region sequence and u32 region epoch (the
   * shard's Int32 words as read when it read the value), f64 expiry, then the
   * key's bytes. The answer of GET_NEAR.
   */
  VALUE_AT: 11,
} as const

export const SetFlag = {
  NX: 1,
  XX: 2,
  TTL: 4,
  META: 8,
  /** Followed, after the metadata, by u16 count and that many strings: the entry's tags. */
  TAGS: 16,
  /** Followed, after the tags, by f64: the grace period in ms (getOrCompute `grace`). */
  GRACE: 32,
} as const

export const CasFlag = {
  /** Swap only if there is no live entry (no expected value follows). */
  EXPECT_ABSENT: 1,
  TTL: 2,
  META: 4,
  TAGS: 8,
} as const

/** How a value's bytes turn back into the value the user stored. */
export const ValueTag = {
  STRING: 0,
  BUFFER: 1,
  UINT8ARRAY: 2,
  CODEC: 3,
} as const

/** Bytes every entry is charged on top of its key and value, for its slot in the store's arrays and its map entry. */
export const ENTRY_OVERHEAD_BYTES = 64

/**
 * Bytes an entry is charged per tag on top of the tag's UTF-8 bytes: what one
 * entry–tag link costs a shard's heap besides the name's characters: the
 * entry's own copy of the string (decoded from the frame), its slot in the
 * entry's tag array, the entry's share of that array, and its place in the
 * tag index (workers/region_store.ts). Measured on Node 20 (heap used after gc,
 * 50k entries of 1-byte values, minus the tag names' bytes), per link:
 * one tag per entry, unique to it 125; one tag shared by every entry 115; each
 * tag on 4 entries 135, on exactly 2 entries 183 (a Set of two); 8 tags per
 * entry out of 100, 58; 8 unique tags per entry 75; a 200-byte unique tag
 * 123. 128 is the charge of the common patterns; the worst one measured
 * costs the heap 1.4x what it is charged, so a shard's heap stays bounded by
 * its budget whatever tags users attach.
 */
export const TAG_LINK_OVERHEAD_BYTES = 128

/**
 * What an entry's tags count against its region's `maxBytes`: per tag, its
 * UTF-8 bytes + {@link TAG_LINK_OVERHEAD_BYTES}. The shard charges it with the
 * entry; a set whose key + value + metadata + tags cannot fit is rejected.
 */
export function tagChargeBytes(tags: readonly string[] | undefined): number {
  if (tags === undefined) return 0
  let n = 0
  for (let i = 0; i < tags.length; i++) n += Buffer.byteLength(tags[i]!) + TAG_LINK_OVERHEAD_BYTES
  return n
}

/** What a shard reports about an entry besides its value and metadata (an ENTRY result). */
export interface EntryInfo {
  /** When the entry was written, epoch ms (from a monotonic clock). */
  createdAt: number
  /** When it expires, epoch ms; `Infinity` without expiry. */
  expiresAt: number
  /** Remaining ms, rounded up; `Infinity` without expiry. */
  ttlRemaining: number
  /** Value bytes before compression. */
  sizeBytes: number
  /** Value bytes as stored in the shard. */
  storedBytes: number
  /** Whether the value is stored LZ4-compressed. */
  compressed: boolean
}

/** Size of each shared frame buffer (one per direction per shard). */
export const SHARED_FRAME_BYTES = 256 * 1024

/** Frames of at most this many ops are latency-bound: the spinning shortcuts above apply to them only. */
export const SMALL_FRAME_OPS = 8

/** Indexes into a shard's shared Int32Array of signals (see the transport notes above). */
export const Signal = {
  /** Frames the router has posted to the shard (bumped after each post). */
  FRAMES_POSTED: 0,
  /** 1 while the shard spins waiting for the next frame, else 0. */
  AWAKE: 1,
  /** Id of the frame the router is spinning for, REPLY_TAKEN once the shard handed its reply over, else 0. */
  WAITING: 2,
  /** Length of a handed-over reply in the shared reply buffer. */
  REPLY_LENGTH: 3,
} as const

export const SIGNAL_SLOTS = 4

/** WAITING's value once the shard has written the awaited reply instead of posting it. */
export const REPLY_TAKEN = -1

/** Frame ids stay positive int32s, so they fit a signal slot. */
export const MAX_FRAME_ID = 0x7fffffff

/**
 * What router and shard post to each other: the length of a frame in the
 * shared buffer, a transferred frame, or (router to shard only)
 * {@link DRAIN_ACCESS_LOG}.
 */
export type FrameMessage = number | Uint8Array

/**
 * Everything the owner posts to a shard thread: a {@link FrameMessage},
 * {@link DRAIN_ACCESS_LOG}, or a new attached thread's own port and access
 * log (src/client/attach.ts). Attached threads post frames and DRAIN_ACCESS_LOG on
 * their port, always as transferred buffers.
 */
export type ShardMessage =
  | FrameMessage
  | { attach: import('node:worker_threads').MessagePort; log: import('./shared_region.js').AccessLogMemory }
  /** Which {@link ShardEvent} kinds the owner listens to now (0: none; the shard sends nothing). */
  | { eventMask: number }

/**
 * Events a shard reports while someone listens (`cache.on('set', ...)`),
 * one bit each in the mask the owner sends.
 */
export const ShardEvent = {
  SET: 1,
  DELETE: 2,
  EVICT: 4,
  EXPIRE: 8,
  CLEAR: 16,
  HIT: 32,
  MISS: 64,
} as const

/** A shard's batch of events to its owner: flat triples of kind, region index, key ('' for a clear). */
export interface ShardEventsMessage {
  shardEvents: (number | string)[]
}

/**
 * A shard's new value arena for one region, after a compaction
 * (src/wire/shared_region.ts "Compaction"): posted to the owner and to every
 * attached thread, whose readers adopt it.
 */
export interface ArenaMessage {
  arena: { region: number; values: SharedArrayBuffer; gen: number }
}

/** Asks a shard to apply the reads logged by direct readers now (src/wire/shared_region.ts): their log is half full. */
export const DRAIN_ACCESS_LOG = -1

/** Longest key the u16 length prefix can carry. */
export const MAX_KEY_BYTES_LIMIT = 0xffff

const f64 = new Float64Array(1)
const f64Bytes = new Uint8Array(f64.buffer)

/** Appends protocol fields to a growable buffer. */
export class FrameWriter {
  buf: Buffer
  pos = 0

  constructor(initial: number | Buffer = 4096) {
    this.buf = typeof initial === 'number' ? Buffer.allocUnsafe(initial) : initial
  }

  ensure(extra: number): void {
    const need = this.pos + extra
    if (need <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < need) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  u8(v: number): void {
    this.ensure(1)
    this.buf[this.pos++] = v
  }

  u16(v: number): void {
    this.ensure(2)
    const b = this.buf
    b[this.pos++] = v & 0xff
    b[this.pos++] = v >>> 8
  }

  u32(v: number): void {
    this.ensure(4)
    this.putU32(this.pos, v)
    this.pos += 4
  }

  /** Overwrites a u32 already written (frame headers are patched when the frame is sealed). */
  putU32(at: number, v: number): void {
    const b = this.buf
    b[at] = v & 0xff
    b[at + 1] = (v >>> 8) & 0xff
    b[at + 2] = (v >>> 16) & 0xff
    b[at + 3] = v >>> 24
  }

  f64(v: number): void {
    this.ensure(8)
    f64[0] = v
    this.buf.set(f64Bytes, this.pos)
    this.pos += 8
  }

  /** A key: u16 length + UTF-8. The caller has validated its byte length. */
  key(s: string): void {
    const n = s.length
    this.ensure(2 + n * 3)
    const b = this.buf
    const start = this.pos + 2
    // ASCII keys (nearly all keys) are copied char by char: for short strings
    // this beats the native UTF-8 encoder's call overhead several times over.
    let i = 0
    for (; i < n; i++) {
      const c = charCodeAt.call(s, i)
      if (c >= 0x80) break
      b[start + i] = c
    }
    const len = i === n ? n : b.write(s, start, 'utf8')
    b[this.pos] = len & 0xff
    b[this.pos + 1] = len >>> 8
    this.pos = start + len
  }

  /** A list of strings: u16 count, then each as {@link string}. */
  strings(list: readonly string[]): void {
    this.u16(list.length)
    for (const x of list) this.string(x)
  }

  string(s: string): void {
    const max = s.length * 3
    this.ensure(4 + max)
    const len = this.buf.write(s, this.pos + 4, 'utf8')
    this.putU32(this.pos, len)
    this.pos += 4 + len
  }

  bytes(v: Uint8Array): void {
    this.ensure(4 + v.length)
    this.putU32(this.pos, v.length)
    this.buf.set(v, this.pos + 4)
    this.pos += 4 + v.length
  }

  /** Copies out the written bytes into a fresh, exactly sized buffer that can be transferred. */
  take(): Uint8Array {
    const out = new Uint8Array(this.pos)
    out.set(this.buf.subarray(0, this.pos))
    this.pos = 0
    return out
  }
}

/** Reads protocol fields from a frame. Bounds are checked by the typed array: a short frame yields `undefined` → NaN, caught by callers as a malformed frame. */
export class FrameReader {
  buf: Buffer
  pos = 0
  /** Where the key last stepped over by {@link keyAt} starts in {@link buf}, and its UTF-8 length. */
  keyStart = 0
  keyBytes = 0

  constructor(frame: Uint8Array) {
    this.buf = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
  }

  u8(): number {
    return this.buf[this.pos++]!
  }

  u16(): number {
    const b = this.buf
    const v = b[this.pos]! | (b[this.pos + 1]! << 8)
    this.pos += 2
    return v
  }

  u32(): number {
    const b = this.buf
    const p = this.pos
    const v = (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000
    this.pos = p + 4
    return v
  }

  f64(): number {
    f64Bytes.set(this.buf.subarray(this.pos, this.pos + 8))
    this.pos += 8
    return f64[0]!
  }

  /**
   * Steps over a key, leaving where it is in {@link keyStart} and
   * {@link keyBytes}: shards look keys up from the frame's bytes, never
   * building a string.
   */
  keyAt(): void {
    const len = this.u16()
    this.keyBytes = len
    this.keyStart = this.pos
    this.pos += len
    if (this.pos > this.buf.length) throw new RangeError('frame is truncated')
  }

  /** A list written by {@link FrameWriter.strings}. */
  strings(): string[] {
    const out: string[] = []
    for (let n = this.u16(); n > 0; n--) out.push(this.string())
    return out
  }

  string(): string {
    const len = this.u32()
    const start = this.pos
    this.pos += len
    return this.buf.toString('utf8', start, this.pos)
  }

  /** A view of the next length-prefixed bytes, valid as long as the frame is. */
  bytesView(): Buffer {
    const len = this.u32()
    const start = this.pos
    this.pos += len
    if (this.pos > this.buf.length) throw new RangeError('frame is truncated')
    return this.buf.subarray(start, this.pos)
  }
}
