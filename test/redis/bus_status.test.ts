/**
 * The bus's status changes as NODE_DEBUG=shardcache logs them
 * (src/redis/bus_link.ts), across a redis-server killed and restarted: the
 * exact sequence, from the first subscription to the closed connections, in
 * each catch-up mode. The cache runs in a child process
 * (test/fixtures/bus_status_child.ts) whose stderr is read line by line; every step waits
 * for the line that says the bus got there, never for a time.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { RedisProc } from '../fixtures/redis_proc.js'

const CHILD = new URL('../fixtures/bus_status_child.js', import.meta.url)
/** Only how long a step may take before the test fails rather than hangs; no step waits for it. */
const STEP_TIMEOUT_MS = 20_000

/** A debuglog line of the bus: `SHARDCACHE <pid>: bus <origin id>: <from> -> <to> (<why>)`. */
const LINE = /^SHARDCACHE \d+: bus [0-9a-f]{8}: (.+)$/

interface Run {
  /** The transitions logged so far, `from -> to (why)`. */
  readonly lines: string[]
  /** Resolves once a logged transition starts with `prefix`. */
  waitFor(prefix: string): Promise<void>
  /** Asks the child to close its cache; resolves with its exit code. */
  close(): Promise<number | null>
  kill(): void
}

async function start(url: string, catchUp: 'flush' | 'stream'): Promise<Run> {
  const child: ChildProcess = fork(CHILD, [url, catchUp], {
    execArgv: [],
    env: { ...process.env, NODE_DEBUG: 'shardcache' },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  const lines: string[] = []
  let stderr = ''
  let partial = ''
  const waiters = new Set<() => void>()
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk
    const parts = (partial + chunk).split('\n')
    partial = parts.pop()!
    for (const line of parts) {
      const m = LINE.exec(line)
      if (m !== null) lines.push(m[1]!)
    }
    for (const wake of waiters) wake()
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  let gone = false
  void exited.then(() => {
    gone = true
    for (const wake of waiters) wake()
  })
  const until = (what: string, done: () => boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (done()) finish(resolve)
        else if (gone) finish(() => reject(new Error(`the child exited before ${what}; logged: ${JSON.stringify(lines)}\n${stderr}`)))
      }
      const finish = (then: () => void): void => {
        clearTimeout(timer)
        waiters.delete(check)
        then()
      }
      const timer = setTimeout(() => finish(() => reject(new Error(`no ${what} within ${STEP_TIMEOUT_MS} ms; logged: ${JSON.stringify(lines)}\n${stderr}`))), STEP_TIMEOUT_MS)
      waiters.add(check)
      check()
    })
  let created = false
  child.once('message', () => {
    created = true
    for (const wake of waiters) wake()
  })
  await until('cache created', () => created)
  return {
    lines,
    waitFor: (prefix) => until(`"${prefix}"`, () => lines.some((l) => l.startsWith(prefix))),
    close: async () => {
      child.send('close')
      return exited
    },
    kill: () => child.kill('SIGKILL'),
  }
}

const servers: RedisProc[] = []
const runs: Run[] = []

test.after.each(async () => {
  for (const r of runs.splice(0)) r.kill()
  for (const s of servers.splice(0)) await s.stop()
})

/** Starts a server and a child on it, kills and restarts the server, waits for the bus to be back at `back`, and closes. */
async function outage(catchUp: 'flush' | 'stream', back: string): Promise<string[]> {
  const redis = await RedisProc.start()
  servers.push(redis)
  const run = await start(redis.url, catchUp)
  runs.push(run)
  // createCache resolved: subscribed.
  await run.waitFor('connecting -> ready')
  await redis.kill()
  await run.waitFor('ready -> reconnecting')
  await redis.restart()
  await run.waitFor(back)
  assert.is(await run.close(), 0)
  return run.lines
}

test("flush mode: connecting -> ready, and a killed server's reconnect back to ready, then closing -> closed", async () => {
  const lines = await outage('flush', 'reconnecting -> ready')
  assert.equal(lines, [
    "connecting -> ready (subscribed to 'status-test')",
    'ready -> reconnecting (connection closed)',
    "reconnecting -> ready (resubscribed to 'status-test')",
    'ready -> closing (close())',
    'closing -> closed (connections closed)',
  ])
})

test('stream mode: the reconnect goes through catching-up (a replay of the stream) back to ready', async () => {
  const lines = await outage('stream', 'catching-up -> ready')
  // The replay reads on the publisher connection, which reconnects on its own schedule: read
  // back (the restarted server's stream is empty), or not reconnected yet and fallen back to a flush.
  const replayed = ['catching-up -> ready (replayed from the stream)', 'catching-up -> ready (the stream did not reach back: flushed)']
  assert.ok(replayed.includes(lines[3]!), lines[3])
  assert.equal(lines, [
    "connecting -> ready (subscribed to 'status-test')",
    'ready -> reconnecting (connection closed)',
    "reconnecting -> catching-up (resubscribed to 'status-test')",
    lines[3],
    'ready -> closing (close())',
    'closing -> closed (connections closed)',
  ])
})

test.run()
