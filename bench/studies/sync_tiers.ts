/**
 * Where should `cache.getSync(key)` find its answer? A synchronous get cannot
 * ask a shard (that is a thread hop and a promise), so it must read memory the
 * calling thread can see. This benchmark measures the candidates in one run,
 * on the same keys, values and key order, so the choice (and the README's
 * account of it) rests on figures anyone can reproduce:
 *
 *   lru-cache         in-heap LRU on the reading thread, what a one-thread app
 *                     would use: the ceiling a shared tier is judged against
 *   Map               in-heap, no eviction order: the hash lookup alone
 *   sharedmap         the npm package (LGPL-3.0), written by another thread, read
 *                     here under its own locks: the "small-value tier" candidate
 *   region direct     SharedRegionReader over a real RegionStore: find, flags,
 *                     valueString, valid, as the router's direct read does today
 *   near cache        a per-thread Map of decoded values, each validated by an
 *                     Atomics.load of its slot's SEQ word and the header's SEQ
 *                     word, refilled by a region direct read when either moved
 *
 * Two diagnostic rows split the near cache's cost (its SEQ checks with plain
 * loads, and with none); the shared tiers are rerun with 32-byte values,
 * sharedmap's best case as a "small-value" tier. Then, for sharedmap in the
 * role it would have (a shard thread writes, other threads read): write
 * throughput, memory, what happens at its limits, and what its locks do to a
 * reader when a writer holds one, dies holding one, or overwrites a key while
 * the map is full. The reads are repeated while a worker thread writes, to
 * count torn, foreign or stale values and to see what the writer costs each reader.
 *
 * Run: `npx tsc -p tsconfig.json && node dist/bench/studies/sync_tiers.js`
 * (BENCH_SMOKE=1 shortens every phase, for working on this file; its figures
 * are not comparable. BENCH_SYNC_WRITE_RATE sets the concurrent writer's
 * writes/s.) Raw numbers go to bench/results/sync_tiers-<timestamp>.json.
 *
 * Method: 100k keys "k:<i>", 220-byte ASCII values, keys drawn Zipf(0.99) into
 * a pre-drawn ring (the sampler stays out of the loops). Each subject runs its
 * own loop (one function per subject, so no call site is shared between
 * subjects and deoptimized by the others), in batches of 1024 gets between
 * clock reads; each round is ~300 ms; subjects take turns round by round (the
 * order rotates) so that a burst of noise on this shared machine hits all of
 * them; the figure is the median of 5 rounds, with min and max beside it.
 * Every value read is checked once before timing, and every get counts misses.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { mkdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { LRUCache } from 'lru-cache'
import { RegionStore } from '../../workers/region_store.js'
import { slotsFor } from '../../src/wire/region_types.js'
import { SLOT_WORDS, Slot, SharedRegionReader, allocateRegionMemory } from '../../src/wire/shared_region.js'
import type { RegionMemory } from '../../src/wire/shared_region.js'
import { ValueTag } from '../../src/wire/protocol.js'
import { drawRing, ZipfSampler } from '../../src/cli/workload.js'
import { describeError, fmtMachine, fmtNs, fmtPct, fmtRate, fmtRatio, heading, machineInfo, ratio, table } from '../report.js'
import { SharedMap, adoptSharedMap, N, VALUE_BYTES, SMALL_BYTES, ZIPF_S, SEED, RING, MASK, BATCH, SHAREDMAP_LOAD, KEY_UNITS, VALUE_UNITS, keyOf, makeValue, regionConfig, RegionDirect, NearCache } from './sync_tiers_subjects.js'
import { Counters, Timing, sink, median, measure, printMeasured, lruGets, counts, subject, mapGets, sharedMapGets, regionGets, nearGets, nearPlainGets, nearUncheckedGets, verifyAll, raceCheck } from './sync_tiers_measure.js'

// ── the worker thread: the shard-like writer, and the lock probes ──────────

/** Int32 words of the control buffer shared with a worker. */
const CTRL_STOP = 0
const CTRL_LOCKED = 1
const CTRL_SLEEP = 2
const CTRL_WORDS = 4

type WorkerJob =
  | { role: 'sharedmap-writer'; map: unknown; ctrl: SharedArrayBuffer }
  | { role: 'region-writer'; memory: RegionMemory; ctrl: SharedArrayBuffer }
  | { role: 'lock-hold'; map: unknown; ctrl: SharedArrayBuffer; holdMs: number }
  | { role: 'lock-die'; map: unknown }
  | { role: 'full-overwrite'; map: unknown }
  | { role: 'reader'; map: unknown; key: string }

interface WriteCommand {
  cmd: 'write'
  perSec: number
}
interface WriteDone {
  writes: number
  ms: number
}

/**
 * Writes Zipf-chosen keys (its own seed) at `perSec`, in bursts, sleeping
 * 200 µs on the control word between them, until CTRL_STOP. Paced rather
 * than flat out: a shard also serves frames, and a writer spinning on the
 * second of two cores would measure the machine, not the reader.
 */
function pacedWrites(ctrl: Int32Array, perSec: number, write: (i: number) => void): WriteDone {
  const ring = drawRing(new ZipfSampler(N, ZIPF_S, SEED + 100), RING, SEED + 101)
  const t0 = performance.now()
  let writes = 0
  while (Atomics.load(ctrl, CTRL_STOP) === 0) {
    const due = Math.floor(((performance.now() - t0) * perSec) / 1000)
    if (writes >= due) {
      Atomics.wait(ctrl, CTRL_STOP, 0, 0.2)
      continue
    }
    for (const end = Math.min(due, writes + 256); writes < end; writes++) write(ring[writes & MASK]!)
  }
  return { writes, ms: performance.now() - t0 }
}

function workerMain(job: WorkerJob): void {
  const port = parentPort!
  switch (job.role) {
    case 'sharedmap-writer':
    case 'region-writer': {
      const ctrl = new Int32Array(job.ctrl)
      // Version 0 is the fill, 1 the main thread's write rounds; this writer continues from 2.
      const version = new Uint32Array(N).fill(1)
      let write: (i: number) => void
      const t0 = performance.now()
      if (job.role === 'sharedmap-writer') {
        const map = adoptSharedMap(job.map)
        for (let i = 0; i < N; i++) map.set(keyOf(i), makeValue(i, 0))
        write = (i) => map.set(keyOf(i), makeValue(i, ++version[i]!))
      } else {
        const store = new RegionStore(regionConfig, undefined, job.memory)
        for (let i = 0; i < N; i++) store.set(keyOf(i), ValueTag.STRING, Buffer.from(makeValue(i, 0), 'latin1'), undefined, false, false, undefined)
        write = (i) => void store.set(keyOf(i), ValueTag.STRING, Buffer.from(makeValue(i, ++version[i]!), 'latin1'), undefined, false, false, undefined)
      }
      port.postMessage({ filledMs: performance.now() - t0 })
      port.on('message', (m: WriteCommand) => port.postMessage(pacedWrites(ctrl, m.perSec, write)))
      return
    }
    case 'lock-hold': {
      // What a delete() or clear() does for as long as it runs: readers on every thread wait.
      const map = adoptSharedMap(job.map)
      const ctrl = new Int32Array(job.ctrl)
      map.lockExclusive()
      Atomics.store(ctrl, CTRL_LOCKED, 1)
      Atomics.notify(ctrl, CTRL_LOCKED)
      Atomics.wait(ctrl, CTRL_SLEEP, 0, job.holdMs)
      map.unlockExclusive()
      port.postMessage('released')
      return
    }
    case 'lock-die': {
      // A shard that dies inside delete() (a crash, or worker.terminate()): nothing records who held the lock.
      adoptSharedMap(job.map).lockExclusive()
      port.postMessage('took the exclusive lock')
      throw new Error('writer died holding the exclusive lock')
    }
    case 'full-overwrite': {
      // Overwriting a key that exists, once the map is full: set() first calls _find(), which returns
      // with the key's line still locked, then tries to lock that line again.
      const map = adoptSharedMap(job.map)
      for (let i = 0; i < map.size; i++) map.set(`k${i}`, 'v')
      port.postMessage(`filled ${map.length} of ${map.size}; set('k0', 'new') ...`)
      map.set('k0', 'new')
      port.postMessage('set returned')
      return
    }
    case 'reader': {
      const t0 = performance.now()
      const v = adoptSharedMap(job.map).get(job.key)
      port.postMessage(`get(${JSON.stringify(job.key)}) returned ${JSON.stringify(v)} after ${(performance.now() - t0).toFixed(1)} ms`)
      return
    }
  }
}

// ── memory ──────────────────────────────────────────────────────────────────

/** A full GC, without requiring --expose-gc on the command line. */
const gc: () => void = (() => {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
})()

function heapUsed(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

function regionBytes(m: RegionMemory): number {
  return m.header.byteLength + m.slots.byteLength + m.buckets.byteLength + m.values.byteLength
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`

// ── probes of sharedmap's limits ────────────────────────────────────────────

function outcome(fn: () => unknown): string {
  try {
    const r = fn()
    return r === undefined ? 'ok' : `ok: ${JSON.stringify(r)}`
  } catch (err) {
    return `throws ${describeError(err)}`.slice(0, 140)
  }
}

/**
 * Fills a small map, then writes one key with a key or value of exactly the
 * declared size, and reports which other entries changed. Tried over a few
 * candidate keys: the damage lands on the next slot, so a key whose slot is
 * the last one (or whose neighbour is empty) shows none.
 */
function boundaryDamage(kind: 'key' | 'value'): string {
  const others = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot']
  for (let c = 0; c < 16; c++) {
    const map = new SharedMap(8, 8, 8)
    for (const k of others) map.set(k, k.toUpperCase().slice(0, 7))
    const key = kind === 'key' ? `key${c}`.padEnd(8, '_') : `k${c}`
    map.set(key, kind === 'value' ? '12345678' : 'v')
    const damaged = others.filter((k) => map.get(k) !== k.toUpperCase().slice(0, 7)).map((k) => `${k} -> ${JSON.stringify(map.get(k))}`)
    if (damaged.length > 0) {
      return `SharedMap(8, 8, 8): set(${JSON.stringify(key)}, ${kind === 'value' ? '8-unit value' : "'v'"}) changed another entry: ${damaged.join(', ')}; ${JSON.stringify(key)} reads ${JSON.stringify(map.get(key))}; length still ${map.length}`
    }
  }
  return 'no neighbour damaged in 16 tries'
}

function onWorker<T>(w: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    w.once('message', resolve)
    w.once('error', reject)
  })
}

const THIS_FILE = new URL(import.meta.url)

/**
 * Runs a probe in a worker thread, so that this process can give up on it:
 * what it posted, its death if it died, or that it was still blocked after
 * `ms` (then it is terminated; V8 interrupts a thread blocked in Atomics.wait).
 */
async function probeWorker(job: WorkerJob, ms: number): Promise<string> {
  const w = new Worker(THIS_FILE, { workerData: job })
  const said: string[] = []
  let died: string | undefined
  w.on('message', (m) => said.push(String(m)))
  w.on('error', (err) => (died = `died (${describeError(err)})`))
  const exited = new Promise<boolean>((resolve) => w.once('exit', () => resolve(true)))
  const gaveUp = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())
  if (!(await Promise.race([exited, gaveUp]))) {
    said.push(`still blocked after ${ms} ms: terminated`)
    await w.terminate()
  }
  // Its error event may overtake its last message: the death goes last.
  if (died !== undefined) said.push(died)
  return said.join('; ')
}

async function lockProbes(): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  // 1. A writer holds the exclusive lock for 200 ms (as delete() and clear() take it): a get on this thread waits.
  {
    const map = new SharedMap(64, 8, 8)
    map.set('a', 'A')
    const ctrl = new SharedArrayBuffer(CTRL_WORDS * 4)
    const w = new Worker(THIS_FILE, { workerData: { role: 'lock-hold', map, ctrl, holdMs: 200 } satisfies WorkerJob })
    const released = onWorker<string>(w)
    Atomics.wait(new Int32Array(ctrl), CTRL_LOCKED, 0, 5000) // the main thread may block in Node; that is the point
    const t0 = performance.now()
    const v = map.get('a')
    out.getWhileExclusiveLockHeld = `get('a') on the main thread returned ${JSON.stringify(v)} after ${(performance.now() - t0).toFixed(1)} ms (the writer held the lock 200 ms)`
    await released
    await w.terminate()
  }
  // 2. A writer dies holding it: every reader blocks for good.
  {
    const map = new SharedMap(64, 8, 8)
    map.set('a', 'A')
    const writer = await probeWorker({ role: 'lock-die', map }, 1000)
    out.getAfterWriterDiedHoldingLock = `writer: ${writer} | reader thread: ${await probeWorker({ role: 'reader', map, key: 'a' }, 1000)}`
  }
  // 3. Overwrite when full: the writer blocks on itself, and the key's line stays locked for every reader.
  {
    const map = new SharedMap(8, 8, 8)
    const writer = await probeWorker({ role: 'full-overwrite', map }, 1000)
    out.overwriteWhenFull = `writer: ${writer} | reader thread: ${await probeWorker({ role: 'reader', map, key: 'k0' }, 1000)}`
  }
  return out
}

/** The seqlock's answer in the same situation: a slot mid-write makes find() give up at once, and the cache asks the shard. */
function seqlockProbe(store: RegionStore): string {
  const direct = new RegionDirect(store.memory)
  const key = keyOf(1)
  if (direct.get(key) === undefined) return 'key 1 not readable'
  const slots = new Int32Array(store.memory.slots, 0, store.memory.slots.byteLength / 4)
  const at = direct.found.slot * SLOT_WORDS + Slot.SEQ
  Atomics.add(slots, at, 1) // what RegionStore#begin does before it changes a slot
  const t0 = performance.now()
  const v = direct.get(key)
  const ns = (performance.now() - t0) * 1e6
  Atomics.sub(slots, at, 1)
  return `with key 1's slot mid-write (odd SEQ), the direct read returned ${JSON.stringify(v)} (ask the shard) in ${fmtNs(ns)}, without waiting`
}

// ── the run ─────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const quick = process.env.BENCH_SMOKE === '1'
  const writeRate = Number(process.env.BENCH_SYNC_WRITE_RATE ?? 100_000)
  if (!Number.isFinite(writeRate) || writeRate <= 0) throw new Error('BENCH_SYNC_WRITE_RATE must be a positive number')
  const timing: Timing = quick ? { warmupMs: 50, roundMs: 60, rounds: 3 } : { warmupMs: 300, roundMs: 300, rounds: 5 }
  const print = (s: string): void => void process.stdout.write(`${s}\n`)
  const log = (s: string): void => void process.stderr.write(`${s}\n`)
  const machine = machineInfo()
  print(`getSync tiers${quick ? ' (BENCH_SMOKE: shortened, not comparable)' : ''}`)
  print(fmtMachine(machine))
  print(
    `${N} keys "k:<i>", ${VALUE_BYTES}-byte values, Zipf(${ZIPF_S}) key order (top 1% of keys = ${fmtPct(new ZipfSampler(N, ZIPF_S, SEED).headMass(N / 100))} of gets), ` +
      `median of ${timing.rounds} rounds x ${timing.roundMs} ms, batches of ${BATCH}`,
  )

  const ring = drawRing(new ZipfSampler(N, ZIPF_S, SEED), RING, SEED + 1)
  const keys = Array.from({ length: N }, (_, i) => keyOf(i))
  const ringKeys = Array.from(ring, (i) => keys[i]!)

  // Values and in-heap tiers, with the heap each one adds.
  const heap0 = heapUsed()
  const values = Array.from({ length: N }, (_, i) => makeValue(i, 0))
  const heapValues = heapUsed() - heap0
  const map = new Map<string, string>()
  for (let i = 0; i < N; i++) map.set(keys[i]!, values[i]!)
  const heapMap = heapUsed() - heap0 - heapValues
  const lru = new LRUCache<string, string>({ max: N })
  for (let i = 0; i < N; i++) lru.set(keys[i]!, values[i]!)
  const heapLru = heapUsed() - heap0 - heapValues - heapMap

  // sharedmap, filled by a worker thread: the role it would have (a shard writes it, other threads read it).
  const sharedCapacity = Math.ceil(N / SHAREDMAP_LOAD)
  const smap = new SharedMap(sharedCapacity, KEY_UNITS, VALUE_UNITS)
  const smapCtrl = new SharedArrayBuffer(CTRL_WORDS * 4)
  const smapWriter = new Worker(THIS_FILE, { workerData: { role: 'sharedmap-writer', map: smap, ctrl: smapCtrl } satisfies WorkerJob })
  const smapFill = await onWorker<{ filledMs: number }>(smapWriter)

  // A real RegionStore on this thread, and the near cache filled from it by direct reads.
  const heapBeforeRegion = heapUsed()
  const store = new RegionStore(regionConfig)
  const t0 = performance.now()
  for (let i = 0; i < N; i++) store.set(keys[i]!, ValueTag.STRING, Buffer.from(values[i]!, 'latin1'), undefined, false, false, undefined)
  const regionFillMs = performance.now() - t0
  const heapStore = heapUsed() - heapBeforeRegion
  const direct = new RegionDirect(store.memory)
  const heapBeforeNear = heapUsed()
  const near = new NearCache(store.memory)
  for (let i = 0; i < N; i++) near.refill(keys[i]!)
  const heapNear = heapUsed() - heapBeforeNear

  const wrong = {
    lruCache: verifyAll((k) => lru.get(k), (i) => values[i]!),
    map: verifyAll((k) => map.get(k), (i) => values[i]!),
    sharedmap: verifyAll((k) => smap.get(k), (i) => values[i]!),
    regionDirect: verifyAll((k) => direct.get(k), (i) => values[i]!),
    nearCache: verifyAll((k) => near.get(k), (i) => values[i]!),
  }
  const wrongTotal = Object.values(wrong).reduce((a, b) => a + b, 0)
  print(`checked every key of every subject: ${wrongTotal === 0 ? 'all values correct' : `WRONG VALUES ${JSON.stringify(wrong)}`}`)

  // 1. Reads, nothing writing.
  log('reads, no writer ...')
  near.resetCounts()
  const nearNote = (): string => `near hits ${fmtPct(near.hits / Math.max(1, near.hits + near.refills))}`
  const quiet = measure(
    [
      subject('lru-cache', 'this heap', (c) => lruGets(lru, ringKeys, c)),
      subject('Map', 'this heap', (c) => mapGets(map, ringKeys, c)),
      subject('sharedmap', `SAB, written by a worker`, (c) => sharedMapGets(smap, ringKeys, c)),
      subject('region direct', 'SAB (RegionStore)', (c) => regionGets(direct, ringKeys, c)),
      subject('near cache', 'this heap + SEQ check', (c) => nearGets(near, ringKeys, c), nearNote),
      subject('(near, plain loads)', 'this heap + SEQ check', (c) => nearPlainGets(near, ringKeys, c), () => 'diagnostic: SEQ read without Atomics'),
      subject('(near, unchecked)', 'this heap', (c) => nearUncheckedGets(near, ringKeys, c), () => 'diagnostic: no SEQ check'),
    ],
    timing,
    log,
  )
  print(printMeasured('Synchronous gets on the main thread, no writer running', quiet, 'lru-cache'))

  // 1b. The same reads with small values: a "small-value tier" is where sharedmap would serve, so it gets its best case too.
  log(`reads of ${SMALL_BYTES}-byte values ...`)
  const small = Array.from({ length: N }, (_, i) => makeValue(i, 0, SMALL_BYTES))
  const smallMap = new Map<string, string>()
  const smallSmap = new SharedMap(sharedCapacity, KEY_UNITS, SMALL_BYTES + 1) // filled here: no writer runs during reads anyway
  const smallStore = new RegionStore(regionConfig)
  for (let i = 0; i < N; i++) {
    smallMap.set(keys[i]!, small[i]!)
    smallSmap.set(keys[i]!, small[i]!)
    smallStore.set(keys[i]!, ValueTag.STRING, Buffer.from(small[i]!, 'latin1'), undefined, false, false, undefined)
  }
  const smallDirect = new RegionDirect(smallStore.memory)
  const smallNear = new NearCache(smallStore.memory)
  for (let i = 0; i < N; i++) smallNear.refill(keys[i]!)
  const smallWrong =
    verifyAll((k) => smallSmap.get(k), (i) => small[i]!) + verifyAll((k) => smallDirect.get(k), (i) => small[i]!) + verifyAll((k) => smallNear.get(k), (i) => small[i]!)
  if (smallWrong !== 0) print(`WRONG VALUES among the ${SMALL_BYTES}-byte subjects: ${smallWrong}`)
  const quietSmall = measure(
    [
      subject('Map', 'this heap', (c) => mapGets(smallMap, ringKeys, c)),
      subject('sharedmap', 'SAB', (c) => sharedMapGets(smallSmap, ringKeys, c)),
      subject('region direct', 'SAB (RegionStore)', (c) => regionGets(smallDirect, ringKeys, c)),
      subject('near cache', 'this heap + SEQ check', (c) => nearGets(smallNear, ringKeys, c)),
    ],
    timing,
    log,
  )
  print(printMeasured(`The same with ${SMALL_BYTES}-byte values (sharedmap sized ${SMALL_BYTES + 1} units)`, quietSmall, 'Map'))

  // 2. Writes on this thread (for sharedmap: its write cost, which a shard would pay on every set it mirrors).
  log('writes ...')
  const values1 = Array.from({ length: N }, (_, i) => makeValue(i, 1))
  const bytes1 = values1.map((v) => Buffer.from(v, 'latin1'))
  const writes = measure(
    [
      subject('Map', 'this heap', (c) => writeLoop(c, (i) => void map.set(keys[i]!, values1[i]!), ring)),
      subject('lru-cache', 'this heap', (c) => writeLoop(c, (i) => void lru.set(keys[i]!, values1[i]!), ring)),
      subject('sharedmap set', 'SAB', (c) => writeLoop(c, (i) => smap.set(keys[i]!, values1[i]!), ring)),
      subject('sharedmap delete+set', 'SAB', (c) => writeLoop(c, (i) => (smap.delete(keys[i]!), smap.set(keys[i]!, values1[i]!)), ring)),
      subject('RegionStore set', 'SAB', (c) => writeLoop(c, (i) => void store.set(keys[i]!, ValueTag.STRING, bytes1[i]!, undefined, false, false, undefined), ring)),
    ],
    timing,
    log,
  )
  print(printMeasured('Overwrites of existing keys on the main thread (Zipf order)', writes, 'Map', 'write'))
  print(`fills of ${N} keys: sharedmap by its worker ${fmtRate((N * 1000) / smapFill.filledMs)} (values built in the loop), RegionStore here ${fmtRate((N * 1000) / regionFillMs)}`)

  // 3. Memory.
  const smapBytes = smap.storage.byteLength
  const regionSab = regionBytes(store.memory)
  const memRows: [string, number, string][] = [
    ['value strings (shared by Map, lru-cache)', heapValues, 'JS heap'],
    ['Map', heapMap, 'JS heap, excluding the value strings'],
    ['lru-cache', heapLru, 'JS heap, excluding the value strings'],
    ['sharedmap', smapBytes, `SAB, allocated whole at construction: ${sharedCapacity} slots x 2 x (${align4(KEY_UNITS)} + ${align4(VALUE_UNITS)}) UTF-16 units + locks/chains`],
    ['RegionStore shared memory', regionSab, 'SAB, grown as entries arrive (committed size)'],
    ['RegionStore private arrays', heapStore, 'JS heap (LRU links, charges; the shard side)'],
    ['near cache (100% filled)', heapNear, 'JS heap: decoded strings + entry objects'],
  ]
  print(heading(`Memory for ${N} entries of ${VALUE_BYTES} bytes`))
  print(
    table(
      [{ header: 'what', align: 'left' }, { header: 'bytes' }, { header: 'per entry' }, { header: 'notes', align: 'left' }],
      memRows.map(([what, b, note]) => [what, mib(b), `${(b / N).toFixed(0)} B`, note]),
    ),
  )

  // 4. Reads while a worker writes, paced: does the reader stay correct, and what does the writer cost it?
  log(`reads under a writer at ${writeRate}/s ...`)
  const ctrlS = new Int32Array(smapCtrl)
  const raceMs = quick ? 100 : 300
  const underSmap = await underWriter(smapWriter, ctrlS, writeRate, () => {
    const m = measure([subject('sharedmap', 'SAB, worker writing', (c) => sharedMapGets(smap, ringKeys, c))], timing, log)
    return { measured: m, race: { sharedmap: raceCheck((k) => smap.get(k), ringKeys, ring, raceMs) } }
  })
  // The region side needs a store owned by a worker: a second RegionStore over its own memory.
  const regionMemory = allocateRegionMemory(slotsFor(regionConfig))
  const regionCtrl = new SharedArrayBuffer(CTRL_WORDS * 4)
  const regionWriter = new Worker(THIS_FILE, { workerData: { role: 'region-writer', memory: regionMemory, ctrl: regionCtrl } satisfies WorkerJob })
  await onWorker<{ filledMs: number }>(regionWriter)
  const direct2 = new RegionDirect(regionMemory)
  const near2 = new NearCache(regionMemory)
  for (let i = 0; i < N; i++) near2.refill(keys[i]!)
  near2.resetCounts()
  const underRegion = await underWriter(regionWriter, new Int32Array(regionCtrl), writeRate, () => {
    const m = measure(
      [
        subject('region direct', 'SAB, worker writing', (c) => regionGets(direct2, ringKeys, c)),
        subject('near cache', 'heap + SEQ, worker writing', (c) => nearGets(near2, ringKeys, c), () => `near hits ${fmtPct(near2.hits / Math.max(1, near2.hits + near2.refills))}`),
      ],
      timing,
      log,
    )
    return {
      measured: m,
      race: {
        regionDirect: raceCheck((k) => direct2.get(k), ringKeys, ring, raceMs),
        nearCache: raceCheck((k) => near2.get(k), ringKeys, ring, raceMs),
      },
    }
  })
  const concurrent = [...underSmap.measured, ...underRegion.measured]
  print(printMeasured(`Synchronous gets on the main thread while a worker overwrites Zipf-chosen keys (the writer paced at ${fmtRate(writeRate)})`, concurrent, 'near cache'))
  print(`writer achieved: sharedmap ${fmtRate((underSmap.writer.writes * 1000) / underSmap.writer.ms)}, RegionStore ${fmtRate((underRegion.writer.writes * 1000) / underRegion.writer.ms)}`)
  const races = { ...underSmap.race, ...underRegion.race }
  print(
    table(
      [{ header: 'correctness under writes', align: 'left' }, { header: 'reads' }, { header: 'answered' }, { header: 'torn/foreign' }, { header: 'older than seen' }],
      Object.entries(races).map(([k, r]) => [k, String(r.reads), fmtPct(r.hits / r.reads), String(r.malformed), String(r.older)]),
    ),
  )

  // 5. sharedmap's limits and locks.
  log('probes ...')
  const probes: Record<string, string> = {
    capacityAndSizes:
      `new SharedMap(maxSize, keySize, objSize): all three fixed for life and rounded up to a multiple of 4 (new SharedMap(10, 5, 5).size is ${new SharedMap(10, 5, 5).size}); ` +
      'key and value sizes count UTF-16 units; memory = maxSize x (2 x (keySize + objSize) + ~4.1) bytes, allocated at construction; no eviction, no TTL',
    keyTooLong: outcome(() => new SharedMap(8, 8, 8).set('123456789', 'v')),
    valueTooLong: outcome(() => new SharedMap(8, 8, 8).set('k', '123456789')),
    keyExactlyKeySize: boundaryDamage('key'),
    valueExactlyObjSize: boundaryDamage('value'),
    valueWithNul: outcome(() => {
      const m = new SharedMap(8, 8, 8)
      m.set('k', 'a\u0000b')
      return m.get('k')
    }),
    nonStringValue: outcome(() => new SharedMap(8, 8, 8).set('k', { a: 1 } as unknown as string)),
    numberValue: outcome(() => {
      const m = new SharedMap(8, 8, 8)
      m.set('k', 12)
      return m.get('k')
    }),
    newKeyWhenFull: outcome(() => {
      const m = new SharedMap(8, 8, 8)
      for (let i = 0; i < 8; i++) m.set(`k${i}`, 'v')
      m.set('k8', 'v')
    }),
    deleteMissingKey: outcome(() => new SharedMap(8, 8, 8).delete('absent')),
    ...(await lockProbes()),
    seqlockInSameSituation: seqlockProbe(store),
  }
  print(heading('sharedmap limits and locks (probed)'))
  for (const [k, v] of Object.entries(probes)) print(`${k}: ${v}`)

  // 6. Conclusion, from this run's figures.
  const q = (name: string): number => quiet.find((r) => r.name === name)!.medianOpsPerSec
  const c = (name: string): number => concurrent.find((r) => r.name === name)!.medianOpsPerSec
  const sharedWins = q('sharedmap') > q('near cache') && q('sharedmap') > q('region direct')
  print(heading('Conclusion'))
  print(
    [
      `near cache ${fmtRate(q('near cache'))} vs sharedmap ${fmtRate(q('sharedmap'))} (${fmtRatio(ratio(q('near cache'), q('sharedmap')))}) with no writer; ` +
        `${fmtRate(c('near cache'))} vs ${fmtRate(c('sharedmap'))} (${fmtRatio(ratio(c('near cache'), c('sharedmap')))}) under writes.`,
      `region direct ${fmtRate(q('region direct'))} = ${fmtRatio(ratio(q('region direct'), q('sharedmap')))} sharedmap, with no extra copy of the data: sharedmap would be a second store the shard must keep in step.`,
      sharedWins
        ? 'sharedmap read fastest in this run: weigh that against its limits above before adopting it.'
        : 'sharedmap reads slowest of the shared-memory options, and its limits (fixed capacity, strings only, size-boundary corruption, locks a reader waits on for good after a writer dies or overwrites a key when full, LGPL) come on top: keep the near cache, refilled by direct region reads, as the only getSync tier.',
    ].join('\n'),
  )

  const report = {
    machine,
    quick,
    config: { keys: N, valueBytes: VALUE_BYTES, zipfS: ZIPF_S, seed: SEED, timing, writeRate, sharedCapacity, keyUnits: KEY_UNITS, valueUnits: VALUE_UNITS },
    wrongValues: wrong,
    quiet,
    quietSmall,
    writes,
    fills: { sharedmapWorkerMs: smapFill.filledMs, regionStoreMs: regionFillMs },
    memory: Object.fromEntries(memRows.map(([what, b]) => [what, b])),
    concurrent,
    writers: { sharedmap: underSmap.writer, regionStore: underRegion.writer },
    races,
    probes,
    sharedmapWins: sharedWins,
    sink, // the loops' checksum, kept so no read could be optimized away
  }
  const dir = fileURLToPath(new URL('../../../bench/results/', import.meta.url))
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `sync_tiers-${machine.date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  print(`raw numbers: ${file}`)

  await smapWriter.terminate()
  await regionWriter.terminate()
}

/**
 * One loop for every write subject: unlike the get loops, its call to `write`
 * is shared (megamorphic), which costs a few ns against writes of 100 ns and more.
 */
function writeLoop(c: Counters, write: (i: number) => void, ring: Uint32Array): (ops: number) => void {
  let pos = 0
  return (ops) => {
    for (let n = 0; n < ops; n++) write(ring[pos++ & MASK]!)
    counts(c, ops, 0)
  }
}

const align4 = (n: number): number => (n + 3) & ~3

/** Starts the worker's paced writes, runs `fn` on this thread meanwhile, then stops the writer and collects its count. */
async function underWriter<T>(w: Worker, ctrl: Int32Array, perSec: number, fn: () => T): Promise<T & { writer: WriteDone }> {
  Atomics.store(ctrl, CTRL_STOP, 0)
  const done = onWorker<WriteDone>(w)
  w.postMessage({ cmd: 'write', perSec } satisfies WriteCommand)
  await new Promise((r) => setTimeout(r, 50)) // let it get going
  const result = fn()
  Atomics.store(ctrl, CTRL_STOP, 1)
  Atomics.notify(ctrl, CTRL_STOP)
  return { ...result, writer: await done }
}

if (isMainThread) {
  main().catch((err: unknown) => {
    process.stderr.write(`sync_tiers: ${describeError(err)}\n`)
    process.exitCode = 1
  })
} else {
  workerMain(workerData as WorkerJob)
}
