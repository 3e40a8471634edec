/**
 * Unit tests of `Glob` (src/wire/glob.ts): the pattern language of `keys(glob)` and
 * `deleteByPattern(glob)`, and a differential property test against a small
 * reference matcher written here from the documented grammar.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { Glob } from '../../src/wire/glob.js'

/** Asserts, key by key, which of `keys` the pattern matches. */
function expectMatches(pattern: string, yes: string[], no: string[]): void {
  const g = new Glob(pattern)
  for (const k of yes) assert.is(g.matches(k), true, `${JSON.stringify(pattern)} should match ${JSON.stringify(k)}`)
  for (const k of no) assert.is(g.matches(k), false, `${JSON.stringify(pattern)} should not match ${JSON.stringify(k)}`)
}

test('source keeps the pattern as given', () => {
  assert.is(new Glob('user:[!a]*').source, 'user:[!a]*')
})

test('a pattern without wildcards matches only the identical key', () => {
  expectMatches('user:1', ['user:1'], ['user:10', 'user:', 'User:1', ' user:1', ''])
})

test('the empty pattern matches only the empty key', () => {
  expectMatches('', [''], ['a', ' '])
})

test('* matches any run, including the empty one', () => {
  expectMatches('*', ['', 'a', 'user:1', '*', '::'], [])
  expectMatches('user:*', ['user:', 'user:1', 'user:1:2', 'user:*'], ['user', 'users:1', 'xuser:1'])
  expectMatches('*:1', [':1', 'user:1', 'a:b:1'], ['user:10', 'user:1 ', '1'])
  expectMatches('a*b*c', ['abc', 'aXbYc', 'abbc', 'abcbc', 'acbc'], ['ab', 'acb', 'abcx', 'bac'])
})

test('? matches exactly one character', () => {
  expectMatches('user:?', ['user:1', 'user:x', 'user:?', 'user:*'], ['user:', 'user:12'])
  expectMatches('??', ['ab', '::'], ['', 'a', 'abc'])
  expectMatches('a?c', ['abc', 'a?c', 'a-c'], ['ac', 'abbc'])
})

test('[abc] matches one character of the set', () => {
  expectMatches('k[abc]', ['ka', 'kb', 'kc'], ['k', 'kd', 'kab', 'k[', 'k]', 'kA'])
})

test('[a-z] matches one character of the range, ends included', () => {
  expectMatches('[a-c]x', ['ax', 'bx', 'cx'], ['dx', '`x', 'Ax', 'x', '-x'])
  expectMatches('id:[0-9][0-9]', ['id:00', 'id:42', 'id:99'], ['id:4', 'id:4a', 'id:123'])
  expectMatches('[a-cx-z]', ['a', 'c', 'x', 'z'], ['d', 'w', ''])
})

test('[!a] and [^a] are negated classes; they still consume one character', () => {
  expectMatches('[!a]', ['b', '!', '^', 'A'], ['a', '', 'bb'])
  expectMatches('[^a]', ['b', '!', '^', 'A'], ['a', '', 'bb'])
  expectMatches('x[!a-c]', ['xd', 'x-', 'x!'], ['xa', 'xb', 'xc', 'x'])
  expectMatches('x[^a-c]', ['xd', 'x-', 'x^'], ['xa', 'xb', 'xc', 'x'])
})

test('- first or last in a class is a literal member', () => {
  expectMatches('[-a]', ['-', 'a'], ['b'])
  expectMatches('[a-]', ['-', 'a'], ['b'])
  expectMatches('[!a-]', ['b'], ['-', 'a'])
})

test('] first in a class (also after ! or ^) is a member, not the end', () => {
  expectMatches('[]]', [']'], ['[', '[]', ''])
  expectMatches('[]a]', [']', 'a'], ['b', ']a'])
  expectMatches('[!]]', ['a', '['], [']'])
  expectMatches('[^]a]x', ['bx'], [']x', 'ax'])
})

test('backslash escapes make wildcards and brackets literal', () => {
  expectMatches('a\\*', ['a*'], ['a', 'ab', 'a\\*', 'a\\b'])
  expectMatches('a\\?', ['a?'], ['ab', 'a'])
  expectMatches('\\[a]', ['[a]'], ['a'])
  expectMatches('\\\\*', ['\\', '\\x'], ['x'])
  expectMatches('\\a\\b', ['ab'], ['\\a\\b'])
  expectMatches('*\\*', ['*', 'x*', '**'], ['x', '*x'])
})

test('escapes inside a class', () => {
  expectMatches('[\\]]', [']'], ['\\', '\\]'])
  expectMatches('[a\\-z]', ['a', '-', 'z'], ['b', 'y'])
  expectMatches('[\\!a]', ['!', 'a'], ['b'])
})

test('a trailing backslash is a literal backslash', () => {
  expectMatches('a\\', ['a\\'], ['a', 'a\\\\'])
  expectMatches('*\\', ['\\', 'x\\'], ['x'])
})

test('an unclosed [ is a literal [ and the rest keeps its meaning', () => {
  expectMatches('[', ['['], ['', 'a'])
  expectMatches('[abc', ['[abc'], ['a', 'abc', '[a'])
  expectMatches('a[b*', ['a[b', 'a[bcd'], ['ab', 'a[', 'a[c'])
  expectMatches('[!', ['[!'], ['a'])
  expectMatches('[a-', ['[a-'], ['a'])
  expectMatches('[]', ['[]'], [']', '['])
  expectMatches('x[?', ['x[a', 'x[['], ['xa', 'x['])
})

test('consecutive stars behave as one star', () => {
  expectMatches('a**b', ['ab', 'axb', 'axyzb'], ['a', 'b', 'ba'])
  expectMatches('***', ['', 'abc'], [])
  expectMatches('**?**', ['a', 'abc'], [''])
})

test('? and classes count astral characters as one character', () => {
  const smile = '\u{1F600}'
  const rocket = '\u{1F680}'
  assert.is(smile.length, 2) // two UTF-16 code units, one character
  expectMatches('?', [smile, 'a', 'é'], ['', smile + smile, 'ab'])
  expectMatches('k:?:v', [`k:${smile}:v`], [`k:${smile}${smile}:v`, 'k::v'])
  expectMatches('??', [smile + rocket, `a${smile}`], [smile])
  expectMatches(`[${smile}]`, [smile], [rocket, '\ud83d', '\ude00'])
  expectMatches(`[${smile}-${rocket}]`, [smile, '\u{1F64F}', rocket], ['\u{1F5FF}', '\u{1F681}', 'a'])
  expectMatches(`[!${smile}]`, [rocket, 'a'], [smile, ''])
  expectMatches(`${smile}*`, [smile, `${smile}x`], ['x', rocket])
  expectMatches('日本*', ['日本', '日本語'], ['日', '本日'])
})

test('empty key segments: * and ? around separators', () => {
  expectMatches('a:*:b', ['a::b', 'a:x:b', 'a:x:y:b'], ['a:b', 'a::'])
  expectMatches('a:?:b', ['a:x:b'], ['a::b', 'a:xy:b'])
  expectMatches('*:', [':', 'a:', '::'], ['', 'a'])
  expectMatches(':*:', ['::', ':a:', ':::'], [':', 'a::'])
  expectMatches('::', ['::'], [':', ':::'])
})

test('one Glob is reusable across many keys', () => {
  const g = new Glob('s[0-9]:*')
  const keys = ['s1:a', 'x1:a', 's9:', 's10:', 'sa:b', 's0:zz']
  assert.equal(keys.filter((k) => g.matches(k)), ['s1:a', 's9:', 's0:zz'])
  assert.equal(keys.filter((k) => g.matches(k)), ['s1:a', 's9:', 's0:zz'])
})

test('a pathological pattern against 10,000 a\'s returns false (no exponential backtracking)', () => {
  const key = 'a'.repeat(10_000)
  assert.is(new Glob('a*a*a*a*a*a*a*a*b').matches(key), false)
  assert.is(new Glob('*a*a*a*a*a*a*a*a*a*a*a*a*?b').matches(key), false)
  assert.is(new Glob('a*a*a*a*a*a*a*a*a').matches(key), true)
  assert.is(new Glob('a*a*a*a*a*a*a*a*b').matches(key + 'b'), true)
})

// ── differential test against a reference matcher ───────────────────────────

type RefToken =
  | { kind: 'lit'; cp: number }
  | { kind: 'any' }
  | { kind: 'star' }
  | { kind: 'class'; negated: boolean; ranges: [number, number][] }

/**
 * The grammar of src/wire/glob.ts's header, parsed independently: `\x` is `x`
 * (a trailing `\` is itself), `*`, `?`, and `[` [`!`|`^`] members `]`, where a
 * `]` right after the opening (and optional negation) is a member, `\x` inside
 * is `x`, `a-b` is a range unless `b` would be the closing `]`, and a `[` that
 * is never closed is a literal `[`. A reversed range `[z-a]` means `[a-z]`
 * (what the engine does; the header is silent on it).
 */
function refParse(pattern: string): RefToken[] {
  const cps = Array.from(pattern, (c) => c.codePointAt(0)!)
  const out: RefToken[] = []
  let i = 0
  while (i < cps.length) {
    const c = cps[i]!
    if (c === 0x5c && i + 1 < cps.length) {
      out.push({ kind: 'lit', cp: cps[i + 1]! })
      i += 2
    } else if (c === 0x2a) {
      out.push({ kind: 'star' })
      i++
    } else if (c === 0x3f) {
      out.push({ kind: 'any' })
      i++
    } else if (c === 0x5b) {
      const cls = refClass(cps, i)
      if (cls === undefined) {
        out.push({ kind: 'lit', cp: c })
        i++
      } else {
        out.push(cls.token)
        i = cls.next
      }
    } else {
      out.push({ kind: 'lit', cp: c })
      i++
    }
  }
  return out
}

function refClass(cps: number[], open: number): { token: RefToken; next: number } | undefined {
  let i = open + 1
  let negated = false
  if (cps[i] === 0x21 || cps[i] === 0x5e) {
    negated = true
    i++
  }
  const ranges: [number, number][] = []
  // Read one member character (handling `\x`); returns [cp, index after it].
  const member = (at: number): [number, number] => {
    if (cps[at] === 0x5c && at + 1 < cps.length) return [cps[at + 1]!, at + 2]
    return [cps[at]!, at + 1]
  }
  let first = true
  while (i < cps.length) {
    if (cps[i] === 0x5d && !first) return { token: { kind: 'class', negated, ranges }, next: i + 1 }
    first = false
    const [lo, afterLo] = member(i)
    if (cps[afterLo] === 0x2d && afterLo + 1 < cps.length && cps[afterLo + 1] !== 0x5d) {
      const [hi, afterHi] = member(afterLo + 1)
      ranges.push([Math.min(lo, hi), Math.max(lo, hi)])
      i = afterHi
    } else {
      ranges.push([lo, lo])
      i = afterLo
    }
  }
  return undefined
}

/** Memoized DP over (token index, code point index): no cleverness, just the definition. */
function refMatches(pattern: string, key: string): boolean {
  const toks = refParse(pattern)
  const cps = Array.from(key, (c) => c.codePointAt(0)!)
  const memo = new Map<number, boolean>()
  const go = (p: number, s: number): boolean => {
    const id = p * (cps.length + 1) + s
    const hit = memo.get(id)
    if (hit !== undefined) return hit
    let r: boolean
    const t = toks[p]
    if (t === undefined) r = s === cps.length
    else if (t.kind === 'star') r = go(p + 1, s) || (s < cps.length && go(p, s + 1))
    else if (s === cps.length) r = false
    else {
      const cp = cps[s]!
      let one: boolean
      if (t.kind === 'lit') one = t.cp === cp
      else if (t.kind === 'any') one = true
      else one = t.ranges.some(([lo, hi]) => cp >= lo && cp <= hi) !== t.negated
      r = one && go(p + 1, s + 1)
    }
    memo.set(id, r)
    return r
  }
  return go(0, 0)
}

test('reference matcher sanity: a few hand-checked cases', () => {
  assert.is(refMatches('a*b', 'axxb'), true)
  assert.is(refMatches('[]a]', ']'), true)
  assert.is(refMatches('[!]]', ']'), false)
  assert.is(refMatches('[a-', '[a-'), true)
  assert.is(refMatches('\\*', '*'), true)
  assert.is(refMatches('?', '\u{1F600}'), true)
})

/** Pattern pieces: single characters plus the fragments that make classes, so that closed classes are common. */
const patternPiece = fc.constantFrom(
  'a', 'b', 'c', '-', '*', '?', '[', ']', '!', '^', '\\', ':', '\u{1F600}',
  '[', '[!', '[^', '[]', 'a-c', 'c-a', ']', '\\]', '-]',
)
const keyChar = fc.constantFrom('a', 'b', 'c', 'd', '-', '*', '?', '[', ']', '!', '^', '\\', ':', '\u{1F600}')

test('differential: Glob agrees with the reference matcher on random patterns and keys', () => {
  fc.assert(
    fc.property(
      fc.array(patternPiece, { maxLength: 8, size: 'max' }).map((a) => a.join('')),
      fc.array(fc.array(keyChar, { maxLength: 8, size: 'max' }).map((a) => a.join('')), { minLength: 1, maxLength: 12 }),
      (pattern, keys) => {
        const g = new Glob(pattern)
        for (const key of keys) {
          const want = refMatches(pattern, key)
          if (g.matches(key) !== want) throw new Error(`${JSON.stringify(pattern)} vs ${JSON.stringify(key)}: expected ${want}`)
        }
      },
    ),
    { numRuns: 5000 },
  )
})

/** Pattern parts, each with the key characters it can stand for (some match, some do not). */
const parts: [string, string[]][] = [
  ['a', ['a']],
  ['b', ['b']],
  [':', [':']],
  ['?', ['a', '\u{1F600}']],
  ['[ab]', ['a', 'b', 'c']],
  ['[!a]', ['a', 'b', '!']],
  ['[^a]', ['a', 'b', '^']],
  ['[a-b]', ['a', 'b', 'c', '-']],
  ['[b-a]', ['a', 'b', 'c']],
  ['[]a]', [']', 'a', 'b']],
  ['[!]a]', [']', 'a', 'b']],
  ['[a-]', ['a', '-', 'b']],
  ['\\*', ['*', 'a']],
  ['\\[', ['[']],
  ['[a', ['[']],
]

test('differential: keys built from the pattern itself (often matching) agree too', () => {
  const arb = fc
    .array(fc.oneof(fc.constant<[string, string[]] | 'star'>('star'), fc.constantFrom(...parts)), { maxLength: 8, size: 'max' })
    .chain((ps) =>
      fc
        .tuple(
          ...ps.map((p) =>
            p === 'star'
              ? fc.array(fc.constantFrom('a', 'b', ':'), { maxLength: 3 }).map((a) => a.join(''))
              : p[0] === '[a'
                ? fc.constant('[a') // an unclosed class: the literal text
                : fc.constantFrom(...p[1]),
          ),
        )
        .map((pieces) => ({ pattern: ps.map((p) => (p === 'star' ? '*' : p[0])).join(''), key: pieces.join('') })),
    )
  let matched = 0
  let runs = 0
  fc.assert(
    fc.property(arb, ({ pattern, key }) => {
      runs++
      const want = refMatches(pattern, key)
      if (want) matched++
      assert.is(new Glob(pattern).matches(key), want, `${JSON.stringify(pattern)} vs ${JSON.stringify(key)}`)
    }),
    { numRuns: 5000 },
  )
  // The generator must exercise both outcomes to mean anything.
  assert.ok(matched > runs / 10 && matched < runs, `${matched} of ${runs} generated keys matched`)
})

test.run()
