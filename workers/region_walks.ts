/**
 * The region store's operations over many entries, not one key: snapshot
 * pages and scans (by slot index, so a cursor survives changes), keys and
 * glob deletes (in the policy's order), tag invalidation, expiry sweeps,
 * clear, stats, and the invariant check the tests run after every operation.
 * None is on a hot path. The class sits between workers/region_slots.ts (the
 * state and the one-slot primitives) and workers/region_store.ts (per-key
 * reads and writes), whose design notes cover all three.
 */
import { ENTRY_OVERHEAD_BYTES, ShardEvent, tagChargeBytes } from '../src/wire/protocol.js'
import type { Glob } from '../src/wire/glob.js'
import { EXPIRES_F64, Header, SLOT_WORDS, Slot, storeSlotWord } from '../src/wire/shared_region.js'
import { hashBytes } from './key_table.js'
import { F64_PER_SLOT, FLAG_COMPRESSED, FLAG_GRACE, FLAG_LIVE, NIL, RegionSlots, TAG_MASK } from './region_slots.js'
import { emptyRegionStats } from '../src/wire/region_types.js'
import type { RegionShardStats } from '../src/wire/region_types.js'
import type { ExportedEntry } from '../src/wire/records.js'

export abstract class RegionWalks extends RegionSlots {
  #sweepCursor = 0

  /**
   * Up to `count` live entries from slot `cursor` on, for a snapshot, and the
   * cursor to continue from (-1: done); the same walk as {@link scan}. Values
   * are in their stored form when that is plain LZ4 (portable), else raw
   * (a dictionary belongs to this shard). Not reads: no hits, no LRU change.
   */
  exportPage(cursor: number, count: number): { entries: ExportedEntry[]; next: number } {
    const entries: ExportedEntry[] = []
    const now = this.now()
    const slots = this.v.slots
    let slot = Math.max(0, cursor)
    for (; slot < this.used && entries.length < count; slot++) {
      const flags = slots[slot * SLOT_WORDS + Slot.FLAGS]!
      if ((flags & FLAG_LIVE) === 0) continue
      const expiresAt = this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]!
      if (expiresAt <= now) continue
      const stored = this.stored(slot)
      let bytes: Uint8Array = stored
      let compressed = (flags & FLAG_COMPRESSED) !== 0
      if (compressed && this.dictIds[slot] !== 0) {
        const raw = this.read(slot)
        if (raw === undefined) continue // corrupt: dropped and counted by read
        bytes = raw
        compressed = false
      }
      entries.push({
        key: this.keyTable.keyString(slot),
        tag: flags & TAG_MASK,
        compressed,
        rawSize: this.raw[slot]!,
        bytes: new Uint8Array(bytes),
        expiresAt,
        freshUntil: (flags & FLAG_GRACE) !== 0 ? this.fresh![slot]! : undefined,
        metadata: this.metas[slot],
        tags: this.tags.of(slot),
      })
    }
    return { entries, next: slot >= this.used ? -1 : slot }
  }

  /**
   * Up to `count` live keys (matching `glob`) from slot `cursor` on, and the
   * cursor to continue from (-1: done). A key keeps its slot for as long as
   * it is present (updates reuse it), so a key present for a whole scan is
   * returned exactly once; keys added or removed meanwhile may or may not be.
   */
  scan(cursor: number, count: number, glob: Glob | undefined): { keys: string[]; next: number } {
    const keys: string[] = []
    const now = this.now()
    const slots = this.v.slots
    let slot = Math.max(0, cursor)
    for (; slot < this.used && keys.length < count; slot++) {
      if ((slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) === 0) continue
      if (this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now || this.stale(slot)) continue
      const key = this.keyTable.keyString(slot)
      if (glob === undefined || glob.matches(key)) keys.push(key)
    }
    return { keys, next: slot >= this.used ? -1 : slot }
  }

  /** Live keys in the policy's order, optionally filtered by a glob. Expired entries met on the way are removed. */
  keys(glob?: Glob): string[] {
    const out: string[] = []
    const now = this.now()
    const policy = this.policy
    for (let slot = policy.first(); slot !== NIL; ) {
      const next = policy.next(slot)
      if (this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now) {
        this.remove(slot, ShardEvent.EXPIRE)
        this.evictionsExpired++
      } else if (!this.stale(slot)) {
        const key = this.keyTable.keyString(slot)
        if (glob === undefined || glob.matches(key)) out.push(key)
      }
      slot = next
    }
    return out
  }

  /** Removes the live keys matching the glob; returns how many. */
  deleteMatching(glob: Glob): number {
    const now = this.now()
    const policy = this.policy
    let n = 0
    for (let slot = policy.first(); slot !== NIL; ) {
      const next = policy.next(slot)
      if (this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now) {
        this.remove(slot, ShardEvent.EXPIRE)
        this.evictionsExpired++
      } else if (glob.matches(this.keyTable.keyString(slot))) {
        this.remove(slot, ShardEvent.DELETE)
        this.deletes++
        n++
      }
      slot = next
    }
    return n
  }

  /**
   * Removes every entry carrying `tag`; returns how many live ones (expired
   * ones are removed as expirations). Counted as deletes.
   */
  invalidateTag(tag: string): number {
    const slots = this.tags.slotsOf(tag)
    if (slots === undefined) return 0
    const now = this.now()
    let n = 0
    for (const slot of slots) {
      const expired = this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now
      this.remove(slot, expired ? ShardEvent.EXPIRE : ShardEvent.DELETE)
      if (expired) {
        this.evictionsExpired++
      } else {
        this.deletes++
        n++
      }
    }
    return n
  }

  /** The tags of `key`'s live entry (for tests and getEntry). */
  tagsOf(key: string): string[] | undefined {
    const bytes = Buffer.from(key)
    const slot = this.live(bytes, 0, bytes.length)
    return slot === NIL ? undefined : this.tags.of(slot)
  }

  /** Removes every entry; returns how many live entries there were. */
  clear(): number {
    this.cleanupExpired() // expired entries count as expirations, not as cleared
    const live = this.entries
    this.deletes += live
    if ((this.eventMask & ShardEvent.CLEAR) !== 0) this.onEvent(ShardEvent.CLEAR, '')
    const header = this.v.header
    // Odd first, then the epoch (see RegionSlots#begin): readers stand back until it is even again.
    Atomics.add(header, Header.SEQ, 1)
    Atomics.add(header, Header.EPOCH, 1)
    this.keyTable.clear()
    const slots = this.v.slots
    for (let slot = 0; slot < this.used; slot++) {
      // Chunk by chunk, not the whole arena at once: readers inside a read keep theirs until they finish (workers/reader_grace.ts).
      if ((slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) !== 0) this.freeEntry(slot)
      storeSlotWord(slots, slot * SLOT_WORDS, Slot.FLAGS, 0)
    }
    this.metas = []
    this.tags.clear()
    this.free = []
    this.used = 0
    this.policy.clear()
    this.#sweepCursor = 0
    this.entries = this.usedBytes = this.rawBytes = this.storedBytes = this.compressedEntries = 0
    this.dict?.releaseAll()
    Atomics.add(header, Header.SEQ, 1)
    return live
  }

  /** Removes every expired entry now; returns how many. */
  cleanupExpired(): number {
    return this.sweep(Infinity)
  }

  /**
   * Removes expired entries among the next `budget` slots, continuing where the
   * previous call stopped, so a timer can spread the work over many ticks.
   */
  sweep(budget: number): number {
    if (this.entries === 0) return 0
    const now = this.now()
    const end = Math.min(this.used, budget === Infinity ? this.used : this.#sweepCursor + budget)
    let n = 0
    let slot = budget === Infinity ? 0 : this.#sweepCursor
    for (; slot < end; slot++) {
      if ((this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) !== 0 && this.v.slotsF[slot * F64_PER_SLOT + EXPIRES_F64]! <= now) {
        this.remove(slot, ShardEvent.EXPIRE)
        this.evictionsExpired++
        n++
      }
    }
    this.#sweepCursor = slot >= this.used ? 0 : slot
    return n
  }

  // ── stats ────────────────────────────────────────────────────────────────

  stats(): RegionShardStats {
    const s: RegionShardStats = {
      ...emptyRegionStats(this.config),
      hits: this.hits,
      misses: this.misses,
      staleServed: this.staleServed,
      sets: this.sets,
      deletes: this.deletes,
      evictionsSize: this.evictionsSize,
      evictionsExpired: this.evictionsExpired,
      corrupt: this.corrupt,
      entries: this.entries,
      compressedEntries: this.compressedEntries,
      usedBytes: this.usedBytes,
      rawBytes: this.rawBytes,
      storedBytes: this.storedBytes,
      arenaBytes: this.slab.reservedBytes,
      arenaFreeBytes: this.slab.freeBytes,
    }
    if (this.dict !== undefined) s.dictionary = this.dict.stats()
    return s
  }

  resetStats(): void {
    this.hits = this.misses = this.sets = this.deletes = this.staleServed = 0
    this.evictionsSize = this.evictionsExpired = this.corrupt = 0
    this.dict?.resetStats()
  }

  /**
   * @internal Recomputes every gauge from the entries and checks the policy's
   * order and the index agree with them; throws on the first mismatch. For tests.
   */
  checkInvariants(): void {
    let entries = 0
    let used = 0
    let raw = 0
    let stored = 0
    let compressed = 0
    let links = 0
    const dictRefs: number[] = []
    this.policy.check(this.used)
    for (let slot = this.policy.first(); slot !== NIL; slot = this.policy.next(slot)) {
      if ((this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_LIVE) === 0 || !this.keyTable.indexes(slot)) throw new Error(`slot ${slot} is not indexed`)
      const storedSize = this.v.slotsU[slot * SLOT_WORDS + Slot.STORED_SIZE]!
      const meta = this.metas[slot]
      const charge = this.keyTable.keyLength(slot) + storedSize + (meta?.length ?? 0) + tagChargeBytes(this.tags.of(slot)) + ENTRY_OVERHEAD_BYTES
      links += this.tags.checkSlot(slot)
      entries++
      used += charge
      raw += this.raw[slot]!
      stored += storedSize
      if ((this.v.slots[slot * SLOT_WORDS + Slot.FLAGS]! & FLAG_COMPRESSED) !== 0) {
        compressed++
        const id = this.dictIds[slot]!
        if (id !== 0) dictRefs[id] = (dictRefs[id] ?? 0) + 1
      } else if (this.dictIds[slot] !== 0) {
        throw new Error(`slot ${slot} is not compressed but names dictionary ${this.dictIds[slot]}`)
      }
      if (entries > this.used) throw new Error('the order has a cycle')
    }
    this.tags.checkLinks(links)
    const expect = { entries, used, raw, stored, compressed, indexed: entries, freeSlots: this.used - entries }
    const actual = {
      entries: this.entries,
      used: this.usedBytes,
      raw: this.rawBytes,
      stored: this.storedBytes,
      compressed: this.compressedEntries,
      indexed: this.keyTable.size,
      freeSlots: this.free.length,
    }
    for (const k of Object.keys(expect) as (keyof typeof expect)[]) {
      if (expect[k] !== actual[k]) throw new Error(`${k} is ${actual[k]}, entries say ${expect[k]}`)
    }
    if (entries > this.config.maxEntries) throw new Error(`${entries} entries exceed maxEntries ${this.config.maxEntries}`)
    if (used > this.config.maxBytes) throw new Error(`${used} bytes exceed maxBytes ${this.config.maxBytes}`)
    if (this.dict !== undefined) this.dict.checkReferences(Array.from({ length: dictRefs.length }, (_, id) => dictRefs[id] ?? 0))
    else if (dictRefs.length > 0) throw new Error('entries name dictionaries but the region has none')
  }

  /** @internal Flips a byte of a stored value, to test corruption handling. */
  corruptForTest(key: string, offset: number): void {
    const b = Buffer.from(key, 'utf8')
    const slot = this.keyTable.find(b, 0, b.length, hashBytes(b, 0, b.length))
    if (slot < 0) throw new Error(`no entry ${key}`)
    const v = this.stored(slot)
    const at = offset % v.length
    v[at] = v[at]! ^ 0x5a
  }
}
