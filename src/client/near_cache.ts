/**
 * The near cache: an opt-in L0 of decoded values on each thread that uses the
 * cache, so a hot key costs a Map lookup and an atomic load instead of a hash
 * probe in shared memory, a copy and a decode.
 *
 * An entry is only a claim about a shard's slot: "slot S held this key with
 * sequence number Q while the region's sequence number was R". The router
 * serves it only while both numbers are unchanged in shared memory (the shard
 * bumps a slot's on every change to it, including delete, eviction, expiry
 * sweep and reuse, and the region's on clear), the shard thread is the one the
 * entry was read from, and the entry has not expired. So any write, on any
 * thread, makes every near cache miss on that key as soon as the shard applied
 * it, which is before the writer's promise resolves; nothing here needs a
 * message to be invalidated.
 *
 * The shortcut: the shard also bumps one word per region slice, its epoch,
 * as it begins any slot change (once the slot is marked changing). An entry remembers the epoch it was last checked
 * at; while the epoch still reads that, nothing in the region has changed and
 * the slot need not be read (a random cache line among millions, ~20% of a
 * near hit on the benchmark's 100k keys; near hits went from ~1.9M/s to
 * ~2.4M/s). After any write to the region the next hit reads the slot as
 * above and re-stamps the entry. All three counters are 32-bit: like any
 * seqlock of that width, a stale entry could pass only if a multiple of 2^32
 * changes went by between two of its checks, and the next check landed on
 * exactly the same count (at a million writes a second the epoch comes round
 * every 71 minutes; the odds per such check are 1 in 4 billion).
 *
 * Layout: a Map from key to an entry index, as in lru-cache, and CLOCK
 * eviction (a second chance for entries read since the hand last passed)
 * instead of exact LRU, which would relink on every hit. A first version kept
 * entry objects in a Map and evicted from the front of its iteration order:
 * V8 keeps deleted Map entries as tombstones until it rehashes, so each
 * eviction walked past all earlier ones, and a 10k-entry near cache under a
 * Zipf load ran at 0.44M gets/s, slower than no near cache.
 *
 * Admission: once the near cache is full, a key gets in only on its second
 * miss within a while, as remembered by a small table of the hashes of keys
 * refused once (one slot per hash's low bits, overwritten freely). Under a
 * Zipf load most misses are keys read once in a long while: admitting each
 * evicted a hotter entry, and every admitted value, held across scavenges,
 * was promoted to the old generation only to die there. Simulated on the
 * benchmark's keys (100k keys, s = 0.99, 10k entries; bench/studies/
 * near_admission.ts, which reproduces this): hit rate 73.1% → 76.9%,
 * insertions 0.27 → 0.04 per read. Admitting by a frequency sketch instead,
 * as the shard's W-TinyLFU does, gained nothing there (76.8%). While there is
 * room, every miss is admitted: a near cache large enough for the key set
 * still holds all of it.
 *
 * What a hit reads sits together: the numbers in one 32-byte row of
 * {@link NearRegion.meta}, the value and its reader side by side in
 * {@link NearRegion.refs}. With one array per field, a hit on a cold entry
 * touched seven cache lines besides the Map's, and once the epoch had taken
 * the slot read away those loads led the line-level profile; together they
 * are two (near hits 2.66M/s → 2.90M/s, medians of 15 interleaved rounds).
 */
import type { Found, SharedRegionReader } from '../wire/shared_region.js'

/** Int32 words of an entry's row in {@link NearRegion.meta}. */
export const NearWord = {
  SHARD: 0,
  /** The region's epoch when the entry was last checked against its slot (see Header.EPOCH). */
  EPOCH: 1,
  SLOT: 2,
  /** The slot's sequence number when the value was read. */
  SEQ: 3,
  /** The region header's sequence number then. */
  REGION_SEQ: 4,
  /** {@link NearFlag} bits. */
  FLAGS: 5,
  /** Words 6–7: the expiry, a float64 at `metaF[i * NEAR_WORDS / 2 + NEAR_EXPIRES_F64]`. */
} as const
export const NEAR_WORDS = 8
export const NEAR_EXPIRES_F64 = 3

export const NearFlag = {
  /** A Buffer or Uint8Array: copied on every hit, since callers may write to it. */
  BINARY: 1,
  /** Read since the clock hand last passed. */
  USED: 2,
  /** It has an expiry (words 6–7): a hit on an entry without one reads no clock and no float. */
  EXPIRES: 4,
} as const

/** One region's near entries on this thread. */
export class NearRegion {
  readonly #index = new Map<string, number>()
  readonly #keys: (string | undefined)[]
  /** Entry `i`'s value at `2i`, and at `2i + 1` the reader of the shard thread it came from (a restarted shard has a new one). */
  readonly refs: unknown[]
  /** {@link NEAR_WORDS} Int32 words per entry, laid out as {@link NearWord}. */
  readonly meta: Int32Array
  /** The same memory as float64s, for the expiries. */
  readonly metaF: Float64Array
  readonly #free: number[] = []
  #size = 0
  #hand = 0
  /** Hashes of keys refused once since their slot was last overwritten (0: empty). */
  readonly #refused: Uint32Array

  constructor(readonly capacity: number) {
    // The largest power of two not above the capacity: a larger table admits more one-off keys (simulated).
    this.#refused = new Uint32Array(2 ** Math.max(4, Math.floor(Math.log2(capacity))))
    this.#keys = new Array<string | undefined>(capacity).fill(undefined)
    this.refs = new Array<unknown>(capacity * 2).fill(undefined)
    this.meta = new Int32Array(capacity * NEAR_WORDS)
    this.metaF = new Float64Array(this.meta.buffer)
  }

  /** Entries held. */
  get size(): number {
    return this.#index.size
  }

  /** Index of `key`'s entry, or -1. The entry is unvalidated: the router checks it against shared memory. */
  find(key: string): number {
    return this.#index.get(key) ?? -1
  }

  /**
   * Whether a key that just missed, of hash `hash` (any 32-bit hash of the
   * key), may be added: yes while there is room, else only on its second miss.
   */
  admits(hash: number): boolean {
    if (this.#size < this.capacity || this.#free.length > 0) return true
    const h = hash >>> 0 || 1
    const i = h & (this.#refused.length - 1)
    if (this.#refused[i] === h) {
      this.#refused[i] = 0
      return true
    }
    this.#refused[i] = h
    return false
  }

  /** Adds or replaces `key`'s entry, read as `f` after the region's epoch read `epoch`. */
  add(key: string, value: unknown, binary: boolean, shard: number, reader: SharedRegionReader, f: Found, epoch: number, expiresAt: number): void {
    let i = this.#index.get(key)
    if (i === undefined) {
      i = this.#take()
      this.#keys[i] = key
      this.#index.set(key, i)
    }
    this.refs[2 * i] = value
    this.refs[2 * i + 1] = reader
    const m = this.meta
    const b = i * NEAR_WORDS
    m[b + NearWord.SHARD] = shard
    m[b + NearWord.EPOCH] = epoch
    m[b + NearWord.SLOT] = f.slot
    m[b + NearWord.SEQ] = f.seq
    m[b + NearWord.REGION_SEQ] = f.regionSeq
    m[b + NearWord.FLAGS] = (binary ? NearFlag.BINARY : 0) | (expiresAt !== Infinity ? NearFlag.EXPIRES : 0)
    this.metaF[i * (NEAR_WORDS / 2) + NEAR_EXPIRES_F64] = expiresAt
  }

  /** Drops entry `i` (found stale). */
  remove(i: number): void {
    this.#index.delete(this.#keys[i]!)
    this.#clear(i)
    this.#free.push(i)
  }

  delete(key: string): void {
    const i = this.#index.get(key)
    if (i !== undefined) this.remove(i)
  }

  /** A free index: never used yet, freed, or the clock's victim. */
  #take(): number {
    const freed = this.#free.pop()
    if (freed !== undefined) return freed
    if (this.#size < this.capacity) return this.#size++
    const m = this.meta
    let h = this.#hand
    while ((m[h * NEAR_WORDS + NearWord.FLAGS]! & NearFlag.USED) !== 0) {
      m[h * NEAR_WORDS + NearWord.FLAGS]! &= ~NearFlag.USED
      h = h + 1 === this.capacity ? 0 : h + 1
    }
    this.#hand = h + 1 === this.capacity ? 0 : h + 1
    this.#index.delete(this.#keys[h]!)
    this.#clear(h)
    return h
  }

  #clear(i: number): void {
    this.#keys[i] = undefined
    this.refs[2 * i] = undefined // let the value be collected
    this.refs[2 * i + 1] = undefined
  }
}
