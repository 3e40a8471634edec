/**
 * What an eviction policy is to the region store: which entry goes next when
 * a budget is exceeded, and whether a new entry may come in at all.
 *
 * The store (workers/region_slots.ts) owns the entries and their accounting;
 * a policy only orders slot numbers. It is told of every change that matters
 * to an order: an entry landing in a slot, a hit on it, its leaving. When the
 * store must evict it asks {@link Policy.victim} for a slot and removes that
 * entry through its one removal path, which then calls {@link Policy.remove}:
 * bytes, entries, events and the shared slot record are settled in one place,
 * whatever the policy. A policy keeps its per-slot state in typed arrays
 * indexed by slot (workers/slot_arrays.ts), as the store does, so a million
 * entries add no objects for the GC to trace.
 *
 * A region's policy is chosen once, when its store is built
 * ({@link createPolicy}, workers/policy/index.ts), and never changes, so the
 * store's calls into it see one class per region. LRU and FIFO are the same
 * list (workers/policy/slot_list.ts) and differ only in {@link Policy.access}.
 * The interface is meant to take SIEVE (a visited bit and a hand moved by
 * victim), S3-FIFO (two queues and a ghost of evicted key hashes, hence the
 * hash given to insert and the reason given to remove) and W-TinyLFU (a
 * frequency sketch fed by insert and access; its window/main duel happens in
 * victim, and a door-keeper may refuse in admit, with `screens` true) without
 * the store changing.
 */

/**
 * A region's eviction policy, as configured (`RegionOptions.policy`): named in
 * src/wire/region_types.ts, which both threads read; a new policy adds its
 * name there and its file here.
 */
export type { EvictionPolicy } from '../../src/wire/region_types.js'

/** No slot: an empty order, or the end of an iteration. */
export const NIL = -1

/**
 * What a policy is built with: room for `capacity` slots now, growable in
 * place up to `limit` ({@link Policy.grow}), and the budgets it orders
 * entries within (this shard's share of the region's; `Infinity` when unset).
 * Policies that split the cache into parts (S3-FIFO's small queue, W-TinyLFU's
 * window) size the parts as fractions of these, counting entries against
 * `maxEntries` and charged bytes against `maxBytes`.
 */
export interface PolicySizing {
  capacity: number
  limit: number
  maxEntries: number
  maxBytes: number
}

export interface Policy {
  /**
   * A new entry landed in `slot` (which holds no other entry in this order).
   * `hash` is its key's hash (workers/key_table.ts), for policies that
   * remember keys past their entry's life; `charge` is what it counts against
   * the byte budget (key, stored value, metadata, tags and the fixed
   * overhead), for policies that weigh entries by bytes.
   */
  insert(slot: number, hash: number, charge: number): void

  /**
   * A set replaced `slot`'s live entry; `charge` is the new entry's (see
   * {@link insert}). Counts as a hit ({@link access}) for every policy here.
   */
  update(slot: number, charge: number): void

  /**
   * A hit on `slot`'s live entry: a read the shard served, an update of the
   * entry by a set, or a read another thread made straight from shared memory
   * and the shard replayed from the access log (`RegionStore.touch`).
   */
  access(slot: number): void

  /**
   * `slot`'s entry left: deleted, expired, evicted (after {@link victim} chose
   * it, or after {@link admit} refused it) or dropped as corrupt; `reason` is
   * the `ShardEvent` kind the store reports it as (EVICT, EXPIRE, DELETE), 0
   * for a corrupt value. Not called by clear(), which calls {@link clear}.
   */
  remove(slot: number, reason: number): void

  /**
   * The slot whose entry to evict next, never `keep` (the entry being written,
   * or NIL to spare none); NIL when there is no other entry. The store then
   * removes it, which calls {@link remove}. May change the policy's state (a
   * hand moving, an entry promoted instead of evicted): call it only to evict.
   */
  victim(keep: number): number

  /**
   * Whether {@link admit} may ever refuse. False (LRU, FIFO): the store never
   * calls admit, which keeps the question off its evicting sets.
   */
  readonly screens: boolean

  /**
   * Whether the new entry in `slot`, charged `charge` bytes against the byte
   * budget, may stay although keeping it needs an eviction; called (when
   * {@link screens}) once per such insert, before any victim is chosen. On
   * false the store evicts the new entry itself (the set succeeded and its
   * entry was evicted at once).
   */
  admit(slot: number, charge: number): boolean

  /** Every entry left at once (the store's clear()). */
  clear(): void

  /** The store's per-slot arrays grew to `capacity` slots (never shrink). */
  grow(capacity: number): void

  /**
   * The byte budget changed (a rebalance between shards). Policies whose
   * shares are of the budget resize them; the store then evicts down to the
   * budget through {@link victim}. Absent: the policy has no such shares.
   */
  resize?(maxBytes: number): void

  /**
   * Iteration over every slot in the order, each exactly once: `first()`,
   * then `next(slot)` until NIL. `next` must be taken before the slot's entry
   * is removed (keys() and deleteMatching() remove as they go). The order is
   * the policy's eviction order as far as it has one (head first for LRU and
   * FIFO); the store's keys() returns keys in it.
   */
  first(): number
  next(slot: number): number

  /**
   * Bytes the policy's own state takes (its per-slot typed arrays at their
   * current capacity, plus any side structure such as a ghost or a sketch),
   * for the bench's memory per entry.
   */
  stateBytes(): number

  /**
   * @internal Throws on the first inconsistency of the policy's own state
   * (links, counts); `slots` is the number of slots the store has handed out,
   * which bounds any walk. For the store's checkInvariants.
   */
  check(slots: number): void
}
