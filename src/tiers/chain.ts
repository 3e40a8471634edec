/**
 * The tiers below the shards, in order: the Redis L2 (`l2`), then each of
 * `tiers`. What the facade calls `core.l2` is this chain: reads go down it
 * and copy a hit up, into the tiers above (and, by the facade, the shards);
 * writes, touches, deletes, pattern deletes, clears and tag invalidations
 * reach every tier. Each tier fails alone (its own timeout, breaker and
 * repair: src/redis/l2.ts for Redis, ./member.ts for the others): a read
 * that a tier cannot answer goes on to the next.
 *
 * TTLs: a tier keeps an entry for its TTL x the tier's `ttlScale`. A hit in
 * a lower tier is copied up with what remains of it in the shards' time (its
 * remaining TTL / its scale), which each tier above scales again. The first
 * tier's hits reach the shards with its remaining TTL as it reads it, as the
 * L2 tier always did. Which hits are copied up: 1 in the hit tier's
 * `promotion.frequency`.
 *
 * getOrCompute's cross-instance lease (`lock`) lives in Redis: the chain
 * offers it when a Redis tier is present, and otherwise says it cannot
 * (the caller then loads without one, or through the bus).
 */
import type { L2Tier } from '../redis/l2.js'
import type { L2Repaired, L2Stats, L2Value } from '../redis/l2.js'
import type { EncodedValue } from '../wire/values.js'
import { WriteMarks } from '../wire/write_marks.js'
import type { TierStats } from './member.js'

/** What one tier of the chain offers it (the Redis tier and a {@link TierMember} both do). */
export interface TierLevel {
  readonly fillWindowMs: number
  onRepaired: ((r: L2Repaired) => void) | undefined
  start(regions: readonly string[]): Promise<void>
  get(region: string, key: string, withTtl?: boolean): Promise<L2Value | undefined>
  shouldPromote(): boolean
  promoted(): void
  set(region: string, key: string, enc: EncodedValue, ttlMs: number, compressMinBytes: number, tags: string[] | undefined): Promise<void>
  touch(region: string, key: string, ttlMs: number): Promise<void>
  delete(region: string, keys: readonly string[]): Promise<void>
  deleteMatching(region: string, glob: string | undefined, matches: (key: string) => boolean): Promise<void>
  invalidateTag(tag: string): Promise<void>
  stats(): L2Stats | TierStats
  resetStats(): void
  close(): Promise<void>
}

/** A tier in the chain: the level, its TTL scale, and whether it is the Redis tier (which holds the leases). */
export interface ChainEntry {
  level: TierLevel
  ttlScale: number
  redis: L2Tier | undefined
}

/** What the facade calls `core.l2`: the levels' operations, applied down the list (reads) or to all (writes). */
export class TierChain {
  readonly #levels: ChainEntry[]
  readonly #top: TierLevel
  readonly #redis: L2Tier | undefined
  /** This instance's writes of each key: a lower tier's hit read before one is not copied up over it. */
  readonly #marks = new WriteMarks()

  constructor(levels: ChainEntry[]) {
    this.#levels = levels
    this.#top = levels[0]!.level
    this.#redis = levels.find((l) => l.redis !== undefined)?.redis
  }

  /** Whether the chain holds getOrCompute's leases (it has the Redis tier). */
  get leases(): boolean {
    return this.#redis !== undefined
  }

  get fillWindowMs(): number {
    return Math.max(...this.#levels.map((l) => l.level.fillWindowMs))
  }

  get onRepaired(): ((r: L2Repaired) => void) | undefined {
    return this.#top.onRepaired
  }

  set onRepaired(fn: ((r: L2Repaired) => void) | undefined) {
    for (const l of this.#levels) l.level.onRepaired = fn
  }

  async start(regions: readonly string[]): Promise<void> {
    for (const l of this.#levels) await l.level.start(regions)
  }

  /**
   * The first tier's hit, or the first lower one's, copied into the tiers
   * above it (1 in its promotion frequency); `withTtl`: the caller promotes a
   * first-tier hit into the shards, and needs its remaining TTL. A lower
   * tier's hit comes with a TTL only when it is promoted.
   */
  async get(region: string, key: string, withTtl = true): Promise<L2Value | undefined> {
    const top = await this.#top.get(region, key, withTtl)
    if (top !== undefined || this.#levels.length === 1) return top
    const mark = this.#marks.mark(`${region}\0${key}`)
    for (let i = 1; i < this.#levels.length; i++) {
      const { level, ttlScale } = this.#levels[i]!
      const hit = await level.get(region, key, true)
      if (hit === undefined) continue
      // Not copied up over a write of this instance made while it was read (a peer's may still race it: see docs/tiers.md).
      if (!level.shouldPromote() || hit.ttlMs === undefined || this.#marks.mark(`${region}\0${key}`) !== mark) return { enc: hit.enc, ttlMs: undefined, tags: hit.tags }
      level.promoted()
      const remaining = hit.ttlMs === Infinity ? Infinity : Math.max(1, hit.ttlMs / ttlScale)
      // Not awaited: the caller has its value now; the copies are a fill, like the shards'.
      for (let j = 0; j < i; j++) void this.#levels[j]!.level.set(region, key, hit.enc, remaining, Infinity, hit.tags)
      return { enc: hit.enc, ttlMs: remaining, tags: hit.tags }
    }
    return undefined
  }

  /** The first tier's promotion frequency (a lower tier's hits follow their own: see {@link get}). */
  shouldPromote(): boolean {
    return this.#top.shouldPromote()
  }

  promoted(): void {
    this.#top.promoted()
  }

  async set(region: string, key: string, enc: EncodedValue, ttlMs: number, compressMinBytes: number, tags: string[] | undefined): Promise<void> {
    this.#marks.bump(`${region}\0${key}`)
    await Promise.all(this.#levels.map((l) => l.level.set(region, key, enc, ttlMs, compressMinBytes, tags)))
  }

  async touch(region: string, key: string, ttlMs: number): Promise<void> {
    this.#marks.bump(`${region}\0${key}`)
    await Promise.all(this.#levels.map((l) => l.level.touch(region, key, ttlMs)))
  }

  async delete(region: string, keys: readonly string[]): Promise<void> {
    for (const key of keys) this.#marks.bump(`${region}\0${key}`)
    await Promise.all(this.#levels.map((l) => l.level.delete(region, keys)))
  }

  async deleteMatching(region: string, glob: string | undefined, matches: (key: string) => boolean): Promise<void> {
    this.#marks.bumpAll()
    await Promise.all(this.#levels.map((l) => l.level.deleteMatching(region, glob, matches)))
  }

  async invalidateTag(tag: string): Promise<void> {
    this.#marks.bumpAll()
    await Promise.all(this.#levels.map((l) => l.level.invalidateTag(tag)))
  }

  lock(region: string, key: string, token: string, ms: number): Promise<boolean | undefined> {
    return this.#redis === undefined ? Promise.resolve(undefined) : this.#redis.lock(region, key, token, ms)
  }

  unlock(region: string, key: string, token: string): Promise<void> {
    return this.#redis === undefined ? Promise.resolve() : this.#redis.unlock(region, key, token)
  }

  waitFor(region: string, key: string, ms: number): Promise<L2Value | undefined> {
    return this.#redis === undefined ? Promise.resolve(undefined) : this.#redis.waitFor(region, key, ms)
  }

  /** Every tier's figures: `l2`, `l3`, … in order. */
  levelStats(): Record<string, L2Stats | TierStats> {
    return Object.fromEntries(this.#levels.map((l, i) => [`l${i + 2}`, l.level.stats()]))
  }

  resetStats(): void {
    for (const l of this.#levels) l.level.resetStats()
  }

  async close(): Promise<void> {
    await Promise.all(this.#levels.map((l) => l.level.close().catch(() => {})))
  }
}
