/**
 * CPU time of this process's threads, from Linux's /proc/self/task: Node 20
 * has no per-thread CPU clock, and a shard thread's CPU is what tells whether
 * the cache took cores from the server. Elsewhere it reads nothing.
 */
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's utime and stime (USER_HZ: 100 on every Linux Node runs on). */
const TICKS_PER_SEC = 100

/** The thread ids of this process now; empty where /proc is missing. */
export function threadIds(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number)
  } catch {
    return []
  }
}

/** CPU milliseconds (user + system) of thread `tid` so far; 0 once it is gone. */
export function threadCpuMs(tid: number): number {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SEC
  } catch {
    return 0
  }
}

/** The CPU milliseconds of `tids`, summed. */
export const threadsCpuMs = (tids: number[]): number => tids.reduce((sum, t) => sum + threadCpuMs(t), 0)
