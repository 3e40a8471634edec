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
 * before any slot change. An entry remembers the epoch it was last checked
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
 * Layout: a Map from key to an index into parallel arrays, as in lru-cache,
 * and CLOCK eviction (a second chance for entries read since the hand last
 * passed) instead of exact LRU, which would relink on every hit. A first
 * version kept entry objects in a Map and evicted from the front of its
 * iteration order: V8 keeps deleted Map entries as tombstones until it
 * rehashes, so each eviction walked past all earlier ones, and a 10k-entry
 * near cache under a Zipf load ran at 0.44M gets/s, slower than no near cache.
 */
import type { Found, SharedRegionReader } from './shared_region.js'

/** One region's near entries on this thread. */
export class NearRegion {
  readonly #index = new Map<string, number>()
  readonly #keys: (string | undefined)[]
  readonly values: unknown[]
  /** The reader of the shard thread each entry came from; a restarted shard has a new one. */
  readonly readers: (SharedRegionReader | undefined)[]
  readonly shard: Int32Array
  readonly slot: Int32Array
  readonly seq: Int32Array
  readonly regionSeq: Int32Array
  /** The region's epoch when the entry was last checked against its slot (see Header.EPOCH). */
  readonly epoch: Int32Array
  readonly expiresAt: Float64Array
  /** 1: a Buffer or Uint8Array, copied on every hit since callers may write to it. */
  readonly binary: Uint8Array
  /** Read since the clock hand last passed. */
  readonly used: Uint8Array
  readonly #free: number[] = []
  #size = 0
  #hand = 0

  constructor(readonly capacity: number) {
    this.#keys = new Array<string | undefined>(capacity).fill(undefined)
    this.values = new Array<unknown>(capacity).fill(undefined)
    this.readers = new Array<SharedRegionReader | undefined>(capacity).fill(undefined)
    this.shard = new Int32Array(capacity)
    this.slot = new Int32Array(capacity)
    this.seq = new Int32Array(capacity)
    this.regionSeq = new Int32Array(capacity)
    this.epoch = new Int32Array(capacity)
    this.expiresAt = new Float64Array(capacity)
    this.binary = new Uint8Array(capacity)
    this.used = new Uint8Array(capacity)
  }

  /** Entries held. */
  get size(): number {
    return this.#index.size
  }

  /** Index of `key`'s entry, or -1. The entry is unvalidated: the router checks it against shared memory. */
  find(key: string): number {
    return this.#index.get(key) ?? -1
  }

  /** Adds or replaces `key`'s entry, read as `f` after the region's epoch read `epoch`. */
  add(key: string, value: unknown, binary: boolean, shard: number, reader: SharedRegionReader, f: Found, epoch: number, expiresAt: number): void {
    let i = this.#index.get(key)
    if (i === undefined) {
      i = this.#take()
      this.#keys[i] = key
      this.#index.set(key, i)
    }
    this.values[i] = value
    this.binary[i] = binary ? 1 : 0
    this.readers[i] = reader
    this.shard[i] = shard
    this.slot[i] = f.slot
    this.seq[i] = f.seq
    this.regionSeq[i] = f.regionSeq
    this.epoch[i] = epoch
    this.expiresAt[i] = expiresAt
    this.used[i] = 0
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
    const used = this.used
    let h = this.#hand
    while (used[h] === 1) {
      used[h] = 0
      h = h + 1 === this.capacity ? 0 : h + 1
    }
    this.#hand = h + 1 === this.capacity ? 0 : h + 1
    this.#index.delete(this.#keys[h]!)
    this.#clear(h)
    return h
  }

  #clear(i: number): void {
    this.#keys[i] = undefined
    this.values[i] = undefined // let the value be collected
    this.readers[i] = undefined
  }
}
