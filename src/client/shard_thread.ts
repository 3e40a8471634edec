/**
 * The owner's link to one shard: the worker thread itself, its shared memory,
 * the fast transport of src/wire/protocol.ts (shared frame buffers, signals,
 * spinning) and its control port. A restart replaces the thread and its
 * memory; the {@link ShardThread} object stays, so the router's queue for the
 * shard survives.
 *
 * Attached threads (src/client/attach.ts) get their own MessagePort to the thread
 * through {@link ShardThread.attach}; they never go through this thread's
 * event loop for data.
 */
import { Worker, MessageChannel } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import type { MessagePort } from 'node:worker_threads'
import { wrap, releaseProxy } from 'comlink'
import type { Remote } from 'comlink'
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs'
import { ClosedError, ShardCrashedError } from '../errors.js'
import { DRAIN_ACCESS_LOG, REPLY_TAKEN, SHARED_FRAME_BYTES, SIGNAL_SLOTS, SMALL_FRAME_OPS, Signal } from '../wire/protocol.js'
import type { ArenaMessage, FrameMessage, FrameWriter, ShardEventsMessage, ShardMessage } from '../wire/protocol.js'
import type { ShardControl, ShardInit } from '../wire/region_types.js'
import { slotsFor } from '../wire/region_types.js'
import type { RegionShardConfig } from '../wire/region_types.js'
import { AccessLogWriter, SharedRegionReader, allocateAccessLog, allocateRegionMemory } from '../wire/shared_region.js'
import type { AccessLogMemory, RegionMemory } from '../wire/shared_region.js'
import type { LinkEvents, ShardLink } from './shard_channel.js'
import { workerExecArgv } from './worker_argv.js'
import { DEFAULTS } from '../options/defaults.js'
import type { ShardResourceLimits } from '../options/cache.js'

const SHARD_FILE = new URL('../../workers/shard.js', import.meta.url)

export class ShardThread implements ShardLink {
  worker!: Worker
  control!: Remote<ShardControl>
  controlPort!: MessagePort
  /** Rejects when the current worker dies: control calls race it so they never hang. */
  died!: Promise<never>
  /** Control calls waiting on the current thread's port (see {@link call}). */
  #controlCalls = 0
  /** Set by close(): the thread's exit is expected. */
  #closing = false
  #closed: Promise<void> | undefined
  /** Memory of the current thread (attached threads are given it too). */
  memory!: RegionMemory[]
  readers: SharedRegionReader[] = []
  log!: AccessLogWriter
  /** Bumped by every spawn: attached threads name the incarnation they lost. */
  generation = 0
  readonly ready = true
  /** Signals shared with the shard thread, indexed by {@link Signal} (see src/wire/protocol.ts). */
  readonly signals = new Int32Array(new SharedArrayBuffer(SIGNAL_SLOTS * 4))
  /** Shared frame buffers (see src/wire/protocol.ts): requests written here, replies read there. */
  readonly requests = Buffer.from(new SharedArrayBuffer(SHARED_FRAME_BYTES))
  readonly replies = Buffer.from(new SharedArrayBuffer(SHARED_FRAME_BYTES))
  /** Runs after each spawn (attached threads waiting for the new incarnation). */
  readonly onSpawn: (() => void)[] = []
  /** The event kinds the owner's listeners want (src/wire/protocol.ts ShardEvent); a restarted thread gets them too. */
  eventMask = 0
  /** Where the thread's event batches go (flat kind, region, key triples). */
  onEvents: (events: (number | string)[]) => void = () => {}

  constructor(
    readonly index: number,
    readonly regions: RegionShardConfig[],
    readonly idleSpinMicros: number,
    readonly replySpinMicros: number,
    readonly spinners: Int32Array,
    readonly events: LinkEvents,
    /** V8 heap limits of the thread (options.resourceLimits); every restart gets the same. */
    readonly resourceLimits: ShardResourceLimits = { maxYoungGenerationSizeMb: DEFAULTS.shardYoungGenerationMb },
  ) {
    this.spawn()
  }

  spawn(): void {
    const { port1, port2 } = new MessageChannel()
    this.signals.fill(0) // a new thread has seen no frame
    // A new thread starts empty, in new memory: readers of the old one are dropped with it.
    const memory = this.regions.map((r) => allocateRegionMemory(slotsFor(r)))
    const log = allocateAccessLog(this.regions.length)
    const init: ShardInit = {
      memory,
      log,
      shard: this.index,
      regions: this.regions,
      control: port2,
      signals: this.signals.buffer as SharedArrayBuffer,
      requests: this.requests.buffer as SharedArrayBuffer,
      replies: this.replies.buffer as SharedArrayBuffer,
      idleSpinMicros: this.idleSpinMicros,
      spinners: this.spinners.buffer as SharedArrayBuffer,
      spinSlots: Math.max(0, availableParallelism() - 1),
      eventMask: this.eventMask,
    }
    // May throw (a thread that cannot be created): before this object points at anything new.
    const worker = new Worker(SHARD_FILE, {
      workerData: init,
      transferList: [port2],
      resourceLimits: { ...this.resourceLimits },
      // Not the main entry's options (`--input-type` kills a worker at startup): see src/client/worker_argv.ts.
      execArgv: workerExecArgv(),
    })
    const logWriter = new AccessLogWriter(log, () => worker.postMessage(DRAIN_ACCESS_LOG))
    const readers = memory.map((m) => new SharedRegionReader(m, undefined, 0, logWriter))
    let markDied!: (err: Error) => void
    const died = new Promise<never>((_, reject) => {
      markDied = reject
    })
    died.catch(() => {})
    let lastError: Error | undefined
    worker.on('message', (msg: FrameMessage | ShardEventsMessage | ArenaMessage) => {
      if (typeof msg === 'object' && 'shardEvents' in msg) this.onEvents(msg.shardEvents)
      // A compaction's new arena: the reader maps it, and the memory handed to attaching threads is updated with it.
      else if (typeof msg === 'object' && 'arena' in msg) this.readers[msg.arena.region]?.adoptArena(msg.arena.values, msg.arena.gen)
      else this.events.reply(this.index, typeof msg === 'number' ? this.replies.subarray(0, msg) : msg)
    })
    worker.on('error', (err) => {
      lastError = err
    })
    worker.on('exit', (code) => {
      port1.close()
      // No thread keeps this memory current any more (a restart brings new memory and readers).
      for (const r of readers) r.retired = true
      // Asked to stop by close(): it has not died, and nothing is reported (pending control calls get E_CLOSED).
      if (this.#closing) {
        markDied(new ClosedError())
        return
      }
      const cause = lastError ?? new Error(`shard thread ${this.index} exited with code ${code}`)
      markDied(new ShardCrashedError(this.index, { cause }))
      this.events.lost(this.index, cause)
    })
    // The thread's port closes as soon as the thread ends, before its 'exit' event is delivered; a
    // worker that is unref'd (idle) then holds nothing that keeps the process alive until that
    // event, so a control call waiting for it (createCache's first call) would never settle: the
    // process exited with code 13 (unsettled top-level await). Its end is near: ref it until then.
    port1.on('close', () => worker.ref())
    worker.unref()
    port1.unref()
    for (const r of this.readers) r.retired = true
    this.worker = worker
    this.memory = memory
    this.readers = readers
    this.log = logWriter
    this.controlPort = port1
    this.control = wrap<ShardControl>(nodeEndpoint(port1))
    this.died = died
    this.#controlCalls = 0
    this.generation++
    this.#wakeWaiters()
  }

  /**
   * Calls the thread's control API; rejects with E_SHARD_CRASHED (its cause
   * the thread's error) if the thread dies first, E_CLOSED if close() stops it.
   * The port is ref'd while any call waits, so the answer keeps the process alive.
   */
  async call<T>(fn: (c: Remote<ShardControl>) => Promise<T>): Promise<T> {
    const port = this.controlPort
    const died = this.died
    if (this.#controlCalls++ === 0) port.ref()
    try {
      return await Promise.race([fn(this.control), died])
    } finally {
      // Only this incarnation's count: a restart meanwhile started a new one at 0.
      if (port === this.controlPort && --this.#controlCalls === 0) port.unref()
    }
  }

  /** After a crash: a new thread; if one cannot even be created, the shard is down for good. */
  restart(): void {
    try {
      this.spawn()
    } catch (err) {
      this.events.dead(this.index, new ShardCrashedError(this.index, { cause: err, restarting: false }))
      this.#wakeWaiters() // attached threads waiting for the restart see the shard is down
    }
  }

  #wakeWaiters(): void {
    const waiting = this.onSpawn.splice(0)
    for (const f of waiting) f()
  }

  ref(): void {
    this.worker.ref()
  }

  unref(): void {
    this.worker.unref()
  }

  /**
   * Sends the frame in `w`: through the shared request buffer when no other
   * frame is in flight and it fits, else as a transferred buffer. Returns
   * whether the caller should spin for the reply ({@link takeReply}).
   */
  send(w: FrameWriter, id: number, ops: number, alone: boolean): boolean {
    let frame: Uint8Array | undefined
    let length = 0
    // The shared buffer is free only when no frame is in flight (its reply would share the reply buffer).
    if (alone && w.pos <= SHARED_FRAME_BYTES) {
      length = w.pos
      w.buf.copy(this.requests, 0, 0, length)
    } else {
      frame = w.take()
    }
    const awaited =
      frame === undefined && ops <= SMALL_FRAME_OPS && this.replySpinMicros > 0 && Atomics.load(this.signals, Signal.AWAKE) === 1
    if (awaited) Atomics.store(this.signals, Signal.WAITING, id)
    if (frame === undefined) this.worker.postMessage(length)
    else this.worker.postMessage(frame, [frame.buffer as ArrayBuffer])
    // After the post, so a shard that sees the count change finds the message already queued.
    Atomics.add(this.signals, Signal.FRAMES_POSTED, 1)
    return awaited
  }

  /**
   * A small frame sent to a shard that is awake is answered in a few µs, while
   * letting this thread sleep until the reply's message arrives costs ~25 µs
   * more (a thread wake-up). So the router waits for such replies by spinning,
   * until `deadline` (performance.now() ms), and reads them straight from the
   * shared reply buffer. The compare-and-swap on WAITING settles the race with
   * a shard that answers just as we give up: whoever loses, nothing is lost.
   */
  takeReply(deadline: number): Uint8Array | undefined {
    const signals = this.signals
    for (let n = 1; Atomics.load(signals, Signal.WAITING) !== REPLY_TAKEN; n++) {
      if ((n & 31) === 0 && performance.now() > deadline) break
    }
    const waitingFor = Atomics.load(signals, Signal.WAITING)
    if (waitingFor !== REPLY_TAKEN && Atomics.compareExchange(signals, Signal.WAITING, waitingFor, 0) === waitingFor) {
      return undefined // gave up first: the shard will post the reply
    }
    Atomics.store(signals, Signal.WAITING, 0)
    return this.replies.subarray(0, Atomics.load(signals, Signal.REPLY_LENGTH))
  }

  /**
   * Gives another thread its own port to this shard thread and its own access
   * log; returns the port and the memory to read. The shard forgets both when
   * the port closes (the other thread exited or detached).
   */
  /** Starts or stops the thread's event reports. */
  setEventMask(mask: number): void {
    this.eventMask = mask
    this.worker.postMessage({ eventMask: mask })
  }

  attach(log: AccessLogMemory): { port: MessagePort; memory: RegionMemory[] } {
    const { port1, port2 } = new MessageChannel()
    const msg: ShardMessage = { attach: port2, log }
    this.worker.postMessage(msg, [port2])
    return { port: port1, memory: this.memory }
  }

  /** Stops the thread (idempotent). Its exit is then not a crash: nothing is reported for it. */
  close(): Promise<void> {
    if (this.#closed !== undefined) return this.#closed
    this.#closing = true
    try {
      this.control[releaseProxy]()
    } catch {
      // Released already: nothing to tell the thread.
    }
    // Ref'd until it exited: terminate() of an unref'd worker can leave the process nothing to
    // wait on before the exit, and a top-level `await cache.close()` would never settle.
    this.worker.ref()
    this.controlPort.close()
    this.#closed = this.worker.terminate().then(() => undefined)
    return this.#closed
  }
}
