/**
 * W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
 * Admission Policy", 2017; the design of Caffeine), with a window that adapts
 * to the workload.
 *
 * - New entries join the *window*, an LRU holding a share of the budget (1%
 *   to start). The rest is the *main* cache, a segmented LRU: entries enter
 *   its *probation* segment, a hit there promotes to *protected* (80% of
 *   main), and protected's overflow goes back to probation.
 * - A {@link FrequencySketch} counts every request's key (4-bit counters,
 *   ~8 bytes per entry, halved every 10x capacity requests).
 * - When the cache is full and the window's oldest entry (the candidate) must
 *   leave it, it duels main's victim (probation's oldest): the one the sketch
 *   says is less frequent is evicted, the other stays (the candidate in
 *   probation). So a key must have been requested more than the entry it
 *   would displace; one-hit wonders pass through the window and leave.
 *
 * Two additions, from S3-FIFO's and ARC's ghosts, each because the measured
 * traces needed it:
 *
 * - **A second chance for rejected keys.** A candidate that lost its duel is
 *   remembered (its hash, in a {@link Ghost} as large as the cache); if it is
 *   a candidate again while remembered, it is admitted whatever the sketch
 *   says. The sketch forgets slowly (over 10x capacity requests), so when the
 *   working set moves, main's victims keep stale counts that beat the new hot
 *   keys; a key that comes back within a cache's worth of rejections is hot
 *   now. Without it (the window still adapting): cloudphysics at 4,897
 *   entries 23.41%, at 25% of its keys 31.90%, 0.89 below LRU; with it
 *   23.95% and 32.90% (policy-level replay).
 * - **An adaptive window, ARC's way.** The window grows when a rejected key
 *   comes back (recency would have kept it) and shrinks when a key main
 *   evicted for a candidate comes back (frequency would have kept it), by
 *   ARC's step: one entry times the ratio of the two ghosts' sizes, at least
 *   one. Caffeine adapts by hill climbing on the hit rate, sampled every 10x
 *   capacity requests; on short traces that is too few samples to move (2 in
 *   all of cloudphysics at 4,897 entries), and on lirs-sprite, which wants
 *   an LRU-sized window, too slow (a simulation of Caffeine's climber with
 *   the rest of this design: 84.9% against LRU's 86.48%). A ghost hit
 *   is a signal on every miss. The window shrinks at half the rate it grows:
 *   with equal steps it overshot toward LRU on loop-like traces at large
 *   sizes (lirs-sprite and cloudphysics at 25% of their keys fell 0.7 points
 *   below LRU); the figures for every policy and size are in docs/policies.md.
 *
 * Hash flooding: a candidate at least as frequent as 6 that loses its duel is
 * still admitted 1 time in 128 (a deterministic xorshift), as Caffeine does,
 * so that keys made artificially frequent cannot hold main forever.
 *
 * Budgets: the window and the segments are shares of the entry budget when
 * there is one, else of the byte budget (in charged bytes, and a step is
 * then an average entry's charge).
 *
 * State per slot: links (8 bytes), segment (1), key hash (4), the charge (4)
 * with a byte budget; the sketch 8 to 16 bytes per entry; the two ghosts ~13
 * bytes per remembered key, up to one per entry each.
 */
import { regrow, reserve } from '../slot_arrays.js'
import { Ghost } from './ghost.js'
import { NIL } from './policy.js'
import type { Policy, PolicySizing } from './policy.js'
import { SlotQueues } from './queues.js'
import { FrequencySketch } from './sketch.js'

/** Segments (queue numbers in {@link SlotQueues}); a slot's `#seg` holds its segment + 1, 0 when none. */
const WINDOW = 0
const PROBATION = 1
const PROTECTED = 2

const INITIAL_WINDOW = 0.01
const PROTECTED_SHARE = 0.8
/** Window steps (in entries, times ARC's ghost ratio): growing, shrinking. */
const GROW = 1
const SHRINK = 0.5
/**
 * With an entry budget the sketch is sized for it from the start; with only a
 * byte budget it starts sized for this many entries and doubles (forgetting
 * its counts) whenever the entries outgrow it. Why not grow it with an entry
 * budget too, as Caffeine does while its cache fills: the counts lost at each
 * doubling and the faster halving of a small sketch moved the hit ratios by
 * up to 3 points (lirs-ps at 308 entries: 53.22% sized at once, 50.25% grown).
 */
const SKETCH_START = 64
/** Caffeine's hash-flooding guard: a loser this frequent is admitted 1 in 128. */
const FLOOD_FREQUENCY = 6

export class TinyLfuPolicy implements Policy {
  readonly #q: SlotQueues
  #seg: Uint8Array
  /** Whether shares count charged bytes (no entry budget) rather than entries. */
  readonly #weighs: boolean
  /** The budget the shares are of: entries, or bytes when {@link #weighs}. */
  readonly #budget: number
  readonly #maxEntries: number
  /** The window's share now, in the budget's unit, as adapted (fractional steps add up)... */
  #window: number
  /** ...and as applied: whole entries with an entry budget. */
  #windowLimit: number
  readonly #sketch: FrequencySketch
  /** Candidates that lost their duel, and main entries evicted for a candidate. */
  readonly #rejected: Ghost
  readonly #displaced: Ghost
  #random = 0x2545f491

  readonly screens: boolean = false

  constructor(sizing: PolicySizing) {
    const { capacity, limit, maxEntries, maxBytes } = sizing
    this.#weighs = !Number.isFinite(maxEntries) && Number.isFinite(maxBytes)
    this.#q = new SlotQueues(3, capacity, limit, this.#weighs)
    this.#seg = reserve(Uint8Array, capacity, limit)
    this.#maxEntries = maxEntries
    this.#budget = this.#weighs ? maxBytes : maxEntries
    this.#window = Number.isFinite(this.#budget) ? Math.max(1, this.#budget * INITIAL_WINDOW) : Infinity
    this.#windowLimit = this.#weighs ? this.#window : Math.ceil(this.#window)
    this.#sketch = new FrequencySketch(Number.isFinite(maxEntries) ? maxEntries : SKETCH_START)
    const ghostEntries = Number.isFinite(maxEntries) ? maxEntries : Infinity
    const ghostBytes = this.#weighs ? maxBytes : Infinity
    this.#rejected = new Ghost(ghostEntries, ghostBytes)
    this.#displaced = new Ghost(ghostEntries, ghostBytes)
  }

  insert(slot: number, hash: number, charge: number): void {
    this.#sketch.increment(hash)
    this.#adapt(hash)
    this.#seg[slot] = WINDOW + 1
    const q = this.#q
    q.add(WINDOW, slot, hash, charge)
    const entries = q.count(WINDOW) + q.count(PROBATION) + q.count(PROTECTED)
    if (entries > this.#sketch.capacity) this.#sketch.resize(Math.min(this.#maxEntries, 2 * this.#sketch.capacity))
    // The window over its share (the cache not full, or the window shrank): its oldest go to probation.
    while (q.weight(WINDOW) > this.#windowLimit && q.count(WINDOW) > 1) {
      const c = q.head(WINDOW)
      this.#seg[c] = PROBATION + 1
      q.move(WINDOW, PROBATION, c)
    }
    this.#demoteProtected()
  }

  update(slot: number, charge: number): void {
    this.#q.recharge(this.#seg[slot]! - 1, slot, charge)
    this.access(slot)
    // A protected entry that grew may put protected over its share.
    this.#demoteProtected()
  }

  access(slot: number): void {
    this.#sketch.increment(this.#q.hash(slot))
    const seg = this.#seg[slot]! - 1
    if (seg === PROBATION) {
      this.#seg[slot] = PROTECTED + 1
      this.#q.move(PROBATION, PROTECTED, slot)
      this.#demoteProtected()
    } else {
      this.#q.move(seg, seg, slot)
    }
  }

  remove(slot: number, _reason: number): void {
    this.#q.unlink(this.#seg[slot]! - 1, slot)
    this.#seg[slot] = 0
  }

  victim(keep: number): number {
    const q = this.#q
    if (q.count(WINDOW) + q.count(PROBATION) + q.count(PROTECTED) <= (keep === NIL ? 0 : 1)) return NIL
    const main = this.#mainVictim(keep)
    const candidate = q.head(WINDOW)
    // The entry arriving will push the window's oldest out: the duel. Its charge is not known here
    // (victims are chosen before it joins); with a byte budget it is taken to be an average entry's.
    const arriving = this.#weighs ? this.#averageCharge() : 1
    if (candidate !== NIL && candidate !== keep && q.weight(WINDOW) + arriving > this.#windowLimit) {
      if (main === NIL) return candidate
      const c = q.hash(candidate)
      if (this.#rejected.take(c) || this.#admits(c, q.hash(main))) {
        this.#seg[candidate] = PROBATION + 1
        q.move(WINDOW, PROBATION, candidate)
        this.#displaced.add(q.hash(main), q.slotWeight(main))
        return main
      }
      this.#rejected.add(c, q.slotWeight(candidate))
      return candidate
    }
    if (main !== NIL) return main
    // Only the window holds entries besides keep.
    if (candidate === NIL) return NIL
    return candidate !== keep ? candidate : q.next(candidate)
  }

  admit(_slot: number, _charge: number): boolean {
    return true
  }

  clear(): void {
    this.#q.clear()
    this.#sketch.clear()
    this.#rejected.clear()
    this.#displaced.clear()
  }

  grow(capacity: number): void {
    this.#q.grow(capacity)
    this.#seg = regrow(Uint8Array, this.#seg, capacity)
  }

  /** Probation oldest first, then protected, then the window: roughly the order entries would leave in. */
  first(): number {
    const q = this.#q
    if (q.head(PROBATION) !== NIL) return q.head(PROBATION)
    return q.head(PROTECTED) !== NIL ? q.head(PROTECTED) : q.head(WINDOW)
  }

  next(slot: number): number {
    const n = this.#q.next(slot)
    if (n !== NIL) return n
    const q = this.#q
    const seg = this.#seg[slot]! - 1
    if (seg === PROBATION) {
      if (q.head(PROTECTED) !== NIL) return q.head(PROTECTED)
      return q.head(WINDOW)
    }
    return seg === PROTECTED ? q.head(WINDOW) : NIL
  }

  stateBytes(): number {
    return (
      this.#q.stateBytes() +
      this.#seg.byteLength +
      this.#sketch.stateBytes() +
      this.#rejected.stateBytes() +
      this.#displaced.stateBytes()
    )
  }

  /** @internal The window's share (entries, or bytes with a byte budget only) and each segment's entries, for tests. */
  sizes(): { window: number; windowEntries: number; probation: number; protected: number; rejected: number; displaced: number } {
    const q = this.#q
    return { window: this.#windowLimit, windowEntries: q.count(WINDOW), probation: q.count(PROBATION), protected: q.count(PROTECTED), rejected: this.#rejected.size, displaced: this.#displaced.size }
  }

  check(slots: number): void {
    this.#q.check(WINDOW, 'window', slots, (s) => this.#seg[s] === WINDOW + 1)
    this.#q.check(PROBATION, 'probation', slots, (s) => this.#seg[s] === PROBATION + 1)
    this.#q.check(PROTECTED, 'protected', slots, (s) => this.#seg[s] === PROTECTED + 1)
    if (this.#q.weight(PROTECTED) > this.#protectedShare() && this.#q.count(PROTECTED) > 0) throw new Error('protected is over its share')
    this.#rejected.check()
    this.#displaced.check()
  }

  /** Main's victim: probation's oldest, else protected's, never `keep`; NIL when main holds no other. */
  #mainVictim(keep: number): number {
    const q = this.#q
    let v = q.head(PROBATION)
    if (v === keep && v !== NIL) v = q.next(v)
    if (v !== NIL) return v
    v = q.head(PROTECTED)
    if (v === keep && v !== NIL) v = q.next(v)
    return v
  }

  /** Whether a candidate of hash `c` beats main's victim of hash `v`: more frequent, or (1 in 128) frequent enough. */
  #admits(c: number, v: number): boolean {
    const fc = this.#sketch.estimate(c)
    if (fc > this.#sketch.estimate(v)) return true
    if (fc < FLOOD_FREQUENCY) return false
    let x = this.#random
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#random = x
    return (x & 127) === 0
  }

  /** A miss of `hash`: a rejected key back grows the window, a displaced one shrinks it (ARC's rule). */
  #adapt(hash: number): void {
    if (!Number.isFinite(this.#budget)) return
    const rejected = this.#rejected.size
    const displaced = this.#displaced.size
    let step = 0
    if (this.#rejected.has(hash)) step = GROW * Math.max(1, displaced / Math.max(1, rejected))
    else if (this.#displaced.take(hash)) step = -SHRINK * Math.max(1, rejected / Math.max(1, displaced))
    else return
    const unit = this.#weighs ? this.#averageCharge() : 1
    const max = this.#budget - unit
    this.#window = Math.min(max, Math.max(unit, this.#window + step * unit))
    this.#windowLimit = this.#weighs ? this.#window : Math.ceil(this.#window)
  }

  #protectedShare(): number {
    const main = this.#budget - this.#windowLimit
    return this.#weighs ? main * PROTECTED_SHARE : Math.floor(main * PROTECTED_SHARE)
  }

  /** Protected over its share: its oldest go back to probation's newest end. */
  #demoteProtected(): void {
    const q = this.#q
    const share = this.#protectedShare()
    while (q.weight(PROTECTED) > share && q.count(PROTECTED) > 0) {
      const d = q.head(PROTECTED)
      this.#seg[d] = PROBATION + 1
      q.move(PROTECTED, PROBATION, d)
    }
  }

  #averageCharge(): number {
    const q = this.#q
    const n = q.count(WINDOW) + q.count(PROBATION) + q.count(PROTECTED)
    return n === 0 ? 1 : (q.weight(WINDOW) + q.weight(PROBATION) + q.weight(PROTECTED)) / n
  }
}
