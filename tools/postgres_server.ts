// A private PostgreSQL server for a test file or a benchmark: its own data directory
// (initdb, trust auth, no fsync), on a free loopback port, that a test can
// kill, restart on the same port with its data, and pause, so that write-through
// tests exercise a real database going away and coming back. The server lives
// no longer than the test process: it runs in a process group of its own
// under a watchdog (tools/watchdog.ts) that kills the group when this process
// dies, whatever way; a normal exit kills it too.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, chownSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from './redis_server.js'
import { groupAlive, killGroupSync, watchdogScript } from './watchdog.js'

const WATCHDOG_SCRIPT = watchdogScript('group')
const groups = new Set<number>()
let hooked = false

function hookExit(): void {
  if (hooked) return
  hooked = true
  process.on('exit', () => {
    for (const g of groups) killGroupSync(g)
  })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const g of groups) killGroupSync(g)
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
    })
  }
}

/** The directory of PostgreSQL's server binaries (Debian keeps them out of PATH), the newest version's. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a))
    if (versions.length > 0) return path.join(root, versions[0]!, 'bin')
  }
  try {
    return path.dirname(execFileSync('sh', ['-c', 'command -v postgres'], { encoding: 'utf8' }).trim())
  } catch {
    return undefined
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user. */
function asServerUser(binary: string, args: string[]): [string, string[]] {
  if (userInfo().uid !== 0) return [binary, args]
  return ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', binary, ...args]]
}

export class PgProc {
  readonly port: number
  readonly url: string
  readonly #bin: string
  readonly #dir: string
  #pgid: number | undefined
  #postmaster: number | undefined

  private constructor(bin: string, dir: string, port: number) {
    this.#bin = bin
    this.#dir = dir
    this.port = port
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`
  }

  /** initdb into a fresh directory, then start the server; resolves once it accepts a query. */
  static async start(): Promise<PgProc> {
    const bin = postgresBinDir()
    if (bin === undefined) throw new Error('PostgreSQL server binaries not found (Debian: apt-get install postgresql; .ci/run installs it)')
    hookExit()
    const dir = mkdtempSync(path.join(tmpdir(), 'shardcache-pg-'))
    if (userInfo().uid === 0) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })))
    const [cmd, args] = asServerUser(path.join(bin, 'initdb'), ['-D', path.join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'])
    execFileSync(cmd, args, { stdio: 'ignore' })
    const p = new PgProc(bin, dir, await freePort())
    await p.restart()
    return p
  }

  /** A pool on the server (the tests' own view of the table, apart from the cache's). */
  pool(): pg.Pool {
    const pool = new pg.Pool({ connectionString: this.url, max: 2 })
    pool.on('error', () => {})
    return pool
  }

  /** Starts the server (again) on its port and data; resolves once it answers. */
  async restart(): Promise<void> {
    const [cmd, args] = asServerUser(path.join(this.#bin, 'postgres'), [
      '-D', path.join(this.#dir, 'data'), '-p', String(this.port), '-k', this.#dir, '-c', 'listen_addresses=127.0.0.1',
      // No fsync (a throwaway), but commits still reach the OS before they are acknowledged: a SIGKILLed server keeps them.
      '-c', 'fsync=off', '-c', 'full_page_writes=off',
    ])
    const child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'pg-watchdog', cmd, ...args], { stdio: ['pipe', 'ignore', 'ignore', 'pipe'], detached: true })
    child.stdin!.on('error', () => {})
    this.#pgid = child.pid!
    groups.add(child.pid!)
    child.once('exit', () => groups.delete(child.pid!))
    this.#postmaster = await new Promise<number>((resolve, reject) => {
      let text = ''
      const pipe = child.stdio[3] as NodeJS.ReadableStream
      pipe.setEncoding('utf8')
      pipe.on('data', (d: string) => {
        text += d
        if (text.includes('\n')) resolve(Number.parseInt(text, 10))
      })
      pipe.on('end', () => reject(new Error('postgres watchdog ended before reporting a pid')))
    })
    const deadline = Date.now() + 15_000
    for (;;) {
      const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 1000 })
      c.on('error', () => {})
      try {
        await c.connect()
        await c.query('SELECT 1')
        await c.end()
        return
      } catch (err) {
        await c.end().catch(() => {})
        if (Date.now() > deadline) throw new Error(`postgres on port ${this.port} did not answer within 15 s: ${(err as Error).message}`)
        await sleep(50)
      }
    }
  }

  /** The server and its backends, SIGKILLed: a crash. {@link restart} brings it back with its data. */
  async kill(): Promise<void> {
    const g = this.#pgid
    if (g === undefined) return
    this.#pgid = undefined
    killGroupSync(g)
    // Until every backend is gone, a new postmaster would refuse the data directory.
    while (groupAlive(g)) await sleep(20)
  }

  /** SIGSTOP (`pause`) or SIGCONT (`resume`) to the server and its backends: a hang. */
  signal(sig: 'SIGSTOP' | 'SIGCONT'): void {
    const pm = this.#postmaster
    if (pm === undefined) return
    const pids = [pm, ...execFileSync('sh', ['-c', `pgrep -P ${pm} || true`], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)]
    for (const pid of pids) {
      try {
        process.kill(pid, sig)
      } catch {
        // exited meanwhile
      }
    }
  }

  /** Kills the server and removes its directory. */
  async stop(): Promise<void> {
    this.signal('SIGCONT')
    await this.kill()
    rmSync(this.#dir, { recursive: true, force: true })
  }
}
