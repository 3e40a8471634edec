/**
 * The soak's traffic (bench/soak_driver.ts): one random operation at a time
 * on a cache handle, the same mix on the owner's thread and on attached ones.
 * Keys come from a space larger than the region's budget, so the shards keep
 * evicting; some entries have TTLs, tags, metadata; tags are invalidated,
 * getOrCompute loads. Seeded, so a run can be repeated.
 */
import type { Cache } from '../src/index.js'

/** xorshift32: fast, seedable, good enough to pick operations. */
export class Rng {
  #s: number
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9
  }
  /** A float in [0, 1). */
  next(): number {
    let x = this.#s
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#s = x >>> 0
    return this.#s / 0x1_0000_0000
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
}

export interface TrafficShape {
  /** Distinct keys (k:0 … k:<keySpace-1>); pick it larger than the budget holds. */
  keySpace: number
  /** Largest value, in characters (values are 16 … maxValueChars). */
  maxValueChars: number
  /** Distinct group tags (grp:0 …). */
  groupTags: number
}

export const DEFAULT_SHAPE: TrafficShape = { keySpace: 20_000, maxValueChars: 1500, groupTags: 64 }

/** Long strings are sliced from one, so that making a value costs no allocation beyond the slice. */
const FILLER = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(200)

/** Error counts by code, for the report. */
export type ErrorCounts = Record<string, number>

export function countError(errors: ErrorCounts, err: unknown): void {
  const code = (err as { code?: string })?.code ?? (err as Error)?.name ?? 'unknown'
  errors[code] = (errors[code] ?? 0) + 1
}

function value(rng: Rng, shape: TrafficShape, i: number): unknown {
  const n = 16 + rng.int(shape.maxValueChars - 16)
  const r = rng.int(10)
  if (r < 5) return FILLER.slice(0, n)
  if (r < 7) return { id: i, name: `item ${i}`, body: FILLER.slice(0, n >> 1) }
  if (r < 8) return Buffer.from(FILLER.slice(0, n >> 2))
  return i
}

function tags(rng: Rng, shape: TrafficShape, i: number): string[] | undefined {
  const r = rng.int(10)
  if (r < 6) return undefined
  if (r < 8) return [`grp:${rng.int(shape.groupTags)}`]
  // A per-entry tag and a group: the pattern whose index costs the most.
  return [`key:${i}`, `grp:${rng.int(shape.groupTags)}`, `all`]
}

function ttl(rng: Rng): number | undefined {
  // 30% expire on their own, within 0.1 … 3 s.
  return rng.int(10) < 3 ? 100 + rng.int(2900) : undefined
}

/** One operation of the mix on `cache` (the owner's or an attached one); resolves when it is done. */
export async function oneOp(cache: Cache, rng: Rng, shape: TrafficShape): Promise<void> {
  const i = rng.int(shape.keySpace)
  const key = `k:${i}`
  const r = rng.int(1000)
  if (r < 380) {
    await cache.get(key)
  } else if (r < 450) {
    cache.getSync(key)
  } else if (r < 680) {
    const t = tags(rng, shape, i)
    await cache.set(key, value(rng, shape, i), { ttl: ttl(rng), tags: t, metadata: rng.int(20) === 0 ? { v: i } : undefined })
  } else if (r < 760) {
    await cache.delete(key)
  } else if (r < 860) {
    await cache.getOrCompute(key, async () => value(rng, shape, i), { ttl: ttl(rng) ?? 5000, tags: tags(rng, shape, i) })
  } else if (r < 900) {
    const keys = Array.from({ length: 8 }, () => `k:${rng.int(shape.keySpace)}`)
    await cache.mget(keys)
  } else if (r < 930) {
    await cache.mset(
      Array.from({ length: 8 }, () => {
        const j = rng.int(shape.keySpace)
        return [`k:${j}`, value(rng, shape, j)] as [string, unknown]
      }),
      { ttl: ttl(rng) },
    )
  } else if (r < 950) {
    await cache.has(key)
  } else if (r < 965) {
    await cache.incr(`n:${rng.int(256)}`, 1)
  } else if (r < 975) {
    await cache.touch(key, 1000 + rng.int(4000))
  } else if (r < 985) {
    await cache.take(key)
  } else if (r < 995) {
    await cache.invalidateTag(rng.int(4) === 0 ? `key:${i}` : `grp:${rng.int(shape.groupTags)}`)
  } else {
    await cache.region('sessions').set(`s:${rng.int(shape.keySpace)}`, FILLER.slice(0, 64), { ttl: 500 + rng.int(2000) })
  }
}
