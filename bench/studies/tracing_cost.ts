/**
 * What `createCache({ tracing })` costs per operation: get and set
 * throughput (256 in flight, 10,000 keys, values read from shared memory)
 * of caches without tracing, with tracing but no SDK registered (the API's
 * no-op tracer), and with the OpenTelemetry SDK recording every span
 * (sampleRate 1) or one in a hundred (0.01) into an in-memory exporter.
 * Caches run in interleaved rounds; the figures are medians of per-round
 * ratios to the untraced cache in the same round.
 *
 *   node dist/bench/studies/tracing_cost.js [--rounds 7] [--ms 400]
 */
import { parseArgs } from 'node:util'
import { trace } from '@opentelemetry/api'
import { BatchSpanProcessor, InMemorySpanExporter } from '@opentelemetry/sdk-trace-base'
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, ms: { type: 'string', default: '400' } } })
const ROUNDS = Number(values.rounds)
const MS = Number(values.ms)
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user:${i}`)
const IN_FLIGHT = 256

/** Ops per second of `op` over the keys, IN_FLIGHT at a time, for MS. */
async function rate(op: (key: string) => Promise<unknown>): Promise<number> {
  let n = 0
  const end = performance.now() + MS
  const started = performance.now()
  while (performance.now() < end) {
    const batch: Promise<unknown>[] = []
    for (let i = 0; i < IN_FLIGHT; i++) batch.push(op(KEYS[(n + i) % KEYS.length]!))
    await Promise.all(batch)
    n += IN_FLIGHT
  }
  return n / ((performance.now() - started) / 1000)
}

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!

async function compare(subjects: [string, Cache][]): Promise<void> {
  const ratios = new Map<string, { get: number[]; set: number[] }>(subjects.map(([n]) => [n, { get: [], set: [] }]))
  const base = new Map<string, { get: number[]; set: number[] }>(subjects.map(([n]) => [n, { get: [], set: [] }]))
  for (let r = 0; r < ROUNDS; r++) {
    const round = new Map<string, { get: number; set: number }>()
    // Rotated order: no cache always runs first.
    for (let i = 0; i < subjects.length; i++) {
      const [name, c] = subjects[(r + i) % subjects.length]!
      round.set(name, { get: await rate((k) => c.get(k)), set: await rate((k) => c.set(k, { id: k, plan: 'pro' })) })
    }
    const plain = round.get(subjects[0]![0])!
    for (const [name, v] of round) {
      ratios.get(name)!.get.push(v.get / plain.get)
      ratios.get(name)!.set.push(v.set / plain.set)
      base.get(name)!.get.push(v.get)
      base.get(name)!.set.push(v.set)
    }
  }
  for (const [name] of subjects) {
    const r = ratios.get(name)!
    const b = base.get(name)!
    console.log(
      `${name.padEnd(34)} get ${(median(b.get) / 1e6).toFixed(2)}M/s (${median(r.get).toFixed(2)}x)   set ${(median(b.set) / 1e3).toFixed(0)}k/s (${median(r.set).toFixed(2)}x)`,
    )
  }
}

const options: CacheOptions = { shards: 1, regions: { default: { maxEntries: 100_000 } } }
const fill = async (c: Cache): Promise<Cache> => {
  await c.mset(KEYS.map((k) => [k, { id: k, plan: 'pro' }] as [string, unknown]))
  return c
}
const plain = await fill(await createCache(options))
const noSdk = await fill(await createCache({ ...options, tracing: true }))
console.log(`tracing cost: ${ROUNDS} interleaved rounds of ${MS} ms per cache and operation; medians, ratio to no tracing in the same round`)
await compare([
  ['no tracing', plain],
  ['tracing, no SDK registered', noSdk],
])
const exporter = new InMemorySpanExporter()
const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: 100_000 })] })
provider.register()
const every = await fill(await createCache({ ...options, tracing: true }))
const sampled = await fill(await createCache({ ...options, tracing: { sampleRate: 0.01 } }))
const drain = setInterval(() => exporter.reset(), 200)
await compare([
  ['no tracing', plain],
  ['SDK, sampleRate 1', every],
  ['SDK, sampleRate 0.01', sampled],
])
clearInterval(drain)
await provider.shutdown()
trace.disable()
for (const c of [plain, noSdk, every, sampled]) await c.close()
