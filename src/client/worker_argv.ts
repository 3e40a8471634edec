/**
 * The `execArgv` of every worker thread shardcache starts: shard threads
 * (src/client/shard_thread.ts) and the getOrCompute loader pool (src/api/create.ts).
 *
 * Why not the default: a Worker given no `execArgv` inherits the parent's
 * per-thread Node options as they are, and some of them describe only the
 * main entry. Under `node --input-type=module -e '...'` a worker started
 * from a file fails at once with ERR_INPUT_TYPE_NOT_ALLOWED and exits with
 * code 1, so every shard died before answering (Node 20). `-e`/`-p` code and
 * `--check`/`--interactive`/`--test` do not break a worker today, but they are
 * about the main entry too, and a worker has no business seeing them.
 *
 * Why not just the rest of `process.execArgv`: an explicit `execArgv` may hold
 * only per-thread Node options. V8 options (`--max-old-space-size`,
 * `--expose-gc`, `--stack-size`) and process-wide ones (`--title`,
 * `--openssl-config`) make `new Worker` throw ERR_WORKER_INVALID_EXEC_ARGV
 * (Node docs, worker_threads, `execArgv`). They need not be passed: V8 flags
 * and process options are set once for the whole process, and workers have
 * them anyway (a worker of `node --expose-gc` has `gc` with `execArgv: []`).
 * Which options those are depends on the Node version, so it is asked of Node
 * itself (see {@link acceptedByWorker}) rather than listed here. Everything
 * else is kept: `--cpu-prof`, `--inspect`, `--import`/`--require`/loaders,
 * `--enable-source-maps`, `--conditions`, ...
 */
import { Worker } from 'node:worker_threads'

/** Main-entry options whose value is the next token unless given as `--opt=value`. */
const ENTRY_WITH_VALUE = new Set(['-e', '--eval', '-pe', '--input-type'])
/** `-p`/`--print` take the code when one follows (a token not starting with `-`), as Node's parser does. */
const ENTRY_OPTIONAL_VALUE = new Set(['-p', '--print'])
const ENTRY_FLAGS = new Set(['-c', '--check', '-i', '--interactive', '--test'])

/** A flag no Node has: its presence makes every probe Worker throw before it starts a thread. */
const PROBE_SENTINEL = '--shardcache-worker-argv-probe'

let forProcess: { value: string[] | undefined } | undefined

/**
 * The `execArgv` to give a Worker that shardcache starts: `undefined` (inherit,
 * as Node does by default) when `execArgv` holds no main-entry option, else
 * `execArgv` without its main-entry options and without those a Worker does
 * not accept (see the file comment). Computed once for `process.execArgv`.
 */
export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] | undefined {
  if (execArgv === process.execArgv) {
    forProcess ??= { value: compute(execArgv) }
    return forProcess.value?.slice()
  }
  return compute(execArgv)
}

function compute(execArgv: readonly string[]): string[] | undefined {
  const groups: string[][] = []
  let dropped = false
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!
    const name = arg.startsWith('--') && arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg
    const inline = name !== arg
    if (ENTRY_WITH_VALUE.has(name)) {
      if (!inline) i++
      dropped = true
    } else if (ENTRY_OPTIONAL_VALUE.has(name)) {
      if (!inline && i + 1 < execArgv.length && !execArgv[i + 1]!.startsWith('-')) i++
      dropped = true
    } else if (ENTRY_FLAGS.has(name)) {
      dropped = true
    } else if (!inline && i + 1 < execArgv.length && !execArgv[i + 1]!.startsWith('-')) {
      // `--require ./x`: the value travels with its option.
      groups.push([arg, execArgv[++i]!])
    } else {
      groups.push([arg])
    }
  }
  if (!dropped) return undefined
  return acceptedByWorker(groups).flat()
}

/**
 * The groups (an option and its value, if separate) a Worker accepts, in
 * order, asked of Node: `new Worker` parses its `execArgv` before it starts a
 * thread and throws ERR_WORKER_INVALID_EXEC_ARGV listing what it rejects. With
 * the sentinel (an option no Node has) in the list, every probe throws, so no
 * thread is ever started; the list was accepted when the sentinel is all the
 * error names. Greedy, one group at a time on top of those accepted so far,
 * so an option that needs an earlier one (`--heap-prof-dir` after
 * `--heap-prof`) is judged with it.
 */
function acceptedByWorker(groups: string[][]): string[][] {
  const reject = (argv: string[]): string => {
    try {
      // Never starts: the sentinel is rejected. If some Node ever accepted it, stop the thread at once.
      void new Worker('', { eval: true, execArgv: [...argv, PROBE_SENTINEL], stdout: true, stderr: true }).terminate()
      return ''
    } catch (err) {
      return (err as Error).message
    }
  }
  const baseline = reject([])
  const accepted: string[][] = []
  if (baseline === '') return accepted // not a Node that reports invalid execArgv: pass nothing rather than risk it
  for (const g of groups) {
    if (reject([...accepted.flat(), ...g]) === baseline) accepted.push(g)
  }
  return accepted
}
