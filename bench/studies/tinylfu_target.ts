/**
 * How far W-TinyLFU (workers/policy/tinylfu.ts) is from its target at every
 * size of every shipped trace: the best of LRU, S3-FIFO, ARC and the static
 * W-TinyLFU (Caffeine's: a 1% window, no second chance), less one point, and
 * never half a point below LRU. Also the best fixed window share, to show
 * what the window simulations (workers/policy/window_sim.ts) could reach.
 *
 *   node dist/bench/studies/tinylfu_target.js [--sizes 1,5,10,25] [--traces multi2,ps,...] [--sweep]
 *
 * Sizes are percentages of each trace's unique keys (floored, as
 * test/unit/tinylfu.test.ts and `shardcache replay` size them). Replay is
 * through the policy alone (test/fixtures/policy_replay.ts), a get per
 * request and an insert on a miss. ARC is the reference model in
 * test/fixtures/policy_models/arc.ts. `--sweep` adds W-TinyLFU at each
 * simulated share held fixed (slow: seven more replays a size).
 */
import { parseArgs } from 'node:util'
import { createPolicy } from '../../workers/policy/index.js'
import { TinyLfuPolicy } from '../../workers/policy/tinylfu.js'
import { arcHits } from '../../test/fixtures/policy_models/arc.js'
import { cloudphysics, lirsKeys, replay, sized } from '../../test/fixtures/policy_replay.js'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,5,10,25' },
    traces: { type: 'string', default: 'multi2,ps,sprite,gli,cpp,cs,cloudphysics' },
    sweep: { type: 'boolean', default: false },
  },
})
const SHARES = [0.01, 0.04, 0.12, 0.3, 0.55, 0.8, 0.99]
const pct = (hits: number, n: number): number => (hits / n) * 100

let misses = 0
let worst = Infinity
let worstAt = ''
console.log('trace@entries        tinylfu  target   lru     s3fifo  arc     static' + (values.sweep ? '  best fixed share' : ''))
for (const trace of values.traces.split(',')) {
  const keys = trace === 'cloudphysics' ? cloudphysics().keys : lirsKeys(trace)
  const unique = new Set(keys).size
  for (const p of values.sizes.split(',').map(Number)) {
    const n = Math.max(2, Math.floor((unique * p) / 100))
    const lru = replay(createPolicy('lru', sized(n, n)), keys, n)
    const s3 = replay(createPolicy('s3fifo', sized(n, n)), keys, n)
    const arc = pct(arcHits(keys, n), keys.length)
    const fixed = replay(new TinyLfuPolicy(sized(n, n), { share: 0.01, secondChance: false }), keys, n)
    const got = replay(new TinyLfuPolicy(sized(n, n)), keys, n)
    const target = Math.max(lru - 0.5, Math.max(lru, s3, arc, fixed) - 1)
    if (got < target) misses++
    if (got - target < worst) {
      worst = got - target
      worstAt = `${trace}@${n}`
    }
    let sweep = ''
    if (values.sweep) {
      const best = SHARES.map((share) => [share, replay(new TinyLfuPolicy(sized(n, n), { share, secondChance: true }), keys, n)] as const).reduce((a, b) => (b[1] > a[1] ? b : a))
      sweep = `  ${best[1].toFixed(2)} at ${best[0]}`
    }
    const f = (v: number): string => v.toFixed(2).padStart(6)
    console.log(`${`${trace}@${n}`.padEnd(20)} ${f(got)}  ${f(target)}  ${f(lru)}  ${f(s3)}  ${f(arc)}  ${f(fixed)}${sweep}${got < target ? '  MISS' : ''}`)
  }
}
console.log(`${misses} below target; closest ${worst.toFixed(2)} at ${worstAt}`)
