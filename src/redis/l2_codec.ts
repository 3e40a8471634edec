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
 * ```
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
const HEADER = 13
const FLAG_LZ4 = 1

/** The stored form of `enc`, compressed when it is at least `compressMinBytes` and that makes it smaller. */
export function encodeL2(enc: EncodedValue, compressMinBytes: number): Buffer {
  const raw = enc.bytes
  const packed = raw.length >= compressMinBytes ? compressIfSmaller(raw) : undefined
  const payload = packed ?? raw
  const out = Buffer.allocUnsafe(HEADER + payload.length)
  out[0] = MAGIC_0
  out[1] = MAGIC_1
  out[2] = VERSION
  out[3] = enc.tag
  out[4] = packed === undefined ? 0 : FLAG_LZ4
  out.writeUInt32LE(raw.length, 5)
  out.writeUInt32LE(crc32(raw), 9)
  out.set(payload, HEADER)
  return out
}

/** The value stored in `b`; undefined when it is not one of ours or does not check out. */
export function decodeL2(b: Buffer): EncodedValue | undefined {
  if (b.length < HEADER || b[0] !== MAGIC_0 || b[1] !== MAGIC_1 || b[2] !== VERSION || b[3]! > 3) return undefined
  const rawSize = b.readUInt32LE(5)
  const payload = b.subarray(HEADER)
  const raw = (b[4]! & FLAG_LZ4) !== 0 ? decompress(payload, rawSize) : payload.length === rawSize ? payload : undefined
  if (raw === undefined || crc32(raw) !== b.readUInt32LE(9)) return undefined
  return { tag: b[3]!, bytes: raw }
}
