/**
 * The entry record: one entry with everything that makes it up (key, value
 * tag, stored bytes, expiry, grace time, metadata, tags), as a shard sends it
 * for an EXPORT page and as a snapshot file holds it (src/ops/snapshot.ts
 * frames records into a file). Written by the shard, read by the calling
 * thread, so it lives with the wire format.
 *
 * ```
 * entry   key (u16 length + UTF-8) · value tag u8 · flags u8 (bit 0 LZ4 frame, bit 1 fresh time,
 *         bit 2 metadata, bit 3 tags) · raw size u32 · value (u32 length + bytes) ·
 *         expiry f64 (epoch ms, Infinity) · [fresh time f64] · [metadata: u32 length + JSON] ·
 *         [tags: u16 count, each u16 length + UTF-8]   (integers little-endian)
 * ```
 */
import type { FrameReader, FrameWriter } from './protocol.js'

const F_LZ4 = 1
const F_FRESH = 2
const F_META = 4
const F_TAGS = 8

/** One entry as a snapshot holds it (what a shard's export page and a snapshot file hold). */
export interface ExportedEntry {
  key: string
  tag: number
  /** `bytes` is an LZ4 frame of `rawSize` bytes. */
  compressed: boolean
  rawSize: number
  bytes: Uint8Array
  /** Absolute expiry on the shards' clock (epoch ms), Infinity without one. */
  expiresAt: number
  /** For a getOrCompute grace entry: when it stops being fresh. */
  freshUntil: number | undefined
  metadata: Uint8Array | undefined
  tags: string[] | undefined
}


/** Writes one entry's record payload. */
export function writeEntry(w: FrameWriter, e: ExportedEntry): void {
  w.key(e.key)
  w.u8(e.tag)
  w.u8((e.compressed ? F_LZ4 : 0) | (e.freshUntil !== undefined ? F_FRESH : 0) | (e.metadata !== undefined ? F_META : 0) | (e.tags !== undefined ? F_TAGS : 0))
  w.u32(e.rawSize)
  w.bytes(e.bytes)
  w.f64(e.expiresAt)
  if (e.freshUntil !== undefined) w.f64(e.freshUntil)
  if (e.metadata !== undefined) w.bytes(e.metadata)
  if (e.tags !== undefined) w.strings(e.tags)
}

/** Reads one entry (copies of its bytes: the buffer is not kept). */
export function readEntry(r: FrameReader): ExportedEntry {
  r.keyAt()
  const key = r.buf.toString('utf8', r.keyStart, r.keyStart + r.keyBytes)
  const tag = r.u8()
  const flags = r.u8()
  const rawSize = r.u32()
  const bytes = new Uint8Array(r.bytesView())
  const expiresAt = r.f64()
  const freshUntil = (flags & F_FRESH) !== 0 ? r.f64() : undefined
  const metadata = (flags & F_META) !== 0 ? new Uint8Array(r.bytesView()) : undefined
  const tags = (flags & F_TAGS) !== 0 ? r.strings() : undefined
  return { key, tag, compressed: (flags & F_LZ4) !== 0, rawSize, bytes, expiresAt, freshUntil, metadata, tags }
}

/** Writes a snapshot: `pages(region)` yields each region's entries, page by page. */
