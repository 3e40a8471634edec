/**
 * The engines the throughput section drives, each behind one small interface
 * (AsyncKv for shardcache and ioredis, SyncKv for lru-cache and the near
 * cache's getSync): how each is created, pre-filled, read back and closed.
 */
import { LRUCache } from 'lru-cache'
import { Redis } from 'ioredis'
import { createCache } from '../src/index.js'
import type { Cache, CacheStats } from '../src/index.js'

/** What `cache.stats()` reported after all mixes (shardcache engines only). */
export type EngineStats = Pick<CacheStats, 'hitRate' | 'hits' | 'misses' | 'sets' | 'entries' | 'evictions' | 'shards' | 'shardRestarts' | 'usedBytes'>

export interface AsyncKv {
  readonly kind: 'async'
  readonly name: string
  get(key: string): Promise<unknown>
  set(key: string, value: string): Promise<unknown>
  prefill(keys: readonly string[], valueOf: (i: number) => string): Promise<void>
  summary?(): Promise<EngineStats>
  close(): Promise<void>
}

export interface SyncKv {
  readonly kind: 'sync'
  readonly name: string
  get(key: string): unknown
  set(key: string, value: string): unknown
  prefill(keys: readonly string[], valueOf: (i: number) => string): Promise<void>
  close(): Promise<void>
}

export type Kv = AsyncKv | SyncKv

export const PREFILL_CHUNK = 5_000

export async function shardcacheKv(shards: number, keys: number, valueBytes: number, nearCache?: number): Promise<AsyncKv & { cache: Cache }> {
  // Sized so nothing is evicted: this section measures the data path, not eviction.
  const maxBytes = Math.max(64 * 2 ** 20, keys * (valueBytes + 128) * 2)
  const cache: Cache = await createCache({
    shards,
    regions: { default: { maxBytes } },
    nearCache: nearCache === undefined ? false : { maxEntries: nearCache },
  })
  return cacheKv(cache, nearCache === undefined ? `shardcache ${shards} shard${shards === 1 ? '' : 's'}` : `near cache ${nearCache / 1000}k, ${shards} shards`)
}

/** An open `cache` as an engine of the loops, named `name`: its default region, pre-filled by mset in chunks. */
export function cacheKv(cache: Cache, name: string): AsyncKv & { cache: Cache } {
  return {
    kind: 'async',
    name,
    get: (key) => cache.get(key),
    set: (key, value) => cache.set(key, value),
    async prefill(list, valueOf) {
      for (let i = 0; i < list.length; i += PREFILL_CHUNK) {
        const chunk: [string, string][] = []
        for (let j = i; j < Math.min(list.length, i + PREFILL_CHUNK); j++) chunk.push([list[j]!, valueOf(j)])
        await cache.mset(chunk)
      }
    },
    async summary() {
      const s = await cache.stats()
      return {
        hitRate: s.hitRate,
        hits: s.hits,
        misses: s.misses,
        sets: s.sets,
        entries: s.entries,
        evictions: s.evictions,
        shards: s.shards,
        shardRestarts: s.shardRestarts,
        usedBytes: s.usedBytes,
      }
    },
    close: () => cache.close(),
    cache,
  }
}

/**
 * getSync with a near cache that holds every key (each read once after the
 * pre-fill): each get is a near hit, so this row against lru-cache's is the
 * near-hit cost on the calling thread (its summary figure comes from
 * interleaved rounds, see interleavedNearVsLru).
 */
export async function nearSyncKv(shards: number, keys: number, valueBytes: number): Promise<SyncKv> {
  const kv = await shardcacheKv(shards, keys, valueBytes, keys)
  const cache = kv.cache
  return {
    kind: 'sync',
    name: `near-cache hits (getSync), ${shards} shards`,
    get: (key) => cache.getSync(key),
    set: () => {
      throw new Error('read-only engine')
    },
    async prefill(list, valueOf) {
      await kv.prefill(list, valueOf)
      // Every key read once, so the measured runs are near hits rather than the rare keys' first reads (and the GC after filling).
      for (const key of list) cache.getSync(key)
      const near = cache.nearCacheSizeForTest()
      if (near !== list.length) throw new Error(`the near cache holds ${near} of the ${list.length} keys after reading each once`)
    },
    close: () => kv.close(),
  }
}

/**
 * Not a cache: the least work any get that keeps its values off the calling
 * thread's heap must do, as a reference row. A Map (on this heap, V8's string
 * hash cached in each key) gives the value's place in a SharedArrayBuffer, and
 * the 220-byte string is built from there. Nothing else: no routing to a
 * shard, no check that the entry is still current, no expiry, no LRU log, no
 * stats. What shardcache reads against it is the price of those; no engine
 * whose values stay off the calling thread's heap reads faster than this row.
 */
export function offHeapFloorKv(keys: number, valueBytes: number): AsyncKv {
  const index = new Map<string, number>()
  const starts = new Int32Array(keys)
  const ends = new Int32Array(keys)
  // Room for every value with its bytes as written (the workload's values are ASCII).
  const bytes = Buffer.from(new SharedArrayBuffer(Math.max(1, keys * (valueBytes + 16))))
  const slice = bytes as unknown as { utf8Slice(start: number, end: number): string }
  const get = (key: string): string | undefined => {
    const i = index.get(key)
    return i === undefined ? undefined : slice.utf8Slice(starts[i]!, ends[i]!)
  }
  return {
    kind: 'async',
    name: 'off-heap floor (not a cache)',
    get: async (key) => get(key),
    set: () => Promise.reject(new Error('read-only reference row')),
    async prefill(list, valueOf) {
      let at = 0
      for (let i = 0; i < list.length; i++) {
        const value = valueOf(i)
        if (at + Buffer.byteLength(value) > bytes.length) throw new Error(`value ${i} does not fit the floor's ${bytes.length}-byte buffer`)
        starts[i] = at
        at += bytes.write(value, at, 'utf8')
        ends[i] = at
        index.set(list[i]!, i)
      }
    },
    async close() {
      index.clear()
    },
  }
}

export function lruKv(keys: number): SyncKv {
  const lru = new LRUCache<string, string>({ max: keys * 2 })
  return {
    kind: 'sync',
    name: 'lru-cache (sync)',
    get: (key) => lru.get(key),
    set: (key, value) => lru.set(key, value),
    async prefill(list, valueOf) {
      for (let i = 0; i < list.length; i++) lru.set(list[i]!, valueOf(i))
    },
    async close() {
      lru.clear()
    },
  }
}

export async function redisKv(url: string, ownedServer: boolean): Promise<AsyncKv> {
  // No reconnecting: a benchmark should fail fast, and a client retrying in the
  // background would keep the process alive after the section gave up.
  const redis = new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null })
  // Errors surface through the commands; the listener keeps ioredis from printing
  // "Unhandled error event" and keeps the socket-level cause for our message.
  let socketError: Error | undefined
  redis.on('error', (err: Error) => {
    socketError = err
  })
  try {
    await redis.connect()
  } catch (err) {
    redis.disconnect()
    throw new Error(`cannot connect to Redis at ${url}`, { cause: socketError ?? err })
  }
  let written: readonly string[] = []
  return {
    kind: 'async',
    name: 'ioredis (auto-pipelined)',
    get: (key) => redis.get(key),
    set: (key, value) => redis.set(key, value),
    async prefill(list, valueOf) {
      written = list
      for (let i = 0; i < list.length; i += PREFILL_CHUNK) {
        const args: string[] = []
        for (let j = i; j < Math.min(list.length, i + PREFILL_CHUNK); j++) args.push(list[j]!, valueOf(j))
        await redis.mset(...args)
      }
    },
    async close() {
      // A shared server (REDIS_URL) keeps its other data: remove only our keys.
      if (!ownedServer) {
        for (let i = 0; i < written.length; i += PREFILL_CHUNK) await redis.unlink(...written.slice(i, i + PREFILL_CHUNK))
      }
      await redis.quit()
    },
  }
}
