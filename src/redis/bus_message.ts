/**
 * The invalidation bus's wire format: what one instance publishes on the Redis
 * channel and every other instance decodes. Defined once, here, for both
 * sides; the README shows the same layout.
 *
 * A message is one publisher's operations of one tick, in order (split when
 * they outgrow `bus.maxMessageBytes`). All integers are little-endian.
 *
 * ```
 * offset size  field
 *      0    2  magic "SB" (0x53 0x42)
 *      2    1  version (1)
 *      3    1  flags: bit 0 = signed
 *      4   16  origin: the publishing instance's random id
 *     20    8  seq: the origin's message number, 1, 2, 3, ... (uint64, < 2^53)
 *     28    8  sentAt: publisher's clock when sent, ms since the epoch (float64)
 *     36    4  op count (uint32)
 *     40    …  ops
 *  end-32  32  HMAC-SHA256(secret, bytes [0, end-32)), when signed
 *
 * op:     type (u8) · region name length (u16) · region name (UTF-8) · body
 *   1 DELETE   count (u32) · count × [key length (u16) · key]
 *   2 UPDATE   count (u32) · count × [key length (u16) · key · value tag (u8) ·
 *              flags (u8: bit 0 ttl, bit 1 metadata) · ttl ms (f64, if bit 0) ·
 *              value length (u32) · value · metadata length (u32) · metadata (if bit 1)]
 *   3 PATTERN  glob length (u16) · glob (UTF-8)
 *   4 CLEAR    (no body)
 *   5 TAG      tag length (u16) · tag (UTF-8): invalidateTag
 *
 * An UPDATE entry's flags bit 2 adds, after the metadata, the set's tags:
 * count (u16) · count × [length (u16) · UTF-8].
 * ```
 *
 * The sequence number is assigned when the message is queued, the timestamp
 * and signature when it is sent: a message that waited in the queue during an
 * outage still passes the receivers' freshness check, and a message dropped
 * from a full queue leaves a gap the receivers see.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

export const BUS_MAGIC_0 = 0x53
export const BUS_MAGIC_1 = 0x42
export const BUS_VERSION = 1
export const HEADER_BYTES = 40
export const SIGNATURE_BYTES = 32
const FLAG_SIGNED = 1
const OFFSET_FLAGS = 3
const OFFSET_ORIGIN = 4
/** Where the origin starts: receivers compare it before decoding to skip their own messages. */
export const ORIGIN_OFFSET = OFFSET_ORIGIN
const OFFSET_SEQ = 20
const OFFSET_SENT_AT = 28
const OFFSET_COUNT = 36

/** The kinds of {@link BusOp}: what an invalidation event asks a cache to drop or replace. */
export const BusOpType = {
  DELETE: 1,
  UPDATE: 2,
  PATTERN: 3,
  CLEAR: 4,
  TAG: 5,
} as const

/**
 * One value carried by an UPDATE: the stored form (tag + encoded bytes), as
 * the router sends it to a shard. Decoded values are views into the received
 * message: use (or copy) them before the message handler returns.
 */
export interface BusEntry {
  key: string
  tag: number
  bytes: Uint8Array
  /** TTL in ms given to the original set; undefined: the region's default. */
  ttl: number | undefined
  metadata: Uint8Array | undefined
  /** The set's tags (bit 2 of the entry flags). */
  tags?: string[] | undefined
}

/** What one publisher did, as a receiver applies it. Plain data (it also crosses threads). */
export type BusOp =
  | { type: typeof BusOpType.DELETE; region: string; keys: string[] }
  | {
      type: typeof BusOpType.UPDATE
      region: string
      entries: BusEntry[]
      /**
       * @internal A getOrCompute loader's result relayed by an attached thread: its
       * owner writes it to L2 but does not send it on an invalidate-mode bus. Not on the wire.
       */
      fill?: true
    }
  | { type: typeof BusOpType.PATTERN; region: string; glob: string }
  | { type: typeof BusOpType.CLEAR; region: string }
  | { type: typeof BusOpType.TAG; region: string; tag: string }

/** A decoded message. */
export interface BusMessage {
  origin: Buffer
  seq: number
  sentAt: number
  signed: boolean
  ops: BusOp[]
}

/** Why a received message was not applied; also the keys of `stats().bus.dropped`. */
export type DropReason = 'malformed' | 'version' | 'oversize' | 'unsigned' | 'badSignature' | 'replayed' | 'stale'

/** A message that cannot be read or trusted; `reason` says which counter it goes to. */
export class BusMessageError extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message)
  }
}

/**
 * Whether a signed message sent at `sentAt` may be applied at `now` (both ms
 * since the epoch, by the publisher's and the receiver's clocks): within
 * `maxAgeMs` either way, the boundary included. Later than that it may be a
 * recorded message replayed to an instance that never saw its origin (whose
 * sequence check cannot catch it); dated further ahead, a clock too far off.
 */
export function isFresh(sentAt: number, now: number, maxAgeMs: number): boolean {
  return Math.abs(now - sentAt) <= maxAgeMs
}

/** A fresh random instance id. */
export function newOrigin(): Buffer {
  return randomBytes(16)
}

const utf8Length = (s: string): number => Buffer.byteLength(s, 'utf8')

/** Bytes one op of this type costs before its items. */
function opHeaderBytes(region: string): number {
  return 1 + 2 + utf8Length(region) + 4
}

/** Bytes of one DELETE key or UPDATE entry inside an op. */
function itemBytes(op: BusOp, i: number): number {
  if (op.type === BusOpType.DELETE) return 2 + utf8Length(op.keys[i]!)
  if (op.type === BusOpType.UPDATE) {
    const e = op.entries[i]!
    let n = 2 + utf8Length(e.key) + 1 + 1 + (e.ttl !== undefined ? 8 : 0) + 4 + e.bytes.length + (e.metadata !== undefined ? 4 + e.metadata.length : 0)
    if (e.tags !== undefined) {
      n += 2
      for (const t of e.tags) n += 2 + utf8Length(t)
    }
    return n
  }
  return 0
}

function itemCount(op: BusOp): number {
  return op.type === BusOpType.DELETE ? op.keys.length : op.type === BusOpType.UPDATE ? op.entries.length : 1
}

function slice(op: BusOp, from: number, to: number): BusOp {
  if (from === 0 && to === itemCount(op)) return op
  if (op.type === BusOpType.DELETE) return { type: op.type, region: op.region, keys: op.keys.slice(from, to) }
  if (op.type === BusOpType.UPDATE) return { type: op.type, region: op.region, entries: op.entries.slice(from, to) }
  return op
}

/** Bytes of an op without items (PATTERN, CLEAR, TAG). */
function bareOpBytes(op: BusOp): number {
  if (op.type === BusOpType.PATTERN) return 1 + 2 + utf8Length(op.region) + 2 + utf8Length(op.glob)
  if (op.type === BusOpType.TAG) return 1 + 2 + utf8Length(op.region) + 2 + utf8Length(op.tag)
  return 1 + 2 + utf8Length(op.region)
}

/** One message's ops and its exact encoded size (header and signature room included). */
export interface PackedBody {
  ops: BusOp[]
  bytes: number
}

/**
 * Splits a tick's ops into message bodies of at most `maxBytes` (header and
 * signature included), keeping their order. An UPDATE entry that cannot fit
 * in any message becomes a DELETE of its key: receivers still drop their
 * copy. Keys and globs are bounded by `maxKeyBytes`, which the options keep
 * well under `maxBytes`. Each item is measured once (this runs on the
 * writer's thread for every published key).
 */
export function packOps(ops: BusOp[], maxBytes: number): PackedBody[] {
  const budget = maxBytes - HEADER_BYTES - SIGNATURE_BYTES
  const out: PackedBody[] = []
  let cur: BusOp[] = []
  let used = 0
  const close = (): void => {
    if (cur.length > 0) out.push({ ops: cur, bytes: HEADER_BYTES + used + SIGNATURE_BYTES })
    cur = []
    used = 0
  }
  for (const op of ops) {
    if (op.type === BusOpType.PATTERN || op.type === BusOpType.CLEAR || op.type === BusOpType.TAG) {
      const n = bareOpBytes(op)
      if (used + n > budget) close()
      cur.push(op)
      used += n
      continue
    }
    const head = opHeaderBytes(op.region)
    const count = itemCount(op)
    const sizes = new Array<number>(count)
    for (let i = 0; i < count; i++) sizes[i] = itemBytes(op, i)
    let tooBig: string[] | undefined
    let from = 0
    while (from < count) {
      if (head + sizes[from]! > budget) {
        // Only an UPDATE entry can be this large: it travels as an invalidation.
        ;(tooBig ??= []).push((op as { entries: BusEntry[] }).entries[from]!.key)
        from++
        continue
      }
      if (used + head + sizes[from]! > budget) close()
      let n = head
      let to = from
      while (to < count && sizes[to]! + head <= budget && used + n + sizes[to]! <= budget) n += sizes[to++]!
      cur.push(slice(op, from, to))
      used += n
      from = to
    }
    if (tooBig !== undefined) {
      const del: BusOp = { type: BusOpType.DELETE, region: op.region, keys: tooBig }
      const n = opHeaderBytes(op.region) + tooBig.reduce((a, k) => a + 2 + utf8Length(k), 0)
      if (used + n > budget) close()
      cur.push(del)
      used += n
    }
  }
  close()
  return out
}

/** The encoded size of a message holding `ops`, signature room included. */
function encodedSize(ops: BusOp[]): number {
  let size = HEADER_BYTES + SIGNATURE_BYTES
  for (const op of ops) {
    if (op.type === BusOpType.PATTERN || op.type === BusOpType.CLEAR || op.type === BusOpType.TAG) {
      size += bareOpBytes(op)
      continue
    }
    size += opHeaderBytes(op.region)
    for (let i = 0; i < itemCount(op); i++) size += itemBytes(op, i)
  }
  return size
}

/**
 * Encodes one message body (its ops) with origin and sequence number; the
 * timestamp and signature are left for {@link stampAndSign}. The buffer has
 * room for the signature.
 */
export function encodeMessage(origin: Buffer, seq: number, ops: BusOp[], size = encodedSize(ops)): Buffer {
  const buf = Buffer.allocUnsafe(size)
  buf[0] = BUS_MAGIC_0
  buf[1] = BUS_MAGIC_1
  buf[2] = BUS_VERSION
  buf[OFFSET_FLAGS] = 0
  origin.copy(buf, OFFSET_ORIGIN)
  buf.writeBigUInt64LE(BigInt(seq), OFFSET_SEQ)
  buf.writeDoubleLE(0, OFFSET_SENT_AT)
  buf.writeUInt32LE(ops.length, OFFSET_COUNT)
  let at = HEADER_BYTES
  const str16 = (s: string): void => {
    const n = buf.write(s, at + 2, 'utf8')
    buf.writeUInt16LE(n, at)
    at += 2 + n
  }
  for (const op of ops) {
    buf[at++] = op.type
    str16(op.region)
    switch (op.type) {
      case BusOpType.DELETE:
        buf.writeUInt32LE(op.keys.length, at)
        at += 4
        for (const k of op.keys) str16(k)
        break
      case BusOpType.UPDATE:
        buf.writeUInt32LE(op.entries.length, at)
        at += 4
        for (const e of op.entries) {
          str16(e.key)
          buf[at++] = e.tag
          buf[at++] = (e.ttl !== undefined ? 1 : 0) | (e.metadata !== undefined ? 2 : 0) | (e.tags !== undefined ? 4 : 0)
          if (e.ttl !== undefined) {
            buf.writeDoubleLE(e.ttl, at)
            at += 8
          }
          buf.writeUInt32LE(e.bytes.length, at)
          at += 4
          buf.set(e.bytes, at)
          at += e.bytes.length
          if (e.metadata !== undefined) {
            buf.writeUInt32LE(e.metadata.length, at)
            at += 4
            buf.set(e.metadata, at)
            at += e.metadata.length
          }
          if (e.tags !== undefined) {
            buf.writeUInt16LE(e.tags.length, at)
            at += 2
            for (const t of e.tags) str16(t)
          }
        }
        break
      case BusOpType.PATTERN:
        str16(op.glob)
        break
      case BusOpType.TAG:
        str16(op.tag)
        break
      case BusOpType.CLEAR:
        break
    }
  }
  return buf
}

/**
 * Sets the send time and, with a secret, the signature; returns the bytes to
 * publish (without the signature's room when unsigned).
 */
export function stampAndSign(buf: Buffer, sentAt: number, secret: Buffer | undefined): Buffer {
  buf.writeDoubleLE(sentAt, OFFSET_SENT_AT)
  const end = buf.length - SIGNATURE_BYTES
  if (secret === undefined) {
    buf[OFFSET_FLAGS] = 0
    return buf.subarray(0, end)
  }
  buf[OFFSET_FLAGS] = FLAG_SIGNED
  createHmac('sha256', secret).update(buf.subarray(0, end)).digest().copy(buf, end)
  return buf
}

/**
 * Decodes a received message. Throws {@link BusMessageError} for anything
 * that is not a well-formed message of this version, and, when `secret` is
 * set, for one that is unsigned or whose signature does not match.
 */
export function decodeMessage(buf: Buffer, secret: Buffer | undefined): BusMessage {
  if (buf.length < HEADER_BYTES || buf[0] !== BUS_MAGIC_0 || buf[1] !== BUS_MAGIC_1) {
    throw new BusMessageError('malformed', 'not a shardcache bus message')
  }
  if (buf[2] !== BUS_VERSION) throw new BusMessageError('version', `unsupported version ${buf[2]}`)
  const flags = buf[OFFSET_FLAGS]!
  const signed = (flags & FLAG_SIGNED) !== 0
  let end = buf.length
  if (signed) {
    end -= SIGNATURE_BYTES
    if (end < HEADER_BYTES) throw new BusMessageError('malformed', 'too short for its signature')
  }
  if (secret !== undefined) {
    if (!signed) throw new BusMessageError('unsigned', 'unsigned message on a bus with a secret')
    const want = createHmac('sha256', secret).update(buf.subarray(0, end)).digest()
    if (!timingSafeEqual(want, buf.subarray(end))) throw new BusMessageError('badSignature', 'signature does not match')
  }
  const seq = Number(buf.readBigUInt64LE(OFFSET_SEQ))
  if (!Number.isSafeInteger(seq) || seq < 1) throw new BusMessageError('malformed', `bad sequence number ${seq}`)
  const sentAt = buf.readDoubleLE(OFFSET_SENT_AT)
  if (!Number.isFinite(sentAt)) throw new BusMessageError('malformed', 'bad timestamp')
  const count = buf.readUInt32LE(OFFSET_COUNT)
  let at = HEADER_BYTES
  const need = (n: number): void => {
    if (at + n > end) throw new BusMessageError('malformed', 'truncated')
  }
  const u8 = (): number => {
    need(1)
    return buf[at++]!
  }
  const u16 = (): number => {
    need(2)
    const v = buf.readUInt16LE(at)
    at += 2
    return v
  }
  const u32 = (): number => {
    need(4)
    const v = buf.readUInt32LE(at)
    at += 4
    return v
  }
  const bytes = (n: number): Buffer => {
    need(n)
    // A view, not a copy: the receiver hands values to its shards (which copy them into a
    // frame) before it returns, so nothing outlives the message buffer.
    const b = buf.subarray(at, at + n)
    at += n
    return b
  }
  const str16 = (): string => {
    const n = u16()
    need(n)
    const s = buf.toString('utf8', at, at + n)
    at += n
    return s
  }
  const ops: BusOp[] = []
  for (let o = 0; o < count; o++) {
    const type = u8()
    const region = str16()
    switch (type) {
      case BusOpType.DELETE: {
        const n = u32()
        // Each key takes at least 2 bytes: a count the message cannot hold is malformed, not an allocation.
        if (n * 2 > end - at) throw new BusMessageError('malformed', 'key count beyond the message')
        const keys: string[] = []
        for (let i = 0; i < n; i++) keys.push(str16())
        ops.push({ type, region, keys })
        break
      }
      case BusOpType.UPDATE: {
        const n = u32()
        if (n * 8 > end - at) throw new BusMessageError('malformed', 'entry count beyond the message')
        const entries: BusEntry[] = []
        for (let i = 0; i < n; i++) {
          const key = str16()
          const tag = u8()
          const f = u8()
          let ttl: number | undefined
          if ((f & 1) !== 0) {
            need(8)
            ttl = buf.readDoubleLE(at)
            at += 8
            if (!(ttl > 0)) throw new BusMessageError('malformed', 'bad ttl')
          }
          const value = bytes(u32())
          const metadata = (f & 2) !== 0 ? bytes(u32()) : undefined
          let tags: string[] | undefined
          if ((f & 4) !== 0) {
            tags = []
            for (let t = u16(); t > 0; t--) tags.push(str16())
          }
          entries.push({ key, tag, bytes: value, ttl, metadata, tags })
        }
        ops.push({ type, region, entries })
        break
      }
      case BusOpType.PATTERN:
        ops.push({ type, region, glob: str16() })
        break
      case BusOpType.CLEAR:
        ops.push({ type, region })
        break
      case BusOpType.TAG:
        ops.push({ type, region, tag: str16() })
        break
      default:
        throw new BusMessageError('malformed', `unknown op type ${type}`)
    }
  }
  if (at !== end) throw new BusMessageError('malformed', 'trailing bytes')
  return { origin: Buffer.from(buf.subarray(OFFSET_ORIGIN, OFFSET_ORIGIN + 16)), seq, sentAt, signed, ops }
}
