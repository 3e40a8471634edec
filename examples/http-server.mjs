// A node:http JSON API with shardcache in front of a slow database: GET
// /users/:id through getOrCompute (x-cache: miss, then hit), PUT /users/:id
// writing the database, then the cache. The API itself is users-api.mjs.
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
import { createCache } from 'shardcache'
import { UsersDb } from './users-db.mjs'
import { usersListener } from './users-api.mjs'

const db = await UsersDb.create()

// One cache for the process. Its shards are worker threads (default: one per
// core but one); entries live in their memory, not in this thread's heap.
const cache = await createCache({
  regions: { default: { policy: 'lru', maxEntries: 100_000, ttl: '10m' } },
})

const server = createServer(usersListener(cache, db))

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
