/**
 * Zipf-distributed key choice, and the seeded randomness the workloads share.
 *
 * Real caches see a few hot keys and a long tail; a uniform key choice would
 * flatter engines that suffer from cache-line and hash-table misses and hide
 * what LRU reordering costs. The sampler precomputes the CDF once (O(n) memory)
 * so a draw is a binary search; workloads pre-draw rings of indices so that the
 * sampler's cost stays out of the measured loops entirely.
 */

/** A small, fast, seedable PRNG (mulberry32): runs must draw the same keys on every engine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class ZipfSampler {
  readonly n: number
  readonly s: number
  readonly #cdf: Float64Array
  /**
   * rank → item. Without it the hottest items would be the first ones inserted,
   * which correlates popularity with insertion order and biases FIFO/LRU.
   */
  readonly #itemOfRank: Uint32Array

  constructor(n: number, s: number, seed = 1) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer (got ${n})`)
    this.n = n
    this.s = s
    const cdf = new Float64Array(n)
    let sum = 0
    for (let k = 0; k < n; k++) {
      sum += 1 / Math.pow(k + 1, s)
      cdf[k] = sum
    }
    for (let k = 0; k < n; k++) cdf[k] = cdf[k]! / sum
    cdf[n - 1] = 1 // rounding must not leave a gap at the top
    this.#cdf = cdf

    const perm = new Uint32Array(n)
    for (let i = 0; i < n; i++) perm[i] = i
    const rnd = mulberry32(seed ^ 0x9e3779b9)
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1))
      const t = perm[i]!
      perm[i] = perm[j]!
      perm[j] = t
    }
    this.#itemOfRank = perm
  }

  /** The item (in [0, n)) for a uniform draw `u` in [0, 1). */
  item(u: number): number {
    const cdf = this.#cdf
    let lo = 0
    let hi = this.n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cdf[mid]! > u) hi = mid
      else lo = mid + 1
    }
    return this.#itemOfRank[lo]!
  }

  /** Probability mass of the `k` most popular items (for sanity output: how skewed is this?). */
  headMass(k: number): number {
    return this.#cdf[Math.min(k, this.n) - 1] ?? 0
  }
}

/** `count` pre-drawn items; `count` must be a power of two so a ring index is a mask. */
export function drawRing(sampler: ZipfSampler, count: number, seed: number): Uint32Array {
  if ((count & (count - 1)) !== 0) throw new RangeError(`ring size must be a power of two (got ${count})`)
  const rnd = mulberry32(seed)
  const ring = new Uint32Array(count)
  for (let i = 0; i < count; i++) ring[i] = sampler.item(rnd())
  return ring
}

/** A ring of op kinds: 1 = write, 0 = read, with `writeRatio` of writes. Same power-of-two rule. */
export function drawOpRing(writeRatio: number, count: number, seed: number): Uint8Array {
  if ((count & (count - 1)) !== 0) throw new RangeError(`ring size must be a power of two (got ${count})`)
  const rnd = mulberry32(seed)
  const ring = new Uint8Array(count)
  for (let i = 0; i < count; i++) ring[i] = rnd() < writeRatio ? 1 : 0
  return ring
}
