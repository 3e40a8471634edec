/**
 * Stored values of a region store, in big shared pages rather than one
 * `Uint8Array` per value.
 *
 * Why: every `Uint8Array` is a JS object with its own backing store, which the
 * garbage collector must visit and finalize. With a million values under churn
 * a shard's major GC paused for 130–250 ms (measured); with values in pages
 * (and keys too, see key_table.ts), 4–9 ms. Churn itself ran 2.4x faster.
 * Key bytes use a ValueSlab of their own.
 *
 * How: a value is rounded up to a size class (multiples of 16 up to 64 bytes,
 * then four classes per power of two, so at most 25% is wasted) and takes a
 * chunk of that class. Each class carves pages into chunks (256 chunks a page,
 * between 64 KiB and 1 MiB, so a small cache does not reserve megabytes per
 * class) and keeps freed chunks on a stack for reuse. Values over 64 KiB get a buffer of their
 * own (they are few, and a page of them would waste more than it saves).
 *
 * A chunk is named by a ref: `page * PAGE_BYTES + offset`, exact in a double.
 */

/** Largest page; refs count pages in units of it. */
const PAGE_BYTES = 1 << 20
const MIN_PAGE_BYTES = 1 << 16
const MAX_CHUNK = 64 * 1024
/** Page number of values stored in a buffer of their own; their ref is `OWN_PAGE * PAGE_BYTES + index`. */
const OWN_PAGE = 0

/** Size class of a length: its index, or -1 when the value gets its own buffer. */
function classOf(n: number): number {
  if (n > MAX_CHUNK) return -1
  if (n <= 64) return n <= 16 ? 0 : ((n + 15) >>> 4) - 1 // 16, 32, 48, 64 → 0..3
  // Above 64: four classes per power of two: 80, 96, 112, 128, 160, 192, 224, 256, ...
  const p = 31 - Math.clz32(n - 1) // n - 1 in [2^p, 2^(p+1))
  const step = 1 << (p - 2)
  const i = Math.ceil((n - (1 << p)) / step) // 1..4
  return 3 + (p - 6) * 4 + i
}

function classSize(c: number): number {
  if (c <= 3) return (c + 1) * 16
  const p = 6 + Math.floor((c - 4) / 4)
  const i = ((c - 4) % 4) + 1
  return (1 << p) + i * (1 << (p - 2))
}

const CLASSES = classOf(MAX_CHUNK) + 1

/** A growable stack of refs in a Float64Array (refs exceed the small-integer range). */
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
  /** Page being carved, and where the next fresh chunk starts in it (-1: none yet). */
  page: number
  next: number
}

export class ValueSlab {
  /** Page 0 is reserved for OWN_PAGE refs; class pages start at 1. */
  #pages: (Uint8Array | undefined)[] = [undefined]
  #own: (Uint8Array | undefined)[] = []
  #ownFree: number[] = []
  #classes: SizeClass[] = []

  constructor() {
    this.#reset()
  }

  /** Stores a copy of `bytes`; returns its ref. */
  store(bytes: Uint8Array): number {
    const c = classOf(bytes.length)
    if (c < 0) {
      const own = new Uint8Array(bytes) // copies
      const index = this.#ownFree.pop() ?? this.#own.length
      this.#own[index] = own
      return OWN_PAGE * PAGE_BYTES + index
    }
    const ref = this.#alloc(this.#classes[c]!)
    const page = Math.floor(ref / PAGE_BYTES)
    this.#pages[page]!.set(bytes, ref - page * PAGE_BYTES)
    return ref
  }

  /** A view of the `length` bytes at `ref`; valid until the ref is freed. */
  view(ref: number, length: number): Uint8Array {
    const page = Math.floor(ref / PAGE_BYTES)
    const offset = ref - page * PAGE_BYTES
    if (page === OWN_PAGE) return this.#own[offset]!
    return this.#pages[page]!.subarray(offset, offset + length)
  }

  /** The buffer holding the bytes at `ref` (with {@link offsetOf}: reads without allocating a view). */
  pageOf(ref: number): Uint8Array {
    const page = Math.floor(ref / PAGE_BYTES)
    return page === OWN_PAGE ? this.#own[ref]! : this.#pages[page]!
  }

  /** Where the bytes at `ref` start in {@link pageOf}'s buffer. */
  offsetOf(ref: number): number {
    return ref < PAGE_BYTES ? 0 : ref % PAGE_BYTES
  }

  /** Returns the chunk of a value of `length` bytes for reuse. */
  free(ref: number, length: number): void {
    const page = Math.floor(ref / PAGE_BYTES)
    if (page === OWN_PAGE) {
      const index = ref - page * PAGE_BYTES
      this.#own[index] = undefined
      this.#ownFree.push(index)
      return
    }
    this.#classes[classOf(length)]!.free.push(ref)
  }

  /** Frees everything, pages included. */
  clear(): void {
    this.#reset()
  }

  /** Bytes of pages and own buffers held, for tests and stats. */
  get reservedBytes(): number {
    let n = 0
    for (const p of this.#pages) n += p?.length ?? 0
    for (const o of this.#own) n += o?.length ?? 0
    return n
  }

  #alloc(cls: SizeClass): number {
    if (cls.free.length > 0) return cls.free.pop()
    if (cls.page < 0 || cls.next + cls.size > cls.pageBytes) {
      cls.page = this.#pages.length
      this.#pages.push(new Uint8Array(cls.pageBytes))
      cls.next = 0
    }
    const ref = cls.page * PAGE_BYTES + cls.next
    cls.next += cls.size
    return ref
  }

  #reset(): void {
    this.#pages = [undefined]
    this.#own = []
    this.#ownFree = []
    this.#classes = Array.from({ length: CLASSES }, (_, c) => {
      const size = classSize(c)
      const pageBytes = Math.min(PAGE_BYTES, Math.max(MIN_PAGE_BYTES, size * 256))
      return { size, pageBytes, free: new RefStack(), page: -1, next: 0 }
    })
  }
}

/** @internal For tests: the size class arithmetic. */
export const sizeClasses = { classOf, classSize, count: CLASSES, maxChunk: MAX_CHUNK }
