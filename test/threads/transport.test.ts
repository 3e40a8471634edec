// The transport's delivery paths: shared buffers or transferred frames, replies posted or
// taken by a spinning caller. Whatever path a reply takes, every op gets exactly its own result.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { CacheOptions } from '../../src/index.js'

/** A deterministic PRNG, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

const configs: [string, CacheOptions][] = [
  ['default spins', { shards: 2 }],
  ['long reply spin', { shards: 2, replySpinMicros: 2000, idleSpinMicros: 2000 }],
  ['no spinning', { shards: 2, replySpinMicros: 0, idleSpinMicros: 0 }],
  ['one shard', { shards: 1 }],
]

for (const [name, options] of configs) {
  test(`random sequential and burst ops match a Map model (${name})`, async () => {
    const cache = await createCache(options)
    const model = new Map<string, string>()
    const rand = rng(7)
    const key = () => `k${Math.floor(rand() * 64)}`
    for (let step = 0; step < 1500; step++) {
      const r = rand()
      if (r < 0.6) {
        // One op in flight: small frames, the spinning paths.
        const k = key()
        const op = rand()
        if (op < 0.4) {
          const v = `v${step}`
          assert.is(await cache.set(k, v), true)
          model.set(k, v)
        } else if (op < 0.55) {
          assert.is(await cache.delete(k), model.delete(k), `delete ${k} at step ${step}`)
        } else {
          assert.is(await cache.get(k), model.get(k), `get ${k} at step ${step}`)
        }
      } else {
        // A burst issued in one tick: sometimes small, sometimes large frames on both shards.
        const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 8 : 300))
        const ps: Promise<unknown>[] = []
        const expected: unknown[] = []
        for (let i = 0; i < n; i++) {
          const k = key()
          if (rand() < 0.3) {
            const v = `b${step}.${i}`
            ps.push(cache.set(k, v))
            model.set(k, v)
            expected.push(true)
          } else {
            ps.push(cache.get(k))
            expected.push(model.get(k))
          }
        }
        assert.equal(await Promise.all(ps), expected, `burst of ${n} at step ${step}`)
      }
    }
    const keys = [...model.keys()].sort()
    assert.equal((await cache.keys()).sort(), keys)
    assert.equal(await cache.mget(keys), keys.map((k) => model.get(k)))
    await cache.close()
  })
}

test('frames larger than the shared buffer travel as transferred buffers, both ways', async () => {
  const cache = await createCache({ shards: 2, regions: { default: { maxBytes: '64mb', compression: false } } })
  const big = 'x'.repeat(300 * 1024) // over the 256 KiB shared buffer on its own
  assert.is(await cache.set('big', big), true)
  assert.is(await cache.get('big'), big)
  const many = Array.from({ length: 40 }, (_, i): [string, string] => [`m${i}`, `${i}`.repeat(10_000)])
  assert.is(await cache.mset(many), 40)
  assert.equal(await cache.mget(many.map(([k]) => k)), many.map(([, v]) => v))
  // A small frame right after large ones takes the shared path again.
  assert.is(await cache.get('m3'), '3'.repeat(10_000))
  await cache.close()
})

test('spin options are validated', async () => {
  for (const bad of [-1, 1.5, 2_000_000, '5' as unknown as number]) {
    try {
      await createCache({ shards: 1, replySpinMicros: bad })
      assert.unreachable(`replySpinMicros ${String(bad)} was accepted`)
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_INVALID_OPTION')
      assert.match((err as Error).message, /^options.replySpinMicros must be an integer from 0 to 1000000/)
    }
  }
})

test.run()
