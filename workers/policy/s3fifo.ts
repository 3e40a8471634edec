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
 * State: the two queues share one pair of link arrays (an entry is in one
 * queue at a time), plus per slot one byte (queue and frequency) and the key
 * hash (4 bytes), and the charge (4 bytes) when there is a byte budget.
 */
import { ShardEvent } from '../../src/wire/protocol.js'
import { regrow, reserve } from '../slot_arrays.js'
import { Ghost } from './ghost.js'
import { NIL } from './policy.js'
import type { Policy, PolicySizing } from './policy.js'

/** Which queue a slot is in: bits 2-3 of its state byte; bits 0-1 are its frequency. */
const SMALL = 4
const MAIN = 8
const QUEUE = 12
const FREQ = 3

/** The small queue's share of the budget, as in the paper. */
const SMALL_SHARE = 0.1

export class S3FifoPolicy implements Policy {
  #next: Int32Array
  #prev: Int32Array
  #state: Uint8Array
  #hash: Uint32Array
  /** Each entry's charge, only with a byte budget (else empty: every entry weighs 1). */
  #charge: Uint32Array
  readonly #weighs: boolean
  /** Head (oldest) and tail (newest) of small, then of main. */
  readonly #ends = new Int32Array([NIL, NIL, NIL, NIL])
  /** Entries in small and in main, and their charged bytes (0 without a byte budget). */
  readonly #counts = new Float64Array(2)
  readonly #bytes = new Float64Array(2)
  /** Main's share: it is evicted from while over either. */
  readonly #mainMaxEntries: number
  readonly #mainMaxBytes: number
  readonly #ghost: Ghost

  readonly screens: boolean = false

  constructor(sizing: PolicySizing) {
    const { capacity, limit, maxEntries, maxBytes } = sizing
    this.#next = reserve(Int32Array, capacity, limit)
    this.#prev = reserve(Int32Array, capacity, limit)
    this.#state = reserve(Uint8Array, capacity, limit)
    this.#hash = reserve(Uint32Array, capacity, limit)
    this.#weighs = Number.isFinite(maxBytes)
    this.#charge = reserve(Uint32Array, this.#weighs ? capacity : 0, this.#weighs ? limit : 0)
    // Small gets at least one entry, so a tiny cache still screens new keys.
    this.#mainMaxEntries = Number.isFinite(maxEntries) ? maxEntries - Math.max(1, Math.floor(maxEntries * SMALL_SHARE)) : Infinity
    this.#mainMaxBytes = this.#weighs ? maxBytes - Math.floor(maxBytes * SMALL_SHARE) : Infinity
    // The ghost is as large as main (the paper's 90%).
    this.#ghost = new Ghost(this.#mainMaxEntries, this.#mainMaxBytes)
  }

  insert(slot: number, hash: number, charge: number): void {
    this.#hash[slot] = hash
    const weight = this.#weighs ? (this.#charge[slot] = charge) : 1
    if (this.#ghost.take(hash)) {
      this.#state[slot] = MAIN
      this.#push(1, slot, weight)
    } else {
      this.#state[slot] = SMALL
      this.#push(0, slot, weight)
    }
  }

  update(slot: number, charge: number): void {
    if (this.#weighs) {
      const delta = charge - this.#charge[slot]!
      this.#charge[slot] = charge
      const q = (this.#state[slot]! & QUEUE) === SMALL ? 0 : 1
      this.#bytes[q] = this.#bytes[q]! + delta
    }
    this.access(slot)
  }

  access(slot: number): void {
    const s = this.#state[slot]!
    if ((s & FREQ) !== FREQ) this.#state[slot] = s + 1
  }

  remove(slot: number, reason: number): void {
    const weight = this.#weighs ? this.#charge[slot]! : 1
    if ((this.#state[slot]! & QUEUE) === SMALL) {
      this.#unlink(0, slot, weight)
      // Only what small evicted is remembered: a deleted or expired key did not leave for lack of room.
      if (reason === ShardEvent.EVICT) this.#ghost.add(this.#hash[slot]!, weight)
    } else {
      this.#unlink(1, slot, weight)
    }
    this.#state[slot] = 0
  }

  victim(keep: number): number {
    if (this.#counts[0]! + this.#counts[1]! <= (keep === NIL ? 0 : 1)) return NIL
    for (;;) {
      const fromMain = this.#counts[0]! === 0 || this.#counts[1]! > this.#mainMaxEntries || this.#bytes[1]! > this.#mainMaxBytes
      // `keep` alone in the queue to take from: take from the other one.
      if (fromMain ? this.#counts[1]! === 1 && this.#ends[2]! === keep : this.#counts[0]! === 1 && this.#ends[0]! === keep) {
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
    while (this.#ends[0]! !== NIL) {
      const slot = this.#ends[0]!
      const weight = this.#weighs ? this.#charge[slot]! : 1
      if (slot === keep) {
        if (this.#counts[0]! === 1) return NIL
        this.#unlink(0, slot, weight)
        this.#push(0, slot, weight)
        continue
      }
      if ((this.#state[slot]! & FREQ) >= 2) {
        this.#unlink(0, slot, weight)
        this.#state[slot] = MAIN
        this.#push(1, slot, weight)
        continue
      }
      return slot
    }
    return NIL
  }

  /**
   * Walks main from its oldest entry: one with hits goes to the newest end
   * with one hit less; the first without is the victim. `keep` goes round
   * unchanged; NIL when it is main's only entry.
   */
  #evictMain(keep: number): number {
    while (this.#ends[2]! !== NIL) {
      const slot = this.#ends[2]!
      const s = this.#state[slot]!
      if (slot === keep || (s & FREQ) !== 0) {
        if (slot === keep && this.#counts[1]! === 1) return NIL
        const weight = this.#weighs ? this.#charge[slot]! : 1
        this.#unlink(1, slot, weight)
        if (slot !== keep) this.#state[slot] = s - 1
        this.#push(1, slot, weight)
        continue
      }
      return slot
    }
    return NIL
  }

  admit(_slot: number, _charge: number): boolean {
    return true
  }

  clear(): void {
    this.#ends.fill(NIL)
    this.#counts.fill(0)
    this.#bytes.fill(0)
    this.#ghost.clear()
  }

  grow(capacity: number): void {
    this.#next = regrow(Int32Array, this.#next, capacity)
    this.#prev = regrow(Int32Array, this.#prev, capacity)
    this.#state = regrow(Uint8Array, this.#state, capacity)
    this.#hash = regrow(Uint32Array, this.#hash, capacity)
    if (this.#weighs) this.#charge = regrow(Uint32Array, this.#charge, capacity)
  }

  /** Small's entries oldest first, then main's: the order they would leave in if none were hit. */
  first(): number {
    return this.#ends[0]! !== NIL ? this.#ends[0]! : this.#ends[2]!
  }

  next(slot: number): number {
    const n = this.#next[slot]!
    return n === NIL && (this.#state[slot]! & QUEUE) === SMALL ? this.#ends[2]! : n
  }

  stateBytes(): number {
    return this.#next.byteLength + this.#prev.byteLength + this.#state.byteLength + this.#hash.byteLength + this.#charge.byteLength + this.#ghost.stateBytes()
  }

  /** @internal Entries in the small queue and in main, and the ghost's size, for tests. */
  sizes(): { small: number; main: number; ghost: number } {
    return { small: this.#counts[0]!, main: this.#counts[1]!, ghost: this.#ghost.size }
  }

  check(slots: number): void {
    const walk = (head: number, tail: number, queue: number, count: number, bytes: number, name: string): void => {
      let prev = NIL
      let n = 0
      let weight = 0
      for (let slot = head; slot !== NIL; slot = this.#next[slot]!) {
        if (this.#prev[slot] !== prev) throw new Error(`${name}: prev link of slot ${slot} is broken`)
        if ((this.#state[slot]! & QUEUE) !== queue) throw new Error(`${name}: slot ${slot} is marked for the other queue`)
        weight += this.#weighs ? this.#charge[slot]! : 1
        prev = slot
        if (++n > slots) throw new Error(`${name} has a cycle`)
      }
      if (prev !== tail) throw new Error(`${name}: tail is not the last slot`)
      if (n !== count) throw new Error(`${name} counts ${count} entries, its list holds ${n}`)
      if (this.#weighs && weight !== bytes) throw new Error(`${name} counts ${bytes} bytes, its entries ${weight}`)
    }
    walk(this.#ends[0]!, this.#ends[1]!, SMALL, this.#counts[0]!, this.#bytes[0]!, 'small queue')
    walk(this.#ends[2]!, this.#ends[3]!, MAIN, this.#counts[1]!, this.#bytes[1]!, 'main queue')
    this.#ghost.check()
  }

  /** Appends `slot` as queue `q`'s newest (0: small, 1: main). */
  #push(q: number, slot: number, weight: number): void {
    const ends = this.#ends
    const tail = ends[q * 2 + 1]!
    this.#prev[slot] = tail
    this.#next[slot] = NIL
    if (tail === NIL) ends[q * 2] = slot
    else this.#next[tail] = slot
    ends[q * 2 + 1] = slot
    this.#counts[q] = this.#counts[q]! + 1
    this.#bytes[q] = this.#bytes[q]! + weight
  }

  #unlink(q: number, slot: number, weight: number): void {
    const ends = this.#ends
    const p = this.#prev[slot]!
    const n = this.#next[slot]!
    if (p === NIL) ends[q * 2] = n
    else this.#next[p] = n
    if (n === NIL) ends[q * 2 + 1] = p
    else this.#prev[n] = p
    this.#counts[q] = this.#counts[q]! - 1
    this.#bytes[q] = this.#bytes[q]! - weight
  }
}
