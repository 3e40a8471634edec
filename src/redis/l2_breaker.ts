/**
 * The L2 tier's calls to Redis, behind a circuit breaker. Apart from ./l2.ts
 * because every operation of the tier and its repairs (./l2_repair.ts) go
 * through it, and what it keeps (failures in a row, why the connection is
 * down) is about the connection, not the keys.
 *
 * Failure: every command has `timeout`; an error or a timeout makes the
 * operation skip L2 (counted) unless `required`, when it rejects with
 * `E_L2_UNAVAILABLE`. Five failures in a row open a circuit breaker: L2 is
 * not called for `breakDuration`, then one call probes it.
 */
import type { Cluster, Redis } from 'ioredis'
import { L2Error } from '../errors.js'
import { plural } from '../messages.js'
import { connectionProblem, isNotConnected, moreTelling, whereOf } from './redis_access.js'
import type { L2Counters, ResolvedL2 } from './l2_types.js'

/** Failures in a row that open the breaker. */
const BREAKER_THRESHOLD = 5

type Client = Redis | Cluster

export class L2Breaker {
  readonly #client: Client
  readonly #required: boolean
  readonly #timeoutMs: number
  readonly #breakDurationMs: number
  readonly #c: L2Counters
  #failures = 0
  #openUntil = 0
  #probing = false
  /** The connection's last error since it was last ready (why it is down), for messages. */
  #connError: Error | undefined
  /** The last operation's failure, for the breaker's message. */
  #lastFailure: unknown

  constructor(client: Client, opts: ResolvedL2, counters: L2Counters) {
    this.#client = client
    this.#required = opts.required
    this.#timeoutMs = opts.timeoutMs
    this.#breakDurationMs = opts.breakDurationMs
    this.#c = counters
    // Reported through the operations' outcomes and stats, not as process-level noise; kept
    // to say why in the message of an operation failing while the connection is down.
    const down = (err: Error): void => {
      this.#connError = moreTelling(this.#connError, err)
    }
    client.on('error', down)
    // A Cluster reports its nodes' connection errors (refused, reset) as 'node error'.
    client.on('node error', down)
    client.on('ready', () => {
      this.#connError = undefined
    })
  }

  /** Date.now() until which the breaker is open (in the past when it is not). */
  get openUntil(): number {
    return this.#openUntil
  }

  /** `stats().tiers.l2.breaker`. */
  get state(): 'closed' | 'open' | 'half-open' {
    return this.#openUntil > Date.now() ? 'open' : this.#failures >= BREAKER_THRESHOLD ? 'half-open' : 'closed'
  }

  /** Runs `fn` unless the breaker is open; a failure counts, and rejects only when `required`. */
  async call<T>(fn: (c: Client) => Promise<T>): Promise<T | undefined> {
    const now = Date.now()
    if (this.#openUntil > now || (this.#failures >= BREAKER_THRESHOLD && this.#probing)) {
      this.#c.skipped++
      if (this.#required) throw new L2Error(this.#breakerOpenMessage())
      return undefined
    }
    const probe = this.#failures >= BREAKER_THRESHOLD
    if (probe) this.#probing = true
    try {
      const out = await fn(this.#client)
      this.#failures = 0
      return out
    } catch (err) {
      this.#c.errors++
      this.#lastFailure = err
      if (++this.#failures >= BREAKER_THRESHOLD) this.#openUntil = Date.now() + this.#breakDurationMs
      if (this.#required) throw new L2Error(`the L2 tier failed on ${whereOf(this.#client)} (options.l2.redis): ${this.#failure(err)}`, { cause: err })
      return undefined
    } finally {
      if (probe) this.#probing = false
    }
  }

  /**
   * An operation's failure in words: a reply timeout names the option; a
   * connection that is down says why, as its last error did (`not
   * connected: connection refused (ECONNREFUSED)`).
   */
  #failure(err: unknown): string {
    if (err instanceof Error && err.message === 'Command timed out') return `no reply within options.l2.timeout (${this.#timeoutMs} ms)`
    const problem = connectionProblem(err)
    const why = this.#connError
    return isNotConnected(err) && why !== undefined ? `${problem}: ${connectionProblem(why)}` : problem
  }

  #breakerOpenMessage(): string {
    const last = this.#lastFailure === undefined ? '' : `; the last: ${this.#failure(this.#lastFailure)}`
    return (
      `the L2 tier is unavailable: its circuit breaker is open after ${plural(BREAKER_THRESHOLD, 'failure')} in a row on ${whereOf(this.#client)} ` +
      `(options.l2.redis)${last}; it tries again after options.l2.breakDuration (${this.#breakDurationMs} ms)`
    )
  }
}
