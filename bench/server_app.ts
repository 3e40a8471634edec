/**
 * The real-server scenario's HTTP server (forked by server.ts): a `node:http`
 * server over pre-filled users, one cache mode per process, so each mode has
 * its own heap, GC history and RSS. The load comes from another process
 * (server_client.ts) over loopback.
 *
 * Routes: `GET /u/<id>` reads the user (cache-aside: on a miss, ~20 µs of
 * work stands for the database, then the user is stored without waiting);
 * `GET /w/<id>` writes a new version and answers once it is stored. Beside
 * the HTTP writes, a feed writes users at a steady rate (an update stream),
 * which is what turns an in-heap cache's old generation over.
 *
 * Messages from the parent: `start` (set up, pre-fill, listen; answers
 * `ready`) and `report` (end the window; answers `window`), then the parent
 * kills the process. The window starts when the client, its warm-up done,
 * requests `/_measure`, so both measure the same stretch.
 */
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { Session } from 'node:inspector'
import { join } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createHistogram, monitorEventLoopDelay, performance as perf } from 'node:perf_hooks'
import type { EventLoopUtilization } from 'node:perf_hooks'
import type { RecordableHistogram } from 'node:perf_hooks'
import { LRUCache } from 'lru-cache'
import { createCache } from '../src/index.js'
import type { Cache } from '../src/index.js'
import { forceGc } from './child.js'
import { gcObserver } from './gc.js'
import { threadCpuMs, threadIds, threadsCpuMs } from './thread_cpu.js'
import { makeUser } from './users.js'
import type { User } from './users.js'
import type { LatencySummaryMs, ServerReady, ServerSetup, ServerWindow } from './server_types.js'

/** Feed writes walk the whole id space by this prime stride (coprime to any entry count it does not divide), not the Zipf head. */
const FEED_STRIDE = 7_919

interface Store {
  prefill(entries: number, bioBytes: number, chunk: number): Promise<void>
  /** The user, undefined when absent; a promise when only a shard can tell. */
  read(key: string): User | undefined | Promise<User | undefined>
  /** Stores `user`; a promise when the store is another thread. */
  write(key: string, user: User): Promise<unknown> | undefined
  close(): Promise<void>
}

const userKey = (id: number): string => `user:${id}`

function noStore(): Store {
  return { prefill: async () => {}, read: () => undefined, write: () => undefined, close: async () => {} }
}

function lruStore(entries: number): Store {
  const lru = new LRUCache<string, User>({ max: entries })
  return {
    async prefill(n, bioBytes) {
      for (let id = 0; id < n; id++) lru.set(userKey(id), makeUser(id, 0, bioBytes))
    },
    read: (key) => lru.get(key),
    write(key, user) {
      lru.set(key, user)
      return undefined
    },
    close: async () => {
      lru.clear()
    },
  }
}

function shardStore(cache: Cache): Store {
  return {
    async prefill(n, bioBytes, chunk) {
      // Two chunks in flight: this thread encodes the next while a shard stores the last.
      let pending: Promise<number> | undefined
      for (let start = 0; start < n; start += chunk) {
        const pairs: [string, User][] = []
        for (let id = start; id < Math.min(n, start + chunk); id++) pairs.push([userKey(id), makeUser(id, 0, bioBytes)])
        const p = cache.mset(pairs)
        if (pending !== undefined) await pending
        pending = p
      }
      await pending
    },
    read(key) {
      // A direct read (shared memory, or the near cache) when this thread can answer alone; else the shard.
      const v = cache.getSync<User>(key)
      return v !== undefined ? v : cache.get<User>(key)
    },
    write: (key, user) => cache.set(key, user),
    close: () => cache.close(),
  }
}

/**
 * BENCH_SERVER_CPU_PROF=<dir>: a CPU profile of the serving thread over the
 * measured window, written to <dir>/<name>-<pid>.cpuprofile (open it in
 * Chrome's DevTools). The process is killed after its report, so
 * `--cpu-prof`, which writes at exit, would never write.
 */
function windowProfiler(name: string): { start(): void; stop(): void } {
  const dir = process.env.BENCH_SERVER_CPU_PROF
  if (dir === undefined || dir === '') return { start() {}, stop() {} }
  const session = new Session()
  session.connect()
  return {
    start() {
      session.post('Profiler.enable', () => session.post('Profiler.start'))
    },
    stop() {
      session.post('Profiler.stop', (err, r) => {
        if (err === null) writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(r.profile))
      })
    },
  }
}

/** Spins for `micros` µs: the CPU a miss costs the server. */
function work(micros: number): void {
  const until = performance.now() + micros / 1000
  while (performance.now() < until) {
    // busy: the point is to take the CPU
  }
}

const summary = (h: RecordableHistogram): LatencySummaryMs => ({
  p50: h.percentile(50) / 1e6,
  p99: h.percentile(99) / 1e6,
  p999: h.percentile(99.9) / 1e6,
  max: h.count === 0 ? 0 : h.max / 1e6,
})

async function start(setup: ServerSetup): Promise<void> {
  const { regime, mode } = setup
  const before = threadIds()
  const cache =
    mode === 'shardcache' || mode === 'shardcache + near'
      ? await createCache({
          // 0: the library's default (cores − 1: one shard on 2 cores, the better tail there, see bench/README.md).
          ...(setup.shards > 0 ? { shards: setup.shards } : {}),
          // Entries decide, not bytes: the budget holds every user, and the byte budget is generous.
          regions: { default: { maxEntries: regime.entries, maxBytes: Math.max(256 * 2 ** 20, regime.entries * (1024 + 3 * regime.bioBytes)) } },
          ...(mode === 'shardcache + near' ? { nearCache: { maxEntries: setup.nearEntries } } : {}),
        })
      : undefined
  // The threads createCache started: its shards.
  const shardTids = threadIds().filter((t) => !before.includes(t))
  const store = cache !== undefined ? shardStore(cache) : mode === 'lru-cache' ? lruStore(regime.entries) : noStore()

  const t0 = performance.now()
  await store.prefill(regime.entries, regime.bioBytes, setup.prefillChunk)
  const prefillMs = performance.now() - t0
  forceGc()

  let measuring = false
  const counts = { reads: 0, hits: 0, syncReads: 0, writes: 0, feedWrites: 0, errors: 0 }
  const writeRtt = createHistogram()
  let writeSeq = 0
  let version = 0
  let firstError: unknown
  const failed = (err: unknown): void => {
    counts.errors++
    firstError ??= err
  }
  /** Stores `user`; times 1 write in 16 of a store that answers later. */
  const write = (key: string, user: User): Promise<unknown> | undefined => {
    const timed = measuring && (writeSeq++ & 15) === 0
    const t = timed ? performance.now() : 0
    const p = store.write(key, user)
    if (timed && p !== undefined) void p.then(() => writeRtt.record(Math.max(1, Math.round((performance.now() - t) * 1e6))), () => {})
    return p
  }

  /** Every response has a content-length: the client finds responses by it (server_client.ts). */
  const send = (res: ServerResponse, body: string, status = 200): void => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }
  const serveRead = (id: number, res: ServerResponse, cached: User | undefined): void => {
    if (measuring) {
      counts.reads++
      if (cached !== undefined) counts.hits++
    }
    let user = cached
    if (user === undefined) {
      work(regime.missWorkMicros)
      user = makeUser(id, 0, regime.bioBytes)
      write(userKey(id), user)?.catch(failed)
    } else if (user.id !== id) {
      failed(new Error(`read of ${userKey(id)} returned user ${user.id}`))
    }
    send(res, JSON.stringify(user))
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? ''
    const id = Number(url.slice(3))
    if (url.startsWith('/u/')) {
      const got = store.read(userKey(id))
      if (measuring && !(got instanceof Promise)) counts.syncReads++
      if (got instanceof Promise) {
        got.then(
          (u) => serveRead(id, res, u),
          (err: unknown) => {
            failed(err)
            send(res, '{"ok":false}', 500)
          },
        )
      } else {
        serveRead(id, res, got)
      }
    } else if (url.startsWith('/w/')) {
      if (measuring) counts.writes++
      const v = ++version
      const p = write(userKey(id), makeUser(id, v, regime.bioBytes))
      if (p === undefined) send(res, `{"ok":true,"version":${v}}`)
      else {
        p.then(
          () => send(res, `{"ok":true,"version":${v}}`),
          (err: unknown) => {
            failed(err)
            send(res, '{"ok":false}', 500)
          },
        )
      }
    } else if (url === '/_measure') {
      beginWindow()
      send(res, '{}')
    } else {
      send(res, '{"ok":false}', 404)
    }
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))

  // The feed: writes computed from the clock, so a late tick catches up.
  let feedSeq = 0
  const feedStart = performance.now()
  const feed =
    regime.feedWritesPerSec > 0
      ? setInterval(() => {
          const due = Math.floor(((performance.now() - feedStart) * regime.feedWritesPerSec) / 1000)
          while (feedSeq < due) {
            const id = (feedSeq++ * FEED_STRIDE) % regime.entries
            if (measuring) counts.feedWrites++
            write(userKey(id), makeUser(id, ++version, regime.bioBytes))?.catch(failed)
          }
        }, 1)
      : undefined

  const eld = monitorEventLoopDelay({ resolution: 1 })
  const gc = gcObserver()
  let cpu0 = { main: 0, shards: 0, process: 0, at: 0 }
  const processCpuMs = (): number => {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1000
  }
  // The serving thread's busiest 100 ms: V8 marks the old generation in
  // steps on this thread before a major GC's final pause, and those steps
  // (hundreds of ms in lru-cache's GC-heavy windows, per --trace-gc) are in
  // neither the gc entries' pause times nor the event-loop delay.
  let busiest = 0
  let lastElu: EventLoopUtilization | undefined
  let eluTimer: NodeJS.Timeout | undefined
  const sampleBusy = (): void => {
    const now = perf.eventLoopUtilization()
    if (lastElu !== undefined) busiest = Math.max(busiest, perf.eventLoopUtilization(now, lastElu).utilization)
    lastElu = now
  }
  const profile = windowProfiler(`${regime.name}-${mode}`.replace(/[^A-Za-z0-9]+/g, '-'))
  function beginWindow(): void {
    profile.start()
    measuring = true
    busiest = 0
    lastElu = perf.eventLoopUtilization()
    eluTimer = setInterval(sampleBusy, 100)
    gc.reset()
    eld.reset()
    eld.enable()
    cpu0 = { main: threadCpuMs(process.pid), shards: threadsCpuMs(shardTids), process: processCpuMs(), at: performance.now() }
  }
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'report') {
      measuring = false
      eld.disable()
      if (eluTimer !== undefined) clearInterval(eluTimer)
      profile.stop()
      const windowMs = performance.now() - cpu0.at
      const mem = process.memoryUsage()
      const w: ServerWindow = {
        delay: { ...summary(eld as unknown as RecordableHistogram), samples: eld.count },
        busiest100ms: busiest,
        gc: gc.summary(),
        rssBytes: mem.rss,
        heapUsedBytes: mem.heapUsed,
        cpu: {
          mainMs: threadCpuMs(process.pid) - cpu0.main,
          shardsMs: cache !== undefined && shardTids.length > 0 ? threadsCpuMs(shardTids) - cpu0.shards : undefined,
          processMs: processCpuMs() - cpu0.process,
          windowMs,
        },
        requests: { ...counts },
        writeRoundTripMs: writeRtt.count > 0 ? summary(writeRtt) : undefined,
      }
      if (feed !== undefined) clearInterval(feed)
      process.send!({ type: 'window', window: w, error: firstError === undefined ? undefined : String(firstError) })
    }
  })
  const ready: ServerReady = { type: 'ready', port: (server.address() as AddressInfo).port, prefillMs, shards: cache?.shards }
  process.send!(ready)
}

process.once('message', (m: { cmd: string; setup: ServerSetup }) => {
  if (m.cmd !== 'start') return
  start(m.setup).catch((err: unknown) => {
    process.send!({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, undefined, {}, () => process.exit(1))
  })
})
