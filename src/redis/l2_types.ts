/**
 * The L2 tier's shapes: its resolved options, what it reports, what a read
 * returns, and the counters its parts share. Apart from ./l2.ts, which
 * re-exports the public ones, so that its parts (./l2_breaker.ts,
 * ./l2_repair.ts) can name them without importing the tier (no import circles).
 */
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import type { ConnectionOptions } from 'node:tls'
import type { EncodedValue } from '../wire/values.js'

/** What a repair removed from L2: keys of a region, a region's keys matching a glob (all of them: undefined), or a tag's keys. */
export type L2Repaired = { region: string; keys: string[] } | { region: string; glob: string | undefined } | { tag: string }

/** The tier's options after validation (see `L2Options` in src/options/l2.ts). */
export interface ResolvedL2 {
  redis: string | RedisOptions | Redis | Cluster | { cluster: ClusterNode[]; options?: ClusterOptions }
  /** Merged over the connection's own TLS options (not for a Cluster: src/options/l2.ts refuses it). */
  tls: ConnectionOptions | undefined
  prefix: string
  ttlScale: number
  promotionFrequency: number
  timeoutMs: number
  required: boolean
  breakDurationMs: number
}

/** `stats().tiers.l2`. */
export interface L2Stats {
  hits: number
  misses: number
  /** Failed or timed-out commands (each skipped, or rejected when `required`). */
  errors: number
  /** L2 hits written into the shards. */
  promotions: number
  /** Values in Redis that were not ours or did not check out: read as misses. */
  corrupt: number
  /** Calls not made because the breaker was open. */
  skipped: number
  breaker: 'closed' | 'open' | 'half-open'
  /** Keys whose last L2 write failed: read as misses, deleted from L2 once it answers (a gauge). */
  unsynced: number
  /**
   * True after a failed pattern delete, clear or tag invalidation, or more
   * than 10,000 unsynced keys: every L2 read is a miss until every key under
   * the prefix has been deleted.
   */
  unsyncedOverflow: boolean
  /** Unsynced keys deleted from L2 once it answered again. */
  resynced: number
  /** Times every key under the prefix was deleted after {@link unsyncedOverflow}. */
  resyncFlushes: number
  /**
   * Commands sent to Redis and not answered yet (a gauge). While Redis hangs
   * (a paused server) it is bounded by what is sent within one `timeout`:
   * the commands time out, five in a row open the breaker, and an open
   * breaker sends nothing but one probe per `breakDuration`.
   */
  pending: number
  /**
   * Writes that may not have reached L2 (per key for sets, touches and
   * deletes; one per pattern delete, clear or tag invalidation), each
   * remembered for the resync: what it touched is deleted from L2 once L2
   * answers again, and peers are told to drop it.
   */
  lostWrites: number
  /** Keys and operations so repaired (and reported to peers): {@link resynced} keys, and the operations a resync flush covered. */
  repaired: number
  /** Keys and operations waiting for L2 to answer, to be repaired: {@link unsynced}, plus the operations a flush will cover (a gauge). */
  repairPending: number
}

/** What a read found in L2. */
export interface L2Value {
  enc: EncodedValue
  /** Remaining TTL in Redis (ms), Infinity without one; undefined when not read (no promotion). */
  ttlMs: number | undefined
  /** The entry's tags, when the tier keeps them with the value (a tier of `tiers` may; Redis does not). */
  tags?: string[]
}

/**
 * The counters behind {@link L2Stats}, one object the tier's parts all count
 * into; resetStats zeroes it in place, so their references stay good (and
 * the stats keep their order).
 */
export type L2Counters = ReturnType<typeof zeroL2Counters>

export function zeroL2Counters() {
  return { hits: 0, misses: 0, errors: 0, promotions: 0, corrupt: 0, skipped: 0, resynced: 0, resyncFlushes: 0, lostWrites: 0, repaired: 0 }
}

export function resetL2Counters(c: L2Counters): void {
  Object.assign(c, zeroL2Counters())
}
