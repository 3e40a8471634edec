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
 * check everything; unset: the KNOWN_BUGS set in test/fixtures/model_world.ts).
 *
 * Files: this one holds the transforms, the commands and the property; the
 * profiles, caches and generator pools are in test/fixtures/model_world.ts,
 * the reference model in test/fixtures/cache_model.ts (and its parts in
 * cache_model_region.ts), the operations both threads issue in model_ops.ts.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rmSync } from 'node:fs'
import type { Cache } from '../../src/index.js'
import { readSnapshot } from '../../src/ops/snapshot.js'
import { decompress } from '../../src/wire/compression.js'
import { monotonicNow } from '../../src/wire/shared_region.js'
import { BAD_CASES, REGION_NAMES, burst, canon } from '../fixtures/model_ops.js'
import type { BatchItem, Op, Outcome } from '../fixtures/model_ops.js'
import { KNOWN_BUGS, Profile, PROFILES, World, world, closeWorlds, reset, regionArb, burstableOpArb, soloOpArb } from '../fixtures/model_world.js'
import { Model } from '../fixtures/cache_model.js'
import { RegionModel, BatchState, canonOf, fail, show, figures } from '../fixtures/cache_model_region.js'

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
      // An entry with a TTL is one: on a busy machine the op's window can reach its expiry, whatever the TTL. So
      // is a key given twice: its second set meets the entry of its first, which may have a TTL (the region's).
      // (Both seen on a busy machine as "mset with nx/xx over a maybe-entry".)
      const twice = new Set(op.entries.map(([k]) => k)).size < op.entries.length
      const unsure =
        p.shortTtl ||
        twice ||
        op.entries.some(([k]) => {
          const e = m.find(R, k)
          return !R.exact[m.shard(k)] || (e !== undefined && (e.maybe || e.lo !== Infinity))
        })
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
    console.error(`replay: SEED=${m?.[1] ?? seed} MODEL_PATH=${m?.[2] ?? ''}${r ? ` MODEL_REPLAY='${r[1]}'` : ''} node dist/test/threads/model.test.js`)
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
