/**
 * The eviction policies and how a region's is chosen: a store calls
 * {@link createPolicy} once, from its configuration. A new policy is a file
 * here implementing {@link Policy} (workers/policy/policy.ts), a name in
 * {@link EvictionPolicy} and a case below; the store does not change.
 */
import { FifoPolicy } from './fifo.js'
import { LruPolicy } from './lru.js'
import { SievePolicy } from './sieve.js'
import { S3FifoPolicy } from './s3fifo.js'
import { TinyLfuPolicy } from './tinylfu.js'
import type { EvictionPolicy, Policy, PolicySizing } from './policy.js'

export { NIL } from './policy.js'
export type { EvictionPolicy, Policy, PolicySizing } from './policy.js'
export { FifoPolicy } from './fifo.js'
export { LruPolicy } from './lru.js'
export { SievePolicy } from './sieve.js'
export { S3FifoPolicy } from './s3fifo.js'
export { TinyLfuPolicy } from './tinylfu.js'

/** The policy `name`, sized by `sizing` (slots and budgets). */
export function createPolicy(name: EvictionPolicy, sizing: PolicySizing): Policy {
  switch (name) {
    case 'lru':
      return new LruPolicy(sizing)
    case 'fifo':
      return new FifoPolicy(sizing)
    case 'sieve':
      return new SievePolicy(sizing)
    case 's3fifo':
      return new S3FifoPolicy(sizing)
    case 'tinylfu':
      return new TinyLfuPolicy(sizing)
    default:
      throw new Error(`unknown eviction policy ${JSON.stringify(name)}`)
  }
}
