// The examples' stand-in for a real database: a few users in a JSON file in a
// temporary directory, with an artificial 50 ms per read so that what the cache
// saves shows. It is a file, not an in-memory object, so that every thread and
// every process of an example sees the same data. Replace it with your own
// data access; nothing in it is specific to shardcache.
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const READ_DELAY_MS = 50

const SEED = [
  { id: 1, name: 'Ada Lovelace', email: 'ada@example.com' },
  { id: 2, name: 'Grace Hopper', email: 'grace@example.com' },
  { id: 3, name: 'Alan Turing', email: 'alan@example.com' },
]

export class UsersDb {
  /** Creates a fresh database file seeded with three users. */
  static async create() {
    const dir = await mkdtemp(join(tmpdir(), 'shardcache-example-'))
    const db = new UsersDb(join(dir, 'users.json'))
    await db.#write(Object.fromEntries(SEED.map((u) => [u.id, u])))
    return db
  }

  /** Opens an existing database file (another thread's or process's `db.file`). */
  constructor(file) {
    this.file = file
  }

  /** The user, or null when there is none: slow, like a real query. */
  async find(id) {
    await sleep(READ_DELAY_MS)
    return (await this.#read())[id] ?? null
  }

  /** Merges `fields` into the user and returns the result, or null when there is none. */
  async update(id, fields) {
    const users = await this.#read()
    if (users[id] === undefined) return null
    users[id] = { ...users[id], ...fields, id }
    await this.#write(users)
    return users[id]
  }

  /** Deletes the database file and its directory. */
  async remove() {
    await rm(dirname(this.file), { recursive: true, force: true })
  }

  async #read() {
    return JSON.parse(await readFile(this.file, 'utf8'))
  }

  // Written aside and renamed, so that a reader in another process never sees half a file.
  async #write(users) {
    const tmp = `${this.file}.${process.pid}.${Math.random().toString(36).slice(2)}`
    await writeFile(tmp, JSON.stringify(users))
    await rename(tmp, this.file)
  }
}
