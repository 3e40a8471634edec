/**
 * The documents a user reads: every relative link in them resolves (to a file
 * of the repository and, for `#anchor`s, to a heading of that file), the
 * README stays a ten-minute read, and the API reference in docs/api is the
 * one TypeDoc generates from the current TSDoc (`npm run docs`), so it cannot
 * drift from the code unnoticed.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/** The documents checked: the README, docs/ (the generated reference included), bench/ and examples/ READMEs. */
function documents(): string[] {
  const out = [join(ROOT, 'README.md')]
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name)
      if (statSync(p).isDirectory()) walk(p)
      else if (name.endsWith('.md')) out.push(p)
    }
  }
  walk(join(ROOT, 'docs'))
  for (const f of ['bench/README.md', 'bench/OPTIMIZATIONS.md', 'examples/README.md']) if (existsSync(join(ROOT, f))) out.push(join(ROOT, f))
  return out
}

/** Markdown links and images `[text](target)`, outside fenced code blocks and inline code. */
function links(markdown: string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '')
  const out: string[] = []
  for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) out.push(m[1]!)
  return out
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes; repeats get -1, -2. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '')
  for (const m of prose.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = m[1]!
      .replace(/<[^>]+>/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

test('every relative link in the README, docs/, bench/ and examples/ documents resolves, anchors included', () => {
  const broken: string[] = []
  let checked = 0
  for (const doc of documents()) {
    const text = readFileSync(doc, 'utf8')
    for (const link of links(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue // https:, mailto:
      checked++
      const [path = '', anchor] = link.split('#') as [string, string | undefined]
      const target = path === '' ? doc : resolve(dirname(doc), decodeURIComponent(path))
      const where = `${relative(ROOT, doc)}: (${link})`
      if (!target.startsWith(ROOT)) {
        broken.push(`${where} points outside the repository`)
        continue
      }
      if (!existsSync(target)) {
        broken.push(`${where} names a file that does not exist`)
        continue
      }
      if (anchor !== undefined && anchor !== '' && target.endsWith('.md') && !anchors(readFileSync(target, 'utf8')).has(anchor)) {
        broken.push(`${where} names a heading that ${relative(ROOT, target)} does not have`)
      }
    }
  }
  assert.equal(broken, [])
  assert.ok(checked > 50, `only ${checked} links found: is the link pattern still right?`)
})

test('the README is a ten-minute read: at most 450 lines', () => {
  const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length
  assert.ok(lines <= 450, `README.md has ${lines} lines: move reference material to docs/`)
})

/** Every file under `dir`, relative to it, sorted. */
function tree(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p)
      else out.push(relative(dir, p))
    }
  }
  walk(dir)
  return out
}

test('docs/api is what `npm run docs` generates from the current TSDoc', async () => {
  const out = mkdtempSync(join(tmpdir(), 'shardcache-api-'))
  try {
    const typedoc = join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc')
    const r = await new Promise<{ code: number; stderr: string; stdout: string }>((done) => {
      execFile(process.execPath, [typedoc, '--out', out, '--logLevel', 'Warn'], { cwd: ROOT, maxBuffer: 1 << 24 }, (err, stdout, stderr) =>
        done({ code: err === null ? 0 : 1, stdout, stderr }),
      )
    })
    // A warning is a TSDoc link or export that does not resolve: the reference would be wrong.
    assert.is(`${r.stdout}${r.stderr}`.trim(), '')
    assert.is(r.code, 0)
    const committed = join(ROOT, 'docs', 'api')
    const want = tree(out)
    assert.equal(tree(committed), want, 'docs/api lists other files than TypeDoc generates: run npm run docs')
    const stale = want.filter((f) => readFileSync(join(out, f), 'utf8') !== readFileSync(join(committed, f), 'utf8'))
    assert.equal(stale, [], 'docs/api differs from the TSDoc: run npm run docs')
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test.run()
