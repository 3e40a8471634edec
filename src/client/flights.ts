/**
 * Single-flight loading for `getOrCompute`: however many callers miss the
 * same key at once, on however many threads of the process, one loader runs.
 *
 * Two levels. On each thread, callers of one key share one promise (a Map of
 * flights in progress), so 10,000 concurrent calls on a thread cost one
 * request. Across threads, the owner's {@link FlightCoordinator} decides who
 * leads: the first thread to ask leads; the others wait for its outcome, which
 * carries the value's encoded bytes (or the error), so every caller gets the
 * same value or the same rejection without reading the cache again (which an
 * eviction could race). Attached threads ask through their broker port: a
 * message only on a miss, never on a hit.
 *
 * A flight whose leading thread goes away (it exited or detached) ends with
 * `E_LOAD_ABORTED` for its waiters; a later call leads a new one.
 */
import type { MessagePort } from 'node:worker_threads'

/** How a flight ended, as waiters on any thread receive it. */
export type FlightOutcome = { ok: true; tag: number; bytes: Uint8Array } | { ok: false; error: { code: string | undefined; message: string; name: string } }

/** Begin: `'lead'` (run the loader, then end the flight) or the outcome of the flight led elsewhere. */
export type FlightTurn = 'lead' | FlightOutcome

/** What a thread's getOrCompute needs: the owner's coordinator, or a relay to it. */
export interface Flights {
  begin(key: string): Promise<FlightTurn>
  end(key: string, outcome: FlightOutcome): void
}

interface Flight {
  /** The attached thread leading it; undefined: the owner's thread. */
  leader: MessagePort | undefined
  waiters: ((o: FlightOutcome) => void)[]
}

/** The owner's side: one per cache, for the owner's thread and every attached thread. */
export class FlightCoordinator implements Flights {
  readonly #flights = new Map<string, Flight>()

  begin(key: string, leader?: MessagePort): Promise<FlightTurn> {
    const f = this.#flights.get(key)
    if (f === undefined) {
      this.#flights.set(key, { leader, waiters: [] })
      return Promise.resolve('lead')
    }
    return new Promise((resolve) => f.waiters.push(resolve))
  }

  end(key: string, outcome: FlightOutcome): void {
    const f = this.#flights.get(key)
    if (f === undefined) return
    this.#flights.delete(key)
    for (const w of f.waiters) w(outcome)
  }

  /** Ends the flights led by a thread that went away. */
  abandon(leader: MessagePort): void {
    for (const [key, f] of this.#flights) {
      if (f.leader !== leader) continue
      this.end(key, { ok: false, error: { code: 'E_LOAD_ABORTED', name: 'LoadAbortedError', message: `the thread loading ${JSON.stringify(key.slice(key.indexOf('\0') + 1))} went away before it finished` } })
    }
  }

  /** Flights in progress (for tests and close). */
  get size(): number {
    return this.#flights.size
  }

  /** Ends every flight: the cache is closing. */
  closeAll(): void {
    for (const key of [...this.#flights.keys()]) {
      this.end(key, { ok: false, error: { code: 'E_CLOSED', name: 'ClosedError', message: 'the cache is closed' } })
    }
  }
}

/** A flight's key: the region's index and the cache key. */
export function flightKey(region: number, key: string): string {
  return `${region}\0${key}`
}
