#!/usr/bin/env node
/**
 * npm's `prepare` script: builds dist/ from src/ and workers/ (tsconfig.build.json),
 * from an empty dist/ so that nothing stale (the output of a deleted source, or
 * test/ and bench/ builds) is ever packed.
 *
 * npm runs it for installs from git (`github:`, `git+https:`, `git+file:`) and
 * from a directory (`file:`), for `npm pack` and `npm publish`, and after
 * `npm ci`/`npm install` in a clone. Installs of the published tarball never run
 * it: the tarball holds dist/.
 *
 * The compiler is a devDependency. npm installs devDependencies before it runs
 * prepare for a git dependency, but not for a `file:` directory or under
 * `--omit=dev`: there, say what to do instead of the shell's "tsc: not found".
 */
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

let tsc
try {
  tsc = createRequire(path.join(root, 'package.json')).resolve('typescript/bin/tsc')
} catch {
  process.stderr.write(
    `shardcache: building dist/ needs typescript, a devDependency, which is not installed in ${root}\n` +
      `(a file: directory whose own dependencies were never installed, or --omit=dev).\n` +
      `Run \`npm ci\` there first, or install a packed tarball (\`npm pack\`); --ignore-scripts installs without building.\n`,
  )
  process.exit(1)
}

rmSync(path.join(root, 'dist'), { recursive: true, force: true })
const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' })
process.exit(r.status ?? 1)
