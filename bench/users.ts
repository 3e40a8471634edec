/**
 * The records the server scenarios cache: users as a web API returns them,
 * built with fresh strings each time, like a row just read from a database.
 * Shared by the event-loop scenario (event_loop_child.ts) and the real-server
 * one (server_app.ts).
 */

export interface User {
  id: number
  /** Bumped by each write of the same id, so a stale read is visible. */
  version: number
  name: string
  email: string
  createdAt: string
  role: string
  country: string
  tags: string[]
  /** Only in the larger shape ({@link makeUser}'s `bioBytes`). */
  bio?: string
}

const SURNAMES = ['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Rodriguez', 'Martinez']
const ROLES = ['viewer', 'editor', 'admin', 'owner']
const COUNTRIES = ['DE', 'FR', 'US', 'BR', 'JP', 'IN', 'NG', 'AU']
const EPOCH = Date.UTC(2020, 0, 1)
const WORDS = ['cache', 'shard', 'server', 'latency', 'memory', 'thread', 'garbage', 'request', 'worker', 'record']

/**
 * User `id` at `version`: ~200 bytes as JSON; with `bioBytes` > 0 also a
 * free-text bio of half to one and a half times that many bytes, by id (the
 * larger records of the GC-heavy regime).
 */
export function makeUser(id: number, version = 0, bioBytes = 0): User {
  const surname = SURNAMES[id % SURNAMES.length]!
  const user: User = {
    id,
    version,
    name: `User ${id} ${surname}`,
    email: `user.${id}.${surname.toLowerCase()}@example-${id % 97}.com`,
    createdAt: new Date(EPOCH + id * 1000).toISOString(),
    role: ROLES[id % ROLES.length]!,
    country: COUNTRIES[id % COUNTRIES.length]!,
    tags: [`group-${id % 13}`, `plan-${id % 5}`],
  }
  if (bioBytes > 0) {
    const phrase = `${WORDS[id % WORDS.length]!} ${WORDS[(id >>> 3) % WORDS.length]!}-${id % 1000}; `
    const target = bioBytes / 2 + (Math.imul(id, 0x9e3779b1) >>> 0) % bioBytes // bioBytes/2 to 3x/2, by id
    user.bio = `About user ${id}: ${phrase.repeat(Math.max(1, Math.round(target / phrase.length)))}`
  }
  return user
}
