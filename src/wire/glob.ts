/**
 * Glob matching for `keys(glob)` and `deleteByPattern(glob)`.
 *
 * Supported: `*` (any run, also empty), `?` (one character), `[abc]`, `[a-z]`,
 * `[!a-z]` / `[^a-z]` (negated class), and `\x` to match `x` literally. A `[`
 * without a closing `]` is a literal `[`; a `]` right after `[` (or `[!`) is a
 * member; a reversed range `[c-a]` means `[a-c]`.
 *
 * No RegExp is ever built from user input. Matching is the greedy algorithm
 * that remembers only the last `*`: it never backtracks further, so a match
 * costs at most O(key length × pattern length), whatever the pattern. Regex
 * engines with backtracking can take exponential time on patterns like
 * `a*a*a*a*b`, which would stall a shard for every caller.
 */

const enum Kind {
  Literal,
  Any,
  Star,
  Class,
}

interface Token {
  kind: Kind
  /** Literal: the code point. */
  cp: number
  /** Class: inclusive [from, to] code point ranges, flattened. */
  ranges: number[]
  negated: boolean
}

/** A glob compiled once and matched against many keys. */
export class Glob {
  readonly source: string
  readonly #tokens: Token[]
  /** Patterns without wildcards compare as plain strings. */
  readonly #literal: string | undefined

  constructor(pattern: string) {
    this.source = pattern
    this.#tokens = compile(pattern)
    this.#literal = this.#tokens.every((t) => t.kind === Kind.Literal)
      ? String.fromCodePoint(...this.#tokens.map((t) => t.cp))
      : undefined
  }

  matches(key: string): boolean {
    if (this.#literal !== undefined) return key === this.#literal
    const toks = this.#tokens
    const m = toks.length
    const cps = codePoints(key)
    const n = cps.length
    let p = 0
    let s = 0
    let starP = -1
    let starS = 0
    while (s < n) {
      const t = toks[p]
      if (t !== undefined && t.kind !== Kind.Star && matchOne(t, cps[s]!)) {
        p++
        s++
      } else if (t !== undefined && t.kind === Kind.Star) {
        starP = p++
        starS = s
      } else if (starP >= 0) {
        p = starP + 1
        s = ++starS
      } else {
        return false
      }
    }
    while (p < m && toks[p]!.kind === Kind.Star) p++
    return p === m
  }
}

function matchOne(t: Token, cp: number): boolean {
  switch (t.kind) {
    case Kind.Literal:
      return t.cp === cp
    case Kind.Any:
      return true
    case Kind.Class: {
      let hit = false
      const r = t.ranges
      for (let i = 0; i < r.length; i += 2) {
        if (cp >= r[i]! && cp <= r[i + 1]!) {
          hit = true
          break
        }
      }
      return hit !== t.negated
    }
    default:
      return false
  }
}

function codePoints(s: string): number[] {
  const out: number[] = []
  for (let i = 0; i < s.length; i++) {
    const c = s.codePointAt(i)!
    out.push(c)
    if (c > 0xffff) i++
  }
  return out
}

function literal(cp: number): Token {
  return { kind: Kind.Literal, cp, ranges: [], negated: false }
}

function compile(pattern: string): Token[] {
  const cps = codePoints(pattern)
  const out: Token[] = []
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!
    if (c === 0x5c /* \ */ && i + 1 < cps.length) {
      out.push(literal(cps[++i]!))
    } else if (c === 0x2a /* * */) {
      // Consecutive stars are one star.
      if (out[out.length - 1]?.kind !== Kind.Star) out.push({ kind: Kind.Star, cp: 0, ranges: [], negated: false })
    } else if (c === 0x3f /* ? */) {
      out.push({ kind: Kind.Any, cp: 0, ranges: [], negated: false })
    } else if (c === 0x5b /* [ */) {
      const cls = compileClass(cps, i)
      if (cls === undefined) {
        out.push(literal(c))
      } else {
        out.push(cls.token)
        i = cls.end
      }
    } else {
      out.push(literal(c))
    }
  }
  return out
}

/** Parses `[...]` starting at `start`; undefined when it is not closed. */
function compileClass(cps: number[], start: number): { token: Token; end: number } | undefined {
  let i = start + 1
  let negated = false
  if (cps[i] === 0x21 /* ! */ || cps[i] === 0x5e /* ^ */) {
    negated = true
    i++
  }
  const ranges: number[] = []
  let first = true
  for (; i < cps.length; i++) {
    let c = cps[i]!
    // A `]` right after the opening is a member, as in shells.
    if (c === 0x5d /* ] */ && !first) return { token: { kind: Kind.Class, cp: 0, ranges, negated }, end: i }
    first = false
    if (c === 0x5c && i + 1 < cps.length) c = cps[++i]!
    if (cps[i + 1] === 0x2d /* - */ && i + 2 < cps.length && cps[i + 2] !== 0x5d) {
      let hi = cps[i + 2]!
      i += 2
      if (hi === 0x5c && i + 1 < cps.length) hi = cps[++i]!
      ranges.push(Math.min(c, hi), Math.max(c, hi))
    } else {
      ranges.push(c, c)
    }
  }
  return undefined
}
