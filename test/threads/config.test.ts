/**
 * loadConfig: createCache's options from YAML or JSON files, validated with
 * messages that name the file and the offending option path.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCache, loadConfig } from '../../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'shardcache-config-'))
function file(name: string, text: string): string {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

function errorOf(fn: () => unknown): Error & { code?: string } {
  try {
    fn()
  } catch (err) {
    return err as Error & { code?: string }
  }
  throw new Error('expected an error')
}

test('a YAML file configures shards, regions with size strings and TTLs; the cache runs with it', async () => {
  const path = file(
    'cache.yaml',
    ['shards: 2', 'regions:', '  default: { maxBytes: 100mb }', '  sessions:', '    policy: fifo', '    maxEntries: 50000', '    ttl: 30m', '    compression: { minBytes: 1kb }'].join('\n'),
  )
  const options = loadConfig(path)
  assert.equal(options, {
    shards: 2,
    regions: { default: { maxBytes: '100mb' }, sessions: { policy: 'fifo', maxEntries: 50000, ttl: '30m', compression: { minBytes: '1kb' } } },
  })
  const cache = await createCache(options)
  try {
    const s = await cache.stats()
    assert.is(s.byRegion.default!.maxBytes, 100 * 2 ** 20)
    assert.is(s.byRegion.sessions!.maxEntries, 50_000)
    await cache.region('sessions').set('s', 'v')
    const ttl = (await cache.region('sessions').ttl('s'))!
    assert.ok(ttl > 29 * 60_000 && ttl <= 30 * 60_000)
  } finally {
    await cache.close()
  }
})

test('JSON works too, and an empty YAML file is the defaults', () => {
  assert.equal(loadConfig(file('cache.json', '{ "shards": 1, "maxKeyBytes": 128 }')), { shards: 1, maxKeyBytes: 128 })
  assert.equal(loadConfig(file('empty.yaml', '')), {})
})

test('bad values name the file and the option path; syntax errors name the line; a missing file names itself', () => {
  const bad = errorOf(() => loadConfig(file('bad.yaml', 'regions:\n  sessions:\n    maxBytes: lots\n')))
  assert.is(bad.code, 'E_INVALID_OPTION')
  assert.match(bad.message, 'bad.yaml: regions.sessions.maxBytes must be a positive integer or a size string like "100mb" (got the string "lots")')
  const typo = errorOf(() => loadConfig(file('typo.yaml', 'shard: 2\n')))
  assert.match(typo.message, 'options.shard is not an option')
  const ttl = errorOf(() => loadConfig(file('ttl.yaml', 'regions:\n  default: { ttl: soon }\n')))
  assert.is(ttl.code, 'E_INVALID_TTL')
  assert.match(ttl.message, 'regions.default.ttl')
  const syntax = errorOf(() => loadConfig(file('syntax.yaml', 'shards: 2\nregions: [\n')))
  assert.is(syntax.code, 'E_INVALID_OPTION')
  assert.match(syntax.message, 'syntax.yaml" is not valid YAML at line')
  const json = errorOf(() => loadConfig(file('broken.json', '{ "shards": ')))
  assert.match(json.message, 'is not valid JSON')
  const missing = errorOf(() => loadConfig(join(dir, 'nope.yaml')))
  assert.is(missing.code, 'E_INVALID_OPTION')
  assert.match(missing.message, 'nope.yaml" cannot be read')
})

test.run()
