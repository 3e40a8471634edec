/**
 * Keys and values on the calling thread: validation, and the mapping between a
 * user's value and the tagged bytes a shard stores.
 *
 * Strings, Buffers and Uint8Arrays are stored as their bytes with a tag saying
 * which type to rebuild, so they come back as the same type. Everything else
 * goes through the codec (JSON by default).
 */
import { InvalidKeyError, InvalidValueError } from './errors.js'
import { ValueTag } from './protocol.js'
import type { Codec } from './options.js'

/** A value after encoding: its tag and bytes. */
export interface EncodedValue {
  tag: number
  bytes: Uint8Array
}

function describeKey(key: unknown): string {
  if (typeof key === 'string') return `a string of ${Buffer.byteLength(key)} bytes`
  if (key === null) return 'null'
  return typeof key
}

/**
 * Throws {@link InvalidKeyError} unless `key` is a valid key. Keys like
 * `__proto__` are ordinary: shards index keys with a `Map`, never an object.
 */
export function checkKey(key: unknown, maxKeyBytes: number): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidKeyError(`key must be a non-empty string (got ${describeKey(key)})`)
  }
  // Each UTF-16 unit is at most 3 UTF-8 bytes: short keys need no count.
  if (key.length * 3 <= maxKeyBytes) return
  const n = Buffer.byteLength(key)
  if (n > maxKeyBytes) throw new InvalidKeyError(`key must be at most maxKeyBytes (${maxKeyBytes}) UTF-8 bytes (got ${n})`)
}

export function checkKeys(keys: unknown, maxKeyBytes: number, name = 'keys'): asserts keys is string[] {
  if (!Array.isArray(keys)) throw new InvalidKeyError(`${name} must be an array of keys (got ${describeKey(keys)})`)
  for (let i = 0; i < keys.length; i++) {
    try {
      checkKey(keys[i], maxKeyBytes)
    } catch (err) {
      throw new InvalidKeyError(`${name}[${i}]: ${(err as Error).message}`)
    }
  }
}

const jsonEncode = (v: unknown): string | undefined => JSON.stringify(v)

/** Encodes a value, or throws {@link InvalidValueError}. */
export function encodeValue(value: unknown, codec: Codec | undefined): EncodedValue {
  if (typeof value === 'string') return { tag: ValueTag.STRING, bytes: Buffer.from(value, 'utf8') }
  if (value instanceof Uint8Array) {
    return { tag: Buffer.isBuffer(value) ? ValueTag.BUFFER : ValueTag.UINT8ARRAY, bytes: value }
  }
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
    throw new InvalidValueError(`value must not be ${value === undefined ? 'undefined' : `a ${typeof value}`}: delete the key instead, or store null`)
  }
  let out: Uint8Array | string | undefined
  try {
    out = codec === undefined ? jsonEncode(value) : codec.encode(value)
  } catch (cause) {
    throw new InvalidValueError(`value cannot be encoded by the ${codec === undefined ? 'JSON' : 'configured'} codec: ${(cause as Error)?.message ?? String(cause)}`, { cause })
  }
  if (typeof out === 'string') return { tag: ValueTag.CODEC, bytes: Buffer.from(out, 'utf8') }
  if (out instanceof Uint8Array) return { tag: ValueTag.CODEC, bytes: out }
  throw new InvalidValueError(`value cannot be encoded: the ${codec === undefined ? 'JSON' : 'configured'} codec returned ${out === undefined ? 'undefined' : typeof out}`)
}

/** Rebuilds a STRING value, or a CODEC value of the JSON codec, from its text. */
export function decodeText(tag: number, text: string): unknown {
  if (tag === ValueTag.STRING) return text
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw new InvalidValueError('stored value cannot be decoded by the JSON codec', { cause })
  }
}

/** Rebuilds a value from a shard's answer. `bytes` is a view of a frame: anything kept is copied. */
export function decodeValue(tag: number, bytes: Buffer, codec: Codec | undefined): unknown {
  switch (tag) {
    case ValueTag.STRING:
      return bytes.toString('utf8')
    case ValueTag.BUFFER:
      return Buffer.from(bytes)
    case ValueTag.UINT8ARRAY:
      return new Uint8Array(bytes)
    case ValueTag.CODEC:
      try {
        return codec === undefined ? JSON.parse(bytes.toString('utf8')) : codec.decode(new Uint8Array(bytes))
      } catch (cause) {
        throw new InvalidValueError(`stored value cannot be decoded by the ${codec === undefined ? 'JSON' : 'configured'} codec`, { cause })
      }
    default:
      throw new InvalidValueError(`stored value has unknown type tag ${tag}`)
  }
}
