/**
 * When a freed chunk of a region's value arena may be handed out again:
 * only once no thread can still be reading it (the consistency notes of
 * src/wire/shared_region.ts, point 2). A grace period in the manner of RCU and
 * epoch-based reclamation, with one word per reader thread instead of a
 * global epoch: each reader makes its access log's READING word odd for the
 * length of a direct read and even after ({@link AccessLogWriter.enterRead}).
 *
 * The shard unlinks a chunk first (its slot's SEQ odd or its LIVE flag
 * cleared, both atomic stores), then looks at every reader's word. A reader
 * whose word is even then is outside any read: its next read begins after
 * that load in the SeqCst order, so after the unlink, and can no longer reach
 * the chunk. A reader whose word is odd may hold the chunk's ref: the chunk
 * waits until that word has changed, which the reader stores only after its
 * last load of the chunk, so those loads happen-before the shard reuses it.
 *
 * A reader is inside a read for a few hundred ns and never across a yield, so
 * a grace period ends within microseconds and the chunks waiting for one are
 * few. A reader whose thread has gone is {@link AccessLogReader.detached}
 * and waited for no longer.
 */
import type { AccessLogReader } from '../src/wire/shared_region.js'

/** The readers seen inside a read at one moment, and the words they showed. */
export interface GraceSnapshot {
  readers: AccessLogReader[]
  words: number[]
}

export class ReaderGrace {
  /** `readers` is the shard's live list of access logs (the owner's and each attached thread's). */
  constructor(readonly readers: AccessLogReader[]) {}

  /** The readers inside a read now, or undefined when there are none (a chunk freed before this call may be reused at once). */
  snapshot(): GraceSnapshot | undefined {
    let out: GraceSnapshot | undefined
    for (const r of this.readers) {
      const w = r.reading()
      if ((w & 1) === 0) continue
      out ??= { readers: [], words: [] }
      out.readers.push(r)
      out.words.push(w)
    }
    return out
  }

  /** Whether every reader of `s` has finished the read it was in. */
  passed(s: GraceSnapshot): boolean {
    for (let i = 0; i < s.readers.length; i++) {
      const r = s.readers[i]!
      if (!r.detached && r.reading() === s.words[i]) return false
    }
    return true
  }
}
