/**
 * The stored form of a value in the L2 tier's Redis, written and read by
 * ./l2.ts. Apart from it because the format is its own contract (another
 * instance, of another version maybe, reads what this one wrote), and the
 * tier's file is about when to call Redis, not what the bytes are.
 *
 * One string per key, `<prefix><region>:<key>`:
 *
 * ```
 *  0     2        3     4      5             9            13
 *  ┌─────┬────────┬─────┬──────┬─────────────┬────────────┬────────────────┐
 *  │"SC" │version │ tag │flags │ raw size u32│ crc32(raw) │ payload        │
 *  └─────┴────────┴─────┴──────┴─────────────┴────────────┴────────────────┘
 *  flags bit 0: the payload is an LZ4 frame (the shards' plain codec)
 *  flags bit 1: the entry's tags come before the payload (version 2 only):
 *               block size u32, then count u16 and per tag length u16 + UTF-8;
 *               the CRC-32 then runs over the raw value, then the tag block
 * ```
 *
 * Version 1 is written for values without tags, version 2 for tagged ones:
 * the tags travel with the value, so that a copy promoted into another
 * instance's shards carries them, and that instance's `invalidateTag`
 * removes it. An instance that only knows version 1 reads a tagged value as
 * a miss (counted `corrupt`), never without its tags.
 *
 * Values of at least the region's `compression.minBytes` are compressed as
 * the shards compress them (dictionaries are per shard and cannot be shared
 * across instances, so L2 uses plain LZ4). Anything that does not decode to a
 * value whose CRC-32 matches (a foreign value, a flipped byte) is a miss and
 * counted as `corrupt`.
 */
import { crc32 } from 'node:zlib'
import { compressIfSmaller, decompress } from '../wire/compression.js'
import type { EncodedValue } from '../wire/values.js'

const MAGIC_0 = 0x53
const MAGIC_1 = 0x43
const VERSION = 1
const VERSION_TAGS = 2
const HEADER = 13
const FLAG_LZ4 = 1
const FLAG_TAGS = 2

/** A value read from L2, with its tags when it was stored with some. */
export interface DecodedL2 extends EncodedValue {
  tags?: string[]
}

/** The stored form of `enc` (with `tags`, if any), compressed when it is at least `compressMinBytes` and that makes it smaller. */
export function encodeL2(enc: EncodedValue, compressMinBytes: number, tags?: readonly string[]): Buffer {
  const raw = enc.bytes
  const packed = raw.length >= compressMinBytes ? compressIfSmaller(raw) : undefined
  const payload = packed ?? raw
  const block = tags === undefined || tags.length === 0 ? undefined : tagBlock(tags)
  const at = block === undefined ? HEADER : HEADER + 4 + block.length
  const out = Buffer.allocUnsafe(at + payload.length)
  out[0] = MAGIC_0
  out[1] = MAGIC_1
  out[2] = block === undefined ? VERSION : VERSION_TAGS
  out[3] = enc.tag
  out[4] = (packed === undefined ? 0 : FLAG_LZ4) | (block === undefined ? 0 : FLAG_TAGS)
  out.writeUInt32LE(raw.length, 5)
  // Version 2's checksum covers its tags too: a flipped tag byte must not pass for another tag.
  out.writeUInt32LE(block === undefined ? crc32(raw) : crc32(block, crc32(raw)), 9)
  if (block !== undefined) {
    out.writeUInt32LE(block.length, HEADER)
    out.set(block, HEADER + 4)
  }
  out.set(payload, at)
  return out
}

function tagBlock(tags: readonly string[]): Buffer {
  const parts = tags.map((t) => Buffer.from(t, 'utf8'))
  const out = Buffer.allocUnsafe(2 + parts.reduce((n, p) => n + 2 + p.length, 0))
  out.writeUInt16LE(parts.length, 0)
  let o = 2
  for (const p of parts) {
    out.writeUInt16LE(p.length, o)
    out.set(p, o + 2)
    o += 2 + p.length
  }
  return out
}

/** The tags of a block; undefined when it does not parse whole. */
function readTags(b: Buffer): string[] | undefined {
  if (b.length < 2) return undefined
  const n = b.readUInt16LE(0)
  const tags: string[] = []
  let o = 2
  for (let i = 0; i < n; i++) {
    if (o + 2 > b.length) return undefined
    const len = b.readUInt16LE(o)
    if (o + 2 + len > b.length) return undefined
    tags.push(b.toString('utf8', o + 2, o + 2 + len))
    o += 2 + len
  }
  return o === b.length ? tags : undefined
}

/** The value stored in `b`, with its tags; undefined when it is not one of ours or does not check out. */
export function decodeL2(b: Buffer): DecodedL2 | undefined {
  if (b.length < HEADER || b[0] !== MAGIC_0 || b[1] !== MAGIC_1 || b[3]! > 3) return undefined
  const version = b[2]
  const tagged = (b[4]! & FLAG_TAGS) !== 0
  if (!(version === VERSION && !tagged) && !(version === VERSION_TAGS && tagged)) return undefined
  let at = HEADER
  let tags: string[] | undefined
  let block: Buffer | undefined
  if (tagged) {
    if (b.length < HEADER + 4) return undefined
    const size = b.readUInt32LE(HEADER)
    if (HEADER + 4 + size > b.length) return undefined
    block = b.subarray(HEADER + 4, HEADER + 4 + size)
    tags = readTags(block)
    if (tags === undefined) return undefined
    at = HEADER + 4 + size
  }
  const rawSize = b.readUInt32LE(5)
  const payload = b.subarray(at)
  const raw = (b[4]! & FLAG_LZ4) !== 0 ? decompress(payload, rawSize) : payload.length === rawSize ? payload : undefined
  if (raw === undefined || (block === undefined ? crc32(raw) : crc32(block, crc32(raw))) !== b.readUInt32LE(9)) return undefined
  return tags === undefined ? { tag: b[3]!, bytes: raw } : { tag: b[3]!, bytes: raw, tags }
}
