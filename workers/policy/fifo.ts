/**
 * First in, first out: entries leave in the order they came in. Hits and
 * updates never reorder (an update keeps its place), so access does nothing.
 * A call to an empty method rather than a check in the store: monomorphic,
 * V8 inlines it to nothing, and the store's hot paths stay one shape for every
 * policy.
 */
import { SlotList } from './slot_list.js'

export class FifoPolicy extends SlotList {
  override access(_slot: number): void {}
}
