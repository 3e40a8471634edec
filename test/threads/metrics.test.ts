/**
 * metrics(): Prometheus text exposition parsed back to exact values, and the
 * same families served by a real prom-client registry.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Registry } from 'prom-client'
import { registerMetrics } from '../../src/index.js'
import { withCache } from '../fixtures/helpers.js'

/** name{labels} → value, and the TYPE of each family. */
function parse(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>()
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) {
      types.set(type[1]!, type[2]!)
      continue
    }
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line)
    assert.ok(m !== null, `not an exposition line: ${line}`)
    samples.set(`${m![1]}${m![2] ?? ''}`, Number(m![3]))
  }
  return { samples, types }
}

async function fill(cache: Awaited<Parameters<Parameters<typeof withCache>[1]>[0]>): Promise<void> {
  await cache.mset([['a', 1], ['b', 2], ['c', 3]])
  await cache.region('sessions').set('s', 'x')
  await cache.get('a')
  await cache.get('nope')
  await cache.delete('b')
}

test('metrics() is Prometheus text whose samples equal stats()', async () => {
  await withCache({ shards: 2, regions: { sessions: { maxBytes: '1mb' } } }, async (cache) => {
    await fill(cache)
    const { samples, types } = parse(await cache.metrics())
    const s = await cache.stats()
    assert.is(types.get('shardcache_hits_total'), 'counter')
    assert.is(types.get('shardcache_entries'), 'gauge')
    assert.is(samples.get('shardcache_hits_total{region="default"}'), 1)
    assert.is(samples.get('shardcache_misses_total{region="default"}'), 1)
    assert.is(samples.get('shardcache_sets_total{region="default"}'), 3)
    assert.is(samples.get('shardcache_deletes_total{region="default"}'), 1)
    assert.is(samples.get('shardcache_entries{region="default"}'), 2)
    assert.is(samples.get('shardcache_entries{region="sessions"}'), 1)
    assert.is(samples.get('shardcache_max_bytes{region="sessions"}'), 2 ** 20)
    assert.is(samples.get('shardcache_evictions_total{region="default",cause="size"}'), 0)
    assert.is(samples.get('shardcache_used_bytes{region="default"}'), s.byRegion.default!.usedBytes)
    assert.is(samples.get('shardcache_shard_entries{shard="0"}')! + samples.get('shardcache_shard_entries{shard="1"}')!, 3)
    assert.is(samples.get('shardcache_shards'), 2)
    assert.is(samples.get('shardcache_shard_restarts_total'), 0)
    // The frames' round trips: a histogram whose +Inf bucket holds every frame.
    assert.is(types.get('shardcache_frame_round_trip_seconds'), 'histogram')
    const count = samples.get('shardcache_frame_round_trip_seconds_count')!
    assert.ok(count > 0)
    assert.is(samples.get('shardcache_frame_round_trip_seconds_bucket{le="+Inf"}'), count)
    assert.ok(samples.get('shardcache_frame_round_trip_seconds_bucket{le="0.00001"}')! <= samples.get('shardcache_frame_round_trip_seconds_bucket{le="0.00002"}')!)
    assert.is(count, s.frameLatency!.count)
    // No bus, no L2: their families are left out.
    assert.is([...samples.keys()].some((k) => k.startsWith('shardcache_bus_') || k.startsWith('shardcache_l2_')), false)
  })
})

test('registerMetrics serves the same families from a prom-client registry, stats read once per scrape', async () => {
  await withCache({ shards: 2, regions: { sessions: {} } }, async (cache) => {
    await fill(cache)
    const registry = new Registry()
    let reads = 0
    registerMetrics({ stats: () => (reads++, cache.stats()) }, registry)
    const text = await registry.metrics()
    assert.is(reads, 1)
    const { samples } = parse(text)
    const mine = parse(await cache.metrics()).samples
    for (const name of ['shardcache_hits_total{region="default"}', 'shardcache_entries{region="sessions"}', 'shardcache_shard_sets_total{shard="1"}']) {
      assert.is(samples.get(name), mine.get(name), name)
    }
    const json = await registry.getMetricsAsJSON()
    assert.ok(json.some((m) => m.name === 'shardcache_used_bytes' && String(m.type) === 'gauge'))
  })
})

test.run()
