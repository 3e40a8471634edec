/**
 * Stored bytes (each entry's key, then its value) of a region store, in one arena: a growable
 * SharedArrayBuffer that readers on other threads can see (src/wire/shared_region.ts).
 *
 * Why one arena rather than one `Uint8Array` per value: every `Uint8Array` is
 * a JS object with its own backing store, which the garbage collector must
 * visit and finalize. With a million values under churn a shard's major GC
 * paused for 130–250 ms (measured); with values in pages, 4–9 ms. Churn itself
 * ran 2.4x faster. And a single buffer is what other threads can map.
 *
 * How: a length is rounded up to a size class (multiples of 4 up to 64
 * bytes, then eight classes per power of two, so at most 12.5% is wasted) and
 * takes a chunk of that class. Each class carves pages from the arena's top
 * (256 chunks a page, between 64 KiB and 1 MiB, or one chunk for big values)
 * and keeps freed chunks on a stack for reuse. A chunk is named by its ref:
 * its byte offset in the arena.
 *
 * The arena grows in place and never shrinks; `clear()` makes all of it
 * reusable. Chunks freed in one class serve only that class.
 *
 * Other threads read chunks with plain loads, so a freed chunk is not written
 * again while one of them may still be reading it: with a {@link ReaderGrace},
 * `free` retires the chunk, and it rejoins its class's stack once every
 * reader that was inside a read when it was looked at has finished
 * (workers/reader_grace.ts). The look happens when a class runs out of freed
 * chunks, so a shard under churn pays it about once per chunk reused, a load
 * per reader thread.
 *
 * Why classes that fine: with 1M small JSON records (~85 bytes each after
 * dictionary compression, keys of ~11 bytes) 16-byte steps rounded up ~8 bytes
 * a value and 5 a key; these steps ~4 and ~1 (bench/memory: RSS 243 → 238 MB
 * with 8-byte steps already). Finer classes reuse freed chunks a little less
 * under churn, as each serves only its own class: the trade mimalloc makes too.
 */

import type { GraceSnapshot, ReaderGrace } from './reader_grace.js'

const EMPTY = new Uint8Array(0)
const MAX_PAGE_BYTES = 1 << 20
const MIN_PAGE_BYTES = 1 << 16
/** Growth step of the arena once it is large: bounded so a big arena does not double at once. */
const MAX_GROW_STEP = 64 << 20

/**
 * Size class of a length; every set calls it, and a replacing set twice
 * (the new chunk, the old one freed).
 *
 * In shifts below 2^30: the same classes written with `2 ** p` and a
 * division rounded up took ~106 ns a call (a variable exponent is a call to
 * pow), ~15% of an LRU set through the store; with shifts ~7 ns.
 * test/unit/value_slab.test.ts checks each length gets the smallest class that holds it.
 */
function classOf(n: number): number {
  if (n <= 64) return n <= 4 ? 0 : ((n + 3) >>> 2) - 1 // 4, 8, ..., 64 → 0..15
  // Above 64: eight classes per power of two: 72, 80, ..., 128, 144, 160, ...
  const p = 31 - Math.clz32(n - 1) // n - 1 in [2^p, 2^(p+1))
  if (p >= 30) return 15 + (p - 6) * 8 + Math.ceil((n - 2 ** p) / 2 ** (p - 3)) // int32 shifts stop at 2^30
  const s = p - 3 // the step within the power of two is 2^s
  return 15 + (p - 6) * 8 + ((n - (1 << p) + (1 << s) - 1) >> s) // (n - 2^p) / 2^s rounded up: 1..8
}

function classSize(c: number): number {
  if (c <= 15) return (c + 1) * 4
  const p = 6 + Math.floor((c - 16) / 8)
  const i = ((c - 16) % 8) + 1
  return 2 ** p + i * 2 ** (p - 3)
}

/** Classes up to 4 GiB, the largest arena. */
const CLASSES = classOf(2 ** 32) + 1

/** Thrown by {@link ValueSlab.store} when the arena cannot grow: the caller evicts and retries. */
export class ArenaFullError extends Error {
  constructor(need: number) {
    super(`arena full: cannot fit ${need} more bytes`)
  }
}

/** A growable stack of refs. */
class RefStack {
  #items = new Float64Array(64)
  length = 0
  push(ref: number): void {
    if (this.length === this.#items.length) {
      const next = new Float64Array(this.length * 2)
      next.set(this.#items)
      this.#items = next
    }
    this.#items[this.length++] = ref
  }
  pop(): number {
    return this.#items[--this.length]!
  }
}

interface SizeClass {
  size: number
  pageBytes: number
  free: RefStack
  /** Where the next fresh chunk starts in the page being carved, and where that page ends. */
  next: number
  end: number
}

/** Chunks freed before one look at the readers, waiting for those inside a read then to finish. */
interface Retired {
  seen: GraceSnapshot
  /** Pairs: ref, class. */
  chunks: number[]
}

export class ValueSlab {
  readonly #arena: SharedArrayBuffer
  readonly #onGrow: () => void
  readonly #grace: ReaderGrace | undefined
  #bytes: Buffer
  #top = 0
  #classes: SizeClass[] = []
  /** Pairs (ref, class) freed since the readers were last looked at. */
  #freed: number[] = []
  #waiting: Retired[] = []
  /** Bytes of the chunks in use (their classes' sizes): what a compacted arena would need. */
  #liveBytes = 0

  /**
   * `onGrow` runs after the arena grew, so views of it can be remapped.
   * `grace` tells when no reader can still see a freed chunk; without it
   * (no thread reads the arena but the owner) chunks are reused at once.
   */
  constructor(arena: SharedArrayBuffer = new SharedArrayBuffer(0, { maxByteLength: 2 ** 32 }), onGrow: () => void = () => {}, grace?: ReaderGrace) {
    this.#arena = arena
    this.#onGrow = onGrow
    this.#grace = grace
    this.#bytes = Buffer.from(arena, 0, arena.byteLength)
    this.#reset()
  }

  /** The arena's bytes: `bytes[ref]` is where the chunk `ref` starts. Replaced when the arena grows. */
  get bytes(): Buffer {
    return this.#bytes
  }

  /**
   * Stores a copy of `head` then `tail` in one chunk of their summed length
   * (an entry's key, then its value); returns its ref. Throws
   * {@link ArenaFullError} when the arena cannot grow.
   */
  store(head: Uint8Array, tail: Uint8Array = EMPTY): number {
    const c = classOf(head.length + tail.length)
    const ref = this.#alloc(c)
    this.#liveBytes += classSize(c)
    this.#bytes.set(head, ref)
    if (tail.length > 0) this.#bytes.set(tail, ref + head.length)
    return ref
  }

  /** A view of the `length` bytes at `ref`; valid until the ref is freed or the arena grows. */
  view(ref: number, length: number): Buffer {
    return this.#bytes.subarray(ref, ref + length)
  }

  /**
   * Returns the chunk of a value of `length` bytes for reuse. The caller has
   * already unlinked it: no slot word that leads a reader to it is current.
   */
  free(ref: number, length: number): void {
    const c = classOf(length)
    this.#liveBytes -= classSize(c)
    if (this.#grace === undefined) this.#classes[c]!.free.push(ref)
    else this.#freed.push(ref, c)
  }

  /**
   * Frees every chunk at once; the arena keeps its size. Only for a slab no
   * other thread reads (with readers, free each chunk instead).
   */
  clear(): void {
    if (this.#grace !== undefined) throw new Error('ValueSlab.clear() with readers: free each chunk')
    this.#reset()
  }

  /** Freed chunks not yet reusable (a reader may still read them), for tests. */
  get retiredChunks(): number {
    let n = this.#freed.length / 2
    for (const r of this.#waiting) n += r.chunks.length / 2
    return n
  }

  /** Bytes of the arena carved into pages so far, for tests and stats. */
  get reservedBytes(): number {
    return this.#top
  }

  /**
   * Bytes of the arena in freed chunks (waiting for a value of their class,
   * which may not come again: the fragmentation a compaction gives back).
   * Not counted: the unused end of each class's current page, which its next
   * values take, and which a compacted arena would have as well.
   */
  get freeBytes(): number {
    let pageEnds = 0
    for (const c of this.#classes) pageEnds += c.end - c.next
    return this.#top - this.#liveBytes - pageEnds
  }

  #alloc(c: number): number {
    const cls = this.#classes[c]!
    if (cls.free.length === 0 && (this.#freed.length > 0 || this.#waiting.length > 0)) this.#reclaim()
    if (cls.free.length > 0) return cls.free.pop()
    if (cls.next + cls.size > cls.end) {
      const start = this.#top
      this.#ensure(start + cls.pageBytes)
      this.#top = start + cls.pageBytes
      cls.next = start
      cls.end = this.#top
    }
    const ref = cls.next
    cls.next += cls.size
    return ref
  }

  #ensure(bytes: number): void {
    const have = this.#arena.byteLength
    if (bytes <= have) return
    const max = this.#arena.maxByteLength
    if (bytes > max) throw new ArenaFullError(bytes - have)
    const step = Math.min(Math.max(have, MIN_PAGE_BYTES), MAX_GROW_STEP)
    this.#arena.grow(Math.min(max, Math.max(bytes, have + step)))
    this.#bytes = Buffer.from(this.#arena, 0, this.#arena.byteLength)
    this.#onGrow()
  }

  /** Moves retired chunks that no reader can still see back to their classes' stacks. */
  #reclaim(): void {
    const grace = this.#grace!
    if (this.#freed.length > 0) {
      // Looked at after the chunks were unlinked (see workers/reader_grace.ts).
      const seen = grace.snapshot()
      if (seen === undefined) this.#release(this.#freed)
      else this.#waiting.push({ seen, chunks: this.#freed })
      this.#freed = []
    }
    let kept = 0
    for (let i = 0; i < this.#waiting.length; i++) {
      const r = this.#waiting[i]!
      if (grace.passed(r.seen)) this.#release(r.chunks)
      else this.#waiting[kept++] = r
    }
    this.#waiting.length = kept
  }

  #release(chunks: number[]): void {
    for (let i = 0; i < chunks.length; i += 2) this.#classes[chunks[i + 1]!]!.free.push(chunks[i]!)
  }

  #reset(): void {
    this.#top = 0
    this.#liveBytes = 0
    this.#classes = Array.from({ length: CLASSES }, (_, c) => {
      const size = classSize(c)
      const pageBytes = Math.max(size, Math.min(MAX_PAGE_BYTES, Math.max(MIN_PAGE_BYTES, size * 256)))
      return { size, pageBytes, free: new RefStack(), next: 0, end: 0 }
    })
  }
}

/** @internal For tests: the size class arithmetic. */
export const sizeClasses = { classOf, classSize, count: CLASSES }
