/**
 * A region slice's memory, shared between its shard (the only writer) and
 * any thread that reads it directly: the layout both sides agree on, the
 * reader, and the access log that carries reads back to the shard.
 *
 * Why reads bypass the shard: a get that crosses threads costs a thread
 * wake-up on each side, 20–35 µs of CPU on the reference machine, however
 * small the batch. Reading the shard's memory costs a hash probe and a copy,
 * a few hundred ns, and the value stays off the reading thread's heap.
 *
 * Consistency, by the JavaScript memory model (not by x86's ordering: Node
 * runs on ARM64 too, where plain loads may be satisfied out of order). The
 * model orders SeqCst atomics among themselves and, through a store that an
 * atomic load reads, everything the storing thread did before it; it orders
 * nothing about plain reads that race with plain writes. So:
 *
 * 1. Slot records are a seqlock of atomics only. Every slot word a reader
 *    looks at is written by the shard with `Atomics.store` between the two
 *    `Atomics.add`s on the slot's SEQ (odd while it changes), and read here
 *    with `Atomics.load` between two loads of SEQ. If any word read came from
 *    a change that began after the first SEQ load, that change's odd store
 *    happens-before this word's load, hence before the closing SEQ load,
 *    which must then see it: the reader retries on the shard. A torn float
 *    (the expiry) is read as its two Int32 halves for the same reason.
 * 2. Chunk bytes (the key, then the value) are read with plain loads, which
 *    is safe because no chunk is written while a reader may read it. A chunk
 *    is written once, before the `Atomics.store` of the slot word that
 *    publishes its ref: a reader that loads that ref sees the bytes written.
 *    A freed chunk is reused only after every reader that might hold its ref
 *    has finished: each reader thread announces a direct read by making its
 *    word in the access log ({@link AccessLogWriter.enterRead}) odd, and even
 *    again after; the shard retires freed chunks and hands them out again
 *    only once each reader it saw inside a read has moved on
 *    (workers/reader_grace.ts). A reader that entered after the shard looked
 *    loads slot words stored after the chunk was unlinked, so it cannot
 *    reach the chunk at all.
 * 3. The hash index (buckets) and the header's MASK are hints, read plainly:
 *    an aligned Int32 element is never torn, whatever it races with, and a
 *    wrong hint only leads to a slot whose key bytes and record are checked
 *    as above, within bounds. A racing write can cost a miss on this path,
 *    never a wrong value.
 * 4. The near cache's check that nothing changed (the region's EPOCH against
 *    the one an entry was stamped with, src/client/direct_reads.ts) is a
 *    plain load. It needs no ordering: the value served is the reading
 *    thread's own copy, so nothing shared is read after it. It is never torn
 *    (an aligned Int32 element), and by the model's coherence it sees every
 *    bump that happens-before it: every write whose completion this thread
 *    can have learned of, by a message or an atomic, is counted in the epoch
 *    it loads. A bump it misses belongs to a write concurrent with the read,
 *    which may be ordered after it. When the epoch differs, the entry is
 *    re-checked from an `Atomics.load` of it, as a direct read begins. And
 *    one check in 64 is an `Atomics.load`: the model lets a loop that never
 *    synchronizes keep reading an old value with plain loads (a compiler
 *    may hoist them), so a caller spinning on a key still sees its write.
 *
 * The region header has one more sequence number for bulk changes (clear).
 * Every miss on this path (absent, expired, torn, growing) is answered by the
 * shard, which stays the authority.
 *
 * LRU order: a read here cannot relink the shard's list, so the reader logs
 * (slot, sequence) in an {@link AccessLog} that the shard applies before its
 * next frame; when the log is full, reads are dropped from it (as Caffeine's
 * read buffer drops them): recency stays approximate under extreme read
 * rates, never wrong about which entry was read.
 *
 * Growth: every buffer is a growable SharedArrayBuffer, reserved once at its
 * largest size (address space only; memory is committed as it is touched) and
 * grown in place, so a growth needs no message to follow. Views are
 * fixed-length (V8 reads length-tracking views 2–3x slower, measured), so
 * after a growth the shard bumps GEN in the header and readers remap.
 *
 * Compaction is the one replacement: a growable buffer cannot shrink, so to
 * give back what a churn left free in the value arena the shard copies the
 * live chunks into a new arena (workers/region_slots.ts `compact`). It holds
 * the region's SEQ odd while it rewrites the slots' refs, and bumps ARENA
 * first; a reader checks ARENA against the generation of the arena its views
 * map, after its first SEQ load, and asks the shard while they differ. Why
 * that is safe: a reader that loaded a rewritten ref loaded it after the odd
 * SEQ store (both atomics), so its closing SEQ load fails; a reader that
 * started after the rewrite sees the new ARENA (stored before the even SEQ it
 * loaded first) and stops. The old arena is never written again, so plain
 * loads of it stay what they were. The new arena reaches each reader thread
 * by message ({@link SharedRegionReader.adoptArena}); until then it asks the
 * shard, which stays the authority.
 */
/** The default clock: epoch-based ms from a monotonic source; agrees across threads to a few µs (measured). */
export const monotonicNow = (): number => performance.timeOrigin + performance.now()

/** Header words (Int32). */
export const Header = {
  /** Seqlock over the whole region: odd while a bulk change (clear) runs. */
  SEQ: 0,
  /** Bucket count − 1. */
  MASK: 1,
  /** Bumped after any buffer grew: readers remap their views. */
  GEN: 2,
  /** Generation of the value arena: bumped when a compaction replaced it (see the notes above). */
  ARENA: 3,
  /**
   * Bumped by the shard as it begins to change any slot, and a clear: after
   * the slot's (or the header's) SEQ turned odd, so a reader that loads the
   * new epoch sees the change begun (workers/region_slots.ts begin). A
   * near-cache entry checked while the epoch read E is still current while it
   * reads E, without a look at its slot record (a random cache line among
   * millions; the epoch is one hot word). In a cache line of its own: it moves
   * with every write, and the words above are read by every direct read.
   */
  EPOCH: 16,
  /**
   * Room the slice had after the shard's last frame: entries and bytes it can
   * still take before its budgets make it evict (clamped to 2^31 − 1). A
   * router lets direct reads run ahead of its own pending sets only while
   * they all fit (src/client/direct_reads.ts #roomFor). Beside EPOCH: both move with writes.
   */
  ROOM_ENTRIES: 24,
  ROOM_BYTES: 25,
} as const
const HEADER_WORDS = 32

/**
 * Slot record: `SLOT_WORDS` Int32 words per slot, 32 bytes. Only what direct
 * readers need is here (the raw size, list links and the like are the
 * shard's own arrays): at a million entries every word is 4 MB.
 */
export const Slot = {
  SEQ: 0,
  /** Low 8 bits: {@link SlotFlag} bits and the value tag; the bits above: the key's UTF-8 length ({@link KEY_LEN_SHIFT}). */
  FLAGS: 1,
  KEY_HASH: 2,
  /**
   * Offset in the value arena (uint32) of the entry's chunk: the key bytes,
   * then the stored value (see {@link valueRefOf}). Word 4 is unused.
   */
  KEY_REF: 3,
  STORED_SIZE: 5,
  /**
   * Words 6–7: expiry as a float64, at Float64 index `slot * SLOT_WORDS / 2 + EXPIRES_F64`;
   * other threads read and the shard stores it as two Int32 words ({@link loadExpiry}, {@link storeExpiry}).
   */
  EXPIRES_LO: 6,
  EXPIRES_HI: 7,
} as const
export const SLOT_WORDS = 8
export const EXPIRES_F64 = 3
/** The key length is `FLAGS >>> KEY_LEN_SHIFT`; the flags are `FLAGS & FLAG_BITS`. */
export const KEY_LEN_SHIFT = 8
export const FLAG_BITS = 0xff

export const SlotFlag = {
  TAG_MASK: 0x0f,
  /**
   * The entry has a grace period (getOrCompute `grace`): past its fresh time it
   * is served only as stale, by the shard. Direct readers leave it to the shard.
   */
  GRACE: 0x20,
  /** Set while the slot holds an entry. */
  LIVE: 0x40,
  COMPRESSED: 0x80,
} as const

/** Where the stored value of the slot record at word `base` starts: just after its key. The shard's own read (plain loads). */
export function valueRefOf(v: RegionViews, base: number): number {
  return v.slotsU[base + Slot.KEY_REF]! + (v.slots[base + Slot.FLAGS]! >>> KEY_LEN_SHIFT)
}

// Float64 <-> two Int32 words, for the expiry (Atomics has no Float64Array).
const f64 = new Float64Array(1)
const f64Words = new Int32Array(f64.buffer)

/**
 * The shard's store of a slot record word that other threads read: atomic, so
 * that a reader's atomic load of it synchronizes with it (see the consistency
 * notes above). Only between the slot's SEQ bumps.
 */
export function storeSlotWord(slots: Int32Array, base: number, word: number, value: number): void {
  Atomics.store(slots, base + word, value)
}

/** The shard's store of slot `slot`'s expiry, as two atomic Int32 words. */
export function storeExpiry(slots: Int32Array, slot: number, expiresAt: number): void {
  f64[0] = expiresAt
  const base = slot * SLOT_WORDS
  Atomics.store(slots, base + Slot.EXPIRES_LO, f64Words[0]!)
  Atomics.store(slots, base + Slot.EXPIRES_HI, f64Words[1]!)
}

/** Another thread's read of slot `slot`'s expiry: two atomic loads, checked by the seqlock like any word. */
export function loadExpiry(slots: Int32Array, slot: number): number {
  const base = slot * SLOT_WORDS
  f64Words[0] = Atomics.load(slots, base + Slot.EXPIRES_LO)
  f64Words[1] = Atomics.load(slots, base + Slot.EXPIRES_HI)
  return f64[0]!
}

/** The SharedArrayBuffers of one region slice. All but the header are growable. */
export interface RegionMemory {
  header: SharedArrayBuffer
  slots: SharedArrayBuffer
  buckets: SharedArrayBuffer
  /** Each entry's key bytes, then its stored value. */
  values: SharedArrayBuffer
}

/** Largest buffer V8 lets a growable SharedArrayBuffer reserve. */
export const MAX_ARENA_BYTES = 2 ** 32
/** Slots per region slice at most (a reservation bound; budgets are usually far smaller). */
export const MAX_SLOTS = 1 << 26
export const MAX_BUCKETS = 1 << 27

/** Slots a slice can ever need: one per entry the budgets allow, plus one (a set links before it evicts). */
export function slotLimit(maxEntries: number, maxBytes: number, entryOverhead: number): number {
  return Math.min(maxEntries + 1, Math.floor(maxBytes / entryOverhead) + 1, MAX_SLOTS)
}

/** Reserves the buffers of a region slice that may hold up to `maxSlots` slots. */
export function allocateRegionMemory(maxSlots: number): RegionMemory {
  let buckets = 16
  while (buckets < maxSlots * 2 && buckets < MAX_BUCKETS) buckets *= 2
  const growable = (max: number): SharedArrayBuffer => new SharedArrayBuffer(0, { maxByteLength: max })
  return {
    header: new SharedArrayBuffer(HEADER_WORDS * 4),
    slots: growable(maxSlots * SLOT_WORDS * 4),
    buckets: growable(buckets * 4),
    values: growable(MAX_ARENA_BYTES),
  }
}

/** Fixed-length views of a {@link RegionMemory}, remapped after growth. */
export class RegionViews {
  readonly header: Int32Array
  slots!: Int32Array
  slotsU!: Uint32Array
  slotsF!: Float64Array
  buckets!: Int32Array
  values!: Buffer

  constructor(readonly memory: RegionMemory) {
    this.header = new Int32Array(memory.header)
    this.remap()
  }

  remap(): void {
    const m = this.memory
    const slotBytes = m.slots.byteLength
    this.slots = new Int32Array(m.slots, 0, slotBytes / 4)
    this.slotsU = new Uint32Array(m.slots, 0, slotBytes / 4)
    this.slotsF = new Float64Array(m.slots, 0, slotBytes / 8)
    this.buckets = new Int32Array(m.buckets, 0, m.buckets.byteLength / 4)
    this.values = Buffer.from(m.values, 0, m.values.byteLength)
  }
}

/** FNV-1a over bytes: cheap for short keys, and spreads them well enough for linear probing at load ≤ 1/2. */
export function hashBytes(buf: Uint8Array, start: number, len: number): number {
  let h = 0x811c9dc5
  const end = start + len
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193)
  return h >>> 0
}

/** Node's Buffer has this undocumented method, which Buffer#toString('utf8', ...) calls after checking its arguments. */
interface FastSlice {
  utf8Slice(start: number, end: number): string
}

/**
 * What {@link SharedRegionReader.find} saw: the slot, its sequence number and
 * the header's, and the slot words it loaded (each loaded once, atomically;
 * {@link SharedRegionReader.valid} checks them all at the end).
 */
export interface Found {
  slot: number
  seq: number
  regionSeq: number
  /** The slot's FLAGS word (key length, tag, flags). */
  flags: number
  /** The ref of the slot's chunk (its key's bytes, then the value). */
  ref: number
  expiresAt: number
}

export function newFound(): Found {
  return { slot: 0, seq: 0, regionSeq: 0, flags: 0, ref: 0, expiresAt: 0 }
}

/** Probes at most this many buckets; a longer run (only while the shard rewrites the table) is left to the shard. */
const MAX_PROBES = 64

/**
 * Reads a region slice straight from shared memory. Every method returns
 * `undefined` when it cannot answer for sure; the caller then asks the shard.
 */
export class SharedRegionReader {
  readonly #v: RegionViews
  #gen = 0

  readonly #now: () => number
  /** The generation of the arena {@link views} map (Header.ARENA when it was adopted). */
  #arena: number
  /**
   * Set once no live shard thread keeps this memory current for the thread
   * reading it (the thread exited or was replaced, its link closed, or the
   * router gave up on it), and never cleared: a new thread comes with new
   * memory and a new reader. The near cache serves a hit without checking its
   * shard's link only while this is false (src/client/direct_reads.ts).
   */
  retired = false

  /**
   * `now` must be the shard's clock (tests inject one into both). `arena`:
   * the generation of `memory.values` (0 for the arena a shard starts with;
   * a later one comes with the memory an attaching thread is given). `log`:
   * the access log of the link this thread reads the shard through, where
   * the near cache counts the hits it answers from this memory (the links
   * give it; other readers count nothing).
   */
  constructor(
    memory: RegionMemory,
    now: () => number = monotonicNow,
    arena = 0,
    readonly log?: AccessLogWriter,
  ) {
    this.#v = new RegionViews(memory)
    this.#now = now
    this.#arena = arena
  }

  /** The generation of the value arena this reader maps. */
  get arenaGen(): number {
    return this.#arena
  }

  /**
   * Maps the arena of generation `gen` a compaction made (its message may
   * come after a later one's: an older one is ignored). The memory object is
   * updated too, so that whoever hands it on hands on the new arena.
   */
  adoptArena(values: SharedArrayBuffer, gen: number): void {
    if (gen <= this.#arena) return
    this.#v.memory.values = values
    this.#v.remap()
    this.#arena = gen
  }

  /**
   * Finds the live, unexpired entry of the key `kb[0, len)` (hash `hash`).
   * The result is only a candidate: callers read what they need, then
   * {@link valid} must confirm nothing changed meanwhile.
   */
  find(kb: Uint8Array, len: number, hash: number, out: Found): boolean {
    const v = this.#remapIfGrown()
    const regionSeq = Atomics.load(v.header, Header.SEQ)
    if ((regionSeq & 1) !== 0) return false
    // After SEQ (see the notes above): an arena other than ours means a compaction replaced it.
    if (Atomics.load(v.header, Header.ARENA) !== this.#arena) return false
    const buckets = v.buckets
    const slots = v.slots
    // A hint (see the notes above): it only bounds the probe.
    const mask = v.header[Header.MASK]!
    if (mask >= buckets.length) return false
    for (let i = hash & mask, n = 0; n < MAX_PROBES; i = (i + 1) & mask, n++) {
      // A hint too: every word of the slot it names is checked below.
      const e = buckets[i]!
      if (e === 0) return false
      const base = (e - 1) * SLOT_WORDS
      if (base >= slots.length) return false
      // The sequence number first: every word loaded after it is checked by valid().
      const seq = Atomics.load(slots, base + Slot.SEQ)
      if ((seq & 1) !== 0) {
        // Changing now: if it may be this key, only the shard can answer; else probe on.
        if (slots[base + Slot.KEY_HASH] === (hash | 0)) return false
        continue
      }
      // A hint, read plainly: a wrong hash skips the slot (a miss, which the shard answers) or leads to the key compare.
      if (slots[base + Slot.KEY_HASH] !== (hash | 0)) continue
      const flags = Atomics.load(slots, base + Slot.FLAGS)
      if (flags >>> KEY_LEN_SHIFT !== len || (flags & SlotFlag.LIVE) === 0) continue
      // Loaded after SEQ showed the slot settled and LIVE showed a chunk: the
      // chunk at this ref is not reused while this thread is inside its read.
      const ref = Atomics.load(slots, base + Slot.KEY_REF) >>> 0
      const keys = v.values
      if (ref + len > keys.length) return false
      let same = true
      for (let k = 0; k < len; k++) {
        if (keys[ref + k] !== kb[k]) {
          same = false
          break
        }
      }
      if (!same) continue
      const expires = loadExpiry(slots, e - 1)
      if (expires !== Infinity && expires <= this.#now()) return false
      out.slot = e - 1
      out.seq = seq
      out.regionSeq = regionSeq
      out.flags = flags
      out.ref = ref
      out.expiresAt = expires
      return true
    }
    return false
  }

  /** Whether this reader's views reach `slot` (remapped first if the shard grew its buffers since). */
  covers(slot: number): boolean {
    const v = this.#remapIfGrown()
    return slot >= 0 && (slot + 1) * SLOT_WORDS <= v.slots.length
  }

  /** The views, remapped first if the shard grew a buffer since they were made. */
  #remapIfGrown(): RegionViews {
    const v = this.#v
    const gen = Atomics.load(v.header, Header.GEN)
    if (gen !== this.#gen) {
      v.remap()
      this.#gen = gen
    }
    return v
  }

  /** Whether the slot found is still what it was: everything read since {@link find} is consistent. */
  valid(f: Found): boolean {
    const v = this.#v
    return Atomics.load(v.slots, f.slot * SLOT_WORDS + Slot.SEQ) === f.seq && Atomics.load(v.header, Header.SEQ) === f.regionSeq
  }

  /** The current views (remapped by {@link find} after growth; older views still cover every slot they did). */
  get views(): RegionViews {
    return this.#v
  }

  /** Expiry of the found slot (check {@link valid} after). */
  expiresAt(f: Found): number {
    return f.expiresAt
  }

  /** Flags (tag, compression) of the found slot (check {@link valid} after). */
  flags(f: Found): number {
    return f.flags & FLAG_BITS
  }

  /** Where the found slot's stored value starts; its size goes to #size (an atomic load, checked by {@link valid}). */
  #valueRange(f: Found): number {
    this.#size = Atomics.load(this.#v.slots, f.slot * SLOT_WORDS + Slot.STORED_SIZE) >>> 0
    return f.ref + (f.flags >>> KEY_LEN_SHIFT)
  }

  #size = 0

  /**
   * The stored value as a string (for STRING values and JSON), decoded
   * straight from shared memory, or undefined when the ref is out of view.
   */
  valueString(f: Found): string | undefined {
    const v = this.#v
    const ref = this.#valueRange(f)
    const end = ref + this.#size
    if (end > v.values.length) return undefined
    // Buffer#toString adds ~10 ns of argument checks per call to this.
    return (v.values as unknown as FastSlice).utf8Slice(ref, end)
  }

  /** Copies the stored bytes into a new Buffer, or undefined when the ref is out of view. */
  valueCopy(f: Found): Buffer | undefined {
    const v = this.#v
    const ref = this.#valueRange(f)
    const n = this.#size
    if (ref + n > v.values.length) return undefined
    const out = Buffer.allocUnsafe(n)
    v.values.copy(out, 0, ref, ref + n)
    return out
  }
}

/**
 * Reads done outside the shard, for the shard to apply: a ring of (region,
 * slot, seq) written by one reader thread and drained by the shard, plus the
 * reader's hit counts per region (the shard adds them to its stats).
 *
 * The hit counts are Uint32 words the reader bumps with plain stores: an
 * aligned integer element is never torn by the memory model (a Float64 one
 * may be), and the shard reads them often enough (every frame and every
 * 100 ms) to add each wrap-around of 2^32 to its own total.
 *
 * Layout: Int32 words HEAD (written by the reader), TAIL (by the shard), KICK
 * (1 once the reader asked the shard to drain), at word 16 READING (odd while the reader
 * is inside a direct read of this shard's memory: see the consistency notes
 * at the top and workers/reader_grace.ts), then from word 32 the ring. Hits are a
 * Float64Array of their own, one per region, written by the reader only.
 */
export interface AccessLogMemory {
  ring: SharedArrayBuffer
  hits: SharedArrayBuffer
}

const LOG_HEAD = 0
const LOG_TAIL = 1
const LOG_KICK = 2
/** In a cache line of its own: stored twice per direct read, and loaded by the shard, which writes TAIL. */
const LOG_READING = 16
const LOG_WORDS = 32
/** Entries per ring: big enough that a shard draining every frame rarely drops one. */
export const LOG_CAPACITY = 1 << 14

export function allocateAccessLog(regions: number): AccessLogMemory {
  return {
    ring: new SharedArrayBuffer((LOG_WORDS + LOG_CAPACITY * 4) * 4),
    hits: new SharedArrayBuffer(Math.max(1, regions) * 4),
  }
}

/** The reader's end of an {@link AccessLogMemory}. */
export class AccessLogWriter {
  readonly #ring: Int32Array
  /** Hits per region, modulo 2^32 (see above). */
  readonly hits: Uint32Array
  #head = 0
  #reading = 0

  /** `kick` asks the shard to drain soon; called once the ring is half full. */
  constructor(
    memory: AccessLogMemory,
    readonly kick: () => void,
  ) {
    this.#ring = new Int32Array(memory.ring)
    this.hits = new Uint32Array(memory.hits)
  }

  /**
   * Announces a direct read of the shard's memory: until {@link exitRead}, the
   * shard hands out no chunk that this thread might be reading. Every call is
   * paired with one exit (try/finally), so the word is odd exactly while a read
   * runs. The atomic store orders the read's loads after it (SeqCst).
   */
  enterRead(): void {
    this.#reading = (this.#reading + 1) | 0
    Atomics.store(this.#ring, LOG_READING, this.#reading)
  }

  /** Ends a direct read: everything it loaded happens-before a shard's load of this store. */
  exitRead(): void {
    this.#reading = (this.#reading + 1) | 0
    Atomics.store(this.#ring, LOG_READING, this.#reading)
  }

  /** Logs a read of `slot` (sequence `seq`) in `region`; dropped when the ring is full. */
  record(region: number, slot: number, seq: number): void {
    const ring = this.#ring
    const pending = (this.#head - Atomics.load(ring, LOG_TAIL)) | 0
    if (pending >= LOG_CAPACITY) return
    const at = LOG_WORDS + (this.#head & (LOG_CAPACITY - 1)) * 4
    ring[at] = region
    ring[at + 1] = slot
    ring[at + 2] = seq
    this.#head = (this.#head + 1) | 0
    Atomics.store(ring, LOG_HEAD, this.#head)
    if (pending >= LOG_CAPACITY / 2 && Atomics.load(ring, LOG_KICK) === 0) {
      Atomics.store(ring, LOG_KICK, 1)
      this.kick()
    }
  }
}

/** The shard's end of an {@link AccessLogMemory}. */
export class AccessLogReader {
  readonly #ring: Int32Array
  readonly #hits: Uint32Array
  /** The reader's counts as last seen, and the totals they add up to (wrap-arounds included). */
  readonly #seen: Uint32Array
  readonly #total: Float64Array
  /** Hits at the last resetStats, per region. */
  readonly baseline: Float64Array

  constructor(memory: AccessLogMemory) {
    this.#ring = new Int32Array(memory.ring)
    this.#hits = new Uint32Array(memory.hits)
    this.#seen = new Uint32Array(this.#hits.length)
    this.#total = new Float64Array(this.#hits.length)
    this.baseline = new Float64Array(this.#hits.length)
  }

  /** Adds what the reader counted since the last look; call at least once per 2^32 hits (the shard does every frame and 100 ms). */
  countHits(): void {
    for (let r = 0; r < this.#hits.length; r++) {
      const now = this.#hits[r]!
      this.#total[r]! += (now - this.#seen[r]!) >>> 0
      this.#seen[r] = now
    }
  }

  /** Calls `apply` for every logged read, oldest first, and empties the ring. */
  drain(apply: (region: number, slot: number, seq: number) => void): void {
    const ring = this.#ring
    const head = Atomics.load(ring, LOG_HEAD)
    let tail = ring[LOG_TAIL]!
    while (tail !== head) {
      const at = LOG_WORDS + (tail & (LOG_CAPACITY - 1)) * 4
      apply(ring[at]!, ring[at + 1]!, ring[at + 2]!)
      tail = (tail + 1) | 0
    }
    Atomics.store(ring, LOG_TAIL, tail)
    Atomics.store(ring, LOG_KICK, 0)
    this.countHits()
  }

  /** Whether the reader's thread is gone (its port closed): it reads nothing any more. */
  detached = false

  /** The reader's READING word now: odd while it is inside a direct read. */
  reading(): number {
    return Atomics.load(this.#ring, LOG_READING)
  }

  /** Hits counted by the reader in `region` since the last {@link resetHits}. */
  hitsOf(region: number): number {
    this.countHits()
    return this.#total[region]! - this.baseline[region]!
  }

  resetHits(): void {
    this.countHits()
    this.baseline.set(this.#total)
  }
}
