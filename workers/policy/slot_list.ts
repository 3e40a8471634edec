/**
 * A doubly linked list of slots in typed arrays: the order LRU and FIFO
 * share (workers/policy/lru.ts, workers/policy/fifo.ts).
 *
 * The list runs from `head` (next to evict) to `tail` (most recently set, or,
 * under LRU, most recently read). Eviction takes from the head; a policy that
 * reorders on access moves the slot to the tail. Links are per slot in two
 * Int32Arrays grown with the store's slot arrays (workers/slot_arrays.ts).
 */
import { regrow, reserve } from '../slot_arrays.js'
import { NIL } from './policy.js'
import type { Policy, PolicySizing } from './policy.js'

export abstract class SlotList implements Policy {
  #next: Int32Array
  #prev: Int32Array
  #head = NIL
  #tail = NIL

  /** Room for `sizing.capacity` slots now, growable in place up to `sizing.limit`. */
  constructor(sizing: PolicySizing) {
    this.#next = reserve(Int32Array, sizing.capacity, sizing.limit)
    this.#prev = reserve(Int32Array, sizing.capacity, sizing.limit)
  }

  abstract access(slot: number): void

  insert(slot: number, _hash: number, _charge: number): void {
    this.#link(slot)
  }

  update(slot: number, _charge: number): void {
    this.access(slot)
  }

  remove(slot: number, _reason: number): void {
    this.#unlink(slot)
  }

  victim(keep: number): number {
    const victim = this.#head
    return victim === keep && keep !== NIL ? this.#next[victim]! : victim
  }

  /** Every entry is admitted: the store never asks. */
  readonly screens: boolean = false

  admit(_slot: number, _charge: number): boolean {
    return true
  }

  clear(): void {
    this.#head = this.#tail = NIL
  }

  grow(capacity: number): void {
    this.#next = regrow(Int32Array, this.#next, capacity)
    this.#prev = regrow(Int32Array, this.#prev, capacity)
  }

  first(): number {
    return this.#head
  }

  next(slot: number): number {
    return this.#next[slot]!
  }

  stateBytes(): number {
    return this.#next.byteLength + this.#prev.byteLength
  }

  check(slots: number): void {
    let prev = NIL
    let n = 0
    for (let slot = this.#head; slot !== NIL; slot = this.#next[slot]!) {
      if (this.#prev[slot] !== prev) throw new Error(`prev link of slot ${slot} is broken`)
      prev = slot
      if (++n > slots) throw new Error('the list has a cycle')
    }
    if (prev !== this.#tail) throw new Error('tail is not the last slot')
  }

  /** The slot at the head (oldest; next to evict for LRU and FIFO), NIL when empty. */
  protected get head(): number {
    return this.#head
  }

  /** Moves `slot` to the tail (most recently used). */
  protected moveToTail(slot: number): void {
    if (slot === this.#tail) return
    this.#unlink(slot)
    this.#link(slot)
  }

  #link(slot: number): void {
    this.#prev[slot] = this.#tail
    this.#next[slot] = NIL
    if (this.#tail === NIL) this.#head = slot
    else this.#next[this.#tail] = slot
    this.#tail = slot
  }

  #unlink(slot: number): void {
    const p = this.#prev[slot]!
    const n = this.#next[slot]!
    if (p === NIL) this.#head = n
    else this.#next[p] = n
    if (n === NIL) this.#tail = p
    else this.#prev[n] = p
  }
}
