/**
 * An open-addressed index from 32-bit key hashes to small integers
 * (positions in the owner's arrays), by linear probing with backward-shift
 * deletion (Knuth's algorithm R: no tombstones, so lookups stay short however
 * many keys went through). The hashes are not stored here: each value's hash
 * is read from the owner's array (`hashes[value]`), passed to each call since
 * owners replace that array as they grow. Used by {@link Ghost} (./ghost.ts)
 * and by the window simulations (./window_sim.ts), where a Map of numbers
 * would be one more large structure for the shard's GC to trace and was two
 * thirds of a simulation's cost.
 */

export const EMPTY = -1

export class HashIndex {
  #slots: Int32Array
  #mask: number

  /** An empty index of `size` positions (a power of two; keep it over the count, by 4/3 for short probes). */
  constructor(size: number) {
    this.#slots = new Int32Array(size).fill(EMPTY)
    this.#mask = size - 1
  }

  /** Positions. */
  get size(): number {
    return this.#slots.length
  }

  /** The position of `hash`, or the empty one where it would go. */
  find(hash: number, hashes: Uint32Array): number {
    const slots = this.#slots
    const mask = this.#mask
    for (let i = Math.imul(hash, 0x9e3779b1) >>> 0 & mask; ; i = (i + 1) & mask) {
      const v = slots[i]!
      if (v === EMPTY || hashes[v] === hash) return i
    }
  }

  /** The value at position `i`: EMPTY when none. */
  at(i: number): number {
    return this.#slots[i]!
  }

  /** Puts `value` at position `i` (one that {@link find} returned empty). */
  put(i: number, value: number): void {
    this.#slots[i] = value
  }

  /** Empties position `i`, moving later entries of its probe run back. */
  deleteAt(i: number, hashes: Uint32Array): void {
    const slots = this.#slots
    const mask = this.#mask
    slots[i] = EMPTY
    for (let j = (i + 1) & mask; slots[j] !== EMPTY; j = (j + 1) & mask) {
      const home = Math.imul(hashes[slots[j]!]!, 0x9e3779b1) >>> 0 & mask
      // Move j back to i unless its home lies cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        slots[i] = slots[j]!
        slots[j] = EMPTY
        i = j
      }
    }
  }

  /** Forgets every entry, at `size` positions (a power of two; the current size when omitted). */
  clear(size = this.#slots.length): void {
    if (size === this.#slots.length) this.#slots.fill(EMPTY)
    else {
      this.#slots = new Int32Array(size).fill(EMPTY)
      this.#mask = size - 1
    }
  }

  stateBytes(): number {
    return this.#slots.byteLength
  }
}
