// One cache for every thread: the same JSON API as http-server.mjs, but each
// request is handled in a piscina pool of worker threads (piscina-worker.mjs),
// and all of them use ONE cache, the one created here. A value one pool thread
// stored is a hit in every other; concurrent misses of one key, on any
// threads, run the loader once. The x-thread-id header says which pool thread
// answered; GET /stats shows how many threads are attached.
//
// Run it (in this repository after `npm run build`, or in your project after
// `npm install shardcache piscina`):
//
//   node examples/piscina-workers.mjs           # PORT=3000 picks the port, THREADS=4 the pool size
//   curl -i http://127.0.0.1:PORT/users/1       # x-cache: miss; x-thread-id names the pool thread
//   curl -i -X PUT -d '{"name":"Ada King"}' http://127.0.0.1:PORT/users/1
//   curl http://127.0.0.1:PORT/stats            # attachedThreads: the pool threads that handled a request so far
//
// Requests go to the first idle pool thread, so requests sent one at a time all
// land on the same one; send a few at once to see the other threads.
// Ctrl-C (SIGINT) or SIGTERM stops the pool, then the cache.
import { createServer } from 'node:http'
import { Piscina } from 'piscina'
import { createCache } from 'shardcache'
import { UsersDb } from './users-db.mjs'
import { readBody } from './users-api.mjs'

const db = await UsersDb.create()
const cache = await createCache({
  regions: { default: { policy: 'lru', maxEntries: 100_000, ttl: '10m' } },
})

const threads = Number(process.env.THREADS ?? 2)
const pool = new Piscina({
  filename: new URL('./piscina-worker.mjs', import.meta.url).href,
  minThreads: threads,
  maxThreads: threads,
})

const server = createServer(async (req, res) => {
  try {
    const body = await readBody(req)
    // A handle lets exactly one other thread attach to the cache, and piscina
    // cannot say which thread a task will run on, so every task carries a
    // fresh one: the first a pool thread gets attaches it, and attachCache
    // closes the ones it receives after that (they cost a MessageChannel).
    const handle = cache.handle()
    const reply = await pool.run(
      { cache: handle, dbFile: db.file, method: req.method, url: req.url, body },
      { transferList: handle.transfer },
    )
    res.writeHead(reply.status, reply.headers).end(reply.body)
  } catch (err) {
    console.error(err)
    res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'internal error' }))
  }
})

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  server.close()
  server.closeAllConnections()
  await pool.destroy() // the pool threads exit, which detaches them from the cache
  await cache.close()
  await db.remove()
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
