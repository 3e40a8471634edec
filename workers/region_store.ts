/**
 * One shard's slice of one region: a bounded map from key to bytes with LRU or
 * FIFO eviction, per-entry TTL and byte accounting.
 *
 * Layout (after isaacs/node-lru-cache): entries are slots, not objects. A
 * {@link KeyTable} (a hash table over key bytes, in typed arrays) finds a
 * slot; typed arrays hold each slot's list links, sizes, times, flags and the
 * ref of its value in a {@link ValueSlab} (values and keys live in arenas,
 * not one object each); freed slots go on a stack and are reused. With a
 * million entries the GC then traces a handful of large arrays instead of
 * millions of objects, which is what keeps a shard's pauses short. The arrays
 * start small and double as the region grows, up to its entry budget.
 *
 * What other threads read lives in shared memory ({@link RegionMemory}, layout
 * in src/wire/shared_region.ts): the hash index, each slot's record (sequence
 * number, flags, key and value refs and sizes, expiry) and both arenas. Every
 * change to a slot's record happens between two increments of its sequence
 * number (odd while changing), and clear() does the same with the header's, so
 * readers can tell a consistent read from a torn one. List links, charges,
 * creation times and metadata are private to the shard.
 *
 * Keys are bytes: the shard looks keys up straight from the frame
 * (`getAt(frame, start, length)`), never building a string; the methods
 * taking string keys encode them and are for tests and in-thread callers.
 *
 * The list runs from `head` (next to evict) to `tail` (most recently set, or,
 * under LRU, most recently read). Eviction removes from the head until the
 * region is within both budgets. FIFO never reorders: an update keeps its place.
 *
 * Compression: values of at least `compressMinBytes` are LZ4-compressed when
 * that makes them smaller, with the plain codec or, when the region has
 * `compressDictionary`, with a {@link DictionaryCompressor} (sampling, rebuilds
 * and versions are described there). Which dictionary an entry was written
 * with is kept per slot in `#dictIds`, private to the shard: other threads
 * never decode a compressed value (they see `SlotFlag.COMPRESSED` and ask the
 * shard), so the shared slot layout needs no new field. Each live entry holds a
 * reference on its dictionary, taken in {@link #account} and dropped in
 * {@link #unaccount}, so an old dictionary lives exactly as long as an entry
 * that needs it.
 *
 * Accounting: an entry is charged `keyBytes + storedBytes + metadataBytes +
 * tagBytes + ENTRY_OVERHEAD_BYTES` against `maxBytes`, where tagBytes is, per
 * tag, its UTF-8 bytes + TAG_LINK_OVERHEAD_BYTES ({@link tagChargeBytes}): the
 * tag index lives on the shard's heap, and without a charge tags would grow
 * it outside every budget. `rawBytes` and `storedBytes` sum the
 * values before and after compression. {@link RegionStore.checkInvariants}
 * recomputes every counter from the entries (the property test calls it after
 * every operation).
 *
 * Expiry: times come from an injectable monotonic clock. An expired entry is
 * never returned; it is removed when touched, by {@link RegionStore.sweep}
 * (called on a timer by the shard), or by {@link RegionStore.cleanupExpired}.
 */
import { ENTRY_OVERHEAD_BYTES, ShardEvent, ValueTag, tagChargeBytes } from '../src/wire/protocol.js'
import type { EntryInfo } from '../src/wire/protocol.js'
import type { Glob } from '../src/wire/glob.js'
import {
  EXPIRES_F64,
  FLAG_BITS,
  Header,
  KEY_LEN_SHIFT,
  RegionViews,
  SLOT_WORDS,
  Slot,
  SlotFlag,
  allocateRegionMemory,
  monotonicNow,
  slotLimit,
  storeExpiry,
  storeSlotWord,
  valueRefOf,
} from '../src/wire/shared_region.js'
import type { RegionMemory } from '../src/wire/shared_region.js'
import { DictionaryCompressor, compressIfSmaller, decompress } from '../src/wire/compression.js'
import type { DictionaryShardStats, DictionaryTuning } from '../src/wire/compression.js'
import { KeyTable, hashBytes } from './key_table.js'
import { ArenaFullError, ValueSlab } from './value_slab.js'
import type { ReaderGrace } from './reader_grace.js'
import { emptyRegionStats } from '../src/wire/region_types.js'
import { slotsFor } from '../src/wire/region_types.js'
import type { RegionShardConfig, RegionShardStats } from '../src/wire/region_types.js'
import type { ExportedEntry } from '../src/wire/records.js'

/** What {@link RegionStore.entry} reports about a live entry. */
export interface StoredEntry extends EntryInfo {
  tag: number
  value: Uint8Array
  metadata: Uint8Array | undefined
}

const NIL = -1
const FLAG_COMPRESSED = SlotFlag.COMPRESSED
const FLAG_LIVE = SlotFlag.LIVE
const FLAG_GRACE = SlotFlag.GRACE
/** A number as incr accepts it: JSON's number syntax. */
const NUMBER_TEXT = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/
const TAG_MASK = SlotFlag.TAG_MASK
const INITIAL_CAPACITY = 256
/** Float64 words per slot record, and where the expiry sits among them. */
const F64_PER_SLOT = SLOT_WORDS / 2

/** A budget's room as an Int32 header word: never negative, at most 2^31 − 1 (Infinity included). */
function roomOf(n: number): number {
  return n <= 0 ? 0 : n >= 0x7fffffff ? 0x7fffffff : Math.floor(n)
}

type SlotArray = Int32Array | Uint32Array | Float64Array | Uint8Array
interface SlotArrayType<T extends SlotArray> {
  new (buffer: SharedArrayBuffer, byteOffset: number, length: number): T
  readonly BYTES_PER_ELEMENT: number
}

/**
 * A per-slot array of `length` elements over a growable buffer that reserves
 * room for `limit`: {@link regrow} extends it in place. Why not a new array
 * per doubling: the old one, freed by a worker thread, stayed with the
 * thread's allocator and in the process's RSS (5 arrays grown to 512k slots in
 * a worker: 20 MB of RSS with copies, 15 MB in place; measured). Why a
 * SharedArrayBuffer, though no other thread sees these: V8 20 reads and writes
 * typed arrays over a resizable ArrayBuffer ~2x slower (it may shrink, so
 * every access re-checks bounds), and over a growable SharedArrayBuffer, which
 * cannot shrink, as fast as over a plain one (measured: 118 vs 56 ms for the
 * same loop); with the resizable kind a 5M-entry pre-fill took a third longer.
 */
function reserve<T extends SlotArray>(type: SlotArrayType<T>, length: number, limit: number): T {
  const buffer = new SharedArrayBuffer(length * type.BYTES_PER_ELEMENT, { maxByteLength: limit * type.BYTES_PER_ELEMENT })
  return new type(buffer, 0, length)
}

/** `a`, extended in place to `length` elements (new ones are 0). */
function regrow<T extends SlotArray>(type: SlotArrayType<T>, a: T, length: number): T {
  const buffer = a.buffer as SharedArrayBuffer
  buffer.grow(length * type.BYTES_PER_ELEMENT)
  return new type(buffer, 0, length)
}

/** See {@link RegionStore.versionsOf}. */
export interface SlotVersions {
  slot: number
  seq: number
  regionSeq: number
  epoch: number
  expiresAt: number
}

export class RegionStore {
  readonly config: RegionShardConfig
  readonly #now: () => number
  readonly #lru: boolean

  /** Shared with readers: header, slot records, index and arenas. */
  readonly #v: RegionViews
  readonly #slotLimit: number
  readonly #keys: KeyTable
  /** Hash of the key last looked up by {@link #live}, reused when a set inserts it. */
  #lastHash = 0
  readonly #slab: ValueSlab
  #metas: (Uint8Array | undefined)[] = []
  /** Per slot, the tags of its entry (sparse: most entries have none). */
  #tags: (string[] | undefined)[] = []
  /**
   * Tag → the slot, or the set of slots, of the live entries carrying it, for
   * invalidateTag. A tag on one entry only is held as its slot number: a Set
   * of one costs ~150 bytes more (measured), and per-entry tags (`user:42`
   * on the entry of user 42) are common.
   */
  #tagIndex = new Map<string, number | Set<number>>()
  #next: Int32Array
  #prev: Int32Array
  #created: Float64Array
  /** Per slot, the value's size before compression (stats' rawBytes, getEntry's sizeBytes). */
  #raw: Uint32Array
  /** Per slot: id of the dictionary its value was compressed with; 0 for none (plain codec, or not compressed). */
  #dictIds: Uint8Array
  /** Set when the region compresses with a dictionary. */
  readonly #dict: DictionaryCompressor | undefined
  #free: number[] = []
  #capacity: number
  #used = 0 // slots ever handed out (high-water mark)
  #head = NIL
  #tail = NIL
  #sweepCursor = 0

  #entries = 0
  #usedBytes = 0
  #rawBytes = 0
  #storedBytes = 0
  #compressedEntries = 0

  #hits = 0
  #misses = 0
  #staleServed = 0
  /** Per slot, when a grace entry stops being fresh (allocated with the first one). */
  #fresh: Float64Array | undefined
  /** Set by {@link getStaleAt}: whether the value it returned was stale. */
  lastStale = false
  /**
   * The kinds of {@link ShardEvent} to report, and where: set by the shard
   * while its owner listens (0: none, and no key is decoded for an event).
   */
  eventMask = 0
  onEvent: (kind: number, key: string) => void = () => {}
  #sets = 0
  #deletes = 0
  #evictionsSize = 0
  #evictionsExpired = 0
  #corrupt = 0

  /** Tag of the value last returned by {@link get}. */
  lastTag = 0
  /** Slot of the entry {@link getAt} last returned. */
  lastSlot = NIL

  /**
   * `memory` is what other threads read (see src/wire/shared_region.ts); it must
   * reserve {@link slotsFor}(config) slots. Without it the store allocates its own.
   * `readers` tells when a freed chunk is out of every reader's reach
   * (workers/reader_grace.ts); without it, chunks are reused at once.
   */
  constructor(
    config: RegionShardConfig,
    now: () => number = monotonicNow,
    memory?: RegionMemory,
    /** @internal For tests: how the dictionary samples and rebuilds. */
    dictionaryTuning?: Partial<DictionaryTuning>,
    readers?: ReaderGrace,
  ) {
    this.config = config
    this.#dict =
      config.compressDictionary === true && Number.isFinite(config.compressMinBytes) ? new DictionaryCompressor(dictionaryTuning) : undefined
    this.#now = now
    this.#lru = config.policy === 'lru'
    this.#slotLimit = slotsFor(config)
    const mem = memory ?? allocateRegionMemory(this.#slotLimit)
    if (mem.slots.maxByteLength < this.#slotLimit * SLOT_WORDS * 4) throw new Error('region memory reserves too few slots')
    this.#v = new RegionViews(mem)
    // One slot more than the entry budget: a set links its entry before evicting.
    this.#capacity = Math.min(INITIAL_CAPACITY, this.#slotLimit)
    const c = this.#capacity
    mem.slots.grow(c * SLOT_WORDS * 4)
    this.#keys = new KeyTable(this.#v, config.maxEntries, this.#grew)
    this.#slab = new ValueSlab(mem.values, this.#grew, readers)
    this.#grew()
    this.publishRoom()
    const limit = this.#slotLimit
    this.#next = reserve(Int32Array, c, limit)
    this.#prev = reserve(Int32Array, c, limit)
    this.#created = reserve(Float64Array, c, limit)
    this.#raw = reserve(Uint32Array, c, limit)
    this.#dictIds = reserve(Uint8Array, c, limit)
  }

  /** The shared memory readers on other threads map. */
  get memory(): RegionMemory {
    return this.#v.memory
  }

  /** After a shared buffer grew: remap our views, then tell readers to remap theirs. */
  #grew = (): void => {
    this.#v.remap()
    Atomics.add(this.#v.header, Header.GEN, 1)
  }

  get size(): number {
    return this.#entries
  }

  /**
   * Publishes the room left under the budgets (src/wire/shared_region.ts
   * Header.ROOM_ENTRIES) for routers deciding whether a direct read may run
   * ahead of their pending sets. Called after every frame.
   */
  publishRoom(): void {
    const h = this.#v.header
    Atomics.store(h, Header.ROOM_ENTRIES, roomOf(this.config.maxEntries - this.#entries))
    Atomics.store(h, Header.ROOM_BYTES, roomOf(this.config.maxBytes - this.#usedBytes))
  }

  /** @internal For tests: freed chunks that wait for a reader's read to end (workers/reader_grace.ts). */
  get retiredChunks(): number {
    return this.#slab.retiredChunks
  }

  // ── reads ────────────────────────────────────────────────────────────────

  /**
   * The value's original bytes (tag in {@link lastTag}), or undefined on a miss.
   * Counts a hit or a miss. An uncompressed value is a view of the store's
   * memory, valid until the next write: callers copy it out at once (the shard
   * writes it into the reply) and must not modify it.
   */
  getAt(buf: Uint8Array, start: number, len: number): Uint8Array | undefined {
    const slot = this.#live(buf, start, len)
    if (slot === NIL || this.#stale(slot)) {
      this.#miss(buf, start, len)
      return undefined
    }
    const value = this.#read(slot)
    if (value === undefined) {
      this.#miss(buf, start, len)
      return undefined
    }
    this.#event(ShardEvent.HIT, slot)
    if (this.#lru) this.#moveToTail(slot)
    this.#hits++
    this.lastTag = this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
    this.lastSlot = slot
    return value
  }

  /**
   * What a reader's near cache checks an entry against (see
   * src/client/near_cache.ts), for the entry in `slot`: its sequence number, the
   * region's and the region's epoch, as they are now, and its expiry. False
   * for an entry with a grace period, which only the shard may serve.
   */
  versionsOf(slot: number, out: SlotVersions): boolean {
    const v = this.#v
    const base = slot * SLOT_WORDS
    if ((v.slots[base + Slot.FLAGS]! & SlotFlag.GRACE) !== 0) return false
    out.slot = slot
    out.seq = v.slots[base + Slot.SEQ]!
    out.regionSeq = v.header[Header.SEQ]!
    out.epoch = v.header[Header.EPOCH]!
    out.expiresAt = v.slotsF[slot * (SLOT_WORDS / 2) + EXPIRES_F64]!
    return true
  }

  /** The whole entry, or undefined on a miss. Counts a hit or a miss, like {@link getAt}. */
  entryAt(buf: Uint8Array, start: number, len: number): StoredEntry | undefined {
    const slot = this.#live(buf, start, len)
    const value = slot === NIL || this.#stale(slot) ? undefined : this.#read(slot)
    if (value === undefined) {
      this.#miss(buf, start, len)
      return undefined
    }
    if (this.#lru) this.#moveToTail(slot)
    this.#hits++
    this.#event(ShardEvent.HIT, slot)
    const flags = this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_BITS
    const expiresAt = this.#freshUntil(slot)
    return {
      tag: flags & TAG_MASK,
      value,
      createdAt: this.#created[slot]!,
      expiresAt,
      ttlRemaining: this.#remaining(expiresAt),
      sizeBytes: this.#raw[slot]!,
      storedBytes: this.#v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!,
      compressed: (flags & FLAG_COMPRESSED) !== 0,
      metadata: this.#metas[slot],
    }
  }

  /**
   * The fresh value (tag in {@link lastTag}), or undefined, without counting a
   * read, reporting an event or refreshing LRU order: a re-check by a caller
   * whose read was counted already (getOrCompute's, before its loader runs).
   */
  peekAt(buf: Uint8Array, start: number, len: number): Uint8Array | undefined {
    const slot = this.#live(buf, start, len)
    if (slot === NIL || this.#stale(slot)) return undefined
    const value = this.#read(slot)
    if (value !== undefined) this.lastTag = this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
    return value
  }

  /** Whether a live entry exists. Does not count as a read nor refresh LRU order. */
  hasAt(buf: Uint8Array, start: number, len: number): boolean {
    const slot = this.#live(buf, start, len)
    return slot !== NIL && !this.#stale(slot)
  }

  /**
   * Adds `by` to the number stored under the key (0 when absent) and stores
   * the sum with the entry's remaining TTL, metadata and tags. Returns the
   * sum, or undefined (changing nothing) when the value is not a number: a
   * string or JSON-codec value whose text is a finite number.
   */
  incrAt(buf: Uint8Array, start: number, len: number, by: number): number | undefined {
    const slot = this.#liveFresh(buf, start, len)
    let current = 0
    let tag: number = ValueTag.CODEC
    let ttl: number | undefined
    let meta: Uint8Array | undefined
    let tags: string[] | undefined
    if (slot !== NIL) {
      const raw = this.#read(slot)
      if (raw !== undefined) {
        tag = this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
        const text = tag === ValueTag.STRING || tag === ValueTag.CODEC ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8') : ''
        if (!NUMBER_TEXT.test(text)) return undefined
        current = Number(text)
        const expiresAt = this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
        ttl = expiresAt === Infinity ? Infinity : Math.max(1, expiresAt - this.#now())
        meta = this.#metas[slot]
        tags = this.#tags[slot]
      }
    }
    const sum = current + by
    if (!Number.isFinite(sum)) return undefined
    this.setAt(buf, start, len, tag, Buffer.from(String(sum)), ttl, false, false, meta, tags)
    return sum
  }

  /**
   * Stores the new value only if the current one has the tag and bytes
   * given (`expectTag` -1: only if there is no live entry). Returns whether it did.
   */
  casAt(
    buf: Uint8Array,
    start: number,
    len: number,
    expectTag: number,
    expectBytes: Uint8Array,
    tag: number,
    raw: Uint8Array,
    ttl: number | undefined,
    metadata: Uint8Array | undefined,
    tags: string[] | undefined,
  ): boolean {
    const slot = this.#liveFresh(buf, start, len)
    if (expectTag === -1) {
      if (slot !== NIL) return false
    } else {
      if (slot === NIL) return false
      const current = this.#read(slot)
      if (current === undefined) return false
      if ((this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK) !== expectTag || Buffer.compare(current, expectBytes) !== 0) return false
    }
    return this.setAt(buf, start, len, tag, raw, ttl, false, false, metadata, tags)
  }

  /** The value (a copy) and its removal in one step: a hit and a delete, or a miss. */
  takeAt(buf: Uint8Array, start: number, len: number): Uint8Array | undefined {
    const value = this.getAt(buf, start, len)
    if (value === undefined) return undefined
    const copy = new Uint8Array(value) // the chunk is freed below
    this.deleteAt(buf, start, len)
    return copy
  }

  /** Gives a live entry a new TTL (ending any grace period); false when there is none. Not a read. */
  touchAt(buf: Uint8Array, start: number, len: number, ttl: number): boolean {
    const slot = this.#liveFresh(buf, start, len)
    if (slot === NIL) return false
    this.#begin(slot)
    const slots = this.#v.slots
    storeExpiry(slots, slot, this.#now() + ttl)
    storeSlotWord(slots, slot * SLOT_WORDS, Slot.FLAGS, slots[slot * SLOT_WORDS + Slot.FLAGS]! & ~FLAG_GRACE)
    this.#end(slot)
    return true
  }

  /** The live, fresh entry of a key, or NIL (a stale grace entry counts as absent). */
  #liveFresh(buf: Uint8Array, start: number, len: number): number {
    const slot = this.#live(buf, start, len)
    return slot !== NIL && this.#stale(slot) ? NIL : slot
  }

  /**
   * getOrCompute's read: the value, fresh or (within grace) stale, setting
   * {@link lastStale}; counts a hit, a stale serve or a miss.
   */
  getStaleAt(buf: Uint8Array, start: number, len: number): Uint8Array | undefined {
    const slot = this.#live(buf, start, len)
    const value = slot === NIL ? undefined : this.#read(slot)
    if (value === undefined) {
      this.#miss(buf, start, len)
      return undefined
    }
    if (this.#lru) this.#moveToTail(slot)
    this.lastStale = this.#stale(slot)
    if (this.lastStale) this.#staleServed++
    else {
      this.#hits++
      this.#event(ShardEvent.HIT, slot)
    }
    this.lastTag = this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
    return value
  }

  /** Whether `slot` holds a grace entry past its fresh time (live, but only for getOrCompute). */
  #stale(slot: number): boolean {
    return (this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_GRACE) !== 0 && this.#fresh![slot]! <= this.#now()
  }

  /** When the entry stops being fresh: its fresh time with grace, else its expiry. */
  #freshUntil(slot: number): number {
    return (this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_GRACE) !== 0 ? this.#fresh![slot]! : this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
  }

  /** Remaining ms (rounded up), `Infinity` without expiry, undefined on a miss. Does not count as a read. */
  ttlAt(buf: Uint8Array, start: number, len: number): number | undefined {
    const slot = this.#live(buf, start, len)
    if (slot === NIL || this.#stale(slot)) return undefined
    return this.#remaining(this.#freshUntil(slot))
  }

  #remaining(expiresAt: number): number {
    return expiresAt === Infinity ? Infinity : Math.max(1, Math.ceil(expiresAt - this.#now()))
  }

  /**
   * Up to `count` live entries from slot `cursor` on, for a snapshot, and the
   * cursor to continue from (-1: done); the same walk as {@link scan}. Values
   * are in their stored form when that is plain LZ4 (portable), else raw
   * (a dictionary belongs to this shard). Not reads: no hits, no LRU change.
   */
  exportPage(cursor: number, count: number): { entries: ExportedEntry[]; next: number } {
    const entries: ExportedEntry[] = []
    const now = this.#now()
    const slots = this.#v.slots
    let slot = Math.max(0, cursor)
    for (; slot < this.#used && entries.length < count; slot++) {
      const flags = slots[slot * SLOT_WORDS + Slot.FLAGS]!
      if ((flags & FLAG_LIVE) === 0) continue
      const expiresAt = this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
      if (expiresAt <= now) continue
      const stored = this.#stored(slot)
      let bytes: Uint8Array = stored
      let compressed = (flags & FLAG_COMPRESSED) !== 0
      if (compressed && this.#dictIds[slot] !== 0) {
        const raw = this.#read(slot)
        if (raw === undefined) continue // corrupt: dropped and counted by #read
        bytes = raw
        compressed = false
      }
      entries.push({
        key: this.#keys.keyString(slot),
        tag: flags & TAG_MASK,
        compressed,
        rawSize: this.#raw[slot]!,
        bytes: new Uint8Array(bytes),
        expiresAt,
        freshUntil: (flags & FLAG_GRACE) !== 0 ? this.#fresh![slot]! : undefined,
        metadata: this.#metas[slot],
        tags: this.#tags[slot],
      })
    }
    return { entries, next: slot >= this.#used ? -1 : slot }
  }

  /**
   * Up to `count` live keys (matching `glob`) from slot `cursor` on, and the
   * cursor to continue from (-1: done). A key keeps its slot for as long as
   * it is present (updates reuse it), so a key present for a whole scan is
   * returned exactly once; keys added or removed meanwhile may or may not be.
   */
  scan(cursor: number, count: number, glob: Glob | undefined): { keys: string[]; next: number } {
    const keys: string[] = []
    const now = this.#now()
    const slots = this.#v.slots
    let slot = Math.max(0, cursor)
    for (; slot < this.#used && keys.length < count; slot++) {
      if ((slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) === 0) continue
      if (this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now || this.#stale(slot)) continue
      const key = this.#keys.keyString(slot)
      if (glob === undefined || glob.matches(key)) keys.push(key)
    }
    return { keys, next: slot >= this.#used ? -1 : slot }
  }

  /** Live keys, optionally filtered by a glob. Expired entries met on the way are removed. */
  keys(glob?: Glob): string[] {
    const out: string[] = []
    const now = this.#now()
    for (let slot = this.#head; slot !== NIL; ) {
      const next = this.#next[slot]!
      if (this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now) {
        this.#remove(slot, ShardEvent.EXPIRE)
        this.#evictionsExpired++
      } else if (!this.#stale(slot)) {
        const key = this.#keys.keyString(slot)
        if (glob === undefined || glob.matches(key)) out.push(key)
      }
      slot = next
    }
    return out
  }

  /**
   * Applies a read another thread made straight from shared memory
   * (src/wire/shared_region.ts): refreshes LRU order, if the slot still holds the
   * entry that was read (same sequence number).
   */
  touch(slot: number, seq: number): void {
    if (!this.#lru || slot < 0 || slot >= this.#used) return
    if (this.#v.slots[slot * SLOT_WORDS + Slot.SEQ] !== seq) return
    this.#moveToTail(slot)
  }

  // ── writes ───────────────────────────────────────────────────────────────

  /**
   * Stores a value. `raw` may be a view of a transient frame: it is copied.
   * Returns false, changing nothing, when `nx` finds a live entry or `xx` finds none.
   * The caller guarantees that the entry fits the byte budget on its own.
   */
  setAt(
    buf: Uint8Array,
    start: number,
    len: number,
    tag: number,
    raw: Uint8Array,
    ttl: number | undefined,
    nx: boolean,
    xx: boolean,
    metadata: Uint8Array | undefined,
    tags?: string[],
    grace?: number,
  ): boolean {
    let slot = this.#live(buf, start, len)
    if (slot === NIL ? xx : nx) return false

    let stored: Uint8Array | undefined
    let flags = tag
    if (grace !== undefined) flags |= FLAG_GRACE
    let dictId = 0
    if (raw.length >= this.config.compressMinBytes) {
      if (this.#dict === undefined) {
        stored = compressIfSmaller(raw)
      } else {
        stored = this.#dict.compress(raw)
        dictId = this.#dict.lastId
      }
      if (stored !== undefined) flags |= FLAG_COMPRESSED
    }
    // The slab copies the bytes: `raw` may view a frame that is reused next.
    stored ??= raw
    // `new Uint8Array(view)` copies into a buffer of its own. (Buffer#slice would
    // not: it returns a view, which would pin or alias the whole frame.)
    const meta = metadata === undefined ? undefined : new Uint8Array(metadata)
    const now = this.#now()
    const life = ttl ?? this.config.defaultTtl

    // Room for the key and value first: if there is none, nothing has changed.
    const ref = this.#storeEntry(buf.subarray(start, start + len), stored, slot)
    if (slot === NIL) {
      slot = this.#allocate()
      this.#begin(slot)
      try {
        this.#keys.insert(slot, ref, len, this.#lastHash)
      } catch (err) {
        this.#slab.free(ref, len + stored.length)
        this.#free.push(slot)
        this.#end(slot)
        throw err
      }
      this.#link(slot)
      this.#entries++
    } else {
      this.#begin(slot)
      this.#unaccount(slot)
      this.#freeEntry(slot)
      storeSlotWord(this.#v.slots, slot * SLOT_WORDS, Slot.KEY_REF, ref | 0)
      if (this.#lru) this.#moveToTail(slot)
    }
    // Atomic stores of the words other threads read, inside the seqlock (src/wire/shared_region.ts).
    const base = slot * SLOT_WORDS
    const slots = this.#v.slots
    storeSlotWord(slots, base, Slot.STORED_SIZE, stored.length)
    storeSlotWord(slots, base, Slot.FLAGS, (slots[base + Slot.FLAGS]! & ~FLAG_BITS) | flags | FLAG_LIVE)
    storeExpiry(slots, slot, now + life + (grace ?? 0))
    if (grace !== undefined) (this.#fresh ??= reserve(Float64Array, this.#capacity, this.#slotLimit))[slot] = now + life
    this.#end(slot)
    this.#setMeta(slot, meta)
    this.#untag(slot)
    if (tags !== undefined && tags.length > 0) this.#tag(slot, tags)
    this.#raw[slot] = raw.length
    this.#dictIds[slot] = dictId // after #unaccount released the old value's dictionary
    this.#created[slot] = now
    this.#account(slot)
    this.#sets++
    this.#event(ShardEvent.SET, slot)
    this.#evictFor(slot)
    return true
  }

  /**
   * Copies an entry's key then its stored value into one chunk of the arena
   * (see workers/key_table.ts for why together); returns the key's ref, the
   * value's being that plus the key's length. When the arena is at its 4 GiB
   * reservation (possible only without a byte budget), evicts from the head
   * to make room, sparing `keep`.
   */
  #storeEntry(key: Uint8Array, value: Uint8Array, keep: number): number {
    for (;;) {
      try {
        return this.#slab.store(key, value)
      } catch (err) {
        if (!(err instanceof ArenaFullError)) throw err
        let victim = this.#head
        if (victim === keep && keep !== NIL) victim = this.#next[victim]!
        if (victim === NIL) throw new Error(`region "${this.config.name}" has no room left for ${key.length + value.length} bytes in this shard's arena`)
        this.#remove(victim, ShardEvent.EVICT)
        this.#evictionsSize++
      }
    }
  }

  /** Returns the chunk holding `slot`'s key and stored value to the arena. */
  #freeEntry(slot: number): void {
    const base = slot * SLOT_WORDS
    const v = this.#v
    this.#slab.free(v.slotsU[base + Slot.KEY_REF]!, (v.slots[base + Slot.FLAGS]! >>> KEY_LEN_SHIFT) + v.slotsU[base + Slot.STORED_SIZE]!)
  }

  /** Marks a slot's shared record as changing (its sequence number odd); {@link #end} publishes the change. */
  #begin(slot: number): void {
    Atomics.add(this.#v.header, Header.EPOCH, 1) // first: a reader that sees the old epoch read before this change
    Atomics.add(this.#v.slots, slot * SLOT_WORDS + Slot.SEQ, 1)
  }

  #end(slot: number): void {
    Atomics.add(this.#v.slots, slot * SLOT_WORDS + Slot.SEQ, 1)
  }

  /** Removes a key; true when a live entry was removed. */
  deleteAt(buf: Uint8Array, start: number, len: number): boolean {
    const slot = this.#live(buf, start, len)
    if (slot === NIL) return false
    this.#remove(slot, ShardEvent.DELETE)
    this.#deletes++
    return true
  }

  /** Removes the live keys matching the glob; returns how many. */
  deleteMatching(glob: Glob): number {
    const now = this.#now()
    let n = 0
    for (let slot = this.#head; slot !== NIL; ) {
      const next = this.#next[slot]!
      if (this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now) {
        this.#remove(slot, ShardEvent.EXPIRE)
        this.#evictionsExpired++
      } else if (glob.matches(this.#keys.keyString(slot))) {
        this.#remove(slot, ShardEvent.DELETE)
        this.#deletes++
        n++
      }
      slot = next
    }
    return n
  }

  /** Removes every entry; returns how many live entries there were. */
  clear(): number {
    this.cleanupExpired() // expired entries count as expirations, not as cleared
    const live = this.#entries
    this.#deletes += live
    if ((this.eventMask & ShardEvent.CLEAR) !== 0) this.onEvent(ShardEvent.CLEAR, '')
    const header = this.#v.header
    Atomics.add(header, Header.EPOCH, 1)
    Atomics.add(header, Header.SEQ, 1) // readers stand back until it is even again
    this.#keys.clear()
    const slots = this.#v.slots
    for (let slot = 0; slot < this.#used; slot++) {
      // Chunk by chunk, not the whole arena at once: readers inside a read keep theirs until they finish (workers/reader_grace.ts).
      if ((slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) !== 0) this.#freeEntry(slot)
      storeSlotWord(slots, slot * SLOT_WORDS, Slot.FLAGS, 0)
    }
    this.#metas = []
    this.#tags = []
    this.#tagIndex.clear()
    this.#free = []
    this.#used = 0
    this.#head = this.#tail = NIL
    this.#sweepCursor = 0
    this.#entries = this.#usedBytes = this.#rawBytes = this.#storedBytes = this.#compressedEntries = 0
    this.#dict?.releaseAll()
    Atomics.add(header, Header.SEQ, 1)
    return live
  }

  /** Removes every expired entry now; returns how many. */
  cleanupExpired(): number {
    return this.sweep(Infinity)
  }

  /**
   * Removes expired entries among the next `budget` slots, continuing where the
   * previous call stopped, so a timer can spread the work over many ticks.
   */
  sweep(budget: number): number {
    if (this.#entries === 0) return 0
    const now = this.#now()
    const end = Math.min(this.#used, budget === Infinity ? this.#used : this.#sweepCursor + budget)
    let n = 0
    let slot = budget === Infinity ? 0 : this.#sweepCursor
    for (; slot < end; slot++) {
      if ((this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) !== 0 && this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now) {
        this.#remove(slot, ShardEvent.EXPIRE)
        this.#evictionsExpired++
        n++
      }
    }
    this.#sweepCursor = slot >= this.#used ? 0 : slot
    return n
  }

  // ── the same operations with string keys (tests and in-thread callers) ──

  /** {@link getAt} with a string key. */
  get(key: string): Uint8Array | undefined {
    const b = Buffer.from(key, 'utf8')
    return this.getAt(b, 0, b.length)
  }

  /** {@link entryAt} with a string key. */
  entry(key: string): StoredEntry | undefined {
    const b = Buffer.from(key, 'utf8')
    return this.entryAt(b, 0, b.length)
  }

  /** {@link hasAt} with a string key. */
  has(key: string): boolean {
    const b = Buffer.from(key, 'utf8')
    return this.hasAt(b, 0, b.length)
  }

  /** {@link ttlAt} with a string key. */
  ttl(key: string): number | undefined {
    const b = Buffer.from(key, 'utf8')
    return this.ttlAt(b, 0, b.length)
  }

  /** {@link setAt} with a string key. */
  set(key: string, tag: number, raw: Uint8Array, ttl: number | undefined, nx: boolean, xx: boolean, metadata: Uint8Array | undefined): boolean {
    const b = Buffer.from(key, 'utf8')
    return this.setAt(b, 0, b.length, tag, raw, ttl, nx, xx, metadata)
  }

  /** {@link deleteAt} with a string key. */
  delete(key: string): boolean {
    const b = Buffer.from(key, 'utf8')
    return this.deleteAt(b, 0, b.length)
  }

  // ── stats ────────────────────────────────────────────────────────────────

  stats(): RegionShardStats {
    const s: RegionShardStats = {
      ...emptyRegionStats(this.config),
      hits: this.#hits,
      misses: this.#misses,
      staleServed: this.#staleServed,
      sets: this.#sets,
      deletes: this.#deletes,
      evictionsSize: this.#evictionsSize,
      evictionsExpired: this.#evictionsExpired,
      corrupt: this.#corrupt,
      entries: this.#entries,
      compressedEntries: this.#compressedEntries,
      usedBytes: this.#usedBytes,
      rawBytes: this.#rawBytes,
      storedBytes: this.#storedBytes,
    }
    if (this.#dict !== undefined) s.dictionary = this.#dict.stats()
    return s
  }

  resetStats(): void {
    this.#hits = this.#misses = this.#sets = this.#deletes = this.#staleServed = 0
    this.#evictionsSize = this.#evictionsExpired = this.#corrupt = 0
    this.#dict?.resetStats()
  }

  /**
   * @internal Recomputes every gauge from the entries and checks the list and
   * index agree with them; throws on the first mismatch. For tests.
   */
  checkInvariants(): void {
    let entries = 0
    let used = 0
    let raw = 0
    let stored = 0
    let compressed = 0
    let links = 0
    const dictRefs: number[] = []
    let prev = NIL
    for (let slot = this.#head; slot !== NIL; slot = this.#next[slot]!) {
      if (this.#prev[slot] !== prev) throw new Error(`prev link of slot ${slot} is broken`)
      if ((this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) === 0 || !this.#keys.indexes(slot)) throw new Error(`slot ${slot} is not indexed`)
      const storedSize = this.#v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!
      const meta = this.#metas[slot]
      const tags = this.#tags[slot]
      const charge = this.#keys.keyLength(slot) + storedSize + (meta?.length ?? 0) + tagChargeBytes(tags) + ENTRY_OVERHEAD_BYTES
      for (const t of tags ?? []) {
        const slots = this.#tagIndex.get(t)
        if (slots !== slot && !(slots instanceof Set && slots.has(slot))) throw new Error(`slot ${slot}'s tag ${JSON.stringify(t)} is not indexed`)
        links++
      }
      entries++
      used += charge
      raw += this.#raw[slot]!
      stored += storedSize
      if ((this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) !== 0) {
        compressed++
        const id = this.#dictIds[slot]!
        if (id !== 0) dictRefs[id] = (dictRefs[id] ?? 0) + 1
      } else if (this.#dictIds[slot] !== 0) {
        throw new Error(`slot ${slot} is not compressed but names dictionary ${this.#dictIds[slot]}`)
      }
      prev = slot
      if (entries > this.#used) throw new Error('the list has a cycle')
    }
    if (prev !== this.#tail) throw new Error('tail is not the last slot')
    let indexed = 0
    for (const slots of this.#tagIndex.values()) {
      if (slots instanceof Set && slots.size < 2) throw new Error(`a tag's set holds ${slots.size} slot(s): it should be a number or gone`)
      indexed += typeof slots === 'number' ? 1 : slots.size
    }
    if (indexed !== links) throw new Error(`the tag index holds ${indexed} links, entries say ${links}`)
    const expect = { entries, used, raw, stored, compressed, indexed: entries, freeSlots: this.#used - entries }
    const actual = {
      entries: this.#entries,
      used: this.#usedBytes,
      raw: this.#rawBytes,
      stored: this.#storedBytes,
      compressed: this.#compressedEntries,
      indexed: this.#keys.size,
      freeSlots: this.#free.length,
    }
    for (const k of Object.keys(expect) as (keyof typeof expect)[]) {
      if (expect[k] !== actual[k]) throw new Error(`${k} is ${actual[k]}, entries say ${expect[k]}`)
    }
    if (entries > this.config.maxEntries) throw new Error(`${entries} entries exceed maxEntries ${this.config.maxEntries}`)
    if (used > this.config.maxBytes) throw new Error(`${used} bytes exceed maxBytes ${this.config.maxBytes}`)
    if (this.#dict !== undefined) this.#dict.checkReferences(Array.from({ length: dictRefs.length }, (_, id) => dictRefs[id] ?? 0))
    else if (dictRefs.length > 0) throw new Error('entries name dictionaries but the region has none')
  }

  /** @internal Flips a byte of a stored value, to test corruption handling. */
  corruptForTest(key: string, offset: number): void {
    const b = Buffer.from(key, 'utf8')
    const slot = this.#keys.find(b, 0, b.length, hashBytes(b, 0, b.length))
    if (slot < 0) throw new Error(`no entry ${key}`)
    const v = this.#stored(slot)
    const at = offset % v.length
    v[at] = v[at]! ^ 0x5a
  }

  // ── internals ────────────────────────────────────────────────────────────

  /** The key's slot if it holds a live entry; an expired entry is removed on the way. */
  #live(buf: Uint8Array, start: number, len: number): number {
    const hash = hashBytes(buf, start, len)
    this.#lastHash = hash
    const slot = this.#keys.find(buf, start, len, hash)
    if (slot < 0) return NIL
    const expires = this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
    // Most entries never expire: skip the clock read (~100 ns) for them.
    if (expires !== Infinity && expires <= this.#now()) {
      this.#remove(slot, ShardEvent.EXPIRE)
      this.#evictionsExpired++
      return NIL
    }
    return slot
  }

  /** A view of the bytes stored for a slot's value (compressed or not). */
  #stored(slot: number): Buffer {
    const base = slot * SLOT_WORDS
    return this.#slab.view(valueRefOf(this.#v, base), this.#v.slotsU[base + Slot.STORED_SIZE]!)
  }

  /** The original bytes of a slot's value; a corrupt value is removed, counted and read as a miss. */
  #read(slot: number): Uint8Array | undefined {
    const stored = this.#stored(slot)
    if ((this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) === 0) return stored
    const rawSize = this.#raw[slot]!
    const dictId = this.#dictIds[slot]!
    const raw = dictId === 0 ? decompress(stored, rawSize) : this.#dict!.decompress(stored, rawSize, dictId)
    if (raw === undefined) {
      this.#remove(slot, 0)
      this.#corrupt++
    }
    return raw
  }

  /**
   * What `slot`'s entry counts against maxBytes: key + stored value + metadata
   * + tags ({@link tagChargeBytes}) + the fixed overhead. Callers keep it
   * stable between #account and #unaccount: a set unaccounts before it
   * replaces the tags and accounts after.
   */
  #charge(slot: number): number {
    return (
      this.#keys.keyLength(slot) +
      this.#v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]! +
      (this.#metas[slot]?.length ?? 0) +
      tagChargeBytes(this.#tags[slot]) +
      ENTRY_OVERHEAD_BYTES
    )
  }

  #account(slot: number): void {
    const stored = this.#v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!
    this.#usedBytes += this.#charge(slot)
    this.#rawBytes += this.#raw[slot]!
    this.#storedBytes += stored
    if ((this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) !== 0) {
      this.#compressedEntries++
      const id = this.#dictIds[slot]!
      if (id !== 0) this.#dict!.retain(id)
    }
  }

  #unaccount(slot: number): void {
    this.#usedBytes -= this.#charge(slot)
    this.#rawBytes -= this.#raw[slot]!
    this.#storedBytes -= this.#v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!
    if ((this.#v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) !== 0) {
      this.#compressedEntries--
      const id = this.#dictIds[slot]!
      if (id !== 0) this.#dict!.release(id)
    }
  }

  /** Evicts from the head until both budgets hold, sparing `keep` (the entry just written, which fits alone). */
  #evictFor(keep: number): void {
    const { maxBytes, maxEntries } = this.config
    while (this.#entries > maxEntries || this.#usedBytes > maxBytes) {
      let victim = this.#head
      if (victim === keep) victim = this.#next[victim]!
      if (victim === NIL) return
      this.#remove(victim, ShardEvent.EVICT)
      this.#evictionsSize++
    }
  }

  /** Removes a slot's entry; `event` is the {@link ShardEvent} kind it is reported as (0: none). */
  #remove(slot: number, event: number): void {
    if (event !== 0) this.#event(event, slot)
    this.#unaccount(slot)
    this.#begin(slot)
    this.#keys.remove(slot)
    this.#freeEntry(slot) // before the flags, which hold the key's length
    storeSlotWord(this.#v.slots, slot * SLOT_WORDS, Slot.FLAGS, 0)
    this.#end(slot)
    this.#setMeta(slot, undefined)
    this.#untag(slot)
    this.#unlink(slot)
    this.#free.push(slot)
    this.#entries--
  }

  /** Counts a miss of the key `buf[start, start + len)`, and reports it when listened to. */
  #miss(buf: Uint8Array, start: number, len: number): void {
    this.#misses++
    if ((this.eventMask & ShardEvent.MISS) !== 0) this.onEvent(ShardEvent.MISS, Buffer.from(buf.buffer, buf.byteOffset + start, len).toString('utf8'))
  }

  /** Reports an event about `slot`'s key, when its kind is listened to. */
  #event(kind: number, slot: number): void {
    if ((this.eventMask & kind) !== 0) this.onEvent(kind, this.#keys.keyString(slot))
  }

  /**
   * Writes `slot`'s metadata only when there is some to write or to clear, so
   * that #metas stays empty (no array of a million `undefined`s, 4–6 MB per
   * shard) in regions that never use metadata.
   */
  #setMeta(slot: number, meta: Uint8Array | undefined): void {
    if (meta !== undefined || this.#metas[slot] !== undefined) this.#metas[slot] = meta
  }

  #tag(slot: number, tags: string[]): void {
    this.#tags[slot] = tags
    const index = this.#tagIndex
    for (const t of tags) {
      const slots = index.get(t)
      if (slots === undefined) index.set(t, slot)
      else if (typeof slots === 'number') index.set(t, new Set([slots, slot]))
      else slots.add(slot)
    }
  }

  #untag(slot: number): void {
    const tags = this.#tags[slot]
    if (tags === undefined) return
    this.#tags[slot] = undefined
    const index = this.#tagIndex
    for (const t of tags) {
      const slots = index.get(t)
      if (slots === undefined) continue
      if (typeof slots === 'number') {
        if (slots === slot) index.delete(t)
        continue
      }
      slots.delete(slot)
      if (slots.size === 1) index.set(t, slots.values().next().value!)
    }
  }

  /**
   * Removes every entry carrying `tag`; returns how many live ones (expired
   * ones are removed as expirations). Counted as deletes.
   */
  invalidateTag(tag: string): number {
    const slots = this.#tagIndex.get(tag)
    if (slots === undefined) return 0
    const now = this.#now()
    let n = 0
    for (const slot of typeof slots === 'number' ? [slots] : [...slots]) {
      const expired = this.#v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now
      this.#remove(slot, expired ? ShardEvent.EXPIRE : ShardEvent.DELETE)
      if (expired) {
        this.#evictionsExpired++
      } else {
        this.#deletes++
        n++
      }
    }
    return n
  }

  /** The tags of `key`'s live entry (for tests and getEntry). */
  tagsOf(key: string): string[] | undefined {
    const bytes = Buffer.from(key)
    const slot = this.#live(bytes, 0, bytes.length)
    return slot === NIL ? undefined : this.#tags[slot]
  }

  #allocate(): number {
    const reused = this.#free.pop()
    if (reused !== undefined) return reused
    if (this.#used === this.#capacity) this.#grow()
    return this.#used++
  }

  #grow(): void {
    const c = Math.min(this.#capacity * 2, this.#slotLimit)
    if (c === this.#capacity) throw new Error(`region "${this.config.name}" reached its slot limit (${c})`)
    this.#next = regrow(Int32Array, this.#next, c)
    this.#prev = regrow(Int32Array, this.#prev, c)
    this.#created = regrow(Float64Array, this.#created, c)
    this.#raw = regrow(Uint32Array, this.#raw, c)
    this.#dictIds = regrow(Uint8Array, this.#dictIds, c)
    if (this.#fresh !== undefined) this.#fresh = regrow(Float64Array, this.#fresh, c)
    this.#v.memory.slots.grow(c * SLOT_WORDS * 4)
    this.#grew()
    this.#capacity = c
  }

  #link(slot: number): void {
    this.#prev[slot] = this.#tail
    this.#next[slot] = NIL
    if (this.#tail === NIL) this.#head = slot
    else this.#next[this.#tail] = slot
    this.#tail = slot
  }

  #unlink(slot: number): void {
    const p = this.#prev[slot]!
    const n = this.#next[slot]!
    if (p === NIL) this.#head = n
    else this.#next[p] = n
    if (n === NIL) this.#tail = p
    else this.#prev[n] = p
  }

  #moveToTail(slot: number): void {
    if (slot === this.#tail) return
    this.#unlink(slot)
    this.#link(slot)
  }
}
