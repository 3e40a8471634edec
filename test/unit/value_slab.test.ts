// ValueSlab: values in pages carved from one shared arena, chunks reused by size class.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ArenaFullError, ValueSlab, sizeClasses } from '../../workers/value_slab.js'

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)

test('every length gets the smallest class that holds it, wasting at most 12.5% above 64 bytes', () => {
  const { classOf, classSize, count } = sizeClasses
  const check = (n: number, prev: number): number => {
    const c = classOf(n)
    assert.ok(c >= 0 && c < count, `class of ${n}`)
    const size = classSize(c)
    assert.ok(size >= n, `${n} fits class ${c} of ${size}`)
    if (c > 0) assert.ok(classSize(c - 1) < n, `${n} would fit the smaller class ${c - 1}`)
    if (n > 64) assert.ok((size - n) / n < 0.125, `${n} wastes ${size - n} in class ${c}`)
    assert.ok(c >= prev)
    return c
  }
  let prev = -1
  for (let n = 0; n <= 1 << 18; n++) prev = check(n, prev)
  for (let n = (1 << 18) + 1; n <= 2 ** 32; n = Math.ceil(n * 1.01)) prev = check(n, prev)
  check(2 ** 32, -1)
  // Where classOf's shifts give way to powers (2^30), and each power of two's edges below it.
  for (let p = 7; p <= 31; p++) for (const n of [2 ** p - 1, 2 ** p, 2 ** p + 1]) check(n, -1)
  assert.equal([0, 4, 5, 11, 64, 65, 85, 128, 129, 144, 145, 256, 257, 65536].map((n) => classSize(classOf(n))), [4, 4, 8, 12, 64, 72, 88, 128, 144, 144, 160, 256, 288, 65536])
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
  const d = slab.store(bytes(104, 4)) // same class as 100 (104 bytes): reuses b's chunk
  assert.is(d, b)
  assert.equal([...slab.view(a, 100)], new Array(100).fill(1))
  assert.equal([...slab.view(d, 104)], new Array(104).fill(4))
  assert.equal([...slab.view(c, 5)], [3, 3, 3, 3, 3])
})

test('big values take chunks of their size class (pages of 1 MiB), values over 1 MiB a page of their own', () => {
  const slab = new ValueSlab()
  const big = bytes(100_000, 7)
  const ref = slab.store(big)
  assert.equal(new Uint8Array(slab.view(ref, 100_000)), big)
  assert.is(slab.reservedBytes, 1 << 20) // one page of nine 106,496-byte chunks (the class of 100,000: 2^16 + 5 × 2^13)
  slab.free(ref, 100_000)
  const again = slab.store(bytes(104_000, 8)) // same class: the freed chunk
  assert.is(again, ref)
  assert.is(slab.view(again, 104_000)[103_999], 8)
  const huge = slab.store(bytes(2 << 20, 9))
  assert.is(slab.reservedBytes, 3 << 20)
  assert.is(slab.view(huge, 2 << 20)[(2 << 20) - 1], 9)
})

test('the arena grows in place and refuses a store past its reservation, changing nothing', () => {
  const arena = new SharedArrayBuffer(0, { maxByteLength: 1 << 20 })
  let grew = 0
  const slab = new ValueSlab(arena, () => grew++)
  const a = slab.store(bytes(100, 1))
  assert.is(grew, 1)
  assert.is(arena.byteLength, 65536)
  assert.throws(() => slab.store(bytes(2 << 20, 2)), (e: Error) => e instanceof ArenaFullError)
  assert.is(arena.byteLength, 65536)
  assert.is(slab.view(a, 100)[99], 1)
})

test('pages are carved per class as needed and clear() makes the whole arena reusable', () => {
  const slab = new ValueSlab()
  assert.is(slab.reservedBytes, 0)
  const refs = Array.from({ length: 1000 }, (_, i) => slab.store(bytes(200, i & 0xff)))
  // 200 bytes → class 208, 256 chunks a page of 53,248 → clamped to the 64 KiB minimum: 315 chunks a page, 4 pages.
  assert.is(slab.reservedBytes, 4 * 65536)
  refs.forEach((r, i) => assert.is(slab.view(r, 200)[0], i & 0xff))
  slab.clear()
  assert.is(slab.reservedBytes, 0)
})

test('freeBytes: the freed chunks (not the current page\'s unused end); freed chunks of a size not asked for again stay free', () => {
  const slab = new ValueSlab()
  const refs = Array.from({ length: 1000 }, () => slab.store(new Uint8Array(100)))
  assert.is(slab.reservedBytes, 2 << 16) // 104-byte chunks, 630 to a 64 KiB page: two pages
  // The second page's end is for the next 104-byte values; the first page's last 16 bytes hold no chunk.
  const tail = (1 << 16) - 630 * 104
  assert.is(slab.freeBytes, tail)
  for (const r of refs.slice(0, 400)) slab.free(r, 100)
  assert.is(slab.freeBytes, tail + 400 * 104)
  for (const r of refs.slice(400)) slab.free(r, 100)
  assert.is(slab.freeBytes, tail + 1000 * 104, 'all free, none returned')
  const big = slab.store(new Uint8Array(1000))
  assert.ok(slab.freeBytes > 1000 * 104, 'the 100-byte class\'s chunks do not serve a 1,000-byte value')
  slab.free(big, 1000)
  slab.clear()
  assert.equal([slab.reservedBytes, slab.freeBytes], [0, 0])
})

test.run()
