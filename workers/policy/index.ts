/**
 * The eviction policies and how a region's is chosen: a store calls
 * {@link createPolicy} once, from its configuration. A new policy is a file
 * here implementing {@link Policy} (workers/policy/policy.ts), a name in
 * {@link EvictionPolicy} and a case below; the store does not change.
 */
import { FifoPolicy } from './fifo.js'
import { LruPolicy } from './lru.js'
import type { EvictionPolicy, Policy } from './policy.js'

export { NIL } from './policy.js'
export type { EvictionPolicy, Policy } from './policy.js'
export { FifoPolicy } from './fifo.js'
export { LruPolicy } from './lru.js'

/** The policy `name`, with room for `capacity` slots, growable up to `limit`. */
export function createPolicy(name: EvictionPolicy, capacity: number, limit: number): Policy {
  switch (name) {
    case 'lru':
      return new LruPolicy(capacity, limit)
    case 'fifo':
      return new FifoPolicy(capacity, limit)
    default:
      throw new Error(`unknown eviction policy ${JSON.stringify(name)}`)
  }
}
