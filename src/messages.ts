/**
 * The wording of error messages, in one place so that every message shows
 * what it was given the same way. Called only when an error is built, never
 * on a hot path.
 */

/**
 * `n` and the noun, singular for exactly 1: `plural(1, 'shard')` is
 * `'1 shard'`, `plural(2, 'entry', 'entries')` is `'2 entries'`.
 */
export function plural(n: number, singular: string, pluralForm = `${singular}s`): string {
  return `${n} ${noun(n, singular, pluralForm)}`
}

/** The noun alone, for a count shown another way (`1,000 entries`): singular for exactly 1. */
export function noun(n: number, singular: string, pluralForm = `${singular}s`): string {
  return n === 1 ? singular : pluralForm
}

/** Strings longer than this are cut in messages (a key or a value may be megabytes). */
const MAX_SHOWN_CHARS = 60

/**
 * What a message says it got. One convention: a string is quoted and says
 * it is a string (`the string "2"`: a bare `2` would read as a number,
 * which is exactly the mistake to show), an empty one is `an empty string`;
 * numbers, booleans, `null` and `undefined` appear as themselves (`2`,
 * `NaN`, `true`); a bigint as `the bigint 2n`; anything else by its kind
 * (`an array of 2 items`, `an object`, `a function`, `a Map`, `a Buffer`).
 */
export function describe(v: unknown): string {
  switch (typeof v) {
    case 'string':
      if (v === '') return 'an empty string'
      return v.length <= MAX_SHOWN_CHARS ? `the string ${JSON.stringify(v)}` : `the string ${JSON.stringify(v.slice(0, MAX_SHOWN_CHARS))}… (${v.length} characters)`
    case 'number':
      return Object.is(v, -0) ? '-0' : String(v)
    case 'bigint':
      return `the bigint ${v}n`
    case 'boolean':
    case 'undefined':
      return String(v)
    case 'symbol':
      return 'a symbol'
    case 'function':
      return 'a function'
  }
  if (v === null) return 'null'
  if (Array.isArray(v)) return `an array of ${plural(v.length, 'item')}`
  const proto: unknown = Object.getPrototypeOf(v)
  if (proto === null || proto === Object.prototype) return 'an object'
  const name: unknown = (proto as { constructor?: { name?: unknown } }).constructor?.name
  return typeof name === 'string' && name !== '' && name !== 'Object' ? withArticle(name) : 'an object'
}

/** `a Map`, `an Error` (a leading vowel letter; `a Uint8Array`, said "you"). */
function withArticle(name: string): string {
  return `${/^[AEIOaeio]/.test(name) ? 'an' : 'a'} ${name}`
}
