/**
 * OpenTelemetry spans (`createCache({ tracing })`) through a real SDK
 * (NodeTracerProvider with its AsyncLocalStorage context manager, spans kept
 * by an in-memory exporter): one span per traced operation with its
 * attributes, children of the caller's active span; getOrCompute's load span,
 * active while the loader runs so the loader's spans nest under it; errors
 * recorded; sampling; no spans at all without the option.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SpanStatusCode, trace } from '@opentelemetry/api'
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import { createCache } from '../../src/index.js'
import type { Cache, CacheOptions } from '../../src/index.js'
import { errorOf } from '../fixtures/helpers.js'
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'

const exporter = new InMemorySpanExporter()
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
provider.register()
const app = trace.getTracer('app')

const open: Cache[] = []
async function cache(options: CacheOptions): Promise<Cache> {
  const c = await createCache({ shards: 2, ...options })
  open.push(c)
  return c
}
test.before.each(() => exporter.reset())
test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
})
test.after(() => provider.shutdown())

const spans = (): ReadableSpan[] => exporter.getFinishedSpans()
const named = (name: string): ReadableSpan[] => spans().filter((s) => s.name === name)
const parentOf = (s: ReadableSpan): string | undefined => s.parentSpanContext?.spanId

test('each traced operation is a span with its attributes, a child of the span active when it was called', async () => {
  const c = await cache({ tracing: true })
  await app.startActiveSpan('request', async (request) => {
    await c.set('a', 1)
    await c.get('a')
    await c.get('absent')
    await c.region('default').mget(['a', 'b', 'absent'])
    await c.mset([['b', 2], ['c', 3]])
    await c.delete('c')
    await c.mdelete(['a', 'b', 'nothing'])
    request.end()
  })
  const request = named('request')[0]!
  const ours = spans().filter((s) => s.name.startsWith('shardcache.'))
  assert.equal(
    ours.map((s) => [s.name, s.attributes]),
    [
      ['shardcache.set', { 'cache.region': 'default' }],
      ['shardcache.get', { 'cache.region': 'default', 'cache.hit': true }],
      ['shardcache.get', { 'cache.region': 'default', 'cache.hit': false }],
      ['shardcache.mget', { 'cache.region': 'default', 'cache.keys': 3, 'cache.hits': 1 }],
      ['shardcache.mset', { 'cache.region': 'default', 'cache.stored': 2 }],
      ['shardcache.delete', { 'cache.region': 'default' }],
      ['shardcache.mdelete', { 'cache.region': 'default', 'cache.removed': 2 }],
    ],
  )
  for (const s of ours) {
    assert.is(parentOf(s), request.spanContext().spanId, s.name)
    assert.is(s.spanContext().traceId, request.spanContext().traceId)
    assert.is(s.status.code, SpanStatusCode.UNSET)
  }
})

test("getOrCompute: a miss has a load span, active while the loader runs (the loader's spans nest under it); a hit has none", async () => {
  const c = await cache({ tracing: true })
  const v = await c.getOrCompute('user:1', () => app.startActiveSpan('db.query', async (q) => {
    q.end()
    return { id: 1 }
  }))
  assert.equal(v, { id: 1 })
  const [compute] = named('shardcache.getOrCompute')
  const [load] = named('shardcache.load')
  const [query] = named('db.query')
  assert.is(parentOf(load!), compute!.spanContext().spanId)
  assert.is(parentOf(query!), load!.spanContext().spanId)
  assert.equal(load!.attributes, { 'cache.region': 'default' })
  exporter.reset()
  assert.equal(await c.getOrCompute('user:1', () => ({ id: 2 })), { id: 1 })
  assert.equal(spans().map((s) => s.name), ['shardcache.getOrCompute'])
})

test("a failed operation's span records the error; a loader's error marks its load span and getOrCompute's", async () => {
  const c = await cache({ tracing: true })
  const bad = await errorOf(c.set('', 1))
  assert.is(bad.code, 'E_INVALID_KEY')
  const [set] = named('shardcache.set')
  assert.is(set!.status.code, SpanStatusCode.ERROR)
  assert.is(set!.status.message, bad.message)
  assert.is(set!.events[0]!.name, 'exception')
  const err = await errorOf(c.getOrCompute('k', () => Promise.reject(new Error('database down'))))
  assert.is(err.message, 'database down')
  for (const name of ['shardcache.load', 'shardcache.getOrCompute']) {
    const [s] = named(name)
    assert.is(s!.status.code, SpanStatusCode.ERROR, name)
    assert.is(s!.status.message, 'database down')
  }
})

test('sampleRate 0 traces no operation but every load; without the option, nothing is traced', async () => {
  const sampled = await cache({ tracing: { sampleRate: 0 } })
  for (let i = 0; i < 50; i++) await sampled.set(`k:${i}`, i)
  await sampled.get('k:1')
  await sampled.getOrCompute('loaded', () => 'v')
  assert.equal(spans().map((s) => s.name), ['shardcache.load'])
  exporter.reset()
  const plain = await cache({})
  await plain.set('a', 1)
  await plain.get('a')
  await plain.getOrCompute('b', () => 2)
  assert.equal(spans(), [])
})

test("an attached thread traces its own operations with attachCache(handle, { tracing }), into its own tracer provider", async () => {
  const c = await cache({})
  const h = c.handle()
  const worker = new Worker(new URL('../fixtures/traced_thread.js', import.meta.url), { workerData: { handle: h }, transferList: h.transfer })
  // Both listeners first: the worker posts and then exits at once, and an exit listener added after
  // the message may come too late to see it (the test process then exits early, with nothing pending).
  const exited = once(worker, 'exit')
  const reported = once(worker, 'message') as Promise<[{ name: string; childOfJob: boolean; attributes: Record<string, unknown> }[]]>
  const [got] = await Promise.race([reported, exited.then(([code]) => Promise.reject(new Error(`the worker exited (code ${String(code)}) without reporting`)))])
  await exited
  assert.equal(got, [
    { name: 'shardcache.set', childOfJob: true, attributes: { 'cache.region': 'default' } },
    { name: 'shardcache.get', childOfJob: true, attributes: { 'cache.region': 'default', 'cache.hit': true } },
    { name: 'shardcache.load', childOfJob: false, attributes: { 'cache.region': 'default' } },
    { name: 'shardcache.getOrCompute', childOfJob: true, attributes: { 'cache.region': 'default' } },
  ])
  // The owner, without the option, traced none of it.
  assert.equal(spans(), [])
  assert.is(await c.get('from-thread'), 1)
})

test('bad tracing options are refused with the option named', async () => {
  const cases: [unknown, RegExp][] = [
    ['yes', /options\.tracing must be true, false or an object like \{ sampleRate: 0\.1 \} \(got the string "yes"\)/],
    [{ sampleRate: 2 }, /options\.tracing\.sampleRate must be a number from 0 to 1 \(got 2\)/],
    [{ sampleRate: Number.NaN }, /options\.tracing\.sampleRate must be a number from 0 to 1/],
    [{ rate: 1 }, /options\.tracing\.rate is not an option/],
  ]
  for (const [tracing, why] of cases) {
    const err = await errorOf(createCache({ shards: 1, tracing } as CacheOptions))
    assert.is(err.code, 'E_INVALID_OPTION', err.message)
    assert.match(err.message, why)
  }
})

test.run()
