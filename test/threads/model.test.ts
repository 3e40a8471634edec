/**
 * Model-based tests of the public API: random command sequences (fast-check
 * `fc.commands`) run against real caches (1–3 shard threads, three regions of
 * each policy, with and without compression, small budgets so that eviction
 * happens, near caches, an attached worker thread) and against an in-memory
 * reference model, which predicts every result and every stats counter.
 *
 * What the model knows, and where it only checks invariants:
 * - Eviction is modelled exactly per shard (keys route by `shardOfForTest`)
 *   where the policy makes it deterministic: FIFO always; LRU when no thread
 *   has a near cache (near hits reach the shard's LRU order only one in 16).
 *   Elsewhere an entry that may have been evicted is "maybe": a read finds it
 *   absent or holding its last written value (never another key's, never an
 *   older one), the result settles it, and entry counts stay within budget.
 * - TTLs: the cache takes no injected clock (the shard threads read their
 *   own), so short TTLs are modelled by windows: an entry set at [t0, t1] with
 *   ttl T expires somewhere in [t0 + T, t1 + T]; a read in that window may see
 *   it or not (and settles it), never another value. Short TTLs are used only
 *   in regions without budgets (an expired entry not yet swept still counts
 *   for eviction, at a time the model cannot know). RegionStore's own
 *   property test (test/unit/region_store.test.ts) covers TTLs on an injected clock.
 * - Same-tick bursts: several ops of one thread issued without awaiting, then
 *   awaited together; results must be those of the model applied in issue order.
 * - Bad inputs: each must reject (or throw, where documented) with a
 *   CacheError of the expected `code`, and a full dump of the cache (a
 *   snapshot: every region's keys, values, metadata and tags) must be the same
 *   before and after.
 *
 * Environment: SEED, PATH or MODEL_PATH, MODEL_REPLAY (replay a failure: the
 * line to run is printed, with the shrunk counterexample), NUM_RUNS, MODEL_COMMANDS (per run),
 * MODEL_MINUTES (a time-budgeted loop of seeds: `npm run test:model:long`),
 * MODEL_KNOWN_BUGS (comma-separated names of known bugs to leave out; empty:
 * check everything; unset: the KNOWN_BUGS set below).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { Worker } from 'node:worker_threads'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rmSync } from 'node:fs'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions, RegionOptions } from '../../src/index.js'
import { readSnapshot } from '../../src/ops/snapshot.js'
import { Glob } from '../../src/wire/glob.js'
import { ValueTag, ENTRY_OVERHEAD_BYTES, tagChargeBytes } from '../../src/wire/protocol.js'
import { compressIfSmaller, decompress } from '../../src/wire/compression.js'
import { monotonicNow } from '../../src/wire/shared_region.js'
import { BAD_CASES, REGION_NAMES, burst, canon, makeValue } from '../fixtures/model_ops.js'
import type { BatchItem, Op, Outcome, SetSpec, VSpec } from '../fixtures/model_ops.js'
import type { ModelClientMessage } from '../fixtures/model_client.js'

// ── known bugs ──────────────────────────────────────────────────────────────

/**
 * Known bugs, by the name of the shape of operation that shows each. While a
 * name is in this set, only that shape is left out (see where each name is
 * tested); MODEL_KNOWN_BUGS overrides the set. All five were fixed on main
 * (c72a7a1, 5d233b4) and merged here, so none is left out:
 * - 'lone-surrogate-keys': keys with a lone surrogate accepted (they collided as U+FFFD);
 * - 'region-default-handle': cache.region('default') was the cache (invalidateTag covered every region);
 * - 'scan-unknown-region-sync': cache.scan({ region: 'nope' }) threw synchronously;
 * - 'read-behind-eviction': same-tick reads ran ahead of an earlier write's eviction;
 * - 'getorcompute-double-miss': stats() counted a getOrCompute miss twice.
 * To leave one out again until its fix lands: add its name on a line of its own, e.g.
 *   'read-behind-eviction', // excluded until the fix for X lands
 */
const KNOWN_BUGS_COMMITTED = new Set<string>([])
const KNOWN_BUGS: Set<string> =
  process.env.MODEL_KNOWN_BUGS === undefined ? KNOWN_BUGS_COMMITTED : new Set(process.env.MODEL_KNOWN_BUGS.split(',').map((s) => s.trim()).filter(Boolean))

// ── profiles ─────────────────────────────────────────────────────────────────

interface RegionProfile {
  policy: 'lru' | 'fifo'
  maxEntries?: number
  maxBytes?: number
  compression: false | { minBytes: number; dictionary?: boolean }
  ttl?: string
}
interface Profile {
  name: string
  shards: number
  regions: [RegionProfile, RegionProfile, RegionProfile]
  near: false | { maxEntries: number }
  /** An attached worker thread, and its near cache. */
  attached: null | { near: false | { maxEntries: number } }
  /** Short TTLs (in the regions without budgets). */
  shortTtl: boolean
  /** The default spin settings; the others spin nothing (the machine is shared). */
  spin?: boolean
}

const MAX_KEY_BYTES = 48
const MAX_VALUE_BYTES = 600

/**
 * A fixed list, so that caches are reused across runs (a cache takes up to a
 * second or two to start on a busy machine): each run starts with every region cleared.
 */
const PROFILES: Profile[] = [
  {
    name: '1 shard, exact eviction',
    shards: 1,
    regions: [
      { policy: 'lru', maxEntries: 3, compression: false },
      { policy: 'fifo', maxEntries: 2, compression: { minBytes: 8 } },
      { policy: 'lru', maxBytes: 700, compression: { minBytes: 16 } },
    ],
    near: false,
    attached: null,
    shortTtl: false,
    spin: true,
  },
  {
    name: '2 shards, attached thread',
    shards: 2,
    regions: [
      { policy: 'fifo', maxBytes: 900, compression: false },
      { policy: 'lru', maxEntries: 4, compression: { minBytes: 8 } },
      { policy: 'lru', compression: { minBytes: 8, dictionary: true } },
    ],
    near: false,
    attached: { near: false },
    shortTtl: false,
  },
  {
    name: '3 shards, near caches on both threads',
    shards: 3,
    regions: [
      { policy: 'lru', maxEntries: 5, compression: false },
      { policy: 'fifo', maxEntries: 3, compression: { minBytes: 8 } },
      { policy: 'lru', maxBytes: 1500, compression: { minBytes: 32 } },
    ],
    near: { maxEntries: 4 },
    attached: { near: { maxEntries: 3 } },
    shortTtl: false,
  },
  {
    name: '2 shards, short TTLs, near cache',
    shards: 2,
    regions: [
      { policy: 'lru', compression: false, ttl: '1h' },
      { policy: 'fifo', compression: { minBytes: 8 } },
      { policy: 'lru', compression: { minBytes: 8, dictionary: true } },
    ],
    near: { maxEntries: 8 },
    attached: { near: false },
    shortTtl: true,
  },
  {
    name: '1 shard, attached thread with a near cache',
    shards: 1,
    regions: [
      { policy: 'lru', maxBytes: 600, compression: false },
      { policy: 'lru', maxEntries: 2, compression: { minBytes: 8 } },
      { policy: 'fifo', maxBytes: 800, compression: { minBytes: 8 } },
    ],
    near: false,
    attached: { near: { maxEntries: 4 } },
    shortTtl: false,
  },
  {
    name: '1 shard, maxEntries 1',
    shards: 1,
    regions: [
      { policy: 'lru', maxEntries: 1, compression: false },
      { policy: 'fifo', maxEntries: 1, compression: false },
      { policy: 'lru', maxEntries: 2, compression: { minBytes: 8 }, ttl: '1h' },
    ],
    near: false,
    attached: null,
    shortTtl: false,
  },
  {
    name: '3 shards, FIFO, near cache on the owner',
    shards: 3,
    regions: [
      { policy: 'fifo', maxEntries: 3, compression: false },
      { policy: 'lru', maxBytes: 1200, compression: { minBytes: 16 } },
      { policy: 'fifo', compression: false },
    ],
    near: { maxEntries: 2 },
    attached: { near: false },
    shortTtl: true,
  },
]

function cacheOptions(p: Profile): CacheOptions {
  const regions: Record<string, RegionOptions> = {}
  p.regions.forEach((r, i) => {
    const o: RegionOptions = { policy: r.policy, compression: r.compression }
    if (r.maxEntries !== undefined) o.maxEntries = r.maxEntries
    if (r.maxBytes !== undefined) o.maxBytes = r.maxBytes
    if (r.ttl !== undefined) o.ttl = r.ttl
    regions[REGION_NAMES[i]!] = o
  })
  return {
    shards: p.shards,
    regions,
    maxKeyBytes: MAX_KEY_BYTES,
    maxValueBytes: MAX_VALUE_BYTES,
    nearCache: p.near,
    ...(p.spin ? {} : { idleSpinMicros: 0, replySpinMicros: 0 }),
  }
}

// ── the attached thread ──────────────────────────────────────────────────────

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

class Client {
  readonly worker = new Worker(new URL('../fixtures/model_client.js', import.meta.url))
  #next = 1
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  constructor() {
    this.worker.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id)!
      this.#pending.delete(m.id)
      if (m.error !== undefined) p.reject(new Error(`attached thread: ${m.error}`))
      else p.resolve(m.result)
    })
    this.worker.on('error', (e) => {
      for (const p of this.#pending.values()) p.reject(e)
      this.#pending.clear()
    })
  }
  send<T>(msg: DistributiveOmit<ModelClientMessage, 'id'>, transfer: readonly unknown[] = []): Promise<T> {
    const id = this.#next++
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.worker.postMessage({ ...msg, id }, transfer as never)
    })
  }
}

interface World {
  profile: Profile
  cache: Cache
  client: Client | undefined
  /** Shard of each key of the pool. */
  shardOf: Map<string, number>
}

const worlds = new Map<number, World>()

async function world(i: number): Promise<World> {
  let w = worlds.get(i)
  if (w !== undefined && !w.cache.closed) return w
  const profile = PROFILES[i]!
  const cache = await createCache(cacheOptions(profile))
  let client: Client | undefined
  if (profile.attached !== null) {
    client = new Client()
    const h = cache.handle()
    await client.send({ cmd: 'attach', handle: h, nearCache: profile.attached.near }, h.transfer)
  }
  const shardOf = new Map(KEYS.map((k) => [k, cache.shardOfForTest(k)]))
  w = { profile, cache, client, shardOf }
  worlds.set(i, w)
  return w
}

async function closeWorlds(): Promise<void> {
  for (const w of worlds.values()) {
    if (w.client !== undefined) {
      await w.client.send({ cmd: 'close' }).catch(() => {})
      await w.client.worker.terminate()
    }
    await w.cache.close()
  }
  worlds.clear()
}

/** Empties every region and zeroes the counters, so that a reused cache starts a run like a new one. */
async function reset(w: World): Promise<void> {
  for (let r = 0; r < REGION_NAMES.length; r++) await w.cache.region(REGION_NAMES[r]!).clear()
  await w.cache.resetStats()
  const s = await w.cache.stats()
  assert.is(s.entries, 0, 'a cleared cache holds no entries')
}

// ── the pools the generators draw from ───────────────────────────────────────

const KEYS = ['a', 'b', 'c', 'd', 'e', 'k:1', 'k:2', 'k:10', 'n', '\u00e9', '\u65e5\u672c', '\u{1F600}x', '__proto__']
const TAGS = ['t1', 't2', 't3']
const GLOBS = ['*', 'k:*', '?', '[a-c]', 'k:[!1]*', '__*', '*x', '\u00e9']
const METAS: Record<string, unknown>[] = [{ m: 1 }, { s: '\u00e9', l: [1, 2] }]

const keyArb = fc.constantFrom(...KEYS)
const regionArb = fc.nat({ max: 2 })
const viaArb = fc.constantFrom<'cache' | 'handle'>('cache', 'handle')
const valueArb: fc.Arbitrary<VSpec> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('', 'x', 'hello', '5', '-3', '1.5', '007', '1e3', ' 5', '\u00e9\u{1F600}', 'true').map((s) => ({ s })) },
  { weight: 4, arbitrary: fc.constantFrom<unknown>(0, 1, -2, 2.5, 1e21, 1e308, null, true, [1, 2], { a: 1, b: 'x' }, { n: { m: [1, {}] } }).map((j) => ({ j })) },
  { weight: 1, arbitrary: fc.constantFrom('', '00', 'deadbeef', '3132').map((b) => ({ b })) },
  { weight: 1, arbitrary: fc.constantFrom('', 'ff', '0102030405').map((u) => ({ u })) },
  { weight: 2, arbitrary: fc.record({ rs: fc.constantFrom('ab', 'xyz ', '\u00e9'), n: fc.integer({ min: 4, max: 160 }) }) },
  { weight: 1, arbitrary: fc.record({ rb: fc.integer({ min: 1, max: 4 }), n: fc.integer({ min: 8, max: 320 }) }) },
)
/** 'short' TTLs become 5–40 ms where the profile allows them, '1h' elsewhere. */
const ttlArb = fc.oneof(fc.constantFrom<number | string>(Infinity, '1h', 3_600_000), fc.integer({ min: 5, max: 40 }).map((n) => `short:${n}`))
const setSpecArb: fc.Arbitrary<SetSpec | undefined> = fc.option(
  fc.record(
    {
      ttl: ttlArb,
      nx: fc.constant(true),
      xx: fc.constant(true),
      meta: fc.constantFrom(...METAS),
      tags: fc.subarray(TAGS),
    },
    { requiredKeys: [] },
  ).map((o) => {
    if (o.nx && o.xx) delete o.xx
    return o
  }),
  { nil: undefined, freq: 3 },
)

type OpArb = fc.Arbitrary<Op>
const k1 = <T extends string>(op: T) => fc.record({ op: fc.constant(op), r: regionArb, via: viaArb, key: keyArb })
const burstableOpArb: OpArb = fc.oneof(
  { weight: 6, arbitrary: k1('get') },
  { weight: 3, arbitrary: k1('getSync') },
  { weight: 2, arbitrary: k1('has') },
  { weight: 1, arbitrary: k1('ttl') },
  { weight: 2, arbitrary: k1('getEntry') },
  { weight: 2, arbitrary: k1('delete') },
  { weight: 1, arbitrary: k1('take') },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('mget' as const, 'mhas' as const, 'mdelete' as const), r: regionArb, via: viaArb, keys: fc.array(keyArb, { maxLength: 4 }) }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant('set' as const), r: regionArb, via: viaArb, key: keyArb, value: valueArb, opts: setSpecArb }, { requiredKeys: ['op', 'r', 'via', 'key', 'value'] }) },
  {
    weight: 2,
    arbitrary: fc.record(
      { op: fc.constant('mset' as const), r: regionArb, via: viaArb, entries: fc.array(fc.tuple(keyArb, valueArb), { maxLength: 4 }), opts: setSpecArb },
      { requiredKeys: ['op', 'r', 'via', 'entries'] },
    ),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('incr' as const), r: regionArb, via: viaArb, key: keyArb, by: fc.constantFrom(1, -1, 3, 0.5, 1e308) }) },
  {
    weight: 2,
    arbitrary: fc.record(
      { op: fc.constant('cas' as const), r: regionArb, via: viaArb, key: keyArb, expected: fc.option(valueArb, { nil: undefined }), next: valueArb, opts: setSpecArb.map((o) => (o === undefined ? o : { ...o, nx: undefined, xx: undefined })) },
      { requiredKeys: ['op', 'r', 'via', 'key', 'expected', 'next'] },
    ),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('touch' as const), r: regionArb, via: viaArb, key: keyArb, ttl: ttlArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('invalidateTag' as const), r: regionArb, via: viaArb, tag: fc.constantFrom(...TAGS) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('deleteByPattern' as const), r: regionArb, via: viaArb, glob: fc.constantFrom(...GLOBS) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('keys' as const), r: regionArb, via: viaArb, glob: fc.option(fc.constantFrom(...GLOBS), { nil: undefined }) }, { requiredKeys: ['op', 'r', 'via'] }) },
)
const batchItemArb = burstableOpArb
  .filter((o) => ['get', 'has', 'delete', 'take', 'set', 'incr', 'cas', 'touch'].includes(o.op))
  .map((o) => {
    const { r: _r, via: _v, ...item } = o as Op & Record<string, unknown>
    return item as unknown as BatchItem
  })
const batchOpArb: OpArb = fc.record({ op: fc.constant('batch' as const), r: regionArb, via: viaArb, items: fc.array(batchItemArb, { minLength: 1, maxLength: 6 }) })

const soloOpArb: OpArb = fc.oneof(
  { weight: 1, arbitrary: batchOpArb },
  { weight: 10, arbitrary: burstableOpArb },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        op: fc.constant('getOrCompute' as const),
        r: regionArb,
        via: viaArb,
        key: keyArb,
        load: fc.oneof({ weight: 6, arbitrary: valueArb }, { weight: 1, arbitrary: fc.constantFrom<'undefined' | 'throw'>('undefined', 'throw') }),
        opts: fc.option(fc.record({ ttl: ttlArb, tags: fc.subarray(TAGS) }, { requiredKeys: [] }), { nil: undefined }),
      },
      { requiredKeys: ['op', 'r', 'via', 'key', 'load'] },
    ),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('scan' as const), r: regionArb, via: viaArb, match: fc.option(fc.constantFrom(...GLOBS), { nil: undefined }), count: fc.integer({ min: 1, max: 5 }), entries: fc.boolean() }, { requiredKeys: ['op', 'r', 'via', 'count', 'entries'] }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('clear' as const, 'cleanupExpired' as const), r: regionArb, via: viaArb }) },
)

// ── the model ────────────────────────────────────────────────────────────────

/** Clocks of the threads agree to a few µs; the model allows this much more. */
const CLOCK_SLACK_MS = 3
const NUMBER_TEXT = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/

interface Ent {
  key: string
  tag: number
  raw: Buffer
  canon: string
  /** Metadata as JSON text. */
  meta: string | undefined
  tags: string[]
  /** Tags it may or may not carry (after an incr whose outcome did not say whether it created the entry). */
  tagsMaybe: string[]
  /** Expiry window on the shared monotonic clock; Infinity for none. */
  lo: number
  hi: number
  /** It may have been evicted. */
  maybe: boolean
  /** Metadata and TTL not known exactly. */
  unsure: boolean
  /** Stored size and compression; undefined where a dictionary decides. */
  stored: number | undefined
  compressed: boolean | undefined
}

interface Counters {
  hits: number
  misses: number
  sets: number
  deletes: number
  evictions: number
}

class RegionModel {
  readonly lists: Ent[][]
  readonly maxEntries: number[]
  readonly maxBytes: number[]
  /** The smallest share, which decides whether an entry can be stored at all. */
  readonly shareBytes: number
  readonly defaultTtl: number
  readonly compressMin: number
  readonly dict: boolean
  readonly budgeted: boolean
  readonly lru: boolean
  /** Per shard: whether the list order (and so eviction) is known exactly. */
  readonly exact: boolean[]
  readonly c: Counters = { hits: 0, misses: 0, sets: 0, deletes: 0, evictions: 0 }
  evictionsExact = true
  gaugesExact = true
  missesExact = true
  deletesExact = true
  /** Entries the model dropped as expired that the shard may not have swept yet. */
  ghosts = 0
  /** A getOrCompute missed here (see 'getorcompute-double-miss'). */
  computeMissed = false

  constructor(
    readonly name: string,
    readonly index: number,
    p: RegionProfile,
    profile: Profile,
  ) {
    const shards = profile.shards
    const totalEntries = p.maxEntries ?? Infinity
    const totalBytes = p.maxBytes ?? (p.maxEntries === undefined ? 64 * 2 ** 20 : Infinity)
    const split = (t: number, s: number): number => (t === Infinity ? Infinity : Math.floor(t / shards) + (s < t % shards ? 1 : 0))
    this.lists = Array.from({ length: shards }, () => [])
    this.maxEntries = Array.from({ length: shards }, (_, s) => split(totalEntries, s))
    this.maxBytes = Array.from({ length: shards }, (_, s) => split(totalBytes, s))
    this.shareBytes = Math.floor(totalBytes / shards)
    this.defaultTtl = p.ttl === '1h' ? 3_600_000 : Infinity
    this.compressMin = p.compression === false ? Infinity : p.compression.minBytes
    this.dict = p.compression !== false && p.compression.dictionary === true
    this.budgeted = p.maxEntries !== undefined || p.maxBytes !== undefined
    this.lru = p.policy === 'lru'
    const anyNear = profile.near !== false || (profile.attached !== null && profile.attached.near !== false)
    this.exact = Array.from({ length: shards }, () => !(this.lru && anyNear && this.budgeted))
    if (!this.exact.every(Boolean)) this.evictionsExact = false
    if (this.budgeted && this.dict) throw new Error('profile: a dictionary region must have no budget (stored sizes are not modelled)')
  }
}

/** What one batch (a burst, or a single op) did so far, per region and shard: for the LRU order of direct reads. */
class BatchState {
  readonly wroteRS = new Set<string>()
  readonly wroteR = new Set<number>()
  readonly wroteS = new Set<number>()
  /** Entries moved to the tail by reads the shard served in this batch, before any write there. */
  readonly frameTouched = new Map<string, Ent[]>()
  readonly degrade = new Set<string>()
  constructor(readonly size: number) {}
  wrote(r: number, s: number): void {
    this.wroteRS.add(`${r}/${s}`)
    this.wroteR.add(r)
    this.wroteS.add(s)
  }
}

function encodeSpec(v: VSpec): { tag: number; raw: Buffer } {
  const x = makeValue(v)
  if (typeof x === 'string') return { tag: ValueTag.STRING, raw: Buffer.from(x, 'utf8') }
  if (Buffer.isBuffer(x)) return { tag: ValueTag.BUFFER, raw: x }
  if (x instanceof Uint8Array) return { tag: ValueTag.UINT8ARRAY, raw: Buffer.from(x) }
  return { tag: ValueTag.CODEC, raw: Buffer.from(JSON.stringify(x), 'utf8') }
}

function canonOf(tag: number, raw: Buffer): string {
  switch (tag) {
    case ValueTag.STRING:
      return 'S:' + raw.toString('utf8')
    case ValueTag.BUFFER:
      return 'B:' + raw.toString('hex')
    case ValueTag.UINT8ARRAY:
      return 'u:' + raw.toString('hex')
    default:
      return 'J:' + JSON.stringify(JSON.parse(raw.toString('utf8')))
  }
}

function parseTtlMs(t: number | string): number {
  if (typeof t === 'number') return t
  if (t === '1h') return 3_600_000
  throw new Error(`model: ttl ${t}`)
}

class ModelError extends Error {}

function fail(msg: string): never {
  throw new ModelError(msg)
}

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x === Infinity ? 'Infinity' : x === undefined ? '<undefined>' : x))
}

interface Figures {
  ops: number
  bad: number
  runs: number
  seeds: number
  bursts: number
  /** Evictions the model predicted exactly (and stats() or a read then confirmed). */
  evictions: number
}
const figures: Figures = { ops: 0, bad: 0, runs: 0, seeds: 0, bursts: 0, evictions: 0 }

class Model {
  readonly regions: RegionModel[]
  constructor(
    readonly w: World,
    readonly log: string[],
  ) {
    this.regions = w.profile.regions.map((p, i) => new RegionModel(REGION_NAMES[i]!, i, p, w.profile))
  }

  shard(key: string): number {
    return this.w.shardOf.get(key)!
  }

  find(R: RegionModel, key: string): Ent | undefined {
    return R.lists[this.shard(key)]!.find((e) => e.key === key)
  }

  remove(R: RegionModel, e: Ent): void {
    const list = R.lists[this.shard(e.key)]!
    const i = list.indexOf(e)
    if (i >= 0) list.splice(i, 1)
  }

  /**
   * Drops an entry a read found absent. One with a TTL may have expired rather
   * than been evicted, and reads that skip expired entries (direct reads, scan,
   * snapshot) leave it in the shard until something sweeps it: a ghost.
   */
  drop(R: RegionModel, e: Ent): void {
    this.remove(R, e)
    if (e.lo !== Infinity) R.ghosts++
  }

  /** 'gone' (and dropped), 'yes' or 'maybe', for an op that ran within [t0, t1]. */
  presence(R: RegionModel, e: Ent, t0: number, t1: number): 'gone' | 'yes' | 'maybe' {
    if (e.hi !== Infinity && t0 > e.hi + CLOCK_SLACK_MS) {
      this.remove(R, e)
      R.ghosts++
      return 'gone'
    }
    if (e.maybe || (e.lo !== Infinity && t1 + CLOCK_SLACK_MS >= e.lo)) return 'maybe'
    return 'yes'
  }

  /** The entry of `key` if it may be present (expired ones dropped). */
  live(R: RegionModel, key: string, t0: number, t1: number): { e: Ent; p: 'yes' | 'maybe' } | undefined {
    const e = this.find(R, key)
    if (e === undefined) return undefined
    const p = this.presence(R, e, t0, t1)
    return p === 'gone' ? undefined : { e, p }
  }

  charge(e: Ent): number {
    // Tags are charged too (src/wire/protocol.ts tagChargeBytes); an entry with tags it may or may not have is unsure, never checked exactly.
    return Buffer.byteLength(e.key) + (e.stored ?? e.raw.length) + (e.meta === undefined ? 0 : Buffer.byteLength(e.meta)) + tagChargeBytes(e.tags) + ENTRY_OVERHEAD_BYTES
  }

  /** The shard's eviction after a write of `keep`. */
  evict(R: RegionModel, s: number, keep: Ent): void {
    const list = R.lists[s]!
    const over = (): boolean => list.length > R.maxEntries[s]! || list.reduce((n, e) => n + this.charge(e), 0) > R.maxBytes[s]!
    if (R.exact[s]) {
      while (over()) {
        const victim = list[0] === keep ? list[1] : list[0]
        if (victim === undefined) return
        list.splice(list.indexOf(victim), 1)
        R.c.evictions++
        figures.evictions++
      }
    } else if (over()) {
      for (const e of list) if (e !== keep) e.maybe = true
      R.evictionsExact = false
    }
  }

  /** Stores a value as the shard's setAt does: in place (moved to the tail under LRU) or appended; then evicts. */
  store(R: RegionModel, key: string, tag: number, raw: Buffer, fields: { lo: number; hi: number; meta: string | undefined; tags: string[]; unsure?: boolean; tagsMaybe?: string[] }, batch: BatchState): Ent {
    const s = this.shard(key)
    const list = R.lists[s]!
    let stored: number | undefined = raw.length
    let compressed: boolean | undefined = false
    if (raw.length >= R.compressMin) {
      if (R.dict) stored = compressed = undefined
      else {
        const c = compressIfSmaller(raw)
        if (c !== undefined) {
          stored = c.length
          compressed = true
        }
      }
    }
    const e: Ent = {
      key,
      tag,
      raw: Buffer.from(raw),
      canon: canonOf(tag, raw),
      meta: fields.meta,
      tags: [...new Set(fields.tags)],
      tagsMaybe: fields.tagsMaybe ?? [],
      lo: fields.lo,
      hi: fields.hi,
      maybe: false,
      unsure: fields.unsure ?? false,
      stored,
      compressed,
    }
    const i = list.findIndex((x) => x.key === key)
    if (i >= 0) {
      if (R.lru) {
        list.splice(i, 1)
        list.push(e)
      } else list[i] = e
    } else list.push(e)
    R.c.sets++
    batch.wrote(R.index, s)
    this.evict(R, s, e)
    return e
  }

  /** A read that found `e` (LRU: to the tail), ordered as the threads really apply it (see BatchState). */
  touch(R: RegionModel, e: Ent, how: 'frame' | 'direct', batch: BatchState): void {
    const s = this.shard(e.key)
    if (!R.lru || !R.budgeted || !R.exact[s]) return
    const rs = `${R.index}/${s}`
    const list = R.lists[s]!
    const toTail = (x: Ent): void => {
      const i = list.indexOf(x)
      if (i >= 0) {
        list.splice(i, 1)
        list.push(x)
      }
    }
    // A read after a write of the same tick sees the state after it, but it may still be served from
    // shared memory (when the write cannot evict) and reach the LRU order before the write: the order is
    // unknown, as after a write to another shard or region.
    let path: 'frame' | 'direct' | 'unknown' = how
    if (how === 'direct' && (batch.wroteR.has(R.index) || batch.wroteS.has(s))) path = 'unknown'
    toTail(e)
    if (path === 'unknown') {
      if (batch.size > 1) {
        // At once, not only when the batch ends: a later write of the same batch may evict by this order.
        R.exact[s] = false
        R.evictionsExact = false
        batch.degrade.add(rs)
      }
    } else if (path === 'direct') {
      // Reads from shared memory reach the shard's LRU before the frame: they go before this batch's shard-served reads.
      for (const x of batch.frameTouched.get(rs) ?? []) toTail(x)
    } else if (!batch.wroteRS.has(rs)) {
      let l = batch.frameTouched.get(rs)
      if (l === undefined) batch.frameTouched.set(rs, (l = []))
      l.push(e)
    }
  }

  finish(batch: BatchState): void {
    for (const rs of batch.degrade) {
      const [r, s] = rs.split('/').map(Number) as [number, number]
      this.regions[r]!.exact[s] = false
      this.regions[r]!.evictionsExact = false
    }
  }

  /** How a read of an entry reaches the shard's LRU order: from shared memory, or in the frame (compressed values). */
  readPath(R: RegionModel, e: Ent): 'frame' | 'direct' {
    return e.compressed === false ? 'direct' : 'frame'
  }

  /** A read (get, mget, getEntry, take...) of `key` that returned `got`; counts a hit or a miss; returns the entry found. */
  observeRead(R: RegionModel, key: string, got: string, t0: number, t1: number, how: 'frame' | 'direct' | 'entry', batch: BatchState, what: string): Ent | undefined {
    const l = this.live(R, key, t0, t1)
    if (l === undefined) {
      if (got !== 'U') fail(`${what}: got ${got}, but ${show(key)} has no entry in region ${R.name}`)
      R.c.misses++
      return undefined
    }
    const { e, p } = l
    if (got === 'U') {
      if (p === 'yes') fail(`${what}: got nothing, but ${show(key)} holds ${e.canon} in region ${R.name}`)
      this.drop(R, e)
      R.c.misses++
      return undefined
    }
    if (got !== e.canon) fail(`${what}: got ${got}, but the last value written to ${show(key)} in region ${R.name} is ${e.canon}`)
    e.maybe = false
    R.c.hits++
    this.touch(R, e, how === 'entry' ? 'frame' : how === 'frame' ? 'frame' : this.readPath(R, e), batch)
    return e
  }

  /** A has-like answer (has, touch, delete...) that says whether the entry was present. */
  observePresence(R: RegionModel, key: string, present: boolean, t0: number, t1: number, what: string): Ent | undefined {
    const l = this.live(R, key, t0, t1)
    if (l === undefined) {
      if (present) fail(`${what}: says present, but ${show(key)} has no entry in region ${R.name}`)
      return undefined
    }
    if (!present) {
      if (l.p === 'yes') fail(`${what}: says absent, but ${show(key)} holds ${l.e.canon} in region ${R.name}`)
      this.drop(R, l.e)
      return undefined
    }
    l.e.maybe = false
    return l.e
  }

  checkTtl(e: Ent, got: number, t0: number, t1: number, what: string): void {
    if (e.unsure) return
    if (e.hi === Infinity) {
      if (got !== Infinity) fail(`${what}: ttl ${got}, expected Infinity`)
      return
    }
    const min = Math.max(1, Math.ceil(e.lo - t1 - CLOCK_SLACK_MS) - 1)
    const max = Math.ceil(e.hi - t0 + CLOCK_SLACK_MS) + 1
    if (!(got >= 1 && got >= min && got <= max)) fail(`${what}: ttl ${got}, expected within [${min}, ${max}]`)
  }

  /** Expiry window of a write issued within [t0, t1] with `ttl` (undefined: the region's). */
  window(R: RegionModel, ttl: number | string | undefined, t0: number, t1: number): { lo: number; hi: number } {
    const ms = ttl === undefined ? R.defaultTtl : parseTtlMs(ttl)
    return ms === Infinity ? { lo: Infinity, hi: Infinity } : { lo: t0 + ms, hi: t1 + ms }
  }

  /** The error a set of this entry must be refused with, if any (what #checkSize decides). */
  sizeError(R: RegionModel, key: string, raw: Buffer, meta: string | undefined, tags?: readonly string[]): string | undefined {
    if (raw.length > MAX_VALUE_BYTES) return 'E_VALUE_TOO_LARGE'
    const charge = Buffer.byteLength(key) + raw.length + (meta === undefined ? 0 : Buffer.byteLength(meta)) + tagChargeBytes(tags) + ENTRY_OVERHEAD_BYTES
    return charge > R.shareBytes ? 'E_VALUE_TOO_LARGE' : undefined
  }

  /** Applies one op and checks its outcome. */
  apply(op: Op, out: Outcome, t0: number, t1: number, batch: BatchState): void {
    const what = `${op.op} ${show(op)} → ${show(out)}`
    if (op.op === 'bad') return this.applyBad(op.bad, out, what)
    if (!out.ok && out.sync) fail(`${what}: threw synchronously`)
    const R = this.regions[op.r]!
    const ok = (): unknown => {
      if (!out.ok) fail(`${what}: rejected, expected a result`)
      return out.v
    }
    const err = (code: string): void => {
      if (out.ok) fail(`${what}: resolved, expected a rejection with ${code}`)
      if (!out.cacheError || out.code !== code) fail(`${what}: expected a CacheError with code ${code}`)
    }
    switch (op.op) {
      case 'batch': {
        // cache.batch(): its ops issued in one go, each with its own outcome, applied in order.
        const outs = ok() as Outcome[]
        if (outs.length !== op.items.length) fail(`${what}: ${outs.length} results for ${op.items.length} ops`)
        op.items.forEach((it, i) => this.apply({ ...it, r: op.r, via: op.via } as Op, outs[i]!, t0, t1, batch))
        return
      }
      case 'get':
        this.observeRead(R, op.key, ok() as string, t0, t1, 'direct', batch, what)
        return
      case 'getSync': {
        const [a, b] = ok() as [string, string]
        if (a !== 'U') this.observeRead(R, op.key, a, t0, t1, 'direct', batch, what)
        else if (b !== 'U') this.observeRead(R, op.key, b, t0, t1, 'direct', batch, what)
        else {
          const l = this.live(R, op.key, t0, t1)
          const s = this.shard(op.key)
          // Undefined is an answer only where nothing could hold the read back: a value not stored compressed, no write pending.
          const informative = l !== undefined && l.e.compressed === false && !batch.wroteR.has(R.index) && !batch.wroteS.has(s)
          if (informative && l.p === 'yes') fail(`${what}: undefined, but ${show(op.key)} holds ${l.e.canon} (stored uncompressed, no write pending)`)
          if (informative && l.p === 'maybe') this.drop(R, l.e)
        }
        return
      }
      case 'has':
        this.observePresence(R, op.key, ok() as boolean, t0, t1, what)
        return
      case 'ttl': {
        const v = ok() as number | 'U'
        const e = this.observePresence(R, op.key, v !== 'U', t0, t1, what)
        if (e !== undefined) this.checkTtl(e, v as number, t0, t1, what)
        return
      }
      case 'getEntry': {
        const v = ok() as 'U' | { v: string; meta: string; size: number; stored: number; compressed: boolean; ttl: number }
        const e = this.observeRead(R, op.key, v === 'U' ? 'U' : v.v, t0, t1, 'entry', batch, what)
        if (e === undefined || v === 'U') return
        if (!e.unsure && v.meta !== (e.meta ?? 'U')) fail(`${what}: metadata ${v.meta}, expected ${e.meta ?? 'none'}`)
        if (v.size !== e.raw.length) fail(`${what}: sizeBytes ${v.size}, expected ${e.raw.length}`)
        if (e.stored !== undefined && (v.stored !== e.stored || v.compressed !== e.compressed)) {
          fail(`${what}: storedBytes ${v.stored} compressed ${v.compressed}, expected ${e.stored} ${e.compressed}`)
        }
        if (e.stored === undefined) {
          e.stored = v.stored
          e.compressed = v.compressed
        }
        this.checkTtl(e, v.ttl, t0, t1, what)
        return
      }
      case 'delete': {
        const v = ok() as boolean
        const e = this.observePresence(R, op.key, v, t0, t1, what)
        if (e !== undefined) {
          this.remove(R, e)
          R.c.deletes++
        }
        batch.wrote(R.index, this.shard(op.key))
        return
      }
      case 'take': {
        const e = this.observeRead(R, op.key, ok() as string, t0, t1, 'entry', batch, what)
        if (e !== undefined) {
          this.remove(R, e)
          R.c.deletes++
        }
        batch.wrote(R.index, this.shard(op.key))
        return
      }
      case 'mget': {
        const vs = ok() as string[]
        if (vs.length !== op.keys.length) fail(`${what}: ${vs.length} values for ${op.keys.length} keys`)
        op.keys.forEach((k, i) => this.observeRead(R, k, vs[i]!, t0, t1, 'direct', batch, `${what} [${i}]`))
        return
      }
      case 'mhas': {
        const vs = ok() as boolean[]
        if (vs.length !== op.keys.length) fail(`${what}: ${vs.length} answers for ${op.keys.length} keys`)
        op.keys.forEach((k, i) => this.observePresence(R, k, vs[i]!, t0, t1, `${what} [${i}]`))
        return
      }
      case 'mdelete': {
        const n = ok() as number
        let certain = 0
        let maybe = 0
        for (const k of new Set(op.keys)) {
          const l = this.live(R, k, t0, t1)
          if (l !== undefined) {
            if (l.p === 'yes') certain++
            else maybe++
            this.remove(R, l.e)
          }
          batch.wrote(R.index, this.shard(k))
        }
        if (n < certain || n > certain + maybe) fail(`${what}: removed ${n}, expected ${maybe ? `${certain} to ${certain + maybe}` : certain}`)
        R.c.deletes += n
        return
      }
      case 'set':
      case 'mset': {
        const entries: [string, VSpec][] = op.op === 'set' ? [[op.key, op.value]] : op.entries
        const o = op.opts ?? {}
        const meta = o.meta === undefined ? undefined : JSON.stringify(o.meta)
        const encs = entries.map(([k, v]) => ({ k, ...encodeSpec(v) }))
        for (const x of encs) {
          const e = this.sizeError(R, x.k, x.raw, meta, o.tags)
          if (e !== undefined) return err(e)
        }
        const results: boolean[] = []
        for (const x of encs) {
          const l = this.live(R, x.k, t0, t1)
          let doIt: boolean
          if (!o.nx && !o.xx) doIt = true
          else if (l === undefined) doIt = !!o.nx
          else if (l.p === 'yes') doIt = !!o.xx
          else {
            // Settled by the answer (mset: only a single key's, see transform()).
            if (op.op !== 'set' && entries.length > 1) fail(`model: mset with nx/xx over a maybe-entry ${show(x.k)}`)
            const stored = out.ok ? out.v === true || out.v === 1 : false
            doIt = stored
            if (o.nx === true && stored) this.remove(R, l.e)
            if (o.xx === true && !stored) this.remove(R, l.e)
            if (!stored) l.e.maybe = false
          }
          results.push(doIt)
          if (doIt) this.store(R, x.k, x.tag, x.raw, { ...this.window(R, o.ttl, t0, t1), meta, tags: o.tags ?? [] }, batch)
          else batch.wrote(R.index, this.shard(x.k))
        }
        const expect = op.op === 'set' ? results[0] : results.filter(Boolean).length
        if (ok() !== expect) fail(`${what}: expected ${show(expect)}`)
        return
      }
      case 'incr': {
        const l = this.live(R, op.key, t0, t1)
        const s = this.shard(op.key)
        batch.wrote(R.index, s)
        const absent = (): number | 'E' => (Number.isFinite(0 + op.by) ? 0 + op.by : 'E')
        const present = (e: Ent): number | 'E' => {
          const text = e.tag === ValueTag.STRING || e.tag === ValueTag.CODEC ? e.raw.toString('utf8') : ''
          if (!NUMBER_TEXT.test(text)) return 'E'
          const sum = Number(text) + op.by
          return Number.isFinite(sum) ? sum : 'E'
        }
        const got: number | 'E' = out.ok ? (out.v as number) : 'E'
        if (!out.ok && (!out.cacheError || out.code !== 'E_NOT_A_NUMBER')) fail(`${what}: expected E_NOT_A_NUMBER or a sum`)
        const viaAbsent = absent()
        const viaPresent = l === undefined ? undefined : present(l.e)
        let was: 'absent' | 'present' | 'either'
        if (l === undefined) was = 'absent'
        else if (l.p === 'yes') was = 'present'
        else if (got === viaAbsent && got === viaPresent) was = 'either'
        else if (got === viaPresent) was = 'present'
        else was = 'absent'
        const expect = was === 'absent' ? viaAbsent : viaPresent!
        if (got !== expect) fail(`${what}: expected ${expect === 'E' ? 'E_NOT_A_NUMBER' : expect}`)
        if (was === 'absent' && l !== undefined) this.remove(R, l.e)
        if (got === 'E') {
          if (was !== 'absent') l!.e.maybe = false
          return
        }
        const raw = Buffer.from(String(got))
        if (was === 'absent') this.store(R, op.key, ValueTag.CODEC, raw, { ...this.window(R, undefined, t0, t1), meta: undefined, tags: [] }, batch)
        else {
          const e = l!.e
          const win = this.window(R, undefined, t0, t1)
          this.store(R, op.key, e.tag, raw, {
            lo: was === 'either' ? Math.min(e.lo, win.lo) : e.lo,
            hi: was === 'either' ? Math.max(e.hi, win.hi) : Math.max(e.hi, e.hi === Infinity ? Infinity : t1 + 1),
            meta: e.meta,
            tags: was === 'either' ? [] : e.tags,
            tagsMaybe: was === 'either' ? [...e.tags, ...e.tagsMaybe] : e.tagsMaybe,
            unsure: e.unsure || was === 'either',
          }, batch)
        }
        return
      }
      case 'cas': {
        const o = op.opts ?? {}
        const meta = o.meta === undefined ? undefined : JSON.stringify(o.meta)
        const next = encodeSpec(op.next)
        const sizeErr = this.sizeError(R, op.key, next.raw, meta, (o as { tags?: string[] }).tags)
        if (sizeErr !== undefined) return err(sizeErr)
        const want = op.expected === undefined ? undefined : encodeSpec(op.expected)
        const l = this.live(R, op.key, t0, t1)
        batch.wrote(R.index, this.shard(op.key))
        const matches = (e: Ent | undefined): boolean => (want === undefined ? e === undefined : e !== undefined && e.tag === want.tag && e.raw.equals(want.raw))
        const got = ok() as boolean
        let e = l?.e
        if (l !== undefined && l.p === 'maybe') {
          // Settled by the answer, when present and absent would answer differently.
          if (matches(l.e) !== matches(undefined)) {
            if (got !== matches(l.e)) {
              this.remove(R, l.e)
              e = undefined
            } else l.e.maybe = false
          }
        }
        const expect = matches(e)
        if (got !== expect) fail(`${what}: expected ${expect}`)
        if (got) this.store(R, op.key, next.tag, next.raw, { ...this.window(R, o.ttl, t0, t1), meta, tags: o.tags ?? [] }, batch)
        return
      }
      case 'touch': {
        const e = this.observePresence(R, op.key, ok() as boolean, t0, t1, what)
        if (e !== undefined) {
          const win = this.window(R, op.ttl, t0, t1)
          e.lo = win.lo
          e.hi = win.hi
        }
        batch.wrote(R.index, this.shard(op.key))
        return
      }
      case 'getOrCompute': {
        const l = this.live(R, op.key, t0, t1)
        const loaded = (out as { loaded?: boolean }).loaded === true
        if (l !== undefined && (l.p === 'yes' || !loaded)) {
          if (loaded) fail(`${what}: ran the loader, but ${show(op.key)} holds ${l.e.canon}`)
          this.observeRead(R, op.key, ok() as string, t0, t1, 'direct', batch, what)
          return
        }
        if (l !== undefined) this.remove(R, l.e)
        if (!loaded) fail(`${what}: did not run the loader on a miss`)
        R.c.misses++
        R.computeMissed = true
        if (op.load === 'undefined') return err('E_INVALID_VALUE')
        if (op.load === 'throw') {
          if (out.ok || out.message !== 'loader failed' || out.cacheError) fail(`${what}: expected the loader's own error`)
          return
        }
        const x = encodeSpec(op.load)
        const sizeErr = this.sizeError(R, op.key, x.raw, undefined, op.opts?.tags)
        if (sizeErr !== undefined) return err(sizeErr)
        if (ok() !== canon(makeValue(op.load))) fail(`${what}: expected the loader's value ${canon(makeValue(op.load))}`)
        this.store(R, op.key, x.tag, x.raw, { ...this.window(R, op.opts?.ttl, t0, t1), meta: undefined, tags: op.opts?.tags ?? [] }, batch)
        return
      }
      case 'invalidateTag': {
        const n = ok() as number
        const per = (op.via === 'cache' ? this.regions : [R]).map((Rx) => {
          let certain = 0
          let maybe = 0
          for (let s = 0; s < Rx.lists.length; s++) {
            for (const e of [...Rx.lists[s]!]) {
              const p = this.presence(Rx, e, t0, t1)
              if (p === 'gone') continue
              if (e.tags.includes(op.tag)) {
                if (p === 'yes') certain++
                else maybe++
                this.remove(Rx, e)
              } else if (e.tagsMaybe.includes(op.tag)) {
                maybe++
                e.maybe = true
                e.tagsMaybe = e.tagsMaybe.filter((t) => t !== op.tag)
              }
            }
            batch.wrote(Rx.index, s)
          }
          return { Rx, certain, maybe }
        })
        const certain = per.reduce((a, x) => a + x.certain, 0)
        const maybe = per.reduce((a, x) => a + x.maybe, 0)
        if (n < certain || n > certain + maybe) fail(`${what}: removed ${n}, expected ${maybe ? `${certain} to ${certain + maybe}` : certain}`)
        // The answer is a total: split over regions it is exact unless two regions had uncertain members.
        const uncertain = per.filter((x) => x.maybe > 0)
        for (const x of per) {
          if (x.maybe === 0) x.Rx.c.deletes += x.certain
          else if (uncertain.length === 1) x.Rx.c.deletes += n - (certain - x.certain)
          else {
            x.Rx.c.deletes += x.certain
            x.Rx.deletesExact = false
          }
        }
        return
      }
      case 'deleteByPattern':
      case 'clear': {
        const n = ok() as number
        const g = op.op === 'deleteByPattern' ? new Glob(op.glob) : undefined
        let certain = 0
        let maybe = 0
        for (let s = 0; s < R.lists.length; s++) {
          for (const e of [...R.lists[s]!]) {
            const p = this.presence(R, e, t0, t1)
            if (p === 'gone' || (g !== undefined && !g.matches(e.key))) continue
            if (p === 'yes') certain++
            else maybe++
            this.remove(R, e)
          }
          batch.wrote(R.index, s)
        }
        if (op.op === 'clear') R.ghosts = 0
        if (n < certain || n > certain + maybe) fail(`${what}: removed ${n}, expected ${maybe ? `${certain} to ${certain + maybe}` : certain}`)
        R.c.deletes += n
        return
      }
      case 'cleanupExpired': {
        const n = ok() as number
        let maybe = 0
        for (const list of R.lists) for (const e of [...list]) if (this.presence(R, e, t0, t1) === 'maybe' && e.lo !== Infinity) maybe++
        if (n < 0 || n > maybe + R.ghosts) fail(`${what}: removed ${n}, expected at most ${maybe + R.ghosts} expired entries`)
        // Those that were past their window for sure are gone now; the others stay uncertain.
        R.ghosts = 0
        if (n > 0) R.gaugesExact = false
        return
      }
      case 'keys':
      case 'scan': {
        const v = ok() as (string | [string, string])[]
        const keys = v.map((x) => (typeof x === 'string' ? x : x[0]))
        const g = op.op === 'keys' ? (op.glob === undefined ? undefined : new Glob(op.glob)) : op.match === undefined ? undefined : new Glob(op.match)
        if (new Set(keys).size !== keys.length) fail(`${what}: a key is listed twice`)
        const seen = new Set(keys)
        for (const k of keys) {
          if (g !== undefined && !g.matches(k)) fail(`${what}: ${show(k)} does not match`)
          if (this.live(R, k, t0, t1) === undefined) fail(`${what}: lists ${show(k)}, which has no entry in region ${R.name}`)
        }
        for (const list of R.lists) {
          for (const e of [...list]) {
            if (g !== undefined && !g.matches(e.key)) continue
            const p = this.presence(R, e, t0, t1)
            if (p === 'gone') continue
            if (seen.has(e.key)) {
              if (op.op === 'scan' && op.entries) continue // settled by the value read below
              e.maybe = false
            } else if (p === 'yes') fail(`${what}: misses ${show(e.key)}, which holds ${e.canon}`)
            else if (!(op.op === 'scan' && op.entries)) this.drop(R, e)
          }
        }
        if (op.op === 'scan' && op.entries) {
          // scanEntries reads values with an mget per `count` keys: each chunk is one batch for LRU order.
          // A key it listed but could not read any more (expired meanwhile) is left out of its output, unseen here.
          if (R.lists.some((l) => l.some((e) => e.lo !== Infinity || e.maybe))) R.missesExact = false
          for (let i = 0; i < v.length; i += op.count) {
            const chunk = new BatchState(2)
            for (const [k, val] of v.slice(i, i + op.count) as [string, string][]) this.observeRead(R, k, val, t0, t1, 'direct', chunk, what)
            this.finish(chunk)
          }
          for (const list of R.lists) {
            for (const e of [...list]) {
              if (seen.has(e.key) || (g !== undefined && !g.matches(e.key))) continue
              if (this.presence(R, e, t0, t1) === 'maybe') this.drop(R, e)
            }
          }
        }
        return
      }
    }
  }

  applyBad(index: number, out: Outcome, what: string): void {
    const c = BAD_CASES[index]!
    figures.bad++
    if (out.ok) fail(`bad input ${c.name}: ${show(out.v)}, expected a CacheError with code ${c.code}`)
    if (!out.cacheError) fail(`bad input ${c.name}: failed with ${out.name} (${out.message}), not a CacheError`)
    if (out.code !== c.code) fail(`bad input ${c.name}: code ${out.code} (${out.message}), expected ${c.code}`)
    if ((c.mode === 'sync') !== out.sync) fail(`bad input ${c.name}: ${out.sync ? 'threw synchronously' : 'did not throw synchronously'} (${what})`)
  }
}

// ── transforms: what a profile and the known bugs make of a generated op ──────

function transformTtl(t: number | string | undefined, R: RegionModel, p: Profile): number | string | undefined {
  if (typeof t !== 'string' || !t.startsWith('short:')) return t
  return p.shortTtl && !R.budgeted ? Number(t.slice(6)) : '1h'
}

/** The op as issued: short TTLs only where modelled; options that would make the model ambiguous dropped. */
function transform(op: Op, m: Model): Op {
  if (op.op === 'bad') return op
  const R = m.regions[op.r]!
  const p = m.w.profile
  const fixOpts = <T extends { ttl?: number | string } | undefined>(o: T): T => (o === undefined || o.ttl === undefined ? o : { ...o, ttl: transformTtl(o.ttl, R, p) })
  switch (op.op) {
    case 'set':
      return { ...op, opts: fixOpts(op.opts) }
    case 'mset': {
      let opts = fixOpts(op.opts)
      // nx/xx over several keys that may have been evicted or expired: the count would not say which were stored.
      const unsure = p.shortTtl || op.entries.some(([k]) => !R.exact[m.shard(k)] || m.find(R, k)?.maybe)
      if (opts !== undefined && (opts.nx || opts.xx) && unsure && op.entries.length > 1) opts = { ...opts, nx: undefined, xx: undefined }
      return { ...op, opts }
    }
    case 'cas':
      return { ...op, opts: fixOpts(op.opts) }
    case 'touch':
      return { ...op, ttl: transformTtl(op.ttl, R, p)! }
    case 'getOrCompute':
      return { ...op, opts: fixOpts(op.opts) }
    case 'batch':
      return { ...op, items: op.items.map((it) => transform({ ...it, r: op.r, via: op.via } as Op, m) as unknown as BatchItem) }
    default:
      return op
  }
}

const WRITES = new Set(['set', 'mset', 'delete', 'mdelete', 'take', 'incr', 'cas', 'touch', 'invalidateTag', 'deleteByPattern', 'clear'])
const DIRECT_READS = new Set(['get', 'getSync', 'has', 'ttl', 'mget', 'mhas'])

/** The ops of a burst left out while a known bug's exclusion is on. */
function excluded(ops: Op[], m: Model, wroteRegion = new Set<number>()): Op[] {
  const out: Op[] = []
  for (const op0 of ops) {
    let op = op0
    if (op.op === 'batch') {
      // The items of a batch are issued in one tick, like a burst's ops.
      const items = excluded(op.items.map((it) => ({ ...it, r: op0.r, via: op0.via }) as Op), m, wroteRegion)
      if (items.length === 0) continue
      op = { ...op, items: items.map(({ r: _r, via: _v, ...it }) => it as unknown as BatchItem) }
      out.push(op)
      continue
    }
    if (KNOWN_BUGS.has('region-default-handle') && op.op === 'invalidateTag' && op.r === 0 && op.via === 'handle') continue
    if (KNOWN_BUGS.has('read-behind-eviction') && DIRECT_READS.has(op.op) && op.op !== 'bad' && wroteRegion.has(op.r) && m.regions[op.r]!.budgeted) continue
    if (op.op === 'bad') {
      const c = BAD_CASES[op.bad]!
      if (c.bug !== undefined && KNOWN_BUGS.has(c.bug)) continue
    }
    if (WRITES.has(op.op) && op.op !== 'bad') {
      if (op.op === 'invalidateTag' && op.via === 'cache') for (let r = 0; r < 3; r++) wroteRegion.add(r)
      else wroteRegion.add(op.r)
    }
    out.push(op)
  }
  return out
}

// ── commands ─────────────────────────────────────────────────────────────────

interface Real {
  w: World
}

type Cmd = fc.AsyncCommand<Model, Real, false>

async function exec(m: Model, thread: number, ops: Op[]): Promise<{ outs: Outcome[]; t0: number; t1: number; where: string }> {
  const client = thread === 1 ? m.w.client : undefined
  const t0 = monotonicNow()
  const outs = client === undefined ? await burst(m.w.cache, ops) : await client.send<Outcome[]>({ cmd: 'burst', ops })
  const t1 = monotonicNow()
  return { outs, t0, t1, where: client === undefined ? 'owner' : 'attached' }
}

class StepCmd implements Cmd {
  constructor(
    readonly thread: number,
    readonly ops: Op[],
  ) {}
  check(): boolean {
    return true
  }
  async run(m: Model): Promise<void> {
    const ops = excluded(this.ops.map((op) => transform(op, m)), m)
    if (ops.length === 0) return
    const { outs, t0, t1, where } = await exec(m, this.thread, ops)
    const n = ops.reduce((k, o) => k + (o.op === 'batch' ? o.items.length : 1), 0)
    figures.ops += n
    if (n > 1) figures.bursts++
    m.log.push(`${where}: ${ops.map((o, i) => `${show(o)} → ${show(outs[i])}`).join(' ; ')}`)
    // Sized by ops issued together, a cache.batch() counting each of its items (a read among them may reach LRU order before a write before it).
    const batch = new BatchState(n)
    ops.forEach((op, i) => m.apply(op, outs[i]!, t0, t1, batch))
    m.finish(batch)
  }
  toString(): string {
    return `${this.ops.length > 1 ? 'burst' : 'op'}@${this.thread === 1 ? 'attached' : 'owner'}(${this.ops.map(show).join(', ')})`
  }
}

/** Bad inputs, then a full dump of the cache: it must be what it was before. */
class BadCmd implements Cmd {
  constructor(
    readonly thread: number,
    readonly r: number,
    readonly cases: number[],
  ) {}
  check(): boolean {
    return true
  }
  async run(m: Model): Promise<void> {
    const ops = excluded(this.cases.map((bad) => ({ op: 'bad', r: this.r, via: 'handle', bad }) as Op), m)
    if (ops.length === 0) return
    const before = await dump(m.w.cache)
    const { outs, where } = await exec(m, this.thread, ops)
    const after = await dump(m.w.cache)
    figures.ops += ops.length
    m.log.push(`${where}: bad inputs ${ops.map((o, i) => `${BAD_CASES[(o as { bad: number }).bad]!.name} → ${show(outs[i])}`).join(' ; ')}`)
    ops.forEach((op, i) => m.apply(op, outs[i]!, 0, 0, new BatchState(1)))
    const b = stable(before)
    const a = stable(after)
    if (b !== a) fail(`bad inputs ${ops.map((o) => BAD_CASES[(o as { bad: number }).bad]!.name).join(', ')} changed the cache:\nbefore ${b}\nafter  ${a}`)
  }
  toString(): string {
    return `bad@${this.thread === 1 ? 'attached' : 'owner'}(region ${REGION_NAMES[this.r]}: ${this.cases.map((c) => BAD_CASES[c]!.name).join(', ')})`
  }
}

/** Compares stats() with the model's counters. */
class StatsCmd implements Cmd {
  check(): boolean {
    return true
  }
  async run(m: Model): Promise<void> {
    const s = await m.w.cache.stats()
    for (const R of m.regions) {
      const got = s.byRegion[R.name]!
      const what = `stats().byRegion.${R.name} ${show({ hits: got.hits, misses: got.misses, sets: got.sets, deletes: got.deletes, evictions: got.evictionsByCause.size, entries: got.entries })}`
      const certain = R.lists.reduce((n, l) => n + l.filter((e) => !e.maybe && e.lo === Infinity).length, 0)
      const all = R.lists.reduce((n, l) => n + l.length, 0)
      const eq = (name: string, a: number, b: number): void => {
        if (a !== b) fail(`${what}: ${name} is ${a}, the model says ${b}`)
      }
      eq('hits', got.hits, R.c.hits)
      if (R.missesExact && !(R.computeMissed && KNOWN_BUGS.has('getorcompute-double-miss'))) eq('misses', got.misses, R.c.misses)
      eq('sets', got.sets, R.c.sets)
      if (R.deletesExact) eq('deletes', got.deletes, R.c.deletes)
      if (R.evictionsExact) eq('evictions (size)', got.evictionsByCause.size, R.c.evictions)
      const budget = R.maxEntries.reduce((a, b) => a + b, 0)
      if (got.entries > budget) fail(`${what}: ${got.entries} entries over maxEntries ${budget}`)
      const bytes = R.maxBytes.reduce((a, b) => a + b, 0)
      if (got.usedBytes > bytes) fail(`${what}: ${got.usedBytes} bytes over maxBytes ${bytes}`)
      const soon = monotonicNow() + 60_000
      const uncertain = R.lists.some((l) => l.some((e) => e.maybe || e.unsure || e.lo < soon)) || R.ghosts > 0
      if (R.gaugesExact && !uncertain && !m.w.profile.shortTtl) {
        eq('entries', got.entries, all)
        if (!R.dict) {
          eq('usedBytes', got.usedBytes, R.lists.reduce((n, l) => n + l.reduce((x, e) => x + m.charge(e), 0), 0))
          eq('compressedEntries', got.compressedEntries, R.lists.reduce((n, l) => n + l.filter((e) => e.compressed).length, 0))
        }
      } else if (got.entries < certain) fail(`${what}: ${got.entries} entries, but ${certain} are certainly live`)
    }
    m.log.push(`stats ok`)
  }
  toString(): string {
    return 'stats()'
  }
}

/** A full dump (a snapshot: not a read, no LRU change) compared with the model. */
class DumpCmd implements Cmd {
  check(): boolean {
    return true
  }
  async run(m: Model): Promise<void> {
    const t0 = monotonicNow()
    const d = await dump(m.w.cache)
    const t1 = monotonicNow()
    for (const R of m.regions) {
      const got = d.get(R.name) ?? new Map<string, DumpEntry>()
      for (const [k, x] of got) {
        const l = m.live(R, k, t0, t1)
        if (l === undefined) fail(`dump: region ${R.name} holds ${show(k)} = ${x.canon}, which the model does not have`)
        if (x.canon !== l.e.canon) fail(`dump: region ${R.name} holds ${show(k)} = ${x.canon}, the model ${l.e.canon}`)
        if (!l.e.unsure && x.meta !== (l.e.meta ?? 'U')) fail(`dump: ${R.name}/${show(k)} metadata ${x.meta}, the model ${l.e.meta}`)
        if (!l.e.tagsMaybe.length && x.tags !== [...l.e.tags].sort().join(',')) fail(`dump: ${R.name}/${show(k)} tags ${x.tags}, the model ${l.e.tags}`)
        l.e.maybe = false
      }
      for (const list of R.lists) {
        for (const e of [...list]) {
          if (got.has(e.key)) continue
          const p = m.presence(R, e, t0, t1)
          if (p === 'yes') fail(`dump: region ${R.name} lacks ${show(e.key)} = ${e.canon}`)
          if (p === 'maybe') m.drop(R, e)
        }
      }
    }
    m.log.push('dump ok')
  }
  toString(): string {
    return 'dump()'
  }
}

class SleepCmd implements Cmd {
  constructor(readonly ms: number) {}
  check(m: Readonly<Model>): boolean {
    return m.w.profile.shortTtl
  }
  async run(m: Model): Promise<void> {
    await new Promise((r) => setTimeout(r, this.ms))
    m.log.push(`slept ${this.ms} ms`)
  }
  toString(): string {
    return `sleep(${this.ms})`
  }
}

interface DumpEntry {
  canon: string
  meta: string
  tags: string
  expiresAt: number
}

const SNAP = join(tmpdir(), `shardcache-model-${process.pid}.snap`)

async function dump(cache: Cache): Promise<Map<string, Map<string, DumpEntry>>> {
  await cache.snapshot(SNAP)
  const snap = readSnapshot(SNAP)
  rmSync(SNAP, { force: true })
  const out = new Map<string, Map<string, DumpEntry>>()
  for (const { region, entry: e } of snap.entries) {
    const name = snap.regions[region]!
    let m = out.get(name)
    if (m === undefined) out.set(name, (m = new Map()))
    const raw = e.compressed ? decompress(e.bytes, e.rawSize) : Buffer.from(e.bytes)
    if (raw === undefined) fail(`dump: ${name}/${show(e.key)} does not decompress`)
    if (m.has(e.key)) fail(`dump: region ${name} holds ${show(e.key)} twice`)
    m.set(e.key, {
      canon: canonOf(e.tag, raw),
      meta: e.metadata === undefined ? 'U' : Buffer.from(e.metadata).toString('utf8'),
      tags: [...(e.tags ?? [])].sort().join(','),
      expiresAt: e.expiresAt,
    })
  }
  return out
}

/** A dump as text, leaving out entries that may expire within 10 s (they may go between two dumps). */
function stable(d: Map<string, Map<string, DumpEntry>>): string {
  const soon = monotonicNow() + 10_000
  const parts: string[] = []
  for (const name of [...d.keys()].sort()) {
    const m = d.get(name)!
    for (const k of [...m.keys()].sort()) {
      const e = m.get(k)!
      if (e.expiresAt < soon) continue
      parts.push(`${name}/${k}=${e.canon}|${e.meta}|${e.tags}`)
    }
  }
  return parts.join(' ')
}

const threadArb = fc.constantFrom(0, 1)
const commandArbs: fc.Arbitrary<Cmd>[] = [
  fc.tuple(threadArb, soloOpArb).map(([t, op]) => new StepCmd(t, [op])),
  fc.tuple(threadArb, soloOpArb).map(([t, op]) => new StepCmd(t, [op])),
  fc.tuple(threadArb, soloOpArb).map(([t, op]) => new StepCmd(t, [op])),
  fc.tuple(threadArb, fc.array(burstableOpArb, { minLength: 2, maxLength: 6 })).map(([t, ops]) => new StepCmd(t, ops)),
  fc.tuple(threadArb, fc.array(burstableOpArb, { minLength: 2, maxLength: 6 })).map(([t, ops]) => new StepCmd(t, ops)),
  fc.tuple(threadArb, regionArb, fc.array(fc.nat({ max: BAD_CASES.length - 1 }), { minLength: 1, maxLength: 4 })).map(([t, r, cs]) => new BadCmd(t, r, cs)),
  fc.constant(new StatsCmd()),
  fc.constant(new DumpCmd()),
  fc.integer({ min: 5, max: 45 }).map((ms) => new SleepCmd(ms)),
]

// ── the property ─────────────────────────────────────────────────────────────

const MAX_COMMANDS = Number(process.env.MODEL_COMMANDS ?? 40)

function property(): fc.IAsyncPropertyWithHooks<[number, Iterable<Cmd>]> {
  return fc.asyncProperty(fc.nat({ max: PROFILES.length - 1 }), fc.commands(commandArbs, { maxCommands: MAX_COMMANDS, size: 'max', replayPath: process.env.MODEL_REPLAY }), async (pi, cmds) => {
    const w = await world(pi)
    await reset(w)
    const log: string[] = []
    const model = new Model(w, log)
    figures.runs++
    try {
      // A final stats and dump check, so that every run ends compared in full.
      await fc.asyncModelRun(() => ({ model, real: { w } }), [...cmds, new StatsCmd(), new DumpCmd()])
    } catch (err) {
      lastFailure = { profile: w.profile.name, log: log.slice(-12), error: String((err as Error)?.message ?? err) }
      throw err
    }
  })
}

/**
 * The fast-check path to replay: MODEL_PATH, or PATH when it holds one (a
 * path like "12:0:3" is no shell's PATH; `env PATH=12:0:3 node ...` fails to find node, hence MODEL_PATH).
 */
function replayPath(): string | undefined {
  if (process.env.MODEL_PATH !== undefined) return process.env.MODEL_PATH
  const p = process.env.PATH
  return p !== undefined && /^\d+(:\d+)*$/.test(p) ? p : undefined
}

let lastFailure: { profile: string; log: string[]; error: string } | undefined

async function runSeed(seed: number, numRuns: number, path?: string): Promise<void> {
  figures.seeds++
  try {
    // A slow machine runs fewer runs rather than fail (the test file must end well within the runner's 120 s).
    await fc.assert(property(), { seed, numRuns, path, interruptAfterTimeLimit: Number(process.env.MODEL_SEED_LIMIT_MS ?? 70_000), markInterruptAsFailure: false })
  } catch (err) {
    const e = err as Error
    const m = /seed: (-?\d+), path: "([^"]*)"/.exec(e.message)
    const r = /replayPath="([^"]*)"/.exec(e.message)
    console.error(`\nmodel test failed: profile "${lastFailure?.profile}"`)
    console.error(`replay: SEED=${m?.[1] ?? seed} MODEL_PATH=${m?.[2] ?? ''}${r ? ` MODEL_REPLAY='${r[1]}'` : ''} node dist/test/model.test.js`)
    if (lastFailure !== undefined) {
      console.error(`last steps of the shrunk run:\n  ${lastFailure.log.join('\n  ')}`)
      console.error(`what the model says: ${lastFailure.error}`)
    }
    throw err
  }
}

const started = Date.now()

// The figures of the whole file (the lead quotes this line).
test.after(() => {
  const secs = ((Date.now() - started) / 1000).toFixed(1)
  console.log(
    `model: ${figures.ops} operations (${figures.bad} bad inputs, ${figures.bursts} same-tick bursts, ${figures.evictions} evictions predicted exactly) ` +
      `in ${figures.runs} runs, ${figures.seeds} seed(s), ${secs} s; known bugs left out: ${[...KNOWN_BUGS].join(', ') || 'none'}`,
  )
})

test('the cache agrees with the model: every data op, every policy, 1–3 shards, two threads, bursts, TTLs, bad inputs', async () => {
  try {
    const minutes = Number(process.env.MODEL_MINUTES ?? 0)
    const seed0 = process.env.SEED !== undefined ? Number(process.env.SEED) : Date.now() ^ (Math.random() * 0x7fffffff)
    if (minutes > 0) {
      const until = started + minutes * 60_000
      for (let seed = seed0; Date.now() < until; seed++) {
        await runSeed(seed, Number(process.env.NUM_RUNS ?? 20))
        if (seed % 10 === 0) console.log(`  seeds ${seed0}..${seed}: ok (${figures.ops} ops so far)`)
      }
    } else {
      console.log(`  seed ${seed0}`)
      await runSeed(seed0, Number(process.env.NUM_RUNS ?? 100), replayPath())
    }
  } finally {
    await closeWorlds()
  }
  assert.ok(figures.ops > 0)
})

test('every bad input of the list, on every region and from both threads, is refused with its code and changes nothing', async () => {
  try {
    // Profile 1: two shards and an attached thread; some entries in every region first.
    const w = await world(1)
    await reset(w)
    for (let r = 0; r < REGION_NAMES.length; r++) {
      const h = w.cache.region(REGION_NAMES[r]!)
      await h.mset([['a', 1], ['b', 'two'], ['\uFFFD', 'replacement character'], ['k:1', { x: [1] }]], { tags: ['t1', '\uFFFD'], metadata: { m: r } })
      await h.set('n', 5)
    }
    const failures: string[] = []
    const cases = BAD_CASES.map((c, i) => ({ c, i })).filter(({ c }) => c.bug === undefined || !KNOWN_BUGS.has(c.bug))
    for (const thread of w.client === undefined ? [0] : [0, 1]) {
      for (let r = 0; r < REGION_NAMES.length; r++) {
        const before = stable(await dump(w.cache))
        const ops = cases.map(({ i }) => ({ op: 'bad', r, via: 'handle', bad: i }) as Op)
        // One at a time: a case's failure is its own.
        const outs: Outcome[] = []
        for (const op of ops) outs.push(...(await exec(new Model(w, []), thread, [op])).outs)
        figures.ops += ops.length
        const m = new Model(w, [])
        ops.forEach((op, k) => {
          try {
            m.applyBad((op as { bad: number }).bad, outs[k]!, `on ${thread === 1 ? 'the attached thread' : 'the owner'}, region ${REGION_NAMES[r]}`)
          } catch (err) {
            failures.push(`${(err as Error).message} (on ${thread === 1 ? 'the attached thread' : 'the owner'}, region ${REGION_NAMES[r]})`)
          }
        })
        const after = stable(await dump(w.cache))
        if (before !== after) failures.push(`bad inputs on region ${REGION_NAMES[r]} changed the cache:\nbefore ${before}\nafter  ${after}`)
      }
    }
    assert.equal(failures, [], failures.join('\n'))
  } finally {
    await closeWorlds()
  }
})

test.run()
