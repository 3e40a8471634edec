// Many processes, each with its own shardcache, kept coherent by the Redis
// bus. A primary forks WORKERS server processes (node:cluster); each one
// caches users from the shared database with getOrCompute and publishes its
// writes on the bus. A PUT through one process replaces the copy every other
// process holds, so a GET through any of them returns the new value.
//
// Run it (in this repository after `npm run build`, or in your project after
// `npm install shardcache`), with a Redis server at REDIS_URL
// (default redis://127.0.0.1:6379):
//
//   node examples/multi-process-bus.mjs     # WORKERS=2, PORT=3000: workers on 3000, 3001, ...
//   curl -i http://127.0.0.1:PORT_1/users/1                           # worker 1: x-cache: miss
//   curl -i -X PUT -d '{"name":"Ada King"}' http://127.0.0.1:PORT_2/users/1   # through worker 2
//   curl -i http://127.0.0.1:PORT_1/users/1                           # worker 1: the new name
//
// Each worker listens on a port of its own so that you can address each
// process; behind a load balancer (or on cluster's shared port, without
// `exclusive`), requests spread over them and the bus keeps their caches in step.
// Ctrl-C (SIGINT) or SIGTERM to the primary stops every worker, each closing its cache.
import cluster from 'node:cluster'
import { createServer } from 'node:http'
import { createCache } from 'shardcache'
import { UsersDb } from './users-db.mjs'
import { usersListener } from './users-api.mjs'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

if (cluster.isPrimary) await primary()
else await worker()

async function primary() {
  const db = await UsersDb.create()
  const count = Number(process.env.WORKERS ?? 2)
  const basePort = Number(process.env.PORT ?? 0)
  let stopping = false
  for (let i = 1; i <= count; i++) {
    cluster.fork({ WORKER_NAME: `worker ${i}`, WORKER_PORT: String(basePort === 0 ? 0 : basePort + i - 1), USERS_DB: db.file })
  }
  cluster.on('exit', (w, code, signal) => {
    // A worker that dies on its own (Redis unreachable at start, a crash) stops the whole example.
    if (!stopping) {
      console.error(`a worker exited (${signal ?? `code ${code}`}); stopping`)
      process.exitCode = 1
      stop()
    }
    if (Object.keys(cluster.workers).length === 0) void db.remove()
  })
  function stop() {
    stopping = true
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM')
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

async function worker() {
  const name = process.env.WORKER_NAME
  const db = new UsersDb(process.env.USERS_DB)
  const cache = await createCache({
    regions: { default: { policy: 'lru', maxEntries: 100_000, ttl: '10m' } },
    // mode 'update': a set carries its value to the other processes, which
    // replace their copy, and a value one process loaded through getOrCompute
    // warms the others. (In the default 'invalidate' mode a set makes them
    // drop their copy instead, and a load is not sent at all.)
    bus: { redis: REDIS_URL, channel: 'shardcache:example-users', mode: 'update' },
  })
  // What the other processes changed, as the bus applied it here.
  cache.on('invalidation', (e) => console.log(`${name}: bus ${e.type} ${e.region} ${e.keys ?? e.pattern ?? e.tag ?? ''}`))
  // The bus empties the cache when it may have missed messages (Redis went away).
  cache.on('flush', (e) => console.log(`${name}: bus flushed the cache (${e.reason})`))

  const server = createServer(usersListener(cache, db, { 'x-served-by': name }))
  // exclusive: this worker's own port, not one shared through the primary.
  server.listen({ port: Number(process.env.WORKER_PORT), host: '127.0.0.1', exclusive: true }, () => {
    console.log(`${name} (pid ${process.pid}) listening on http://127.0.0.1:${server.address().port}`)
  })

  let stopping = false
  async function shutdown() {
    if (stopping) return
    stopping = true
    server.close()
    server.closeAllConnections()
    await cache.close() // sends what the bus still has queued, then quits its Redis connections
    cluster.worker.disconnect() // from the primary: its IPC channel is the last thing keeping this process alive
  }
  process.once('SIGINT', shutdown) // Ctrl-C in a terminal reaches every process of the group
  process.once('SIGTERM', shutdown)
}
