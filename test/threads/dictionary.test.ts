/**
 * Dictionary compression (`compression: { dictionary: true }`): the codec in
 * src/wire/compression.ts, the region store using it (sampling, versions,
 * rebuilds, reference counts, corruption, stats), option validation, and one
 * run through real shard threads.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RegionStore } from '../../workers/region_store.js'
import type { RegionShardConfig } from '../../src/wire/region_types.js'
import {
  DEFAULT_DICTIONARY_TUNING,
  buildDictionary,
  compressIfSmaller,
  compressWithDictionary,
  decompressWithDictionary,
} from '../../src/wire/compression.js'
import type { DictionaryTuning } from '../../src/wire/compression.js'
import { createCache, InvalidOptionError } from '../../src/index.js'
import { resolveOptions } from '../../src/options/cache.js'
import { regionShare } from '../../src/options/regions.js'
import { aggregateStats } from '../../src/ops/stats.js'
import { ENTRY_OVERHEAD_BYTES } from '../../src/wire/protocol.js'
import { regionConfig, withCache } from '../fixtures/helpers.js'
import { logLineBytes, userRecord, userRecordBytes } from '../fixtures/records.js'

const O = ENTRY_OVERHEAD_BYTES
const T = DEFAULT_DICTIONARY_TUNING

function make(over: Partial<RegionShardConfig> = {}, tuning?: Partial<DictionaryTuning>): RegionStore {
  return new RegionStore(regionConfig({ compressMinBytes: 32, compressDictionary: true, ...over }), () => 1000, undefined, tuning)
}

function put(store: RegionStore, key: string, raw: Uint8Array): void {
  assert.is(store.set(key, 0, raw, undefined, false, false, undefined), true)
}

/** What the plain codec stores for `raw`: its frame when smaller, else `raw` itself. */
function plainSize(raw: Uint8Array): number {
  return compressIfSmaller(raw)?.length ?? raw.length
}

/** What a dictionary built from `samples` stores for `raw`. */
function dictSize(raw: Uint8Array, samples: Uint8Array[]): number {
  return compressWithDictionary(raw, buildDictionary(samples, T.maxBytes))?.length ?? raw.length
}

const users = (from: number, to: number): Buffer[] => Array.from({ length: to - from }, (_, i) => userRecordBytes(from + i))

// ── the codec ────────────────────────────────────────────────────────────────

test('codec: a value round-trips with its dictionary; stored = 4-byte checksum + LZ4 block, far below plain LZ4', () => {
  const dict = buildDictionary(users(0, 64), T.maxBytes)
  let raw = 0
  let stored = 0
  let plain = 0
  for (const v of users(64, 564)) {
    const c = compressWithDictionary(v, dict)
    assert.ok(c !== undefined)
    assert.equal(decompressWithDictionary(c!, v.length, dict), v)
    raw += v.length
    stored += c!.length
    plain += plainSize(v)
  }
  assert.ok(stored < 0.45 * raw, `${stored} of ${raw}`)
  assert.is(plain, raw) // plain LZ4 saves nothing on ~170-byte records: the frame would be larger
})

test('codec: the wrong dictionary, a wrong size, or any flipped byte decodes to undefined, never to other bytes', () => {
  const dict = buildDictionary(users(0, 64), T.maxBytes)
  const other = buildDictionary(users(1000, 1064), T.maxBytes)
  const v = userRecordBytes(500)
  const c = compressWithDictionary(v, dict)!
  assert.is(decompressWithDictionary(c, v.length, other), undefined)
  assert.is(decompressWithDictionary(c, v.length - 1, dict), undefined)
  assert.is(decompressWithDictionary(c, v.length + 1, dict), undefined)
  assert.is(decompressWithDictionary(c.subarray(0, 4), v.length, dict), undefined)
  let caught = 0
  for (let at = 0; at < c.length; at++) {
    for (const mask of [0x01, 0x5a, 0xff]) {
      const bad = Buffer.from(c)
      bad[at] = bad[at]! ^ mask
      // A flip may still decode to the very same bytes (a match offset moved to
      // equal content in the dictionary); what must never happen is other bytes.
      const got = decompressWithDictionary(bad, v.length, dict)
      if (got !== undefined) assert.equal(got, v, `byte ${at} ^ ${mask} decoded to other bytes`)
      else caught++
    }
  }
  assert.ok(caught > c.length * 3 * 0.9, `${caught} of ${c.length * 3} flips caught`)
  // Every flip in the checksum itself is caught.
  for (let at = 0; at < 4; at++) {
    const bad = Buffer.from(c)
    bad[at] = bad[at]! ^ 0x01
    assert.is(decompressWithDictionary(bad, v.length, dict), undefined)
  }
})

test('codec: buildDictionary keeps samples in order, the newest last, and at most maxBytes of them', () => {
  const a = Buffer.from('aaaa')
  const b = Buffer.from('bbbbbb')
  assert.equal(buildDictionary([a, b], 100), Buffer.from('aaaabbbbbb'))
  assert.equal(buildDictionary([a, b], 7), Buffer.from('abbbbbb'))
})

// ── the region store ─────────────────────────────────────────────────────────

test('store: 8 samples build version 1, 64 build version 2; every value round-trips and storedBytes is exact', () => {
  const store = make()
  const vals = users(0, 200)
  const expected: number[] = []
  vals.forEach((v, i) => {
    put(store, `u${i}`, v)
    // Values 0-6 are sampled and stored plain; value 7 completes 8 samples,
    // builds version 1 and is its first user; value 63 completes 64 and builds version 2.
    expected.push(i < 7 ? plainSize(v) : i < 63 ? dictSize(v, vals.slice(0, 8)) : dictSize(v, vals.slice(0, 64)))
    if (i === 6) assert.is(store.stats().dictionary!.version, 0)
    if (i === 7) assert.is(store.stats().dictionary!.version, 1)
    if (i === 62) assert.is(store.stats().dictionary!.version, 1)
    if (i === 63) assert.is(store.stats().dictionary!.version, 2)
    store.checkInvariants()
  })
  vals.forEach((v, i) => {
    const e = store.entry(`u${i}`)!
    assert.equal(Buffer.from(e.value), v, `u${i}`)
    assert.is(e.sizeBytes, v.length)
    assert.is(e.storedBytes, expected[i]!, `u${i}`)
    assert.is(e.compressed, i >= 7)
  })
  const s = store.stats()
  const raw = vals.reduce((n, v) => n + v.length, 0)
  const stored = expected.reduce((n, x) => n + x, 0)
  assert.is(s.entries, 200)
  assert.is(s.compressedEntries, 193)
  assert.is(s.rawBytes, raw)
  assert.is(s.storedBytes, stored)
  assert.is(s.usedBytes, vals.reduce((n, _, i) => n + `u${i}`.length + expected[i]! + O, 0))
  assert.ok(stored < 0.45 * raw, `${stored} of ${raw}`)
  store.checkInvariants()
})

test('store: an old dictionary lives while an entry uses it, and is dropped with its last entry', () => {
  const store = make()
  const vals = users(0, 100)
  vals.forEach((v, i) => put(store, `u${i}`, v))
  const v1 = buildDictionary(vals.slice(0, 8), T.maxBytes).length
  const v2 = buildDictionary(vals.slice(0, 64), T.maxBytes).length
  const before = store.stats().dictionary!
  assert.equal(
    [before.version, before.builds, before.dictionaries, before.dictionaryBytes],
    [2, 2, 2, v1 + v2], // u7-u62 were written with version 1
  )
  for (let i = 7; i < 62; i++) assert.is(store.delete(`u${i}`), true)
  assert.is(store.stats().dictionary!.dictionaries, 2) // u62 still decodes with version 1
  assert.equal(Buffer.from(store.get('u62')!), vals[62])
  put(store, 'u62', vals[62]!) // rewritten with version 2: version 1 has no entry left
  const d = store.stats().dictionary!
  assert.is(d.dictionaries, 1)
  assert.is(d.dictionaryBytes, v2)
  assert.equal(Buffer.from(store.get('u62')!), vals[62])
  store.checkInvariants()
})

test('store: plain vs dictionary is measured on one compression in 16 since the current dictionary was built', () => {
  const store = make()
  const vals = users(0, 128)
  vals.forEach((v, i) => put(store, `u${i}`, v))
  // Value i is dictionary compression number i - 6 (values 0-6 were stored
  // plain); every 16th is measured, and version 2 (at value 63) restarted the measure.
  const measured = [70, 86, 102, 118]
  const d = store.stats().dictionary!
  assert.is(d.measuredRawBytes, measured.reduce((n, i) => n + vals[i]!.length, 0))
  assert.is(d.measuredPlainBytes, measured.reduce((n, i) => n + plainSize(vals[i]!), 0))
  assert.is(d.measuredDictionaryBytes, measured.reduce((n, i) => n + store.entry(`u${i}`)!.storedBytes, 0))
  assert.is(d.measuredPlainBytes, d.measuredRawBytes)
  assert.ok(d.measuredDictionaryBytes < 0.45 * d.measuredRawBytes)
})

test('store: when values drift the ratio degrades, a new version is built, and entries of the old one still decode', () => {
  const store = make()
  const userVals = users(0, 600)
  userVals.forEach((v, i) => put(store, `u${i}`, v))
  assert.is(store.stats().dictionary!.version, 2)
  // Log lines share almost nothing with user records: under the user dictionary
  // they are stored raw (stored/raw 1 against a baseline near 0.36).
  const logs = Array.from({ length: 600 }, (_, i) => logLineBytes(i))
  let rebuiltAt = -1
  logs.forEach((v, i) => {
    put(store, `l${i}`, v)
    if (rebuiltAt < 0 && store.stats().dictionary!.version === 3) rebuiltAt = i
  })
  // The window of 256 compressions that began after 600 - 63 - 256 * 2 = 25
  // user records ends at log line 230; 64 samples later (line 294) version 3 is built.
  assert.is(rebuiltAt, 294)
  const d = store.stats().dictionary!
  assert.is(d.version, 3)
  assert.is(d.builds, 3)
  assert.is(d.dictionaries, 3) // versions 1 (u7-u62) and 2 (u63-u599) are still used by user records
  userVals.forEach((v, i) => assert.equal(Buffer.from(store.get(`u${i}`)!), v, `u${i}`))
  logs.forEach((v, i) => assert.equal(Buffer.from(store.get(`l${i}`)!), v, `l${i}`))
  // Lines after the rebuild compress with the new version.
  for (let i = 295; i < 600; i++) {
    assert.is(store.entry(`l${i}`)!.storedBytes, dictSize(logs[i]!, logs.slice(231, 295)), `l${i}`)
  }
  assert.ok(d.measuredDictionaryBytes < 0.6 * d.measuredRawBytes, `${d.measuredDictionaryBytes} of ${d.measuredRawBytes}`)
  store.checkInvariants()
})

test('store: a flipped byte anywhere in a dictionary-compressed value reads as a miss, is counted and removed', () => {
  const vals = users(0, 80)
  const probe = userRecordBytes(5000)
  const storedLength = dictSize(probe, vals.slice(0, 64))
  for (let offset = 0; offset < storedLength; offset++) {
    for (const read of ['get', 'entry'] as const) {
      const store = make()
      vals.forEach((v, i) => put(store, `u${i}`, v))
      put(store, 'p', probe)
      assert.is(store.entry('p')!.storedBytes, storedLength)
      store.corruptForTest('p', offset)
      const before = store.stats()
      let got: unknown
      try {
        got = read === 'get' ? store.get('p') : store.entry('p')
      } catch (err) {
        assert.unreachable(`${read}() threw at offset ${offset}: ${String(err)}`)
      }
      assert.is(got, undefined, `${read}() returned a value at corrupted offset ${offset}`)
      const s = store.stats()
      assert.is(s.corrupt, before.corrupt + 1)
      assert.is(s.misses, before.misses + 1)
      assert.is(s.entries, 80)
      assert.is(s.storedBytes, before.storedBytes - storedLength)
      assert.is(store.has('p'), false)
      assert.equal(Buffer.from(store.get('u70')!), vals[70])
      store.checkInvariants()
    }
  }
})

test('store: clear() drops every old dictionary and keeps the current one', () => {
  const store = make()
  users(0, 100).forEach((v, i) => put(store, `u${i}`, v))
  assert.is(store.stats().dictionary!.dictionaries, 2)
  assert.is(store.clear(), 100)
  const d = store.stats().dictionary!
  assert.is(d.dictionaries, 1)
  assert.is(d.version, 2)
  store.checkInvariants()
  put(store, 'again', userRecordBytes(7))
  assert.equal(Buffer.from(store.get('again')!), userRecordBytes(7))
  assert.is(store.entry('again')!.storedBytes, dictSize(userRecordBytes(7), users(0, 64)))
  store.checkInvariants()
})

test('store: without a dictionary, stats have no dictionary field and small values stay plain', () => {
  const store = make({ compressDictionary: false })
  users(0, 100).forEach((v, i) => put(store, `u${i}`, v))
  const s = store.stats()
  assert.is('dictionary' in s, false)
  assert.is(s.compressedEntries, 0)
  assert.is(s.storedBytes, s.rawBytes)
  store.checkInvariants()
})

test('store: churn with fast rebuilds keeps references, values and byte counts consistent after every operation', () => {
  // Tiny windows and few ids, so that rebuilds, drops, id reuse and the
  // "every id in use" case all happen many times.
  const tuning = { firstSamples: 2, samples: 4, window: 8, measureEvery: 3, maxDictionaries: 2 }
  const store = make({ maxEntries: 40 }, tuning)
  const model = new Map<string, Buffer>()
  let x = 12345
  const rand = (n: number): number => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x % n
  }
  for (let op = 0; op < 4000; op++) {
    const key = `k${rand(60)}`
    const r = rand(100)
    if (r < 70) {
      // Phases of user records and log lines, so the ratio keeps degrading.
      const v = Math.floor(op / 50) % 2 === 0 ? userRecordBytes(rand(5000)) : logLineBytes(rand(5000))
      put(store, key, v)
      model.set(key, v)
    } else if (r < 95) {
      const got = store.get(key)
      if (got !== undefined) assert.equal(Buffer.from(got), model.get(key), `${key} at op ${op}`)
    } else if (r < 99) {
      store.delete(key)
      model.delete(key)
    } else {
      store.clear()
      model.clear()
    }
    store.checkInvariants()
  }
  const d = store.stats().dictionary!
  assert.ok(d.builds >= 10, `${d.builds} builds`)
  assert.ok(d.dictionaries >= 1 && d.dictionaries <= 2)
  assert.is(store.stats().corrupt, 0)
})

test('stats: shard reports sum per region; ratio and plainRatio come from the measured bytes', () => {
  const a = make()
  const b = make()
  users(0, 200).forEach((v, i) => put(a, `u${i}`, v))
  users(200, 300).forEach((v, i) => put(b, `u${i}`, v))
  const plain = new RegionStore(regionConfig(), () => 1000)
  const ra = a.stats()
  const rb = b.stats()
  const s = aggregateStats(['r', 'plain'], [[ra, plain.stats()], [rb, plain.stats()]], 0, [])
  const da = ra.dictionary!
  const db = rb.dictionary!
  const raw = da.measuredRawBytes + db.measuredRawBytes
  const expected = {
    version: 2,
    builds: 4,
    dictionaries: da.dictionaries + db.dictionaries,
    bytes: da.dictionaryBytes + db.dictionaryBytes,
    ratio: raw / (da.measuredDictionaryBytes + db.measuredDictionaryBytes),
    plainRatio: raw / (da.measuredPlainBytes + db.measuredPlainBytes),
  }
  assert.equal(s.byRegion.r!.dictionary, expected)
  assert.equal(s.dictionary, expected)
  assert.is(s.byRegion.plain!.dictionary, undefined)
  assert.is(expected.plainRatio, 1)
  assert.ok(expected.ratio > 2.2, String(expected.ratio))
  assert.equal(JSON.parse(JSON.stringify(s)), s)
  // Before any measurement both ratios are 1, and a down shard reports the same shape.
  const empty = aggregateStats(['r'], [[make().stats()]], 0, [])
  assert.equal(empty.dictionary, { version: 0, builds: 0, dictionaries: 0, bytes: 0, ratio: 1, plainRatio: 1 })
})

// ── options ──────────────────────────────────────────────────────────────────

test('options: dictionary defaults minBytes to 32, combines with minBytes, and is validated', async () => {
  const r = resolveOptions({
    shards: 2,
    regions: { d: { compression: { dictionary: true } }, m: { compression: { dictionary: true, minBytes: 100 } }, off: { compression: { dictionary: false } } },
  })
  const [def, d, m, off] = r.regions
  assert.equal([def!.compressMinBytes, def!.compressDictionary], [1024, false])
  assert.equal([d!.compressMinBytes, d!.compressDictionary], [32, true])
  assert.equal([m!.compressMinBytes, m!.compressDictionary], [100, true])
  assert.equal([off!.compressMinBytes, off!.compressDictionary], [1024, false])
  assert.is(regionShare(d!, 0, 2).compressDictionary, true)
  const cases: [unknown, string][] = [
    [{ dictionary: 'yes' }, 'regions.users.compression.dictionary must be a boolean (got the string "yes")'],
    [{ dictionary: 1 }, 'regions.users.compression.dictionary must be a boolean (got 1)'],
    [{ dictionaries: true }, 'regions.users.compression.dictionaries is not an option (options are: minBytes, dictionary)'],
  ]
  for (const [compression, message] of cases) {
    try {
      await createCache({ shards: 1, regions: { users: { compression } } } as never)
      assert.unreachable(`${JSON.stringify(compression)} was accepted`)
    } catch (err) {
      assert.instance(err, InvalidOptionError)
      assert.is((err as InvalidOptionError).code, 'E_INVALID_OPTION')
      assert.is((err as Error).message, message)
    }
  }
})

// ── through real shard threads ───────────────────────────────────────────────

test('cache: 1000 JSON user records with distinct ids, names, emails and dates store far below plain LZ4 and read back deep-equal', async () => {
  const n = 1000
  const records = Array.from({ length: n }, (_, i) => userRecord(i))
  const raw = records.reduce((sum, r) => sum + Buffer.byteLength(JSON.stringify(r)), 0)
  const plain = records.reduce((sum, r) => sum + plainSize(Buffer.from(JSON.stringify(r))), 0)
  assert.ok(raw / n > 160 && raw / n < 180, `mean ${raw / n} bytes`)
  assert.is(plain, raw) // what the region would store with plain LZ4
  await withCache({ shards: 2, regions: { users: { compression: { dictionary: true } } } }, async (cache) => {
    const users = cache.region('users')
    for (let i = 0; i < n; i += 100) {
      assert.is(await users.mset(records.slice(i, i + 100).map((r) => [`user:${r.id}`, r] as [string, unknown])), 100)
    }
    const s = await cache.stats()
    const u = s.byRegion.users!
    assert.is(u.entries, n)
    assert.is(u.rawBytes, raw)
    // Each shard stores its first 7 values raw while it samples; the rest take
    // ~60 of ~170 bytes, so the whole is bound at half (plain LZ4: all of it).
    assert.ok(u.storedBytes < 0.5 * raw, `stored ${u.storedBytes} of ${raw}`)
    assert.ok(u.storedBytes < 0.5 * plain)
    assert.is(u.compressedEntries, n - 2 * 7)
    const d = u.dictionary!
    assert.is(d.version, 2)
    assert.is(d.builds, 4) // two per shard
    assert.is(d.plainRatio, 1)
    assert.ok(d.ratio > 2.2, String(d.ratio))
    assert.is(s.byRegion.default!.dictionary, undefined)
    assert.equal(JSON.parse(JSON.stringify(s)), s)
    const got = await users.mget(records.map((r) => `user:${r.id}`))
    got.forEach((v, i) => assert.equal(v, records[i], `user:${records[i]!.id}`))
    const e = (await users.getEntry(`user:${records[500]!.id}`))!
    assert.is(e.compressed, true)
    assert.ok(e.storedBytes < e.sizeBytes / 2)
    await cache.resetStats()
    assert.is((await cache.stats()).byRegion.users!.dictionary!.builds, 0)
  })
})

test.run()
