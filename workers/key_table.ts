/**
 * Key → slot index of a region store, over key *bytes*: an open-addressing
 * hash table in typed arrays, with the key bytes in pages.
 *
 * Why not `Map<string, slot>`:
 * - Keys arrive in frames as UTF-8 bytes. A Map needs each one decoded into a
 *   fresh string and hashed again by V8; with 100k keys that lookup cost
 *   ~520 ns, this table ~110 ns (measured, same access pattern).
 * - One string per key is one heap object per entry: with a million keys the
 *   shard's major GC pauses stayed at 20–50 ms after values moved to pages.
 * - V8 rebuilds a Map's whole table at once: a 1M-key Map under churn stalled
 *   243 ms. This table never rebuilds under churn: deletion shifts the
 *   following entries back (no tombstones), so only growth rehashes, and the
 *   table is sized up front from the entry budget (up to 2^20 buckets).
 *
 * Layout: `buckets[i]` holds slot + 1 (0 is empty), linear probing from
 * `hash & mask`, load factor at most 1/2. Per slot: the key's hash, its
 * length and the ref of its bytes in a {@link ValueSlab}. Slots are the
 * region store's; it tells the table how many there are ({@link ensureSlots}).
 */
import { ValueSlab } from './value_slab.js'

const MAX_PRESIZED_BUCKETS = 1 << 20
const MIN_BUCKETS = 16

/** FNV-1a over bytes: cheap for short keys, and spreads them well enough for linear probing at load ≤ 1/2. */
export function hashBytes(buf: Uint8Array, start: number, len: number): number {
  let h = 0x811c9dc5
  const end = start + len
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193)
  return h >>> 0
}

export class KeyTable {
  #buckets: Int32Array
  #mask: number
  #count = 0
  #hash: Uint32Array
  #len: Uint16Array
  #ref: Float64Array
  readonly #bytes = new ValueSlab()

  /** `expectedKeys` sizes the table so that it need not grow (Infinity: start small). */
  constructor(expectedKeys: number, slots: number) {
    // Without an entry budget the table starts small and doubles as it fills.
    const target = Number.isFinite(expectedKeys) ? expectedKeys * 2 : 0
    let n = MIN_BUCKETS
    while (n < target && n < MAX_PRESIZED_BUCKETS) n *= 2
    this.#buckets = new Int32Array(n)
    this.#mask = n - 1
    this.#hash = new Uint32Array(slots)
    this.#len = new Uint16Array(slots)
    this.#ref = new Float64Array(slots)
  }

  get size(): number {
    return this.#count
  }

  /** Makes room for slots below `slots`. */
  ensureSlots(slots: number): void {
    if (slots <= this.#hash.length) return
    const grow = <T extends Uint32Array | Uint16Array | Float64Array>(a: T, b: T): T => {
      b.set(a)
      return b
    }
    this.#hash = grow(this.#hash, new Uint32Array(slots))
    this.#len = grow(this.#len, new Uint16Array(slots))
    this.#ref = grow(this.#ref, new Float64Array(slots))
  }

  /** The slot holding the key `buf[start, start + len)` with hash `hash`, or -1. */
  find(buf: Uint8Array, start: number, len: number, hash: number): number {
    const buckets = this.#buckets
    const mask = this.#mask
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const e = buckets[i]!
      if (e === 0) return -1
      const slot = e - 1
      if (this.#hash[slot] === hash && this.#len[slot] === len && this.#sameBytes(slot, buf, start, len)) return slot
    }
  }

  /** Indexes `slot` under the key `buf[start, start + len)`; the key must not be present. */
  insert(slot: number, buf: Uint8Array, start: number, len: number, hash: number): void {
    if ((this.#count + 1) * 2 > this.#buckets.length) this.#resize(this.#buckets.length * 2)
    this.#hash[slot] = hash
    this.#len[slot] = len
    this.#ref[slot] = this.#bytes.store(buf.subarray(start, start + len))
    const buckets = this.#buckets
    const mask = this.#mask
    let i = hash & mask
    while (buckets[i] !== 0) i = (i + 1) & mask
    buckets[i] = slot + 1
    this.#count++
  }

  /** Drops `slot` from the index and frees its key bytes. */
  remove(slot: number): void {
    const buckets = this.#buckets
    const mask = this.#mask
    let i = this.#hash[slot]! & mask
    while (buckets[i] !== slot + 1) i = (i + 1) & mask
    // Backward-shift deletion: move later entries of the probe run into the
    // hole unless that would put them before their home bucket.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const e = buckets[j]!
      if (e === 0) break
      const home = this.#hash[e - 1]! & mask
      const stays = i <= j ? i < home && home <= j : i < home || home <= j
      if (!stays) {
        buckets[i] = e
        i = j
      }
    }
    buckets[i] = 0
    this.#bytes.free(this.#ref[slot]!, this.#len[slot]!)
    this.#count--
  }

  /** The key bytes of `slot` (a view, valid until the slot is removed). */
  keyBytes(slot: number): Uint8Array {
    return this.#bytes.view(this.#ref[slot]!, this.#len[slot]!)
  }

  /** The key of `slot` as a string. */
  keyString(slot: number): string {
    const b = this.keyBytes(slot)
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8')
  }

  /** UTF-8 length of the key of `slot`. */
  keyLength(slot: number): number {
    return this.#len[slot]!
  }

  clear(): void {
    this.#buckets.fill(0)
    this.#bytes.clear()
    this.#count = 0
  }

  /** @internal Whether `slot` is reachable from its home bucket (for invariant checks). */
  indexes(slot: number): boolean {
    const mask = this.#mask
    for (let i = this.#hash[slot]! & mask; this.#buckets[i] !== 0; i = (i + 1) & mask) {
      if (this.#buckets[i] === slot + 1) return true
    }
    return false
  }

  #sameBytes(slot: number, buf: Uint8Array, start: number, len: number): boolean {
    const ref = this.#ref[slot]!
    const page = this.#bytes.pageOf(ref)
    const at = this.#bytes.offsetOf(ref) - start
    for (let i = start; i < start + len; i++) if (page[at + i] !== buf[i]) return false
    return true
  }

  #resize(n: number): void {
    const old = this.#buckets
    const buckets = new Int32Array(n)
    const mask = n - 1
    for (let k = 0; k < old.length; k++) {
      const e = old[k]!
      if (e === 0) continue
      let i = this.#hash[e - 1]! & mask
      while (buckets[i] !== 0) i = (i + 1) & mask
      buckets[i] = e
    }
    this.#buckets = buckets
    this.#mask = mask
  }
}
