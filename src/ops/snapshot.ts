/**
 * Snapshots: every shard's live entries in one file, written while the cache
 * serves, and loaded back into a cache. Defined once here: the entry record
 * (also what a shard sends for an EXPORT page) and the file around it.
 *
 * ```
 * file    "SCSNAP01" (8 bytes: magic and version 1)
 *         created at: f64 epoch ms · region count u16 · per region: u16 length + UTF-8 name
 *         records: 0x01 · region index u16 · payload length u32 · payload · CRC-32 of the payload u32
 *         trailer: 0xFF · record count f64 · "SCEND"
 * entry   key (u16 length + UTF-8) · value tag u8 · flags u8 (bit 0 LZ4 frame, bit 1 fresh time,
 *         bit 2 metadata, bit 3 tags) · raw size u32 · value (u32 length + bytes) ·
 *         expiry f64 (epoch ms, Infinity) · [fresh time f64] · [metadata: u32 length + JSON] ·
 *         [tags: u16 count, each u16 length + UTF-8]   (integers little-endian)
 * ```
 *
 * Values are in their stored form when that is plain LZ4 (portable across
 * caches), raw otherwise (a dictionary belongs to its shard). A file without
 * its trailer (truncated) or with a record whose CRC does not match is
 * refused as a whole: loading checks every record before it applies one.
 */
import { closeSync, createWriteStream, fsyncSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { hostname } from 'node:os'
import type { Writable } from 'node:stream'
import { crc32 } from 'node:zlib'
import { FrameReader, FrameWriter } from '../wire/protocol.js'
import type { ExportedEntry } from '../wire/records.js'
import { CacheError, ErrorCodes } from '../errors.js'
import { readEntry, writeEntry } from '../wire/records.js'

const MAGIC = Buffer.from('SCSNAP01', 'latin1')
const END = Buffer.from('SCEND', 'latin1')
const RECORD = 0x01
const TRAILER = 0xff

/** A snapshot file that is truncated, corrupt or not a snapshot; nothing was loaded. Code `E_SNAPSHOT_CORRUPT`. */
export class SnapshotCorruptError extends CacheError {
  constructor(message: string) {
    super(ErrorCodes.SNAPSHOT_CORRUPT, message)
  }
}

/** Progress of a snapshot or a restore. */
export interface SnapshotProgress {
  entries: number
  bytes: number
}

export class SnapshotWriter {
  readonly #out: Writable
  readonly #done: Promise<void>
  #count = 0
  #bytes = 0

  constructor(out: Writable) {
    this.#out = out
    this.#done = new Promise((_, reject) => out.once('error', reject))
    this.#done.catch(() => {})
  }

  async header(createdAt: number, regions: string[]): Promise<void> {
    const head = Buffer.alloc(8 + 8 + 2)
    MAGIC.copy(head, 0)
    head.writeDoubleLE(createdAt, 8)
    head.writeUInt16LE(regions.length, 16)
    const names = regions.map((n) => {
      const b = Buffer.from(n, 'utf8')
      const l = Buffer.alloc(2)
      l.writeUInt16LE(b.length)
      return Buffer.concat([l, b])
    })
    await this.#write(Buffer.concat([head, ...names]))
  }

  async records(region: number, entries: ExportedEntry[]): Promise<void> {
    const chunks: Buffer[] = []
    for (const e of entries) {
      const w = new FrameWriter(64 + e.bytes.length)
      writeEntry(w, e)
      const payload = Buffer.from(w.take())
      const head = Buffer.alloc(7)
      head[0] = RECORD
      head.writeUInt16LE(region, 1)
      head.writeUInt32LE(payload.length, 3)
      const crc = Buffer.alloc(4)
      crc.writeUInt32LE(crc32(payload))
      chunks.push(head, payload, crc)
      this.#count++
    }
    if (chunks.length > 0) await this.#write(Buffer.concat(chunks))
  }

  async trailer(): Promise<void> {
    const t = Buffer.alloc(1 + 8)
    t[0] = TRAILER
    t.writeDoubleLE(this.#count, 1)
    await this.#write(Buffer.concat([t, END]))
  }

  get progress(): SnapshotProgress {
    return { entries: this.#count, bytes: this.#bytes }
  }

  /** Writes with backpressure: waits for 'drain' when the stream asks to. */
  async #write(b: Buffer): Promise<void> {
    this.#bytes += b.length
    if (this.#out.write(b)) return
    await Promise.race([new Promise<void>((resolve) => this.#out.once('drain', resolve)), this.#done])
  }
}

/** Snapshots to files started by this process so far: each gets its own temp file. */
let tempFiles = 0

/**
 * This host, as temp file names carry it: on a file system that several
 * hosts share, a process id says nothing about another host's processes.
 */
const HOST = hostname().replace(/[^A-Za-z0-9.]/g, '_')
/** After `<name>.tmp-`: host, pid, number. */
const TEMP_SUFFIX = /^(.+)-(\d+)-\d+$/

/**
 * A file snapshot. Written to `<path>.tmp-<host>-<pid>-<n>`, a name no other
 * snapshot uses (two snapshots to one path at once, from this process or
 * another, used to share `<path>.tmp` and interleave in it), then flushed to
 * disk (fsync), renamed over `path`, and the directory flushed, so that
 * `path` names the complete earlier file or the complete new one, whenever
 * the process is killed and even after a power loss. A process killed while
 * writing leaves its temp file; the next snapshot to the same path removes
 * those whose process is gone.
 */
export function fileSink(path: string): { out: Writable; commit(): Promise<void>; abort(): void } {
  const name = basename(path)
  removeDeadTemps(dirname(path), (n) => n === name)
  const tmp = `${path}.tmp-${HOST}-${process.pid}-${++tempFiles}`
  // 'wx': never truncate a file someone else is writing.
  const fd = openSync(tmp, 'wx')
  const out = createWriteStream(tmp, { fd, autoClose: false })
  let closed = false
  const close = (): void => {
    if (closed) return
    closed = true
    closeSync(fd)
  }
  return {
    out,
    commit: () =>
      new Promise<void>((resolve, reject) => {
        out.once('error', reject)
        out.end(() => {
          try {
            fsyncSync(fd)
            close()
            renameSync(tmp, path)
            syncDirectory(dirname(path))
            resolve()
          } catch (err) {
            try {
              close()
            } catch {
              // already failing
            }
            rmSync(tmp, { force: true })
            reject(err)
          }
        })
      }),
    abort: () => {
      out.destroy()
      try {
        close()
      } catch {
        // the stream's error already closed nothing we can use
      }
      rmSync(tmp, { force: true })
    },
  }
}

/** Makes a rename in `dir` durable. Some platforms (Windows) cannot open a directory: the rename is then as durable as they make it. */
function syncDirectory(dir: string): void {
  let fd: number
  try {
    fd = openSync(dir, 'r')
  } catch {
    return
  }
  try {
    fsyncSync(fd)
  } catch {
    // EINVAL/EPERM on file systems that do not sync directories
  } finally {
    closeSync(fd)
  }
}

/**
 * Removes the temp files, in `dir`, of snapshots whose name `isSnapshot`
 * accepts and whose writing process, on this host, no longer runs (it was
 * killed mid-write).
 */
export function removeDeadTemps(dir: string, isSnapshot: (name: string) => boolean): void {
  let files: string[]
  try {
    files = readdirSync(dir)
  } catch {
    return // the open that follows reports a missing directory
  }
  for (const f of files) {
    // The host part has no '-' (see HOST), so the last ".tmp-" is the one fileSink added.
    const at = f.lastIndexOf('.tmp-')
    if (at < 0 || !isSnapshot(f.slice(0, at))) continue
    const m = TEMP_SUFFIX.exec(f.slice(at + '.tmp-'.length))
    if (m === null || m[1] !== HOST) continue
    const pid = Number(m[2])
    if (pid === process.pid || isRunning(pid)) continue
    rmSync(join(dir, f), { force: true })
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A snapshot file's content: when it was taken, its regions' names, and the entries by region index. */
export interface Snapshot {
  createdAt: number
  regions: string[]
  entries: { region: number; entry: ExportedEntry }[]
}

/** Reads and checks a whole snapshot file; throws {@link SnapshotCorruptError} before anything is returned. */
export function readSnapshot(path: string): Snapshot {
  let buf: Buffer
  try {
    buf = readFileSync(path)
  } catch (err) {
    throw new SnapshotCorruptError(`snapshot ${JSON.stringify(path)} cannot be read: ${(err as Error).message}`)
  }
  const bad = (why: string): never => {
    throw new SnapshotCorruptError(`snapshot ${JSON.stringify(path)} is ${why}; nothing was loaded`)
  }
  if (buf.length < 18 || !buf.subarray(0, 8).equals(MAGIC)) bad('not a shardcache snapshot (version 1)')
  const createdAt = buf.readDoubleLE(8)
  const regionCount = buf.readUInt16LE(16)
  let at = 18
  const regions: string[] = []
  for (let i = 0; i < regionCount; i++) {
    if (at + 2 > buf.length) bad('truncated in its header')
    const n = buf.readUInt16LE(at)
    if (at + 2 + n > buf.length) bad('truncated in its header')
    regions.push(buf.toString('utf8', at + 2, at + 2 + n))
    at += 2 + n
  }
  const entries: { region: number; entry: ExportedEntry }[] = []
  for (;;) {
    if (at >= buf.length) bad('truncated (no trailer)')
    const type = buf[at]!
    if (type === TRAILER) {
      if (at + 1 + 8 + END.length !== buf.length || !buf.subarray(at + 9).equals(END)) bad('corrupt in its trailer')
      if (buf.readDoubleLE(at + 1) !== entries.length) bad(`missing records (the trailer counts ${buf.readDoubleLE(at + 1)}, the file holds ${entries.length})`)
      break
    }
    if (type !== RECORD || at + 7 > buf.length) bad(`corrupt at byte ${at}`)
    const region = buf.readUInt16LE(at + 1)
    const len = buf.readUInt32LE(at + 3)
    if (region >= regionCount || at + 7 + len + 4 > buf.length) bad(`corrupt or truncated at byte ${at}`)
    const payload = buf.subarray(at + 7, at + 7 + len)
    if (crc32(payload) !== buf.readUInt32LE(at + 7 + len)) bad(`corrupt at byte ${at} (checksum)`)
    let entry: ExportedEntry
    try {
      const r = new FrameReader(payload)
      entry = readEntry(r)
      if (r.pos !== payload.length) throw new RangeError('trailing bytes')
    } catch {
      return bad(`corrupt at byte ${at} (record)`)
    }
    entries.push({ region, entry })
    at += 7 + len + 4
  }
  return { createdAt, regions, entries }
}
