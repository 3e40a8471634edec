/**
 * What the L2 tier does about writes that may not have reached Redis: the
 * keys it no longer trusts, and the resync that deletes them once L2 answers
 * again. Apart from ./l2.ts because it is the tier's coherence with the
 * shards, not its read and write path, which only asks it whether a key is
 * trusted and hands it each write.
 *
 * Resync: a write, touch or delete that failed (or was skipped) leaves L2
 * with an older value than the shards, which a later miss, here or on any
 * instance, would read back after the bus flushed the shards. So the key is
 * remembered as unsynced (at most {@link MAX_UNSYNCED}), read as a miss here
 * meanwhile, and deleted from L2 as soon as L2 answers again; a write that
 * timed out but reached Redis later is deleted too (the delete follows it on
 * the same connection). A failed pattern delete, clear or tag invalidation,
 * or more unsynced keys than the cap, cannot be repaired key by key: every
 * key under the prefix is then deleted on recovery, and until then every L2
 * read here is a miss.
 * What a resync deletes is also reported (`onRepaired`: the keys, or the
 * lost pattern delete, clear or tag invalidation itself), so that the cache
 * tells its peers to drop what they may have read from L2 meanwhile: they do
 * not know about our failure, and would keep the old value L2 gave them.
 * Repairs only delete: a deletion that runs after a newer write of the key
 * costs a miss, never a stale read.
 */
import type { Cluster, Redis } from 'ioredis'
import type { L2Breaker } from './l2_breaker.js'
import type { L2Counters, L2Repaired } from './l2_types.js'

/** Keys per UNLINK when deleting what a SCAN found. */
const UNLINK_BATCH = 500
/**
 * Keys remembered as unsynced (their L2 write failed) before the tier gives
 * up tracking them one by one and deletes its whole prefix on recovery
 * instead. ~100 bytes each (the key and a Map entry): ~1 MB at most.
 */
export const MAX_UNSYNCED = 10_000
/** Unsynced keys deleted per round of the resync. */
const RESYNC_BATCH = 500
/** How soon the resync tries again after L2 failed it (or the breaker was open). */
const RESYNC_RETRY_MS = 100

type Client = Redis | Cluster

/** A key an L2 write touched: its Redis key, region and cache key. */
export type KeyRef = readonly [redisKey: string, region: string, key: string]
/** A lost write whose keys are not known: a region's pattern delete or clear (glob undefined), or a tag invalidation. */
export type LostOp = { region: string; glob: string | undefined } | { tag: string }
/** An unsynced key: the generation of its last failure, and the cache key it is (to report it). */
interface Unsynced {
  gen: number
  region: string
  key: string
}

export class L2Repair {
  readonly #prefix: string
  readonly #breaker: L2Breaker
  readonly #c: L2Counters
  /** Told what each resync removed from L2 (the cache publishes it on the bus). */
  onRepaired: ((r: L2Repaired) => void) | undefined

  /** Unsynced Redis keys (see the header), each with the generation of its last failure and the cache key it is. */
  readonly #unsynced = new Map<string, Unsynced>()
  /**
   * What the next resync flush covers, to report to peers once it ran: the
   * lost pattern deletes, clears and tag invalidations (the same twice is one
   * entry), and a region's clear for keys dropped from {@link #unsynced} at its cap.
   */
  readonly #lostOps = new Map<string, { gen: number; op: LostOp }>()
  /** Bumped by every failure recorded, so a resync only forgets what failed before it started. */
  #gen = 0
  /** The generation at which tracking was lost (0: it was not): the whole prefix must go. */
  #lostAt = 0
  #resyncing = false
  #resyncTimer: NodeJS.Timeout | undefined
  #closed = false

  constructor(prefix: string, breaker: L2Breaker, counters: L2Counters) {
    this.#prefix = prefix
    this.#breaker = breaker
    this.#c = counters
  }

  /** The unsynced keys (a gauge). */
  get unsynced(): number {
    return this.#unsynced.size
  }

  /** Whether tracking was lost: every key under the prefix goes on recovery. */
  get overflow(): boolean {
    return this.#lostAt !== 0
  }

  /** Keys and operations waiting for L2 to answer, to be repaired (a gauge). */
  get pending(): number {
    return this.#unsynced.size + this.#lostOps.size
  }

  /** Stops the resync (the tier is closing). */
  close(): void {
    this.#closed = true
    clearTimeout(this.#resyncTimer)
  }

  /** Whether L2's copy of `k` may be older than the shards' (see the header's Resync). */
  untrusted(k: string): boolean {
    return this.#lostAt !== 0 || (this.#unsynced.size > 0 && this.#unsynced.has(k))
  }

  /**
   * A write to L2 of `what`: keys (the Redis key, its region and cache key),
   * or an operation whose keys are not known in advance (a pattern delete, a
   * clear, a tag invalidation). When it fails or is skipped, the keys are
   * unsynced, or, for an operation, tracking is lost (see the header).
   */
  async write(what: readonly KeyRef[] | { id: string; op: LostOp }, fn: (c: Client) => Promise<unknown>): Promise<void> {
    let ok = false
    try {
      ok = (await this.#breaker.call(async (c) => {
        await fn(c)
        return true
      })) === true
    } finally {
      if (!ok) this.#unsync(what)
    }
  }

  #unsync(what: readonly KeyRef[] | { id: string; op: LostOp }): void {
    const g = ++this.#gen
    if (!Array.isArray(what)) {
      const lost = what as { id: string; op: LostOp }
      this.#c.lostWrites++
      // Which keys it touched is not known: the whole prefix goes on recovery.
      this.#lostAt = g
      this.#lostOps.delete(lost.id) // re-inserted: the newest failure's generation
      this.#lostOps.set(lost.id, { gen: g, op: lost.op })
    } else {
      const keys = what as readonly KeyRef[]
      this.#c.lostWrites += keys.length
      if (this.#unsynced.size + keys.length > MAX_UNSYNCED) {
        // Tracking is lost: the whole prefix goes on recovery, so the keys need not be kept;
        // peers are told to clear the regions they were in instead.
        for (const u of this.#unsynced.values()) this.#loseRegion(u.region, g)
        for (const [, region] of keys) this.#loseRegion(region, g)
        this.#lostAt = g
        this.#unsynced.clear()
      } else {
        for (const [k, region, key] of keys) {
          // Re-inserted: the Map's order is then oldest failure first, the resync's order.
          this.#unsynced.delete(k)
          this.#unsynced.set(k, { gen: g, region, key })
        }
      }
    }
    this.#scheduleResync()
  }

  #loseRegion(region: string, gen: number): void {
    const id = `${region}\0\0true` // the id of the region's clear (deleteMatching with no glob)
    this.#lostOps.delete(id)
    this.#lostOps.set(id, { gen, op: { region, glob: undefined } })
  }

  #scheduleResync(): void {
    if (this.#resyncTimer !== undefined || this.#closed) return
    this.#resyncTimer = setTimeout(() => {
      this.#resyncTimer = undefined
      void this.#resync()
    }, Math.max(RESYNC_RETRY_MS, this.#breaker.openUntil - Date.now()))
    this.#resyncTimer.unref()
  }

  /**
   * Deletes the unsynced keys from L2 (or, tracking lost, every key under the
   * prefix) while L2 answers, and reports to `onRepaired` what each round
   * repaired: the keys by region, and the lost operations a flush covered.
   */
  async #resync(): Promise<void> {
    if (this.#resyncing || this.#closed) return
    // Not through an open breaker (that call would only be skipped, and counted): after it.
    if (this.#breaker.openUntil > Date.now()) return this.#scheduleResync()
    this.#resyncing = true
    const done = (): true => true
    try {
      while (!this.#closed && (this.#lostAt !== 0 || this.#unsynced.size > 0)) {
        if (this.#lostAt !== 0) {
          const at = this.#lostAt
          const base = this.#prefix
          if ((await this.#breaker.call((c) => unlinkMatching(c, `${escapeGlob(base)}*`, (k) => k.startsWith(base)).then(done))) !== true) break
          // Failures recorded meanwhile came after the flush started: they stay.
          if (this.#lostAt === at) this.#lostAt = 0
          const keys: Unsynced[] = []
          for (const [k, u] of this.#unsynced) {
            if (u.gen > at) continue
            this.#unsynced.delete(k)
            this.#c.resynced++
            keys.push(u)
          }
          const ops: LostOp[] = []
          for (const [id, lost] of this.#lostOps) {
            if (lost.gen > at) continue
            this.#lostOps.delete(id)
            ops.push(lost.op)
          }
          this.#c.resyncFlushes++
          this.#c.repaired += keys.length + ops.length
          this.#report(keys)
          for (const op of ops) this.onRepaired?.(op)
          continue
        }
        const batch: [string, Unsynced][] = []
        for (const e of this.#unsynced) {
          batch.push(e)
          if (batch.length === RESYNC_BATCH) break
        }
        if ((await this.#breaker.call((c) => Promise.all(batch.map(([k]) => c.unlink(k))).then(done))) !== true) break
        const keys: Unsynced[] = []
        for (const [k, u] of batch) {
          // A key that failed again meanwhile stays: that write may not have reached L2 yet.
          if (this.#unsynced.get(k) === u) {
            this.#unsynced.delete(k)
            this.#c.resynced++
            this.#c.repaired++
            keys.push(u)
          }
        }
        this.#report(keys)
      }
    } catch {
      // With `required`, the breaker's call throws where it would return undefined: tried again below.
    } finally {
      this.#resyncing = false
      if (this.#lostAt !== 0 || this.#unsynced.size > 0) this.#scheduleResync()
    }
  }

  /** Reports resynced keys to `onRepaired`, by region. */
  #report(keys: readonly Unsynced[]): void {
    if (keys.length === 0 || this.onRepaired === undefined) return
    const byRegion = new Map<string, string[]>()
    for (const u of keys) {
      const list = byRegion.get(u.region)
      if (list === undefined) byRegion.set(u.region, [u.key])
      else list.push(u.key)
    }
    for (const [region, list] of byRegion) this.onRepaired({ region, keys: list })
  }
}

export function isCluster(c: unknown): boolean {
  return typeof (c as { nodes?: unknown }).nodes === 'function' && (c as { isCluster?: boolean }).isCluster === true
}

/** The nodes to SCAN: every master of a cluster, or the one server. */
function nodesOf(c: Client): Redis[] {
  return isCluster(c) ? (c as Cluster).nodes('master') : [c as Redis]
}

/** SCANs every node for `pattern` and UNLINKs the keys `mine` accepts (SCAN's glob is only a prefilter). */
export async function unlinkMatching(c: Client, pattern: string, mine: (key: string) => boolean): Promise<void> {
  for (const node of nodesOf(c)) {
    let cursor = '0'
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      const keys = found.filter(mine)
      for (let i = 0; i < keys.length; i += UNLINK_BATCH) await Promise.all(keys.slice(i, i + UNLINK_BATCH).map((k) => c.unlink(k)))
    } while (cursor !== '0')
  }
}

/** Escapes Redis glob specials in a literal (the prefix and region name). */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (ch) => `\\${ch}`)
}
