// The request handler of piscina-workers.mjs, run in its pool threads. Each
// task attaches to the main thread's cache with the handle it carries:
// attachCache talks to the cache's shard threads directly (nothing is relayed
// through the main thread) and, called again in the same thread, returns the
// client it already has.
import { threadId } from 'node:worker_threads'
import { attachCache } from 'shardcache'
import { UsersDb } from './users-db.mjs'
import { handleUsers, replyHeaders } from './users-api.mjs'

/** Handles one request; returns what the main thread sends back. */
export default async function handleRequest({ cache: handle, dbFile, method, url, body }) {
  const cache = await attachCache(handle)
  const db = new UsersDb(dbFile)
  const reply = await route(cache, db, method, url, body)
  return { status: reply.status, headers: replyHeaders(reply, { 'x-thread-id': String(threadId) }), body: JSON.stringify(reply.json) }
}

async function route(cache, db, method, url, body) {
  if (method === 'GET' && url === '/stats') {
    // stats() on an attached thread is the whole cache's, as on the main thread.
    const { attachedThreads, entries, hits, misses } = await cache.stats()
    return { status: 200, json: { attachedThreads, entries, hits, misses } }
  }
  return handleUsers(cache, db, method, url, body)
}
