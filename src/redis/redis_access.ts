/**
 * What Redis refuses for good, as typed errors: credentials (`WRONGPASS`,
 * `NOAUTH`), a certificate or TLS handshake, a permission (`NOPERM`).
 *
 * An unreachable or restarting server is an outage: the bus and the L2 tier
 * keep reconnecting and run degraded meanwhile. A refusal is a configuration
 * error that no reconnect fixes, so `createCache` rejects with it at once
 * instead of waiting out a timeout, or starting a tier that will never work
 * while ioredis retries in a loop behind it.
 *
 * Permissions are checked before createCache resolves: every command a tier
 * will send, with the keys and channel it will send it on, is queued inside a
 * `MULTI` and the transaction discarded. Redis checks ACL rules when it
 * queues a command (since 6.0), so a `NOPERM` comes back for each missing
 * rule and nothing runs. Only `NOPERM` counts: a server or proxy that refuses
 * `MULTI` otherwise just skips the check. The rules are in docs/redis-security.md.
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis'
import type { ConnectionOptions } from 'node:tls'
import { RedisAuthError, RedisPermissionError, RedisTlsError } from '../errors.js'
import type { CacheError } from '../errors.js'
import { isPlainObject } from '../wire/values.js'

/** Node's codes for a certificate it does not trust (or that names another host). */
const CERT_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_REVOKED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

const hasPrefix = (s: string, p: string): boolean => s.length >= p.length && s.slice(0, p.length) === p

/** Where the user fixes it: `options.bus` or `options.l2`. */
export interface RefusalContext {
  /** `'the bus'`, `'the L2 tier'`. */
  what: string
  /** `'options.bus'`, `'options.l2'`. */
  option: string
}

/**
 * The typed error for a refusal no reconnect fixes, or undefined for anything
 * else (a refused or reset connection, a timeout: an outage). Called on
 * connection errors while createCache waits, never on a hot path.
 */
export function refusal(err: unknown, ctx: RefusalContext): CacheError | undefined {
  if (!(err instanceof Error)) return undefined
  const msg = err.message
  const code = (err as { code?: unknown }).code
  if (hasPrefix(msg, 'WRONGPASS') || hasPrefix(msg, 'NOAUTH')) {
    return new RedisAuthError(
      `${ctx.what} cannot log in to Redis (${ctx.option}.redis): ${msg} Check the username and password (in the URL, or the ioredis options username and password).`,
      { cause: err },
    )
  }
  if (hasPrefix(msg, 'NOPERM')) return permissionError(err, ctx, undefined)
  if (typeof code === 'string' && CERT_CODES.has(code)) {
    return new RedisTlsError(
      `${ctx.what} does not trust the Redis server's TLS certificate (${ctx.option}.redis): ${msg} (${code}). Give the CA that signed it as ${ctx.option}.tls.ca, and connect by a name or address its certificate lists.`,
      { cause: err },
    )
  }
  if (typeof code === 'string' && (hasPrefix(code, 'ERR_SSL_') || hasPrefix(code, 'ERR_TLS_'))) {
    return new RedisTlsError(
      `${ctx.what} failed the TLS handshake with Redis (${ctx.option}.redis): ${msg} (${code}). Check that the port is the server's TLS port, and ${ctx.option}.tls (a client certificate, if the server asks for one: tls-auth-clients).`,
      { cause: err },
    )
  }
  return undefined
}

/**
 * Where a connection goes, for messages: `Redis at 127.0.0.1:6379` (the
 * host and port ioredis resolved from the URL or options, never the
 * credentials), `Redis at /run/redis.sock`, or `the Redis Cluster at
 * 127.0.0.1:7000, 127.0.0.1:7001` (its startup nodes).
 */
export function whereOf(c: Redis | Cluster): string {
  if ((c as { isCluster?: unknown }).isCluster === true) {
    // ioredis keeps the startup nodes as given (private in its types): 'host:port' or a URL, a port, or { host, port }.
    const nodes = (c as unknown as { startupNodes?: unknown[] }).startupNodes ?? []
    const shown = nodes.map((n) => {
      if (typeof n === 'string') return n.replace(/\/\/[^@/]*@/, '//')
      if (typeof n === 'number') return `localhost:${n}`
      const o = n as { host?: string; port?: number }
      return hostPort(o.host ?? 'localhost', o.port ?? 6379)
    })
    return `the Redis Cluster at ${shown.join(', ')}`
  }
  const o = (c as Redis).options
  return o.path ? `Redis at ${o.path}` : `Redis at ${hostPort(o.host ?? 'localhost', o.port ?? 6379)}`
}

const hostPort = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)

/** Socket errors in words, by their code. */
const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection broken',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'address not available',
  ENOENT: 'no such socket',
  EACCES: 'permission denied',
}

/** ioredis's own messages for a connection that is down, which say nothing of why. */
const NOT_CONNECTED = "Stream isn't writeable and enableOfflineQueue options is false"
const CLOSED = 'Connection is closed.'

/**
 * Whether `err` only says that the connection is down (a command while it
 * is, or one in flight when it closed): the reason is the last connection
 * error, said after it.
 */
export function isNotConnected(err: unknown): boolean {
  return err instanceof Error && (err.message === NOT_CONNECTED || err.message === CLOSED)
}

/** Says nothing of why: a connection that is down, or a cluster none of whose nodes answered. */
const isVague = (err: Error): boolean => isNotConnected(err) || err.name === 'ClusterAllFailedError'

/**
 * What went wrong with a connection, in words a user can act on:
 * `connection refused (ECONNREFUSED)`, `not connected`. Anything else is
 * the error's own message (a reply of the server, a timeout said by the caller).
 */
export function connectionProblem(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && Object.hasOwn(SOCKET_ERRORS, code)) return `${SOCKET_ERRORS[code]} (${code})`
  if (err.message === NOT_CONNECTED) return 'not connected'
  if (err.message === CLOSED) return 'the connection closed'
  if (err.name === 'ClusterAllFailedError') {
    // ioredis asks the startup nodes for the slots on connections whose errors it drops: its last node's says little more.
    const last = (err as { lastNodeError?: unknown }).lastNodeError
    return `no node of the cluster answered${last instanceof Error ? ` (${connectionProblem(last)})` : ''}`
  }
  return err.message
}

/**
 * The error to keep as "the last one" of a connection: one that says why
 * (refused, reset, a host not found) is not replaced by one that only says
 * it is down (the "Connection is closed." that follows, a Cluster's "no
 * node answered").
 */
export function moreTelling(previous: Error | undefined, next: Error): Error {
  return previous !== undefined && isVague(next) && !isVague(previous) ? previous : next
}

/**
 * The message of a connection that could not be made: what, to where, the
 * option to fix, and why (`cannot connect the bus to Redis at
 * 127.0.0.1:6390 (options.bus.redis): connection refused (ECONNREFUSED)`).
 */
export function cannotConnect(ctx: RefusalContext, where: string, err: unknown): string {
  return `cannot connect ${ctx.what} to ${where} (${ctx.option}.redis): ${connectionProblem(err)}`
}

/** A probe of the permission check: one command as it will be sent, and the key or channel it is sent on. */
export interface Probe {
  args: readonly [string, ...(string | Buffer | number)[]]
  on?: string
}

function permissionError(err: Error, ctx: RefusalContext, probe: Probe | undefined): RedisPermissionError {
  const sent = probe === undefined ? '' : ` (${probe.args[0]}${probe.on === undefined ? '' : ` on ${probe.on}`})`
  return new RedisPermissionError(
    `the Redis user of ${ctx.option}.redis lacks a permission ${ctx.what} needs${sent}: ${err.message}. The ACL rules it needs are in docs/redis-security.md.`,
    { cause: err },
  )
}

const ignore = (): void => {}

const isNoPerm = (err: unknown): err is Error => err instanceof Error && hasPrefix(err.message, 'NOPERM')

/**
 * The permission check, on a connection of its own (a duplicate of `client`,
 * closed afterwards): the tier's own connections may carry other commands
 * meanwhile, which would be queued in the transaction too, and may resend
 * commands after a reconnect, which would run a probe outside it. Every
 * command waits at most `timeoutMs`; anything but a NOPERM (a timeout, a
 * dropped connection) resolves undefined: the tier's operations report it.
 */
export async function checkPermissionsApart(client: Redis, probes: readonly Probe[], ctx: RefusalContext, name: string, timeoutMs: number): Promise<RedisPermissionError | undefined> {
  const check = client.duplicate({
    connectionName: name,
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    autoResendUnfulfilledCommands: false,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
  })
  check.on('error', ignore)
  try {
    await check.connect()
    return await checkPermissions(check, probes, ctx)
  } catch {
    return undefined
  } finally {
    hangUp(check)
  }
}

/**
 * Queues every probe inside a MULTI, then DISCARDs: resolves the
 * RedisPermissionError of the first probe Redis refused, or undefined.
 *
 * MULTI is sent alone first: were it refused, the probes would run for real.
 * The connection must carry nothing else meanwhile (see {@link checkPermissionsApart}).
 */
async function checkPermissions(client: Redis, probes: readonly Probe[], ctx: RefusalContext): Promise<RedisPermissionError | undefined> {
  try {
    await client.call('MULTI')
  } catch (err) {
    return isNoPerm(err) ? permissionError(err, ctx, { args: ['MULTI'] }) : undefined
  }
  const replies = await Promise.allSettled([...probes.map((p) => client.call(p.args[0], ...p.args.slice(1))), client.call('DISCARD')])
  for (let i = 0; i < probes.length; i++) {
    const r = replies[i]!
    if (r.status === 'rejected' && isNoPerm(r.reason)) return permissionError(r.reason, ctx, probes[i])
  }
  const discard = replies[probes.length]!
  if (discard.status === 'rejected' && isNoPerm(discard.reason)) return permissionError(discard.reason, ctx, { args: ['DISCARD'] })
  return undefined
}

/**
 * What a least-privilege ACL user cannot or need not run. The ready check
 * sends INFO (server configuration, clients, keyspace: more than a cache
 * should read), and is only about a server still loading its data set:
 * pub/sub works meanwhile, and an L2 command failing with LOADING is skipped
 * like any failure. CLIENT SETINFO (the library's name and version; Redis
 * 7.2+) would need one more rule: CLIENT SETNAME already names every connection.
 */
export const LEAST_PRIVILEGE = { enableReadyCheck: false, disableClientInfo: true } as const satisfies RedisOptions

/** `own` with the `tls` option merged over the connection's own TLS options, when given. */
export function withTls(own: RedisOptions, base: RedisOptions['tls'] | undefined, tls: ConnectionOptions | undefined): RedisOptions {
  if (tls === undefined) return own
  return { ...own, tls: { ...(typeof base === 'object' ? base : {}), ...tls } }
}

/**
 * Disconnects for good. ioredis listens for one error per socket (`once`),
 * and a TLS socket ended during its handshake (a refused certificate, then
 * close()) can emit a second one, the server's alert, which would be an
 * uncaught exception in the application: the socket gets a listener of its
 * own first.
 */
export function hangUp(c: { stream?: unknown; disconnect(): void }): void {
  const s = c.stream as { on?: (event: 'error', fn: () => void) => void } | undefined
  if (typeof s?.on === 'function') s.on('error', ignore)
  c.disconnect()
}

/**
 * Duck-typed: the application's ioredis may be another copy (or version) than
 * ours, so `instanceof` would refuse a real client.
 */
export function isRedisClient(v: unknown): v is { duplicate(o?: object): unknown } {
  return v !== null && typeof v === 'object' && typeof (v as { duplicate?: unknown }).duplicate === 'function' && typeof (v as { publish?: unknown }).publish === 'function'
}

/** An ioredis `Cluster` (duck-typed, like {@link isRedisClient}). */
export function isClusterClient(v: unknown): boolean {
  return isRedisClient(v) && (v as { isCluster?: unknown }).isCluster === true && typeof (v as { nodes?: unknown }).nodes === 'function'
}

/** `{ cluster: [...startup nodes], options? }`: a Redis Cluster given by its nodes, as a config file can. */
export function isClusterNodes(v: unknown): v is { cluster: unknown[]; options?: Record<string, unknown> } {
  return isPlainObject(v) && Object.hasOwn(v, 'cluster')
}
