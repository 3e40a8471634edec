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
 * Two additions, each because the measured traces needed it:
 *
 * - **A second chance for rejected keys** (from S3-FIFO's ghost). A
 *   candidate that lost its duel is remembered (its hash, in a {@link Ghost}
 *   as large as the cache); if it is a candidate again while remembered, it
 *   is admitted whatever the sketch says. The sketch forgets slowly (over
 *   10x capacity requests), so when the working set moves, main's victims
 *   keep stale counts that beat the new hot keys; a key that comes back
 *   within a cache's worth of rejections is hot now (cloudphysics at 4,897
 *   entries, 1% window: 20.9% without, 24.0% with). On loops it costs
 *   (lirs-cpp at 61 entries: 63.8% without, 61.1% with), so it is one of the
 *   things the simulations below choose.
 * - **A window chosen by simulation** ({@link WindowSimulations},
 *   ./window_sim.ts): the same policy at seven fixed window shares, 1% to
 *   99%, runs on a sample of the keys, and the window moves a share at a
 *   time toward whichever hits significantly more. Caffeine climbs on the
 *   hit rate sampled every 10x capacity requests, and an earlier version of
 *   this policy moved the window by ARC's rule on ghost hits; both moved the
 *   wrong way or too late on these traces (ARC's rule: lirs-cpp at 61
 *   entries 24.2% against the static window's 61.1%; the climber: lirs-sprite
 *   at 707, 84.9% against LRU's 86.5%).
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
 * with a byte budget; the sketch 8 to 16 bytes per entry; the ghost ~13 bytes
 * per remembered key, up to one per entry; the simulations a fixed ~300 KB
 * (nine caches of 512 entries) once the budget is over 512 entries, nine
 * times the policy's own state below that.
 */
import { regrow, reserve } from '../slot_arrays.js'
import { Ghost } from './ghost.js'
import { NIL } from './policy.js'
import type { Policy, PolicySizing } from './policy.js'
import { SlotQueues } from './queues.js'
import { FrequencySketch } from './sketch.js'
import { WindowSimulations } from './window_sim.js'

/** Segments (queue numbers in {@link SlotQueues}); a slot's `#seg` holds its segment + 1, 0 when none. */
const WINDOW = 0
const PROBATION = 1
const PROTECTED = 2

const INITIAL_WINDOW = 0.01
const PROTECTED_SHARE = 0.8
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
  #budget: number
  /** The window's share of {@link #budget} now. */
  #share = INITIAL_WINDOW
  readonly #maxEntries: number
  /** The window's share of the budget in its unit (whole entries with an entry budget). */
  #windowLimit = Infinity
  readonly #sketch: FrequencySketch
  /** Whether this policy counts requests in the sketch (not when it is a simulation reading another's). */
  readonly #counts: boolean
  /** Candidates that lost their duel. */
  readonly #rejected: Ghost
  /** What chooses the window's share; undefined when it is fixed. */
  readonly #sims: WindowSimulations | undefined
  /** Whether a rejected candidate that comes back is admitted (the simulations choose). */
  #secondChance = true
  #random = 0x2545f491

  readonly screens: boolean = false

  /**
   * `fixed`: a window share and second chance that stay (no simulations),
   * for the simulations themselves and for tests; with `sketch`, the sketch
   * of the policy simulated, read and never counted here.
   */
  constructor(sizing: PolicySizing, fixed?: { share: number; secondChance: boolean; sketch?: FrequencySketch }) {
    const { capacity, limit, maxEntries, maxBytes } = sizing
    this.#weighs = !Number.isFinite(maxEntries) && Number.isFinite(maxBytes)
    this.#q = new SlotQueues(3, capacity, limit, this.#weighs)
    this.#seg = reserve(Uint8Array, capacity, limit)
    this.#maxEntries = maxEntries
    this.#budget = this.#weighs ? maxBytes : maxEntries
    this.#configure(fixed?.share ?? INITIAL_WINDOW, fixed?.secondChance ?? true)
    this.#counts = fixed?.sketch === undefined
    this.#sketch = fixed?.sketch ?? new FrequencySketch(Number.isFinite(maxEntries) ? maxEntries : SKETCH_START)
    const ghostEntries = Number.isFinite(maxEntries) ? maxEntries : Infinity
    const ghostBytes = this.#weighs ? maxBytes : Infinity
    this.#rejected = new Ghost(ghostEntries, ghostBytes)
    const sketch = this.#sketch
    this.#sims =
      fixed === undefined && Number.isFinite(this.#budget)
        ? new WindowSimulations(this.#weighs ? Infinity : maxEntries, this.#weighs ? maxBytes : Infinity, (s, share, secondChance) => new TinyLfuPolicy(s, { share, secondChance, sketch }))
        : undefined
  }

  insert(slot: number, hash: number, charge: number): void {
    this.#request(hash, charge)
    this.#seg[slot] = WINDOW + 1
    const q = this.#q
    q.add(WINDOW, slot, hash, charge)
    const entries = q.count(WINDOW) + q.count(PROBATION) + q.count(PROTECTED)
    if (this.#counts && entries > this.#sketch.capacity) this.#sketch.resize(Math.min(this.#maxEntries, 2 * this.#sketch.capacity))
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
    const q = this.#q
    this.#request(q.hash(slot), q.slotWeight(slot))
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
      if ((this.#secondChance && this.#rejected.take(c)) || this.#admits(c, q.hash(main))) {
        this.#seg[candidate] = PROBATION + 1
        q.move(WINDOW, PROBATION, candidate)
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
    if (this.#counts) this.#sketch.clear()
    this.#rejected.clear()
    if (this.#sims !== undefined) {
      this.#sims.clear()
      this.#configure(this.#sims.share, this.#sims.secondChance)
    }
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
      (this.#counts ? this.#sketch.stateBytes() : 0) +
      this.#rejected.stateBytes() +
      (this.#sims?.stateBytes() ?? 0)
    )
  }

  /** @internal The window's share (entries, or bytes with a byte budget only) and each segment's entries, for tests. */
  sizes(): { window: number; windowEntries: number; probation: number; protected: number; rejected: number } {
    const q = this.#q
    return { window: this.#windowLimit, windowEntries: q.count(WINDOW), probation: q.count(PROBATION), protected: q.count(PROTECTED), rejected: this.#rejected.size }
  }

  check(slots: number): void {
    this.#q.check(WINDOW, 'window', slots, (s) => this.#seg[s] === WINDOW + 1)
    this.#q.check(PROBATION, 'probation', slots, (s) => this.#seg[s] === PROBATION + 1)
    this.#q.check(PROTECTED, 'protected', slots, (s) => this.#seg[s] === PROTECTED + 1)
    if (this.#q.weight(PROTECTED) > this.#protectedShare() && this.#q.count(PROTECTED) > 0) throw new Error('protected is over its share')
    this.#rejected.check()
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

  /** A request for `hash` (charged `charge`): counted, shown to the simulations, and the window set to their choice. */
  #request(hash: number, charge: number): void {
    if (!this.#counts) return
    this.#sketch.increment(hash)
    const sims = this.#sims
    if (sims === undefined) return
    if (sims.request(hash, charge)) {
      this.#configure(sims.share, sims.secondChance)
      this.#demoteProtected()
    }
  }

  /**
   * A new byte budget: the window and protected shares follow it. The
   * sketch, the ghost and the window simulations keep their sizes (they
   * judge frequencies and shares, which a budget moved between shards
   * changes little).
   */
  resize(maxBytes: number): void {
    if (!this.#weighs) return
    this.#budget = maxBytes
    this.#configure(this.#share, this.#secondChance)
    this.#demoteProtected()
  }

  /** The window at `share` of the budget (whole entries with an entry budget), and the second chance on or off. */
  #configure(share: number, secondChance: boolean): void {
    this.#share = share
    const window = Number.isFinite(this.#budget) ? Math.max(1, this.#budget * share) : Infinity
    this.#windowLimit = this.#weighs ? window : Math.ceil(window)
    this.#secondChance = secondChance
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
