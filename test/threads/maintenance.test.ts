/**
 * Scheduled maintenance on real shard threads: a rebalance moves byte
 * budget to the shard that evicts far more than the others (its hit ratio
 * rises, the region's total stays, the giver evicts down to its new budget),
 * within the floor and ceiling of an even share, and a restarted shard keeps
 * its budget; the scheduled cleanup removes expired entries; bad options
 * are refused naming the option.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createCache } from '../../src/index.js'
import type { AdminStatus, Cache, CacheOptions } from '../../src/index.js'
import { renderStatus } from '../../src/cli/admin.js'
import { errorOf } from '../fixtures/helpers.js'

const open: Cache[] = []
async function cache(o: CacheOptions): Promise<Cache> {
  const c = await createCache(o)
  open.push(c)
  return c
}
test.after.each(async () => {
  for (const c of open.splice(0)) await c.close()
})

/** `n` keys that `c` sends to `shard`. */
function keysOn(c: Cache, shard: number, n: number, prefix: string): string[] {
  const out: string[] = []
  for (let i = 0; out.length < n; i++) if (c.shardOfForTest(`${prefix}${i}`) === shard) out.push(`${prefix}${i}`)
  return out
}

const value = 'x'.repeat(900) // ~1 KB charged with its key and the entry overhead

const rebalanced = (policy: 'lru' | 'tinylfu'): CacheOptions => ({
  shards: 2,
  regions: { hot: { policy, maxBytes: 200_000, compression: false } },
  maintenance: { rebalance: { every: '1h', threshold: 2, step: 0.25, minShare: 0.25, maxShare: 1.75, minEvictions: 5 } },
})

/** Reads `many` keys (on one shard) and `few` (on the other), setting the ones missing; resolves the hits among `many`. */
async function round(c: Cache, many: string[], few: string[]): Promise<number> {
  const hot = c.region('hot')
  let hits = 0
  for (const k of many) {
    if ((await hot.get(k)) !== undefined) hits++
    else await hot.set(k, value)
  }
  for (const k of few) if ((await hot.get(k)) === undefined) await hot.set(k, value)
  return hits
}

for (const policy of ['lru', 'tinylfu'] as const) {
  test(`rebalance (${policy}): budget moves to the shard that evicts until it stops evicting; its hits rise; the total stays`, async () => {
    const c = await cache(rebalanced(policy))
    // 140 keys of ~1 KB on shard 0 (an even share holds ~100), 20 on shard 1.
    const many = keysOn(c, 0, 140, 'a')
    const few = keysOn(c, 1, 20, 'b')
    assert.equal(await c.rebalance(), [], 'the first check only takes the counts')
    await round(c, many, few)
    const before = await round(c, many, few)
    const moves = await c.rebalance()
    assert.is(moves.length, 1)
    assert.equal({ ...moves[0]!, evictions: undefined }, { region: 'hot', to: 0, from: 1, bytes: 25_000, evictions: undefined })
    assert.ok(moves[0]!.evictions[0]! >= 100 && moves[0]!.evictions[1] === 0, String(moves[0]!.evictions))
    let quiet = 0
    for (let i = 0; i < 8 && quiet < 2; i++) {
      await round(c, many, few)
      quiet = (await c.rebalance()).length === 0 ? quiet + 1 : 0
    }
    assert.is(quiet, 2, 'the moves stop once the hot shard stops evicting')
    const s = await c.stats()
    const budgets = s.maintenance!.budgets.hot!
    assert.is(budgets[0]! + budgets[1]!, 200_000)
    assert.is(s.byRegion.hot!.maxBytes, 200_000)
    assert.ok(budgets[0]! >= 150_000 && budgets[0]! <= 175_000, String(budgets))
    const after = await round(c, many, few)
    assert.is(after, 140, `every key of the hot shard is kept now (${before} hits before)`)
    assert.ok(before < 100)
  })
}

test('rebalance stops at maxShare and minShare of an even share; the giver evicts down to its budget at once; a restarted shard keeps its budget', async () => {
  const c = await cache(rebalanced('lru'))
  const many = keysOn(c, 0, 300, 'a')
  const few = keysOn(c, 1, 60, 'b')
  await c.rebalance()
  for (let i = 0; i < 6; i++) {
    await round(c, many, few)
    await c.rebalance()
  }
  const s = await c.stats()
  assert.equal(s.maintenance!.budgets.hot, [175_000, 25_000])
  const admin = await c.serveAdmin({ token: 't' })
  const status = (await (await fetch(`http://127.0.0.1:${admin.port}/status`, { headers: { authorization: 'Bearer t' } })).json()) as AdminStatus
  await admin.close()
  const shown = renderStatus(status, 'here')
  assert.ok(shown.includes('\nmaintenance: 0 cleanups (0 removed), 3 budget moves; budgets per shard: default 32 MB / 32 MB; hot 170.9 KB / 24.41 KB\n'), JSON.stringify(shown))
  assert.is(s.maintenance!.moves, 3)
  assert.is(s.maintenance!.movedBytes, 75_000)
  assert.ok(s.byShard[1]!.usedBytes <= 25_000, `shard 1 holds ${s.byShard[1]!.usedBytes} bytes`)
  assert.ok(s.byShard[0]!.usedBytes > 150_000, `shard 0 holds ${s.byShard[0]!.usedBytes} bytes`)
  // The largest entry the region takes is minShare of an even share.
  const big = await errorOf(c.region('hot').set('big', 'y'.repeat(30_000)))
  assert.is(big.code, 'E_VALUE_TOO_LARGE')
  assert.match(big.message, 'times maintenance.rebalance.minShare 0.25')
  // A restarted shard starts with its rebalanced budget, not an even share.
  await c.crashShardForTest(1).catch(() => {})
  for (const k of few) await c.region('hot').set(k, value)
  const restarted = await c.stats()
  assert.is(restarted.shardRestarts, 1)
  assert.ok(restarted.byShard[1]!.usedBytes <= 25_000 && restarted.byShard[1]!.usedBytes > 20_000, `shard 1 holds ${restarted.byShard[1]!.usedBytes} bytes`)
})

test('rebalance on its schedule: the moves happen without a call', async () => {
  const c = await cache({ ...rebalanced('lru'), maintenance: { rebalance: { every: 30, threshold: 2, step: 0.25, minShare: 0.25, maxShare: 1.75, minEvictions: 5 } } })
  const many = keysOn(c, 0, 140, 'a')
  const few = keysOn(c, 1, 20, 'b')
  const deadline = Date.now() + 20_000
  while ((await c.stats()).maintenance!.moves === 0) {
    if (Date.now() > deadline) throw new Error('no scheduled move')
    await round(c, many, few) // each round evicts on shard 0 (its timers are unref'd: this loop keeps the process alive)
  }
  const s = (await c.stats()).maintenance!
  assert.ok(s.rebalanceChecks >= 2)
  assert.ok(s.budgets.hot![0]! > 100_000, String(s.budgets.hot))
})

test('no move when the shards evict alike, or below minEvictions', async () => {
  const c = await cache({ shards: 2, regions: { even: { maxBytes: 100_000, compression: false } }, maintenance: { rebalance: { every: '1h', minEvictions: 10 } } })
  const r = c.region('even')
  await c.rebalance()
  for (let i = 0; i < 600; i++) await r.set(`k${i}`, value)
  assert.equal(await c.rebalance(), [])
  assert.equal((await c.stats()).maintenance!.budgets.even, [50_000, 50_000])
})

test('scheduled cleanup removes expired entries the shards\' own sweep has not reached yet', async () => {
  // 200,000 entries: the sweep visits 10,000 slots per shard every 100 ms, so it needs ~1 s for them.
  const c = await cache({ shards: 2, regions: { default: { maxEntries: 300_000 } }, maintenance: { cleanup: { every: 50 } } })
  for (let i = 0; i < 200_000; i += 5_000) await c.mset(Array.from({ length: 5_000 }, (_, j) => [`t${i + j}`, 1] as [string, number]), { ttl: 30 })
  await c.set('kept', 1)
  const alive = setInterval(() => {}, 1000) // the schedule's timer is unref'd
  try {
    const deadline = Date.now() + 20_000
    while ((await c.stats()).entries > 1) {
      if (Date.now() > deadline) throw new Error('expired entries stayed')
      await new Promise((r) => setTimeout(r, 25))
    }
  } finally {
    clearInterval(alive)
  }
  const s = await c.stats()
  assert.ok(s.maintenance!.cleanups >= 1)
  // Removed by the sweep or the cleanup, each counted once as expired; the cleanup's share is its own figure.
  assert.is(s.byRegion.default!.evictionsByCause.expired, 200_000)
  assert.ok(s.maintenance!.cleaned > 0 && s.maintenance!.cleaned <= 200_000, String(s.maintenance!.cleaned))
})

test('bad maintenance options are refused, naming the option; rebalance() needs it', async () => {
  const cases: [unknown, RegExp][] = [
    [{}, /options\.maintenance needs cleanup, rebalance or compact/],
    [{ cleanup: {} }, /options\.maintenance\.cleanup\.every/],
    [{ rebalance: { every: '1s', threshold: 1 } }, /options\.maintenance\.rebalance\.threshold must be a ratio above 1 \(got 1\)/],
    [{ rebalance: { every: '1s', minShare: 1 } }, /options\.maintenance\.rebalance\.minShare must be a share/],
    [{ rebalance: { every: '1s', maxShare: 0.5 } }, /options\.maintenance\.rebalance\.maxShare must be a multiple/],
    [{ rebalance: { every: '1s', often: true } }, /options\.maintenance\.rebalance\.often/],
    [{ compact: true }, /options\.maintenance\.compact/],
  ]
  for (const [m, re] of cases) {
    const e = await errorOf(createCache({ shards: 1, maintenance: m as never }))
    assert.is(e.code, 'E_INVALID_OPTION', String(re))
    assert.match(e.message, re)
  }
  const plain = await cache({ shards: 1 })
  const e = await errorOf(plain.rebalance())
  assert.is(e.code, 'E_INVALID_OPTION')
  assert.match(e.message, 'rebalance() needs createCache({ maintenance: { rebalance: { every } } })')
})

test.run()
