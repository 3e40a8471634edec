#!/usr/bin/env node
/**
 * `npx shardcache replay TRACE --policy lru|fifo --size N [--json]`: replays a
 * key trace (one key per line, gzip or plain) against a region store of N
 * entries with the given policy, the way cache papers do (a get per request,
 * a set on a miss), and prints the hit ratio. The store is the shards' own
 * (workers/region_store.ts), run in this thread.
 */
import { createReadStream, realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { createGunzip } from 'node:zlib'
import { parseArgs } from 'node:util'
import type { Readable } from 'node:stream'
import { RegionStore } from '../workers/region_store.js'
import { ValueTag } from './protocol.js'

const USAGE = `usage: shardcache replay TRACE --policy lru|fifo --size N [--json]

  TRACE       a key trace: one key per line, gzip (.gz) or plain
  --policy    lru (default) or fifo
  --size      the cache's size in entries
  --json      print the result as JSON`

export interface ReplayResult {
  trace: string
  policy: 'lru' | 'fifo'
  size: number
  requests: number
  hits: number
  hitRatio: number
  uniqueKeys: number
  elapsedMs: number
}

/** Replays the trace at `path`; keys are the lines, blank ones skipped. */
export async function replay(path: string, policy: 'lru' | 'fifo', size: number): Promise<ReplayResult> {
  const store = new RegionStore({ name: 'replay', policy, maxBytes: Infinity, maxEntries: size, defaultTtl: Infinity, compressMinBytes: Infinity })
  const value = new Uint8Array(1)
  const seen = new Set<string>()
  let requests = 0
  let hits = 0
  const t0 = performance.now()
  let input: Readable = createReadStream(path)
  if (path.endsWith('.gz')) input = input.pipe(createGunzip())
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    const key = line.trim()
    if (key === '') continue
    requests++
    seen.add(key)
    if (store.get(key) !== undefined) hits++
    else store.set(key, ValueTag.BUFFER, value, undefined, false, false, undefined)
  }
  return { trace: path, policy, size, requests, hits, hitRatio: requests === 0 ? 0 : hits / requests, uniqueKeys: seen.size, elapsedMs: performance.now() - t0 }
}

/** Runs the command line; returns the exit code. */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const [command, ...rest] = argv
  if (command !== 'replay') {
    out(`${USAGE}\n`)
    return command === undefined || command === '--help' ? 0 : 2
  }
  let parsed
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, options: { policy: { type: 'string', default: 'lru' }, size: { type: 'string' }, json: { type: 'boolean', default: false } } })
  } catch (err) {
    out(`shardcache replay: ${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  const { values, positionals } = parsed
  const size = Number(values.size)
  if (positionals.length !== 1 || (values.policy !== 'lru' && values.policy !== 'fifo') || !Number.isInteger(size) || size < 1) {
    out(`shardcache replay: needs one TRACE, --policy lru|fifo and --size N (a positive integer)\n${USAGE}\n`)
    return 2
  }
  let r: ReplayResult
  try {
    r = await replay(positionals[0]!, values.policy, size)
  } catch (err) {
    out(`shardcache replay: ${(err as Error).message}\n`)
    return 1
  }
  if (values.json) out(`${JSON.stringify(r)}\n`)
  else {
    out(
      `${r.trace}: ${r.requests.toLocaleString('en-US')} requests, ${r.uniqueKeys.toLocaleString('en-US')} keys; ` +
        `${r.policy} with ${r.size.toLocaleString('en-US')} entries: hit ratio ${(r.hitRatio * 100).toFixed(2)}% ` +
        `(${r.hits.toLocaleString('en-US')} hits, ${r.elapsedMs.toFixed(0)} ms)\n`,
    )
  }
  return 0
}

/** Run as a program (also through npm's bin link), not imported. */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
  } catch {
    return false
  }
}

if (isMain()) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
