/**
 * A benchmark's other process: a forked child that runs commands sent over
 * IPC and answers each by id. Used by the sections that need a second
 * instance of a cache (bus.ts, read_through.ts); the child side is
 * {@link servePeer}.
 *
 * Every request has a deadline, so a hung child fails its section instead of
 * stalling the run; children alive are tracked so that signal and exit
 * handlers can kill them.
 */
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { ChildError } from './child.js'
import { describeError, errorDetail } from './report.js'

/** What a child answers to one request. */
export type PeerReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string; detail: string }

/** A command: an object with a `cmd` name (the id is added here). */
export interface PeerCommandBase {
  cmd: string
}

/** Children alive right now, so a SIGINT handler can stop them. */
const alive = new Set<ChildProcess>()

/** Kills every peer process started here. Synchronous, for exit and signal handlers. */
export function killPeerProcessesSync(): void {
  for (const p of alive) {
    try {
      p.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  alive.clear()
}

/** The parent's end: request/response by id over IPC. */
export class PeerProcess<Command extends PeerCommandBase> {
  readonly #child: ChildProcess
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
  #nextId = 1
  #exit: Error | undefined
  readonly exited: Promise<void>

  /** Forks `script`; `label` names the process in errors. */
  constructor(
    script: string,
    readonly label: string,
  ) {
    this.#child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    alive.add(this.#child)
    this.#child.on('message', (m: PeerReply) => {
      const w = this.#waiting.get(m.id)
      if (w === undefined) return
      this.#waiting.delete(m.id)
      clearTimeout(w.timer)
      if (m.ok) w.resolve(m.result)
      else w.reject(new ChildError(`${this.label}: ${m.error}`, m.detail))
    })
    this.exited = new Promise((resolve) => {
      const gone = (why: string): void => {
        alive.delete(this.#child)
        this.#exit = new Error(`${this.label} process ${why}`)
        for (const w of this.#waiting.values()) {
          clearTimeout(w.timer)
          w.reject(this.#exit)
        }
        this.#waiting.clear()
        resolve()
      }
      this.#child.once('exit', (code, signal) => gone(`exited (${signal ?? `code ${code}`})`))
      this.#child.once('error', (err) => gone(`failed: ${err.message}`))
    })
  }

  request<T>(cmd: Command, timeoutMs = 10_000): Promise<T> {
    if (this.#exit !== undefined) return Promise.reject(this.#exit)
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id)
        reject(new Error(`${this.label}: no answer to "${cmd.cmd}" within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      this.#child.send({ ...cmd, id })
    })
  }

  /** Sends `close` (the child closes its caches and exits); kills it if it has not exited 5 s later. */
  async close(closeCommand: Command): Promise<void> {
    if (this.#exit === undefined) await this.request(closeCommand, 5000).catch(() => {})
    const killer = setTimeout(() => this.#child.kill('SIGKILL'), 5000)
    await this.exited
    clearTimeout(killer)
  }
}

/**
 * The child's end: runs `handle` for each request and answers it; exits after
 * answering `close`, and when the parent goes away (nobody would say close).
 */
export function servePeer<Request extends PeerCommandBase & { id: number }>(name: string, handle: (req: Request) => Promise<unknown>): void {
  if (process.send === undefined) {
    process.stderr.write(`${name}: must be forked by the benchmark (it talks over IPC)\n`)
    process.exit(2)
  }
  const reply = (msg: PeerReply): Promise<void> =>
    new Promise((resolve) => {
      if (process.send === undefined) resolve()
      else process.send(msg, undefined, {}, () => resolve())
    })
  process.on('disconnect', () => process.exit(0))
  process.on('message', (req: Request) => {
    handle(req)
      .then(
        (result) => reply({ id: req.id, ok: true, result }),
        (err: unknown) => reply({ id: req.id, ok: false, error: describeError(err), detail: errorDetail(err) }),
      )
      .then(() => {
        if (req.cmd === 'close') process.exit(0)
      })
  })
}
