/**
 * Before and after: this build against another build of shardcache (another
 * checkout's dist/, e.g. a worktree of the commit before a change), in one
 * process, so that both see the same machine at the same moments. For moves
 * and refactors whose promise is "no slower": the section figures of two
 * separate `npm run bench` runs differ by 10-20% on this shared machine, more
 * than such a change could cost.
 *
 *   git worktree add ../before <commit> && (cd ../before && npm ci)
 *   npx tsc -p tsconfig.json && node dist/bench/studies/ab_builds.js ../before/dist [store|client]
 *
 * store: the region store on this thread (get hit, set update, set with
 * eviction; LRU and FIFO stores both live, as in a shard with both kinds of
 * region). client: two caches of 2 shards each, one per build (pipelined gets
 * with 512 in flight, pipelined 90% get / 10% set, one get in flight, getSync
 * near-cache hits). Every case's loop is compiled once per build (new
 * Function), so no call site is shared between the builds; rounds alternate
 * which build goes first; the figure is the median of the per-round ratios
 * (after/before), with its range. The first rounds are warm-up.
 *
 * Its own bias: the build loaded second (this one) read 0-7% faster than the
 * same build loaded first (a build against a copy of itself: 0.99-1.08 per
 * case). So run it both ways, from each checkout against the other, and read
 * a difference as real only when both agree.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- both builds are loaded at run time, by path */
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = fileURLToPath(new URL('../../', import.meta.url)) // this build's dist/
const [other, which = 'both'] = process.argv.slice(2)
if (other === undefined || !['store', 'client', 'both'].includes(which)) {
  process.stderr.write('usage: node dist/bench/studies/ab_builds.js OTHER_DIST [store|client|both]\n')
  process.exit(2)
}
const load = (dist: string, file: string): Promise<any> => import(pathToFileURL(path.resolve(dist, file)).href)
const med = (xs: number[]): number => { const t = [...xs].sort((a, b) => a - b); return t[Math.floor(t.length / 2)]! }
const fmt = (x: number): string => (x >= 999_500 ? (x / 1e6).toFixed(2) + 'M/s' : (x / 1e3).toFixed(0) + 'k/s')
const line = (name: string, v: { base: number[]; new: number[]; ratio: number[] }): string =>
  `${name.padEnd(24)} before ${fmt(med(v.base))}  after ${fmt(med(v.new))}  after/before ${med(v.ratio).toFixed(3)} (range ${Math.min(...v.ratio).toFixed(2)}-${Math.max(...v.ratio).toFixed(2)}, ${v.ratio.length} rounds)`
const { ZipfSampler, drawRing } = await load(here, 'src/cli/workload.js')

async function storeAB(): Promise<void> {
  const A = await load(other!, 'workers/region_store.js')
  const B = await load(here, 'workers/region_store.js')
  const N = 100_000, SMALL = 10_000, RING = 1 << 18, MASK = RING - 1, FRESH = 1 << 17, OPS = 600_000, ROUNDS = 13
  const ring = drawRing(new ZipfSampler(N, 0.99, 3), RING)
  const keyBytes = Array.from({ length: N }, (_, i) => Buffer.from(`key:${i}`))
  const freshBytes = Array.from({ length: FRESH }, (_, i) => Buffer.from(`fresh:${i}`))
  const value = new Uint8Array(220).fill(7)
  const cfg = (policy: string, maxEntries: number): object => ({ name: 'ab', policy, maxBytes: Infinity, maxEntries, defaultTtl: Infinity, compressMinBytes: Infinity })
  const bodies = {
    'get hit': 'let s = 0; for (let n = 0; n < OPS; n++) { const k = keyBytes[ring[st.i++ & MASK]]; s += st.store.getAt(k, 0, k.length)?.length ?? 0 } return s',
    'set (update)': 'for (let n = 0; n < OPS; n++) { const k = keyBytes[ring[st.i++ & MASK]]; st.store.setAt(k, 0, k.length, 4, value, undefined, false, false, undefined) } return 1',
    'set with eviction': 'for (let n = 0; n < OPS; n++) { const k = freshBytes[st.i++ & (FRESH - 1)]; st.small.setAt(k, 0, k.length, 4, value, undefined, false, false, undefined) } return 1',
  }
  function subject(M: any, policy: string): Record<string, () => number> {
    const store = new M.RegionStore(cfg(policy, N)), small = new M.RegionStore(cfg(policy, SMALL))
    for (let i = 0; i < N; i++) store.set(`key:${i}`, 4, value, undefined, false, false, undefined)
    for (let i = 0; i < SMALL; i++) small.set(`key:${i}`, 4, value, undefined, false, false, undefined)
    const st = { store, small, i: 0 }
    const fns: Record<string, () => number> = {}
    for (const [name, body] of Object.entries(bodies)) fns[name] = new Function('st', 'keyBytes', 'freshBytes', 'ring', 'value', 'OPS', 'MASK', 'FRESH', body).bind(null, st, keyBytes, freshBytes, ring, value, OPS, MASK, FRESH)
    return fns
  }
  // AB_POLICIES=lru: only LRU stores in the process (the policy calls then see one class).
  const policies = (process.env.AB_POLICIES ?? 'lru,fifo').split(',')
  const subjects: Record<string, { base: Record<string, () => number>; new: Record<string, () => number> }> = {}
  for (const p of policies) subjects[p] = { base: subject(A, p), new: subject(B, p) }
  const res: Record<string, { base: number[]; new: number[]; ratio: number[] }> = {}
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of policies) for (const name of Object.keys(bodies)) {
      const key = `${p} ${name}`; res[key] ??= { base: [], new: [], ratio: [] }
      const order = r % 2 === 0 ? ['base', 'new'] : ['new', 'base']
      const rate: Record<string, number> = {}
      for (const v of order) { const t0 = performance.now(); subjects[p]![v as 'base' | 'new']![name]!(); rate[v] = OPS / ((performance.now() - t0) / 1000) }
      if (r >= 2) { res[key]!.base.push(rate.base!); res[key]!.new.push(rate.new!); res[key]!.ratio.push(rate.new! / rate.base!) }
    }
  }
  for (const [k, v] of Object.entries(res)) console.log(line(k, v))
}

async function clientAB(): Promise<void> {
  const A = await load(other!, 'src/index.js')
  const B = await load(here, 'src/index.js')
  const N = 100_000, RING = 1 << 20, MASK = RING - 1, ROUND_MS = 200, ROUNDS = 11, CONC = 512
  const ring = drawRing(new ZipfSampler(N, 0.99, 42), RING)
  const keys = Array.from({ length: N }, (_, i) => `key:${i}`)
  const value = 'v'.repeat(220)
  const writes = new Uint8Array(RING)
  { let x = 12345; for (let i = 0; i < RING; i++) { x = (x * 1103515245 + 12345) >>> 0; writes[i] = x % 100 < 10 ? 1 : 0 } }
  const AsyncFunction = (async () => {}).constructor as FunctionConstructor
  const bodies: Record<string, [boolean, string]> = {
    'pipelined get': [true, `const end = performance.now() + MS; let ops = 0; const loop = async () => { while (performance.now() < end) { for (let j = 0; j < 64; j++) { await cache.get(keys[ring[st.i++ & MASK]]); ops++ } } }; await Promise.all(Array.from({ length: CONC }, loop)); return ops`],
    'pipelined 90/10': [true, `const end = performance.now() + MS; let ops = 0; const loop = async () => { while (performance.now() < end) { for (let j = 0; j < 64; j++) { const i = st.i++ & MASK; const k = keys[ring[i]]; if (writes[i] === 1) await cache.set(k, value); else await cache.get(k); ops++ } } }; await Promise.all(Array.from({ length: CONC }, loop)); return ops`],
    'one-in-flight get': [true, `const end = performance.now() + MS; let ops = 0; while (performance.now() < end) { for (let j = 0; j < 16; j++) { await cache.get(keys[ring[st.i++ & MASK]]); ops++ } } return ops`],
    'getSync near hit': [false, `const end = performance.now() + MS; let ops = 0, s = 0; while (performance.now() < end) { for (let j = 0; j < 1024; j++) { const v = near.getSync(keys[ring[st.i++ & MASK] % 5000]); if (v !== undefined) s++; ops++ } } if (s === 0) throw new Error('no near hits'); return ops`],
  }
  async function subject(M: any): Promise<{ fns: Record<string, () => Promise<number> | number>; close: () => Promise<void> }> {
    const cache = await M.createCache({ shards: 2 })
    const near = await M.createCache({ shards: 2, nearCache: { maxEntries: 10_000 } })
    for (let i = 0; i < N; i += 5000) await cache.mset(keys.slice(i, i + 5000).map((k) => [k, value]))
    for (let i = 0; i < 5000; i++) await near.set(keys[i], value)
    for (let r = 0; r < 3; r++) for (let i = 0; i < 5000; i++) near.getSync(keys[i]) ?? await near.get(keys[i])
    const st = { i: 0 }
    const fns: Record<string, () => Promise<number> | number> = {}
    for (const [name, [isAsync, body]] of Object.entries(bodies)) {
      const F = isAsync ? AsyncFunction : Function
      fns[name] = new F('cache', 'near', 'st', 'keys', 'ring', 'writes', 'value', 'MASK', 'MS', 'CONC', body).bind(null, cache, near, st, keys, ring, writes, value, MASK, ROUND_MS, CONC)
    }
    return { fns, close: async () => { await cache.close(); await near.close() } }
  }
  const s: Record<'base' | 'new', Awaited<ReturnType<typeof subject>>> = { base: await subject(A), new: await subject(B) }
  const res: Record<string, { base: number[]; new: number[]; ratio: number[] }> = {}
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of Object.keys(bodies)) {
      const rs = (res[name] ??= { base: [], new: [], ratio: [] })
      const order = r % 2 === 0 ? ['base', 'new'] : ['new', 'base']
      const rate: Record<string, number> = {}
      for (const v of order) { const t0 = performance.now(); const ops = await s[v as 'base' | 'new'].fns[name]!(); rate[v] = ops / ((performance.now() - t0) / 1000) }
      if (r >= 1) { rs.base.push(rate.base!); rs.new.push(rate.new!); rs.ratio.push(rate.new! / rate.base!) }
    }
  }
  for (const [k, v] of Object.entries(res)) console.log(line(k, v))
  await s.base.close(); await s.new.close()
}

if (which !== 'client') await storeAB()
if (which !== 'store') await clientAB()
