/**
 * Snapshot export: a page of a shard's live entries at a time (EXPORT), so
 * the shard answers other ops between pages while a snapshot is written
 * (src/api/cache.ts snapshot, src/ops/snapshot.ts for the file).
 */
import { Op } from '../../wire/protocol.js'
import type { FrameReader } from '../../wire/protocol.js'
import { readEntry } from '../../wire/records.js'
import type { ExportedEntry } from '../../wire/records.js'
import type { FrameSender, Sink } from './sender.js'

/** A page of EXPORT: the cursor to go on from (-1: the shard is done) and its entries. */
export interface ExportPage {
  next: number
  entries: ExportedEntry[]
}

/** Asks shard `shard` for up to `count` entries of `region` from `cursor`: an EXPORT page. */
export function sendExport(router: FrameSender, shard: number, region: number, cursor: number, count: number, sink: Sink, index: number): void {
  const w = router.writer(shard)
  w.u8(Op.EXPORT)
  w.u8(region)
  w.f64(cursor)
  w.u32(count)
  router.commit(shard, sink, index)
}

/** An EXPORT reply. */
export function readExportPage(r: FrameReader): ExportPage {
  const next = r.f64()
  const n = r.u32()
  const entries = new Array<ExportedEntry>(n)
  for (let i = 0; i < n; i++) entries[i] = readEntry(r)
  return { next, entries }
}
