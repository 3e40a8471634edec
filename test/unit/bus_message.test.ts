/**
 * Unit tests of the bus wire format (src/redis/bus_message.ts): round trips,
 * splitting under maxMessageBytes, signing, and that every malformed or
 * forged input is refused with the reason it is counted under, never an
 * exception of another kind.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import {
  BusMessageError,
  BusOpType,
  HEADER_BYTES,
  SIGNATURE_BYTES,
  decodeMessage,
  encodeMessage,
  newOrigin,
  packOps,
  stampAndSign,
} from '../../src/redis/bus_message.js'
import type { BusOp } from '../../src/redis/bus_message.js'

const secret = Buffer.from('bus-secret')
const origin = Buffer.alloc(16, 7)

const ops: BusOp[] = [
  { type: BusOpType.DELETE, region: 'default', keys: ['a', 'b', 'ключ'] },
  {
    type: BusOpType.UPDATE,
    region: 'sessions',
    entries: [
      { key: 's:1', tag: 0, bytes: Buffer.from('hello'), ttl: 1500, metadata: Buffer.from('{"m":1}'), tags: ['user:1', 'профиль'] },
      { key: 's:2', tag: 1, bytes: Buffer.from([0, 255, 3]), ttl: undefined, metadata: undefined },
    ],
  },
  { type: BusOpType.PATTERN, region: 'default', glob: 'user:*' },
  { type: BusOpType.CLEAR, region: 'sessions' },
  { type: BusOpType.TAG, region: 'default', tag: 'user:1' },
]

/** Values in the same plain shape decodeMessage produces (Buffers compared by bytes). */
function plain(list: BusOp[]): unknown {
  return JSON.parse(JSON.stringify(list))
}

function reasonOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.instance(err, BusMessageError)
    return (err as BusMessageError).reason
  }
  return 'accepted'
}

test('a message round-trips every op type, signed and unsigned', () => {
  for (const key of [undefined, secret]) {
    const wire = stampAndSign(encodeMessage(origin, 42, ops), 1_700_000_000_123.5, key)
    const m = decodeMessage(wire, key)
    assert.equal(m.origin, origin)
    assert.is(m.seq, 42)
    assert.is(m.sentAt, 1_700_000_000_123.5)
    assert.is(m.signed, key !== undefined)
    assert.equal(plain(m.ops), plain(ops))
  }
})

test('the header layout is the documented one', () => {
  const wire = stampAndSign(encodeMessage(origin, 3, [{ type: BusOpType.CLEAR, region: 'r' }]), 5, undefined)
  assert.equal([...wire.subarray(0, 4)], [0x53, 0x42, 1, 0])
  assert.equal(wire.subarray(4, 20), origin)
  assert.is(wire.readBigUInt64LE(20), 3n)
  assert.is(wire.readDoubleLE(28), 5)
  assert.is(wire.readUInt32LE(36), 1)
  // CLEAR of region "r": type, name length, name.
  assert.equal([...wire.subarray(HEADER_BYTES)], [4, 1, 0, 0x72])
})

test('packOps keeps order and splits so that every message fits maxMessageBytes', () => {
  const keys = Array.from({ length: 5000 }, (_, i) => `key:${i}`)
  const list: BusOp[] = [
    { type: BusOpType.DELETE, region: 'default', keys },
    { type: BusOpType.PATTERN, region: 'default', glob: 'x*' },
    { type: BusOpType.DELETE, region: 'other', keys: ['z'] },
  ]
  const max = 8192
  const bodies = packOps(list, max)
  assert.ok(bodies.length > 1)
  const seen: string[] = []
  for (const body of bodies) {
    const encoded = encodeMessage(origin, 1, body.ops, body.bytes)
    // The size packOps measured is the exact size of the encoding (header and signature room included).
    assert.is(encoded.length, encodeMessage(origin, 1, body.ops).length)
    const wire = stampAndSign(encoded, 1, secret)
    assert.ok(wire.length <= max, `message of ${wire.length} bytes`)
    for (const op of decodeMessage(wire, secret).ops) {
      if (op.type === BusOpType.DELETE) for (const k of op.keys) seen.push(`${op.region}/${k}`)
      else seen.push(`${op.region}/${op.type}`)
    }
  }
  assert.equal(seen, [...keys.map((k) => `default/${k}`), `default/${BusOpType.PATTERN}`, 'other/z'])
})

test('an update too large for any message travels as a delete of its key', () => {
  const big = Buffer.alloc(20_000, 1)
  const bodies = packOps(
    [
      {
        type: BusOpType.UPDATE,
        region: 'default',
        entries: [
          { key: 'small', tag: 0, bytes: Buffer.from('v'), ttl: undefined, metadata: undefined },
          { key: 'big', tag: 1, bytes: big, ttl: undefined, metadata: undefined },
        ],
      },
    ],
    8192,
  )
  const decoded = bodies.flatMap((b) => decodeMessage(stampAndSign(encodeMessage(origin, 1, b.ops, b.bytes), 1, undefined), undefined).ops)
  assert.equal(plain(decoded), [
    { type: BusOpType.UPDATE, region: 'default', entries: [{ key: 'small', tag: 0, bytes: { type: 'Buffer', data: [118] } }] },
    { type: BusOpType.DELETE, region: 'default', keys: ['big'] },
  ])
})

test('with a secret: unsigned, tampered and wrongly signed messages are refused, each for its reason', () => {
  const body = encodeMessage(origin, 1, ops)
  assert.is(reasonOf(() => decodeMessage(stampAndSign(Buffer.from(body), 1, undefined), secret)), 'unsigned')
  assert.is(reasonOf(() => decodeMessage(stampAndSign(Buffer.from(body), 1, Buffer.from('other')), secret)), 'badSignature')
  const wire = stampAndSign(Buffer.from(body), 1, secret)
  // Byte 3 is the flags: clearing "signed" makes it an unsigned message; any other byte breaks the signature.
  for (const [at, want] of [[3, 'unsigned'], [25, 'badSignature'], [HEADER_BYTES + 3, 'badSignature'], [wire.length - SIGNATURE_BYTES - 1, 'badSignature'], [wire.length - 1, 'badSignature']] as const) {
    const t = Buffer.from(wire)
    t[at] = at === 3 ? 0 : t[at]! ^ 0x10
    assert.is(reasonOf(() => decodeMessage(t, secret)), want, `changing byte ${at}`)
  }
  assert.is(reasonOf(() => decodeMessage(wire, secret)), 'accepted')
})

test('garbage, truncations and a future version are refused as malformed or version', () => {
  const wire = stampAndSign(encodeMessage(origin, 9, ops), 1, undefined)
  assert.is(reasonOf(() => decodeMessage(Buffer.from('hello world, not a message at all'), undefined)), 'malformed')
  assert.is(reasonOf(() => decodeMessage(Buffer.alloc(0), undefined)), 'malformed')
  for (let n = 0; n < wire.length; n++) assert.is(reasonOf(() => decodeMessage(wire.subarray(0, n), undefined)), 'malformed', `first ${n} bytes`)
  const v2 = Buffer.from(wire)
  v2[2] = 2
  assert.is(reasonOf(() => decodeMessage(v2, undefined)), 'version')
  const zeroSeq = Buffer.from(wire)
  zeroSeq.writeBigUInt64LE(0n, 20)
  assert.is(reasonOf(() => decodeMessage(zeroSeq, undefined)), 'malformed')
  const hugeCount = Buffer.from(wire)
  hugeCount.writeUInt32LE(0xffffffff, HEADER_BYTES + 1 + 2 + 'default'.length)
  assert.is(reasonOf(() => decodeMessage(hugeCount, undefined)), 'malformed')
})

test('property: random bytes after a valid header never throw anything but BusMessageError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (tail, signed) => {
      const head = stampAndSign(encodeMessage(newOrigin(), 1, []), 1, undefined).subarray(0, HEADER_BYTES)
      const buf = Buffer.concat([head, tail])
      buf[3] = signed ? 1 : 0
      buf.writeUInt32LE(tail.length % 4, 36)
      const r = reasonOf(() => decodeMessage(buf, undefined))
      return ['accepted', 'malformed'].includes(r)
    }),
    { numRuns: 2000 },
  )
})

test.run()
