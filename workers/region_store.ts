/**
 * One shard's slice of one region: a bounded map from key to bytes with LRU or
 * FIFO eviction, per-entry TTL and byte accounting.
 *
 * The store is one class in three layers, one file each:
 * workers/region_slots.ts (the state, the layout of entries as slots in
 * typed arrays and shared memory, compression and accounting, and the
 * primitives on one slot), workers/region_walks.ts (operations over many
 * entries: snapshot pages, scans, sweeps, clear, stats, the invariant check)
 * and this file (the reads and writes of one key, what the shard runs per
 * op). Around them: workers/key_table.ts (key → slot), workers/value_slab.ts
 * (the arena of keys and values), workers/tag_index.ts (tags both ways) and
 * workers/policy/ (eviction order).
 *
 * Keys are bytes: the shard looks keys up straight from the frame
 * (`getAt(frame, start, length)`), never building a string; the methods
 * taking string keys encode them and are for tests and in-thread callers.
 *
 * Eviction: the region's policy (workers/policy/policy.ts; LRU and FIFO in
 * workers/policy/slot_list.ts) is told of every insert, hit and removal, and
 * names the victim when a set leaves the region over either budget; the
 * store removes victims until it is within both. FIFO never reorders: an
 * update keeps its place.
 *
 * Expiry: times come from an injectable monotonic clock. An expired entry is
 * never returned; it is removed when touched, by {@link RegionStore.sweep}
 * (called on a timer by the shard), or by {@link RegionStore.cleanupExpired}.
 */
import { ShardEvent, ValueTag } from '../src/wire/protocol.js'
import { EXPIRES_F64, FLAG_BITS, Header, SLOT_WORDS, Slot, SlotFlag, storeExpiry, storeSlotWord } from '../src/wire/shared_region.js'
import { compressIfSmaller } from '../src/wire/compression.js'
import { F64_PER_SLOT, FLAG_COMPRESSED, FLAG_GRACE, FLAG_LIVE, NIL, TAG_MASK } from './region_slots.js'
import { RegionWalks } from './region_walks.js'
import type { SlotVersions, StoredEntry } from './store_types.js'
import { reserve } from './slot_arrays.js'


/** A number as incr accepts it: JSON's number syntax. */
const NUMBER_TEXT = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/

export class RegionStore extends RegionWalks {
  /** Set by {@link getStaleAt}: whether the value it returned was stale. */
  lastStale = false
  /** Tag of the value last returned by {@link get}. */
  lastTag = 0
  /** Slot of the entry {@link getAt} last returned. */
  lastSlot = NIL

  // ── reads ────────────────────────────────────────────────────────────────

  /**
   * The value's original bytes (tag in {@link lastTag}), or undefined on a miss.
   * Counts a hit or a miss. An uncompressed value is a view of the store's
   * memory, valid until the next write: callers copy it out at once (the shard
   * writes it into the reply) and must not modify it.
   */
  getAt(buf: Uint8Array, start: number, len: number): Uint8Array | undefined {
    const slot = this.live(buf, start, len)
    if (slot === NIL || this.stale(slot)) {
      this.miss(buf, start, len)
      return undefined
    }
    const value = this.read(slot)
    if (value === undefined) {
      this.miss(buf, start, len)
      return undefined
    }
    this.event(ShardEvent.HIT, slot)
    this.policy.access(slot)
    this.hits++
    this.lastTag = this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
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
    const v = this.v
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
    const slot = this.live(buf, start, len)
    const value = slot === NIL || this.stale(slot) ? undefined : this.read(slot)
    if (value === undefined) {
      this.miss(buf, start, len)
      return undefined
    }
    this.policy.access(slot)
    this.hits++
    this.event(ShardEvent.HIT, slot)
    const flags = this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_BITS
    const expiresAt = this.#freshUntil(slot)
    return {
      tag: flags & TAG_MASK,
      value,
      createdAt: this.created[slot]!,
      expiresAt,
      ttlRemaining: this.#remaining(expiresAt),
      sizeBytes: this.raw[slot]!,
      storedBytes: this.v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!,
      compressed: (flags & FLAG_COMPRESSED) !== 0,
      metadata: this.metas[slot],
    }
  }

  /**
   * The fresh value (tag in {@link lastTag}), or undefined, without counting a
   * read, reporting an event or refreshing LRU order: a re-check by a caller
   * whose read was counted already (getOrCompute's, before its loader runs).
   */
  peekAt(buf: Uint8Array, start: number, len: number): Uint8Array | undefined {
    const slot = this.live(buf, start, len)
    if (slot === NIL || this.stale(slot)) return undefined
    const value = this.read(slot)
    if (value !== undefined) this.lastTag = this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
    return value
  }

  /** Whether a live entry exists. Does not count as a read nor refresh LRU order. */
  hasAt(buf: Uint8Array, start: number, len: number): boolean {
    const slot = this.live(buf, start, len)
    return slot !== NIL && !this.stale(slot)
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
      const raw = this.read(slot)
      if (raw !== undefined) {
        tag = this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
        const text = tag === ValueTag.STRING || tag === ValueTag.CODEC ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8') : ''
        if (!NUMBER_TEXT.test(text)) return undefined
        current = Number(text)
        const expiresAt = this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
        ttl = expiresAt === Infinity ? Infinity : Math.max(1, expiresAt - this.now())
        meta = this.metas[slot]
        tags = this.tags.of(slot)
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
      const current = this.read(slot)
      if (current === undefined) return false
      if ((this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK) !== expectTag || Buffer.compare(current, expectBytes) !== 0) return false
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
    this.begin(slot)
    const slots = this.v.slots
    storeExpiry(slots, slot, this.now() + ttl)
    storeSlotWord(slots, slot * SLOT_WORDS, Slot.FLAGS, slots[slot * SLOT_WORDS + Slot.FLAGS]! & ~FLAG_GRACE)
    this.end(slot)
    return true
  }

  /** The live, fresh entry of a key, or NIL (a stale grace entry counts as absent). */
  #liveFresh(buf: Uint8Array, start: number, len: number): number {
    const slot = this.live(buf, start, len)
    return slot !== NIL && this.stale(slot) ? NIL : slot
  }

  /**
   * getOrCompute's read: the value, fresh or (within grace) stale, setting
   * {@link lastStale}; counts a hit, a stale serve or a miss.
   */
  getStaleAt(buf: Uint8Array, start: number, len: number): Uint8Array | undefined {
    const slot = this.live(buf, start, len)
    const value = slot === NIL ? undefined : this.read(slot)
    if (value === undefined) {
      this.miss(buf, start, len)
      return undefined
    }
    this.policy.access(slot)
    this.lastStale = this.stale(slot)
    if (this.lastStale) this.staleServed++
    else {
      this.hits++
      this.event(ShardEvent.HIT, slot)
    }
    this.lastTag = this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & TAG_MASK
    return value
  }

  /** When the entry stops being fresh: its fresh time with grace, else its expiry. */
  #freshUntil(slot: number): number {
    return (this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_GRACE) !== 0 ? this.fresh![slot]! : this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
  }

  /** Remaining ms (rounded up), `Infinity` without expiry, undefined on a miss. Does not count as a read. */
  ttlAt(buf: Uint8Array, start: number, len: number): number | undefined {
    const slot = this.live(buf, start, len)
    if (slot === NIL || this.stale(slot)) return undefined
    return this.#remaining(this.#freshUntil(slot))
  }

  #remaining(expiresAt: number): number {
    return expiresAt === Infinity ? Infinity : Math.max(1, Math.ceil(expiresAt - this.now()))
  }

  /**
   * Applies a read another thread made straight from shared memory
   * (src/wire/shared_region.ts): tells the policy of the hit (LRU refreshes its
   * order), if the slot still holds the entry that was read (same sequence
   * number). Routers log such reads for LRU regions only (src/client/direct_reads.ts).
   */
  touch(slot: number, seq: number): void {
    if (slot < 0 || slot >= this.used) return
    if (this.v.slots[slot * SLOT_WORDS + Slot.SEQ] !== seq) return
    this.policy.access(slot)
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
    let slot = this.live(buf, start, len)
    if (slot === NIL ? xx : nx) return false
    const hash = this.lastHash

    let stored: Uint8Array | undefined
    let flags = tag
    if (grace !== undefined) flags |= FLAG_GRACE
    let dictId = 0
    if (raw.length >= this.config.compressMinBytes) {
      if (this.dict === undefined) {
        stored = compressIfSmaller(raw)
      } else {
        stored = this.dict.compress(raw)
        dictId = this.dict.lastId
      }
      if (stored !== undefined) flags |= FLAG_COMPRESSED
    }
    // The slab copies the bytes: `raw` may view a frame that is reused next.
    stored ??= raw
    // `new Uint8Array(view)` copies into a buffer of its own. (Buffer#slice would
    // not: it returns a view, which would pin or alias the whole frame.)
    const meta = metadata === undefined ? undefined : new Uint8Array(metadata)
    const now = this.now()
    const life = ttl ?? this.config.defaultTtl

    // Room for the key and value first: if there is none, nothing has changed.
    const ref = this.storeEntry(buf.subarray(start, start + len), stored, slot)
    const inserted = slot === NIL
    if (inserted) {
      slot = this.allocate()
      this.begin(slot)
      try {
        this.keyTable.insert(slot, ref, len, hash)
      } catch (err) {
        this.slab.free(ref, len + stored.length)
        this.free.push(slot)
        this.end(slot)
        throw err
      }
      this.entries++
    } else {
      this.begin(slot)
      this.unaccount(slot)
      this.freeEntry(slot)
      storeSlotWord(this.v.slots, slot * SLOT_WORDS, Slot.KEY_REF, ref | 0)
    }
    // Atomic stores of the words other threads read, inside the seqlock (src/wire/shared_region.ts).
    const base = slot * SLOT_WORDS
    const slots = this.v.slots
    storeSlotWord(slots, base, Slot.STORED_SIZE, stored.length)
    storeSlotWord(slots, base, Slot.FLAGS, (slots[base + Slot.FLAGS]! & ~FLAG_BITS) | flags | FLAG_LIVE)
    storeExpiry(slots, slot, now + life + (grace ?? 0))
    if (grace !== undefined) (this.fresh ??= reserve(Float64Array, this.capacity, this.slotLimit))[slot] = now + life
    this.end(slot)
    this.setMeta(slot, meta)
    this.tags.untag(slot)
    if (tags !== undefined && tags.length > 0) this.tags.tag(slot, tags)
    this.raw[slot] = raw.length
    this.dictIds[slot] = dictId // after unaccount released the old value's dictionary
    this.created[slot] = now
    // The policy learns of the entry once its charge is known (metadata and tags
    // included): an update now, a new entry after its victims left (evictFor).
    const charge = this.account(slot)
    if (!inserted) this.policy.update(slot, charge)
    this.sets++
    this.event(ShardEvent.SET, slot)
    this.evictFor(slot, inserted ? hash : undefined, charge)
    return true
  }

  /** Removes a key; true when a live entry was removed. */
  deleteAt(buf: Uint8Array, start: number, len: number): boolean {
    const slot = this.live(buf, start, len)
    if (slot === NIL) return false
    this.remove(slot, ShardEvent.DELETE)
    this.deletes++
    return true
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
  }}
