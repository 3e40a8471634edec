/**
 * What a churn that changes value sizes leaves in the shards' value arenas,
 * which grow and never shrink (a SharedArrayBuffer cannot): 1M values of 100
 * bytes, all deleted, then 100k values of 1,000 bytes. Prints, after each
 * phase, the process's RSS, the arenas' extent (`arenaBytes`), what in them
 * holds no live entry (`arenaFreeBytes`), and the live entries' bytes: the
 * memory a compaction gives back: then `compact()`, and the same figures
 * once the shards and this thread collected the old arenas (a full GC on
 * each: run with --expose-gc, which the shard threads inherit).
 *
 *   node --expose-gc dist/bench/studies/fragmentation.js
 */
import { createCache } from '../../src/index.js'

const MB = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MB`
const gc = (globalThis as { gc?: () => void }).gc
const cache = await createCache({ shards: 2, regions: { default: { maxBytes: '1gb', compression: false } } })
const report = async (phase: string): Promise<void> => {
  gc?.()
  const s = await cache.stats()
  console.log(
    `${phase.padEnd(34)} rss ${MB(process.memoryUsage().rss).padStart(9)}  arena ${MB(s.arenaBytes).padStart(9)}  free in it ${MB(s.arenaFreeBytes).padStart(9)}  ` +
      `live ${MB(s.arenaBytes - s.arenaFreeBytes).padStart(9)}  entries ${s.entries}`,
  )
}
await report('empty')
const small = 'x'.repeat(100)
for (let i = 0; i < 1_000_000; i += 10_000) await cache.mset(Array.from({ length: 10_000 }, (_, j) => [`k${i + j}`, small] as [string, string]))
await report('1M values of 100 bytes')
for (let i = 0; i < 1_000_000; i += 10_000) await cache.mdelete(Array.from({ length: 10_000 }, (_, j) => `k${i + j}`))
await report('all deleted')
const large = 'y'.repeat(1000)
for (let i = 0; i < 100_000; i += 10_000) await cache.mset(Array.from({ length: 10_000 }, (_, j) => [`big${i + j}`, large] as [string, string]))
await report('then 100k values of 1,000 bytes')
const results = await cache.compact()
const pause = Math.max(...results.map((r) => r.pauseMs))
// The owner maps the new arenas when their message arrives; its reads of the old ones end then.
await new Promise((r) => setTimeout(r, 100))
await cache.shardMemoryForTest(true) // a full GC in each shard: the old arenas go
await report(`compacted (longest shard pause ${pause.toFixed(1)} ms)`)
await new Promise((r) => setTimeout(r, 1000))
await cache.shardMemoryForTest(true)
await report('a second later, GC again')
console.log(`this thread's arrayBuffers ${MB(process.memoryUsage().arrayBuffers)}; shards' ${(await cache.shardMemoryForTest(true)).map((m) => MB(m?.arrayBuffers ?? 0)).join(', ')}`)
await cache.close()
