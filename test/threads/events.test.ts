/**
 * Entry events (cache.on('set' | 'delete' | 'evict' | 'expire' | 'clear' |
 * 'hit' | 'miss')): exact events with key, region and cause, batched by the
 * shards, and sent only while someone listens.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { EntryEvent } from '../../src/index.js'
import { withCache } from '../fixtures/helpers.js'

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30))

/** Waits until `n` events have arrived (shards batch them; a loaded machine delays the batch), at most 3 s. */
async function received(seen: unknown[], n: number): Promise<void> {
  for (const deadline = Date.now() + 3000; seen.length < n && Date.now() < deadline; ) await settle()
  await settle() // and a little more: one event too many must show too
}

test('set, delete, clear, hit and miss events carry type, region and key', async () => {
  await withCache({ shards: 2, regions: { other: {} } }, async (cache) => {
    const seen: EntryEvent[] = []
    const listen = (e: EntryEvent): void => {
      seen.push(e)
    }
    for (const name of ['set', 'delete', 'clear', 'hit', 'miss'] as const) cache.on(name, listen)
    await cache.set('a', 1)
    await cache.region('other').set('o', 1)
    assert.is(await cache.get('a'), 1) // with hit listeners, reads go to the shard
    assert.is(await cache.get('nope'), undefined)
    await cache.delete('a')
    await cache.region('other').clear()
    await received(seen, 6)
    const brief = seen.map((e) => [e.type, e.region, e.key ?? '-'].join(' ')).sort()
    assert.equal(brief, ['clear other -', 'delete default a', 'hit default a', 'miss default nope', 'set default a', 'set other o'].sort())
  })
})

test('evict and expire carry their cause; nothing is sent once nobody listens', async () => {
  await withCache({ shards: 1, regions: { small: { maxEntries: 2, policy: 'lru' } } }, async (cache) => {
    const seen: EntryEvent[] = []
    const evicted = (e: EntryEvent): void => {
      seen.push(e)
    }
    cache.on('evict', evicted).on('expire', evicted)
    const small = cache.region('small')
    await small.set('1', 1)
    await small.set('2', 2)
    await small.set('3', 3)
    await cache.set('short', 'x', { ttl: 20 })
    await new Promise((r) => setTimeout(r, 40))
    assert.is(await cache.get('short'), undefined)
    await received(seen, 2)
    assert.equal(seen, [
      { type: 'evict', region: 'small', key: '1', cause: 'size' },
      { type: 'expire', region: 'default', key: 'short', cause: 'expired' },
    ])
    cache.off('evict', evicted).off('expire', evicted)
    await small.set('4', 4)
    await settle()
    assert.is(seen.length, 2)
    // Without hit/miss listeners, reads are direct again (no frame for a hit).
    await cache.set('d', 1)
    const frames = cache.framesSentForTest()
    assert.is(await cache.get('d'), 1)
    assert.is(cache.framesSentForTest(), frames)
    try {
      cache.on('sett' as never, () => {})
      assert.unreachable('unknown event')
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_INVALID_OPTION')
    }
  })
})

test.run()
