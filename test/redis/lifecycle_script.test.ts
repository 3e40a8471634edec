// The simplest lifecycle, as a user's script runs it: create, set, close, and the process exits
// by itself with code 0 and nothing on stderr. Run in child processes, many times (the failures
// this guards against were races with process exit), both from a file and through
// `node --input-type=module -e` (whose options a worker thread must not inherit), with 1, 2 and 4
// shards, and with the parts that add handles of their own: the bus and the L2 tier on a private
// redis-server, an attached thread, the loader pool.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RedisProc } from '../fixtures/redis_proc.js'
import { WORKER_FAILURE } from '../fixtures/throw_in_workers.js'

const INDEX = new URL('../../src/index.js', import.meta.url).href
const THROW_IN_WORKERS = new URL('../fixtures/throw_in_workers.js', import.meta.url).href

/** What one child does besides create, set, get and close. */
interface Variant {
  shards: number
  bus?: boolean
  l2?: boolean
  attach?: boolean
  loaders?: boolean
}

/** The attached thread's code: eval'd, so it runs as a module under `--input-type=module` and as a script otherwise. */
const ATTACHED = `import('node:worker_threads').then(async ({ parentPort, workerData }) => {
  const { attachCache } = await import(workerData.index)
  const cache = await attachCache(workerData.handle)
  await cache.set('t', 1)
  parentPort.postMessage(await cache.get('a'))
})`

/**
 * The user's script. Options come from the environment (the same text runs from a file and from
 * -e). The attached thread is still attached when the owner closes: its exit is left to it.
 */
const SCRIPT = `const { createCache } = await import(${JSON.stringify(INDEX)})
const o = JSON.parse(process.env.SHARDCACHE_LIFECYCLE)
const options = { shards: o.shards }
if (o.bus) options.bus = { redis: o.redis, channel: o.id }
if (o.l2) options.l2 = { redis: o.redis, prefix: o.id + ':' }
if (o.loaders) options.loaders = { pool: { filename: o.loaderFile, maxThreads: 1 } }
const cache = await createCache(options)
await cache.set('a', 'b')
if ((await cache.get('a')) !== 'b') throw new Error('get after set')
if (o.loaders) {
  const v = await cache.getOrCompute('sq', { task: 'square', args: [7] })
  if (v !== 49) throw new Error('getOrCompute through the pool returned ' + v)
}
if (o.attach) {
  const { Worker } = await import('node:worker_threads')
  const handle = cache.handle()
  const w = new Worker(${JSON.stringify(ATTACHED)}, { eval: true, workerData: { index: ${JSON.stringify(INDEX)}, handle }, transferList: handle.transfer })
  const got = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
  if (got !== 'b') throw new Error('the attached thread read ' + got)
  if ((await cache.get('t')) !== 1) throw new Error('the attached thread\\'s write is missing')
}
await cache.close()
console.log('closed')
`

/** A script whose shard threads cannot start: createCache must reject with a typed error, and nothing may be left running. */
const START_FAILS = `const { createCache, CacheError } = await import(${JSON.stringify(INDEX)})
const o = JSON.parse(process.env.SHARDCACHE_LIFECYCLE)
try {
  await createCache({ shards: o.shards })
  console.log('started')
} catch (e) {
  console.log(JSON.stringify({ cacheError: e instanceof CacheError, name: e.name, code: e.code, shard: e.shard, message: e.message, cause: e.cause?.message }))
}
`

const dir = mkdtempSync(join(tmpdir(), 'shardcache-lifecycle-'))
const scriptFile = join(dir, 'script.mjs')
const startFailsFile = join(dir, 'start_fails.mjs')
const loaderFile = join(dir, 'loaders.mjs')
writeFileSync(scriptFile, SCRIPT)
writeFileSync(startFailsFile, START_FAILS)
writeFileSync(loaderFile, 'export function square(x) { return x * x }\n')

type Mode = 'file' | 'eval'

interface Run {
  code: number | string | null
  stdout: string
  stderr: string
}

let runs = 0

/** Runs `script` in a child (from its file, or its text through -e); a child that hangs is killed and fails on its exit code. */
function runChild(mode: Mode, script: { file: string; text: string }, env: Record<string, unknown>, nodeArgs: string[] = []): Promise<Run> {
  const args = mode === 'file' ? [...nodeArgs, script.file] : [...nodeArgs, '--input-type=module', '-e', script.text]
  const id = `lifecycle-${process.pid}-${runs++}`
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env: { ...process.env, SHARDCACHE_LIFECYCLE: JSON.stringify({ ...env, id }) }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err.code ?? err.signal ?? null), stdout, stderr })
    })
  })
}

/** Runs the jobs three at a time: a child spends part of its life waiting (thread start-up, Redis), and more at once would crowd a 2-core machine. */
async function limited<T>(jobs: (() => Promise<T>)[], concurrency = 3): Promise<T[]> {
  const out = new Array<T>(jobs.length)
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs.length) {
        const i = next++
        out[i] = await jobs[i]!()
      }
    }),
  )
  return out
}

const script = { file: scriptFile, text: SCRIPT }

/**
 * Runs each variant `times` times in each of `modes`; every run must exit 0, print 'closed' and
 * nothing on stderr.
 */
async function closesCleanly(variants: Variant[], times: number, modes: readonly Mode[], extra: Record<string, unknown> = {}): Promise<void> {
  const jobs: (() => Promise<{ label: string; run: Run }>)[] = []
  for (const v of variants) {
    for (const mode of modes) {
      for (let i = 0; i < times; i++) {
        jobs.push(async () => ({ label: `${mode} ${JSON.stringify(v)} #${i}`, run: await runChild(mode, script, { ...v, ...extra, loaderFile }) }))
      }
    }
  }
  const results = await limited(jobs)
  const bad = results.filter(({ run }) => run.code !== 0 || run.stderr !== '' || run.stdout !== 'closed\n')
  // All failures at once: which variants and modes fail says more than the first one alone.
  assert.equal(
    bad.map(({ label, run }) => `${label}: exit ${String(run.code)}, stdout ${JSON.stringify(run.stdout)}, stderr ${JSON.stringify(run.stderr.split('\n').slice(0, 6).join('\n'))}`),
    [],
  )
  assert.is(results.length, variants.length * modes.length * times)
}

/**
 * Runs per shard count and mode of the plain script. A child costs ~0.6 s of CPU (Node start-up,
 * loading the library, starting its threads), so the default keeps the file to ~20 s of CPU in all;
 * set SHARDCACHE_LIFECYCLE_RUNS (e.g. 10) to hunt for a rare exit race.
 */
const PLAIN_RUNS = Math.max(1, Number(process.env.SHARDCACHE_LIFECYCLE_RUNS ?? 2) || 2)
const BOTH: readonly Mode[] = ['file', 'eval']

test(`create, set, close: exits 0 with empty stderr, ${PLAIN_RUNS} runs each of 1, 2 and 4 shards from a file and as many through -e`, async () => {
  await closesCleanly([{ shards: 1 }, { shards: 2 }, { shards: 4 }], PLAIN_RUNS, BOTH)
})

test('with an attached thread still attached at close, and with the loader pool after a getOrCompute', async () => {
  // Both together, with 4 shards, are in the redis test's last variant.
  await closesCleanly([{ shards: 1, attach: true }], 1, ['eval'])
  await closesCleanly([{ shards: 2, loaders: true }], 1, ['file', 'eval'])
})

test('with the bus, the L2 tier, and everything together, on a private redis-server', async () => {
  const redis = await RedisProc.start()
  try {
    const extra = { redis: redis.url }
    await closesCleanly([{ shards: 1, bus: true }], 1, ['eval'], extra)
    await closesCleanly([{ shards: 2, l2: true }], 1, ['file'], extra)
    await closesCleanly([{ shards: 4, bus: true, l2: true, attach: true, loaders: true }], 1, BOTH, extra)
  } finally {
    await redis.kill()
  }
})

test('shard threads that cannot start: createCache rejects with E_SHARD_START naming the shard, its cause the thread error; the process exits 0', async () => {
  const cases: [number, Mode][] = [
    [1, 'file'],
    [4, 'eval'],
  ]
  const jobs = cases.map(([shards, mode]) => () => runChild(mode, { file: startFailsFile, text: START_FAILS }, { shards }, [`--import=${THROW_IN_WORKERS}`]).then((run) => ({ shards, run })))
  for (const { shards, run } of await limited(jobs)) {
    assert.is(run.stderr, '')
    assert.is(run.code, 0)
    const r = JSON.parse(run.stdout) as { cacheError: boolean; name: string; code: string; shard: number; message: string; cause: string }
    assert.ok(r.shard >= 0 && r.shard < shards, `shard ${r.shard} of ${shards}`)
    assert.equal(r, {
      cacheError: true,
      name: 'ShardStartError',
      code: 'E_SHARD_START',
      shard: r.shard,
      message: `shard ${r.shard} failed to start: ${WORKER_FAILURE}`,
      cause: WORKER_FAILURE,
    })
  }
})

test.after(() => rmSync(dir, { recursive: true, force: true }))

test.run()
