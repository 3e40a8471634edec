/**
 * Several FIFO/LRU queues of slots over one pair of link arrays: an entry is
 * in one queue at a time, so the queues share the links, and each keeps its
 * head (oldest), tail (newest), entry count and weight. Per slot it also keeps
 * what both policies built on it need of an entry: its key hash (for their
 * ghosts and sketch) and, when the owner `weighs` by bytes, its charge (an
 * entry then weighs its charge, else 1). S3-FIFO's small and main queues
 * (./s3fifo.ts) and W-TinyLFU's window, probation and protected segments
 * (./tinylfu.ts) are these; LRU and FIFO, one queue, use the simpler
 * ./slot_list.ts.
 */
import { regrow, reserve } from '../slot_arrays.js'
import { NIL } from './policy.js'

export class SlotQueues {
  #next: Int32Array
  #prev: Int32Array
  #hash: Uint32Array
  /** Each entry's charge, only when the owner weighs by bytes (else empty). */
  #charge: Uint32Array
  /** Head then tail of each queue. */
  readonly #ends: Int32Array
  readonly #counts: Float64Array
  readonly #weights: Float64Array

  /**
   * `queues` empty queues over room for `capacity` slots, growable to
   * `limit`; entries weigh their charge if `weighs`, else 1.
   */
  constructor(
    queues: number,
    capacity: number,
    limit: number,
    readonly weighs: boolean,
  ) {
    this.#next = reserve(Int32Array, capacity, limit)
    this.#prev = reserve(Int32Array, capacity, limit)
    this.#hash = reserve(Uint32Array, capacity, limit)
    this.#charge = reserve(Uint32Array, weighs ? capacity : 0, weighs ? limit : 0)
    this.#ends = new Int32Array(queues * 2).fill(NIL)
    this.#counts = new Float64Array(queues)
    this.#weights = new Float64Array(queues)
  }

  /** Oldest slot of queue `q`, NIL when empty. */
  head(q: number): number {
    return this.#ends[q * 2]!
  }

  /** The slot after `slot` in its queue (toward the newest), NIL at the tail. */
  next(slot: number): number {
    return this.#next[slot]!
  }

  /** The key hash `slot`'s entry was added with. */
  hash(slot: number): number {
    return this.#hash[slot]!
  }

  /** What `slot`'s entry weighs: its charge, or 1 when the owner does not weigh by bytes. */
  slotWeight(slot: number): number {
    return this.weighs ? this.#charge[slot]! : 1
  }

  count(q: number): number {
    return this.#counts[q]!
  }

  weight(q: number): number {
    return this.#weights[q]!
  }

  /** A new entry in `slot`, of key hash `hash` and charge `charge`, as queue `q`'s newest. */
  add(q: number, slot: number, hash: number, charge: number): void {
    this.#hash[slot] = hash
    if (this.weighs) this.#charge[slot] = charge
    this.#push(q, slot)
  }

  /** `slot`'s entry, in queue `q`, now has charge `charge` (an update). */
  recharge(q: number, slot: number, charge: number): void {
    if (!this.weighs) return
    this.#weights[q] = this.#weights[q]! + charge - this.#charge[slot]!
    this.#charge[slot] = charge
  }

  #push(q: number, slot: number): void {
    const weight = this.slotWeight(slot)
    const ends = this.#ends
    const tail = ends[q * 2 + 1]!
    this.#prev[slot] = tail
    this.#next[slot] = NIL
    if (tail === NIL) ends[q * 2] = slot
    else this.#next[tail] = slot
    ends[q * 2 + 1] = slot
    this.#counts[q] = this.#counts[q]! + 1
    this.#weights[q] = this.#weights[q]! + weight
  }

  /** Takes `slot` out of queue `q`. */
  unlink(q: number, slot: number): void {
    const weight = this.slotWeight(slot)
    const ends = this.#ends
    const p = this.#prev[slot]!
    const n = this.#next[slot]!
    if (p === NIL) ends[q * 2] = n
    else this.#next[p] = n
    if (n === NIL) ends[q * 2 + 1] = p
    else this.#prev[n] = p
    this.#counts[q] = this.#counts[q]! - 1
    this.#weights[q] = this.#weights[q]! - weight
  }

  /** Moves `slot` from queue `from` to the newest end of `to` (the same queue: to its newest end). */
  move(from: number, to: number, slot: number): void {
    this.unlink(from, slot)
    this.#push(to, slot)
  }

  /** Every queue empty. */
  clear(): void {
    this.#ends.fill(NIL)
    this.#counts.fill(0)
    this.#weights.fill(0)
  }

  grow(capacity: number): void {
    this.#next = regrow(Int32Array, this.#next, capacity)
    this.#prev = regrow(Int32Array, this.#prev, capacity)
    this.#hash = regrow(Uint32Array, this.#hash, capacity)
    if (this.weighs) this.#charge = regrow(Uint32Array, this.#charge, capacity)
  }

  stateBytes(): number {
    return this.#next.byteLength + this.#prev.byteLength + this.#hash.byteLength + this.#charge.byteLength
  }

  /**
   * Throws unless queue `q` is a well-linked list of `count(q)` slots, each of
   * which `inQueue` says belongs to it, whose weights add up to `weight(q)`;
   * `slots` bounds the walk. `name` is for the message.
   */
  check(q: number, name: string, slots: number, inQueue: (slot: number) => boolean): void {
    let prev = NIL
    let n = 0
    let weight = 0
    for (let slot = this.head(q); slot !== NIL; slot = this.#next[slot]!) {
      if (this.#prev[slot] !== prev) throw new Error(`${name}: prev link of slot ${slot} is broken`)
      if (!inQueue(slot)) throw new Error(`${name}: slot ${slot} is marked for another queue`)
      weight += this.slotWeight(slot)
      prev = slot
      if (++n > slots) throw new Error(`${name} has a cycle`)
    }
    if (prev !== this.#ends[q * 2 + 1]) throw new Error(`${name}: tail is not the last slot`)
    if (n !== this.#counts[q]) throw new Error(`${name} counts ${this.#counts[q]} entries, its list holds ${n}`)
    if (Math.abs(weight - this.#weights[q]!) > 1e-6) throw new Error(`${name} weighs ${this.#weights[q]}, its entries ${weight}`)
  }
}
