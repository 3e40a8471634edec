// The request handler of piscina-workers.mjs, run in its pool threads. Each
// task attaches to the main thread's cache with the handle it carries:
// attachCache talks to the cache's shard threads directly (nothing is relayed
// through the main thread) and, called again in the same thread, returns the
// client it already has.
import { threadId } from 'node:worker_threads'
import { attachCache } from 'shardcache'
import { UsersDb } from './users-db.mjs'

/** Handles one request; returns what the main thread sends back. */
export default async function handleRequest({ cache: handle, dbFile, method, url, body }) {
  const cache = await attachCache(handle)
  const db = new UsersDb(dbFile)
  const { status, cacheStatus, json } = await route(cache, db, method, url, body)
  const headers = { 'content-type': 'application/json', 'x-thread-id': String(threadId) }
  if (cacheStatus !== undefined) headers['x-cache'] = cacheStatus
  return { status, headers, body: JSON.stringify(json) }
}

async function route(cache, db, method, url, body) {
  if (method === 'GET' && url === '/stats') {
    // stats() on an attached thread is the whole cache's, as on the main thread.
    const { attachedThreads, entries, hits, misses } = await cache.stats()
    return { status: 200, json: { attachedThreads, entries, hits, misses } }
  }
  const match = /^\/users\/(\d+)$/.exec(url ?? '')
  if (match === null) return { status: 404, json: { error: 'not found' } }
  const id = Number(match[1])
  const key = `user:${id}`

  if (method === 'GET') {
    // miss: this request ran the loader. hit: the value came from the cache, or
    // from the loader another thread was already running for this key.
    let loaded = false
    const user = await cache.getOrCompute(
      key,
      () => {
        loaded = true
        return db.find(id)
      },
      { timeout: '2s' },
    )
    const cacheStatus = loaded ? 'miss' : 'hit'
    if (user === null) return { status: 404, cacheStatus, json: { error: `no user ${id}` } }
    return { status: 200, cacheStatus, json: user }
  }

  if (method === 'PUT') {
    let fields
    try {
      fields = JSON.parse(body)
    } catch {
      return { status: 400, json: { error: 'expected a JSON object' } }
    }
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) return { status: 400, json: { error: 'expected a JSON object' } }
    const { name, email } = fields
    const user = await db.update(id, { ...(typeof name === 'string' && { name }), ...(typeof email === 'string' && { email }) })
    if (user === null) return { status: 404, json: { error: `no user ${id}` } }
    await cache.set(key, user) // visible to every thread once this resolves
    return { status: 200, json: user }
  }

  return { status: 405, json: { error: 'use GET or PUT' } }
}
