/**
 * A shard: one long-lived worker thread that owns its slice of every region.
 *
 * It is the only writer of its entries, so nothing here takes a lock. The data
 * plane is the frame protocol of `src/wire/protocol.ts` on the parent port: every
 * request frame is answered by one response frame, ops in order. The control
 * plane (stats) is a comlink endpoint on a separate port, because it is called
 * rarely and its ergonomics matter more than its ~70 µs per call.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { expose } from 'comlink'
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs'
import { CasFlag, DRAIN_ACCESS_LOG, ShardEvent, FrameReader, FrameWriter, Op, REPLY_TAKEN, SetFlag, Signal, SMALL_FRAME_OPS, Status } from '../src/wire/protocol.js'
import type { ArenaMessage, FrameMessage, ShardEventsMessage, ShardMessage } from '../src/wire/protocol.js'
import { writeEntry } from '../src/wire/records.js'
import { Glob } from '../src/wire/glob.js'
import { AccessLogReader, monotonicNow } from '../src/wire/shared_region.js'
import { ReaderGrace } from './reader_grace.js'
import { RegionStore } from './region_store.js'
import type { SlotVersions } from './store_types.js'
import type { ShardControl, ShardInit } from '../src/wire/region_types.js'

/** How many slots each region's expiry sweep checks per tick, and how often it runs. */
const SWEEP_SLOTS = 10_000
const SWEEP_INTERVAL_MS = 100

const init = workerData as ShardInit
const port = parentPort
if (port === null) throw new Error('workers/shard.js must run as a worker thread')

const logs = [new AccessLogReader(init.log)]
/** Every reader's access log tells when it is inside a direct read: freed chunks wait for those (workers/reader_grace.ts). */
const readers = new ReaderGrace(logs)
const stores = init.regions.map((cfg, i) => new RegionStore(cfg, monotonicNow, init.memory[i], undefined, readers))
/** Per region: hits counted in the logs of attached threads that have gone. */
const retiredHits = new Float64Array(stores.length)
let attachedThreads = 0
/** Attached threads' ports, for what every reader must hear (a compaction's new arena). */
const clients = new Set<MessagePort>()

/** Applies the reads other threads made from shared memory (LRU order); runs before every frame, so writes see them. */
function drainLogs(): void {
  for (const log of logs) log.drain(touch)
}

function touch(region: number, slot: number, seq: number): void {
  stores[region]?.touch(slot, seq)
}
const requests = Buffer.from(init.requests)
const replies = Buffer.from(init.replies)
const local = Buffer.allocUnsafe(64 * 1024)
const out = new FrameWriter(local)

const signals = new Int32Array(init.signals)
const spinners = new Int32Array(init.spinners)
let framesSeen = 0

port.on('message', (msg: ShardMessage) => {
  if (msg === DRAIN_ACCESS_LOG) {
    drainLogs()
    return
  }
  if (typeof msg === 'object' && !(msg instanceof Uint8Array)) {
    if ('eventMask' in msg) setEventMask(msg.eventMask)
    else attach(msg.attach, new AccessLogReader(msg.log))
    return
  }
  framesSeen++
  drainLogs()
  // A frame that came through the shared buffer is answered through the other
  // one: the router reads that reply before it sends another shared frame.
  // The reply is written there directly; if it outgrows it, the writer moves
  // to a private buffer and the reply is transferred instead.
  const shared = typeof msg === 'number'
  out.buf = shared ? replies : local
  handleFrame(shared ? requests.subarray(0, msg) : msg)
  if (shared && out.buf === replies) {
    Atomics.store(signals, Signal.REPLY_LENGTH, out.pos)
    // A router spinning for this frame takes the reply from the buffer: no post, no wake-up.
    if (Atomics.compareExchange(signals, Signal.WAITING, lastFrameId, REPLY_TAKEN) !== lastFrameId) port.postMessage(out.pos)
  } else {
    const reply = out.take()
    port.postMessage(reply, [reply.buffer as ArrayBuffer])
  }
  // Only small frames keep the shard awake: large ones come from a pipelining
  // caller whose next frame is a whole batch away, and a spinning shard would
  // only take a core from it (measured with 2 shards on 2 cores: batched
  // throughput halved).
  if (lastFrameOps <= SMALL_FRAME_OPS) awaitNextFrame()
})

// ── events (cache.on('set' | 'delete' | ...)) ────────────────────────────

/** Events not yet sent: flat kind, region, key triples. */
let pendingEvents: (number | string)[] = []
let eventsScheduled = false

/** Starts or stops reporting events; the owner sends the kinds its listeners want (0: none). */
function setEventMask(mask: number): void {
  stores.forEach((store, region) => {
    store.eventMask = mask
    store.onEvent = (kind, key) => {
      // A region is cleared in every shard at once: one of them says so.
      if (kind === ShardEvent.CLEAR && init.shard !== 0) return
      pendingEvents.push(kind, region, key)
      if (!eventsScheduled) {
        eventsScheduled = true
        // Batched: everything of this turn (a whole frame, a sweep) in one message.
        setImmediate(flushEvents)
      }
    }
  })
  if (mask === 0) pendingEvents = []
}

function flushEvents(): void {
  eventsScheduled = false
  if (pendingEvents.length === 0) return
  const batch = pendingEvents
  pendingEvents = []
  port!.postMessage({ shardEvents: batch } satisfies ShardEventsMessage)
}
setEventMask(init.eventMask ?? 0)

/**
 * Whether staying awake after a reply has been paying: it does when the next
 * frame comes within the spin budget (a sequential caller), and is only a
 * core taken from the process when frames come a millisecond apart (a server
 * writing now and then: in the real-server bench, 50 µs after each of ~1,400
 * frames a second, the shard spun ~7% of a core for nothing, on a machine
 * whose two cores the serving thread and its client also needed).
 *
 * Each spin that sees the next frame arrive counts 2 for, each that runs out
 * 1 against: the shard spins while the recent count is positive, that is
 * while at least a third of its spins catch a frame (it starts positive, so
 * a sequential caller's first frames find it awake; from the top, 8 misses
 * in a row stop it). In the real-server bench ~5% of spins caught one, so
 * shards now spin only to probe (GC-heavy regime: shard CPU ~17% of a core
 * each, ~22% before); a sequential caller on one shard keeps them spinning
 * (set p50 ~8 µs, as before). A sequential caller alternating between two
 * shards on 2 cores catches less (one spin slot: the other shard sleeps), and
 * its set p50 moved from 30–61 µs to 28–101 µs over three runs. While it
 * does not pay, one small frame in {@link SPIN_PROBE_EVERY} still spins, so
 * a caller that turns sequential is noticed: a probe costs the budget once,
 * ~0.1% of a core at a thousand frames a second. (Judging by the gap to the next frame instead, without
 * spinning, does not work: a shard that sleeps makes its callers' round trips
 * slower, which makes the gaps longer, and it never spins again.)
 */
const SPIN_SCORE_MAX = 8
const SPIN_PROBE_EVERY = 16
const spinVerdict = { score: SPIN_SCORE_MAX, frames: 0 }

/**
 * After answering a small frame the shard stays awake for up to
 * `idleSpinMicros`, watching FRAMES_POSTED: if the next frame comes in time,
 * the event loop finds its message without the thread having slept (a wake-up
 * costs ~25 µs here). AWAKE tells the router it may spin for the answer. Only
 * while spinning pays ({@link spinVerdict}).
 */
function awaitNextFrame(): void {
  const budget = init.idleSpinMicros / 1000
  if (budget <= 0 || Atomics.load(signals, Signal.FRAMES_POSTED) !== framesSeen) return
  if (spinVerdict.score <= 0 && (++spinVerdict.frames & (SPIN_PROBE_EVERY - 1)) !== 0) return
  if (!takeSpinSlot()) return
  Atomics.store(signals, Signal.AWAKE, 1)
  const start = performance.now()
  let caught = true
  for (let i = 1; Atomics.load(signals, Signal.FRAMES_POSTED) === framesSeen; i++) {
    if ((i & 63) === 0 && performance.now() - start > budget) {
      caught = false
      break
    }
  }
  Atomics.store(signals, Signal.AWAKE, 0)
  Atomics.sub(spinners, 0, 1)
  spinVerdict.score = caught ? Math.min(SPIN_SCORE_MAX, spinVerdict.score + 2) : Math.max(-SPIN_SCORE_MAX, spinVerdict.score - 1)
}

/** Claims one of the shared spin slots, if one is free. */
function takeSpinSlot(): boolean {
  for (;;) {
    const n = Atomics.load(spinners, 0)
    if (n >= init.spinSlots) return false
    if (Atomics.compareExchange(spinners, 0, n, n + 1) === n) return true
  }
}

/**
 * Serves an attached thread on its own port (src/client/attach.ts): frames come and
 * go as transferred buffers, answered in order like the owner's. When the
 * port closes (the thread exited or detached) its log is dropped, its hits
 * kept in the stats.
 */
function attach(client: MessagePort, log: AccessLogReader): void {
  logs.push(log)
  attachedThreads++
  clients.add(client)
  // Arenas a compaction replaced: the memory this thread was handed may predate them.
  stores.forEach((s, region) => {
    if (s.arenaGen > 0) client.postMessage({ arena: { region, values: s.memory.values, gen: s.arenaGen } } satisfies ArenaMessage)
  })
  client.on('message', (msg: FrameMessage) => {
    drainLogs()
    if (typeof msg === 'number') return // DRAIN_ACCESS_LOG: done above
    out.buf = local
    handleFrame(msg)
    const reply = out.take()
    client.postMessage(reply, [reply.buffer as ArrayBuffer])
  })
  client.on('close', () => {
    clients.delete(client)
    drainLogs()
    for (let r = 0; r < stores.length; r++) retiredHits[r]! += log.hitsOf(r)
    log.detached = true // chunks waiting for its read wait no longer
    logs.splice(logs.indexOf(log), 1)
    attachedThreads--
  })
  // The port must not keep the shard alive: the owner decides when it stops.
  client.unref()
}

setInterval(() => {
  drainLogs()
  for (const s of stores) s.sweep(SWEEP_SLOTS)
}, SWEEP_INTERVAL_MS)

const control: ShardControl = {
  stats: () => ({
    shard: init.shard,
    regions: stores.map((s, r) => {
      const st = s.stats()
      // Hits of direct readers are counted on their side.
      st.hits += retiredHits[r]!
      for (const log of logs) st.hits += log.hitsOf(r)
      return st
    }),
    attachedThreads,
  }),
  resetStats: () => {
    for (const s of stores) s.resetStats()
    for (const log of logs) log.resetHits()
    retiredHits.fill(0)
  },
  setMaxBytes: (region, maxBytes) => stores[region]!.setMaxBytes(maxBytes),
  compact: (region) => {
    const s = stores[region]!
    const freeBefore = s.stats().arenaFreeBytes
    const started = performance.now()
    const r = s.compact()
    const pauseMs = performance.now() - started
    // Every reader thread maps the new arena; until its message arrives, it asks the shard.
    const msg: ArenaMessage = { arena: { region, values: r.values, gen: r.gen } }
    port!.postMessage(msg)
    for (const c of clients) c.postMessage(msg)
    return { shard: init.shard, region, beforeBytes: r.beforeBytes, afterBytes: r.afterBytes, freeBefore, pauseMs }
  },
  memory: (gc) => {
    const collect = (globalThis as { gc?: () => void }).gc
    if (gc && collect !== undefined) collect()
    const m = process.memoryUsage()
    return { shard: init.shard, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss, collected: gc && collect !== undefined }
  },
}
expose(control, nodeEndpoint(init.control))

let lastFrameOps = 0
let lastFrameId = 0

/** Answers every op of a frame into `out`. */
function handleFrame(frame: Uint8Array): void {
  const r = new FrameReader(frame)
  const id = r.u32()
  const count = r.u32()
  lastFrameOps = count
  lastFrameId = id
  out.pos = 0
  out.u32(id)
  out.u32(count)
  for (let i = 0; i < count; i++) {
    const mark = out.pos
    try {
      handleOp(r, out)
    } catch (err) {
      if (err instanceof CrashRequested) throw err
      // An op that cannot be read leaves the reader at an unknown position:
      // every op after it in this frame fails too, but only those.
      out.pos = mark
      for (; i < count; i++) writeError(out, err)
    }
  }
  // Before the reply: a router that still counts this frame's sets checks them against it (src/client/direct_reads.ts #roomFor).
  for (const s of stores) s.publishRoom()
}

const EMPTY = new Uint8Array(0)

function writeError(w: FrameWriter, err: unknown): void {
  w.u8(Status.ERROR)
  w.string('E_INTERNAL')
  w.string(`shard ${init.shard}: ${err instanceof Error ? err.message : String(err)}`)
}

function region(index: number): RegionStore {
  const s = stores[index]
  if (s === undefined) throw new Error(`no region with index ${index}`)
  return s
}

function writeBool(w: FrameWriter, v: boolean): void {
  w.u8(v ? Status.TRUE : Status.FALSE)
}

/** A read's reply: MISS, or `status` (VALUE or STALE) with the codec tag the store just read. */
function writeValue(w: FrameWriter, store: RegionStore, v: Uint8Array | undefined, status: number): void {
  if (v === undefined) {
    w.u8(Status.MISS)
  } else {
    w.u8(status)
    w.u8(store.lastTag)
    w.bytes(v)
  }
}

/** Filled by {@link RegionStore.versionsOf} for each GET_NEAR hit. */
const versions: SlotVersions = { slot: 0, seq: 0, regionSeq: 0, epoch: 0, expiresAt: 0 }

function handleOp(r: FrameReader, w: FrameWriter): void {
  const op = r.u8()
  const regionIndex = r.u8()
  const store = region(regionIndex)
  switch (op) {
    case Op.GET: {
      r.keyAt()
      writeValue(w, store, store.getAt(r.buf, r.keyStart, r.keyBytes), Status.VALUE)
      return
    }
    case Op.GET_NEAR: {
      r.keyAt()
      const v = store.getAt(r.buf, r.keyStart, r.keyBytes)
      if (v === undefined || !store.versionsOf(store.lastSlot, versions)) {
        writeValue(w, store, v, Status.VALUE)
        return
      }
      w.u8(Status.VALUE_AT)
      w.u8(store.lastTag)
      w.bytes(v)
      w.u8(regionIndex)
      w.u32(versions.slot)
      w.u32(versions.seq >>> 0)
      w.u32(versions.regionSeq >>> 0)
      w.u32(versions.epoch >>> 0)
      w.f64(versions.expiresAt)
      w.bytes(r.buf.subarray(r.keyStart, r.keyStart + r.keyBytes))
      return
    }
    case Op.SET: {
      const flags = r.u8()
      r.keyAt()
      const keyStart = r.keyStart
      const keyBytes = r.keyBytes
      const ttl = (flags & SetFlag.TTL) !== 0 ? r.f64() : undefined
      const tag = r.u8()
      const value = r.bytesView()
      const meta = (flags & SetFlag.META) !== 0 ? r.bytesView() : undefined
      const tags = (flags & SetFlag.TAGS) !== 0 ? r.strings() : undefined
      const grace = (flags & SetFlag.GRACE) !== 0 ? r.f64() : undefined
      const nx = (flags & SetFlag.NX) !== 0
      const xx = (flags & SetFlag.XX) !== 0
      writeBool(w, store.setAt(r.buf, keyStart, keyBytes, tag, value, ttl, nx, xx, meta, tags, grace))
      return
    }
    case Op.INCR: {
      r.keyAt()
      const by = r.f64()
      const sum = store.incrAt(r.buf, r.keyStart, r.keyBytes, by)
      if (sum === undefined) {
        // Written, not thrown: the op was read whole, so the ops after it in the frame are unaffected.
        w.u8(Status.ERROR)
        w.string('E_NOT_A_NUMBER')
        w.string('the value is not a number (incr needs a number stored by the JSON codec, or a numeric string)')
      } else {
        w.u8(Status.NUMBER)
        w.f64(sum)
      }
      return
    }
    case Op.CAS: {
      const flags = r.u8()
      r.keyAt()
      const keyStart = r.keyStart
      const keyBytes = r.keyBytes
      let expectTag = -1
      let expectBytes: Uint8Array = EMPTY
      if ((flags & CasFlag.EXPECT_ABSENT) === 0) {
        expectTag = r.u8()
        expectBytes = r.bytesView()
      }
      const tag = r.u8()
      const value = r.bytesView()
      const ttl = (flags & CasFlag.TTL) !== 0 ? r.f64() : undefined
      const meta = (flags & CasFlag.META) !== 0 ? r.bytesView() : undefined
      const tags = (flags & CasFlag.TAGS) !== 0 ? r.strings() : undefined
      writeBool(w, store.casAt(r.buf, keyStart, keyBytes, expectTag, expectBytes, tag, value, ttl, meta, tags))
      return
    }
    case Op.TAKE: {
      r.keyAt()
      writeValue(w, store, store.takeAt(r.buf, r.keyStart, r.keyBytes), Status.VALUE)
      return
    }
    case Op.TOUCH: {
      r.keyAt()
      writeBool(w, store.touchAt(r.buf, r.keyStart, r.keyBytes, r.f64()))
      return
    }
    case Op.PEEK: {
      r.keyAt()
      writeValue(w, store, store.peekAt(r.buf, r.keyStart, r.keyBytes), Status.VALUE)
      return
    }
    case Op.GET_STALE: {
      r.keyAt()
      const v = store.getStaleAt(r.buf, r.keyStart, r.keyBytes)
      writeValue(w, store, v, store.lastStale ? Status.STALE : Status.VALUE)
      return
    }
    case Op.INVALIDATE_TAG:
      w.u8(Status.NUMBER)
      w.f64(store.invalidateTag(r.string()))
      return
    case Op.HAS:
      r.keyAt()
      writeBool(w, store.hasAt(r.buf, r.keyStart, r.keyBytes))
      return
    case Op.DELETE:
      r.keyAt()
      writeBool(w, store.deleteAt(r.buf, r.keyStart, r.keyBytes))
      return
    case Op.TTL: {
      r.keyAt()
      const t = store.ttlAt(r.buf, r.keyStart, r.keyBytes)
      if (t === undefined) {
        w.u8(Status.MISS)
      } else {
        w.u8(Status.NUMBER)
        w.f64(t)
      }
      return
    }
    case Op.GET_ENTRY: {
      r.keyAt()
      const e = store.entryAt(r.buf, r.keyStart, r.keyBytes)
      if (e === undefined) {
        w.u8(Status.MISS)
        return
      }
      w.u8(Status.ENTRY)
      w.u8(e.tag)
      w.bytes(e.value)
      w.f64(e.createdAt)
      w.f64(e.expiresAt)
      w.f64(e.ttlRemaining)
      w.u32(e.sizeBytes)
      w.u32(e.storedBytes)
      w.u8(e.compressed ? 1 : 0)
      w.bytes(e.metadata ?? new Uint8Array(0))
      return
    }
    case Op.KEYS: {
      const keys = store.keys(readGlob(r))
      w.u8(Status.KEYS)
      w.u32(keys.length)
      for (const k of keys) w.string(k)
      return
    }
    case Op.EXPORT: {
      const cursor = r.f64()
      const count = r.u32()
      const page = store.exportPage(cursor, count)
      w.u8(Status.EXPORT)
      w.f64(page.next)
      w.u32(page.entries.length)
      for (const e of page.entries) writeEntry(w, e)
      return
    }
    case Op.SCAN: {
      const cursor = r.f64()
      const count = r.u32()
      const page = store.scan(cursor, count, readGlob(r))
      w.u8(Status.SCAN)
      w.f64(page.next)
      w.u32(page.keys.length)
      for (const k of page.keys) w.string(k)
      return
    }
    case Op.DELETE_PATTERN: {
      const glob = readGlob(r)
      w.u8(Status.NUMBER)
      w.f64(glob === undefined ? store.clear() : store.deleteMatching(glob))
      return
    }
    case Op.CLEAR:
      w.u8(Status.NUMBER)
      w.f64(store.clear())
      return
    case Op.CLEANUP:
      w.u8(Status.NUMBER)
      w.f64(store.cleanupExpired())
      return
    case Op.CRASH:
      throw new CrashRequested()
    default:
      throw new Error(`unknown opcode ${op}`)
  }
}

function readGlob(r: FrameReader): Glob | undefined {
  return r.u8() === 0 ? undefined : new Glob(r.string())
}

/** Escapes the per-op error handling so that the thread really dies. */
class CrashRequested extends Error {
  constructor() {
    super('crash requested')
  }
}
