/**
 * What the facade's files share (src/api/region.ts, read_through.ts,
 * remote.ts, cache.ts, create.ts): the state a cache and its region handles
 * hold in common ({@link Core}, and {@link Admin}, what differs between the
 * owner's cache and an attached thread's), the promise plumbing that turns
 * the router's sinks into what callers await, and small helpers. Here, at
 * the bottom of api/, so that those files import it and never each other in a circle.
 * The loader types are here too because {@link Core} runs pool tasks.
 */
import { InternalError } from '../errors.js'
import type { ResolvedOptions } from '../options/cache.js'
import type { Router } from '../client/router.js'
import type { Sink } from '../client/ops/sender.js'
import type { CacheStats } from '../ops/stats.js'
import type { ShardThread } from '../client/shard_thread.js'
import type { Broker } from '../client/attach.js'
import type { Flights } from '../client/flights.js'
import type { EventEmitter } from 'node:events'
import type { BusPublisher, BusStats } from '../redis/bus.js'
import type { TierChain } from '../tiers/chain.js'
import type { BackupSchedule } from '../ops/backup.js'
import type { AlertWatch } from '../ops/alerts.js'
import type { Maintenance } from '../ops/maintenance.js'
import type { CacheTracer } from '../ops/tracing.js'
import type { RegionWriter } from '../backing/write_through.js'

/** What `getOrCompute` calls on a miss: its result (or what its promise resolves to) is cached and returned. */
export type Loader<T> = () => T | Promise<T>

/** A loader run in the loader pool (`createCache({ loaders: { pool } })`): the module's export `task`, called with `args`. */
export interface PoolTask {
  task: string
  /** Structured-cloneable arguments. @default [] */
  args?: unknown[]
}

/** Promise plumbing for one op. */
export class Deferred<T> implements Sink {
  readonly promise: Promise<T>
  #resolve!: (v: T) => void
  #reject!: (e: Error) => void
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
  }
  resolve(_index: number, result: unknown): void {
    this.#resolve(result as T)
  }
  reject(_index: number, error: Error): void {
    this.#reject(error)
  }
}

/** Promise plumbing for an op spread over many keys or shards: settles when all parts did; the first error rejects it. */
export class Collector<T> implements Sink {
  readonly promise: Promise<T>
  readonly results: unknown[]
  #remaining: number
  #finish: (results: unknown[]) => T
  #resolve!: (v: T) => void
  #reject!: (e: Error) => void
  #settled = false
  constructor(parts: number, finish: (results: unknown[]) => T) {
    this.results = new Array(parts)
    this.#remaining = parts
    this.#finish = finish
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    if (parts === 0) this.#settle()
  }
  resolve(index: number, result: unknown): void {
    this.results[index] = result
    if (--this.#remaining === 0) this.#settle()
  }
  reject(_index: number, error: Error): void {
    if (this.#settled) return
    this.#settled = true
    this.#reject(error)
  }
  #settle(): void {
    if (this.#settled) return
    this.#settled = true
    try {
      this.#resolve(this.#finish(this.results))
    } catch (err) {
      this.#reject(err as Error)
    }
  }
}

/** A sink for writes whose outcome nobody waits for (L2 promotions). */
export const IGNORE: Sink = { resolve: () => {}, reject: () => {} }

export const countTrue = (rs: unknown[]): number => rs.reduce<number>((n, r) => (r === true ? n + 1 : n), 0)
export const addNumbers = (rs: unknown[]): number => rs.reduce<number>((n, r) => n + (r as number), 0)

/** What differs between the owner's cache and an attached thread's. */
export interface Admin {
  stats(): Promise<CacheStats>
  resetStats(): Promise<void>
  close(): Promise<void>
  /** Owner only. */
  broker: Broker | undefined
  /** Owner only, with a bus. */
  busStats?: () => BusStats
  /** Owner only: its shard threads (for event masks). */
  threads?: () => ShardThread[]
}

/** State shared by a cache and its region handles. */
export interface Core {
  router: Router
  options: ResolvedOptions
  closed: boolean
  admin: Admin
  /** Publishes local writes to peers; undefined without a bus. */
  bus: BusPublisher | undefined
  /** Where applied remote ops and bus flushes are announced (owner only). */
  events: EventEmitter
  /** getOrCompute across threads: the owner's coordinator, or a relay to it. */
  flights: Flights
  /** getOrCompute on this thread: one promise per key being loaded (by flightKey). */
  loading: Map<string, Promise<unknown>>
  /** Runs a pool task; undefined without `loaders.pool` (or on attached threads). */
  runTask: ((t: PoolTask) => Promise<unknown>) | undefined
  /** The tiers below the shards: the Redis L2 and `tiers`, in order (owner only). */
  l2: TierChain | undefined
  /** Scheduled and on-demand backups (owner only, with `backup`). */
  backups: BackupSchedule | undefined
  /** Scheduled cleanup and rebalance (owner only, with `maintenance`). */
  maintenance: Maintenance | undefined
  /** Threshold alerts (owner only, with `alerts`). */
  alerts: AlertWatch | undefined
  /** Regions' write-through by region index: the owner's, or relays to it on an attached thread (regions without one are absent). */
  writes: Map<number, RegionWriter>
  /** Spans of this thread's operations (`tracing` of createCache or attachCache); undefined costs one check per operation. */
  tracer: CacheTracer | undefined
}

/**
 * Announces a bus event. A listener that throws must not break the bus (the
 * event comes from a Redis message handler): its error is rethrown on a later
 * tick, where it surfaces as an uncaught exception, as an EventEmitter
 * listener's error would.
 */
export function emit(events: EventEmitter, name: string, payload: unknown): void {
  try {
    events.emit(name, payload)
  } catch (err) {
    setImmediate(() => {
      throw err
    })
  }
}

/** A rejected promise of `err` (an Error; anything else thrown is wrapped): async methods reject, never throw. */
export function rejected<T>(err: unknown): Promise<T> {
  return Promise.reject(err instanceof Error ? err : new InternalError(String(err)))
}

/** Calls every shard's control API after the ops issued so far; `undefined` for a shard that is down for good. */
export async function control<T>(router: Router, threads: ShardThread[], call: (c: ShardThread['control']) => Promise<T>): Promise<(T | undefined)[]> {
  await router.drain()
  return Promise.all(threads.map((t) => (router.isDead(t.index) ? undefined : t.call(call))))
}
