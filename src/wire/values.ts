/**
 * Keys and values on the calling thread: validation, and the mapping between a
 * user's value and the tagged bytes a shard stores.
 *
 * Strings, Buffers and Uint8Arrays are stored as their bytes with a tag saying
 * which type to rebuild, so they come back as the same type. Everything else
 * goes through the codec (JSON by default).
 */
import { InvalidKeyError, InvalidValueError } from '../errors.js'
import { ValueTag } from './protocol.js'
import { describe, plural } from '../messages.js'

/** Turns values that are not strings, Buffers or Uint8Arrays into bytes and back. */
export interface Codec {
  /** Encodes a value. Throw (or return `undefined`) to reject it: the set rejects with `E_INVALID_VALUE`. */
  encode(value: unknown): Uint8Array | string | undefined
  /** Decodes bytes produced by {@link Codec.encode}. The bytes are a copy the codec may keep. */
  decode(bytes: Uint8Array): unknown
}

/** A value after encoding: its tag and bytes. */
export interface EncodedValue {
  tag: number
  bytes: Uint8Array
}

/**
 * `String.prototype.isWellFormed` (Node 20+): false when a string holds a lone
 * surrogate (a UTF-16 half of a pair, without its other half). Keys, tags,
 * globs and string values are sent and stored as UTF-8, which cannot hold one:
 * the encoder writes U+FFFD instead, so '\uD800' and '\uDC00' would be the
 * same key ('\uFFFD'), and a string value would come back changed. They are
 * refused instead.
 *
 * Called as `isWellFormed.call(s)` on this module's constant, for the reason
 * given at `charCodeAt` in src/client/direct_reads.ts (ioredis's `class extends String`
 * makes `s.isWellFormed()` a slow generic call process-wide). Measured (Node 20,
 * ioredis loaded, 13-character ASCII keys, a loaded 2-core machine): checkKey
 * 6 ns without the check, 27 ns with `isWellFormed.call`, 53 ns with
 * `key.isWellFormed()`, 106-142 ns with a charCodeAt loop looking for
 * surrogates here. Folding that loop into the key-encoding loops instead
 * (src/client/direct_reads.ts #encodeKey, FrameWriter#key) would cost ASCII keys nothing, but
 * those run after validation, with the op half written: a refused key must be
 * refused before anything is sent (an `mset` checks every key first), so the
 * check belongs here, and the builtin is the cheapest way to make it.
 */
// Typed here: the project's lib is ES2022, and isWellFormed is ES2024.
const isWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed

/** Whether `s` holds no lone surrogate, so that UTF-8 keeps it exactly (see {@link isWellFormed}). */
export function wellFormed(s: string): boolean {
  return isWellFormed.call(s)
}

/** Index of the first lone surrogate of `s` (for messages). */
export function loneSurrogateAt(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++
        continue
      }
      return i
    }
    if (c >= 0xdc00 && c <= 0xdfff) return i
  }
  return -1
}

/**
 * Throws {@link InvalidKeyError} unless `key` is a valid key. Keys like
 * `__proto__` are ordinary: shards index keys with a `Map`, never an object.
 */
export function checkKey(key: unknown, maxKeyBytes: number): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidKeyError(`key must be a non-empty string (got ${describe(key)})`)
  }
  if (!isWellFormed.call(key)) {
    throw new InvalidKeyError(`key must be well-formed UTF-16: it has a lone surrogate at index ${loneSurrogateAt(key)}, which UTF-8 cannot hold (got ${describe(key)})`)
  }
  // Each UTF-16 unit is at most 3 UTF-8 bytes: short keys need no count.
  if (key.length * 3 <= maxKeyBytes) return
  const n = Buffer.byteLength(key)
  if (n > maxKeyBytes) throw new InvalidKeyError(`key is ${plural(n, 'UTF-8 byte')}, over options.maxKeyBytes (${maxKeyBytes})`)
}

export function checkKeys(keys: unknown, maxKeyBytes: number, name = 'keys'): asserts keys is string[] {
  if (!Array.isArray(keys)) throw new InvalidKeyError(`${name} must be an array of keys (got ${describe(keys)})`)
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
  if (typeof value === 'string') {
    // Stored as UTF-8: a lone surrogate would come back as U+FFFD, a changed value.
    if (!isWellFormed.call(value)) {
      throw new InvalidValueError(
        `value is a string with a lone surrogate at index ${loneSurrogateAt(value)}, which UTF-8 cannot hold: it would not come back the same; ` +
          'store it as a Buffer, or inside an object (the JSON codec escapes it)',
      )
    }
    return { tag: ValueTag.STRING, bytes: Buffer.from(value, 'utf8') }
  }
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
  throw new InvalidValueError(`value cannot be encoded: the ${codec === undefined ? 'JSON' : 'configured'} codec returned ${describe(out)}, not a string or a Uint8Array`)
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

/** A plain object (an object literal or Object.create(null)), not an array, a class instance or null: what option and config objects must be. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}
