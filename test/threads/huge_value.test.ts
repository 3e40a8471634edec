/**
 * The largest value allowed (options.maxValueBytes, 16 MiB by default) is
 * stored and read back byte for byte, while the calling thread's event loop
 * stays responsive: its delay is measured with perf_hooks'
 * monitorEventLoopDelay over the whole set and get, and compared with the
 * time a plain copy of that many bytes takes on this machine, in this run.
 *
 * Two values: random bytes (LZ4 finds nothing: stored raw, read from shared
 * memory on the calling thread) and text (compressed and decompressed by the
 * shard, off the calling thread).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomFillSync } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createCache, ValueTooLargeError } from '../../src/index.js'
import { DEFAULTS } from '../../src/options/defaults.js'

const MAX = DEFAULTS.maxValueBytes

/** Median time (ms) of copying `n` bytes into a fresh buffer: the floor of moving a value once. */
function copyMs(n: number): number {
  const src = Buffer.allocUnsafe(n).fill(7)
  const times: number[] = []
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now()
    const dst = Buffer.allocUnsafe(n)
    src.copy(dst)
    times.push(performance.now() - t0)
    if (dst[n - 1] !== 7) throw new Error('copy failed')
  }
  return times.sort((a, b) => a - b)[2]!
}

test(`a value of exactly maxValueBytes (${MAX} bytes) round-trips exactly; the event loop is never blocked for long`, async () => {
  const cache = await createCache({ shards: 2 })
  try {
    const random = randomFillSync(Buffer.allocUnsafe(MAX))
    const text = 'shardcache huge value '.repeat(Math.ceil(MAX / 22)).slice(0, MAX)
    assert.is(Buffer.byteLength(text), MAX)
    const copy = copyMs(MAX)

    const h = monitorEventLoopDelay({ resolution: 5 })
    // A timer ticking throughout, so the histogram has samples even while the loop only awaits.
    const ticker = setInterval(() => {}, 2)
    h.enable()
    const t0 = performance.now()
    assert.is(await cache.set('bin', random), true)
    const back = await cache.get<Buffer>('bin')
    assert.is(await cache.set('text', text), true)
    const backText = await cache.get<string>('text')
    const entry = (await cache.getEntry('text'))!
    const elapsed = performance.now() - t0
    h.disable()
    clearInterval(ticker)

    assert.ok(Buffer.isBuffer(back))
    assert.is(back!.length, MAX)
    assert.ok(back!.equals(random), 'the binary value came back with other bytes')
    assert.is(backText, text)
    assert.is(entry.compressed, true)
    assert.is(entry.sizeBytes, MAX)
    const binEntry = (await cache.getEntry('bin'))!
    assert.is(binEntry.compressed, false)
    assert.is(binEntry.sizeBytes, MAX)

    const maxMs = h.max / 1e6
    const p99Ms = h.percentile(99) / 1e6
    const meanMs = h.mean / 1e6
    // The calling thread moves such a value a few times per call (into the frame, out of
    // shared memory, UTF-8 to a string): measured, the longest block was ~5 copies' worth
    // (124-149 ms against a 26-33 ms copy). A regression that walks the value byte by byte
    // in JS or encodes it as JSON blocks for many more. The fixed part absorbs a busy
    // machine's scheduling; the copy, measured in this run, scales with the machine.
    const bound = 250 + 20 * copy
    console.log(
      `  ${MAX} bytes, set+get of 2 values in ${elapsed.toFixed(0)} ms: event-loop delay max ${maxMs.toFixed(1)} ms, ` +
        `p99 ${p99Ms.toFixed(1)} ms, mean ${meanMs.toFixed(1)} ms; one copy of the value ${copy.toFixed(1)} ms; bound ${bound.toFixed(0)} ms`,
    )
    assert.ok(maxMs < bound, `the event loop was blocked for ${maxMs.toFixed(0)} ms (bound ${bound.toFixed(0)} ms)`)

    // One byte more is refused, and leaves the stored value as it was.
    const err = await cache.set('bin', Buffer.alloc(MAX + 1)).then(
      () => assert.unreachable('the set resolved'),
      (e: unknown) => e as ValueTooLargeError,
    )
    assert.instance(err, ValueTooLargeError)
    assert.is((err as ValueTooLargeError).code, 'E_VALUE_TOO_LARGE')
    assert.is((err as ValueTooLargeError).message, `value is ${MAX + 1} bytes, over options.maxValueBytes (${MAX})`)
    assert.ok((await cache.get<Buffer>('bin'))!.equals(random))
  } finally {
    await cache.close()
  }
})

test.run()
