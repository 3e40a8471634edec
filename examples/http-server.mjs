// A node:http JSON API with shardcache in front of a slow database.
//
//   GET /users/:id   getOrCompute: the first request runs the query (x-cache: miss),
//                    the next ones are answered from the cache (x-cache: hit);
//                    an unknown id is cached too, as null (a 404)
//   PUT /users/:id   writes the database, then the cache, so the next GET is a hit
//                    with the new value
//
// Run it (in this repository after `npm run build`, or in your project after
// `npm install shardcache`):
//
//   node examples/http-server.mjs            # PORT=3000 picks the port (default: a free one)
//   curl -i http://127.0.0.1:PORT/users/1    # x-cache: miss (about 50 ms), then x-cache: hit
//   curl -i -X PUT -d '{"name":"Ada King"}' http://127.0.0.1:PORT/users/1
//
// Ctrl-C (SIGINT) or SIGTERM closes the server and the cache, and the process exits.
import { createServer } from 'node:http'
import { CacheError, createCache } from 'shardcache'
import { UsersDb } from './users-db.mjs'

const db = await UsersDb.create()

// One cache for the process. Its shards are worker threads (default: one per
// core but one); entries live in their memory, not in this thread's heap.
const cache = await createCache({
  regions: { default: { policy: 'lru', maxEntries: 100_000, ttl: '10m' } },
})

async function handle(req) {
  const match = /^\/users\/(\d+)$/.exec(req.url ?? '')
  if (match === null) return { status: 404, body: { error: 'not found' } }
  const id = Number(match[1])
  const key = `user:${id}`

  if (req.method === 'GET') {
    // getOrCompute does not say whether it hit: the loader tells us it ran.
    // (Concurrent requests for the same key share one loader call; only the
    // one whose loader ran says miss.)
    let loaded = false
    const user = await cache.getOrCompute(
      key,
      () => {
        loaded = true
        return db.find(id) // null for "no such user": cached like any value
      },
      { timeout: '2s' },
    )
    const cacheStatus = loaded ? 'miss' : 'hit'
    if (user === null) return { status: 404, cacheStatus, body: { error: `no user ${id}` } }
    return { status: 200, cacheStatus, body: user }
  }

  if (req.method === 'PUT') {
    const fields = parseUserFields(await readBody(req))
    if (fields === undefined) return { status: 400, body: { error: 'expected a JSON object with "name" and/or "email" strings' } }
    const user = await db.update(id, fields)
    if (user === null) return { status: 404, body: { error: `no user ${id}` } }
    await cache.set(key, user) // the database first, then the cache
    return { status: 200, body: user }
  }

  return { status: 405, body: { error: 'use GET or PUT' } }
}

const server = createServer((req, res) => {
  handle(req)
    .catch((err) => {
      // Every cache error has a stable code; a loader past its timeout is E_LOAD_TIMEOUT.
      if (err instanceof CacheError && err.code === 'E_LOAD_TIMEOUT') return { status: 504, body: { error: 'the database is slow' } }
      console.error(err)
      return { status: 500, body: { error: 'internal error' } }
    })
    .then(({ status, cacheStatus, body }) => {
      const headers = { 'content-type': 'application/json' }
      if (cacheStatus !== undefined) headers['x-cache'] = cacheStatus
      res.writeHead(status, headers).end(JSON.stringify(body))
    })
})

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  server.close()
  server.closeAllConnections() // keep-alive connections would hold the server open
  await cache.close() // lets in-flight operations finish, then stops the shard threads
  await db.remove()
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)

/** The request body as a string (small bodies only: this is an example). */
async function readBody(req) {
  let body = ''
  for await (const chunk of req.setEncoding('utf8')) body += chunk
  return body
}

/** `{ name?, email? }` from a JSON body, or undefined when it is not that. */
function parseUserFields(text) {
  let v
  try {
    v = JSON.parse(text)
  } catch {
    return undefined
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined
  const fields = {}
  for (const name of ['name', 'email']) {
    if (v[name] === undefined) continue
    if (typeof v[name] !== 'string') return undefined
    fields[name] = v[name]
  }
  return Object.keys(fields).length === 0 ? undefined : fields
}
