/**
 * `shardcache/postgres`: PostgreSQL for shardcache, in two roles.
 *
 * {@link postgresTier} is a cache tier (`tiers: [{ tier: postgresTier(...) }]`):
 * entries in a table (by default `cache_tier`), with their TTL as
 * `expires_at`, their tags in a `text[]` column (indexed), and every
 * operation one SQL statement. Prefer it to `@keyv/postgres` as a tier when
 * the server may restart: that package's internal pool has no `'error'`
 * listener, so a server that drops its idle connections ends the process
 * (node-postgres emits the drop as an `'error'` event on the pool).
 *
 * {@link postgresStore} is a write-through store, for a region's
 * `writeThrough.store`. It upserts each write into a table (by default
 * `cache_storage`, created when missing) keyed by region and key:
 *
 * ```ts
 * import pg from 'pg'
 * import { postgresStore } from 'shardcache/postgres'
 * const store = postgresStore({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) })
 * const cache = await createCache({ regions: { users: { writeThrough: { store, mode: 'sync' } } } })
 * // a loader that reads what the store holds:
 * await cache.region('users').getOrCompute('42', () => store.read('users', '42'))
 * ```
 *
 * Values that are not binary are kept as `jsonb` in the `value` column (so SQL
 * can query them); Buffers and Uint8Arrays as `bytea` in `bytes`. An entry's
 * TTL becomes `expires_at` (null without one): {@link PostgresStore.read}
 * ignores expired rows, and {@link PostgresStore.deleteExpired} removes them.
 *
 * It takes any `pg` pool or client (anything with `query(text, values)`), or a
 * `connectionString`, for which it creates a `pg.Pool` (the `pg` package is
 * then loaded, on first use: install it beside shardcache).
 *
 * @packageDocumentation
 * @module shardcache/postgres
 */
// No top-level await in this module's graph: see src/index.ts.
import { InvalidOptionError } from '../errors.js'
import { describe } from '../messages.js'
import type { WriteInfo, WriteStore } from '../options/write_through.js'
import type { Tier, TierEntry, TierHit } from '../tiers/tier.js'

/** What the store needs of a `pg` pool or client. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>
}

/** Options of {@link postgresStore} and {@link postgresTier}: `pool` or `connectionString`. */
export interface PostgresStoreOptions {
  /** A `pg.Pool` or `pg.Client` (or anything with its `query`). The store does not end it. */
  pool?: Queryable
  /** Creates a `pg.Pool` on this URL (ended by {@link PostgresStore.close}). */
  connectionString?: string
  /** The table, optionally schema-qualified (`app.cache_storage`). @default 'cache_storage' (a tier's: 'cache_tier') */
  table?: string
  /** Creates the table (and its index on `expires_at`) if it does not exist, before the first call. @default true */
  createTable?: boolean
}

/** A PostgreSQL table as a write-through store: {@link WriteStore} plus reads and upkeep. */
export interface PostgresStore extends WriteStore {
  /** The table's name, as given. */
  readonly table: string
  /** The value stored under `region` and `key`, or undefined (absent or expired): what a loader returns. */
  read(region: string, key: string): Promise<unknown>
  /** Creates the table if needed (done before the first call anyway); rejects when PostgreSQL cannot be reached. */
  ready(): Promise<void>
  /** Removes the expired rows; resolves how many. */
  deleteExpired(): Promise<number>
  /** Ends the pool it created from `connectionString` (a given pool is left to its owner). */
  close(): Promise<void>
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/

/** A pool (given, or created from a connection string), and its table created once. */
interface Access {
  table: string
  query(text: string, values: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>
  ready(): Promise<void>
  close(): Promise<void>
}

function access(options: PostgresStoreOptions, defaultTable: string, create: (table: string) => string[]): Access {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError(`options must be an object like { pool } or { connectionString } (got ${describe(options)})`)
  const { pool, connectionString, table = defaultTable, createTable = true } = options
  if ((pool === undefined) === (connectionString === undefined)) throw new InvalidOptionError('options: give exactly one of pool and connectionString')
  if (pool !== undefined && (pool === null || typeof pool.query !== 'function')) throw new InvalidOptionError(`options.pool must be a pg Pool or Client, with query() (got ${describe(pool)})`)
  if (connectionString !== undefined && (typeof connectionString !== 'string' || connectionString === '')) {
    throw new InvalidOptionError(`options.connectionString must be a non-empty string (got ${describe(connectionString)})`)
  }
  if (typeof table !== 'string' || !IDENTIFIER.test(table)) {
    throw new InvalidOptionError(`options.table must be a table name of letters, digits and underscores, optionally schema.table (got ${describe(table)})`)
  }
  if (typeof createTable !== 'boolean') throw new InvalidOptionError(`options.createTable must be a boolean (got ${describe(createTable)})`)

  let own: Promise<Queryable & { end(): Promise<void> }> | undefined
  const client = (): Promise<Queryable> => {
    if (pool !== undefined) return Promise.resolve(pool)
    own ??= import('pg').then(
      (m) => {
        const p = new m.default.Pool({ connectionString })
        // An idle connection the server closed (a restart) is reported here: the next query reconnects.
        p.on('error', () => {})
        return p as unknown as Queryable & { end(): Promise<void> }
      },
      (err: unknown) => {
        throw new InvalidOptionError(`options.connectionString needs the pg package: npm install pg (${(err as Error).message})`)
      },
    )
    return own
  }
  let created: Promise<void> | undefined
  const ready = (): Promise<void> => {
    if (!createTable) return client().then(() => {})
    // A failed creation is tried again by the next call.
    created ??= client()
      .then(async (c) => {
        for (const statement of create(table)) await c.query(statement)
      })
      .catch((err: unknown) => {
        created = undefined
        throw err
      })
    return created
  }
  return {
    table,
    async query(text, values) {
      await ready()
      return (await client()).query(text, values)
    },
    ready,
    async close() {
      const p = own
      own = undefined
      created = undefined
      if (p !== undefined) await (await p.catch(() => undefined))?.end()
    },
  }
}

/** An index name for `table` (schema-qualified names keep their schema). */
const indexName = (table: string, what: string): string => `${table.split('.').pop()}_${what}`

/** A store writing into a PostgreSQL table (see the module's description). */
export function postgresStore(options: PostgresStoreOptions): PostgresStore {
  const db = access(options, 'cache_storage', (table) => [
    `CREATE TABLE IF NOT EXISTS ${table} (region text NOT NULL, key text NOT NULL, value jsonb, bytes bytea, ` +
      `expires_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (region, key))`,
  ])
  const table = db.table
  const query = db.query
  const upsert =
    `INSERT INTO ${table} (region, key, value, bytes, expires_at, updated_at) ` +
    `VALUES ($1, $2, $3::jsonb, $4, CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() + $5::float8 * interval '1 millisecond' END, now()) ` +
    `ON CONFLICT (region, key) DO UPDATE SET value = excluded.value, bytes = excluded.bytes, expires_at = excluded.expires_at, updated_at = excluded.updated_at`

  return {
    table,
    async write(key: string, value: unknown, info: WriteInfo): Promise<void> {
      const binary = value instanceof Uint8Array
      const json = binary ? null : JSON.stringify(value)
      await query(upsert, [info.region, key, json, binary ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : null, info.ttlMs ?? null])
    },
    async delete(key: string, info: { region: string }): Promise<void> {
      await query(`DELETE FROM ${table} WHERE region = $1 AND key = $2`, [info.region, key])
    },
    async read(region: string, key: string): Promise<unknown> {
      const r = await query(`SELECT value, bytes FROM ${table} WHERE region = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())`, [region, key])
      const row = r.rows[0]
      if (row === undefined) return undefined
      return row.bytes !== null && row.bytes !== undefined ? row.bytes : row.value
    },
    ready: db.ready,
    async deleteExpired(): Promise<number> {
      const r = await query(`DELETE FROM ${table} WHERE expires_at <= now()`, [])
      return r.rowCount ?? 0
    },
    close: db.close,
  }
}

/** A PostgreSQL table as a cache tier: the {@link Tier} contract, plus its upkeep. */
export interface PostgresTier extends Tier {
  /** The table's name, as given. */
  readonly table: string
  /** Creates the table and its indexes if needed (done before the first call anyway). */
  ready(): Promise<void>
  /** Removes the expired rows (reads skip them anyway); resolves how many. */
  deleteExpired(): Promise<number>
  /** Ends the pool it created from `connectionString` (a given pool is left to its owner); `cache.close()` calls it. */
  close(): Promise<void>
}

/** A cache tier in a PostgreSQL table (see the module's description). */
export function postgresTier(options: PostgresStoreOptions): PostgresTier {
  const db = access(options, 'cache_tier', (table) => [
    `CREATE TABLE IF NOT EXISTS ${table} (region text NOT NULL, key text NOT NULL, bytes bytea NOT NULL, tags text[], expires_at timestamptz, PRIMARY KEY (region, key))`,
    `CREATE INDEX IF NOT EXISTS ${indexName(table, 'tags')} ON ${table} USING gin (tags)`,
  ])
  const table = db.table
  const query = db.query
  const live = '(expires_at IS NULL OR expires_at > now())'
  const upsert =
    `INSERT INTO ${table} (region, key, bytes, tags, expires_at) ` +
    `VALUES ($1, $2, $3, $4, CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() + $5::float8 * interval '1 millisecond' END) ` +
    `ON CONFLICT (region, key) DO UPDATE SET bytes = excluded.bytes, tags = excluded.tags, expires_at = excluded.expires_at`
  return {
    table,
    async get(region: string, key: string): Promise<TierHit | undefined> {
      const r = await query(
        `SELECT bytes, tags, extract(epoch FROM expires_at - now()) * 1000 AS ttl FROM ${table} WHERE region = $1 AND key = $2 AND ${live}`,
        [region, key],
      )
      const row = r.rows[0]
      if (row === undefined) return undefined
      const tags = row.tags as string[] | null
      return { bytes: row.bytes as Buffer, ttlMs: row.ttl === null ? Infinity : Number(row.ttl), ...(tags === null ? {} : { tags }) }
    },
    async set(region: string, key: string, entry: TierEntry): Promise<void> {
      const b = entry.bytes
      const tags = entry.tags === undefined || entry.tags.length === 0 ? null : [...entry.tags]
      await query(upsert, [region, key, Buffer.from(b.buffer, b.byteOffset, b.byteLength), tags, entry.ttlMs === Infinity ? null : entry.ttlMs])
    },
    async delete(region: string, keys: readonly string[]): Promise<void> {
      await query(`DELETE FROM ${table} WHERE region = $1 AND key = ANY($2)`, [region, [...keys]])
    },
    async deleteMatching(region: string, _glob: string, matches: (key: string) => boolean): Promise<void> {
      // The glob is matched here, with the cache's own matcher (SQL LIKE has other rules).
      const r = await query(`SELECT key FROM ${table} WHERE region = $1`, [region])
      const doomed = r.rows.map((row) => row.key as string).filter(matches)
      if (doomed.length > 0) await query(`DELETE FROM ${table} WHERE region = $1 AND key = ANY($2)`, [region, doomed])
    },
    async clear(region: string): Promise<void> {
      await query(`DELETE FROM ${table} WHERE region = $1`, [region])
    },
    async invalidateTag(tag: string): Promise<void> {
      await query(`DELETE FROM ${table} WHERE tags @> ARRAY[$1]::text[]`, [tag])
    },
    async health(): Promise<boolean> {
      await query('SELECT 1', [])
      return true
    },
    ready: db.ready,
    async deleteExpired(): Promise<number> {
      const r = await query(`DELETE FROM ${table} WHERE expires_at <= now()`, [])
      return r.rowCount ?? 0
    },
    close: db.close,
  }
}
