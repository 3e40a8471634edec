/**
 * Every error shardcache raises is a {@link CacheError} subclass with a stable
 * `code`. Match on `code` (or `instanceof`), never on the message: messages
 * name the argument or option to fix and may be reworded.
 *
 * Expected outcomes are not errors: a miss resolves to `undefined`, an `nx`/`xx`
 * set that did not apply resolves to `false`.
 */

/** All error codes, for exhaustive handling. */
export const ErrorCodes = {
  INVALID_KEY: 'E_INVALID_KEY',
  INVALID_VALUE: 'E_INVALID_VALUE',
  VALUE_TOO_LARGE: 'E_VALUE_TOO_LARGE',
  INVALID_TTL: 'E_INVALID_TTL',
  UNKNOWN_REGION: 'E_UNKNOWN_REGION',
  INVALID_OPTION: 'E_INVALID_OPTION',
  CLOSED: 'E_CLOSED',
  SHARD_CRASHED: 'E_SHARD_CRASHED',
  SHARD_START: 'E_SHARD_START',
  BUS_CONNECT: 'E_BUS_CONNECT',
  LOADER: 'E_LOADER',
  LOAD_TIMEOUT: 'E_LOAD_TIMEOUT',
  LOAD_ABORTED: 'E_LOAD_ABORTED',
  L2_UNAVAILABLE: 'E_L2_UNAVAILABLE',
  REDIS_AUTH: 'E_REDIS_AUTH',
  REDIS_TLS: 'E_REDIS_TLS',
  REDIS_NOPERM: 'E_REDIS_NOPERM',
  NOT_A_NUMBER: 'E_NOT_A_NUMBER',
  SNAPSHOT_CORRUPT: 'E_SNAPSHOT_CORRUPT',
  WRITE_THROUGH: 'E_WRITE_THROUGH',
  WRITE_QUEUE_FULL: 'E_WRITE_QUEUE_FULL',
  UNSUPPORTED: 'E_UNSUPPORTED',
  INTERNAL: 'E_INTERNAL',
} as const

/** A stable error code, e.g. `'E_INVALID_KEY'`. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

/** Base class of every error raised by shardcache. */
export class CacheError extends Error {
  /** Stable machine-readable code, e.g. `'E_INVALID_KEY'`. */
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** A key is not a non-empty string of at most `maxKeyBytes` UTF-8 bytes. Code `E_INVALID_KEY`. */
export class InvalidKeyError extends CacheError {
  static readonly code = ErrorCodes.INVALID_KEY
  constructor(message: string) {
    super(ErrorCodes.INVALID_KEY, message)
  }
}

/** A value cannot be stored: `undefined`, a function, a symbol, or rejected by the codec. Code `E_INVALID_VALUE`. */
export class InvalidValueError extends CacheError {
  static readonly code = ErrorCodes.INVALID_VALUE
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_VALUE, message, options)
  }
}

/** A value is over `maxValueBytes`, or its entry is over the region's per-shard byte budget. Code `E_VALUE_TOO_LARGE`. */
export class ValueTooLargeError extends CacheError {
  static readonly code = ErrorCodes.VALUE_TOO_LARGE
  constructor(message: string) {
    super(ErrorCodes.VALUE_TOO_LARGE, message)
  }
}

/** A TTL is not a positive number of milliseconds, `Infinity`, or a duration string like `'30s'`. Code `E_INVALID_TTL`. */
export class InvalidTtlError extends CacheError {
  static readonly code = ErrorCodes.INVALID_TTL
  constructor(message: string) {
    super(ErrorCodes.INVALID_TTL, message)
  }
}

/** A region name that was not configured in `createCache({ regions })`. Code `E_UNKNOWN_REGION`. */
export class UnknownRegionError extends CacheError {
  static readonly code = ErrorCodes.UNKNOWN_REGION
  constructor(message: string) {
    super(ErrorCodes.UNKNOWN_REGION, message)
  }
}

/** An option (of `createCache` or of an operation) is invalid; the message names it. Code `E_INVALID_OPTION`. */
export class InvalidOptionError extends CacheError {
  static readonly code = ErrorCodes.INVALID_OPTION
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_OPTION, message, options)
  }
}

/** The cache was closed; operations issued after `close()` reject with this. Code `E_CLOSED`. */
export class ClosedError extends CacheError {
  static readonly code = ErrorCodes.CLOSED
  constructor(message = 'the cache is closed') {
    super(ErrorCodes.CLOSED, message)
  }
}

/**
 * The shard thread owning the key died while the operation was in flight. The
 * shard restarts empty; retrying the operation is safe. Code `E_SHARD_CRASHED`.
 *
 * When `restarting` is false the shard kept dying before it could answer
 * anything and is no longer restarted: its keys fail until the cache is recreated.
 */
export class ShardCrashedError extends CacheError {
  static readonly code = ErrorCodes.SHARD_CRASHED
  /** Index of the shard that died. */
  readonly shard: number
  /** Whether the shard is being restarted (false: it is down for good). */
  readonly restarting: boolean
  constructor(shard: number, options?: { cause?: unknown; restarting?: boolean }) {
    const restarting = options?.restarting ?? true
    super(
      ErrorCodes.SHARD_CRASHED,
      restarting
        ? `shard ${shard} crashed; it restarts empty and the operation may be retried`
        : `shard ${shard} is down: it crashed repeatedly before answering and is not restarted; recreate the cache`,
      options,
    )
    this.shard = shard
    this.restarting = restarting
  }
}

/**
 * `createCache` could not start a shard thread: the thread failed before it
 * answered its first request (an error while loading its modules, e.g. a
 * `--import` preload that throws in worker threads), or could not be created
 * at all. `cause` holds the thread's own error. Nothing is left running: the
 * other shards were stopped. Code `E_SHARD_START`.
 */
export class ShardStartError extends CacheError {
  static readonly code = ErrorCodes.SHARD_START
  /** Index of the shard that did not start. */
  readonly shard: number
  constructor(shard: number, options: { cause: unknown }) {
    const why = options.cause instanceof Error ? options.cause.message : String(options.cause)
    super(ErrorCodes.SHARD_START, `shard ${shard} failed to start: ${why}`, options)
    this.shard = shard
  }
}

/**
 * The invalidation bus could not connect and subscribe to Redis while
 * `bus.required` is true (the default). The message names the address, the
 * option and why (`cannot connect the bus to Redis at 127.0.0.1:6379
 * (options.bus.redis): connection refused (ECONNREFUSED)`); `cause` holds
 * the connection error. Code `E_BUS_CONNECT`.
 */
export class BusConnectError extends CacheError {
  static readonly code = ErrorCodes.BUS_CONNECT
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.BUS_CONNECT, message, options)
  }
}

/**
 * A `getOrCompute` loader failed. On the thread whose loader ran, callers get
 * the loader's own error; callers waiting on other threads get this, with the
 * original's name and message (`cause` is not sent across threads). Code `E_LOADER`.
 */
export class LoaderError extends CacheError {
  static readonly code = ErrorCodes.LOADER
  /** The name of the loader's error (`TypeError`, ...). */
  readonly loaderErrorName: string
  constructor(message: string, loaderErrorName: string) {
    super(ErrorCodes.LOADER, message)
    this.loaderErrorName = loaderErrorName
  }
}

/** A `getOrCompute` loader did not settle within its `timeout`; nothing was cached. Code `E_LOAD_TIMEOUT`. */
export class LoadTimeoutError extends CacheError {
  static readonly code = ErrorCodes.LOAD_TIMEOUT
  constructor(message: string) {
    super(ErrorCodes.LOAD_TIMEOUT, message)
  }
}

/** The thread running a `getOrCompute` loader for this key exited or detached before it finished. Retrying is safe. Code `E_LOAD_ABORTED`. */
export class LoadAbortedError extends CacheError {
  static readonly code = ErrorCodes.LOAD_ABORTED
  constructor(message: string) {
    super(ErrorCodes.LOAD_ABORTED, message)
  }
}

/**
 * The Redis L2 tier failed, timed out, or is behind its open circuit breaker,
 * and `l2.required` is true (otherwise such operations skip L2). The message
 * names the address and the option, and why when the connection is down
 * (`not connected: connection refused (ECONNREFUSED)`); `cause` holds the
 * original error, when there is one. Code `E_L2_UNAVAILABLE`.
 */
export class L2Error extends CacheError {
  static readonly code = ErrorCodes.L2_UNAVAILABLE
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.L2_UNAVAILABLE, message, options)
  }
}

/**
 * `createCache`: Redis refused the credentials of the bus or the L2 tier
 * (`WRONGPASS`: a wrong username or password, or a disabled user; `NOAUTH`: a
 * password is needed and none was given). Retrying cannot fix it, so
 * createCache rejects at once, whatever `required` says. The message names
 * the option (`options.bus.redis` or `options.l2.redis`); `cause` is the
 * server's reply. Code `E_REDIS_AUTH`.
 */
export class RedisAuthError extends CacheError {
  static readonly code = ErrorCodes.REDIS_AUTH
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.REDIS_AUTH, message, options)
  }
}

/**
 * `createCache`: the TLS connection of the bus or the L2 tier to Redis failed
 * its handshake: the server's certificate is not signed by a trusted CA (pass
 * it as `tls.ca`), names another host or has expired, or OpenSSL reported a
 * protocol error. createCache rejects at once, whatever `required` says. The message
 * names the option; `cause` is Node's TLS error (its `code`, e.g.
 * `SELF_SIGNED_CERT_IN_CHAIN`). Code `E_REDIS_TLS`.
 */
export class RedisTlsError extends CacheError {
  static readonly code = ErrorCodes.REDIS_TLS
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.REDIS_TLS, message, options)
  }
}

/**
 * `createCache`: the Redis ACL user of the bus or the L2 tier lacks a command,
 * key or channel permission that it needs (a `NOPERM` reply). createCache
 * checks every permission the configuration will use before it resolves
 * (queued in a `MULTI` that is discarded, so nothing runs). The message names
 * the command and the option; `cause` is the server's reply. The rules are in
 * docs/redis-security.md. Code `E_REDIS_NOPERM`.
 */
export class RedisPermissionError extends CacheError {
  static readonly code = ErrorCodes.REDIS_NOPERM
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.REDIS_NOPERM, message, options)
  }
}

/** `incr` on a value that is not a number (a JSON-codec number or a numeric string); nothing changed. Code `E_NOT_A_NUMBER`. */
export class NotANumberError extends CacheError {
  static readonly code = ErrorCodes.NOT_A_NUMBER
  constructor(message: string) {
    super(ErrorCodes.NOT_A_NUMBER, message)
  }
}

/**
 * A region's write-through store failed a `sync` write or delete: it threw,
 * rejected, or did not settle within `writeThrough.timeout`. The store's
 * state is then unknown (a timed-out write may still land), so the key is
 * dropped from the cache (and from peers and L2): the next read loads what
 * the store holds. `keys` are the keys that failed (an `mset` or `mdelete`
 * rejects with the ones whose store call failed; the others went through);
 * `cause` is the store's error. Code `E_WRITE_THROUGH`.
 */
export class WriteThroughError extends CacheError {
  static readonly code = ErrorCodes.WRITE_THROUGH
  readonly keys: string[]
  constructor(message: string, keys: string[], options?: { cause?: unknown }) {
    super(ErrorCodes.WRITE_THROUGH, message, options)
    this.keys = keys
  }
}

/**
 * A region's `async` write-behind queue holds `writeThrough.maxQueue` keys
 * already (the store is slow or down): the write was refused before it
 * reached the cache, so nothing changed. Retry later, or raise `maxQueue`.
 * Code `E_WRITE_QUEUE_FULL`.
 */
export class WriteQueueFullError extends CacheError {
  static readonly code = ErrorCodes.WRITE_QUEUE_FULL
  constructor(message: string) {
    super(ErrorCodes.WRITE_QUEUE_FULL, message)
  }
}

/**
 * The operation cannot be done on this region as configured (for example
 * `incr` on a region that writes through to a store: its read-modify-write
 * happens in the shard, where the store cannot follow). Nothing changed; the
 * message names the option that rules it out. Code `E_UNSUPPORTED`.
 */
export class UnsupportedError extends CacheError {
  static readonly code = ErrorCodes.UNSUPPORTED
  constructor(message: string) {
    super(ErrorCodes.UNSUPPORTED, message)
  }
}

/** A bug in shardcache itself (a shard answered something the router cannot read). Code `E_INTERNAL`. */
export class InternalError extends CacheError {
  static readonly code = ErrorCodes.INTERNAL
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.INTERNAL, message, options)
  }
}
