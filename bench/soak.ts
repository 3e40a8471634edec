/**
 * `npm run soak -- --minutes N [--interval-seconds S]`: the soak of
 * bench/soak_driver.ts for N minutes (default 5), printing memory and ops
 * every S seconds (default 60), then a table of every sample; exits 0.
 *
 * Redis: a private redis-server on a free loopback port, started here and
 * stopped at the end, on Ctrl-C, and (through its watchdog, see
 * tools/redis_server.ts) even when this process is killed; or REDIS_URL.
 *
 * Other flags: `--seconds N` instead of minutes; `--json` prints the result
 * as one line `SOAK_RESULT {...}` at the end (test/threads/soak.test.ts reads it);
 * `--attached-threads N`, `--lanes N`. Run under `node --expose-gc` (the npm
 * script does) so that heaps are measured after a full GC.
 */
import { resolveRedis } from '../tools/redis_server.js'
import { DEFAULT_SOAK, formatSample, formatTable, runSoak } from './soak_driver.js'

function usage(msg: string): never {
  process.stderr.write(`soak: ${msg}\nusage: npm run soak -- [--minutes N | --seconds N] [--interval-seconds S] [--attached-threads N] [--lanes N] [--json]\n`)
  process.exit(2)
}

function parseArgs(argv: string[]): { durationMs: number; intervalMs: number; json: boolean; attachedThreads: number; lanes: number } {
  let durationMs = 5 * 60_000
  let intervalMs = 60_000
  let json = false
  let attachedThreads = DEFAULT_SOAK.attachedThreads
  let lanes = DEFAULT_SOAK.lanes
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const num = (): number => {
      const v = Number(argv[++i])
      if (!Number.isFinite(v) || v <= 0) usage(`${a} needs a positive number (got ${JSON.stringify(argv[i])})`)
      return v
    }
    if (a === '--minutes') durationMs = num() * 60_000
    else if (a === '--seconds') durationMs = num() * 1000
    else if (a === '--interval-seconds') intervalMs = num() * 1000
    else if (a === '--attached-threads') attachedThreads = Math.floor(num())
    else if (a === '--lanes') lanes = Math.floor(num())
    else if (a === '--json') json = true
    else usage(`unknown argument ${JSON.stringify(a)}`)
  }
  return { durationMs, intervalMs, json, attachedThreads, lanes }
}

const args = parseArgs(process.argv.slice(2))
let interrupted: NodeJS.Signals | undefined
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted !== undefined) process.exit(130) // a second Ctrl-C: now (the exit hook kills the server)
    interrupted = sig
    process.stderr.write(`\nsoak: ${sig}, stopping (again to quit at once)\n`)
  })
}

const redis = await resolveRedis()
if (redis.target === undefined) {
  process.stderr.write(`soak: needs Redis for the bus and the L2 tier: ${redis.skipped ?? 'none'}\n`)
  process.exit(1)
}
const gc = typeof (globalThis as { gc?: unknown }).gc === 'function'
process.stdout.write(
  `soak: ${(args.durationMs / 60_000).toFixed(2)} min, a sample every ${args.intervalMs / 1000} s; ${DEFAULT_SOAK.shards} shards + a 1-shard peer, ` +
    `${args.lanes} lanes, ${args.attachedThreads} attached threads; Redis ${redis.target.owned ? 'private' : 'REDIS_URL'}; ` +
    `${gc ? 'heaps after a forced gc' : 'no --expose-gc: heaps as found'}. RSS is the whole process's (shards are threads of it).\n`,
)
let code = 0
try {
  const result = await runSoak({
    ...DEFAULT_SOAK,
    attachedThreads: args.attachedThreads,
    lanes: args.lanes,
    durationMs: args.durationMs,
    intervalMs: args.intervalMs,
    redisUrl: redis.target.url,
    onSample: (s) => process.stdout.write(`${formatSample(s)}\n`),
    shouldStop: () => interrupted !== undefined,
  })
  process.stdout.write(`\n${formatTable(result.samples)}\n`)
  const errs = Object.entries(result.errors)
  process.stdout.write(errs.length === 0 ? 'errors: none\n' : `errors: ${errs.map(([c, n]) => `${c} ${n}`).join(', ')}\n`)
  if (args.json) process.stdout.write(`SOAK_RESULT ${JSON.stringify(result)}\n`)
  if (interrupted !== undefined) code = 130
} catch (err) {
  process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`)
  code = 1
} finally {
  await redis.target.stop()
}
process.exit(code)
