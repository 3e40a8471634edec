/**
 * Least recently used: a hit (or an update) moves the entry to the tail of
 * the list, so the head is the entry read or written longest ago.
 */
import { SlotList } from './slot_list.js'

export class LruPolicy extends SlotList {
  override access(slot: number): void {
    this.moveToTail(slot)
  }
}
