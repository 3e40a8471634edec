// ValueSlab: values in shared pages, chunks reused by size class, large values in buffers of their own.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ValueSlab, sizeClasses } from '../workers/value_slab.js'

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)

test('every length up to 64 KiB gets the smallest class that holds it, wasting at most 25% above 64 bytes', () => {
  const { classOf, classSize, count, maxChunk } = sizeClasses
  let prev = -1
  for (let n = 0; n <= maxChunk; n++) {
    const c = classOf(n)
    assert.ok(c >= 0 && c < count, `class of ${n}`)
    const size = classSize(c)
    assert.ok(size >= n, `${n} fits class ${c} of ${size}`)
    if (c > 0) assert.ok(classSize(c - 1) < n, `${n} would fit the smaller class ${c - 1}`)
    if (n > 64) assert.ok((size - n) / n < 0.25, `${n} wastes ${size - n} in class ${c}`)
    assert.ok(c >= prev)
    prev = c
  }
  assert.is(classOf(maxChunk + 1), -1)
  assert.equal([16, 17, 64, 65, 80, 81, 128, 129, 65536].map((n) => classSize(classOf(n))), [16, 32, 64, 80, 80, 96, 128, 160, 65536])
})

test('stored bytes read back, are copies, and survive other stores and frees', () => {
  const slab = new ValueSlab()
  const src = bytes(100, 1)
  const a = slab.store(src)
  src.fill(9) // the slab kept a copy
  const b = slab.store(bytes(100, 2))
  const c = slab.store(bytes(5, 3))
  assert.equal([...slab.view(a, 100)], new Array(100).fill(1))
  slab.free(b, 100)
  const d = slab.store(bytes(110, 4)) // same class as 100 (112 bytes): reuses b's chunk
  assert.is(d, b)
  assert.equal([...slab.view(a, 100)], new Array(100).fill(1))
  assert.equal([...slab.view(d, 110)], new Array(110).fill(4))
  assert.equal([...slab.view(c, 5)], [3, 3, 3, 3, 3])
})

test('values over 64 KiB live in buffers of their own, which are released when freed', () => {
  const slab = new ValueSlab()
  const big = bytes(100_000, 7)
  const ref = slab.store(big)
  assert.equal(slab.view(ref, 100_000), big)
  assert.is(slab.reservedBytes, 100_000)
  slab.free(ref, 100_000)
  assert.is(slab.reservedBytes, 0)
  const again = slab.store(bytes(70_000, 8))
  assert.is(again, ref) // the index is reused
  assert.is(slab.view(again, 70_000)[69_999], 8)
})

test('pages are reserved per class as needed and clear() releases them all', () => {
  const slab = new ValueSlab()
  assert.is(slab.reservedBytes, 0)
  const refs = Array.from({ length: 1000 }, (_, i) => slab.store(bytes(200, i & 0xff)))
  // 200 bytes → class 224, 256 chunks a page of 57,344 → clamped to the 64 KiB minimum: 292 chunks a page, 4 pages.
  assert.is(slab.reservedBytes, 4 * 65536)
  refs.forEach((r, i) => assert.is(slab.view(r, 200)[0], i & 0xff))
  slab.clear()
  assert.is(slab.reservedBytes, 0)
})

test.run()
