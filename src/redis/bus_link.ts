/**
 * The bus's connection state as one status that one method changes
 * ({@link BusLink.setStatus}), which checks that the change is one the bus
 * makes and logs it (`NODE_DEBUG=shardcache`: `bus 1a2b3c4d: ready ->
 * reconnecting (connection closed)`). Apart from ./bus.ts because the
 * receiving side (./bus_inbox.ts, whose stream replay is the 'catching-up'
 * state) and the sending side (./bus_outbox.ts, which sends only while
 * subscribed) read it too. What each state means to coherence is in ./bus.ts.
 */
import { debuglog } from 'node:util'

/**
 * Where the bus's subscription stands:
 * - `connecting`: created, not subscribed yet (start() waits for the first
 *   subscription; a bus that is not `required` may stay here in the background);
 * - `ready`: subscribed;
 * - `catching-up`: subscribed, and a replay of the stream (catchUp 'stream')
 *   is running: live messages are held until it is done;
 * - `reconnecting`: a subscription was lost (its connection closed, its
 *   heartbeat went unanswered, its slot moved) and a new one is being made;
 * - `closing`: close() sends what is queued and hangs up;
 * - `closed`.
 */
export type BusStatus = 'connecting' | 'ready' | 'catching-up' | 'reconnecting' | 'closing' | 'closed'

/**
 * The changes the bus makes. Not `connecting -> reconnecting`: a connection
 * lost before the first subscription only retries, there is nothing to flush.
 * A replay that outlives the subscription it started on (it reads on the
 * publisher connection) ends in `reconnecting`, and the next subscription
 * goes back to `catching-up` while it still runs.
 */
const NEXT: Readonly<Record<BusStatus, readonly BusStatus[]>> = {
  connecting: ['ready', 'catching-up', 'closing'],
  ready: ['catching-up', 'reconnecting', 'closing'],
  'catching-up': ['ready', 'reconnecting', 'closing'],
  reconnecting: ['ready', 'catching-up', 'closing'],
  closing: ['closed'],
  closed: [],
}

/** Prints only when NODE_DEBUG names shardcache (then to stderr, with the process id). */
const debug = debuglog('shardcache')

export class BusLink {
  /** Which bus the log lines are about: its origin's first 8 hex digits. */
  readonly #originId: string
  #status: BusStatus = 'connecting'
  /** Whether close() began while subscribed: stats still say so until the connections are cut. */
  #upWhenClosing = false
  /** The connections' most telling error (why the bus is down), for E_BUS_CONNECT. */
  lastError: Error | undefined

  constructor(originId: string) {
    this.#originId = originId
  }

  get status(): BusStatus {
    return this.#status
  }

  /** Whether the bus holds a subscription it relies on (not once close() began). */
  get subscribed(): boolean {
    return this.#status === 'ready' || this.#status === 'catching-up'
  }

  get closing(): boolean {
    return this.#status === 'closing' || this.#status === 'closed'
  }

  /** `stats().bus.connected`: subscribed, and while closing, whether it was when close() began. */
  get connected(): boolean {
    return this.#status === 'closing' ? this.#upWhenClosing : this.subscribed
  }

  /** The one place the status changes; `why` is for the log. Throws on a change the bus does not make (a bug). */
  setStatus(next: BusStatus, why: string): void {
    const from = this.#status
    if (!NEXT[from].includes(next)) throw new Error(`internal: the bus cannot go from ${from} to ${next} (${why})`)
    if (next === 'closing') this.#upWhenClosing = this.subscribed
    this.#status = next
    debug('bus %s: %s -> %s (%s)', this.#originId, from, next, why)
  }
}
