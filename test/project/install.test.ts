/**
 * The package as users get it: `npm pack` of this checkout, `npm install` of
 * the tarball into a fresh project, then that project imports it from ESM,
 * require()s it from CommonJS (Node's require(esm), 20.19+), type-checks
 * against it with tsc under each moduleResolution users have (node10, node16,
 * nodenext, bundler) and runs its `shardcache` command. Also: what the tarball
 * holds (no test/bench files, no source maps, every relative import resolvable
 * inside it), and that `import 'shardcache'` does not load `yaml` (only
 * loadConfig does).
 *
 * It packs the dist/ that `npm test` has just built (`--ignore-scripts`: the
 * `prepare` script would rebuild it, tens of seconds for the same output), and
 * installs dependencies with --prefer-offline, from the npm cache `npm ci`
 * filled. The typescript compiler and @types/node are the repository's own.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url)) // the compiled test runs from dist/test
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
const requireHere = createRequire(import.meta.url)
const TSC = requireHere.resolve('typescript/bin/tsc')
const TYPE_ROOTS = dirname(dirname(requireHere.resolve('@types/node/package.json')))

/** A generous bound for one child process (npm, tsc) on a loaded 2-core machine; never a timing assertion. */
const CHILD_TIMEOUT_MS = 100_000

const work = mkdtempSync(join(tmpdir(), 'shardcache-install-'))
const project = join(work, 'project')
// Removed however the file ends (a failed assertion, an uncaught error).
process.on('exit', () => rmSync(work, { recursive: true, force: true }))

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * The environment for npm children: without what `npm test` exports to its
 * scripts (npm_config_local_prefix would point the child at this repository,
 * npm_package_* and npm_lifecycle_* describe it), but with the user's cache
 * and config files.
 */
function childEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_registry', 'npm_config_cafile'])
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith('npm_') || keep.has(k.toLowerCase())) env[k] = v
  env.NO_COLOR = '1'
  return env
}

function run(cmd: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** Runs and requires exit code 0, showing the output otherwise. */
async function ok(cmd: string, args: string[], cwd: string): Promise<Run> {
  const r = await run(cmd, args, cwd)
  if (r.code !== 0) assert.unreachable(`${cmd} ${args.join(' ')} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`)
  return r
}

interface Packed {
  filename: string
  size: number
  unpackedSize: number
  entryCount: number
  files: { path: string }[]
}
let packed: Packed

test.before(async () => {
  try {
    mkdirSync(project)
    const pack = await ok('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT)
    packed = (JSON.parse(pack.stdout) as Packed[])[0]!
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
    await ok('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, packed.filename)], project)
  } catch (err) {
    // uvu counts a failed hook as failed tests but does not print its error.
    console.error('install.test: packing or installing the package failed:', err)
    throw err
  }
})

test.after(() => rmSync(work, { recursive: true, force: true }))

test('the tarball holds the compiled library, its types, README, LICENSE and package.json: no tests, benchmarks or source maps', () => {
  const paths = packed.files.map((f) => f.path).sort()
  const unexpected = paths.filter((p) => !/^(package\.json|README\.md|LICENSE|dist\/(src|workers)\/([a-z]+\/){0,2}[a-z0-9_]+\.(js|d\.ts))$/.test(p))
  assert.equal(unexpected, [])
  for (const p of ['LICENSE', 'README.md', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/adapters/keyv.js', 'dist/src/adapters/keyv.d.ts', 'dist/src/cli/main.js', 'dist/workers/shard.js']) {
    assert.ok(paths.includes(p), `${p} is in the tarball`)
  }
  // Each .js ships with its .d.ts.
  assert.equal(
    paths.filter((p) => p.endsWith('.js') && !paths.includes(p.replace(/\.js$/, '.d.ts'))),
    [],
  )
})

test('every relative import, import() and new URL() of the installed files names a file that was installed (none reaches into bench/ or test/)', () => {
  const pkg = join(project, 'node_modules', 'shardcache')
  const missing: string[] = []
  let seen = 0
  for (const { path } of packed.files) {
    if (!path.endsWith('.js') && !path.endsWith('.d.ts')) continue
    const text = readFileSync(join(pkg, path), 'utf8')
    // Specifiers in code, not in comments: `from '...'`, `import('...')`, `new URL('...', import.meta.url)`.
    for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bnew URL\(\s*)'(\.{1,2}\/[^']+)'/g)) {
      seen++
      const target = join(dirname(join(pkg, path)), m[1]!)
      // Inside dist/, or the package's own package.json (the command reads its version there).
      const inside = target.startsWith(join(pkg, 'dist') + '/') || target === join(pkg, 'package.json')
      if (!inside || !existsSync(target)) missing.push(`${path} -> ${m[1]}`)
    }
  }
  assert.equal(missing, [])
  assert.ok(seen > 100, `found the package's relative imports (${seen})`)
})

test('ESM: import, a real set/get round trip through the shard threads; yaml and croner are not loaded until a YAML file or a cron schedule needs them', async () => {
  writeFileSync(join(project, 'cache.yaml'), 'shards: 1\nregions:\n  default: { maxEntries: 100 }\n')
  writeFileSync(
    join(project, 'esm.mjs'),
    `import { createRequire } from 'node:module'
import { createCache, loadConfig, ErrorCodes } from 'shardcache'
import { KeyvShardcache } from 'shardcache/keyv'
// yaml and croner are loaded with require(), which puts their files in require.cache.
const loaded = (name) => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes('/node_modules/' + name + '/'))
const yamlLoaded = () => loaded('yaml')
const out = { yamlAfterImport: yamlLoaded() }
const cache = await createCache({ shards: 2 })
out.set = await cache.set('user:1', { name: 'Ada', visits: 3 })
out.get = await cache.get('user:1')
out.missing = (await cache.get('user:2')) === undefined
const store = new KeyvShardcache(cache)
out.keyvSet = await store.set('k', 'v')
out.keyvGet = await store.get('k')
out.code = ErrorCodes.INVALID_KEY
await cache.close()
out.yamlAfterCache = yamlLoaded()
out.config = loadConfig('cache.yaml')
out.yamlAfterLoadConfig = yamlLoaded()
const hourly = await createCache({ shards: 1, backup: { dir: 'backups', every: '1h' } })
await hourly.close()
out.cronerAfterDuration = loaded('croner')
const nightly = await createCache({ shards: 1, backup: { dir: 'backups', every: '0 3 * * *' } })
await nightly.close()
out.cronerAfterCron = loaded('croner')
// @opentelemetry/api is an optional peer, not installed here: tracing says what to install.
out.tracing = await createCache({ shards: 1, tracing: true }).then(() => 'started', (e) => [e.code, e.message.split(':')[0]])
console.log(JSON.stringify(out))
`,
  )
  const r = await ok(process.execPath, ['esm.mjs'], project)
  assert.equal(JSON.parse(r.stdout), {
    yamlAfterImport: false,
    set: true,
    get: { name: 'Ada', visits: 3 },
    missing: true,
    keyvSet: true,
    keyvGet: 'v',
    code: 'E_INVALID_KEY',
    yamlAfterCache: false,
    config: { shards: 1, regions: { default: { maxEntries: 100 } } },
    yamlAfterLoadConfig: true,
    cronerAfterDuration: false,
    cronerAfterCron: true,
    tracing: ['E_INVALID_OPTION', 'options.tracing needs the @opentelemetry/api package (npm install @opentelemetry/api)'],
  })
  assert.is(r.stderr, '')
})

test("CommonJS: require('shardcache') and require('shardcache/keyv') load the same modules import does, round trip, and print nothing to stderr", async () => {
  writeFileSync(
    join(project, 'cjs.cjs'),
    `const { createCache, InvalidKeyError } = require('shardcache')
const { KeyvShardcache } = require('shardcache/keyv')
async function main() {
  const cache = await createCache({ shards: 2 })
  const out = {}
  out.set = await cache.set('n', 42, { ttl: '1m' })
  out.get = await cache.get('n')
  const store = new KeyvShardcache(cache)
  out.keyvSet = await store.set('users:1', '{"value":"Ada"}')
  out.keyvGet = await store.get('users:1')
  out.badKey = await cache.get('').then(() => 'resolved', (e) => e instanceof InvalidKeyError && e.code)
  await cache.close()
  // One copy of each module, whichever way it was loaded: classes and functions are the same objects.
  out.sameAsImport = (await import('shardcache')).createCache === createCache && (await import('shardcache/keyv')).KeyvShardcache === KeyvShardcache
  out.version = require('shardcache/package.json').version
  console.log(JSON.stringify(out))
}
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
`,
  )
  const r = await ok(process.execPath, ['cjs.cjs'], project)
  assert.equal(JSON.parse(r.stdout), { set: true, get: 42, keyvSet: true, keyvGet: '{"value":"Ada"}', badKey: 'E_INVALID_KEY', sameAsImport: true, version: VERSION })
  // Node 20.19+ (and 22.13+) require(esm) without a warning unless --trace-require-module asks for one
  // (22.12 printed an ExperimentalWarning); a top-level await in the graph would fail with ERR_REQUIRE_ASYNC_MODULE.
  assert.is(r.stderr, '')
})

test('TypeScript: strict tsc resolves shardcache and shardcache/keyv with their real types under node10, node16, nodenext (ESM and CommonJS) and bundler; the CommonJS it emits runs', async () => {
  // Typed uses, so that a missing or `any` declaration fails: the annotations need the real types, and each
  // expect-error directive below turns into an error ("unused directive") if the call it marks type-checks.
  const consumer = `import { createCache, ErrorCodes, InvalidKeyError } from 'shardcache'
import type { Cache, CacheStats } from 'shardcache'
import { KeyvShardcache } from 'shardcache/keyv'
import type { KeyvShardcacheOptions } from 'shardcache/keyv'

export async function main(): Promise<[number | undefined, string | undefined, number, 'E_INVALID_KEY', string]> {
  const cache: Cache = await createCache({ shards: 1, regions: { default: { maxEntries: 10 } } })
  await cache.set('k', 1, { ttl: '1m' })
  const v: number | undefined = await cache.get<number>('k')
  const stats: CacheStats = await cache.stats()
  const hits: number = stats.hits
  const options: KeyvShardcacheOptions = { region: 'default' }
  const store = new KeyvShardcache(cache, options)
  const stored: boolean = await store.set('x', 'y', 60_000)
  const fromStore: string | undefined = stored ? await store.get<string>('x') : undefined
  await cache.close()
  const code: 'E_INVALID_KEY' = ErrorCodes.INVALID_KEY
  const fromError: string = new InvalidKeyError('bad').code
  return [v, fromStore, hits, code, fromError]
}

/** Never called: each line must be a type error. */
export function typeErrors(cache: Cache): void {
  // @ts-expect-error shards is a number
  void createCache({ shards: 'two' })
  // @ts-expect-error the adapter's option is \`region\`
  new KeyvShardcache(cache, { regoin: 'default' })
  // @ts-expect-error get resolves to a value or undefined, not a string
  const s: Promise<string> = cache.get<number>('k')
  void s
}
`
  const modes: { name: string; file: string; options: Record<string, unknown> }[] = [
    // Emitted (CommonJS, require('shardcache')) and run below.
    { name: 'node10', file: 'node10.ts', options: { module: 'commonjs', moduleResolution: 'node10', noEmit: false, outDir: 'out-node10' } },
    { name: 'node16', file: 'node16.mts', options: { module: 'node16', moduleResolution: 'node16' } },
    { name: 'nodenext', file: 'nodenext.mts', options: { module: 'nodenext', moduleResolution: 'nodenext' } },
    // A CommonJS TypeScript file importing the ES module: allowed under nodenext since TypeScript 5.8 (require(esm)).
    { name: 'nodenext-cjs', file: 'nodenext_cjs.cts', options: { module: 'nodenext', moduleResolution: 'nodenext' } },
    { name: 'bundler', file: 'bundler.ts', options: { module: 'esnext', moduleResolution: 'bundler' } },
  ]
  const configs: string[] = []
  for (const m of modes) {
    writeFileSync(join(project, m.file), consumer)
    const config = `tsconfig.${m.name}.json`
    // skipLibCheck as `tsc --init` sets it: checking the declarations of @types/node and ioredis too would triple
    // the time (about 9 s more of CPU); the package's own declarations pass that check too (target ES2015 or later).
    const compilerOptions = { strict: true, noEmit: true, target: 'es2022', types: ['node'], typeRoots: [TYPE_ROOTS], skipLibCheck: true, ...m.options }
    writeFileSync(join(project, config), JSON.stringify({ compilerOptions, files: [m.file] }))
    configs.push(config)
  }
  // One `tsc --build` for all five: it parses @types/node and the package's declarations once, not five times.
  const r = await run(process.execPath, [TSC, '--build', ...configs], project)
  assert.is(r.stdout + r.stderr, '')
  assert.is(r.code, 0)

  const emitted = readFileSync(join(project, 'out-node10', 'node10.js'), 'utf8')
  assert.match(emitted, 'require("shardcache")')
  const ran = await ok(process.execPath, ['-e', "require('./out-node10/node10.js').main().then((r) => console.log(JSON.stringify(r)))"], project)
  assert.equal(JSON.parse(ran.stdout), [1, 'y', 1, 'E_INVALID_KEY', 'E_INVALID_KEY'])
  assert.is(ran.stderr, '')
})

test('the installed shardcache command runs: --help prints the usage, replay replays a trace', async () => {
  const bin = join(project, 'node_modules', '.bin', 'shardcache')
  const help = await ok(bin, ['--help'], project)
  assert.ok(help.stdout.startsWith('usage: shardcache replay TRACE (--sizes S,S... | --size N) [--policy all|NAME[,NAME...]]'), help.stdout)
  assert.is(help.stderr, '')
  const version = await ok(bin, ['--version'], project)
  assert.is(version.stdout, `${VERSION}\n`)
  // LRU of 2: a b miss, a hits, c evicts b, a hits, b misses.
  writeFileSync(join(project, 'trace.keys'), 'a\nb\na\nc\na\nb\n')
  const replay = await ok(bin, ['replay', 'trace.keys', '--policy', 'lru', '--size', '2', '--json'], project)
  const out = JSON.parse(replay.stdout) as Record<string, unknown>
  assert.equal([out.policy, out.size, out.requests, out.hits, out.uniqueKeys], ['lru', 2, 6, 2, 3])
  const bad = await run(bin, ['replay'], project)
  assert.is(bad.code, 2)
})

test.run()
