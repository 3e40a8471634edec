/**
 * The subjects of the getSync study (sync_tiers.ts): sharedmap's runtime
 * API as its package defines it, the keys and values every subject shares,
 * and a region read the way the router reads one.
 */
import sharedmapModule from 'sharedmap'
import type { RegionShardConfig } from '../../src/wire/region_types.js'
import { Header, SLOT_WORDS, Slot, SlotFlag, SharedRegionReader, hashBytes, monotonicNow, newFound } from '../../src/wire/shared_region.js'
import type { Found, RegionMemory } from '../../src/wire/shared_region.js'

// ── sharedmap's runtime API ─────────────────────────────────────────────────

/**
 * sharedmap 1.2.0 as it behaves at run time. Its index.d.ts does not match:
 * it declares a named export `SharedMap` that does not exist (the package is
 * UMD, the class is `module.exports`, so ESM sees it as the default export),
 * types get() as `string | null` (it returns undefined), and does not compile
 * without skipLibCheck. So the default export is typed here.
 */
export interface SharedMapLike {
  readonly storage: SharedArrayBuffer
  readonly length: number
  readonly size: number
  set(key: string, value: string | number): void
  get(key: string): string | undefined
  has(key: string): boolean
  delete(key: string): void
  clear(): void
  lockExclusive(): void
  unlockExclusive(): void
}
export const SharedMap = sharedmapModule as unknown as {
  new (maxSize: number, keySize: number, objSize: number): SharedMapLike
  prototype: SharedMapLike
}
/** A SharedMap that crossed postMessage is a plain object over the same buffers: its prototype must be put back (its README says so). */
export function adoptSharedMap(cloned: unknown): SharedMapLike {
  return Object.setPrototypeOf(cloned, SharedMap.prototype) as SharedMapLike
}

// ── the data every subject shares ───────────────────────────────────────────

export const N = 100_000
export const VALUE_BYTES = 220
/** The value size of the small-value rerun. */
export const SMALL_BYTES = 32
export const ZIPF_S = 0.99
export const SEED = 11
export const RING = 1 << 18
export const MASK = RING - 1
export const BATCH = 1024
/** Entries per sharedmap slot: it never grows, so headroom is chosen at construction (its README: fast up to ~95% full). */
export const SHAREDMAP_LOAD = 0.8
/**
 * sharedmap sizes are UTF-16 code units, rounded up to a multiple of 4. A key
 * or value of exactly the size zeroes the first unit of the next slot (see
 * the probes), so both get one unit of room: "k:99999" is 7, 220 + 1 → 224.
 */
export const KEY_UNITS = 8
export const VALUE_UNITS = VALUE_BYTES + 1

export const keyOf = (i: number): string => `k:${i}`

export const ALPHABET = 'abcdefghijklmnopqrstuvwxyz'
/**
 * A self-checking value: `v:<key index>:<version>:` then letters whose
 * rotation depends on both, to exactly `bytes` ASCII bytes. A value torn
 * between two writes, or belonging to another key, fails {@link checkValue}.
 * Flattened: a `slice` would leave a V8 sliced string pointing into its parent.
 */
export function makeValue(i: number, version: number, bytes = VALUE_BYTES): string {
  const r = (i * 31 + version * 7) % 26
  const rot = ALPHABET.slice(r) + ALPHABET.slice(0, r)
  let s = `v:${i}:${version}:`
  while (s.length < bytes) s += rot
  return Buffer.from(s.slice(0, bytes), 'latin1').toString('latin1')
}

/** The version in a value of key `i`, or -1 when the value is not one {@link makeValue} made for that key. */
export function checkValue(i: number, v: string): number {
  const m = /^v:(\d+):(\d+):/.exec(v)
  if (m === null || Number(m[1]) !== i) return -1
  const version = Number(m[2])
  return v === makeValue(i, version) ? version : -1
}

export const regionConfig: RegionShardConfig = {
  name: 'sync-tiers',
  policy: 'lru',
  maxBytes: Infinity,
  maxEntries: N, // every key fits: the reads never meet an eviction
  defaultTtl: Infinity,
  compressMinBytes: Infinity, // the direct path leaves compressed values to the shard anyway
}

// ── reading a region as the router does ─────────────────────────────────────

/**
 * The router's key encoding (src/client/router.ts #encodeKey, private there): ASCII
 * keys are copied and FNV-hashed in one loop; anything else takes Buffer#write.
 */
export class KeyEncoder {
  readonly bytes = Buffer.alloc(1024)
  hash = 0
  encode(key: string): number {
    const kb = this.bytes
    let h = 0x811c9dc5
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i)
      if (c >= 0x80) {
        const len = kb.write(key, 0, 'utf8')
        this.hash = hashBytes(kb, 0, len)
        return len
      }
      kb[i] = c
      h = Math.imul(h ^ c, 0x01000193)
    }
    this.hash = h >>> 0
    return key.length
  }
}

/** A direct read, as Router.readValue does it minus the hit count and the access log (which getSync pays on every path alike). */
export class RegionDirect {
  readonly reader: SharedRegionReader
  readonly #enc = new KeyEncoder()
  readonly found: Found = newFound()

  constructor(memory: RegionMemory) {
    this.reader = new SharedRegionReader(memory)
  }

  /** The value, or undefined where the cache would ask the shard (absent, expired, compressed, torn). */
  get(key: string): string | undefined {
    const len = this.#enc.encode(key)
    const f = this.found
    if (!this.reader.find(this.#enc.bytes, len, this.#enc.hash, f)) return undefined
    if ((this.reader.flags(f) & SlotFlag.COMPRESSED) !== 0) return undefined
    const s = this.reader.valueString(f)
    return s !== undefined && this.reader.valid(f) ? s : undefined
  }
}

export interface NearEntry {
  value: string
  slot: number
  seq: number
  regionSeq: number
  expiresAt: number
}

/**
 * The validated near cache: decoded values kept on this thread's heap, each
 * trusted only while its slot's sequence number and the region's are what
 * they were when it was read (same check as SharedRegionReader.valid). When
 * either moved, or expiry passed, it reads the region directly and refills.
 * Its view of the slot words is remapped only when an entry's slot lies
 * beyond it: the slots buffer grows in place, so an old view stays right for
 * the slots it covers, and no GEN word needs loading on a hit.
 */
export class NearCache {
  readonly map = new Map<string, NearEntry>()
  readonly #direct: RegionDirect
  readonly #memory: RegionMemory
  readonly #header: Int32Array
  #slots: Int32Array
  hits = 0
  refills = 0
  /** Refills the region could not answer either: these go to the shard. */
  fallbacks = 0

  constructor(memory: RegionMemory) {
    this.#memory = memory
    this.#direct = new RegionDirect(memory)
    this.#header = new Int32Array(memory.header)
    this.#slots = new Int32Array(memory.slots, 0, memory.slots.byteLength / 4)
  }

  get(key: string): string | undefined {
    const e = this.map.get(key)
    if (e !== undefined) {
      const at = e.slot * SLOT_WORDS + Slot.SEQ
      if (at >= this.#slots.length) this.#remap()
      if (
        Atomics.load(this.#slots, at) === e.seq &&
        Atomics.load(this.#header, Header.SEQ) === e.regionSeq &&
        (e.expiresAt === Infinity || e.expiresAt > monotonicNow())
      ) {
        this.hits++
        return e.value
      }
    }
    return this.refill(key)
  }

  /**
   * Diagnostic only: {@link get} with plain loads of the two SEQ words. The
   * memory model keeps aligned Int32 reads tear-free, but unordered; this row
   * shows what Atomics.load itself costs on this V8, not a recommended design.
   */
  getPlainLoads(key: string): string | undefined {
    const e = this.map.get(key)
    if (e !== undefined) {
      const at = e.slot * SLOT_WORDS + Slot.SEQ
      if (at >= this.#slots.length) this.#remap()
      if (this.#slots[at] === e.seq && this.#header[Header.SEQ] === e.regionSeq && (e.expiresAt === Infinity || e.expiresAt > monotonicNow())) {
        this.hits++
        return e.value
      }
    }
    return this.refill(key)
  }

  refill(key: string): string | undefined {
    this.refills++
    const d = this.#direct
    const value = d.get(key)
    if (value === undefined) {
      this.map.delete(key)
      this.fallbacks++
      return undefined
    }
    const f = d.found
    // expiresAt is read after valid(): an entry whose expiry changed has a new seq, so it fails the next check anyway.
    this.map.set(key, { value, slot: f.slot, seq: f.seq, regionSeq: f.regionSeq, expiresAt: d.reader.expiresAt(f) })
    return value
  }

  resetCounts(): void {
    this.hits = this.refills = this.fallbacks = 0
  }

  #remap(): void {
    this.#slots = new Int32Array(this.#memory.slots, 0, this.#memory.slots.byteLength / 4)
  }
}
