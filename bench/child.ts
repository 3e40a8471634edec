/**
 * Scenarios that run in a child process of their own (the event-loop and
 * memory sections): a fresh heap per engine, so one engine's objects, GC
 * history and memory never show up in the next engine's figures.
 *
 * Parent side: {@link runChild} forks a script, sends it its config and waits
 * for one result message. Child side: {@link serveChild} answers that message
 * and exits. No side effects on import: both sides import this module.
 */
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { describeError, errorDetail } from './report.js'

/** The one message a child sends back. */
export type ChildMessage<R> = { ok: true; result: R } | { ok: false; error: string; detail: string }

/** Children alive right now, so a SIGINT handler can stop them. */
const children = new Set<ChildProcess>()

export function killChildrenSync(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  children.clear()
}

/** A failure inside a child, carrying the child's stacks. */
export class ChildError extends Error {
  constructor(message: string, readonly detail: string) {
    super(message)
  }
}

/**
 * Runs `script` (a compiled .js path) with `cfg` and resolves with its result.
 * --expose-gc lets the child start its measurement from a collected heap;
 * stderr is inherited so crashes are visible. `label` names the child in errors.
 */
export function runChild<C, R>(script: string, cfg: C, label: string, timeoutMs: number, extraExecArgv: string[] = []): Promise<R> {
  return new Promise((resolve, reject) => {
    const child = forkTracked(script, extraExecArgv)
    let settled = false
    let message: ChildMessage<R> | undefined
    const settle = (err: Error | undefined, result?: R): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      children.delete(child)
      if (err !== undefined) reject(err)
      else resolve(result!)
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      settle(new Error(`${label}: child did not finish within ${timeoutMs} ms`))
    }, timeoutMs)
    child.on('message', (m: ChildMessage<R>) => {
      message = m
    })
    child.once('error', (err) => settle(err))
    child.once('exit', (code, signal) => {
      if (message === undefined) settle(new Error(`${label}: child exited (${signal ?? `code ${code}`}) without a result`))
      else if (!message.ok) settle(new ChildError(message.error, message.detail))
      else settle(undefined, message.result)
    })
    child.send(cfg as object)
  })
}

/**
 * Forks `script` with --expose-gc, `extraExecArgv` and an IPC channel,
 * tracked until it exits so that {@link killChildrenSync} stops it: for
 * children that talk more than once (the real-server section's servers).
 */
export function forkTracked(script: string, extraExecArgv: string[] = []): ChildProcess {
  const child = fork(script, [], { execArgv: ['--expose-gc', ...extraExecArgv], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

function send<R>(msg: ChildMessage<R>): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) {
      console.log(JSON.stringify(msg))
      resolve()
      return
    }
    process.send(msg, undefined, {}, () => resolve())
  })
}

/** Child side: runs `run` on the config the parent sends, reports, and exits (shard threads included). */
export function serveChild<C, R>(run: (cfg: C) => Promise<R>): void {
  process.once('message', (cfg: C) => {
    run(cfg)
      .then(
        (result) => send<R>({ ok: true, result }),
        (err: unknown) => send<R>({ ok: false, error: describeError(err), detail: errorDetail(err) }),
      )
      .finally(() => process.exit(0))
  })
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Two full collections (the second frees what the first's finalizers released); a no-op without --expose-gc. */
export function forceGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) {
    gc()
    gc()
  }
}
