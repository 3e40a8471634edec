/**
 * SIEVE (Zhang et al., NSDI'24): a FIFO queue with one "visited" bit per
 * entry and a hand that walks from the oldest entry toward the newest. A hit
 * only sets the bit, so hits never reorder the queue (no list writes on the
 * read path, as FIFO). To evict, the hand clears the bit of each visited entry
 * it passes and stops at the first unvisited one, which is evicted; the hand
 * stays there, so the next eviction continues from the entry after it, and
 * wraps to the oldest entry when it passes the newest. New entries join at
 * the newest end, behind the hand's walk, so one-hit wonders leave quickly and
 * entries hit between two passes of the hand stay.
 *
 * The queue is the store's slot list (./slot_list.ts: head = oldest, tail =
 * newest); the bits are one byte per slot in a typed array grown with it.
 */
import { regrow, reserve } from '../slot_arrays.js'
import { NIL } from './policy.js'
import type { PolicySizing } from './policy.js'
import { SlotList } from './slot_list.js'

export class SievePolicy extends SlotList {
  #visited: Uint8Array
  /** Where the next eviction starts; NIL: at the head (the oldest entry). */
  #hand = NIL

  constructor(sizing: PolicySizing) {
    super(sizing)
    this.#visited = reserve(Uint8Array, sizing.capacity, sizing.limit)
  }

  override insert(slot: number, hash: number, charge: number): void {
    this.#visited[slot] = 0
    super.insert(slot, hash, charge)
  }

  override access(slot: number): void {
    this.#visited[slot] = 1
  }

  override remove(slot: number, reason: number): void {
    // The hand never points at a slot that left: it moves on to the next newer entry.
    if (slot === this.#hand) this.#hand = this.next(slot)
    super.remove(slot, reason)
  }

  override victim(keep: number): number {
    let slot = this.#hand === NIL ? this.head : this.#hand
    if (slot === NIL) return NIL
    // At most two passes: the first clears every bit it meets, the second finds an
    // unvisited entry unless `keep` is the only one.
    for (let steps = 0; ; steps++) {
      if (slot === NIL) slot = this.head
      if (slot !== keep) {
        if (this.#visited[slot] === 0) break
        this.#visited[slot] = 0
      } else if (steps > 0 && this.next(slot) === NIL && this.head === slot) {
        return NIL // keep is the only entry
      }
      slot = this.next(slot)
    }
    this.#hand = slot
    return slot
  }

  override stateBytes(): number {
    return super.stateBytes() + this.#visited.byteLength
  }

  override clear(): void {
    super.clear()
    this.#hand = NIL
  }

  override grow(capacity: number): void {
    super.grow(capacity)
    this.#visited = regrow(Uint8Array, this.#visited, capacity)
  }
}
