/**
 * One cache for every thread of a process: `cache.handle()` on the owner,
 * `attachCache(handle)` in any other worker thread.
 *
 * A handle is small: the options every thread must agree on, a shared state
 * word (set when the owner closes), and one MessagePort to the owner's
 * {@link Broker}. Attaching asks the broker once for the thread's own port to
 * every shard thread and for the shards' shared memory; from then on the
 * attached thread's ops go straight to the shards, and its reads straight to
 * shared memory, exactly as the owner's do. The owner's event loop only sees
 * the rare control messages: attach, reconnect after a shard restart, stats.
 *
 * Why ports per thread and not a relay through the owner: a relayed op costs
 * two more thread hops (each a wake-up, ~25 µs here) and makes the owner's
 * event loop a bottleneck for every other thread.
 *
 * Lifetimes: a port closes when either side's thread ends. A shard forgets an
 * attached thread (its port and access log) when its port closes, so an
 * attached thread that exits leaks nothing. When the owner closes, it sets the
 * state word before it stops the shards, so the attached thread's ops reject
 * with E_CLOSED, not E_SHARD_CRASHED.
 */
import { MessageChannel, threadId } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import type { ResolvedOptions } from '../options/cache.js'
import type { ResolvedRegion } from '../options/regions.js'
import type { TracingOptions } from '../options/tracing.js'
import type { Codec, EncodedValue } from '../wire/values.js'
import type { ResolvedSet } from '../options/operations.js'
import { WriteMarks } from '../wire/write_marks.js'
import type { RegionWriter } from '../backing/write_through.js'
import type { CacheStats } from '../ops/stats.js'
import type { ArenaMessage, FrameWriter } from '../wire/protocol.js'
import { CacheError, ClosedError, ErrorCodes, InvalidOptionError, ShardCrashedError, WriteQueueFullError, WriteThroughError } from '../errors.js'
import type { ErrorCode } from '../errors.js'
import { describe } from '../messages.js'
import { AccessLogWriter, SharedRegionReader, allocateAccessLog } from '../wire/shared_region.js'
import type { AccessLogMemory, RegionMemory } from '../wire/shared_region.js'
import { DRAIN_ACCESS_LOG } from '../wire/protocol.js'
import type { LinkEvents, ShardLink } from './shard_channel.js'
import type { ShardThread } from './shard_thread.js'
import type { BusOp } from '../redis/bus_message.js'
import type { BusPublisher } from '../redis/bus.js'
import type { FlightCoordinator, FlightOutcome, FlightTurn, Flights } from './flights.js'

/** Marks an object as a handle (structured clone keeps plain data only). */
const HANDLE_KIND = 'shardcache.handle'
const HANDLE_VERSION = 1

/**
 * What {@link Cache.handle} returns: post it to one other thread, with
 * `handle.transfer` as the transfer list, and call {@link attachCache} there.
 *
 * @example
 * ```ts
 * const h = cache.handle()
 * worker.postMessage({ cache: h }, h.transfer)
 * // or: piscina.run({ cache: h }, { transferList: h.transfer })
 * ```
 */
export interface CacheHandle {
  readonly kind: typeof HANDLE_KIND
  readonly version: number
  /** Identifies the owner's cache: attaching twice in one thread returns the same client. */
  readonly id: string
  /** Options every thread must agree on (regions, limits). */
  readonly options: HandleOptions
  /** Int32 [0]: 1 once the owner closed the cache. */
  readonly state: SharedArrayBuffer
  /** The owner's broker. */
  readonly port: MessagePort
  /** The transfer list to post the handle with. */
  readonly transfer: [MessagePort]
}

/** The owner's resolved options, minus what cannot cross threads (the codec's functions). */
export interface HandleOptions {
  shards: number
  maxKeyBytes: number
  maxValueBytes: number
  replySpinMicros: number
  nearCacheEntries: number
  regions: ResolvedRegion[]
  /** The owner has a custom codec: attaching threads must pass the same one. */
  customCodec: boolean
  /**
   * How attached threads relay their writes to the owner, which publishes
   * them on its bus and applies them to its tiers (L2 and `tiers`): 'update' (with values)
   * when the owner has tiers below the shards or an update-mode bus, 'invalidate' (keys
   * only) for an invalidate-mode bus, undefined when it has neither.
   */
  relayMode: 'invalidate' | 'update' | undefined
}

/** Options of {@link attachCache}. */
export interface AttachOptions {
  /** The codec the owner was created with, when it has one (functions cannot be posted to a thread). */
  codec?: Codec
  /**
   * This thread's near cache; by default the owner's setting.
   * @see CacheOptions.nearCache
   */
  nearCache?: false | { maxEntries?: number }
  /**
   * OpenTelemetry spans of this thread's operations (each thread has its own
   * tracer provider); off unless given here.
   * @see CacheOptions.tracing
   */
  tracing?: boolean | TracingOptions
}

// ── broker protocol ────────────────────────────────────────────────────────

type BrokerRequestBody =
  | { type: 'attach'; logs: AccessLogMemory[] }
  | { type: 'reconnect'; shard: number; generation: number; log: AccessLogMemory }
  | { type: 'stats' }
  | { type: 'resetStats' }
  | { type: 'flightBegin'; key: string }
  | { type: 'write'; region: number; sets?: [string, EncodedValue][]; opts?: ResolvedSet; deletes?: string[] }
type BrokerRequest = BrokerRequestBody & { id: number }
/** The end of a flight an attached thread led (src/client/flights.ts). No reply. */
type BrokerFlightEnd = { type: 'flightEnd'; key: string; outcome: FlightOutcome }
/** One tick of an attached thread's writes, for the owner's bus. No reply. */
type BrokerPublish = { type: 'publish'; ops: BusOp[] }

/** A shard as an attached thread sees it: its own port, the memory to read, which incarnation. */
interface ShardAccess {
  port: MessagePort
  memory: RegionMemory[]
  /** The generation of each region's value arena in `memory` (see src/wire/shared_region.ts "Compaction"). */
  arenas: number[]
  generation: number
}

type BrokerReply =
  | { id: number; shards: ShardAccess[] }
  | { id: number; shard: ShardAccess }
  | { id: number; stats: CacheStats }
  | { id: number; ok: true }
  | { id: number; turn: FlightTurn }
  | { id: number; count: number }
  | { id: number; error: { code: string; message: string; keys?: string[] } }

/** What the broker needs from the owner's cache. */
export interface BrokerHost {
  threads(): ShardThread[]
  isDead(shard: number): boolean
  stats(): Promise<CacheStats>
  resetStats(): Promise<void>
  /** Publishes an attached thread's writes on the owner's bus. */
  publish(ops: BusOp[]): void
  /** getOrCompute's single-flight coordinator. */
  flights: FlightCoordinator
  /** An attached thread's sets (`sets`, with `opts`) or deletes of a write-through region, made by the owner's write-through; resolves how many. */
  write(region: number, sets: [string, EncodedValue][] | undefined, opts: ResolvedSet | undefined, deletes: string[] | undefined): Promise<number>
}

/**
 * The owner's side: answers attached threads' control requests on their
 * handle's port. One broker per cache; one port per handle.
 */
export class Broker {
  readonly id = `${process.pid}:${threadId}:${Math.random().toString(36).slice(2)}`
  readonly state = new Int32Array(new SharedArrayBuffer(4))
  readonly #ports = new Set<MessagePort>()

  constructor(
    readonly options: ResolvedOptions,
    readonly host: BrokerHost,
  ) {}

  handle(): CacheHandle {
    const { port1, port2 } = new MessageChannel()
    this.#ports.add(port1)
    port1.on('message', (req: BrokerRequest | BrokerPublish | BrokerFlightEnd) => {
      if (req.type === 'publish') {
        if (Atomics.load(this.state, 0) === 0) this.host.publish(req.ops)
        return
      }
      if (req.type === 'flightEnd') {
        this.host.flights.end(req.key, req.outcome)
        return
      }
      void this.#answer(port1, req)
    })
    port1.on('close', () => {
      this.#ports.delete(port1)
      this.host.flights.abandon(port1)
    })
    port1.unref()
    const o = this.options
    return {
      kind: HANDLE_KIND,
      version: HANDLE_VERSION,
      id: this.id,
      options: {
        shards: o.shards,
        maxKeyBytes: o.maxKeyBytes,
        maxValueBytes: o.maxValueBytes,
        replySpinMicros: o.replySpinMicros,
        nearCacheEntries: o.nearCacheEntries,
        regions: o.regions,
        customCodec: o.codec !== undefined,
        relayMode: o.l2 !== undefined || o.tiers.length > 0 ? 'update' : o.bus?.mode,
      },
      state: this.state.buffer as SharedArrayBuffer,
      port: port2,
      transfer: [port2],
    }
  }

  async #answer(port: MessagePort, req: BrokerRequest): Promise<void> {
    let reply: BrokerReply
    try {
      if (Atomics.load(this.state, 0) !== 0) throw new ClosedError()
      switch (req.type) {
        case 'attach': {
          const threads = this.host.threads()
          const shards: ShardAccess[] = []
          for (const t of threads) shards.push(await this.#access(t, req.logs[t.index]!, 0))
          reply = { id: req.id, shards }
          break
        }
        case 'reconnect':
          reply = { id: req.id, shard: await this.#access(this.host.threads()[req.shard]!, req.log, req.generation) }
          break
        case 'stats':
          reply = { id: req.id, stats: await this.host.stats() }
          break
        case 'resetStats':
          await this.host.resetStats()
          reply = { id: req.id, ok: true }
          break
        case 'flightBegin':
          reply = { id: req.id, turn: await this.host.flights.begin(req.key, port) }
          break
        case 'write':
          reply = { id: req.id, count: await this.host.write(req.region, req.sets, req.opts, req.deletes) }
          break
      }
    } catch (err) {
      const e = err as Error & { code?: string; keys?: string[] }
      reply = { id: req.id, error: { code: e.code ?? 'E_INTERNAL', message: e.message, keys: e.keys } }
    }
    if (this.#ports.has(port)) {
      const transfer = 'shards' in reply ? reply.shards.map((s) => s.port) : 'shard' in reply ? [reply.shard.port] : []
      port.postMessage(reply, transfer)
    }
  }

  /**
   * A port to thread `t`, once it is newer than the incarnation `after` the
   * attached thread lost: its port may close before the owner has seen the
   * thread exit, so the request waits for the restart.
   */
  async #access(t: ShardThread, log: AccessLogMemory, after: number): Promise<ShardAccess> {
    while (t.generation <= after) {
      if (this.host.isDead(t.index)) throw new ShardCrashedError(t.index, { restarting: false })
      await new Promise<void>((resolve) => t.onSpawn.push(resolve))
    }
    if (this.host.isDead(t.index)) throw new ShardCrashedError(t.index, { restarting: false })
    const { port, memory } = t.attach(log)
    // Each memory object is the owner's reader's: its arena and that arena's generation go together.
    return { port, memory, arenas: t.readers.map((r) => r.arenaGen), generation: t.generation }
  }

  /** Tells attached threads the cache is closing: from now on their ops reject with E_CLOSED. */
  close(): void {
    Atomics.store(this.state, 0, 1)
    for (const p of this.#ports) p.close()
    this.#ports.clear()
  }
}

// ── attached side ──────────────────────────────────────────────────────────

/** The attached thread's end of its broker port: request/response by id. */
export class BrokerClient {
  #nextId = 1
  readonly #pending = new Map<number, { resolve: (r: BrokerReply) => void; reject: (e: Error) => void }>()

  constructor(
    readonly port: MessagePort,
    readonly state: Int32Array,
  ) {
    port.on('message', (r: BrokerReply) => {
      const p = this.#pending.get(r.id)
      if (p === undefined) return
      this.#pending.delete(r.id)
      if (this.#pending.size === 0) port.unref()
      p.resolve(r)
    })
    port.on('close', () => {
      const err = new ClosedError()
      for (const p of this.#pending.values()) p.reject(err)
      this.#pending.clear()
    })
    port.unref()
  }

  /** Sends a request; rejects with the broker's error (E_CLOSED when the owner is gone). */
  request<R extends BrokerReply>(req: BrokerRequestBody): Promise<R> {
    if (Atomics.load(this.state, 0) !== 0) return Promise.reject(new ClosedError())
    const id = this.#nextId++
    return new Promise<R>((resolve, reject) => {
      this.#pending.set(id, {
        resolve: (r) => {
          if ('error' in r) reject(brokerError(r.error))
          else resolve(r as R)
        },
        reject,
      })
      this.port.ref() // an answer is awaited
      this.port.postMessage({ ...req, id })
    })
  }
}

/** An attached thread's single flights: decided by the owner's coordinator. */
export class FlightRelay implements Flights {
  constructor(readonly broker: BrokerClient) {}

  begin(key: string): Promise<FlightTurn> {
    return this.broker.request<{ id: number; turn: FlightTurn }>({ type: 'flightBegin', key }).then((r) => r.turn)
  }

  end(key: string, outcome: FlightOutcome): void {
    try {
      this.broker.port.postMessage({ type: 'flightEnd', key, outcome } satisfies BrokerFlightEnd)
    } catch {
      // The port closed: the owner is gone, and its waiters with it.
    }
  }
}

/**
 * An attached thread's bus: its writes of one tick go to the owner in one
 * message, and the owner's bus publishes them as its own (one instance, one
 * origin, whichever thread wrote).
 */
export class BusRelay implements BusPublisher {
  #ops: BusOp[] = []

  constructor(
    readonly mode: 'invalidate' | 'update',
    readonly broker: BrokerClient,
  ) {}

  publish(op: BusOp): void {
    if (this.#ops.length === 0) setImmediate(() => this.#send())
    this.#ops.push(op)
  }

  #send(): void {
    const ops = this.#ops
    this.#ops = []
    if (Atomics.load(this.broker.state, 0) !== 0) return
    try {
      this.broker.port.postMessage({ type: 'publish', ops } satisfies BrokerPublish)
    } catch {
      // The port closed: the owner is gone, and its bus with it.
    }
  }
}

/**
 * An attached thread's writes of a write-through region: made by the
 * owner's write-through, where the store is (a store's functions cannot be
 * posted to a thread). Each is one round trip to the owner, on top of the
 * store's own.
 */
export class WriteRelay implements RegionWriter {
  readonly #marks = new WriteMarks()
  /** Keys with a relayed write not answered yet, and how many. */
  readonly #pending = new Map<string, number>()

  constructor(
    readonly mode: 'sync' | 'async',
    readonly region: number,
    readonly broker: BrokerClient,
  ) {}

  set(key: string, enc: EncodedValue, opts: ResolvedSet): Promise<boolean> {
    return this.mset([[key, enc]], opts).then((n) => n > 0)
  }

  mset(list: readonly (readonly [string, EncodedValue])[], opts: ResolvedSet): Promise<number> {
    const sets = list.map(([k, e]): [string, EncodedValue] => [k, e])
    return this.#relay(sets.map(([k]) => k), { type: 'write', region: this.region, sets, opts })
  }

  delete(keys: readonly string[]): Promise<number> {
    return this.#relay(keys, { type: 'write', region: this.region, deletes: [...keys] })
  }

  /** Whether this thread relayed a write of `key` not answered yet (the owner guards its own fills by its store calls). */
  busy(key: string): boolean {
    return this.#pending.has(key)
  }

  mark(key: string): number {
    return this.#marks.mark(key)
  }

  #relay(keys: readonly string[], req: BrokerRequestBody): Promise<number> {
    for (const k of keys) {
      this.#marks.bump(k)
      this.#pending.set(k, (this.#pending.get(k) ?? 0) + 1)
    }
    const done = (): void => {
      for (const k of keys) {
        const n = this.#pending.get(k)! - 1
        if (n === 0) this.#pending.delete(k)
        else this.#pending.set(k, n)
      }
    }
    return this.broker.request<{ id: number; count: number }>(req).then(
      (r) => {
        done()
        return r.count
      },
      (err: unknown) => {
        done()
        throw err
      },
    )
  }
}

function brokerError(e: { code: string; message: string; keys?: string[] }): Error {
  if (e.code === ErrorCodes.CLOSED) return new ClosedError(e.message)
  // The owner's write-through errors, as the owner's own callers get them.
  if (e.code === ErrorCodes.WRITE_THROUGH) return new WriteThroughError(e.message, e.keys ?? [])
  if (e.code === ErrorCodes.WRITE_QUEUE_FULL) return new WriteQueueFullError(e.message)
  const known = (Object.values(ErrorCodes) as string[]).includes(e.code)
  return new CacheError((known ? e.code : ErrorCodes.INTERNAL) as ErrorCode, e.message)
}

/** An attached thread's link to one shard: its own port, frames as transferred buffers. */
export class AttachedLink implements ShardLink {
  readers: SharedRegionReader[] = []
  log: AccessLogWriter
  ready = false
  #port: MessagePort | undefined
  #generation = 0
  #inflight = false
  #closed = false
  readonly #logMemory: AccessLogMemory

  constructor(
    readonly index: number,
    readonly regions: number,
    readonly broker: BrokerClient,
    readonly events: LinkEvents,
  ) {
    this.#logMemory = allocateAccessLog(regions)
    this.log = new AccessLogWriter(this.#logMemory, () => this.#port?.postMessage(DRAIN_ACCESS_LOG))
  }

  get logMemory(): AccessLogMemory {
    return this.#logMemory
  }

  connect(access: ShardAccess): void {
    if (this.#closed) {
      access.port.close()
      return
    }
    const port = access.port
    this.#port = port
    this.#generation = access.generation
    for (const r of this.readers) r.retired = true
    this.readers = access.memory.map((m, r) => new SharedRegionReader(m, undefined, access.arenas[r], this.log))
    port.on('message', (frame: Uint8Array | ArenaMessage) => {
      // A compaction's new arena (the shard also posts the current ones when this thread connects).
      if (!(frame instanceof Uint8Array)) this.readers[frame.arena.region]?.adoptArena(frame.arena.values, frame.arena.gen)
      else this.events.reply(this.index, frame)
    })
    port.on('close', () => {
      if (this.#port !== port) return
      this.#port = undefined
      this.ready = false
      for (const r of this.readers) r.retired = true
      if (!this.#closed) this.events.lost(this.index, new Error(`the port to shard ${this.index} closed`))
    })
    if (this.#inflight) port.ref()
    else port.unref()
    this.ready = true
  }

  send(w: FrameWriter): boolean {
    const frame = w.take()
    this.#port!.postMessage(frame, [frame.buffer as ArrayBuffer])
    return false
  }

  takeReply(): undefined {
    return undefined
  }

  ref(): void {
    this.#inflight = true
    this.#port?.ref()
  }

  unref(): void {
    this.#inflight = false
    this.#port?.unref()
  }

  /** Asks the owner for a port to the shard's next incarnation. */
  restart(): void {
    // The log is the shard's to drain; a new incarnation gets a new one.
    const fresh = allocateAccessLog(this.regions)
    this.log = new AccessLogWriter(fresh, () => this.#port?.postMessage(DRAIN_ACCESS_LOG))
    this.broker
      .request<{ id: number; shard: ShardAccess }>({ type: 'reconnect', shard: this.index, generation: this.#generation, log: fresh })
      .then(
        (r) => {
          this.connect(r.shard)
          this.events.ready(this.index)
        },
        (err: Error) => this.events.dead(this.index, err instanceof ClosedError ? err : new ShardCrashedError(this.index, { cause: err, restarting: false })),
      )
  }

  async close(): Promise<void> {
    this.#closed = true
    this.ready = false
    this.#port?.close()
    this.#port = undefined
  }
}

/** Checks that `h` is a handle this version can attach to. */
export function checkHandle(h: unknown): asserts h is CacheHandle {
  const c = h as Partial<CacheHandle> | null
  if (c === null || typeof c !== 'object' || c.kind !== HANDLE_KIND) {
    throw new InvalidOptionError(`handle must be the object cache.handle() returned, posted with handle.transfer as the transfer list (got ${describe(h)})`)
  }
  if (c.version !== HANDLE_VERSION) {
    throw new InvalidOptionError(`handle has version ${describe(c.version)}; this shardcache attaches to version ${HANDLE_VERSION}`)
  }
  if (!(c.state instanceof SharedArrayBuffer) || c.port === undefined) {
    throw new InvalidOptionError('handle lost its port or shared state: post it with handle.transfer as the transfer list')
  }
}
