/**
 * A ghost: the key hashes of recently evicted entries, oldest first, without
 * their values, bounded by a count and a weight (charged bytes, or 1 each).
 * S3-FIFO (./s3fifo.ts) remembers there what its small queue evicted, so that
 * a key that comes back soon goes straight to the main queue.
 *
 * The hashes are 32-bit (workers/key_table.ts), so two keys may share one; a
 * ghost hit is then a guess, which costs only where the entry is placed. Why
 * typed arrays: a ghost holds up to ~0.9x the region's entry budget, and a
 * Map or a Set of that many numbers would be one more large structure for the
 * shard's GC to trace; here it is a ring of records and an open-addressed
 * index: 5 bytes per record (9 with weights) plus 5 to 11 of index per
 * remembered key.
 *
 * The ring keeps records in the order they came; one that left early (a
 * ghost hit takes it out) stays in the ring as a hole until the oldest end
 * passes it, so the ring may hold more records than the ghost has live ones;
 * when it fills, its live records are packed to its start (and it doubles
 * when they fill more than 3/4 of it). The index (./hash_index.ts) maps a
 * hash to its ring position.
 */

import { EMPTY, HashIndex } from './hash_index.js'

export class Ghost {
  /** Ring of records: hash, weight (below), and whether it is still live. */
  #hashes = new Uint32Array(16)
  /** Each record's weight; empty when the weight is unbounded (each record then counts 1). */
  #weights: Uint32Array
  readonly #weighs: boolean
  #live = new Uint8Array(16)
  /** Ring positions of the oldest record and one past the newest, as ever-growing counts. */
  #start = 0
  #end = 0
  /** Index: ring position (mod ring size) of each live hash. */
  readonly #index = new HashIndex(32)
  #count = 0
  #weight = 0

  /**
   * A ghost of at most `maxCount` hashes whose weights add up to at most
   * `maxWeight` (either may be Infinity, not both in practice: a region has a
   * budget).
   */
  constructor(
    readonly maxCount: number,
    readonly maxWeight: number,
  ) {
    this.#weighs = Number.isFinite(maxWeight)
    this.#weights = new Uint32Array(this.#weighs ? 16 : 0)
  }

  /** Live hashes remembered. */
  get size(): number {
    return this.#count
  }

  /** Their weights' sum. */
  get weight(): number {
    return this.#weight
  }

  /**
   * Remembers `hash` with `weight` (1 when the weight is unbounded) as the newest, forgetting the oldest ones
   * until both bounds hold (a hash already there is refreshed). A record
   * heavier than the whole ghost is not kept.
   */
  add(hash: number, weight: number): void {
    if (!this.#weighs) weight = 1
    this.take(hash)
    if (weight > this.maxWeight || this.maxCount < 1) return
    while (this.#count >= this.maxCount || this.#weight + weight > this.maxWeight) this.#dropOldest()
    if (this.#end - this.#start === this.#hashes.length) this.#renumber()
    const pos = this.#end++ % this.#hashes.length
    this.#hashes[pos] = hash
    if (this.#weighs) this.#weights[pos] = weight
    this.#live[pos] = 1
    this.#count++
    this.#weight += weight
    // Linear probing stays short up to 3/4 full (~2.5 probes a miss).
    if (this.#count * 4 > this.#index.size * 3) this.#rehash(this.#index.size * 2)
    this.#index.put(this.#index.find(hash, this.#hashes), pos)
  }

  /** Whether `hash` is remembered; if so it is forgotten (a ghost hit is used once). */
  take(hash: number): boolean {
    const i = this.#index.find(hash, this.#hashes)
    const pos = this.#index.at(i)
    if (pos === EMPTY) return false
    this.#live[pos] = 0
    this.#count--
    this.#weight -= this.#weighs ? this.#weights[pos]! : 1
    this.#index.deleteAt(i, this.#hashes)
    return true
  }

  /** Whether `hash` is remembered (no change). */
  has(hash: number): boolean {
    return this.#index.at(this.#index.find(hash, this.#hashes)) !== EMPTY
  }

  /** Forgets everything. */
  clear(): void {
    this.#start = this.#end = 0
    this.#count = 0
    this.#weight = 0
    this.#live.fill(0)
    this.#index.clear()
  }

  /** Bytes of the ghost's arrays. */
  stateBytes(): number {
    return this.#hashes.byteLength + this.#weights.byteLength + this.#live.byteLength + this.#index.stateBytes()
  }

  /** Live hashes, oldest first (for tests and checks). */
  hashes(): number[] {
    const out: number[] = []
    const n = this.#hashes.length
    for (let p = this.#start; p < this.#end; p++) if (this.#live[p % n] === 1) out.push(this.#hashes[p % n]!)
    return out
  }

  /** @internal Throws when the ring, the index and the counts disagree. */
  check(): void {
    const live = this.hashes()
    if (live.length !== this.#count) throw new Error(`ghost counts ${this.#count} hashes, its ring holds ${live.length}`)
    let weight = 0
    const n = this.#hashes.length
    for (let p = this.#start; p < this.#end; p++) if (this.#live[p % n] === 1) weight += this.#weighs ? this.#weights[p % n]! : 1
    if (Math.abs(weight - this.#weight) > 1e-6) throw new Error(`ghost weighs ${this.#weight}, its records ${weight}`)
    for (const h of live) if (!this.has(h)) throw new Error(`ghost hash ${h} is not in its index`)
    if (this.#count > this.maxCount || this.#weight > this.maxWeight) throw new Error('ghost over its bounds')
  }

  #dropOldest(): void {
    const n = this.#hashes.length
    while (this.#start < this.#end) {
      const pos = this.#start++ % n
      if (this.#live[pos] === 1) {
        this.take(this.#hashes[pos]!)
        return
      }
    }
  }

  #rehash(size: number): void {
    const n = this.#hashes.length
    const index = this.#index
    index.clear(size)
    for (let p = this.#start; p < this.#end; p++) {
      const pos = p % n
      if (this.#live[pos] === 1) index.put(index.find(this.#hashes[pos]!, this.#hashes), pos)
    }
  }

  /**
   * The ring is full: its live records move to its start, in order, into a
   * ring twice as large when they fill more than 3/4 of it (else the same
   * size: only holes are dropped), so the ring stays within 8/3 of the live
   * count, and packing (a pass over the ring) happens at most once per n/4
   * records added.
   */
  #renumber(): void {
    const n = this.#hashes.length
    const size = this.#count * 4 > n * 3 ? n * 2 : n
    const hashes = new Uint32Array(size)
    const weights = new Uint32Array(this.#weighs ? size : 0)
    const live = new Uint8Array(size)
    let q = 0
    for (let p = this.#start; p < this.#end; p++) {
      if (this.#live[p % n] !== 1) continue
      hashes[q] = this.#hashes[p % n]!
      if (this.#weighs) weights[q] = this.#weights[p % n]!
      live[q++] = 1
    }
    this.#hashes = hashes
    this.#weights = weights
    this.#live = live
    this.#start = 0
    this.#end = q
    this.#rehash(this.#index.size)
  }
}
