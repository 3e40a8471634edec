/**
 * Snapshots: a round trip of 100k entries (values plain, LZ4- and
 * dictionary-compressed, TTLs, metadata, tags), entries expired meanwhile
 * skipped, a snapshot taken while writes go on, a Writable target, and
 * truncated or corrupt files that load nothing.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'shardcache-snapshot-'))
const open: Cache[] = []
const options: CacheOptions = {
  shards: 2,
  regions: { default: { maxBytes: '256mb' }, big: { compression: { minBytes: 100 } }, records: { compression: { dictionary: true } } },
}

async function cache(more: CacheOptions = {}): Promise<Cache> {
  const c = await createCache({ ...options, ...more })
  open.push(c)
  return c
}

test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
})

const record = (i: number) => ({ id: i, name: `user ${i}`, email: `user${i}@example.com`, plan: i % 3 === 0 ? 'pro' : 'free', active: i % 2 === 0 })

test('a round trip of 100k entries keeps values, types, TTLs, metadata and tags; entries that expired meanwhile are skipped', async () => {
  const a = await cache()
  const keys = Array.from({ length: 100_000 }, (_, i) => `k:${i}`)
  for (let i = 0; i < keys.length; i += 5000) await a.mset(keys.slice(i, i + 5000).map((k, j) => [k, i + j] as [string, number]), { ttl: '1h' })
  await a.set('buf', Buffer.from([0, 1, 2, 255]))
  await a.set('meta', 'v', { metadata: { owner: 'x' }, tags: ['t1', 't2'] })
  await a.region('big').set('text', 'lorem ipsum '.repeat(500))
  for (let i = 0; i < 300; i++) await a.region('records').set(`r:${i}`, record(i))
  assert.ok((await a.getEntry('k:1'))!.expiresAt > Date.now())
  assert.is((await a.region('big').getEntry('text'))!.compressed, true)
  // Set last, with a TTL that outlasts writing the snapshot even on a busy machine; the restore waits it out.
  const shortSetAt = Date.now()
  await a.set('short', 'gone soon', { ttl: 4000 })
  const progress: number[] = []
  const file = join(dir, 'round.snap')
  const written = await a.snapshot(file, { onProgress: (p) => progress.push(p.entries) })
  const all = 100_000 + 3 + 1 + 300
  // "short" is in the snapshot for sure only if the snapshot ended within its 1.5 s; on a busy machine it may not.
  if (Date.now() - shortSetAt < 1500) assert.is(written, all)
  else assert.ok(written === all || written === all - 1, `${written} written`)
  assert.ok(progress.length > 10 && progress[progress.length - 1] === written)
  await new Promise((r) => setTimeout(r, Math.max(0, shortSetAt + 4100 - Date.now())))

  const b = await cache({ restore: file })
  assert.is((await b.stats()).entries, all - 1) // "short" expired before the restore
  assert.is(await b.get('k:0'), 0)
  assert.is(await b.get('k:99999'), 99_999)
  const ttl = (await b.ttl('k:5'))!
  assert.ok(ttl > 3_500_000 && ttl <= 3_600_000, `ttl ${ttl}`)
  assert.equal(await b.get('buf'), Buffer.from([0, 1, 2, 255]))
  assert.ok(Buffer.isBuffer(await b.get('buf')))
  assert.equal((await b.getEntry('meta'))!.metadata, { owner: 'x' })
  assert.is(await b.invalidateTag('t2'), 1)
  assert.is(await b.get('short'), undefined)
  assert.is(await b.region('big').get('text'), 'lorem ipsum '.repeat(500))
  assert.is((await b.region('big').getEntry('text'))!.compressed, true)
  for (const i of [0, 150, 299]) assert.equal(await b.region('records').get(`r:${i}`), record(i))
})

test('a snapshot taken while writes go on holds every entry present throughout; a Writable target works', async () => {
  const a = await cache()
  const stable = Array.from({ length: 20_000 }, (_, i) => [`s:${i}`, i] as [string, number])
  await a.mset(stable)
  let stop = false
  const writer = (async () => {
    for (let n = 0; !stop; n++) await a.mset(Array.from({ length: 200 }, (_, i) => [`w:${n}:${i}`, n] as [string, number]))
  })()
  const chunks: Buffer[] = []
  const out = new PassThrough()
  out.on('data', (c: Buffer) => chunks.push(c))
  const count = await a.snapshot(out)
  stop = true
  await writer
  assert.ok(count >= 20_000)
  const file = join(dir, 'stream.snap')
  writeFileSync(file, Buffer.concat(chunks))
  const b = await cache()
  assert.is(await b.restore(file), count)
  for (const i of [0, 9_999, 19_999]) assert.is(await b.get(`s:${i}`), i)
})

test('a truncated or corrupt snapshot is E_SNAPSHOT_CORRUPT and loads nothing', async () => {
  const a = await cache()
  await a.mset(Array.from({ length: 2000 }, (_, i) => [`k:${i}`, `value ${i}`] as [string, string]))
  const file = join(dir, 'good.snap')
  await a.snapshot(file)
  const bytes = readFileSync(file)
  const truncated = join(dir, 'truncated.snap')
  writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)))
  const flipped = Buffer.from(bytes)
  flipped[Math.floor(bytes.length / 2)] = flipped[Math.floor(bytes.length / 2)]! ^ 0x40
  const corrupt = join(dir, 'corrupt.snap')
  writeFileSync(corrupt, flipped)
  const foreign = join(dir, 'foreign.snap')
  writeFileSync(foreign, 'not a snapshot at all')
  const b = await cache()
  for (const [path, why] of [
    [truncated, 'truncated'],
    [corrupt, 'corrupt'],
    [foreign, 'not a shardcache snapshot'],
    [join(dir, 'missing.snap'), 'cannot be read'],
  ] as const) {
    try {
      await b.restore(path)
      assert.unreachable(path)
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_SNAPSHOT_CORRUPT', (err as Error).message)
      assert.match((err as Error).message, why)
    }
    assert.is((await b.stats()).entries, 0)
  }
  try {
    await createCache({ shards: 1, restore: corrupt })
    assert.unreachable('createCache must reject')
  } catch (err) {
    assert.is((err as { code?: string }).code, 'E_SNAPSHOT_CORRUPT')
  }
  assert.is(await b.restore(file), 2000)
})

test.run()
