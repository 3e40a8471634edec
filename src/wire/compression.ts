/**
 * LZ4 for stored values, run inside shard threads so the calling thread never
 * pays for it: the plain codec, and per-region dictionary compression.
 *
 * Plain values use the LZ4 *frame* format with a content checksum (xxHash32)
 * rather than the raw block format: a flipped byte in a block very often
 * decompresses "successfully" into wrong bytes (measured: 20 of 30 single-byte
 * flips in a 600-byte block went undetected), while the frame checksum catches
 * every one. The price, measured on 1.2 KB JSON values here: ~1.5 µs more to
 * compress and ~3.7 µs more to decompress, and ~15 bytes per value. Only values
 * of at least `minBytes` are compressed, and only when it makes them smaller.
 *
 * Small values barely compress one by one (a ~170-byte JSON record has too
 * little repetition of its own, and the frame's ~15 bytes eat what there is).
 * A {@link DictionaryCompressor} gives LZ4 a prefix of typical content to
 * match against instead: see its comment for sampling, rebuilds and versions.
 */
import { crc32 } from 'node:zlib'
import { compressFrameSync, compressSync, decompressFrameSync, uncompressSync } from 'lz4-napi'

const frameOptions = { contentChecksum: true, blockChecksums: false }

/** `raw` as a Buffer over the same memory (lz4-napi's sync functions take Buffers). */
function asBuffer(raw: Uint8Array): Buffer {
  return Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
}

/** Returns the compressed bytes, or `undefined` when compression would not make `raw` smaller. */
export function compressIfSmaller(raw: Uint8Array): Buffer | undefined {
  const out = compressFrameSync(asBuffer(raw), frameOptions)
  return out.length < raw.length ? out : undefined
}

/** Returns the original bytes, or `undefined` when `stored` is corrupt or not `rawSize` long once decompressed. */
export function decompress(stored: Uint8Array, rawSize: number): Buffer | undefined {
  try {
    const out = decompressFrameSync(asBuffer(stored))
    return out.length === rawSize ? out : undefined
  } catch {
    return undefined
  }
}

// ── dictionary compression ───────────────────────────────────────────────────

/**
 * Dictionary-compressed bytes are an LZ4 *block* (lz4-napi `compressSync(data,
 * dict)`; the frame API takes no dictionary) whose first 4 bytes, the raw size
 * lz4-napi prepends, are replaced by the CRC-32 of the raw value:
 *
 * ```
 *  0        4
 *  ┌────────┬──────────────────────────┐
 *  │ crc32  │ LZ4 block (no size)      │
 *  └────────┴──────────────────────────┘
 * ```
 *
 * Why the checksum: a block has none, a flipped byte in it often decodes into
 * other bytes without an error, and so does a block decoded with the wrong
 * dictionary. CRC-32 (node:zlib, ~0.16 µs on 170 bytes here) catches every
 * error of up to 32 bits and misses others with odds of 2^-32. Why in place
 * of the size: the slot already records the raw size, so decoding puts it
 * back, and the checksum costs no byte over lz4-napi's own format. Putting the
 * size back ourselves also means a corrupt size field can never make the
 * decoder allocate more than the value's real size.
 *
 * Which dictionary a value was written with is not in these bytes: the region
 * store keeps it per slot (`#dictIds`, private to the shard), so a corrupt
 * stored byte cannot redirect a read to another dictionary.
 */
export function compressWithDictionary(raw: Uint8Array, dict: Buffer): Buffer | undefined {
  const src = asBuffer(raw)
  const out = compressSync(src, dict)
  if (out.length >= raw.length) return undefined
  out.writeUInt32LE(crc32(src), 0)
  return out
}

/** Decodes {@link compressWithDictionary}'s bytes; `undefined` when they are corrupt (or `dict` is not theirs). */
export function decompressWithDictionary(stored: Uint8Array, rawSize: number, dict: Buffer): Buffer | undefined {
  if (stored.length < 5) return undefined
  try {
    // A copy: the stored bytes live in the shared arena, which we do not write outside a slot update.
    const block = Buffer.allocUnsafe(stored.length)
    block.set(stored)
    const crc = block.readUInt32LE(0)
    block.writeUInt32LE(rawSize, 0)
    const out = uncompressSync(block, dict)
    return out.length === rawSize && crc32(out) === crc ? out : undefined
  } catch {
    return undefined
  }
}

/**
 * Concatenates samples into a dictionary, oldest first: LZ4 finds matches at
 * the nearest offsets first and its dictionary is a prefix, so the newest
 * content goes last. Only the last `maxBytes` are kept (LZ4 uses at most
 * 64 KiB, and the cost of every compression grows with the dictionary's size,
 * as each call hashes the whole dictionary first).
 */
export function buildDictionary(samples: readonly Uint8Array[], maxBytes: number): Buffer {
  const all = Buffer.concat(samples)
  // Buffer.from copies, so the dictionary does not pin the whole concatenation.
  return all.length <= maxBytes ? all : Buffer.from(all.subarray(all.length - maxBytes))
}

/** How a {@link DictionaryCompressor} samples and rebuilds; {@link DEFAULT_DICTIONARY_TUNING} is what regions use (tests pass others). */
export interface DictionaryTuning {
  /** Samples of the first dictionary: built early, so that a young region gains at once. */
  firstSamples: number
  /** Samples of every later dictionary (the first build keeps sampling up to this many, then builds again). */
  samples: number
  /** Largest dictionary, in bytes (the newest samples are kept). */
  maxBytes: number
  /** Compressions per window of the degradation check. */
  window: number
  /** A rebuild starts when a window's stored/raw exceeds the one measured right after the build by this factor. */
  degradeFactor: number
  /** One compression in this many is also made without the dictionary, for {@link DictionaryShardStats}. */
  measureEvery: number
  /** Most dictionaries held at once (the current one and older ones live entries still use). */
  maxDictionaries: number
}

/**
 * Measured on 10k generated ~171-byte JSON user records (test/fixtures/records.ts,
 * scratch/dict_sizes.mjs): a dictionary of 8 samples already stores ~74 bytes
 * a value, 64 ~62, 256 ~58.5 but at twice the compression time of 64 (11.3
 * vs 5.2 µs: each call hashes the whole dictionary), hence 8, then 64 within 16 KiB.
 */
export const DEFAULT_DICTIONARY_TUNING: DictionaryTuning = {
  firstSamples: 8,
  samples: 64,
  maxBytes: 16 * 1024,
  window: 256,
  degradeFactor: 1.5,
  measureEvery: 16,
  maxDictionaries: 16,
}

/** Samples shorter than this teach a dictionary nothing (LZ4's shortest match is 4 bytes). */
const MIN_SAMPLE_BYTES = 8

/** Dictionary figures of one region in one shard. Plain JSON. */
export interface DictionaryShardStats {
  /** Version of the current dictionary: 1 for the first build, 0 before it. */
  version: number
  /** Dictionaries built (the first and every rebuild) since the last `resetStats()`. */
  builds: number
  /** Dictionaries held: the current one and older ones that live entries still use. */
  dictionaries: number
  /** Their bytes (not charged against `maxBytes`). */
  dictionaryBytes: number
  /** Raw bytes of the values measured both ways since the current dictionary was built (one compression in 16). */
  measuredRawBytes: number
  /** What plain LZ4 stores for those values (frame format, kept only when smaller: the region without a dictionary). */
  measuredPlainBytes: number
  /** What was stored for them with the dictionary (the raw size when it did not make them smaller). */
  measuredDictionaryBytes: number
}

/**
 * Dictionary compression of one region in one shard, where values are written.
 *
 * Sampling: the first values written (of at least 8 bytes) are copied as
 * samples. After {@link DictionaryTuning.firstSamples} (8) a first dictionary
 * is built; sampling goes on to {@link DictionaryTuning.samples} (64) and a
 * second one is built from all of them. Until the first build, values are
 * compressed with the plain codec.
 *
 * Rebuilds: the stored/raw ratio of the first window of 256 compressions
 * after a build is its baseline; each later window whose ratio is 1.5x worse
 * (the values drifted away from the samples) starts a new round of sampling,
 * and 64 samples later the next version is built. Writes keep using the
 * current dictionary meanwhile.
 *
 * Versions: every dictionary has a small id (1 to 16) that the store keeps
 * per entry, and a reference count of the live entries written with it
 * ({@link retain}, {@link release}). A dictionary that is no longer current is
 * dropped when its count reaches zero, and only then is its id reused, so an
 * entry always decodes with the dictionary it was written with. When all ids
 * are taken by dictionaries still in use, a rebuild is skipped (the current
 * dictionary stays) and tried again at the next degraded window.
 */
export class DictionaryCompressor {
  /** Dictionary id of the bytes the last {@link compress} returned; 0: the plain codec (or not compressed). */
  lastId = 0

  readonly #t: DictionaryTuning
  /** By id; index 0 is unused (id 0 is the plain codec). */
  readonly #dicts: (Buffer | undefined)[]
  readonly #refs: Int32Array
  #current = 0
  #version = 0
  #builds = 0

  #sampling = true
  #samples: Buffer[] = []

  /** stored/raw of the first window after the build; 0 while that window is being measured. */
  #baseline = 0
  #windowRaw = 0
  #windowStored = 0
  #windowWrites = 0

  #compressions = 0
  #measuredRaw = 0
  #measuredPlain = 0
  #measuredDict = 0

  constructor(tuning: Partial<DictionaryTuning> = {}) {
    this.#t = { ...DEFAULT_DICTIONARY_TUNING, ...tuning }
    if (this.#t.maxDictionaries < 1 || this.#t.maxDictionaries > 255) throw new RangeError('maxDictionaries must be from 1 to 255')
    this.#dicts = new Array<Buffer | undefined>(this.#t.maxDictionaries + 1).fill(undefined)
    this.#refs = new Int32Array(this.#t.maxDictionaries + 1)
  }

  /**
   * Compresses a value (that reached the region's `minBytes`): the bytes to
   * store, with their dictionary id in {@link lastId}, or `undefined` when
   * compression would not make the value smaller. May sample the value and
   * build a new dictionary first.
   */
  compress(raw: Uint8Array): Buffer | undefined {
    if (this.#sampling && raw.length >= MIN_SAMPLE_BYTES) this.#sample(raw)
    const id = this.#current
    if (id === 0) {
      this.lastId = 0
      return compressIfSmaller(raw)
    }
    const stored = compressWithDictionary(raw, this.#dicts[id]!)
    this.lastId = stored === undefined ? 0 : id
    this.#observe(raw, stored === undefined ? raw.length : stored.length)
    return stored
  }

  /** The original bytes of a value stored with dictionary `id`, or `undefined` when they are corrupt. */
  decompress(stored: Uint8Array, rawSize: number, id: number): Buffer | undefined {
    const dict = this.#dicts[id]
    return dict === undefined ? undefined : decompressWithDictionary(stored, rawSize, dict)
  }

  /** A live entry now uses dictionary `id`. */
  retain(id: number): void {
    this.#refs[id]!++
  }

  /** A live entry no longer uses dictionary `id`; an old dictionary nobody uses is dropped. */
  release(id: number): void {
    if (--this.#refs[id]! === 0 && id !== this.#current) this.#dicts[id] = undefined
  }

  /** No entry uses any dictionary any more (the region was cleared): drops all but the current one. */
  releaseAll(): void {
    this.#refs.fill(0)
    for (let id = 1; id < this.#dicts.length; id++) if (id !== this.#current) this.#dicts[id] = undefined
  }

  stats(): DictionaryShardStats {
    let dictionaries = 0
    let dictionaryBytes = 0
    for (const d of this.#dicts) {
      if (d === undefined) continue
      dictionaries++
      dictionaryBytes += d.length
    }
    return {
      version: this.#version,
      builds: this.#builds,
      dictionaries,
      dictionaryBytes,
      measuredRawBytes: this.#measuredRaw,
      measuredPlainBytes: this.#measuredPlain,
      measuredDictionaryBytes: this.#measuredDict,
    }
  }

  resetStats(): void {
    this.#builds = 0
  }

  /**
   * @internal Checks the reference counts against `counts` (by id, recounted
   * from the entries) and that no unused old dictionary is held. For tests.
   */
  checkReferences(counts: readonly number[]): void {
    for (let id = 1; id < this.#dicts.length; id++) {
      const n = counts[id] ?? 0
      if (this.#refs[id] !== n) throw new Error(`dictionary ${id} has ${this.#refs[id]} references, entries say ${n}`)
      if (n > 0 && this.#dicts[id] === undefined) throw new Error(`dictionary ${id} is used by ${n} entries but was dropped`)
      if (n === 0 && id !== this.#current && this.#dicts[id] !== undefined) throw new Error(`dictionary ${id} is unused but still held`)
    }
    if ((counts[0] ?? 0) !== 0 || counts.length > this.#dicts.length) throw new Error('entries use dictionary ids that do not exist')
  }

  #sample(raw: Uint8Array): void {
    // A copy: `raw` may view a frame that is reused next. A sample longer than
    // a dictionary can only contribute its head.
    this.#samples.push(Buffer.from(raw.subarray(0, this.#t.maxBytes)))
    const target = this.#version === 0 ? this.#t.firstSamples : this.#t.samples
    if (this.#samples.length >= target) this.#build()
  }

  #build(): void {
    const full = this.#samples.length >= this.#t.samples
    let id = 1
    while (id < this.#dicts.length && this.#dicts[id] !== undefined) id++
    if (id === this.#dicts.length) {
      // Every id is held by a dictionary live entries still use: keep the current one.
      this.#samples = []
      this.#sampling = false
      this.#resetWindow()
      return
    }
    const old = this.#current
    this.#dicts[id] = buildDictionary(this.#samples, this.#t.maxBytes)
    this.#current = id
    this.#version++
    this.#builds++
    if (old !== 0 && this.#refs[old] === 0) this.#dicts[old] = undefined
    if (full) {
      this.#samples = []
      this.#sampling = false
    }
    this.#baseline = 0
    this.#resetWindow()
    this.#measuredRaw = this.#measuredPlain = this.#measuredDict = 0
  }

  /** Feeds the degradation window and, one compression in `measureEvery`, the plain-vs-dictionary measurement. */
  #observe(raw: Uint8Array, storedLength: number): void {
    if (++this.#compressions % this.#t.measureEvery === 0) {
      this.#measuredRaw += raw.length
      this.#measuredPlain += compressIfSmaller(raw)?.length ?? raw.length
      this.#measuredDict += storedLength
    }
    this.#windowRaw += raw.length
    this.#windowStored += storedLength
    if (++this.#windowWrites < this.#t.window) return
    if (this.#windowRaw > 0) {
      const ratio = this.#windowStored / this.#windowRaw
      if (this.#baseline === 0) this.#baseline = ratio
      else if (!this.#sampling && ratio > this.#baseline * this.#t.degradeFactor) this.#sampling = true
    }
    this.#resetWindow()
  }

  #resetWindow(): void {
    this.#windowRaw = this.#windowStored = this.#windowWrites = 0
  }
}
