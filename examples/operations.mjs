// A cache an operator can run: the users API of http-server.mjs, with
// scheduled backups (the newest restored on start, so a restart comes back
// warm), alerts on memory use and evictions, and the operator's endpoint
// that `shardcache status|metrics|events` read.
//
// Run it (in this repository after `npm run build`, or in your project after
// `npm install shardcache`):
//
//   ADMIN_TOKEN=secret node examples/operations.mjs   # PORT, ADMIN_PORT (default: free ones),
//                                                     # BACKUP_DIR (./cache-backups), BACKUP_EVERY ('1h')
//   curl http://127.0.0.1:PORT/users/1                # cached from now on, and in the next backup
//   SHARDCACHE_TOKEN=secret npx shardcache status --url http://127.0.0.1:ADMIN_PORT --watch
//
// Ctrl-C (SIGINT) or SIGTERM writes a last backup, then closes the server and
// the cache; started again with the same BACKUP_DIR, it serves from that backup.
import { createServer } from 'node:http'
import { createCache } from 'shardcache'
import { UsersDb } from './users-db.mjs'
import { usersListener } from './users-api.mjs'

const token = process.env.ADMIN_TOKEN
if (!token) {
  console.error('set ADMIN_TOKEN: the bearer token of the operator endpoint')
  process.exit(2)
}
const dir = process.env.BACKUP_DIR ?? './cache-backups'
const db = await UsersDb.create()

const cache = await createCache({
  regions: { default: { policy: 'lru', maxEntries: 100_000, ttl: '10m' } },
  // Every hour (or a cron expression: '0 * * * *'), the newest 24 kept.
  backup: { dir, every: process.env.BACKUP_EVERY ?? '1h', keep: 24 },
  // The newest backup that reads whole; none on a first start.
  restore: dir,
  alerts: { memoryUse: 0.9, evictionsPerSecond: 1000 },
})
cache.on('alert', (a) => console.log(`alert ${a.state}: ${a.kind} of ${a.region} at ${a.value} (threshold ${a.threshold})`))
cache.on('backup', (e) => console.log(e.ok ? `backup ${e.file}: ${e.entries} entries` : `backup failed: ${e.error.message}`))

// 127.0.0.1 only: /metrics, /status and /events, each needing the token.
const admin = await cache.serveAdmin({ port: Number(process.env.ADMIN_PORT ?? 0), token })
console.log(`admin on http://127.0.0.1:${admin.port}`)

const server = createServer(usersListener(cache, db))
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  server.close()
  server.closeAllConnections()
  await cache.backup() // the last one: what a restart loads
  await cache.close() // closes the admin endpoint too
  await db.remove()
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
