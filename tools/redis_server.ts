/**
 * A private, throwaway `redis-server` on a free loopback port, or the one named
 * by REDIS_URL. Private servers keep benchmarks (and tests) from touching a
 * developer's data and from depending on an already running daemon; persistence
 * is off so disk I/O never shows up in the numbers.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import type { Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { ConnectionOptions } from 'node:tls'
import { delimiter, join } from 'node:path'
import { Redis } from 'ioredis'
import { watchdogScript } from './watchdog.js'

export interface RedisTarget {
  url: string
  /** True when we started the server and must stop it. */
  owned: boolean
  /** The server's pid, when we started it. */
  pid?: number
  /** Stops an owned server (no-op otherwise). Safe to call more than once. */
  stop(): Promise<void>
}

/** Every server this process started and has not stopped yet (its watchdog, and the server's pid once known), so exit paths can kill them. */
const running = new Map<ChildProcess, number | undefined>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // 'exit' handlers must be synchronous; kill() is, and it is all a server needs.
  process.on('exit', killAllSync)
}

/** Kills every server started here. Synchronous, for exit and signal handlers. */
export function killAllSync(): void {
  for (const [watchdog, pid] of running) {
    try {
      if (pid !== undefined) process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
    try {
      watchdog.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  running.clear()
}

/** The server's watchdog: it dies with this process (tools/watchdog.ts). */
const WATCHDOG_SCRIPT = watchdogScript('program')

/** Path of an executable found on PATH, or undefined. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

/** A port the OS reports free on 127.0.0.1 right now (another process could still take it first: callers retry). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('could not get a free port'))))
    })
  })
}

/** A raw connection to 127.0.0.1:port: TLS with `tls`'s client options when given, plain TCP otherwise. */
export function rawConnection(port: number, tls?: ConnectionOptions): Socket {
  return tls === undefined ? createConnection({ host: '127.0.0.1', port }) : tlsConnect({ host: '127.0.0.1', port, ...tls })
}

/**
 * One raw-protocol PING on a fresh connection (over TLS with `tls`); true only
 * for `+PONG`, or `-NOAUTH` from a server that wants a password first, within
 * `timeoutMs`. Raw, so that readiness does not depend on the client library under test.
 */
export function ping(port: number, timeoutMs: number, tls?: ConnectionOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = rawConnection(port, tls)
    let buf = ''
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    sock.setEncoding('utf8')
    sock.once('error', () => done(false))
    sock.on('data', (d: string) => {
      buf += d
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG') || buf.startsWith('-NOAUTH'))
    })
    // A TLS socket may be written at once: the write waits for the handshake.
    if (tls === undefined) sock.once('connect', () => sock.write('PING\r\n'))
    else sock.write('PING\r\n')
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** A `redis-server` process this module started, already answering PING. */
export interface SpawnedRedisServer {
  /** The redis-server's own pid (not its watchdog's). */
  readonly pid: number
  readonly port: number
  /** Resolves once the process has exited (or failed to spawn). Never rejects. */
  readonly exited: Promise<void>
  /** Whether the process has exited. */
  readonly hasExited: boolean
  /** Sends `sig` to the redis-server process (SIGSTOP/SIGCONT to pause it, SIGKILL to crash it); a no-op once it exited. */
  signal(sig: NodeJS.Signals): void
  /** SIGKILL; resolves once the process has exited. Safe when it already has. */
  kill(): Promise<void>
  /** SIGTERM, then SIGKILL after 2 s; resolves once the process has exited. Safe to call more than once. */
  stop(): Promise<void>
}

/** How {@link spawnRedisServer} listens and is probed. */
export interface SpawnOptions {
  /**
   * `port` is a TLS port (`--port 0 --tls-port <port>`; the certificate
   * arguments go in `extraArgs`), and readiness is probed over TLS with these
   * client options (a `ca` that trusts the server's certificate, a client
   * certificate if the server asks for one).
   */
  tls?: ConnectionOptions
}

/** How much of the server's own output to keep for error messages. */
const OUTPUT_TAIL_CHARS = 4000

/**
 * Starts `redis-server` on `port` (loopback only, no persistence) and resolves
 * once it answers PING. Rejects, with the server's last output in the message,
 * when it exits first (e.g. the port is taken) or is not ready within
 * `readyTimeoutMs`; the process is gone by then. The server lives no longer
 * than this process: it runs under a watchdog ({@link WATCHDOG_SCRIPT}) that
 * kills it when this process dies, even by SIGKILL; the exit hook kills it on
 * a normal exit too.
 */
export async function spawnRedisServer(
  port: number,
  binary = 'redis-server',
  readyTimeoutMs = 5000,
  extraArgs: readonly string[] = [],
  options: SpawnOptions = {},
): Promise<SpawnedRedisServer> {
  const listen = options.tls === undefined ? ['--port', String(port)] : ['--port', '0', '--tls-port', String(port)]
  // stdout is where redis-server logs by default, bind errors included, so it
  // is kept (a bounded tail) as well as stderr. fd 3 brings the server's pid.
  const args = [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs]
  const child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'redis-watchdog', binary, ...args], {
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  })
  installExitHook()
  running.set(child, undefined)
  let exited = false
  let spawnError: Error | undefined
  let output = ''
  const keep = (d: string): void => {
    output = (output + d).slice(-OUTPUT_TAIL_CHARS)
  }
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', keep)
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', keep)
  // Our end of the watchdog's stdin: held open, never written; an error on it only means the watchdog is gone.
  child.stdin?.on('error', () => {})
  let pid: number | undefined
  const pidPipe = child.stdio[3] as NodeJS.ReadableStream | null
  const pidKnown = new Promise<void>((resolve) => {
    let text = ''
    pidPipe?.setEncoding('utf8')
    pidPipe?.on('data', (d: string) => {
      text += d
      const n = Number.parseInt(text, 10)
      if (text.includes('\n') && Number.isInteger(n) && n > 0) {
        pid = n
        if (running.has(child)) running.set(child, n)
        resolve()
      }
    })
    pidPipe?.on('error', () => resolve())
    pidPipe?.on('end', () => resolve())
  })
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true
      running.delete(child)
      child.stdin?.destroy()
      resolve()
    })
    child.once('error', (err) => {
      spawnError = err
      exited = true
      running.delete(child)
      resolve()
    })
  })

  const signal = (sig: NodeJS.Signals): void => {
    if (exited || pid === undefined) return
    try {
      process.kill(pid, sig)
    } catch {
      // raced with its exit
    }
  }
  const kill = async (): Promise<void> => {
    signal('SIGKILL')
    await exitedPromise
  }
  const stop = async (): Promise<void> => {
    if (exited) return
    // A SIGSTOPped server would leave SIGTERM pending forever; SIGCONT is a no-op otherwise.
    signal('SIGCONT')
    signal('SIGTERM')
    const killer = setTimeout(() => signal('SIGKILL'), 2000)
    await exitedPromise
    clearTimeout(killer)
  }

  await Promise.race([pidKnown, exitedPromise])
  const deadline = Date.now() + readyTimeoutMs
  while (!exited && pid !== undefined && Date.now() < deadline) {
    if (await ping(port, 200, options.tls)) {
      const serverPid = pid
      return {
        pid: serverPid,
        port,
        exited: exitedPromise,
        get hasExited() {
          return exited
        },
        signal,
        kill,
        stop,
      }
    }
    await sleep(25)
  }
  const timedOut = !exited
  if (pid === undefined) child.kill('SIGKILL')
  await kill()
  if (spawnError !== undefined) throw spawnError
  const tail = output.trim()
  const why = timedOut ? `did not answer PING within ${readyTimeoutMs} ms` : `exited before answering PING (code ${String(child.exitCode)})`
  throw new Error(`redis-server on port ${port} ${why}${tail ? `: ${tail}` : ''}`)
}

/** Starts `redis-server` on a free loopback port and resolves once it answers PING. */
export async function startRedisServer(binary = 'redis-server', readyTimeoutMs = 5000): Promise<RedisTarget> {
  let lastError: Error | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    try {
      const server = await spawnRedisServer(port, binary, readyTimeoutMs)
      return { url: `redis://127.0.0.1:${port}`, owned: true, pid: server.pid, stop: () => server.stop() }
    } catch (err) {
      lastError = err as Error
    }
  }
  throw lastError ?? new Error('redis-server did not start')
}

/**
 * REDIS_URL when set; otherwise a private server when `redis-server` is on
 * PATH; otherwise undefined, with the reason in `skipped`.
 */
export async function resolveRedis(): Promise<{ target: RedisTarget | undefined; skipped?: string }> {
  const url = process.env.REDIS_URL
  if (url !== undefined && url !== '') {
    return { target: { url, owned: false, stop: async () => {} } }
  }
  const binary = findOnPath('redis-server')
  if (binary === undefined) return { target: undefined, skipped: 'no Redis available' }
  try {
    return { target: await startRedisServer(binary) }
  } catch (err) {
    return { target: undefined, skipped: `redis-server failed to start: ${(err as Error).message}` }
  }
}

/**
 * A plain ioredis connection for benchmark bookkeeping (INFO, cleanup, raw
 * messages): fails fast rather than retrying in the background, which would
 * keep the process alive after a section gave up.
 */
export async function connectRedis(url: string): Promise<Redis> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  let socketError: Error | undefined
  r.on('error', (err: Error) => {
    socketError = err
  })
  try {
    await r.connect()
  } catch (err) {
    r.disconnect()
    throw new Error(`cannot connect to Redis at ${url}`, { cause: socketError ?? err })
  }
  return r
}
