/**
 * A snapshot cut short never spoils the snapshot already at its path: a
 * child process holding 5,000 entries (~2.2 MB of snapshot, 5 pages) is killed (SIGTERM,
 * SIGKILL) while it writes a new snapshot over a valid earlier one, and
 * restoring from the path then gives exactly one complete generation, the
 * earlier or (if the rename happened first) the new, never an error or a
 * mix. Temp files left by killed processes are removed by the next snapshot
 * to that path. Two snapshots to one path at once each write their own file.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createCache } from '../../src/index.js'
import type { Cache } from '../../src/index.js'
import { snapshotValue } from '../fixtures/snapshot_values.js'

const CHILD = fileURLToPath(new URL('../fixtures/snapshot_child.js', import.meta.url))
const ENTRIES = 5000
const dir = mkdtempSync(join(tmpdir(), 'shardcache-snapkill-'))
const path = join(dir, 'cache.snap')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))


/** Temp files of snapshots to `path` (any process). */
function temps(): string[] {
  return readdirSync(dir).filter((f) => f.startsWith('cache.snap.tmp'))
}

function tempBytes(): number {
  let n = 0
  for (const f of temps()) {
    try {
      n = Math.max(n, statSync(join(dir, f)).size)
    } catch {
      // renamed or removed meanwhile
    }
  }
  return n
}

let reader: Cache | undefined
test.after(async () => {
  await reader?.close()
  rmSync(dir, { recursive: true, force: true })
})

/** Which complete generation the file at `path` holds; fails on anything else. */
async function restoredGeneration(): Promise<number> {
  reader ??= await createCache({ shards: 1, regions: { default: { maxBytes: '512mb' } } })
  const cache = reader
  await cache.clear()
  {
    assert.is(await cache.restore(path), ENTRIES + 1)
    const g = await cache.get<number>('generation')
    assert.ok(g === 1 || g === 2, `generation ${g}`)
    const keys = Array.from({ length: ENTRIES }, (_, i) => `k:${i}`)
    const values = await cache.mget<string>(keys)
    for (let i = 0; i < ENTRIES; i++) {
      if (values[i] !== snapshotValue(g!, i)) assert.unreachable(`k:${i} is ${JSON.stringify(values[i]?.slice(0, 20))}, not generation ${g}'s value`)
    }
    return g!
  }
}

/**
 * Runs the child and sends `signal` once `when` says so (polled every 2 ms
 * from the moment it starts its second snapshot); resolves whether it had
 * finished that snapshot.
 */
async function killPartway(
  signal: NodeJS.Signals,
  when: (sinceWritingMs: number, tempBytes: number) => boolean,
): Promise<{ done: boolean; at: number; midWrite: boolean; code: number | null; sig: string | null }> {
  const before = new Set(temps())
  const child = spawn(process.execPath, [CHILD, path, String(ENTRIES)], { stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  let writingAt = 0
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
    if (writingAt === 0 && out.includes('writing\n')) writingAt = performance.now()
  })
  const exited = new Promise<{ code: number | null; sig: string | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })))
  let at = -1
  let ended: { code: number | null; sig: string | null } | undefined
  void exited.then((e) => (ended = e))
  const deadline = Date.now() + 60_000
  while (ended === undefined && Date.now() < deadline) {
    if (writingAt > 0) {
      const bytes = tempBytes()
      if (when(performance.now() - writingAt, bytes)) {
        at = bytes
        child.kill(signal)
        break
      }
    }
    await sleep(2)
  }
  const e = await exited
  // Killed mid-write exactly when its temp file is left behind (a finished snapshot renamed it away):
  // on a busy machine the child may finish between the poll that saw its size and the signal.
  const midWrite = temps().some((f) => !before.has(f))
  return { done: out.includes('done '), at, midWrite, ...e }
}

test('killed while writing a snapshot over a valid one: the path holds one complete generation, never a partial or corrupt file', async () => {
  type Run = Awaited<ReturnType<typeof killPartway>> & { generation: number }
  // What the path holds is read right after each run: the next run's child writes generation 1 over it first.
  const run = async (signal: NodeJS.Signals, when: (ms: number, bytes: number) => boolean): Promise<Run> => {
    const r = await killPartway(signal, when)
    assert.ok(r.sig !== null || r.code === 0, `child exited with ${r.code}`)
    return { ...r, generation: await restoredGeneration() }
  }
  // The first run's earlier snapshot gives the size to aim at.
  const runs = [await run('SIGTERM', (_ms, bytes) => bytes > 0)]
  const full = statSync(path).size
  runs.push(await run('SIGKILL', (_ms, bytes) => bytes >= full * 0.5))
  runs.push(await run('SIGTERM', (_ms, bytes) => bytes >= full * 0.9))
  // A random moment: before the temp file exists, while it grows, or after the rename.
  const delay = Math.random() * 400
  runs.push(await run('SIGTERM', (ms) => ms >= delay))
  // The race really happened at least once (a slow machine gets more tries, killed as soon as the temp file has bytes).
  for (let extra = 0; extra < 5 && !runs.some((r) => r.midWrite); extra++) runs.push(await run('SIGKILL', (_ms, bytes) => bytes > 0))
  console.log(`  snapshot of ${full} bytes; killed at temp sizes ${runs.map((r) => r.at).join(', ')}; mid-write ${runs.map((r) => r.midWrite).join(', ')}; restored generations ${runs.map((r) => r.generation).join(', ')}`)
  // The runs killed mid-write (their temp file left behind) kept generation 1; the others hold 1 or 2, whole.
  for (let i = 0; i < runs.length; i++) {
    if (runs[i]!.midWrite) assert.is(runs[i]!.generation, 1, `run ${i}: killed at ${runs[i]!.at} of ${full} bytes`)
    else assert.ok(runs[i]!.generation === 1 || runs[i]!.generation === 2)
  }
  assert.ok(runs.some((r) => r.midWrite), 'no run was killed mid-write')

  // Leftovers of the killed writers are removed by the next snapshot to the path.
  const cache = await createCache({ shards: 1 })
  try {
    await cache.set('generation', 3)
    assert.is(await cache.snapshot(path), 1)
    assert.equal(temps(), [])
  } finally {
    await cache.close()
  }
})

test('two snapshots to one path at once: each writes its own temp file; the path holds one of them, whole', async () => {
  const cache = await createCache({ shards: 1, regions: { default: { maxBytes: '512mb', compression: false } } })
  try {
    await cache.mset(Array.from({ length: ENTRIES }, (_, i): [string, string] => [`k:${i}`, snapshotValue(1, i)]))
    await cache.set('generation', 1)
    const counts = await Promise.all([cache.snapshot(path), cache.snapshot(path)])
    assert.equal(counts, [ENTRIES + 1, ENTRIES + 1])
    assert.equal(temps(), [])
  } finally {
    await cache.close()
  }
  assert.is(await restoredGeneration(), 1)
})

test.run()
