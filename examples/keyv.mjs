// Keyv and cache-manager over shardcache: code written for Keyv (or for a
// library built on it) keeps its API, and shardcache holds the entries.
// A script: it prints what each call returns, then closes the cache.
//
// Run it (in this repository after `npm run build`, or in your project after
// `npm install shardcache keyv cache-manager`):
//
//   node examples/keyv.mjs
import Keyv from 'keyv'
import { createCache as createCacheManager } from 'cache-manager'
import { createCache } from 'shardcache'
import { KeyvShardcache } from 'shardcache/keyv'

const cache = await createCache({ regions: { default: { maxEntries: 100_000 } } })
const show = (what, value) => console.log(`${what} -> ${JSON.stringify(value)}`)

// Keyv: the adapter stores what Keyv gives it, under Keyv's namespaced key.
const users = new Keyv({ store: new KeyvShardcache(cache), namespace: 'users' })
await users.set('1', { name: 'Ada Lovelace' })
show("users.get('1')", await users.get('1'))
show("users.has('2')", await users.has('2'))
// Keyv serialized the value itself: shardcache holds its string, under "users:1".
show("cache.get('users:1')", await cache.get('users:1'))

// Keyv's TTL (ms) is the entry's TTL in shardcache.
await users.set('otp', '931-442', 60_000)
const ttl = await cache.ttl('users:otp') // ms left, rounded up
show("cache.ttl('users:otp') is within Keyv's 60 s", ttl > 0 && ttl <= 60_000)
await users.set('flash', 'saved!', 1)
await new Promise((resolve) => setTimeout(resolve, 20))
show("users.get('flash') 20 ms after its 1 ms TTL", await users.get('flash'))

// clear() removes its own namespace only.
const sessions = new Keyv({ store: new KeyvShardcache(cache), namespace: 'sessions' })
await sessions.set('s1', { user: 1 })
await users.clear()
show("after users.clear(): users.get('1')", await users.get('1'))
show("after users.clear(): sessions.get('s1')", await sessions.get('s1'))

// cache-manager 7 takes Keyv instances as its stores.
const manager = createCacheManager({ stores: [new Keyv({ store: new KeyvShardcache(cache), namespace: 'cm' })] })
let queries = 0
const loadProfile = async () => {
  queries++
  return { id: 2, name: 'Grace Hopper' }
}
show("manager.wrap('profile:2') first", await manager.wrap('profile:2', loadProfile, 60_000))
show("manager.wrap('profile:2') again", await manager.wrap('profile:2', loadProfile, 60_000))
show('queries run', queries)
show("cache.has('cm:profile:2')", await cache.has('cm:profile:2'))
await manager.del('profile:2')
show("after manager.del: manager.get('profile:2')", await manager.get('profile:2'))

// The adapter does not own the cache (keyv.disconnect() leaves it open): close it yourself.
await cache.close()
