// The JSON API the server examples share (http-server.mjs, piscina-workers.mjs
// through piscina-worker.mjs, multi-process-bus.mjs); each of them shows a
// different way to run it, around one cache.
//
//   GET /users/:id   getOrCompute: the first request runs the query (x-cache: miss),
//                    the next ones are answered from the cache (x-cache: hit);
//                    an unknown id is cached too, as null (a 404)
//   PUT /users/:id   writes the database, then the cache, so the next GET is a hit
//                    with the new value
import { CacheError } from 'shardcache'

/**
 * Answers one request. `body` is the request body as a string. Resolves
 * `{ status, cacheStatus?, json }`: `cacheStatus` ('hit' or 'miss') goes into
 * an x-cache header, `json` is the response body.
 */
export async function handleUsers(cache, db, method, url, body) {
  const match = /^\/users\/(\d+)$/.exec(url ?? '')
  if (match === null) return { status: 404, json: { error: 'not found' } }
  const id = Number(match[1])
  const key = `user:${id}`

  if (method === 'GET') {
    // getOrCompute does not say whether it hit: the loader tells us it ran.
    // (Concurrent requests for the same key, on any thread, share one loader
    // call; only the one whose loader ran says miss.)
    let loaded = false
    let user
    try {
      user = await cache.getOrCompute(
        key,
        () => {
          loaded = true
          return db.find(id) // null for "no such user": cached like any value
        },
        { timeout: '2s' },
      )
    } catch (err) {
      // Every cache error has a stable code; a loader past its timeout is E_LOAD_TIMEOUT.
      if (err instanceof CacheError && err.code === 'E_LOAD_TIMEOUT') return { status: 504, json: { error: 'the database is slow' } }
      throw err
    }
    const cacheStatus = loaded ? 'miss' : 'hit'
    if (user === null) return { status: 404, cacheStatus, json: { error: `no user ${id}` } }
    return { status: 200, cacheStatus, json: user }
  }

  if (method === 'PUT') {
    const fields = parseUserFields(body)
    if (fields === undefined) return { status: 400, json: { error: 'expected a JSON object with "name" and/or "email" strings' } }
    const user = await db.update(id, fields)
    if (user === null) return { status: 404, json: { error: `no user ${id}` } }
    // The database first, then the cache: visible to every thread once this
    // resolves, and to other processes through the bus when there is one.
    await cache.set(key, user)
    return { status: 200, json: user }
  }

  return { status: 405, json: { error: 'use GET or PUT' } }
}

/**
 * A `node:http` request listener that answers the API with `cache` and `db`,
 * with `extra` headers on every reply; a failure is a 500, logged.
 */
export function usersListener(cache, db, extra = {}) {
  return async (req, res) => {
    let reply
    try {
      reply = await handleUsers(cache, db, req.method, req.url, await readBody(req))
    } catch (err) {
      console.error(err)
      reply = { status: 500, json: { error: 'internal error' } }
    }
    res.writeHead(reply.status, replyHeaders(reply, extra)).end(JSON.stringify(reply.json))
  }
}

/** The request body as a string (small bodies only: this is an example). */
export async function readBody(req) {
  let body = ''
  for await (const chunk of req.setEncoding('utf8')) body += chunk
  return body
}

/** The response headers of a reply, with `extra` ones (x-thread-id, x-served-by). */
export function replyHeaders(reply, extra = {}) {
  const headers = { 'content-type': 'application/json', ...extra }
  if (reply.cacheStatus !== undefined) headers['x-cache'] = reply.cacheStatus
  return headers
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
