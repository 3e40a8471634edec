/**
 * batch(): operations sent together, outcomes in order, one failure not
 * failing the others, and the ops of one shard applied in the order added.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { withCache } from '../fixtures/helpers.js'

test('outcomes come in order; a failing op (bad key, not a number) leaves the others alone', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    await cache.set('word', 'abc')
    const results = await cache
      .batch()
      .set('a', 1)
      .set('b', 'two', { ttl: '1m' })
      .incr('word')
      .get('')
      .delete('a')
      .incr('n', 5)
      .has('b')
      .exec()
    assert.is(results.length, 7)
    assert.equal(results[0], [null, true])
    assert.equal(results[1], [null, true])
    assert.is((results[2]![0] as { code?: string }).code, 'E_NOT_A_NUMBER')
    assert.is((results[3]![0] as { code?: string }).code, 'E_INVALID_KEY')
    assert.equal(results.slice(4), [
      [null, true],
      [null, 5],
      [null, true],
    ])
    assert.equal((await cache.keys()).sort(), ['b', 'n', 'word'])
    assert.is(await cache.get('word'), 'abc')
  })
})

test('ops to one key apply in the order added, and a batch travels in one frame per shard', async () => {
  await withCache({ shards: 2 }, async (cache) => {
    const before = cache.framesSentForTest()
    const results = await cache.batch().set('k', 1).incr('k').incr('k', 10).get('k').take('k').get('k').cas('k', undefined, 'back').touch('k', 500).exec()
    assert.equal(results, [
      [null, true],
      [null, 2],
      [null, 12],
      [null, 12],
      [null, 12],
      [null, undefined],
      [null, true],
      [null, true],
    ])
    assert.ok(cache.framesSentForTest() - before <= 2, `${cache.framesSentForTest() - before} frames`)
    assert.is(await cache.get('k'), 'back')
    const b = cache.batch()
    assert.is(b.length, 0)
    assert.equal(await b.exec(), [])
  })
})

test.run()
