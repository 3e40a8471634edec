/**
 * Read-through: `getOrCompute`'s path from a miss to a cached value. The
 * loader runs once per key however many callers miss it at once: on this
 * thread through `core.loading`, across threads through the flight
 * coordinator (src/client/flights.ts), across instances through a
 * lockAcrossInstances lease in L2 or on the bus. Functions of the region's
 * {@link RegionScope} rather than members of `CacheRegion`, whose
 * `getOrCompute` is the public entry (and keeps its TSDoc): the class's
 * `#private` members cannot be reached from another file, and none of this
 * is on the hot path of a plain get or set.
 */
import { CacheError, ClosedError, InvalidOptionError, InvalidValueError, LoadAbortedError, LoadTimeoutError, LoaderError } from '../errors.js'
import { resolveComputeOptions } from '../options/operations.js'
import type { ComputeOptions, ResolvedCompute, ResolvedSet } from '../options/operations.js'
import { checkKey, decodeValue, encodeValue } from '../wire/values.js'
import { describe } from '../messages.js'
import { ASK_SHARD } from '../client/direct_reads.js'
import { StaleValue, sendGetStale } from '../client/ops/values.js'
import { flightKey } from '../client/flights.js'
import type { FlightOutcome } from '../client/flights.js'
import { randomUUID } from 'node:crypto'
import { Deferred, rejected } from './core.js'
import type { Loader, PoolTask } from './core.js'
import type { RegionScope } from './scope.js'

/** `CacheRegion#getOrCompute` (src/api/region.ts), from its arguments' validation on. */
export function getOrCompute<T>(scope: RegionScope, key: string, loader: Loader<T> | PoolTask, options?: ComputeOptions): Promise<T> {
  let opts: ResolvedCompute
  try {
    scope.open()
    checkKey(key, scope.core.options.maxKeyBytes)
    opts = resolveComputeOptions(options, scope.core.options.maxKeyBytes)
    if (opts.lock && scope.core.l2?.leases !== true && (scope.core.bus?.lock === undefined || scope.core.bus.mode !== 'update')) {
      throw new InvalidOptionError(
        'options.lockAcrossInstances needs the Redis L2 tier (createCache({ l2 })) or a bus in update mode, where the instances that wait get the value from ' +
          '(tiers of createCache({ tiers }) hold no leases); on an attached thread, the owner\'s L2 tier',
      )
    }
    checkLoader(scope, loader)
  } catch (err) {
    return rejected(err)
  }
  const fk = flightKey(scope.region.index, key)
  const router = scope.core.router
  const value = router.readValue(scope.region.index, key)
  if (value !== ASK_SHARD) return Promise.resolve(value as T)
  const running = scope.core.loading.get(fk)
  if (running !== undefined) return running as Promise<T>
  const mark = router.fillMark(scope.region.index, key)
  const d = new Deferred<unknown>()
  sendGetStale(router, scope.region.index, key, router.shardOf(key), d, 0)
  return d.promise.then((hit) => {
    if (hit instanceof StaleValue) {
      // Served at once; one refresh runs behind it. Its failure keeps the stale value until grace ends.
      if (!scope.core.loading.has(fk)) load<T>(scope, fk, key, loader, opts).catch(() => {})
      return hit.value as T
    }
    if (hit !== undefined) return hit as T
    if (scope.core.l2 === undefined) return load<T>(scope, fk, key, loader, opts)
    return scope.fromL2<T>(key, undefined, mark).then((v) => (v !== undefined ? v : load<T>(scope, fk, key, loader, opts)))
  })
}

function checkLoader(scope: RegionScope, loader: unknown): void {
  if (typeof loader === 'function') return
  if (loader !== null && typeof loader === 'object' && typeof (loader as PoolTask).task === 'string') {
    const args = (loader as PoolTask).args
    if (args !== undefined && !Array.isArray(args)) throw new InvalidOptionError(`loader.args must be an array (got ${describe(args)})`)
    if (scope.core.runTask === undefined) {
      throw new InvalidOptionError('loader { task } needs a loader pool: createCache({ loaders: { pool: { filename } } }) (pool tasks run from the cache createCache returned)')
    }
    return
  }
  throw new InvalidOptionError(`loader must be a function or { task, args } for the loader pool (got ${describe(loader)})`)
}

/** One flight of `key`: this thread's callers share it; across threads, the coordinator picks who runs the loader. */
function load<T>(scope: RegionScope, fk: string, key: string, loader: Loader<T> | PoolTask, opts: ResolvedCompute): Promise<T> {
  const loading = scope.core.loading
  const again = loading.get(fk)
  if (again !== undefined) return again as Promise<T>
  const flight = fly<T>(scope, fk, key, loader, opts).finally(() => loading.delete(fk))
  loading.set(fk, flight)
  return flight
}

async function fly<T>(scope: RegionScope, fk: string, key: string, loader: Loader<T> | PoolTask, opts: ResolvedCompute): Promise<T> {
  const flights = scope.core.flights
  const turn = await flights.begin(fk)
  if (turn !== 'lead') return fromFlight<T>(scope, turn)
  let outcome: FlightOutcome | undefined
  /** Our lockAcrossInstances lease on the key, when we took one, and how to release it. */
  let lease: string | undefined
  let unlock: (() => Promise<void>) | undefined
  try {
    // A flight may have ended between our miss and our turn: its value is in the shards.
    // Peeked, not read: the caller's read was counted (a hit, miss or stale serve) already.
    const hit = await scope.peek<T>(key)
    if (hit !== undefined) {
      const enc = encodeValue(hit, scope.core.options.codec)
      outcome = { ok: true, tag: enc.tag, bytes: enc.bytes }
      return hit
    }
    if (opts.lock) {
      const ms = Number.isFinite(opts.timeoutMs) ? opts.timeoutMs : DEFAULT_LEASE_MS
      const token = randomUUID()
      // The lease lives in the Redis tier when there is one, else on the bus.
      const l2 = scope.core.l2?.leases === true ? scope.core.l2 : undefined
      const bus = scope.core.bus!
      const name = `${scope.region.name}:${key}`
      const got = l2 !== undefined ? await l2.lock(scope.region.name, key, token, ms) : await bus.lock!(name, token, ms)
      if (got === true) {
        lease = token
        unlock = l2 !== undefined ? () => l2.unlock(scope.region.name, key, token) : () => bus.unlock!(name, token)
      } else if (got === false) {
        // Another instance is loading it: its value arrives in L2, or by the bus into our
        // shards (update mode), or the lease runs out and we load it ourselves.
        if (l2 !== undefined) {
          const mark = scope.core.router.fillMark(scope.region.index, key)
          const startedAt = performance.now()
          const found = await l2.waitFor(scope.region.name, key, ms)
          if (found !== undefined) {
            const v = (await scope.fromL2<T>(key, found, mark, startedAt))!
            outcome = { ok: true, tag: found.enc.tag, bytes: Uint8Array.prototype.slice.call(found.enc.bytes) }
            return v
          }
        } else {
          const v = await waitForUpdate<T>(scope, key, ms)
          if (v !== undefined) {
            const enc = encodeValue(v, scope.core.options.codec)
            outcome = { ok: true, tag: enc.tag, bytes: enc.bytes }
            return v
          }
        }
      }
    }
    // With tracing, every load is a span, active while the loader runs: the loader's own spans nest under it.
    // On a write-through region, a write of the key made while the loader ran may be newer than what it read.
    const writer = scope.core.writes.get(scope.region.index)
    const mark = writer === undefined ? 0 : writer.mark(key)
    const tracer = scope.core.tracer
    const run = (): Promise<T> => runLoader(loader, scope.core.runTask)
    const value = await withTimeout(tracer === undefined ? run() : tracer.span('load', scope.region.name, run), opts.timeoutMs, key)
    if (value === undefined) {
      throw new InvalidValueError(`the loader of ${JSON.stringify(key)} returned undefined, which cannot be cached: return null to cache "not found"`)
    }
    const enc = encodeValue(value, scope.core.options.codec)
    const set: ResolvedSet = { ttl: opts.ttl, nx: false, xx: false, metadata: undefined, tags: opts.tags, grace: opts.graceMs }
    scope.open()
    scope.checkSize(key, enc, set)
    // Served but not cached when a write of the key is pending with the store, or was made meanwhile.
    if (writer === undefined || (!writer.busy(key) && writer.mark(key) === mark)) await scope.store(key, enc, set, true)
    outcome = { ok: true, tag: enc.tag, bytes: Uint8Array.prototype.slice.call(enc.bytes) }
    return value
  } catch (err) {
    const e = err as Error & { code?: string }
    outcome = { ok: false, error: { code: e?.code, message: e?.message ?? String(err), name: e?.name ?? 'Error' } }
    throw err
  } finally {
    flights.end(fk, outcome!)
    // After the value is in L2, where the waiting instances look for it (or after a failure).
    if (lease !== undefined) void unlock!().catch(() => {})
  }
}

/** Polls this instance's shards for a value another instance loads and sends by the bus (update mode). */
async function waitForUpdate<T>(scope: RegionScope, key: string, ms: number): Promise<T | undefined> {
  const deadline = Date.now() + ms
  for (;;) {
    // Peeks: each poll is not a read of the caller's (its miss was counted once).
    const v = await scope.peek<T>(key)
    if (v !== undefined || Date.now() >= deadline) return v
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** A flight led by another thread: its value, decoded here, or its error. */
function fromFlight<T>(scope: RegionScope, o: FlightOutcome): T {
  if (o.ok) return decodeValue(o.tag, Buffer.from(o.bytes.buffer, o.bytes.byteOffset, o.bytes.byteLength), scope.core.options.codec) as T
  const { code, message, name } = o.error
  if (code === 'E_LOAD_TIMEOUT') throw new LoadTimeoutError(message)
  if (code === 'E_LOAD_ABORTED') throw new LoadAbortedError(message)
  if (code === 'E_CLOSED') throw new ClosedError(message)
  if (code !== undefined && code.startsWith('E_') && code !== 'E_LOADER') throw new CacheError(code as never, message)
  throw new LoaderError(message, name)
}

/** The lease of lockAcrossInstances when getOrCompute has no timeout. */
const DEFAULT_LEASE_MS = 10_000

/** Calls a loader: a function here, or a task in the loader pool. */
function runLoader<T>(loader: Loader<T> | PoolTask, runTask: ((t: PoolTask) => Promise<unknown>) | undefined): Promise<T> {
  if (typeof loader === 'function') {
    try {
      return Promise.resolve(loader())
    } catch (err) {
      return Promise.reject(err)
    }
  }
  return runTask!(loader) as Promise<T>
}

/** The loader's promise, or E_LOAD_TIMEOUT after `ms`. The timer keeps the process alive, as any operation a caller awaits does. */
function withTimeout<T>(p: Promise<T>, ms: number, key: string): Promise<T> {
  if (ms === Infinity) return p
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new LoadTimeoutError(`the loader of ${JSON.stringify(key)} did not settle within options.timeout (${ms} ms)`)), ms)
    p.then(
      (v) => {
        clearTimeout(timer)
        resolve(v)
      },
      (e) => {
        clearTimeout(timer)
        reject(e)
      },
    )
  })
}

