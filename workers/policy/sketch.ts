/**
 * A count-min sketch of 4-bit counters: how often each key hash was seen
 * lately, in a fixed ~8 bytes per entry the cache holds, as TinyLFU
 * (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission
 * Policy", 2017) keeps it for W-TinyLFU (./tinylfu.ts).
 *
 * Four rows of counters, each indexed by its own mix of the hash; a key's
 * estimate is the least of its four counters (collisions only ever add, so
 * the least is the closest). Counters stop at 15: admission compares two
 * keys' frequencies, and beyond 15 the order of hot keys does not matter.
 * Aging: after `10 x capacity` increments every counter is halved (TinyLFU's
 * reset), so the estimate is of recent frequency and a key once hot fades.
 *
 * Size: each row has the power of two of counters at or above 4x the
 * capacity, so 16 to 32 counters (8 to 16 bytes) per entry; with fewer (4
 * per entry) collisions inflated the estimates of cold keys enough to cost
 * 3.7 points on lirs-gli and 4 on lirs-cpp (measured through W-TinyLFU).
 * Counters are packed 8 to a 32-bit word, off the JS heap.
 */

const ROWS = 4
const MAX = 15

export class FrequencySketch {
  #table: Uint32Array
  /** Counters per row, a power of two, minus 1. */
  #mask = 0
  #rowShift = 0
  #additions = 0
  #period = 0
  #capacity = 0

  /** A sketch for a cache of about `capacity` entries. */
  constructor(capacity: number) {
    this.#table = new Uint32Array(0)
    this.resize(capacity)
  }

  /** The capacity it is sized for. */
  get capacity(): number {
    return this.#capacity
  }

  /** Re-sizes for `capacity` entries, forgetting every count (a cache that grew has little history worth keeping). */
  resize(capacity: number): void {
    this.#capacity = Math.max(1, capacity)
    let perRow = 64
    while (perRow < this.#capacity * 4) perRow *= 2
    this.#mask = perRow - 1
    this.#rowShift = Math.log2(perRow)
    this.#table = new Uint32Array((perRow * ROWS) / 8)
    this.#additions = 0
    this.#period = 10 * this.#capacity
  }

  /** Counts one occurrence of `hash`. */
  increment(hash: number): void {
    let added = false
    for (let row = 0; row < ROWS; row++) {
      const i = this.#index(hash, row)
      const word = i >>> 3
      const shift = (i & 7) << 2
      const w = this.#table[word]!
      if (((w >>> shift) & MAX) !== MAX) {
        this.#table[word] = w + (1 << shift)
        added = true
      }
    }
    if (added && ++this.#additions >= this.#period) this.#halve()
  }

  /** How often `hash` was seen lately: 0 to 15. */
  estimate(hash: number): number {
    let min = MAX
    for (let row = 0; row < ROWS; row++) {
      const i = this.#index(hash, row)
      const c = (this.#table[i >>> 3]! >>> ((i & 7) << 2)) & MAX
      if (c < min) min = c
    }
    return min
  }

  /** Forgets every count. */
  clear(): void {
    this.#table.fill(0)
    this.#additions = 0
  }

  stateBytes(): number {
    return this.#table.byteLength
  }

  /** Counter index of `hash` in `row`: a multiply-xorshift mix per row (rows must disagree on collisions). */
  #index(hash: number, row: number): number {
    let x = Math.imul(hash ^ Math.imul(0x9e3779b9, row + 1), 0x85ebca6b)
    x ^= x >>> 15
    x = Math.imul(x, 0xc2b2ae35)
    x ^= x >>> 13
    return (row << this.#rowShift) | (x & this.#mask)
  }

  /** Every counter halved at once: the low bit of each nibble is dropped (0x7 mask after the shift keeps nibbles apart). */
  #halve(): void {
    const t = this.#table
    for (let i = 0; i < t.length; i++) t[i] = (t[i]! >>> 1) & 0x77777777
    this.#additions = this.#additions >>> 1
  }
}
