/**
 * Cache traces as `shardcache replay`, the bench's hit-ratio section and the
 * policy tests read them: every request's key renumbered densely from 0 (in
 * order of first appearance), its size in bytes when the format has one, and
 * the name of each key as a cache would be given it.
 *
 * Two formats:
 * - `keys`: one key per line; a key is the line's text, trimmed (so CRLF
 *   files read alike), blank lines skipped. The LIRS traces in traces/ are
 *   of this kind.
 * - `oracle`: libCacheSim's oracleGeneral binary, packed little-endian
 *   24-byte records {u32 timestamp, u64 id, u32 size_bytes, i64
 *   next_access_vtime}; a key's name is its id in decimal. Only the id and
 *   the size are read: the replay is an online cache, with no use for the
 *   timestamp or the oracle's next access.
 *
 * A file whose name ends in `.gz` is gunzipped. Without a format given,
 * {@link formatOf} guesses it from the name: `.bin` or `.bin.gz` is oracle,
 * anything else keys.
 *
 * One parser ({@link TraceParser}) takes the bytes in chunks of any length,
 * so the same code serves a stream ({@link readTrace}, for traces larger than
 * a string may be) and a buffer read at once ({@link readTraceSync}, for the
 * test fixtures).
 */
import { createReadStream, readFileSync } from 'node:fs'
import { pipeline } from 'node:stream'
import type { Readable } from 'node:stream'
import { createGunzip, gunzipSync } from 'node:zlib'

/** The trace formats, as `--format` names them. */
export const TRACE_FORMATS = ['keys', 'oracle'] as const
export type TraceFormat = (typeof TRACE_FORMATS)[number]

/** Bytes per oracleGeneral record. */
export const ORACLE_RECORD_BYTES = 24

/** A trace, read whole. */
export interface Trace {
  format: TraceFormat
  /** Each request's key, dense: 0 is the first key requested, then each new key the next number. */
  keys: Uint32Array
  /** Each request's object size in bytes (oracle format); undefined for keys traces, which have none. */
  sizes: Uint32Array | undefined
  /** Each dense key's name: the line (keys format) or the id in decimal (oracle), what a cache is given as the key. */
  names: string[]
}

/** The format a trace's name says: `.bin` or `.bin.gz` is oracleGeneral, anything else one key per line. */
export function formatOf(path: string): TraceFormat {
  return /\.bin(\.gz)?$/.test(path) ? 'oracle' : 'keys'
}

/** A Uint32Array that doubles as it fills: a trace's length is known only at its end. */
class U32Builder {
  a = new Uint32Array(1 << 16)
  n = 0
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Uint32Array(this.a.length * 2)
      b.set(this.a)
      this.a = b
    }
    this.a[this.n++] = v
  }
  done(): Uint32Array {
    return this.a.slice(0, this.n)
  }
}

/** A bigint id is kept as a number when exact (below 2^53): a Map of numbers is several times faster to probe. */
const EXACT_HIGH_WORD = 2 ** 21

/**
 * A trace parsed from chunks of its (gunzipped) bytes, in order: a line or a
 * record may straddle two chunks. {@link finish} returns the trace and
 * throws if the bytes end inside an oracle record.
 */
export class TraceParser {
  readonly format: TraceFormat
  readonly #keys = new U32Builder()
  readonly #sizes: U32Builder | undefined
  readonly #names: string[] = []
  /** Key (line text, or id) → dense number. */
  readonly #dense = new Map<string | number | bigint, number>()
  /** The bytes of an unfinished line or record from the previous chunk. */
  #rest: Buffer = Buffer.alloc(0)

  constructor(format: TraceFormat) {
    this.format = format
    this.#sizes = format === 'oracle' ? new U32Builder() : undefined
  }

  #request(key: string | number | bigint): void {
    let k = this.#dense.get(key)
    if (k === undefined) {
      k = this.#names.length
      this.#dense.set(key, k)
      this.#names.push(String(key))
    }
    this.#keys.push(k)
  }

  /** The next chunk of the trace's bytes. */
  push(chunk: Uint8Array): void {
    const b = this.#rest.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([this.#rest, chunk])
    let pos = 0
    if (this.format === 'keys') {
      for (let nl = b.indexOf(10, pos); nl !== -1; nl = b.indexOf(10, pos)) {
        this.#line(b, pos, nl)
        pos = nl + 1
      }
    } else {
      for (; pos + ORACLE_RECORD_BYTES <= b.length; pos += ORACLE_RECORD_BYTES) {
        const hi = b.readUInt32LE(pos + 8)
        this.#request(hi < EXACT_HIGH_WORD ? hi * 2 ** 32 + b.readUInt32LE(pos + 4) : b.readBigUInt64LE(pos + 4))
        this.#sizes!.push(b.readUInt32LE(pos + 12))
      }
    }
    // A copy: the chunk's memory may be the stream's to reuse.
    this.#rest = Buffer.from(b.subarray(pos))
  }

  #line(b: Buffer, start: number, end: number): void {
    const key = b.toString('utf8', start, end).trim()
    if (key !== '') this.#request(key)
  }

  /** The trace; throws when the bytes end partway through an oracle record. */
  finish(): Trace {
    if (this.format === 'keys') this.#line(this.#rest, 0, this.#rest.length)
    else if (this.#rest.length > 0) {
      throw new Error(`ends in a partial record: ${this.#rest.length} bytes after the last whole one (oracleGeneral records are ${ORACLE_RECORD_BYTES} bytes)`)
    }
    this.#rest = Buffer.alloc(0)
    return { format: this.format, keys: this.#keys.done(), sizes: this.#sizes?.done(), names: this.#names }
  }
}

/** The trace at `path`, streamed (gunzipped when the name ends in .gz). */
export async function readTrace(path: string, format: TraceFormat = formatOf(path)): Promise<Trace> {
  // pipeline, not pipe: a file that cannot be opened must fail the read, not be an unhandled 'error'.
  const input: Readable = path.endsWith('.gz') ? pipeline(createReadStream(path), createGunzip(), () => {}) : createReadStream(path)
  const parser = new TraceParser(format)
  for await (const chunk of input) parser.push(chunk as Buffer)
  return parser.finish()
}

/** {@link readTrace}, read at once: for traces that fit in memory twice over (the shipped ones). */
export function readTraceSync(path: string, format: TraceFormat = formatOf(path)): Trace {
  const raw = readFileSync(path)
  const parser = new TraceParser(format)
  parser.push(path.endsWith('.gz') ? gunzipSync(raw) : raw)
  return parser.finish()
}
