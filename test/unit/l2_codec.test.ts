/**
 * The L2 value format (src/redis/l2_codec.ts), as other instances read it:
 * untagged values stay version 1 (what older instances read), tagged ones
 * carry their tags in version 2; compressed or not, every value comes back
 * byte for byte, and anything truncated, flipped or foreign is refused.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeL2, encodeL2 } from '../../src/redis/l2_codec.js'

const value = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7) % 13)

test('untagged values are version 1; tagged ones version 2, with their tags; both round-trip, compressed or not', () => {
  for (const size of [0, 10, 5000]) {
    for (const tags of [undefined, [], ['org:1'], ['a', 'é', 'x'.repeat(300)]]) {
      const enc = { tag: 3, bytes: value(size) }
      const b = encodeL2(enc, 1024, tags)
      assert.is(b[2], tags === undefined || tags.length === 0 ? 1 : 2, `version for ${JSON.stringify(tags)}`)
      const back = decodeL2(b)!
      assert.is(back.tag, 3)
      assert.equal([...back.bytes], [...enc.bytes])
      assert.equal(back.tags, tags === undefined || tags.length === 0 ? undefined : tags)
    }
  }
  // 5000 repetitive bytes from minBytes 1024: compressed (flag bit 0), smaller.
  assert.ok(encodeL2({ tag: 0, bytes: value(5000) }, 1024, ['t']).length < 5000)
})

test('a truncated, flipped or foreign value is refused', () => {
  const good = encodeL2({ tag: 1, bytes: value(100) }, Infinity, ['org:1', 'org:2'])
  for (let cut = 0; cut < good.length; cut += 7) assert.is(decodeL2(good.subarray(0, cut)), undefined, `cut at ${cut}`)
  // 19: inside the first tag's text (13 + 4 size + 2 count + 2 length)
  for (const at of [0, 1, 2, 4, 13, 16, 19, 20, good.length - 1]) {
    const bad = Buffer.from(good)
    bad[at] = bad[at]! ^ 0xff
    assert.is(decodeL2(bad), undefined, `byte ${at} flipped`)
  }
  // A version 1 value claiming tags, and a version 2 one without: neither is ours.
  const v1 = Buffer.from(encodeL2({ tag: 1, bytes: value(10) }, Infinity))
  v1[4] = v1[4]! | 2
  assert.is(decodeL2(v1), undefined)
  const v2 = Buffer.from(good)
  v2[4] = v2[4]! & ~2
  assert.is(decodeL2(v2), undefined)
  assert.is(decodeL2(Buffer.from('plain redis string')), undefined)
})

test.run()
