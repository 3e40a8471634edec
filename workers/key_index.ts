/**
 * Key → slot index of a region store: a `Map` split into many small maps.
 *
 * Why not one `Map`: V8 rebuilds a Map's whole hash table when it grows or
 * when deleted entries pile up, synchronously. With a million keys under churn
 * (an insert and an eviction per set) that rebuild stalled a shard for 243 ms
 * (measured, at the 48,576th set past 1M: 2^20 − 1M). Split into sub-maps of
 * about 16k keys, each rebuild touches only its own sub-map (a few ms), at the
 * price of a string hash and one more memory access per lookup. Measured on
 * 1M keys: 256 sub-maps of 4k cost ~+40% per lookup, 64 of 16k ~+5%, with the
 * same worst stall (~20 ms, which is then garbage collection, not rehashing).
 */

/** Keys per sub-map we aim for: its rebuild takes a few milliseconds at most. */
const TARGET_KEYS_PER_MAP = 16384
const MAX_BITS = 8 // 256 sub-maps

export class KeyIndex {
  readonly #maps: Map<string, number>[]
  readonly #shift: number

  /** `expectedKeys` sizes the split (Infinity: the largest split). */
  constructor(expectedKeys: number) {
    let bits = 0
    while (bits < MAX_BITS && TARGET_KEYS_PER_MAP << bits < expectedKeys) bits++
    this.#maps = Array.from({ length: 1 << bits }, () => new Map<string, number>())
    this.#shift = 32 - bits
  }

  get size(): number {
    let n = 0
    for (const m of this.#maps) n += m.size
    return n
  }

  get(key: string): number | undefined {
    return this.#map(key).get(key)
  }

  set(key: string, slot: number): void {
    this.#map(key).set(key, slot)
  }

  delete(key: string): void {
    this.#map(key).delete(key)
  }

  clear(): void {
    for (const m of this.#maps) m.clear()
  }

  #map(key: string): Map<string, number> {
    if (this.#shift === 32) return this.#maps[0]!
    // FNV-1a, then a Fibonacci multiply so the top bits depend on every bit:
    // the router picks shards from the same FNV hash modulo the shard count,
    // so its low bits are the same for every key of a shard.
    let h = 0x811c9dc5
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
    return this.#maps[Math.imul(h, 0x9e3779b1) >>> this.#shift]!
  }
}
