/**
 * `loadConfig(path)`: createCache's options from a YAML or JSON file, so that
 * deployments configure the cache without code. Parsed with `yaml` (JSON is
 * YAML, so either works; `.json` files are parsed as JSON for exact errors),
 * then validated by the same code as createCache's options, whose messages
 * name the offending path (`regions.sessions.maxBytes must be ...`).
 */
import { readFileSync } from 'node:fs'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { InvalidOptionError } from './errors.js'
import { resolveOptions } from './options.js'
import type { CacheOptions } from './options.js'

/**
 * Reads and validates a config file; returns the options for `createCache`.
 * Throws `E_INVALID_OPTION` naming the file (and the line, for a syntax
 * error, or the option's path, for a bad value). Functions (a codec) cannot
 * come from a file: add them to the returned object.
 *
 * @example
 * ```ts
 * const cache = await createCache(loadConfig('cache.yaml'))
 * ```
 */
export function loadConfig(path: string): CacheOptions {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (cause) {
    throw new InvalidOptionError(`config file ${JSON.stringify(path)} cannot be read: ${(cause as Error).message}`, { cause })
  }
  let parsed: unknown
  try {
    parsed = path.toLowerCase().endsWith('.json') ? JSON.parse(text) : parseYaml(text)
  } catch (cause) {
    const where = cause instanceof YAMLParseError && cause.linePos !== undefined ? ` at line ${cause.linePos[0].line}, column ${cause.linePos[0].col}` : ''
    throw new InvalidOptionError(`config file ${JSON.stringify(path)} is not valid ${path.toLowerCase().endsWith('.json') ? 'JSON' : 'YAML'}${where}: ${(cause as Error).message.split('\n')[0]}`, { cause })
  }
  if (parsed === null || parsed === undefined) parsed = {}
  try {
    resolveOptions(parsed)
  } catch (err) {
    ;(err as Error).message = `${path}: ${(err as Error).message}`
    throw err
  }
  return parsed as CacheOptions
}
