/**
 * A shell watchdog that ties a spawned program's life to this process's:
 * `spawn('/bin/sh', ['-c', watchdogScript(target), name, program, ...args],
 * { stdio: ['pipe', …, …, 'pipe'] })`. The shell runs the program ("$@") in
 * the background, reports its pid on fd 3, and keeps our end of a pipe as its
 * stdin (fd 4, since an `&` list gets /dev/null as stdin): when this process
 * dies, whatever way (SIGKILL included, which runs no exit hook), the kernel
 * closes the pipe, the `read` returns, and the program is SIGKILLed. The
 * shell waits for the program (a SIGSTOP does not end the wait) and exits
 * with its status, so the watchdog's exit is the program's.
 *
 * Used by the bench's and the tests' redis-servers (tools/redis_server.ts)
 * and by the tests' example processes (test/fixtures/example_process.ts).
 */

/**
 * The script. `'program'` kills the program alone; `'group'` kills the whole
 * process group (`kill 0`), the program's own children with it: spawn the
 * shell `detached` then, so that the group is the shell's own.
 */
export function watchdogScript(target: 'program' | 'group'): string {
  return [
    'exec 4<&0',
    '"$@" </dev/null 3>&- 4<&- & pid=$!',
    'echo $pid >&3',
    'exec 3>&-',
    target === 'group' ? '(read _ <&4; kill -9 0) &' : '(read _ <&4; kill -9 $pid 2>/dev/null) &',
    'reader=$!',
    'exec 4<&-',
    'wait $pid',
    'code=$?',
    'kill $reader 2>/dev/null',
    'exit $code',
  ].join('\n')
}

/** SIGKILLs a process group (a 'group' watchdog's, by its pid), if anything of it is left. Synchronous, for exit hooks. */
export function killGroupSync(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL')
  } catch {
    // the group is empty already
  }
}

/** Whether anything of a process group is still running. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}
