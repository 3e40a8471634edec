/**
 * One shard as the router sees it: the link to its thread (the owner's
 * ShardThread or an attached thread's port, behind {@link ShardLink}), its
 * open frame, the frames in flight with the ops they answer, and the counts
 * of writes that hold direct reads back. Apart from the router
 * (src/client/router.ts) because the direct reads (src/client/direct_reads.ts)
 * read the same channels.
 */
import { FrameWriter } from '../wire/protocol.js'
import type { AccessLogWriter, SharedRegionReader } from '../wire/shared_region.js'
import type { Sink } from './ops/sender.js'

/**
 * How this thread reaches one shard thread: the owner's {@link ShardThread}
 * (src/client/shard_thread.ts) or an attached thread's port (src/client/attach.ts).
 */
export interface ShardLink {
  /** Readers of the current thread's shared memory, one per region. */
  readonly readers: SharedRegionReader[]
  /** This thread's log of direct reads for the shard. */
  readonly log: AccessLogWriter
  /** False while there is no shard thread to send to (an attached link waiting for its new port). */
  readonly ready: boolean
  /**
   * Sends the frame in `w[0, w.pos)` (`alone`: no other frame is in flight).
   * Returns whether the router should spin for the reply with {@link takeReply}.
   */
  send(w: FrameWriter, id: number, ops: number, alone: boolean): boolean
  /** Waits (spinning, until `deadline`) for the reply to the frame just sent; undefined: it will be posted. */
  takeReply(deadline: number): Uint8Array | undefined
  /** Keeps the process alive while frames are in flight. */
  ref(): void
  unref(): void
  /** After {@link LinkEvents.lost}: get a new shard thread (owner) or a port to it (attached). */
  restart(): void
  close(): Promise<void>
}

/** What links report to their router. */
export interface LinkEvents {
  reply(shard: number, frame: Uint8Array): void
  /** The shard thread died (or, for an attached link, its port closed): what is in flight is lost. */
  lost(shard: number, cause: Error): void
  /** A link that was not ready is again. */
  ready(shard: number): void
  /** The shard will not come back; every op to it fails with `error`. */
  dead(shard: number, error: Error): void
}

/**
 * Ops of a frame: who gets each result, and, for writes, what they hold back
 * (see {@link Router.commitWrite}): the region (-1: not a write) and the
 * key's slot in the pending-write counts (-1: the whole region).
 *
 * A frame's arrays are emptied once its ops are settled ({@link Router}'s
 * #retire). V8 pretenures this literal after a bulk load (frames of
 * thousands of ops in flight across scavenges teach it that they live long),
 * and an old-space object keeps everything it points to alive through every
 * scavenge until the next full GC, dead or not: the settled callbacks of every
 * later op were promoted with it (~440 KB per scavenge at 10k writes/s in the
 * event-loop scenario, ~120 KB once emptied).
 */
export interface FrameOps {
  /** performance.now() when the frame was sent (its round trip goes to the latency histogram). */
  sentAt: number
  sinks: Sink[]
  indexes: number[]
  writeRegions: number[]
  writeSlots: number[]
  /** Per op: the bytes it may add to its region ({@link Router.commitWrite}'s `grows`), 0 for none, negated for an overwrite (bytes, no entry). */
  writeGrowth: number[]
}

/**
 * Slots per region of the pending-write counts. A write counts in its key's
 * slot until the shard answers it, and a direct read of any key in a counted
 * slot asks the shard instead: a shared slot costs a round trip, never a
 * stale read (with 50 writes in flight, ~1% of keys; while a 2,000-entry
 * mset is in flight, ~40%). Counts instead of a Map from key to count: that
 * Map, with the key strings it held and its table rebuilt as keys came and
 * went, was ~20 KB of the ~120 KB each scavenge promoted in the event-loop
 * scenario, and it cost a string hash per write and per read. 16 KB per
 * region and thread.
 */
export const PENDING_SLOTS = 1 << 12
/** This thread's queue for one shard, whatever the link. */
export class ShardChannel {
  readonly writer = new FrameWriter()
  /** The open frame's ops. */
  ops: FrameOps = newFrameOps()
  readonly inflight = new Map<number, FrameOps>()
  /** Per region: clears or pattern deletes queued or in flight. */
  readonly barriers: Int32Array
  /** Per region: writes queued or in flight that may add an entry (and so evict others), and the bytes they and overwrites may add. */
  readonly growing: Int32Array
  readonly growingBytes: Float64Array
  restarts = 0
  crashesInARow = 0
  /** Set once the shard is down for good: every op to it fails. */
  dead: Error | undefined
  drained: (() => void)[] = []
  link!: ShardLink

  constructor(
    readonly index: number,
    regions: number,
  ) {
    this.writer.u32(0) // frame id, patched on flush
    this.writer.u32(0) // op count, patched on flush
    this.barriers = new Int32Array(regions)
    this.growing = new Int32Array(regions)
    this.growingBytes = new Float64Array(regions)
  }
}

/** An empty frame's ops. */
export function newFrameOps(): FrameOps {
  return { sentAt: 0, sinks: [], indexes: [], writeRegions: [], writeSlots: [], writeGrowth: [] }
}

