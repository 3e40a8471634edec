/**
 * One tier of the chain (a {@link Tier}: a Keyv store, or the user's own)
 * with what every tier gets from the cache: its TTL scale and promotion
 * frequency, a timeout on every call, a circuit breaker, counters, and the
 * repair of writes that failed.
 *
 * Failures never reach the caller: a read that fails is a miss, a write that
 * fails is remembered. Five failures in a row open the breaker: the tier is
 * not called for `breakDuration`, then one call probes it.
 *
 * Repair, as the Redis tier's (src/redis/l2_repair.ts): a write, touch or
 * delete that failed (or was skipped) may leave the tier holding an older
 * value than the shards, which a later miss would read back. So the key is
 * remembered as unsynced (at most {@link MAX_UNSYNCED}), read as a miss from
 * this tier meanwhile, and deleted there once the tier answers. A failed
 * pattern delete, clear or tag invalidation (or too many unsynced keys)
 * cannot be repaired key by key: the tier is then read as a miss for every
 * key until all its regions could be cleared. What a repair deletes is
 * reported (`onRepaired`), so that peers drop what they read meanwhile.
 */
import type { EncodedValue } from '../wire/values.js'
import { decodeL2, encodeL2 } from '../redis/l2_codec.js'
import { MAX_UNSYNCED } from '../redis/l2_repair.js'
import { resetL2Counters, zeroL2Counters } from '../redis/l2_types.js'
import type { L2Repaired, L2Stats, L2Value } from '../redis/l2.js'
import type { Tier } from './tier.js'

/** Failures in a row that open a tier's breaker. */
const BREAKER_THRESHOLD = 5
/** How soon a repair is tried again after it failed (or the breaker was open). */
const REPAIR_RETRY_MS = 100
/** Unsynced keys deleted per repair call. */
const REPAIR_BATCH = 500

/** A tier of `tiers` after validation. */
export interface ResolvedTier {
  name: string
  tier: Tier
  ttlScale: number
  promotionFrequency: number
  timeoutMs: number
  breakDurationMs: number
}

/** `stats().tiers.<level>` for a tier of `tiers`: the Redis tier's figures (what applies), its name, and the store's own. */
export interface TierStats extends L2Stats {
  /** The tier's `name`. */
  name: string
  /** What the tier reports itself ({@link Tier.stats}), if anything. */
  store?: Record<string, number>
}

class Skipped extends Error {}

export class TierMember {
  readonly name: string
  onRepaired: ((r: L2Repaired) => void) | undefined
  readonly #o: ResolvedTier
  /** The Redis tier's counters (src/redis/l2_types.ts): a tier here reports the same figures. */
  readonly #c = zeroL2Counters()
  #failures = 0
  #openUntil = 0
  #probing = false
  #pending = 0
  #regions: readonly string[] = []
  /** Unsynced keys: `region\0key` → the generation of their last failure. */
  readonly #unsynced = new Map<string, number>()
  /** The generation at which key-by-key tracking was lost (0: it was not): every region must be cleared. */
  #lostAt = 0
  #gen = 0
  #repairing = false
  #timer: NodeJS.Timeout | undefined
  #closed = false

  /**
   * @param writtenThrough regions whose `writeThrough.store` is this tier:
   * their writes, touches and deletes reach it through the write-through
   * already (once, in order), and are not made again here.
   */
  constructor(
    o: ResolvedTier,
    readonly writtenThrough: ReadonlySet<string> = new Set(),
  ) {
    this.#o = o
    this.name = o.name
  }

  /** As the Redis tier's: a peer's invalidation this recent keeps a read of this tier out of the shards. */
  get fillWindowMs(): number {
    return 2 * this.#o.timeoutMs
  }

  /** Asks the tier's health once: a tier that does not answer starts with its breaker counting (the cache starts anyway). */
  async start(regions: readonly string[]): Promise<void> {
    this.#regions = regions
    await this.#call(() => this.#o.tier.health()).catch(() => undefined)
  }

  async get(region: string, key: string): Promise<L2Value | undefined> {
    if (this.#lostAt !== 0 || (this.#unsynced.size > 0 && this.#unsynced.has(`${region}\0${key}`))) {
      this.#c.misses++
      return undefined
    }
    let hit: Awaited<ReturnType<Tier['get']>>
    try {
      hit = await this.#call(() => this.#o.tier.get(region, key))
    } catch {
      this.#c.misses++
      return undefined
    }
    if (hit === undefined) {
      this.#c.misses++
      return undefined
    }
    const enc = hit.bytes instanceof Uint8Array ? decodeL2(Buffer.from(hit.bytes.buffer, hit.bytes.byteOffset, hit.bytes.byteLength)) : undefined
    if (enc === undefined || !(hit.ttlMs > 0)) {
      this.#c.corrupt++
      this.#c.misses++
      return undefined
    }
    this.#c.hits++
    return { enc, ttlMs: hit.ttlMs, tags: Array.isArray(hit.tags) && hit.tags.length > 0 ? [...hit.tags] : undefined }
  }

  /** Whether a hit here is copied into the tiers above (and the shards): 1 in `promotion.frequency`. */
  shouldPromote(): boolean {
    const f = this.#o.promotionFrequency
    return f === 1 || Math.random() * f < 1
  }

  promoted(): void {
    this.#c.promotions++
  }

  set(region: string, key: string, enc: EncodedValue, ttlMs: number, compressMinBytes: number, tags: string[] | undefined): Promise<void> {
    if (this.writtenThrough.has(region)) return Promise.resolve()
    const ttl = ttlMs === Infinity ? Infinity : Math.max(1, Math.round(ttlMs * this.#o.ttlScale))
    const bytes = encodeL2(enc, compressMinBytes)
    return this.#write([key], region, () => this.#o.tier.set(region, key, { bytes, ttlMs: ttl, tags }))
  }

  /** The contract has no TTL update: the key is deleted from this tier (a miss there, never a stale TTL). */
  touch(region: string, key: string): Promise<void> {
    return this.delete(region, [key])
  }

  delete(region: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0 || this.writtenThrough.has(region)) return Promise.resolve()
    return this.#write(keys, region, () => this.#o.tier.delete(region, keys))
  }

  deleteMatching(region: string, glob: string | undefined, matches: (key: string) => boolean): Promise<void> {
    return this.#write(undefined, region, () => (glob === undefined ? this.#o.tier.clear(region) : this.#o.tier.deleteMatching(region, glob, matches)))
  }

  invalidateTag(tag: string): Promise<void> {
    return this.#write(undefined, undefined, () => this.#o.tier.invalidateTag(tag))
  }

  stats(): TierStats {
    const own = this.#o.tier.stats?.()
    return {
      name: this.name,
      ...this.#c,
      breaker: this.#openUntil > Date.now() ? 'open' : this.#failures >= BREAKER_THRESHOLD ? 'half-open' : 'closed',
      unsynced: this.#unsynced.size,
      unsyncedOverflow: this.#lostAt !== 0,
      pending: this.#pending,
      repairPending: this.#unsynced.size + (this.#lostAt !== 0 ? 1 : 0),
      ...(own === undefined ? {} : { store: own }),
    }
  }

  resetStats(): void {
    resetL2Counters(this.#c)
  }

  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    await this.#o.tier.close?.()
  }

  /**
   * A write: on failure its keys become unsynced (`keys` undefined: the
   * tier's tracking is lost, every region must be cleared), and a repair is
   * scheduled.
   */
  async #write(keys: readonly string[] | undefined, region: string | undefined, run: () => Promise<unknown>): Promise<void> {
    try {
      await this.#call(run)
    } catch {
      this.#c.lostWrites += keys?.length ?? 1
      const gen = ++this.#gen
      if (keys === undefined || this.#unsynced.size + keys.length > MAX_UNSYNCED) this.#lostAt = gen
      else for (const k of keys) this.#unsynced.set(`${region}\0${k}`, gen)
      this.#scheduleRepair(0)
    }
  }

  /** One call of the tier, under its timeout and breaker; rejects when skipped or failed. */
  async #call<T>(fn: () => Promise<T>): Promise<T> {
    const now = Date.now()
    if (this.#openUntil > now || (this.#failures >= BREAKER_THRESHOLD && this.#probing)) {
      this.#c.skipped++
      throw new Skipped()
    }
    const probe = this.#failures >= BREAKER_THRESHOLD
    if (probe) this.#probing = true
    let timer: NodeJS.Timeout | undefined
    this.#pending++
    try {
      const out = await Promise.race([
        Promise.resolve().then(fn),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`tier ${this.name}: no answer within ${this.#o.timeoutMs} ms`)), this.#o.timeoutMs)
        }),
      ])
      this.#failures = 0
      return out
    } catch (err) {
      this.#c.errors++
      if (++this.#failures >= BREAKER_THRESHOLD) this.#openUntil = Date.now() + this.#o.breakDurationMs
      throw err
    } finally {
      clearTimeout(timer)
      this.#pending--
      if (probe) this.#probing = false
    }
  }

  #scheduleRepair(ms: number): void {
    if (this.#closed || this.#repairing || this.#timer !== undefined) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.#repair()
    }, Math.max(ms, this.#openUntil - Date.now(), 0))
    this.#timer.unref()
  }

  /** Deletes what failed writes may have left stale, once the tier answers: all its regions after lost tracking, else the unsynced keys. */
  async #repair(): Promise<void> {
    if (this.#closed) return
    this.#repairing = true
    const startGen = this.#gen
    let ok = true
    try {
      if (this.#lostAt !== 0) {
        for (const r of this.#regions) await this.#call(() => this.#o.tier.clear(r))
        this.#c.resyncFlushes++
        // Failures after the clear began are not covered by it.
        if (this.#lostAt <= startGen) this.#lostAt = 0
        for (const [k, gen] of this.#unsynced) if (gen <= startGen) this.#unsynced.delete(k)
        for (const r of this.#regions) this.onRepaired?.({ region: r, glob: undefined })
      } else {
        const byRegion = new Map<string, string[]>()
        for (const [k, gen] of this.#unsynced) {
          if (gen > startGen) continue
          const i = k.indexOf('\0')
          const region = k.slice(0, i)
          const list = byRegion.get(region) ?? []
          if (list.length < REPAIR_BATCH) list.push(k.slice(i + 1))
          byRegion.set(region, list)
        }
        for (const [region, keys] of byRegion) {
          await this.#call(() => this.#o.tier.delete(region, keys))
          for (const key of keys) {
            const id = `${region}\0${key}`
            if ((this.#unsynced.get(id) ?? Infinity) <= startGen) {
              this.#unsynced.delete(id)
              this.#c.resynced++
              this.#c.repaired++
            }
          }
          this.onRepaired?.({ region, keys })
        }
      }
    } catch {
      ok = false
    } finally {
      this.#repairing = false
    }
    if (this.#lostAt !== 0 || this.#unsynced.size > 0) this.#scheduleRepair(ok ? 0 : REPAIR_RETRY_MS)
  }
}
