/**
 * The Keyv adapter under Keyv's own API (keyv 5): namespaces, TTL, the
 * many-key calls, has, clear by namespace, the adapter's iterator, and the
 * `shardcache/keyv` entry point.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import Keyv from 'keyv'
import { createCache } from '../../src/index.js'
import type { Cache } from '../../src/index.js'

let cache: Cache

test.before(async () => {
  cache = await createCache({ shards: 2, regions: { keyv: {} } })
})

test.after(async () => {
  await cache.close()
})

test('shardcache/keyv resolves to the adapter', async () => {
  const viaPackage = await import('shardcache/keyv')
  const local = await import('../../src/adapters/keyv.js')
  assert.is(typeof viaPackage.KeyvShardcache, 'function')
  assert.is(viaPackage.KeyvShardcache.name, local.KeyvShardcache.name)
})

test('get, set, delete, has and the many-key calls under Keyv, values round-tripped by Keyv', async () => {
  const { KeyvShardcache } = await import('../../src/adapters/keyv.js')
  const keyv = new Keyv({ store: new KeyvShardcache(cache), namespace: 'users' })
  assert.is(await keyv.set('1', { name: 'Alice', tags: ['a'] }), true)
  assert.equal(await keyv.get('1'), { name: 'Alice', tags: ['a'] })
  // Stored under the namespaced key, as Keyv serialized it.
  assert.is(typeof (await cache.get('users:1')), 'string')
  assert.is(await keyv.has('1'), true)
  assert.is(await keyv.get('nope'), undefined)
  await keyv.setMany([
    { key: '2', value: 2 },
    { key: '3', value: 'three' },
  ])
  assert.equal(await keyv.getMany(['1', '2', '3', 'nope']), [{ name: 'Alice', tags: ['a'] }, 2, 'three', undefined])
  assert.equal(await keyv.has(['2', 'nope']), [true, false])
  assert.is(await keyv.delete('1'), true)
  assert.is(await keyv.delete('1'), false)
  assert.is(await keyv.delete(['2', '3']), true)
  assert.is(await keyv.get('2'), undefined)
})

test('TTL: Keyv\'s ttl is the entry\'s TTL', async () => {
  const { KeyvShardcache } = await import('../../src/adapters/keyv.js')
  const keyv = new Keyv({ store: new KeyvShardcache(cache), namespace: 'ttl' })
  await keyv.set('short', 'v', 100)
  await keyv.set('forever', 'v')
  const ttl = (await cache.ttl('ttl:short'))!
  assert.ok(ttl > 0 && ttl <= 100, `ttl ${ttl}`)
  assert.is(await cache.ttl('ttl:forever'), Infinity)
  await new Promise((r) => setTimeout(r, 130))
  assert.is(await keyv.get('short'), undefined)
  assert.is(await cache.has('ttl:short'), false)
})

test('clear removes only its namespace (names with glob characters too); the iterator lists it; another region works alike', async () => {
  const { KeyvShardcache } = await import('../../src/adapters/keyv.js')
  const a = new Keyv({ store: new KeyvShardcache(cache), namespace: 'a*[x]' })
  const b = new Keyv({ store: new KeyvShardcache(cache), namespace: 'b' })
  await a.set('k1', 1)
  await a.set('k2', 2)
  await b.set('k1', 'b1')
  const store = a.opts.store as InstanceType<typeof KeyvShardcache>
  const listed: [string, unknown][] = []
  for await (const [k, v] of store.iterator('a*[x]')) listed.push([k, v])
  assert.equal(listed.map(([k]) => k).sort(), ['a*[x]:k1', 'a*[x]:k2'])
  await a.clear()
  assert.is(await a.get('k1'), undefined)
  assert.is(await b.get('k1'), 'b1')
  const inRegion = new Keyv({ store: new KeyvShardcache(cache, { region: 'keyv' }) })
  await inRegion.set('x', 1)
  assert.is(await cache.region('keyv').has('keyv:x'), true)
  await inRegion.clear()
  assert.equal(await cache.region('keyv').keys(), [])
  assert.is(await b.get('k1'), 'b1')
})

test('under cache-manager (7), through Keyv: set, get, del, wrap with a TTL', async () => {
  const { KeyvShardcache } = await import('../../src/adapters/keyv.js')
  const { createCache: createManager } = await import('cache-manager')
  const manager = createManager({ stores: [new Keyv({ store: new KeyvShardcache(cache), namespace: 'cm' })] })
  await manager.set('user:1', { name: 'Ann' }, 60_000)
  assert.equal(await manager.get('user:1'), { name: 'Ann' })
  const ttl = (await cache.ttl('cm:user:1'))!
  assert.ok(ttl > 59_000 && ttl <= 60_000, `ttl ${ttl}`)
  let calls = 0
  const load = async () => {
    calls++
    return 'loaded'
  }
  assert.is(await manager.wrap('w', load, 60_000), 'loaded')
  assert.is(await manager.wrap('w', load, 60_000), 'loaded')
  assert.is(calls, 1)
  await manager.del('user:1')
  assert.is(await manager.get('user:1'), undefined)
  assert.is(await cache.has('cm:user:1'), false)
})

test('under cacheable (2) as its secondary store: set, get, getOrSet, delete', async () => {
  const { KeyvShardcache } = await import('../../src/adapters/keyv.js')
  const { Cacheable } = await import('cacheable')
  const store = new KeyvShardcache(cache)
  const c = new Cacheable({ secondary: new Keyv({ store, namespace: 'cb' }) })
  await c.set('k', { v: 1 }, '1m')
  assert.equal(await c.get('k'), { v: 1 })
  assert.is(typeof (await cache.get('cb:k')), 'string') // in shardcache, as Keyv serialized it
  let calls = 0
  assert.is(await c.getOrSet('g', async () => (calls++, 'computed')), 'computed')
  assert.is(await c.getOrSet('g', async () => (calls++, 'computed')), 'computed')
  assert.is(calls, 1)
  await c.delete('k')
  assert.is(await cache.has('cb:k'), false)
})

test.run()
