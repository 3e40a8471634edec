/**
 * The ops on a whole region rather than one key: a page of a scan (one
 * shard at a time), and those sent to every shard at once (keys, delete by
 * pattern, clear, cleanup, invalidate a tag), with the replies they get
 * (SCAN pages and KEYS lists; the others answer a NUMBER). The sink of an
 * all-shard op gets shard `s`'s result at index `s`.
 */
import { Op } from '../../wire/protocol.js'
import type { FrameReader } from '../../wire/protocol.js'
import type { FrameSender, Sink } from './sender.js'

/** A page of SCAN: the cursor to go on from (-1: the shard is done) and its keys. */
export interface ScanPage {
  next: number
  keys: string[]
}

/** Asks shard `shard` for up to `count` keys of `region` from `cursor`, matching `match` if given: a SCAN page. */
export function sendScan(router: FrameSender, shard: number, region: number, cursor: number, count: number, match: string | undefined, sink: Sink, index: number): void {
  const w = router.writer(shard)
  w.u8(Op.SCAN)
  w.u8(region)
  w.f64(cursor)
  w.u32(count)
  if (match === undefined) w.u8(0)
  else {
    w.u8(1)
    w.string(match)
  }
  router.commit(shard, sink, index)
}

/** Sends one op to every shard; `glob` null means "no pattern" for KEYS. */
function allShards(router: FrameSender, op: number, region: number, glob: string | null | undefined, sink: Sink): void {
  // Direct reads of the region wait for these (see Router.commitWrite).
  const changes = op === Op.CLEAR || op === Op.DELETE_PATTERN
  for (let s = 0; s < router.shardCount; s++) {
    const w = router.writer(s)
    w.u8(op)
    w.u8(region)
    if (glob === null) {
      w.u8(0)
    } else if (glob !== undefined) {
      w.u8(1)
      w.string(glob)
    }
    if (changes) router.commitWrite(s, sink, s, region, undefined, 0)
    else router.commit(s, sink, s)
  }
}

/** Every shard's live keys of `region` (matching `glob` if given): a KEYS list each. */
export function sendKeys(router: FrameSender, region: number, glob: string | undefined, sink: Sink): void {
  allShards(router, Op.KEYS, region, glob ?? null, sink)
}

/** Removes the keys of `region` matching `glob` in every shard: a NUMBER each. */
export function sendDeletePattern(router: FrameSender, region: number, glob: string, sink: Sink): void {
  allShards(router, Op.DELETE_PATTERN, region, glob, sink)
}

/** Empties `region` in every shard: a NUMBER (live entries removed) each. */
export function sendClear(router: FrameSender, region: number, sink: Sink): void {
  allShards(router, Op.CLEAR, region, undefined, sink)
}

/** Removes `region`'s expired entries in every shard: a NUMBER each. */
export function sendCleanup(router: FrameSender, region: number, sink: Sink): void {
  allShards(router, Op.CLEANUP, region, undefined, sink)
}

/** Removes `region`'s entries carrying `tag` in every shard: a NUMBER each. */
export function sendInvalidateTag(router: FrameSender, region: number, tag: string, sink: Sink): void {
  for (let s = 0; s < router.shardCount; s++) {
    const w = router.writer(s)
    w.u8(Op.INVALIDATE_TAG)
    w.u8(region)
    w.string(tag)
    // Direct reads of the region wait for it, as for a clear.
    router.commitWrite(s, sink, s, region, undefined, 0)
  }
}

/** A SCAN reply. */
export function readScanPage(r: FrameReader): ScanPage {
  const next = r.f64()
  const n = r.u32()
  const keys = new Array<string>(n)
  for (let i = 0; i < n; i++) keys[i] = r.string()
  return { next, keys }
}

/** A KEYS reply. */
export function readKeysReply(r: FrameReader): string[] {
  const n = r.u32()
  const keys = new Array<string>(n)
  for (let i = 0; i < n; i++) keys[i] = r.string()
  return keys
}
