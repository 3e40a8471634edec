/**
 * S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
 * SOSP'23): three FIFO queues and a 2-bit frequency per entry.
 *
 * - A new entry joins the *small* queue (10% of the budget), unless its key
 *   hash is in the *ghost* (./ghost.ts: hashes of entries the small queue
 *   evicted lately, as many as the main queue holds), when it joins *main*.
 * - A hit adds one to the entry's frequency, up to 3; it moves nothing, so a
 *   read writes one byte and never a list link.
 * - To evict: from main when main is over its share (90%) or small is empty,
 *   else from small. Small's oldest entry moves to main if it was hit more
 *   than once while there (frequency back to 0), else it is evicted and its
 *   hash goes to the ghost. Main's oldest entry, if hit since it last came
 *   round, goes back to main's newest end with one hit less (a CLOCK with
 *   2-bit counts), else it is evicted. Either walk repeats until an entry is
 *   evicted.
 *
 * So one-hit wonders, most of the keys in real traces, leave after a short
 * stay in small, and a key evicted too early is caught by the ghost. The
 * result is exact to the paper's simulator (libCacheSim's S3-FIFO): the
 * policy tests replay the published traces and check its figures.
 *
 * With a byte budget, the shares and the ghost count charged bytes (as
 * libCacheSim does with object sizes); with an entry budget, entries; with
 * both, a queue is over its share when either is.
 *
 * State: the two queues share one pair of link arrays (./queues.ts), plus per
 * slot one byte (queue and frequency) and the key hash (4 bytes), and the
 * charge (4 bytes) when there is a byte budget; the ghost (./ghost.ts) ~13
 * bytes per remembered key.
 */
import { ShardEvent } from '../../src/wire/protocol.js'
import { regrow, reserve } from '../slot_arrays.js'
import { Ghost } from './ghost.js'
import { NIL } from './policy.js'
import type { Policy, PolicySizing } from './policy.js'
import { SlotQueues } from './queues.js'

/** Which queue a slot is in: bits 2-3 of its state byte; bits 0-1 are its frequency. */
const SMALL = 4
const MAIN = 8
const QUEUE = 12
const FREQ = 3
/** The queues' numbers in {@link SlotQueues}. */
const S = 0
const M = 1

/** The small queue's share of the budget, as in the paper. */
const SMALL_SHARE = 0.1

export class S3FifoPolicy implements Policy {
  readonly #q: SlotQueues
  #state: Uint8Array
  /** Main's share: it is evicted from while over either. */
  readonly #mainMaxEntries: number
  #mainMaxBytes: number
  readonly #ghost: Ghost

  readonly screens: boolean = false

  constructor(sizing: PolicySizing) {
    const { capacity, limit, maxEntries, maxBytes } = sizing
    // With a byte budget entries weigh their charge (and with an entry budget too, the counts are kept).
    this.#q = new SlotQueues(2, capacity, limit, Number.isFinite(maxBytes))
    this.#state = reserve(Uint8Array, capacity, limit)
    // Small gets at least one entry, so a tiny cache still screens new keys.
    this.#mainMaxEntries = Number.isFinite(maxEntries) ? maxEntries - Math.max(1, Math.floor(maxEntries * SMALL_SHARE)) : Infinity
    this.#mainMaxBytes = this.#q.weighs ? maxBytes - Math.floor(maxBytes * SMALL_SHARE) : Infinity
    // The ghost is as large as main (the paper's 90%).
    this.#ghost = new Ghost(this.#mainMaxEntries, this.#mainMaxBytes)
  }

  /** Main's share of a new byte budget (the ghost keeps its size: it only remembers hashes). */
  resize(maxBytes: number): void {
    if (this.#q.weighs) this.#mainMaxBytes = maxBytes - Math.floor(maxBytes * SMALL_SHARE)
  }

  insert(slot: number, hash: number, charge: number): void {
    if (this.#ghost.take(hash)) {
      this.#state[slot] = MAIN
      this.#q.add(M, slot, hash, charge)
    } else {
      this.#state[slot] = SMALL
      this.#q.add(S, slot, hash, charge)
    }
  }

  update(slot: number, charge: number): void {
    this.#q.recharge((this.#state[slot]! & QUEUE) === SMALL ? S : M, slot, charge)
    this.access(slot)
  }

  access(slot: number): void {
    const s = this.#state[slot]!
    if ((s & FREQ) !== FREQ) this.#state[slot] = s + 1
  }

  remove(slot: number, reason: number): void {
    const q = this.#q
    if ((this.#state[slot]! & QUEUE) === SMALL) {
      // Only what small evicted is remembered: a deleted or expired key did not leave for lack of room.
      if (reason === ShardEvent.EVICT) this.#ghost.add(q.hash(slot), q.slotWeight(slot))
      q.unlink(S, slot)
    } else {
      q.unlink(M, slot)
    }
    this.#state[slot] = 0
  }

  victim(keep: number): number {
    const q = this.#q
    if (q.count(S) + q.count(M) <= (keep === NIL ? 0 : 1)) return NIL
    for (;;) {
      const fromMain = q.count(S) === 0 || q.count(M) > this.#mainMaxEntries || q.weight(M) > this.#mainMaxBytes
      // `keep` alone in the queue to take from: take from the other one.
      if (fromMain ? q.count(M) === 1 && q.head(M) === keep : q.count(S) === 1 && q.head(S) === keep) {
        const other = fromMain ? this.#evictSmall(keep) : this.#evictMain(keep)
        if (other !== NIL) return other
        continue
      }
      const slot = fromMain ? this.#evictMain(keep) : this.#evictSmall(keep)
      if (slot !== NIL) return slot
    }
  }

  /**
   * Walks small from its oldest entry: one hit more than once moves to main;
   * the first other is the victim (NIL when small empties first, every entry
   * having moved). `keep` goes to small's newest end.
   */
  #evictSmall(keep: number): number {
    const q = this.#q
    for (let slot = q.head(S); slot !== NIL; slot = q.head(S)) {
      if (slot === keep) {
        if (q.count(S) === 1) return NIL
        q.move(S, S, slot)
      } else if ((this.#state[slot]! & FREQ) >= 2) {
        this.#state[slot] = MAIN
        q.move(S, M, slot)
      } else {
        return slot
      }
    }
    return NIL
  }

  /**
   * Walks main from its oldest entry: one with hits goes to the newest end
   * with one hit less; the first without is the victim. `keep` goes round
   * unchanged; NIL when it is main's only entry.
   */
  #evictMain(keep: number): number {
    const q = this.#q
    for (let slot = q.head(M); slot !== NIL; slot = q.head(M)) {
      const s = this.#state[slot]!
      if (slot !== keep && (s & FREQ) === 0) return slot
      if (slot === keep && q.count(M) === 1) return NIL
      if (slot !== keep) this.#state[slot] = s - 1
      q.move(M, M, slot)
    }
    return NIL
  }

  admit(_slot: number, _charge: number): boolean {
    return true
  }

  clear(): void {
    this.#q.clear()
    this.#ghost.clear()
  }

  grow(capacity: number): void {
    this.#q.grow(capacity)
    this.#state = regrow(Uint8Array, this.#state, capacity)
  }

  /** Small's entries oldest first, then main's: the order they would leave in if none were hit. */
  first(): number {
    const q = this.#q
    return q.head(S) !== NIL ? q.head(S) : q.head(M)
  }

  next(slot: number): number {
    const n = this.#q.next(slot)
    return n === NIL && (this.#state[slot]! & QUEUE) === SMALL ? this.#q.head(M) : n
  }

  stateBytes(): number {
    return this.#q.stateBytes() + this.#state.byteLength + this.#ghost.stateBytes()
  }

  /** @internal Entries in the small queue and in main, and the ghost's size, for tests. */
  sizes(): { small: number; main: number; ghost: number } {
    return { small: this.#q.count(S), main: this.#q.count(M), ghost: this.#ghost.size }
  }

  check(slots: number): void {
    this.#q.check(S, 'small queue', slots, (slot) => (this.#state[slot]! & QUEUE) === SMALL)
    this.#q.check(M, 'main queue', slots, (slot) => (this.#state[slot]! & QUEUE) === MAIN)
    this.#ghost.check()
  }
}
