/**
 * Direct reads: `get`, `has` and `ttl` first try the shard's shared memory
 * (src/wire/shared_region.ts), or this thread's near cache, and send an op
 * only when that cannot answer for sure.
 * Order is kept: while a write to a key (or a clear or pattern delete of its
 * region) is queued or in flight, reads of that key go through the shard's
 * frames, behind the write, as they would on a pipelined connection.
 *
 * The base class of the {@link Router} (src/client/router.ts), which
 * extends it, rather than an object the router holds: the facade calls
 * `router.readValue` (`nearValue` from getSync), and a router method
 * forwarding to a helper would put one more call level on the near-hit path
 * (getSync, nearValue, #nearHit),
 * the one path that must stay close to a Map lookup and is kept small for
 * V8 to inline (bench/OPTIMIZATIONS.md). The state both halves use (the
 * shard channels, the pending-write counts, the near cache) is `protected`
 * here; what only reads use stays private. Key routing (shardOf) is here too:
 * the direct read takes the key's shard from the same pass over its bytes.
 */
import { Op, ValueTag } from '../wire/protocol.js'
import { Header, SLOT_WORDS, SlotFlag, hashBytes, monotonicNow, newFound } from '../wire/shared_region.js'
import type { Found, SharedRegionReader } from '../wire/shared_region.js'
import { NEAR_EXPIRES_F64, NEAR_WORDS, NearFlag, NearRegion, NearWord } from './near_cache.js'
import { decodeValue, decodeText } from '../wire/values.js'
import type { Codec } from '../wire/values.js'
import { PENDING_SLOTS } from './shard_channel.js'
import type { ShardChannel } from './shard_channel.js'

/** What a direct read returns when only the shard can answer. */
export const ASK_SHARD: unique symbol = Symbol('ask the shard')
/**
 * A near entry that may well be current but cannot be served now (a write
 * of this thread is pending that may change or evict it): the shard answers,
 * and the entry stays. Dropping it, as every other refusal does, emptied the
 * near cache of a full region under steady writes (every set may evict
 * there), and its entries, re-read and re-added, were promoted to die in the
 * old generation: 2–8 major GCs per 8 s window against plain shardcache's 1
 * in the real-server bench's GC-heavy regime, and a worse tail.
 */
const NOT_NOW: unique symbol = Symbol('not now')

/**
 * A near hit's epoch check is a plain load but for one in this many (a power
 * of two), an `Atomics.load`: see #nearHit.
 */
const NEAR_SYNC_EVERY = 64

/** What {@link DirectReads.nearValue} returns when the near cache cannot answer but shared memory may. */
export const NEAR_MISS: unique symbol = Symbol('near miss')

/**
 * A near hit is logged for the shard's LRU order once in this many (a power
 * of two): a log entry is three shared stores and a check of the ring, on
 * the one path that must stay close to a Map lookup, and a key hot enough to
 * live in the near cache is still logged many times a second.
 */
const NEAR_LOG_EVERY = 16

/**
 * `String.prototype.charCodeAt`, called as `charCodeAt.call(s, i)` in the
 * loops that encode and hash keys (here and in FrameWriter#key; src/client/router.ts
 * hashes through this module's keyHash16, a function, which may be imported).
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
 * V8, a C call that cost 19 ns per key against 1.6 ns for this. Exported
 * for `shardcache replay --shards` (src/cli/replay.ts), which partitions a
 * trace's keys exactly as the router does.
 */
export function shardOfHash(fnv: number, shards: number): number {
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
export function keyHash16(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ charCodeAt.call(key, i), 0x01000193)
  return h >>> 0
}

/** Reads of this thread's shards answered without a frame, and the routing of keys to shards. */
export class DirectReads {
  /**
   * Whether reads may be answered on this thread (near cache, shared memory).
   * Off while someone listens to 'hit' or 'miss' events, which only shards see.
   */
  directReads = true
  readonly shardCount: number
  /** This thread's channel to each shard (the router sends through them). */
  protected readonly shards: ShardChannel[]
  protected readonly codec: Codec | undefined
  /** Per region: whether its policy learns from hits, so direct and near hits are logged for its shard. */
  readonly #logHits: boolean[]
  /**
   * Writes of this thread queued or in flight, counted per region and key
   * slot (region * PENDING_SLOTS + the key's hash bits): a direct read of a
   * key whose slot counts one goes to the shard (see {@link PENDING_SLOTS}).
   * The router counts them (commitWrite) and releases them (on the reply).
   */
  protected readonly pending: Int32Array
  /** Per slot of {@link pending}: those of its pending writes that may remove their key or give it an expiry (Router.commitWrite's `keeps`). */
  protected readonly mayRemove: Int32Array
  /** The same per region, summed: zero (the common case for reads) needs no hash. */
  protected readonly pendingInRegion: Int32Array
  /**
   * Per region, every write of this thread not answered yet, of a key or not
   * (clears, pattern deletes): while zero, no pending write, barrier or growth
   * can fail a read's checks on any shard, so a near hit skips them.
   */
  protected readonly unanswered: Int32Array
  /** Per region, when the near cache is on. */
  protected readonly near: NearRegion[] | undefined
  /** Near hits checked so far: one in {@link NEAR_SYNC_EVERY} loads the epoch atomically. */
  #nearChecks = 0
  /** UTF-8 bytes of the key of the current direct read (keys are at most 65535 bytes). */
  readonly #keyBytes = Buffer.allocUnsafe(0x10000)
  #keyHash = 0
  /** Whether the key #encodeKey last saw was ASCII (then #keyHash is also shardOf's FNV). */
  #keyAscii = true
  readonly #found: Found = newFound()

  constructor(shards: ShardChannel[], logHits: boolean[], codec: Codec | undefined, nearCacheEntries: number) {
    this.shardCount = shards.length
    this.shards = shards
    this.codec = codec
    this.#logHits = logHits
    this.pending = new Int32Array(logHits.length * PENDING_SLOTS)
    this.mayRemove = new Int32Array(logHits.length * PENDING_SLOTS)
    this.pendingInRegion = new Int32Array(logHits.length)
    this.unanswered = new Int32Array(logHits.length)
    this.near = nearCacheEntries > 0 ? logHits.map(() => new NearRegion(nearCacheEntries)) : undefined
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

  /** The hash {@link shardOf} routes by; writers pass it on to the router's commitWrite, so a write hashes its key once. */
  keyHash(key: string): number {
    return keyHash16(key)
  }

  /** {@link shardOf} from the key's {@link keyHash}. */
  shardOfHash(hash: number): number {
    return this.shardCount === 1 ? 0 : shardOfHash(hash, this.shardCount)
  }

  /**
   * The shard of `key` when its region's reader found a candidate entry (in
   * #found; callers read it, then check `valid`); undefined when only the shard can answer.
   */
  #directFind(shard: number, region: number, key: string): ShardChannel | undefined {
    const ch = this.shards[shard]!
    const len = this.#encodeKey(key)
    if (!this.#readable(ch, region, key, this.#keyAscii ? this.#keyHash : -1)) return undefined
    // find() compares the key bytes in the entry's chunk: inside a read (see src/wire/shared_region.ts).
    // What callers read after it (flags, expiry, versions) are atomic slot words, checked by valid().
    return this.#find(ch, region, len) ? ch : undefined
  }

  /**
   * Whether shared memory may answer for `key`: the shard is up and no write
   * of this thread to the key (or to a key sharing its slot of the pending
   * counts) is in flight. `hash` is the key's {@link keyHash16} if the caller
   * has it, else -1: it is only computed while some write to the region is pending.
   */
  #readable(ch: ShardChannel, region: number, key: string, hash: number): boolean {
    if (!this.#sliceReadable(ch, region)) return false
    if (this.pendingInRegion[region] === 0) return true
    const h = hash < 0 ? keyHash16(key) : hash
    return this.pending[region * PENDING_SLOTS + (h & (PENDING_SLOTS - 1))] === 0
  }

  /**
   * {@link #readable} but for writes of this thread to the key: the shard is
   * up, no clear or pattern delete is pending, and no pending write may evict.
   */
  #sliceReadable(ch: ShardChannel, region: number): boolean {
    if (ch.dead !== undefined || !ch.link.ready || ch.barriers[region] !== 0) return false
    return (ch.growing[region] === 0 && ch.growingBytes[region] === 0) || this.#roomFor(ch, region)
  }

  /** Finds the entry of the key in #keyBytes[0, len) in `ch`'s slice of `region`, into #found, inside a read (see #directFind). */
  #find(ch: ShardChannel, region: number, len: number): boolean {
    const log = ch.link.log
    log.enterRead()
    try {
      return ch.link.readers[region]!.find(this.#keyBytes, len, this.#keyHash, this.#found)
    } finally {
      log.exitRead()
    }
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
    const v = this.nearValue(region, key)
    return v !== NEAR_MISS ? v : this.readShared(region, key)
  }

  /**
   * {@link readValue} from the near cache alone: the value, {@link ASK_SHARD}
   * (only the shard may answer now), or {@link NEAR_MISS} (not held, or held
   * stale and dropped: shared memory may answer). `key` may be unchecked: only
   * checked keys are held, so a hit proves it valid (getSync checks it after a
   * miss: the check was a seventh of a near hit's time).
   */
  nearValue(region: number, key: string): unknown {
    if (!this.directReads) return ASK_SHARD
    const near = this.near?.[region]
    if (near === undefined) return NEAR_MISS
    const i = near.find(key)
    if (i < 0) return NEAR_MISS
    const v = this.#nearHit(near, i, region, key)
    if (v === NOT_NOW) return ASK_SHARD
    if (v !== ASK_SHARD) return v
    near.remove(i)
    return NEAR_MISS
  }

  /** {@link readValue} from shared memory, past the near cache (see {@link nearValue}). */
  readShared(region: number, key: string): unknown {
    if (!this.directReads) return ASK_SHARD
    return this.#readShared(region, key, this.near?.[region])
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
    const ch = this.shards[shard]!
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
      if (tag === ValueTag.STRING || (tag === ValueTag.CODEC && this.codec === undefined)) text = reader.valueString(f)
      else bytes = reader.valueCopy(f)
      if ((text === undefined && bytes === undefined) || !reader.valid(f)) return ASK_SHARD
    } finally {
      log.exitRead()
    }
    let value: unknown
    if (text !== undefined) value = decodeText(tag, text) // may throw: a stored value the codec cannot read
    else value = tag === ValueTag.BUFFER ? bytes : decodeValue(tag, bytes!, this.codec)
    log.hits[region]!++
    if (this.#logHits[region]) log.record(region, f.slot, f.seq)
    if (near !== undefined && near.admits(this.#keyHash)) addNear(near, key, value, tag, shard, reader, f, epoch, expiresAt)
    return value
  }

  /**
   * Near entry `i`'s value if shared memory proves it current: same shard
   * thread, no write of this thread pending, slot and region versions
   * unchanged, not expired. Else {@link ASK_SHARD} (stale: to be dropped)
   * or {@link NOT_NOW} (to be kept).
   */
  #nearHit(near: NearRegion, i: number, region: number, key: string): unknown {
    const m = near.meta
    const b = i * NEAR_WORDS
    const reader = near.refs[2 * i + 1] as SharedRegionReader
    // The link's checks, only when one could fail: a reader that is not retired is its link's
    // current one, on a live link (its link retires it first), and with no write of this thread to
    // the region unanswered, nothing pending, no barrier and no growth can refuse the read.
    // Loading the channel and its link for them was a tenth of a near hit.
    if (reader.retired || this.unanswered[region] !== 0) {
      const ch = this.shards[m[b + NearWord.SHARD]!]!
      if (ch.link.readers[region] !== reader) return ASK_SHARD
      if (!this.#readable(ch, region, key, -1)) return NOT_NOW
    }
    // Nothing in the region changed since the entry was last checked: current, without reading its
    // slot. A plain load (src/wire/shared_region.ts, note 4): it sees every change that happens-before
    // this call, and nothing shared is read after it. It was a fifth of a near hit as Atomics.load.
    // One check in NEAR_SYNC_EVERY loads it atomically all the same: a caller spinning on getSync
    // with nothing else that synchronizes sees a write within that many hits, and no compiler may
    // keep a plain load's value across the builtin call.
    const views = reader.views
    const header = views.header
    const seen = (++this.#nearChecks & (NEAR_SYNC_EVERY - 1)) === 0 ? Atomics.load(header, Header.EPOCH) : header[Header.EPOCH]!
    if (seen !== m[b + NearWord.EPOCH]) {
      // Changed: the epoch again, atomically, so that the slot and region versions loaded after it
      // (in place, not through a reader method) show every change it counts; then the entry re-stamped.
      const epoch = Atomics.load(header, Header.EPOCH)
      if (Atomics.load(views.slots, m[b + NearWord.SLOT]! * SLOT_WORDS) !== m[b + NearWord.SEQ] || Atomics.load(header, Header.SEQ) !== m[b + NearWord.REGION_SEQ]) {
        return ASK_SHARD
      }
      m[b + NearWord.EPOCH] = epoch
    }
    const flags = m[b + NearWord.FLAGS]!
    if ((flags & NearFlag.EXPIRES) !== 0 && near.metaF[i * (NEAR_WORDS / 2) + NEAR_EXPIRES_F64]! <= monotonicNow()) return ASK_SHARD
    m[b + NearWord.FLAGS] = flags | NearFlag.USED
    // The link's log, through the reader: the near cache holds only readers the links made.
    const log = reader.log!
    const hits = log.hits[region]! + 1
    log.hits[region] = hits
    // Hot keys are hit often enough that a sample keeps them recent (or frequent) in the shard's
    // policy: the hits counted (direct ones too) pick which, one in NEAR_LOG_EVERY.
    if ((hits & (NEAR_LOG_EVERY - 1)) === 0 && this.#logHits[region]) log.record(region, m[b + NearWord.SLOT]!, m[b + NearWord.SEQ]!)
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
  protected keepNear(ch: ShardChannel, region: number, keyBytes: Buffer, value: unknown, tag: number, f: Found, epoch: number, expiresAt: number): void {
    const near = this.near?.[region]
    if (near === undefined || ch.dead !== undefined || !ch.link.ready) return
    const reader = ch.link.readers[region]
    if (reader === undefined || !reader.covers(f.slot) || !near.admits(hashBytes(keyBytes, 0, keyBytes.length))) return
    addNear(near, keyBytes.toString('utf8'), value, tag, ch.index, reader, f, epoch, expiresAt)
  }

  /** The op a get sends its shard: GET_NEAR when this thread keeps a near cache, so the answer can go in it. */
  get getOp(): number {
    return this.near === undefined ? Op.GET : Op.GET_NEAR
  }

  /** Whether this thread's near cache holds an entry (current or not) for `key` in `region`. */
  nearHas(region: number, key: string): boolean {
    return (this.near?.[region]!.find(key) ?? -1) >= 0
  }

  /** Near-cache entries held for `region` on this thread. */
  nearSize(region: number): number {
    return this.near?.[region]!.size ?? 0
  }

  /** Whether `key` has a live entry, read straight from shared memory: `true`, or {@link ASK_SHARD}. */
  readHas(shard: number, region: number, key: string): true | typeof ASK_SHARD {
    const ch = this.#directFind(shard, region, key)
    if (ch === undefined) return ASK_SHARD
    const reader = ch.link.readers[region]!
    const grace = (reader.flags(this.#found) & SlotFlag.GRACE) !== 0
    return !grace && reader.valid(this.#found) ? true : ASK_SHARD
  }

  /**
   * Whether a set of `key` (of {@link keyHash} `hash`) about to be sent can only overwrite: the key has a
   * live entry without expiry in its shard's slice of `region`, as shared
   * memory shows it to this thread now; false, without a look, when the
   * slice has room for another entry anyway. Called before the set counts
   * as pending. Nothing this thread has pending can remove the entry first:
   * the answer is no while a write of its own that may remove the key or
   * give it an expiry is pending on its slot ({@link mayRemove}: sets
   * without expiry of the same key do not count, so a hot key written twice
   * in a tick stays an overwrite), or any write that may evict without room
   * for it. Only an expiry could (hence none allowed), or another thread's write,
   * which is concurrent with this one: the set may then insert after all and
   * evict, and a read of the evicted key issued after it on this thread may
   * still find the entry, as a read ordered just before the other thread's
   * write would.
   */
  protected overwrites(shard: number, region: number, key: string, hash: number): boolean {
    if (!this.directReads) return false
    const ch = this.shards[shard]!
    const reader = ch.link.readers[region]
    // With room for one more entry than is pending, the set may insert without evicting: no need to know.
    if (reader === undefined || Atomics.load(reader.views.header, Header.ROOM_ENTRIES) > ch.growing[region]!) return false
    if (!this.#sliceReadable(ch, region)) return false
    const len = this.#encodeKey(key)
    // Writes of this thread to the key pending are no obstacle if none of them can remove it or give it an expiry.
    if (this.mayRemove[region * PENDING_SLOTS + (hash & (PENDING_SLOTS - 1))] !== 0 || !this.#find(ch, region, len)) return false
    const f = this.#found
    const forever = reader.expiresAt(f) === Infinity && (reader.flags(f) & SlotFlag.GRACE) === 0
    return forever && reader.valid(f)
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
}

function copyBytes(v: Uint8Array): Uint8Array {
  return Buffer.isBuffer(v) ? Buffer.from(v) : new Uint8Array(v)
}

/** Adds a value to a near cache; binary values get a copy of their own (the caller may write to the one it got). */
function addNear(near: NearRegion, key: string, value: unknown, tag: number, shard: number, reader: SharedRegionReader, f: Found, epoch: number, expiresAt: number): void {
  const binary = tag === ValueTag.BUFFER || tag === ValueTag.UINT8ARRAY
  near.add(key, binary ? copyBytes(value as Uint8Array) : value, binary, shard, reader, f, epoch, expiresAt)
}
