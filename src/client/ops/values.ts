/**
 * The ops on one key's value (get, peek, has, ttl, set, delete, incr, cas,
 * take, touch): how each request is written into its shard's frame, and how
 * the value replies they get are read, side by side so that the two ends of
 * a format are read together (the shard's end is workers/shard.ts handleOp).
 *
 * The set and get encoders are on the hot paths: they stay plain
 * module-level functions with no closure or allocation of their own, which
 * V8 inlines into the facade's calls.
 */
import { CasFlag, ENTRY_OVERHEAD_BYTES, Op, SetFlag, TAG_LINK_OVERHEAD_BYTES } from '../../wire/protocol.js'
import type { FrameReader } from '../../wire/protocol.js'
import type { ResolvedSet } from '../../options/operations.js'
import { decodeValue } from '../../wire/values.js'
import type { Codec, EncodedValue } from '../../wire/values.js'
import type { FrameSender, Sink } from './sender.js'

/** A GET_STALE answer for an entry past its fresh time, within its grace period. */
export class StaleValue {
  constructor(readonly value: unknown) {}
}

/**
 * An upper bound of the bytes a write op of `opBytes` frame bytes may add to
 * its region's charge: the op carries the key, value, metadata and tags
 * (twice over, for the per-number costs the frame does not show), the entry
 * costs its fixed overhead, and each of its `tags` a link the frame does not
 * show either (TAG_LINK_OVERHEAD_BYTES, far more than the tag's frame bytes).
 * Only decides whether direct reads may run ahead of the write (src/client/router.ts
 * commitWrite): too low a bound lets a read issued after a set that evicts
 * return an entry the set evicted.
 */
const growthBound = (opBytes: number, tags = 0): number => 2 * opBytes + ENTRY_OVERHEAD_BYTES + 32 + tags * TAG_LINK_OVERHEAD_BYTES

// ── reads of one key ────────────────────────────────────────────────────────

/** Sends a read of `key` (opcode, region, key) to its shard. */
function keyOp(router: FrameSender, op: number, region: number, key: string, shard: number, sink: Sink, index: number): void {
  const w = router.writer(shard)
  w.u8(op)
  w.u8(region)
  w.key(key)
  router.commit(shard, sink, index)
}

/** A get (GET, or GET_NEAR with a near cache): answered MISS, VALUE or VALUE_AT. */
export function sendGet(router: FrameSender, region: number, key: string, shard: number, sink: Sink, index: number): void {
  keyOp(router, router.getOp, region, key, shard, sink, index)
}

/** A get that may serve an entry within its grace period: answered MISS, VALUE or STALE ({@link StaleValue}). */
export function sendGetStale(router: FrameSender, region: number, key: string, shard: number, sink: Sink, index: number): void {
  keyOp(router, Op.GET_STALE, region, key, shard, sink, index)
}

/** A read that is not counted as one (no hit, no miss, no LRU touch): MISS or VALUE. */
export function sendPeek(router: FrameSender, region: number, key: string, shard: number, sink: Sink, index: number): void {
  keyOp(router, Op.PEEK, region, key, shard, sink, index)
}

/** Whether the key has a live entry: TRUE or FALSE. */
export function sendHas(router: FrameSender, region: number, key: string, shard: number, sink: Sink, index: number): void {
  keyOp(router, Op.HAS, region, key, shard, sink, index)
}

/** The key's remaining TTL: NUMBER, or MISS. */
export function sendTtl(router: FrameSender, region: number, key: string, shard: number, sink: Sink, index: number): void {
  keyOp(router, Op.TTL, region, key, shard, sink, index)
}

/** The key's entry with its timestamps and sizes: ENTRY (see ./entry.ts), or MISS. */
export function sendGetEntry(router: FrameSender, region: number, key: string, shard: number, sink: Sink, index: number): void {
  keyOp(router, Op.GET_ENTRY, region, key, shard, sink, index)
}

// ── writes of one key ───────────────────────────────────────────────────────

/** A set of `key` to its shard (TRUE, or FALSE when nx/xx refused it); the router holds back direct reads it may change. */
export function sendSet(router: FrameSender, region: number, key: string, enc: EncodedValue, opts: ResolvedSet, sink: Sink, index: number): void {
  const hash = router.keyHash(key)
  const shard = router.shardOfHash(hash)
  const w = router.writer(shard)
  const start = w.pos
  let flags = 0
  if (opts.nx) flags |= SetFlag.NX
  if (opts.xx) flags |= SetFlag.XX
  if (opts.ttl !== undefined) flags |= SetFlag.TTL
  if (opts.metadata !== undefined) flags |= SetFlag.META
  if (opts.tags !== undefined) flags |= SetFlag.TAGS
  if (opts.grace !== undefined) flags |= SetFlag.GRACE
  w.u8(Op.SET)
  w.u8(region)
  w.u8(flags)
  w.key(key)
  if (opts.ttl !== undefined) w.f64(opts.ttl)
  w.u8(enc.tag)
  w.bytes(enc.bytes)
  if (opts.metadata !== undefined) w.bytes(opts.metadata)
  if (opts.tags !== undefined) w.strings(opts.tags)
  if (opts.grace !== undefined) w.f64(opts.grace)
  // A set without expiry leaves its key present and without expiry, which a later overwrite relies on (Router.commitWrite).
  const keeps = opts.ttl === undefined && opts.grace === undefined && router.keepsForever(region)
  router.commitWrite(shard, sink, index, region, key, hash, growthBound(w.pos - start, opts.tags === undefined ? 0 : opts.tags.length), keeps)
}

/** A delete of `key`: TRUE when a live entry was removed. */
export function sendDelete(router: FrameSender, region: number, key: string, sink: Sink, index: number): void {
  const hash = router.keyHash(key)
  const shard = router.shardOfHash(hash)
  const w = router.writer(shard)
  w.u8(Op.DELETE)
  w.u8(region)
  w.key(key)
  router.commitWrite(shard, sink, index, region, key, hash)
}

/** A new TTL for `key`'s live entry: TRUE, or FALSE when there is none. */
export function sendTouch(router: FrameSender, region: number, key: string, ms: number, sink: Sink, index: number): void {
  const hash = router.keyHash(key)
  const shard = router.shardOfHash(hash)
  const w = router.writer(shard)
  w.u8(Op.TOUCH)
  w.u8(region)
  w.key(key)
  w.f64(ms)
  router.commitWrite(shard, sink, index, region, key, hash)
}

/** Adds `by` to the number under `key`: NUMBER (the sum), or an E_NOT_A_NUMBER error. */
export function sendIncr(router: FrameSender, region: number, key: string, by: number, sink: Sink, index: number): void {
  const hash = router.keyHash(key)
  const shard = router.shardOfHash(hash)
  const w = router.writer(shard)
  const start = w.pos
  w.u8(Op.INCR)
  w.u8(region)
  w.key(key)
  w.f64(by)
  router.commitWrite(shard, sink, index, region, key, hash, growthBound(w.pos - start))
}

/** Stores `next` if the value is `want` (undefined: if absent): TRUE or FALSE. */
export function sendCas(router: FrameSender, region: number, key: string, want: EncodedValue | undefined, enc: EncodedValue, opts: ResolvedSet, sink: Sink, index: number): void {
  const hash = router.keyHash(key)
  const shard = router.shardOfHash(hash)
  const w = router.writer(shard)
  const start = w.pos
  let flags = want === undefined ? CasFlag.EXPECT_ABSENT : 0
  if (opts.ttl !== undefined) flags |= CasFlag.TTL
  if (opts.metadata !== undefined) flags |= CasFlag.META
  if (opts.tags !== undefined) flags |= CasFlag.TAGS
  w.u8(Op.CAS)
  w.u8(region)
  w.u8(flags)
  w.key(key)
  if (want !== undefined) {
    w.u8(want.tag)
    w.bytes(want.bytes)
  }
  w.u8(enc.tag)
  w.bytes(enc.bytes)
  if (opts.ttl !== undefined) w.f64(opts.ttl)
  if (opts.metadata !== undefined) w.bytes(opts.metadata)
  if (opts.tags !== undefined) w.strings(opts.tags)
  // The tags' links count as for a set: a bound without them let reads that follow run ahead of the eviction.
  router.commitWrite(shard, sink, index, region, key, hash, growthBound(w.pos - start, opts.tags === undefined ? 0 : opts.tags.length))
}

/** The value of `key` and its removal in one step: VALUE, or MISS. */
export function sendTake(router: FrameSender, region: number, key: string, sink: Sink, index: number): void {
  const hash = router.keyHash(key)
  const shard = router.shardOfHash(hash)
  const w = router.writer(shard)
  const start = w.pos
  w.u8(Op.TAKE)
  w.u8(region)
  w.key(key)
  router.commitWrite(shard, sink, index, region, key, hash, growthBound(w.pos - start))
}

// ── replies ────────────────────────────────────────────────────────────────

/** A VALUE reply's value (VALUE_AT starts the same way; the router reads the rest, for its near cache). */
export function readValueReply(r: FrameReader, codec: Codec | undefined): unknown {
  const tag = r.u8()
  return decodeValue(tag, r.bytesView(), codec)
}

/** A STALE reply: the value of an entry within its grace period. */
export function readStaleReply(r: FrameReader, codec: Codec | undefined): StaleValue {
  const tag = r.u8()
  return new StaleValue(decodeValue(tag, r.bytesView(), codec))
}
