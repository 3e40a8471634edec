/**
 * OpenTelemetry spans of cache operations (`createCache({ tracing })`).
 *
 * `@opentelemetry/api` is an optional peer: it is imported by createCache
 * only when `tracing` is set, so a cache without it neither loads the API nor
 * pays for more than one `undefined` check per operation. With it, the
 * operations `get`, `set`, `delete`, `mget`, `mset`, `mdelete` and
 * `getOrCompute` each get a span (`shardcache.get`, ...) for a `sampleRate`
 * share of calls, a child of whatever span is active; a loader that
 * getOrCompute runs gets its own `shardcache.load` span (every time: loads
 * are the rare, slow part), and runs with that span active, so the spans the
 * loader makes (a database query) nest under it. Spans go to the tracer
 * provider the application registered; without one, the API's no-op tracer.
 *
 * Attributes: `cache.region`, and `cache.hit` for get, `cache.keys` and
 * `cache.hits` for mget, `cache.stored` for mset, `cache.removed` for
 * mdelete; a getOrCompute that missed has its `shardcache.load` child.
 * Keys are never recorded: they may carry personal data.
 */

/**
 * The parts of `@opentelemetry/api` used here, typed here: the package's own
 * types would put an import of it into this package's declarations, which a
 * project without the (optional) package could not type-check.
 */
interface OtelSpan {
  setAttribute(key: string, value: string | number | boolean): unknown
  isRecording(): boolean
  recordException(e: Error): void
  setStatus(status: { code: number; message?: string }): unknown
  end(): void
}
interface OtelApi {
  trace: {
    getTracer(name: string): { startSpan(name: string, options: { kind: number; attributes: Record<string, string> }): OtelSpan }
    setSpan(context: unknown, span: OtelSpan): unknown
  }
  context: { active(): unknown; with<T>(context: unknown, fn: () => T): T }
  SpanKind: { INTERNAL: number }
  SpanStatusCode: { ERROR: number }
}

/** `createCache({ tracing })` after validation (src/options/tracing.ts). */
export interface ResolvedTracing {
  sampleRate: number
}

/** What a span records of an operation's result. */
type Describe = (span: OtelSpan, result: unknown) => void

export const hitOf: Describe = (span, v) => span.setAttribute('cache.hit', v !== undefined)
export const mgetOf: Describe = (span, v) => {
  const values = v as unknown[]
  span.setAttribute('cache.keys', values.length)
  span.setAttribute('cache.hits', values.filter((x) => x !== undefined).length)
}
export const storedOf: Describe = (span, n) => span.setAttribute('cache.stored', n as number)
export const removedOf: Describe = (span, n) => span.setAttribute('cache.removed', n as number)

/** The spans of one cache. */
export class CacheTracer {
  readonly #api: OtelApi
  readonly #tracer: ReturnType<OtelApi['trace']['getTracer']>
  readonly #rate: number

  constructor(api: OtelApi, opts: ResolvedTracing) {
    this.#api = api
    this.#tracer = api.trace.getTracer('shardcache')
    this.#rate = opts.sampleRate
  }

  /** Whether this call gets a span (`sampleRate` of them). */
  sampled(): boolean {
    return this.#rate === 1 || Math.random() < this.#rate
  }

  /**
   * Runs `op` inside a span `shardcache.<name>`: the span is active while it
   * runs (and in what it awaits), ends when its promise settles, and records
   * its error, if any.
   */
  span<T>(name: string, region: string, op: () => Promise<T>, describe?: Describe): Promise<T> {
    const api = this.#api
    const span = this.#tracer.startSpan(`shardcache.${name}`, { kind: api.SpanKind.INTERNAL, attributes: { 'cache.region': region } })
    // No SDK registered, or its sampler dropped the span: nothing to record, no context to set.
    if (!span.isRecording()) return op()
    let p: Promise<T>
    try {
      p = api.context.with(api.trace.setSpan(api.context.active(), span), op)
    } catch (err) {
      this.#fail(span, err)
      throw err
    }
    return p.then(
      (v) => {
        describe?.(span, v)
        span.end()
        return v
      },
      (err: unknown) => {
        this.#fail(span, err)
        throw err
      },
    )
  }

  #fail(span: OtelSpan, err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err))
    span.recordException(e)
    span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message: e.message })
    span.end()
  }
}

/**
 * Loads `@opentelemetry/api` for a cache with `tracing`; a missing package is
 * the option's error, said with the command that installs it.
 */
export async function loadTracer(opts: ResolvedTracing, fail: (message: string) => Error): Promise<CacheTracer> {
  let api: OtelApi
  try {
    api = (await import('@opentelemetry/api')) as OtelApi
  } catch (err) {
    throw fail(`options.tracing needs the @opentelemetry/api package (npm install @opentelemetry/api): ${(err as Error).message}`)
  }
  return new CacheTracer(api, opts)
}
