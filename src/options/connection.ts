/**
 * What the bus and the L2 tier both check in their Redis connection: the
 * startup nodes of a Cluster given as `{ cluster: nodes }`, and the `tls`
 * option, which needs a `rediss://` URL and does not apply to a Cluster. The
 * caller passes its option's path, so that messages name `options.bus` or
 * `options.l2`.
 */
import type { ConnectionOptions } from 'node:tls'
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import { isClusterNodes } from '../redis/redis_access.js'
import { rejectUnknownKeys } from './parse.js'
import { isPlainObject } from '../wire/values.js'

/** The `tls` option of the bus or the L2 tier: a plain object, with a `rediss://` URL when the connection is a URL. */
export function resolveTls(v: unknown, redis: unknown, at: string): ConnectionOptions | undefined {
  if (v === undefined) return undefined
  if (!isPlainObject(v)) throw new InvalidOptionError(`${at}.tls must be an object of TLS options like { ca } (got ${describe(v)})`)
  if (typeof redis === 'string' && !/^rediss:\/\//.test(redis)) {
    throw new InvalidOptionError(`${at}.tls needs a rediss:// URL in ${at}.redis (got ${describe(redis.replace(/\/\/[^@/]*@/, '//…@'))})`)
  }
  // A Cluster's node connections take their TLS from its redisOptions (ioredis), for the
  // startup nodes and every node it discovers: one more place to merge would be a second truth.
  if (isClusterNodes(redis) || (isPlainObject(redis) === false && typeof (redis as { nodes?: unknown }).nodes === 'function')) {
    throw new InvalidOptionError(`${at}.tls does not apply to a Cluster: set the Cluster's redisOptions.tls (in ${at}.redis.options.redisOptions.tls with { cluster: [nodes] })`)
  }
  return v as ConnectionOptions
}

/**
 * Validates `{ cluster: nodes, options? }` (`where`: the option's path): at
 * least one node, each a non-empty `'host:port'` / URL string or an object
 * with a `port` from 1 to 65535; `options` a plain object of ioredis Cluster options.
 */
export function checkClusterNodes(v: Record<string, unknown>, where: string): void {
  rejectUnknownKeys(v, ['cluster', 'options'], `${where}.`)
  const nodes = v.cluster
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new InvalidOptionError(`${where}.cluster must be a non-empty array of startup nodes like ['127.0.0.1:7000'] or [{ host: '127.0.0.1', port: 7000 }] (got ${describe(nodes)})`)
  }
  nodes.forEach((n: unknown, i) => {
    const port = isPlainObject(n) ? n.port : undefined
    const okObject = isPlainObject(n) && (n.host === undefined || (typeof n.host === 'string' && n.host !== '')) && typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535
    if (!(typeof n === 'string' && n !== '') && !okObject) {
      throw new InvalidOptionError(`${where}.cluster[${i}] must be a 'host:port' string or { host, port } with a port from 1 to 65535 (got ${describe(n)})`)
    }
  })
  if (v.options !== undefined && !isPlainObject(v.options)) {
    throw new InvalidOptionError(`${where}.options must be an object of ioredis Cluster options (got ${describe(v.options)})`)
  }
}
