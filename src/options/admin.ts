/**
 * `cache.serveAdmin(options)`: the operator's endpoint's options, validated
 * (the endpoint itself is src/ops/admin_server.ts).
 */
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import { isPlainObject } from '../wire/values.js'
import { rejectUnknownKeys } from './parse.js'

/** `cache.serveAdmin(options)`. */
export interface AdminOptions {
  /** The port to listen on; 0 (the default) picks a free one, which the result gives. */
  port?: number
  /** The address to listen on. @default '127.0.0.1' */
  host?: string
  /** The bearer token every request must carry (`Authorization: Bearer <token>`). */
  token: string
}

export function resolveAdminOptions(v: unknown): Required<AdminOptions> {
  if (!isPlainObject(v)) throw new InvalidOptionError(`options must be an object like { port: 9464, token } (got ${describe(v)})`)
  rejectUnknownKeys(v, ['port', 'host', 'token'], 'options.')
  const { port = 0, host = '127.0.0.1', token } = v
  if (typeof token !== 'string' || token === '') throw new InvalidOptionError(`options.token must be a non-empty string, the bearer token every request must carry (got ${describe(token)})`)
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidOptionError(`options.port must be an integer from 0 to 65535 (got ${describe(port)})`)
  if (typeof host !== 'string' || host === '') throw new InvalidOptionError(`options.host must be a host name or address (got ${describe(host)})`)
  return { port, host, token }
}
