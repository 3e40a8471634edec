// Child process of test/redis/bus_status.test.ts: one cache with a bus on the
// redis-server at argv[2] (catchUp argv[3]), started with NODE_DEBUG=shardcache
// so that the bus logs its status changes to stderr. A process of its own
// because debuglog reads NODE_DEBUG once, when it first logs: the test's own
// process cannot turn it on for itself. Says 'created' over IPC once the cache
// is up, closes it on 'close', then leaves.
import { createCache } from '../../src/index.js'

const [url, catchUp] = process.argv.slice(2)
// A heartbeat far beyond the test's length: the only loss is the killed server's closed connection.
const cache = await createCache({ shards: 1, bus: { redis: url!, channel: 'status-test', heartbeat: 600_000, catchUp: catchUp as 'flush' | 'stream' } })
process.send!('created')
process.once('message', () => {
  void cache.close().then(() => process.disconnect())
})
