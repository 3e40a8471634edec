/**
 * An attached thread of the soak (bench/soak_driver.ts): attaches to the
 * owner's cache, runs the traffic mix for a while, detaches (close), asks for
 * a new handle and attaches again, `cycles` times; then exits, and the driver
 * starts a new thread. Messages: to the owner `{ type: 'handle' }` (asks for
 * one), `{ type: 'cycle', ops, errors }` after each detach; from it
 * `{ handle }` and `{ stop: true }`.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { attachCache } from '../src/index.js'
import type { CacheHandle } from '../src/index.js'
import { Rng, countError, oneOp } from './soak_ops.js'
import type { ErrorCounts, TrafficShape } from './soak_ops.js'

export interface SoakThreadData {
  seed: number
  cycles: number
  cycleMs: number
  lanes: number
  shape: TrafficShape
}

export type SoakThreadMessage = { type: 'handle' } | { type: 'cycle'; ops: number; errors: ErrorCounts }

const data = workerData as SoakThreadData
const port = parentPort!
const rng = new Rng(data.seed)
let stopping = false
let handleWaiter: ((h: CacheHandle) => void) | undefined

port.on('message', (m: { handle?: CacheHandle; stop?: boolean }) => {
  if (m.stop === true) stopping = true
  if (m.handle !== undefined) handleWaiter?.(m.handle)
})

const post = (m: SoakThreadMessage): void => port.postMessage(m)

for (let c = 0; c < data.cycles && !stopping; c++) {
  const handle = await new Promise<CacheHandle>((resolve) => {
    handleWaiter = resolve
    post({ type: 'handle' })
  })
  const cache = await attachCache(handle)
  const errors: ErrorCounts = {}
  let ops = 0
  const until = Date.now() + data.cycleMs
  await Promise.all(
    Array.from({ length: data.lanes }, async () => {
      while (!stopping && Date.now() < until) {
        try {
          await oneOp(cache, rng, data.shape)
        } catch (err) {
          countError(errors, err)
        }
        ops++
      }
    }),
  )
  await cache.close()
  post({ type: 'cycle', ops, errors })
}
port.close()
