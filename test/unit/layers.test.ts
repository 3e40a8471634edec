// The source tree's layering (.dependency-cruiser.cjs, drawn in
// docs/architecture.md): every import points down a layer, the shard imports
// only the wire format, tests take no helpers from the bench, and there is no
// import circle anywhere. Run with dependency-cruiser over the real tree, and
// over a small tree that breaks each rule once, so that a rule that stopped
// matching (a renamed folder, a pattern typo) fails here too.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cruise } from 'dependency-cruiser'
import type { ICruiseResult, IFlattenedRuleSet } from 'dependency-cruiser'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)) // the compiled test runs from dist/test/unit
const config = createRequire(import.meta.url)(join(ROOT, '.dependency-cruiser.cjs')) as { forbidden: IFlattenedRuleSet['forbidden']; options: Record<string, unknown> }

/** Each violation as `rule: from -> to` (a circle names its files in order). */
async function violations(baseDir: string, roots: string[]): Promise<string[]> {
  const previous = process.cwd()
  // dependency-cruiser reports paths relative to the working directory, which its rules match.
  process.chdir(baseDir)
  try {
    const { output } = await cruise(roots, { ...config.options, validate: true, ruleSet: { forbidden: config.forbidden } }, {}, { tsConfig: { fileName: join(baseDir, 'tsconfig.json') } })
    const result = output as ICruiseResult
    return result.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle !== undefined ? ` (${v.cycle.map((c) => c.name).join(' -> ')})` : ''}`).sort()
  } finally {
    process.chdir(previous)
  }
}

test('the source tree keeps every layering rule and has no import circle', async () => {
  const found = await violations(ROOT, ['src', 'workers', 'test', 'bench', 'tools'])
  assert.equal(found, [], `\n${found.join('\n')}`)
})

test('the facade (src/api/) never writes frame bytes: requests are encoded by src/client/ops/ only', () => {
  // What a frame is made of: opcodes and flags, the writer, the router's open frame.
  const FRAME = /\b(Op|SetFlag|CasFlag|FrameWriter)\b|\.writer\(/
  const found: string[] = []
  const dir = join(ROOT, 'src', 'api')
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    readFileSync(join(dir, name), 'utf8').split('\n').forEach((line, i) => {
      // Code only: comments may name what they explain.
      const code = line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '').replace(/\/\*\*.*\*\//, '')
      if (FRAME.test(code)) found.push(`src/api/${name}:${i + 1}: ${line.trim()}`)
    })
  }
  assert.equal(found, [], `\n${found.join('\n')}`)
})

test('each rule catches the import it forbids (a small tree breaking each once)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shardcache-layers-'))
  try {
    const files: Record<string, string> = {
      'src/api/facade.ts': "import { helper } from './helper.js'\nexport const facade = helper\n",
      'src/api/helper.ts': "import { facade } from './facade.js'\nexport const helper = 1\nexport const again = () => facade\n",
      'src/wire/format.ts': "import { facade } from '../api/facade.js'\nexport const format = facade\n",
      'src/client/router.ts': "import { store } from '../../workers/store.js'\nexport const router = store\n",
      'workers/store.ts': "import { option } from '../src/options/option.js'\nexport const store = option\n",
      'src/options/option.ts': 'export const option = 1\n',
      'test/unit/x.test.ts': "import { run } from '../../bench/run.js'\nimport type { Shape } from '../../bench/run.js'\nexport const x: Shape = run\n",
      'bench/run.ts': "import { study } from './studies/study.js'\nexport type Shape = number\nexport const run = study\n",
      'bench/studies/study.ts': 'export const study = 1\n',
    }
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true })
      writeFileSync(join(dir, path), text)
    }
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }))
    const found = await violations(dir, ['src', 'workers', 'test', 'bench'])
    assert.equal(found, [
      'bench-does-not-import-studies: bench/run.ts -> bench/studies/study.ts',
      'no-circular: src/api/facade.ts -> src/api/helper.ts (src/api/helper.ts -> src/api/facade.ts)',
      'src-does-not-import-workers: src/client/router.ts -> workers/store.ts',
      'tests-do-not-import-bench: test/unit/x.test.ts -> bench/run.ts',
      'wire-imports-no-layer-above: src/wire/format.ts -> src/api/facade.ts',
      'workers-import-only-wire: workers/store.ts -> src/options/option.ts',
    ])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
