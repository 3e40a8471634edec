// The rules the source tree keeps (docs/architecture.md draws them): the
// folders are the layers, and every import points down. Checked by
// test/unit/layers.test.ts on every `npm test`; `npm run layers` prints the
// same check with dependency-cruiser's own report.
//
// CommonJS because dependency-cruiser's command line reads its configuration
// with require() when the file name ends in .cjs, whatever the package's type.

/**
 * The library's layers, top first. A file may import its own layer and the
 * ones below it, never one above. Why this order:
 * - entry points (the public index, the Keyv adapter, the command line) use the facade;
 * - api/ (the facade users call) drives client/ (the router and shard threads);
 * - client/ reads resolved options/, and relays attached threads' writes to backing/;
 * - backing/ (write-through to a region's store) stores through the facade's
 *   steps it is handed, and reads its options/ and reports ops/' stats types;
 * - options/ validates Redis clients and settings whose types redis/ defines;
 * - ops/ (stats, metrics, snapshots) reports on tiers/ and redis/ too, and is used from above;
 * - tiers/ (the chain of tiers below the shards, Keyv stores as tiers) holds the Redis tier as one of them;
 * - redis/ (bus and L2) encodes values with wire/;
 * - wire/ is what both threads share; errors.ts and messages.ts import nothing.
 */
const LAYERS = [
  { name: 'entry', path: '^src/(index\\.ts|adapters/|cli/)' },
  { name: 'api', path: '^src/api/' },
  { name: 'client', path: '^src/client/' },
  { name: 'backing', path: '^src/backing/' },
  { name: 'options', path: '^src/options/' },
  { name: 'ops', path: '^src/ops/' },
  { name: 'tiers', path: '^src/tiers/' },
  { name: 'redis', path: '^src/redis/' },
  { name: 'wire', path: '^src/wire/' },
  { name: 'base', path: '^src/(errors|messages)\\.ts$' },
]

/** One rule per layer: nothing in it imports a layer above it. */
const layerRules = LAYERS.slice(1).map((layer, i) => ({
  name: `${layer.name}-imports-no-layer-above`,
  comment: `src layer "${layer.name}" imports only layers below it (${LAYERS.slice(i + 2).map((l) => l.name).join(', ') || 'none'})`,
  severity: 'error',
  from: { path: layer.path },
  to: { path: LAYERS.slice(0, i + 1).map((l) => l.path) },
}))

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import circles, anywhere (type-only imports included: a circle of types is still a knot to untie before a move)',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'workers-import-only-wire',
      comment: 'the shard (workers/) imports only itself and src/wire/, what both threads share',
      severity: 'error',
      from: { path: '^workers/' },
      to: { path: '^(src|test|bench|tools)/', pathNot: '^src/wire/' },
    },
    {
      name: 'src-does-not-import-workers',
      comment: 'the calling thread reaches the shard through src/wire/ and by starting workers/shard.js, not by importing it; the command line is the one exception (its replay runs a region store in-process)',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^workers/' },
    },
    {
      name: 'shipped-code-imports-no-tooling',
      comment: 'src/ and workers/ are what the package ships: they never import tests, benchmarks or dev tools',
      severity: 'error',
      from: { path: '^(src|workers)/' },
      to: { path: '^(test|bench|tools)/' },
    },
    {
      name: 'tests-do-not-import-bench',
      comment: 'test helpers live in test/fixtures/ (and servers in tools/); the tests of bench programs run them as processes and may only name the types of what they print',
      severity: 'error',
      from: { path: '^test/' },
      to: { path: '^bench/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'bench-does-not-import-studies',
      comment: 'bench/studies/ holds one-off studies that `npm run bench` never runs',
      severity: 'error',
      from: { path: '^bench/', pathNot: '^bench/studies/' },
      to: { path: '^bench/studies/' },
    },
    {
      name: 'tools-import-nothing-local',
      comment: 'tools/ (redis-server launcher, watchdog) is shared by test/ and bench/, so it imports neither',
      severity: 'error',
      from: { path: '^tools/' },
      to: { path: '^(src|workers|test|bench)/' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
  },
}
