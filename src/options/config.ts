/**
 * `loadConfig(path)`: createCache's options from a YAML or JSON file, so that
 * deployments configure the cache without code. Parsed with `yaml` (JSON is
 * YAML, so either works; `.json` files are parsed as JSON for exact errors),
 * then validated by the same code as createCache's options, whose messages
 * name the offending path (`regions.sessions.maxBytes must be ...`).
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { InvalidOptionError } from '../errors.js'
import { resolveOptions } from './cache.js'
import type { CacheOptions } from './cache.js'

/**
 * `yaml` is loaded by the first loadConfig of a YAML file, not by
 * `import 'shardcache'`: most applications configure the cache in code and
 * should not pay for a parser they never call. loadConfig is synchronous, so
 * the lazy load is a require() (yaml ships CommonJS for Node, the same file its
 * `import` resolves to, so there is one copy and `instanceof` holds).
 */
const require = createRequire(import.meta.url)
type Yaml = typeof import('yaml')
let loadedYaml: Yaml | undefined
function loadYaml(): Yaml {
  return (loadedYaml ??= require('yaml') as Yaml)
}

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
  const json = path.toLowerCase().endsWith('.json')
  const yaml = json ? undefined : loadYaml() // outside the try: a yaml that fails to load is not a syntax error of the file
  try {
    parsed = yaml === undefined ? JSON.parse(text) : yaml.parse(text)
  } catch (cause) {
    const where = yaml !== undefined && cause instanceof yaml.YAMLParseError && cause.linePos !== undefined ? ` at line ${cause.linePos[0].line}, column ${cause.linePos[0].col}` : ''
    throw new InvalidOptionError(`config file ${JSON.stringify(path)} is not valid ${json ? 'JSON' : 'YAML'}${where}: ${(cause as Error).message.split('\n')[0]}`, { cause })
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
