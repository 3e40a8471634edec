// The region store against a reference model: random operation sequences
// (fast-check) replayed on both, with the invariants (entry count, byte
// accounting, eviction order) checked after every operation, for every
// eviction policy (each with its own reference model, test/fixtures/policy_models/).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { RegionStore } from '../../workers/region_store.js'
import type { RegionShardConfig, RegionShardStats } from '../../src/wire/region_types.js'
import { compressIfSmaller } from '../../src/wire/compression.js'
import { Glob } from '../../src/wire/glob.js'
import { O, enc, Clock, charge, compressible, zeroCounters } from '../fixtures/region_store.js'
import { policyModel, storeHash } from '../fixtures/policy_models/index.js'
import type { PolicyModel } from '../fixtures/policy_models/index.js'
import { EVICTION_POLICIES } from '../../src/wire/region_types.js'
import { ShardEvent } from '../../src/wire/protocol.js'

// ── model-based property test ────────────────────────────────────────────────

interface ModelEntry {
  slot: number
  raw: Uint8Array
  stored: number
  compressed: boolean
  /** Compressed entries: offsets of stored bytes flipped an odd number of times (a second flip restores the byte). */
  flipped: Set<number>
  tag: number
  meta: Uint8Array | undefined
  createdAt: number
  expiresAt: number
  charge: number
}

/**
 * The reference: a Map of the entries, and the policy's reference model for
 * their order. It mirrors the documented behaviour: lazy expiry on touch,
 * eviction of the policy's victims sparing the entry just written (or of that
 * entry, when a screening policy refuses it), slot reuse (last freed, first
 * reused) for sweep's slot-by-slot cursor.
 */
class Model {
  readonly map = new Map<string, ModelEntry>()
  readonly policy: PolicyModel
  readonly slots: (string | undefined)[] = []
  free: number[] = []
  used = 0
  cursor = 0
  counters = { ...zeroCounters }

  constructor(
    readonly cfg: RegionShardConfig,
    readonly clock: Clock,
  ) {
    this.policy = policyModel(cfg.policy, cfg)
  }

  #remove(key: string, reason: number): void {
    const e = this.map.get(key)!
    this.policy.remove(key, reason)
    this.map.delete(key)
    this.slots[e.slot] = undefined
    this.free.push(e.slot)
  }

  #live(key: string): ModelEntry | undefined {
    const e = this.map.get(key)
    if (e === undefined) return undefined
    if (e.expiresAt <= this.clock.t) {
      this.#remove(key, ShardEvent.EXPIRE)
      this.counters.evictionsExpired++
      return undefined
    }
    return e
  }

  #remaining(expiresAt: number): number {
    return expiresAt === Infinity ? Infinity : Math.max(1, Math.ceil(expiresAt - this.clock.t))
  }

  /** A read: undefined on a miss (also on corruption); refreshes under LRU. */
  read(key: string): ModelEntry | undefined {
    const e = this.#live(key)
    if (e === undefined) {
      this.counters.misses++
      return undefined
    }
    if (e.flipped.size > 0) {
      this.#remove(key, 0)
      this.counters.corrupt++
      this.counters.misses++
      return undefined
    }
    this.policy.access(key)
    this.counters.hits++
    return e
  }

  has(key: string): boolean {
    return this.#live(key) !== undefined
  }

  ttl(key: string): number | undefined {
    const e = this.#live(key)
    return e === undefined ? undefined : this.#remaining(e.expiresAt)
  }

  set(key: string, tag: number, raw: Uint8Array, ttl: number | undefined, nx: boolean, xx: boolean, meta: Uint8Array | undefined): boolean {
    const found = this.#live(key)
    if (found === undefined ? xx : nx) return false
    let stored = raw.length
    let compressed = false
    if (raw.length >= this.cfg.compressMinBytes) {
      const c = compressIfSmaller(raw)
      if (c !== undefined) {
        stored = c.length
        compressed = true
      }
    }
    const now = this.clock.t
    const e: ModelEntry = {
      slot: found?.slot ?? -1,
      raw: raw.slice(),
      stored,
      compressed,
      flipped: new Set(),
      tag,
      meta: meta?.slice(),
      createdAt: now,
      expiresAt: now + (ttl ?? this.cfg.defaultTtl),
      charge: Buffer.byteLength(key) + stored + (meta?.length ?? 0) + O,
    }
    this.map.set(key, e)
    this.counters.sets++
    const over = (): boolean => this.map.size > this.cfg.maxEntries || this.usedBytes() > this.cfg.maxBytes
    if (found !== undefined) {
      this.policy.update(key, e.charge)
      while (over()) {
        const victim = this.policy.victim(key)
        if (victim === undefined) break
        this.#remove(victim, ShardEvent.EVICT)
        this.counters.evictionsSize++
      }
      return true
    }
    // A new entry: the policy's victims leave first, then it joins (or is refused).
    e.slot = this.free.pop() ?? this.used++
    this.slots[e.slot] = key
    const hash = storeHash(key)
    if (this.policy.screens && over() && !this.policy.admit(key, e.charge)) {
      this.policy.insert(key, hash, e.charge)
      this.#remove(key, ShardEvent.EVICT)
      this.counters.evictionsSize++
      return true
    }
    while (over()) {
      const victim = this.policy.victim(undefined)
      if (victim === undefined) break
      this.#remove(victim, ShardEvent.EVICT)
      this.counters.evictionsSize++
    }
    this.policy.insert(key, hash, e.charge)
    return true
  }

  delete(key: string): boolean {
    if (this.#live(key) === undefined) return false
    this.#remove(key, ShardEvent.DELETE)
    this.counters.deletes++
    return true
  }

  keys(glob: Glob | undefined): string[] {
    const out: string[] = []
    for (const k of this.policy.order()) {
      if (this.map.get(k)!.expiresAt <= this.clock.t) {
        this.#remove(k, ShardEvent.EXPIRE)
        this.counters.evictionsExpired++
      } else if (glob === undefined || glob.matches(k)) out.push(k)
    }
    return out
  }

  deleteMatching(glob: Glob): number {
    let n = 0
    for (const k of this.policy.order()) {
      if (this.map.get(k)!.expiresAt <= this.clock.t) {
        this.#remove(k, ShardEvent.EXPIRE)
        this.counters.evictionsExpired++
      } else if (glob.matches(k)) {
        this.#remove(k, ShardEvent.DELETE)
        this.counters.deletes++
        n++
      }
    }
    return n
  }

  sweep(budget: number): number {
    if (this.map.size === 0) return 0
    const end = Math.min(this.used, budget === Infinity ? this.used : this.cursor + budget)
    let slot = budget === Infinity ? 0 : this.cursor
    let n = 0
    for (; slot < end; slot++) {
      const k = this.slots[slot]
      if (k !== undefined && this.map.get(k)!.expiresAt <= this.clock.t) {
        this.#remove(k, ShardEvent.EXPIRE)
        this.counters.evictionsExpired++
        n++
      }
    }
    this.cursor = slot >= this.used ? 0 : slot
    return n
  }

  clear(): number {
    this.sweep(Infinity)
    const live = this.map.size
    this.counters.deletes += live
    this.map.clear()
    this.policy.clear()
    this.slots.length = 0
    this.free = []
    this.used = 0
    this.cursor = 0
    return live
  }

  /** What corruptForTest does to the entry (expired or not). */
  corrupt(key: string, offset: number): void {
    const e = this.map.get(key)!
    if (e.compressed) {
      const at = offset % e.stored
      if (!e.flipped.delete(at)) e.flipped.add(at)
    } else if (e.raw.length > 0) {
      const at = offset % e.raw.length
      e.raw[at] = e.raw[at]! ^ 0x5a
    }
  }

  usedBytes(): number {
    let n = 0
    for (const e of this.map.values()) n += e.charge
    return n
  }

  /** The store's stats but the arena's extent, which depends on its page carving (checked apart in step()). */
  stats(): Omit<RegionShardStats, 'arenaBytes' | 'arenaFreeBytes'> {
    let raw = 0
    let stored = 0
    let compressed = 0
    for (const e of this.map.values()) {
      raw += e.raw.length
      stored += e.stored
      if (e.compressed) compressed++
    }
    return {
      ...this.counters,
      // The model has no grace entries (getOrCompute's, tested in test/threads/grace.test.ts).
      staleServed: 0,
      entries: this.map.size,
      compressedEntries: compressed,
      usedBytes: this.usedBytes(),
      rawBytes: raw,
      storedBytes: stored,
      maxBytes: Number.isFinite(this.cfg.maxBytes) ? this.cfg.maxBytes : null,
      maxEntries: Number.isFinite(this.cfg.maxEntries) ? this.cfg.maxEntries : null,
    }
  }
}

const KEYS = ['a', 'b', 'c', 'd', 'e', 'ab', 'é', '__proto__', 'constructor']
const GLOBS = ['*', 'a*', '?', '[a-c]', '[!a]*', '_*', 'é', 'c*r', '']

const keyArb = fc.constantFrom(...KEYS)
/** Values up to 250 bytes: repetitive (compressible), random, or short. */
const valueArb = fc.oneof(
  fc.tuple(fc.constantFrom('ab', 'xyz', 'hello world ', '\u00e9\u{1F600}'), fc.integer({ min: 0, max: 20 })).map(([u, n]) => enc.encode(u.repeat(n)).slice(0, 250)),
  fc.uint8Array({ maxLength: 250, size: 'max' }),
  fc.uint8Array({ maxLength: 8 }),
)

type Op =
  | { op: 'set'; key: string; tag: number; value: Uint8Array; ttl: number | undefined; nx: boolean; xx: boolean; meta: Uint8Array | undefined }
  | { op: 'get' | 'entry' | 'has' | 'ttl' | 'delete'; key: string }
  | { op: 'advance'; ms: number }
  | { op: 'keys' | 'deleteMatching'; glob: string | undefined }
  | { op: 'clear' | 'cleanupExpired' }
  | { op: 'sweep'; budget: number }
  | { op: 'corrupt'; key: string; offset: number; then: 'get' | 'entry' | 'nothing' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      key: keyArb,
      tag: fc.integer({ min: 0, max: 15 }),
      value: valueArb,
      ttl: fc.option(fc.oneof(fc.integer({ min: 1, max: 50 }), fc.constant(0.25)), { nil: undefined }),
      // plain sets twice as often as NX or XX ones
      flags: fc.constantFrom<[boolean, boolean]>([false, false], [false, false], [true, false], [false, true]),
      meta: fc.option(fc.uint8Array({ maxLength: 8 }), { nil: undefined }),
    }).map(({ flags: [nx, xx], ...r }) => ({ ...r, nx, xx })),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('get' as const, 'entry' as const, 'has' as const, 'ttl' as const, 'delete' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.constant(0.5)) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('keys' as const, 'deleteMatching' as const), glob: fc.option(fc.constantFrom(...GLOBS), { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('clear' as const, 'cleanupExpired' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('sweep' as const), budget: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(Infinity)) }) },
  // A corruption is mostly read back at once (else it is rarely read at all).
  { weight: 1, arbitrary: fc.record({ op: fc.constant('corrupt' as const), key: keyArb, offset: fc.nat({ max: 300 }), then: fc.constantFrom('get' as const, 'entry' as const, 'nothing' as const) }) },
)

const configArb: fc.Arbitrary<RegionShardConfig> = fc.record({
  name: fc.constant('prop'),
  policy: fc.constantFrom(...EVICTION_POLICIES),
  // every entry fits alone: 11 (longest key) + 250 + 8 + overhead <= 340
  maxBytes: fc.constantFrom(Infinity, 340, 500, 900),
  maxEntries: fc.constantFrom(Infinity, 1, 2, 3, 5),
  defaultTtl: fc.constantFrom(Infinity, 25),
  compressMinBytes: fc.constantFrom(Infinity, 0, 32),
})

function bytesOf(v: Uint8Array | undefined): number[] | undefined {
  return v === undefined ? undefined : Array.from(v)
}

function describe(op: Op): string {
  return JSON.stringify(op, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v === Infinity ? 'Infinity' : v))
}

/** Applies one op to both, compares results, stats and invariants. */
function step(store: RegionStore, model: Model, clock: Clock, op: Op, i: number): void {
  const where = `op #${i} ${describe(op)}`
  switch (op.op) {
    case 'set':
      assert.is(store.set(op.key, op.tag, op.value, op.ttl, op.nx, op.xx, op.meta), model.set(op.key, op.tag, op.value, op.ttl, op.nx, op.xx, op.meta), where)
      break
    case 'get': {
      const want = model.read(op.key)
      const got = store.get(op.key)
      assert.equal(bytesOf(got), bytesOf(want?.raw), where)
      if (want !== undefined) assert.is(store.lastTag, want.tag, where)
      break
    }
    case 'entry': {
      const want = model.read(op.key)
      const got = store.entry(op.key)
      if (want === undefined) {
        assert.is(got, undefined, where)
      } else {
        assert.ok(got !== undefined, where)
        assert.equal(
          { ...got!, value: bytesOf(got!.value), metadata: bytesOf(got!.metadata) },
          {
            tag: want.tag,
            value: bytesOf(want.raw),
            createdAt: want.createdAt,
            expiresAt: want.expiresAt,
            ttlRemaining: want.expiresAt === Infinity ? Infinity : Math.max(1, Math.ceil(want.expiresAt - clock.t)),
            sizeBytes: want.raw.length,
            storedBytes: want.stored,
            compressed: want.compressed,
            metadata: bytesOf(want.meta),
          },
          where,
        )
      }
      break
    }
    case 'has':
      assert.is(store.has(op.key), model.has(op.key), where)
      break
    case 'ttl':
      assert.is(store.ttl(op.key), model.ttl(op.key), where)
      break
    case 'delete':
      assert.is(store.delete(op.key), model.delete(op.key), where)
      break
    case 'advance':
      clock.t += op.ms
      break
    case 'keys': {
      const glob = op.glob === undefined ? undefined : new Glob(op.glob)
      assert.equal(store.keys(glob), model.keys(glob), where)
      break
    }
    case 'deleteMatching': {
      const glob = new Glob(op.glob ?? '*')
      assert.is(store.deleteMatching(glob), model.deleteMatching(glob), where)
      break
    }
    case 'clear':
      assert.is(store.clear(), model.clear(), where)
      break
    case 'cleanupExpired':
      assert.is(store.cleanupExpired(), model.sweep(Infinity), where)
      break
    case 'sweep':
      assert.is(store.sweep(op.budget), model.sweep(op.budget), where)
      break
    case 'corrupt':
      // corruptForTest needs an indexed entry (expired or not); skip otherwise.
      if (!model.map.has(op.key)) return
      store.corruptForTest(op.key, op.offset)
      model.corrupt(op.key, op.offset)
      if (op.then !== 'nothing') step(store, model, clock, { op: op.then, key: op.key }, i)
      break
  }
  try {
    store.checkInvariants()
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`)
  }
  const { arenaBytes, arenaFreeBytes, ...rest } = store.stats()
  assert.equal(rest, model.stats(), where)
  // The live chunks hold at least every live key and stored value.
  const live = [...model.map.entries()].reduce((n, [k, e]) => n + Buffer.byteLength(k) + e.stored, 0)
  assert.ok(arenaFreeBytes >= 0 && arenaBytes - arenaFreeBytes >= live, `${where}: arena ${arenaBytes}, free ${arenaFreeBytes}, live ${live}`)
  assert.is(store.size, model.map.size, where)
}

test("property: random op sequences keep the invariants and agree with the model of the region's policy", () => {
  fc.assert(
    fc.property(configArb, fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), (cfg, ops) => {
      const clock = new Clock()
      const store = new RegionStore(cfg, clock.now)
      const model = new Model(cfg, clock)
      ops.forEach((op, i) => step(store, model, clock, op, i))
      // Finally the live keys agree too.
      assert.equal(store.keys(), model.keys(undefined))
    }),
    { numRuns: 1000 },
  )
})

test('property: a long run on one store (slot reuse, array growth, many evictions)', () => {
  fc.assert(
    fc.property(
      fc.record({ ...configArbFields(), maxEntries: fc.constantFrom(300, Infinity), maxBytes: fc.constantFrom(Infinity, 30_000) }),
      fc.array(opArb, { minLength: 500, maxLength: 1500, size: 'max' }),
      (cfg, ops) => {
        const clock = new Clock()
        const store = new RegionStore(cfg, clock.now)
        const model = new Model(cfg, clock)
        // Enough distinct keys to pass the initial 256-slot capacity.
        const many = ops.map((op, i): Op => ('key' in op && i % 2 === 0 ? { ...op, key: `${op.key}${i % 400}` } : op))
        many.forEach((op, i) => step(store, model, clock, op, i))
      },
    ),
    { numRuns: 15 },
  )
})

function configArbFields() {
  return {
    name: fc.constant('long'),
    policy: fc.constantFrom(...EVICTION_POLICIES),
    defaultTtl: fc.constantFrom(Infinity, 400),
    compressMinBytes: fc.constantFrom(Infinity, 32),
  }
}

test.run()
