/**
 * Several FIFO/LRU queues of slots over one pair of link arrays: an entry is
 * in one queue at a time, so the queues share the links, and each keeps its
 * head (oldest), tail (newest), entry count and weight (charged bytes; the
 * owner passes 1 per entry when it has no byte budget). S3-FIFO's small and
 * main queues (./s3fifo.ts) and W-TinyLFU's window, probation and protected
 * segments (./tinylfu.ts) are these; LRU and FIFO, one queue, use the
 * simpler ./slot_list.ts.
 */
import { regrow, reserve } from '../slot_arrays.js'
import { NIL } from './policy.js'

export class SlotQueues {
  #next: Int32Array
  #prev: Int32Array
  /** Head then tail of each queue. */
  readonly #ends: Int32Array
  readonly #counts: Float64Array
  readonly #weights: Float64Array

  /** `queues` empty queues over room for `capacity` slots, growable to `limit`. */
  constructor(queues: number, capacity: number, limit: number) {
    this.#next = reserve(Int32Array, capacity, limit)
    this.#prev = reserve(Int32Array, capacity, limit)
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

  count(q: number): number {
    return this.#counts[q]!
  }

  weight(q: number): number {
    return this.#weights[q]!
  }

  /** Appends `slot` as queue `q`'s newest. */
  push(q: number, slot: number, weight: number): void {
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
  unlink(q: number, slot: number, weight: number): void {
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
  move(from: number, to: number, slot: number, weight: number): void {
    this.unlink(from, slot, weight)
    this.push(to, slot, weight)
  }

  /** A slot's weight changed by `delta` while in queue `q`. */
  reweigh(q: number, delta: number): void {
    this.#weights[q] = this.#weights[q]! + delta
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
  }

  stateBytes(): number {
    return this.#next.byteLength + this.#prev.byteLength
  }

  /**
   * Throws unless queue `q` is a well-linked list of `count(q)` slots, each of
   * which `inQueue` says belongs to it, whose weights (`weightOf`) add up to
   * `weight(q)`; `slots` bounds the walk. `name` is for the message.
   */
  check(q: number, name: string, slots: number, inQueue: (slot: number) => boolean, weightOf: (slot: number) => number): void {
    let prev = NIL
    let n = 0
    let weight = 0
    for (let slot = this.head(q); slot !== NIL; slot = this.#next[slot]!) {
      if (this.#prev[slot] !== prev) throw new Error(`${name}: prev link of slot ${slot} is broken`)
      if (!inQueue(slot)) throw new Error(`${name}: slot ${slot} is marked for another queue`)
      weight += weightOf(slot)
      prev = slot
      if (++n > slots) throw new Error(`${name} has a cycle`)
    }
    if (prev !== this.#ends[q * 2 + 1]) throw new Error(`${name}: tail is not the last slot`)
    if (n !== this.#counts[q]) throw new Error(`${name} counts ${this.#counts[q]} entries, its list holds ${n}`)
    if (Math.abs(weight - this.#weights[q]!) > 1e-6) throw new Error(`${name} weighs ${this.#weights[q]}, its entries ${weight}`)
  }
}
