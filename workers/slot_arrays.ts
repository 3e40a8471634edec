/**
 * Per-slot typed arrays that grow in place: what the region store
 * (workers/region_slots.ts) and the eviction policies (workers/policy/) keep
 * their per-slot state in, off the JS heap, so that a million entries cost the
 * GC a handful of arrays rather than a million objects.
 */

export type SlotArray = Int32Array | Uint32Array | Float64Array | Uint8Array
export interface SlotArrayType<T extends SlotArray> {
  new (buffer: SharedArrayBuffer, byteOffset: number, length: number): T
  readonly BYTES_PER_ELEMENT: number
}

/**
 * A per-slot array of `length` elements over a growable buffer that reserves
 * room for `limit`: {@link regrow} extends it in place. Why not a new array
 * per doubling: the old one, freed by a worker thread, stayed with the
 * thread's allocator and in the process's RSS (5 arrays grown to 512k slots in
 * a worker: 20 MB of RSS with copies, 15 MB in place; measured). Why a
 * SharedArrayBuffer, though no other thread sees these: V8 20 reads and writes
 * typed arrays over a resizable ArrayBuffer ~2x slower (it may shrink, so
 * every access re-checks bounds), and over a growable SharedArrayBuffer, which
 * cannot shrink, as fast as over a plain one (measured: 118 vs 56 ms for the
 * same loop); with the resizable kind a 5M-entry pre-fill took a third longer.
 */
export function reserve<T extends SlotArray>(type: SlotArrayType<T>, length: number, limit: number): T {
  const buffer = new SharedArrayBuffer(length * type.BYTES_PER_ELEMENT, { maxByteLength: limit * type.BYTES_PER_ELEMENT })
  return new type(buffer, 0, length)
}

/** `a`, extended in place to `length` elements (new ones are 0). */
export function regrow<T extends SlotArray>(type: SlotArrayType<T>, a: T, length: number): T {
  const buffer = a.buffer as SharedArrayBuffer
  buffer.grow(length * type.BYTES_PER_ELEMENT)
  return new type(buffer, 0, length)
}
