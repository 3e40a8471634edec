/**
 * A region slice's entries as slots: the state every operation of the store
 * shares (memory, per-slot arrays, counters, the eviction policy) and the
 * primitives on one slot (find, read, account, evict, remove). Walks over
 * many slots are in workers/region_walks.ts and the per-key operations in
 * workers/region_store.ts, which extend this class; what a region store is
 * for is told there.
 *
 * Layout (after isaacs/node-lru-cache): entries are slots, not objects. A
 * {@link KeyTable} (a hash table over key bytes, in typed arrays) finds a
 * slot; typed arrays hold each slot's sizes, times, flags and the ref of its
 * value in a {@link ValueSlab} (values and keys live in arenas, not one object
 * each), and the policy's order (workers/policy/); freed slots go on a stack
 * and are reused. With a million entries the GC then traces a handful of large
 * arrays instead of millions of objects, which is what keeps a shard's pauses
 * short. The arrays start small and double as the region grows, up to its
 * entry budget (workers/slot_arrays.ts says how they grow).
 *
 * What other threads read lives in shared memory ({@link RegionMemory}, layout
 * in src/wire/shared_region.ts): the hash index, each slot's record (sequence
 * number, flags, key and value refs and sizes, expiry) and both arenas. Every
 * change to a slot's record happens between two increments of its sequence
 * number (odd while changing), and clear() does the same with the header's, so
 * readers can tell a consistent read from a torn one. The policy's order,
 * charges, creation times and metadata are private to the shard.
 *
 * Compression: values of at least `compressMinBytes` are LZ4-compressed when
 * that makes them smaller, with the plain codec or, when the region has
 * `compressDictionary`, with a {@link DictionaryCompressor} (sampling, rebuilds
 * and versions are described there). Which dictionary an entry was written
 * with is kept per slot in `dictIds`, private to the shard: other threads
 * never decode a compressed value (they see `SlotFlag.COMPRESSED` and ask the
 * shard), so the shared slot layout needs no new field. Each live entry holds a
 * reference on its dictionary, taken in {@link RegionSlots.account} and dropped in
 * {@link RegionSlots.unaccount}, so an old dictionary lives exactly as long as an entry
 * that needs it.
 *
 * Accounting: an entry is charged `keyBytes + storedBytes + metadataBytes +
 * tagBytes + ENTRY_OVERHEAD_BYTES` against `maxBytes`, where tagBytes is, per
 * tag, its UTF-8 bytes + TAG_LINK_OVERHEAD_BYTES ({@link tagChargeBytes}): the
 * tag index (workers/tag_index.ts) lives on the shard's heap, and without a
 * charge tags would grow it outside every budget. `rawBytes` and `storedBytes`
 * sum the values before and after compression. `checkInvariants`
 * (workers/region_walks.ts) recomputes every counter from the entries (the
 * property test calls it after every operation).
 *
 * Why the fields are `protected` rather than `#private`: the store's three
 * layers share them, and a `#` field is visible to its own class only; nothing
 * outside the layers may touch them. V8 keeps both kinds as in-object
 * properties reached through the same inline caches.
 */
import { ENTRY_OVERHEAD_BYTES, ShardEvent, tagChargeBytes } from '../src/wire/protocol.js'
import { EXPIRES_F64, Header, KEY_LEN_SHIFT, RegionViews, SLOT_WORDS, Slot, SlotFlag, allocateRegionMemory, monotonicNow, slotLimit, storeSlotWord, valueRefOf } from '../src/wire/shared_region.js'
import type { RegionMemory } from '../src/wire/shared_region.js'
import { DictionaryCompressor, decompress } from '../src/wire/compression.js'
import type { DictionaryTuning } from '../src/wire/compression.js'
import { KeyTable, hashBytes } from './key_table.js'
import { createPolicy } from './policy/index.js'
import type { Policy } from './policy/policy.js'
import type { ReaderGrace } from './reader_grace.js'
import { slotsFor } from '../src/wire/region_types.js'
import type { RegionShardConfig } from '../src/wire/region_types.js'
import { regrow, reserve } from './slot_arrays.js'
import { TagIndex } from './tag_index.js'
import { ArenaFullError, ValueSlab } from './value_slab.js'

export const NIL = -1
export const FLAG_COMPRESSED = SlotFlag.COMPRESSED
export const FLAG_LIVE = SlotFlag.LIVE
export const FLAG_GRACE = SlotFlag.GRACE
export const TAG_MASK = SlotFlag.TAG_MASK
const INITIAL_CAPACITY = 256
/** Float64 words per slot record, and where the expiry sits among them. */
export const F64_PER_SLOT = SLOT_WORDS / 2

/** A budget's room as an Int32 header word: never negative, at most 2^31 − 1 (Infinity included). */
function roomOf(n: number): number {
  return n <= 0 ? 0 : n >= 0x7fffffff ? 0x7fffffff : Math.floor(n)
}


export abstract class RegionSlots {
  readonly config: RegionShardConfig
  protected readonly now: () => number
  /** The region's eviction order, chosen once from `config.policy`. */
  protected readonly policy: Policy

  /** Shared with readers: header, slot records, index and arenas. */
  protected readonly v: RegionViews
  protected readonly slotLimit: number
  protected readonly keyTable: KeyTable
  /** Hash of the key last looked up by {@link live}, reused when a set inserts it. */
  protected lastHash = 0
  /** Replaced only by {@link compact}. */
  protected slab: ValueSlab
  readonly #grace: ReaderGrace | undefined
  protected metas: (Uint8Array | undefined)[] = []
  protected readonly tags = new TagIndex()
  protected created: Float64Array
  /** Per slot, the value's size before compression (stats' rawBytes, getEntry's sizeBytes). */
  protected raw: Uint32Array
  /** Per slot: id of the dictionary its value was compressed with; 0 for none (plain codec, or not compressed). */
  protected dictIds: Uint8Array
  /** Set when the region compresses with a dictionary. */
  protected readonly dict: DictionaryCompressor | undefined
  protected free: number[] = []
  protected capacity: number
  protected used = 0 // slots ever handed out (high-water mark)

  protected entries = 0
  protected usedBytes = 0
  protected rawBytes = 0
  protected storedBytes = 0
  protected compressedEntries = 0

  protected hits = 0
  protected misses = 0
  protected staleServed = 0
  /** Per slot, when a grace entry stops being fresh (allocated with the first one). */
  protected fresh: Float64Array | undefined
  /**
   * The kinds of {@link ShardEvent} to report, and where: set by the shard
   * while its owner listens (0: none, and no key is decoded for an event).
   */
  eventMask = 0
  onEvent: (kind: number, key: string) => void = () => {}
  protected sets = 0
  protected deletes = 0
  protected evictionsSize = 0
  protected evictionsExpired = 0
  protected corrupt = 0

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
    this.dict =
      config.compressDictionary === true && Number.isFinite(config.compressMinBytes) ? new DictionaryCompressor(dictionaryTuning) : undefined
    this.now = now
    this.slotLimit = slotsFor(config)
    const mem = memory ?? allocateRegionMemory(this.slotLimit)
    if (mem.slots.maxByteLength < this.slotLimit * SLOT_WORDS * 4) throw new Error('region memory reserves too few slots')
    this.v = new RegionViews(mem)
    // One slot more than the entry budget: a set links its entry before evicting.
    this.capacity = Math.min(INITIAL_CAPACITY, this.slotLimit)
    const c = this.capacity
    mem.slots.grow(c * SLOT_WORDS * 4)
    this.keyTable = new KeyTable(this.v, config.maxEntries, this.#grew)
    this.#grace = readers
    this.slab = new ValueSlab(mem.values, this.#grew, readers)
    this.#grew()
    this.publishRoom()
    const limit = this.slotLimit
    this.policy = createPolicy(config.policy, { capacity: c, limit, maxEntries: config.maxEntries, maxBytes: config.maxBytes })
    this.created = reserve(Float64Array, c, limit)
    this.raw = reserve(Uint32Array, c, limit)
    this.dictIds = reserve(Uint8Array, c, limit)
  }

  /** The generation of the value arena (0 until a {@link compact}). */
  get arenaGen(): number {
    return Atomics.load(this.v.header, Header.ARENA)
  }

  /** The shared memory readers on other threads map. */
  get memory(): RegionMemory {
    return this.v.memory
  }

  /** After a shared buffer grew: remap our views, then tell readers to remap theirs. */
  #grew = (): void => {
    this.v.remap()
    Atomics.add(this.v.header, Header.GEN, 1)
  }

  get size(): number {
    return this.entries
  }

  /**
   * Publishes the room left under the budgets (src/wire/shared_region.ts
   * Header.ROOM_ENTRIES) for routers deciding whether a direct read may run
   * ahead of their pending sets. Called after every frame.
   */
  publishRoom(): void {
    const h = this.v.header
    Atomics.store(h, Header.ROOM_ENTRIES, roomOf(this.config.maxEntries - this.entries))
    Atomics.store(h, Header.ROOM_BYTES, roomOf(this.config.maxBytes - this.usedBytes))
  }

  /**
   * A new byte budget for this slice (a rebalance between shards: the
   * owner's maintenance, src/ops/maintenance.ts). The policy resizes its
   * shares, and entries are evicted down to a smaller budget at once.
   * Returns how many were evicted. The slots were reserved for the largest
   * budget a rebalance may give (`RegionShardConfig.maxBytesCeiling`).
   */
  setMaxBytes(maxBytes: number): number {
    this.config.maxBytes = maxBytes
    this.policy.resize?.(maxBytes)
    let evicted = 0
    while (this.usedBytes > maxBytes) {
      const victim = this.policy.victim(NIL)
      if (victim === NIL) break
      this.remove(victim, ShardEvent.EVICT)
      this.evictionsSize++
      evicted++
    }
    this.publishRoom()
    return evicted
  }

  /**
   * Copies every live entry's chunk into a new value arena and drops the old
   * one, giving back what a churn left free in it (a SharedArrayBuffer can
   * grow, never shrink). Readers on other threads keep the old arena, never
   * written again, until they adopt the new one by message; the protocol is
   * in src/wire/shared_region.ts ("Compaction"). Runs in one go: the shard
   * answers nothing else meanwhile (the pause is measured by the caller).
   * Returns the new arena and its generation, to post to the readers.
   */
  compact(): { values: SharedArrayBuffer; gen: number; beforeBytes: number; afterBytes: number } {
    const v = this.v
    const h = v.header
    const old = this.slab
    const beforeBytes = old.reservedBytes
    const values = new SharedArrayBuffer(0, { maxByteLength: v.memory.values.maxByteLength })
    const slab = new ValueSlab(values, this.#grew, this.#grace)
    // Odd first: from here on a reader's read either stops at ARENA or fails its closing SEQ check.
    Atomics.add(h, Header.SEQ, 1)
    Atomics.add(h, Header.EPOCH, 1) // near-cache entries check their slot again
    const gen = Atomics.add(h, Header.ARENA, 1) + 1
    const from = old.bytes
    v.memory.values = values
    this.slab = slab
    v.remap()
    const slots = v.slots
    for (let slot = 0; slot < this.capacity; slot++) {
      const base = slot * SLOT_WORDS
      const flags = slots[base + Slot.FLAGS]!
      if ((flags & SlotFlag.LIVE) === 0) continue
      const ref = v.slotsU[base + Slot.KEY_REF]!
      const len = (flags >>> KEY_LEN_SHIFT) + v.slotsU[base + Slot.STORED_SIZE]!
      storeSlotWord(slots, base, Slot.KEY_REF, slab.store(from.subarray(ref, ref + len)) | 0)
    }
    Atomics.add(h, Header.SEQ, 1)
    // The shard's own views may have been remapped by growth meanwhile: readers remap too.
    Atomics.add(h, Header.GEN, 1)
    return { values, gen, beforeBytes, afterBytes: slab.reservedBytes }
  }

  /** @internal For the bench: bytes of the eviction policy's own state, and the slots it is sized for. */
  policyFootprint(): { bytes: number; slots: number } {
    return { bytes: this.policy.stateBytes(), slots: this.capacity }
  }

  /** @internal For tests: freed chunks that wait for a reader's read to end (workers/reader_grace.ts). */
  get retiredChunks(): number {
    return this.slab.retiredChunks
  }

  /** The key's slot if it holds a live entry; an expired entry is removed on the way. */
  protected live(buf: Uint8Array, start: number, len: number): number {
    const hash = hashBytes(buf, start, len)
    this.lastHash = hash
    const slot = this.keyTable.find(buf, start, len, hash)
    if (slot < 0) return NIL
    const expires = this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
    // Most entries never expire: skip the clock read (~100 ns) for them.
    if (expires !== Infinity && expires <= this.now()) {
      this.remove(slot, ShardEvent.EXPIRE)
      this.evictionsExpired++
      return NIL
    }
    return slot
  }

  /** Whether `slot` holds a grace entry past its fresh time (live, but only for getOrCompute). */
  protected stale(slot: number): boolean {
    return (this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_GRACE) !== 0 && this.fresh![slot]! <= this.now()
  }

  /** A view of the bytes stored for a slot's value (compressed or not). */
  protected stored(slot: number): Buffer {
    const base = slot * SLOT_WORDS
    return this.slab.view(valueRefOf(this.v, base), this.v.slotsU[base + Slot.STORED_SIZE]!)
  }

  /** The original bytes of a slot's value; a corrupt value is removed, counted and read as a miss. */
  protected read(slot: number): Uint8Array | undefined {
    const stored = this.stored(slot)
    if ((this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) === 0) return stored
    const rawSize = this.raw[slot]!
    const dictId = this.dictIds[slot]!
    const raw = dictId === 0 ? decompress(stored, rawSize) : this.dict!.decompress(stored, rawSize, dictId)
    if (raw === undefined) {
      this.remove(slot, 0)
      this.corrupt++
    }
    return raw
  }

  /**
   * What `slot`'s entry counts against maxBytes: key + stored value + metadata
   * + tags ({@link tagChargeBytes}) + the fixed overhead. Callers keep it
   * stable between account and unaccount: a set unaccounts before it
   * replaces the tags and accounts after.
   */
  #charge(slot: number): number {
    return (
      this.keyTable.keyLength(slot) +
      this.v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]! +
      (this.metas[slot]?.length ?? 0) +
      tagChargeBytes(this.tags.of(slot)) +
      ENTRY_OVERHEAD_BYTES
    )
  }

  /** Counts `slot`'s entry in the gauges; returns its charge (see {@link #charge}). */
  protected account(slot: number): number {
    const stored = this.v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!
    const charge = this.#charge(slot)
    this.usedBytes += charge
    this.rawBytes += this.raw[slot]!
    this.storedBytes += stored
    if ((this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) !== 0) {
      this.compressedEntries++
      const id = this.dictIds[slot]!
      if (id !== 0) this.dict!.retain(id)
    }
    return charge
  }

  protected unaccount(slot: number): void {
    this.usedBytes -= this.#charge(slot)
    this.rawBytes -= this.raw[slot]!
    this.storedBytes -= this.v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!
    if ((this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) !== 0) {
      this.compressedEntries--
      const id = this.dictIds[slot]!
      if (id !== 0) this.dict!.release(id)
    }
  }

  /**
   * Makes room for the entry just written in `slot` (which fits alone): evicts
   * the policy's victims until both budgets hold.
   *
   * A new entry (`hash` and `charge` given) joins the policy only after the
   * victims have left, so the policy sees a miss the way the papers and their
   * simulators replay one: evict, then insert. Telling it first made SIEVE's
   * hand stop on the newcomer and take it next (the store's SIEVE read 76.73%
   * on lirs-sprite at 707 entries against the published 81.52%), and would
   * count the newcomer in S3-FIFO's small queue and W-TinyLFU's window while
   * they choose. When keeping the new entry needs an eviction, a policy that
   * screens may refuse it instead. Why the `screens` test first: for LRU and
   * FIFO the question is then never asked, and its code never inlined into
   * setAt; asking it (and computing the charge) on every evicting set cost
   * ~20 ns of ~700 (measured).
   *
   * An update (`hash` undefined) is in the policy already; its victims spare it.
   */
  protected evictFor(slot: number, hash: number | undefined, charge: number): void {
    const { maxBytes, maxEntries } = this.config
    const policy = this.policy
    if (hash === undefined) {
      while (this.entries > maxEntries || this.usedBytes > maxBytes) {
        const victim = policy.victim(slot)
        if (victim === NIL) return
        this.remove(victim, ShardEvent.EVICT)
        this.evictionsSize++
      }
      return
    }
    if (policy.screens && (this.entries > maxEntries || this.usedBytes > maxBytes) && !policy.admit(slot, charge)) {
      policy.insert(slot, hash, charge) // the one removal path tells the policy it left
      this.remove(slot, ShardEvent.EVICT)
      this.evictionsSize++
      return
    }
    while (this.entries > maxEntries || this.usedBytes > maxBytes) {
      const victim = policy.victim(NIL)
      if (victim === NIL) break
      this.remove(victim, ShardEvent.EVICT)
      this.evictionsSize++
    }
    policy.insert(slot, hash, charge)
  }

  /**
   * Copies an entry's key then its stored value into one chunk of the arena
   * (see workers/key_table.ts for why together); returns the key's ref, the
   * value's being that plus the key's length. When the arena is at its 4 GiB
   * reservation (possible only without a byte budget), evicts the policy's
   * victims to make room, sparing `keep`.
   */
  protected storeEntry(key: Uint8Array, value: Uint8Array, keep: number): number {
    for (;;) {
      try {
        return this.slab.store(key, value)
      } catch (err) {
        if (!(err instanceof ArenaFullError)) throw err
        const victim = this.policy.victim(keep)
        if (victim === NIL) throw new Error(`region "${this.config.name}" has no room left for ${key.length + value.length} bytes in this shard's arena`)
        this.remove(victim, ShardEvent.EVICT)
        this.evictionsSize++
      }
    }
  }

  /** Returns the chunk holding `slot`'s key and stored value to the arena. */
  protected freeEntry(slot: number): void {
    const base = slot * SLOT_WORDS
    const v = this.v
    this.slab.free(v.slotsU[base + Slot.KEY_REF]!, (v.slots[base + Slot.FLAGS]! >>> KEY_LEN_SHIFT) + v.slotsU[base + Slot.STORED_SIZE]!)
  }

  /** Marks a slot's shared record as changing (its sequence number odd); {@link end} publishes the change. */
  protected begin(slot: number): void {
    // The slot odd first, then the epoch: a reader whose (atomic) epoch load sees the new epoch then
    // sees the slot changing or changed, and a near entry can be stamped with that epoch only with
    // the slot's new state. The other order left a gap where a reader saw the new epoch and the old
    // slot, stamped the old value with it, and served it after the change without a look.
    Atomics.add(this.v.slots, slot * SLOT_WORDS + Slot.SEQ, 1)
    Atomics.add(this.v.header, Header.EPOCH, 1)
  }

  protected end(slot: number): void {
    Atomics.add(this.v.slots, slot * SLOT_WORDS + Slot.SEQ, 1)
  }

  /** Removes a slot's entry; `event` is the {@link ShardEvent} kind it is reported as (0: none). */
  protected remove(slot: number, event: number): void {
    if (event !== 0) this.event(event, slot)
    this.unaccount(slot)
    this.begin(slot)
    this.keyTable.remove(slot)
    this.freeEntry(slot) // before the flags, which hold the key's length
    storeSlotWord(this.v.slots, slot * SLOT_WORDS, Slot.FLAGS, 0)
    this.end(slot)
    this.setMeta(slot, undefined)
    this.tags.untag(slot)
    this.policy.remove(slot, event)
    this.free.push(slot)
    this.entries--
  }

  /** Counts a miss of the key `buf[start, start + len)`, and reports it when listened to. */
  protected miss(buf: Uint8Array, start: number, len: number): void {
    this.misses++
    if ((this.eventMask & ShardEvent.MISS) !== 0) this.onEvent(ShardEvent.MISS, Buffer.from(buf.buffer, buf.byteOffset + start, len).toString('utf8'))
  }

  /** Reports an event about `slot`'s key, when its kind is listened to. */
  protected event(kind: number, slot: number): void {
    if ((this.eventMask & kind) !== 0) this.onEvent(kind, this.keyTable.keyString(slot))
  }

  /**
   * Writes `slot`'s metadata only when there is some to write or to clear, so
   * that metas stays empty (no array of a million `undefined`s, 4–6 MB per
   * shard) in regions that never use metadata.
   */
  protected setMeta(slot: number, meta: Uint8Array | undefined): void {
    if (meta !== undefined || this.metas[slot] !== undefined) this.metas[slot] = meta
  }

  protected allocate(): number {
    const reused = this.free.pop()
    if (reused !== undefined) return reused
    if (this.used === this.capacity) this.#grow()
    return this.used++
  }

  #grow(): void {
    const c = Math.min(this.capacity * 2, this.slotLimit)
    if (c === this.capacity) throw new Error(`region "${this.config.name}" reached its slot limit (${c})`)
    this.policy.grow(c)
    this.created = regrow(Float64Array, this.created, c)
    this.raw = regrow(Uint32Array, this.raw, c)
    this.dictIds = regrow(Uint8Array, this.dictIds, c)
    if (this.fresh !== undefined) this.fresh = regrow(Float64Array, this.fresh, c)
    this.v.memory.slots.grow(c * SLOT_WORDS * 4)
    this.#grew()
    this.capacity = c
  }
}
