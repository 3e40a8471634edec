/**
 * An entry's information (GET_ENTRY, sent by ./values.ts sendGetEntry with
 * the other reads of one key): how its ENTRY reply is read. Apart from the
 * value replies because of its shape: a value plus the entry's timestamps,
 * sizes and metadata, which the facade turns into a {@link CacheEntry}.
 */
import type { EntryInfo, FrameReader } from '../../wire/protocol.js'
import { decodeValue } from '../../wire/values.js'
import type { Codec } from '../../wire/values.js'

/** A shard's answer to GET_ENTRY, value already decoded. */
export interface RawEntry extends EntryInfo {
  value: unknown
  metadata: Buffer | undefined
}

/** An ENTRY reply. */
export function readEntryReply(r: FrameReader, codec: Codec | undefined): RawEntry {
  const tag = r.u8()
  const bytes = r.bytesView()
  const createdAt = r.f64()
  const expiresAt = r.f64()
  const ttlRemaining = r.f64()
  const sizeBytes = r.u32()
  const storedBytes = r.u32()
  const compressed = r.u8() === 1
  const meta = r.bytesView()
  const entry: RawEntry = {
    value: decodeValue(tag, bytes, codec),
    createdAt,
    expiresAt,
    ttlRemaining,
    sizeBytes,
    storedBytes,
    compressed,
    // Copied: the reply buffer is reused once this frame is read.
    metadata: meta.length === 0 ? undefined : Buffer.from(meta),
  }
  return entry
}
