/**
 * Miniature simulations that choose W-TinyLFU's window (./tinylfu.ts): the
 * same policy with a few fixed window shares, each run on a sample of the
 * keys at the sampled share of the budget, and the real window set to the
 * share of whichever has hit most lately.
 *
 * Why simulate rather than climb: which window a trace wants depends on its
 * size as much as on its keys (lirs-sprite wants 3% at 70 entries and 50% at
 * 707; lirs-cpp wants 1% at 61 and loses 40 points at 90%), and the shares
 * between are not a hill: a climber on the hit rate needs many samples to
 * move and a rule on ghost hits (ARC's) moved the wrong way on loops. Running
 * each share and comparing hits is the "mini-simulation" of Einziger, Eytan,
 * Friedman and Manes ("Adaptive Software Cache Management", Middleware 2018),
 * on Waldspurger et al.'s spatial sampling ("Cache Modeling and Optimization
 * using Miniature Simulations", USENIX ATC 2017): a cache of `C` entries and
 * the keys whose hash falls in a `R` share behave like a cache of `R x C`
 * over those keys alone, so each simulation costs `R x C` entries of state
 * and `R` of the requests.
 *
 * The simulations do not count: they read the real policy's frequency
 * sketch, which has seen every key (the sampled keys' counts are what their
 * own sketch would hold, and it halves on the same schedule relative to
 * their size).
 */
import { EMPTY, HashIndex } from './hash_index.js'
import { NIL } from './policy.js'
import type { Policy, PolicySizing } from './policy.js'
import { regrow, reserve } from '../slot_arrays.js'

/**
 * The window shares simulated (of the budget). Spaced so that every trace
 * measured has a share near its best (lirs-cpp at 61 entries wants 1%,
 * lirs-sprite at 354 about 20%, at 707 35 to 50%, at 1,768 all of it).
 */
const WINDOW_SHARES = [0.01, 0.04, 0.12, 0.3, 0.55, 0.8, 0.99]
/**
 * Shares also simulated without the second chance for rejected keys: with a
 * small window, looping traces lose by it (lirs-cpp at 61 entries: 63.8%
 * without, 61.1% with) and traces whose working set moves gain (cloudphysics
 * at 4,897: 20.9% without, 24.0% with); with a larger window, recency keeps
 * those keys anyway.
 */
const SECOND_CHANCE_OPTIONAL = 0.04
/** Each simulation holds about this many entries: the sample rate is this over the budget (1 for smaller caches). */
const SIMULATED_ENTRIES = 512
/** An epoch: this many sampled requests per simulated entry. */
const EPOCH_PER_ENTRY = 2
/** The evidence kept from one epoch to the next. */
const DECAY = 0.9
/** How significant a gain must be to move the window (z), and to switch the second chance (cheap to undo). */
const Z_MOVE = 3
const Z_SECOND_CHANCE = 2

/** A simulation's slots with a byte budget: its count is bounded by {@link WindowSimulations}' resampling (4x SIMULATED_ENTRIES), so twice that. */
const BYTE_BUDGET_SLOTS = 8 * SIMULATED_ENTRIES

/** One simulated cache: a policy over its own slots, and an index from the sampled keys' hashes to them. */
class Simulation {
  readonly #policy: Policy
  readonly #limit: number
  #capacity: number
  #hashOf: Uint32Array
  #chargeOf: Float64Array
  /** Slots freed by evictions, reused last freed first. */
  #free: Int32Array
  #freeCount = 0
  #used = 0
  #count = 0
  #bytes = 0
  readonly #index: HashIndex

  constructor(
    make: (sizing: PolicySizing) => Policy,
    readonly maxEntries: number,
    readonly maxBytes: number,
  ) {
    const entries = Number.isFinite(maxEntries)
    this.#capacity = entries ? maxEntries + 1 : 64
    this.#limit = entries ? this.#capacity : BYTE_BUDGET_SLOTS
    this.#policy = make({ capacity: this.#capacity, limit: this.#limit, maxEntries, maxBytes })
    this.#hashOf = reserve(Uint32Array, this.#capacity, this.#limit)
    this.#chargeOf = reserve(Float64Array, this.#capacity, this.#limit)
    this.#free = reserve(Int32Array, this.#capacity, this.#limit)
    this.#index = new HashIndex(indexSize(this.#capacity))
  }

  /** Entries it holds. */
  get count(): number {
    return this.#count
  }

  /** Whether it hit. */
  request(hash: number, charge: number): boolean {
    const p = this.#policy
    const index = this.#index
    const hit = index.at(index.find(hash, this.#hashOf))
    if (hit !== EMPTY) {
      p.access(hit)
      return true
    }
    if (charge > this.maxBytes) return false
    while (this.#count + 1 > this.maxEntries || this.#bytes + charge > this.maxBytes) {
      const v = p.victim(NIL)
      if (v === NIL) break
      p.remove(v, 0)
      index.deleteAt(index.find(this.#hashOf[v]!, this.#hashOf), this.#hashOf)
      this.#count--
      this.#bytes -= this.#chargeOf[v]!
      this.#free[this.#freeCount++] = v
    }
    let slot: number
    if (this.#freeCount > 0) slot = this.#free[--this.#freeCount]!
    else {
      slot = this.#used++
      if (slot >= this.#capacity) this.#grow()
    }
    this.#hashOf[slot] = hash
    this.#chargeOf[slot] = charge
    this.#bytes += charge
    this.#count++
    this.#index.put(this.#index.find(hash, this.#hashOf), slot)
    p.insert(slot, hash, charge)
    return false
  }

  clear(): void {
    this.#policy.clear()
    this.#index.clear()
    this.#freeCount = 0
    this.#used = 0
    this.#count = 0
    this.#bytes = 0
  }

  stateBytes(): number {
    return this.#policy.stateBytes() + this.#hashOf.byteLength + this.#chargeOf.byteLength + this.#free.byteLength + this.#index.stateBytes()
  }

  /** Doubles the slots (a byte budget only: the count is not known ahead) and re-indexes. */
  #grow(): void {
    this.#capacity = Math.min(this.#limit, this.#capacity * 2)
    this.#policy.grow(this.#capacity)
    this.#hashOf = regrow(Uint32Array, this.#hashOf, this.#capacity)
    this.#chargeOf = regrow(Float64Array, this.#chargeOf, this.#capacity)
    this.#free = regrow(Int32Array, this.#free, this.#capacity)
    // It grows only when no slot is free, so every slot before the new one holds an entry.
    this.#index.clear(indexSize(this.#capacity))
    for (let slot = 0; slot < this.#used - 1; slot++) this.#index.put(this.#index.find(this.#hashOf[slot]!, this.#hashOf), slot)
  }
}

/** Index positions for `slots` slots: a power of two at least twice as many. */
function indexSize(slots: number): number {
  let size = 16
  while (size < 2 * slots) size *= 2
  return size
}

interface Config {
  share: number
  secondChance: boolean
  /** Index of its share in {@link WINDOW_SHARES}. */
  step: number
}

/**
 * The simulations of a W-TinyLFU budget, one per {@link Config}, and the one
 * chosen for the real policy. Choosing: every epoch, each simulation is
 * compared with the chosen one on the requests where exactly one of them hit
 * (McNemar's test: a paired comparison, so the trace's own noise cancels);
 * if some beat it significantly, the window moves one share toward the best
 * (and takes its second chance). One share at a time, because moving the
 * window moves entries between it and main, which the simulations, each at
 * its share throughout, do not pay for: jumping straight to the best cost
 * cloudphysics at 12,243 entries 7 points.
 */
export class WindowSimulations {
  readonly #configs: Config[]
  #sims: Simulation[]
  readonly #make: (sizing: PolicySizing, share: number, secondChance: boolean) => Policy
  /** With a byte budget only: the budget, and the share of the keys sampled now. */
  readonly #maxBytes: number
  #rate = 1
  /** A hash is sampled when its mix is below this (2^32 samples every key). */
  #threshold: number
  readonly #epoch: number
  #requests = 0
  /** Index in #configs of the one in use. */
  #chosen: number
  /** Against the chosen, per simulation: requests it alone hit minus those the chosen alone hit... */
  readonly #gain: Float64Array
  /** ...and requests where exactly one of them hit; both decay by {@link DECAY} each epoch. */
  readonly #differ: Float64Array

  /**
   * Simulations of a budget of `maxEntries` entries or (when that is
   * infinite) `maxBytes` charged bytes; `make(sizing, share, secondChance)`
   * builds the policy with that fixed configuration, reading the real sketch.
   */
  constructor(maxEntries: number, maxBytes: number, make: (sizing: PolicySizing, share: number, secondChance: boolean) => Policy) {
    const entries = Number.isFinite(maxEntries)
    this.#make = make
    this.#maxBytes = entries ? Infinity : maxBytes
    this.#configs = WINDOW_SHARES.flatMap((share, step) =>
      (share <= SECOND_CHANCE_OPTIONAL ? [true, false] : [true]).map((secondChance) => ({ share, secondChance, step })),
    )
    // A byte budget's entry count is not known ahead: every key is sampled to start with, and fewer as they add up (#resample).
    this.#rate = entries ? Math.min(1, SIMULATED_ENTRIES / maxEntries) : 1
    this.#threshold = this.#rate * 2 ** 32
    const simEntries = entries ? Math.max(1, Math.round(maxEntries * this.#rate)) : Infinity
    this.#sims = this.#build(simEntries)
    this.#gain = new Float64Array(this.#sims.length)
    this.#differ = new Float64Array(this.#sims.length)
    this.#chosen = 0
    this.#epoch = EPOCH_PER_ENTRY * (entries ? simEntries : SIMULATED_ENTRIES)
  }

  /** The share of the budget the window should have now... */
  get share(): number {
    return this.#configs[this.#chosen]!.share
  }

  /** ...and whether rejected keys get a second chance. */
  get secondChance(): boolean {
    return this.#configs[this.#chosen]!.secondChance
  }

  /**
   * A request for the key of `hash`, charged `charge`: the simulations see it
   * if it is sampled. Returns whether the choice ({@link share},
   * {@link secondChance}) changed.
   */
  request(hash: number, charge: number): boolean {
    // The sample is of the top bits of a Fibonacci-hashing product: the sketch and the store use other mixes of the hash.
    if (Math.imul(hash, 0x9e3779b1) >>> 0 >= this.#threshold) return false
    const sims = this.#sims
    const chosen = sims[this.#chosen]!.request(hash, charge)
    for (let i = 0; i < sims.length; i++) {
      if (i === this.#chosen) continue
      const hit = sims[i]!.request(hash, charge)
      if (hit !== chosen) {
        this.#differ[i]!++
        this.#gain[i]! += hit ? 1 : -1
      }
    }
    const changed = ++this.#requests >= this.#epoch && this.#decide()
    if (sims[0]!.count > 4 * SIMULATED_ENTRIES) this.#resample()
    return changed
  }

  clear(): void {
    for (const s of this.#sims) s.clear()
    this.#requests = 0
    this.#chosen = 0
    this.#gain.fill(0)
    this.#differ.fill(0)
  }

  stateBytes(): number {
    let n = this.#gain.byteLength + this.#differ.byteLength
    for (const s of this.#sims) n += s.stateBytes()
    return n
  }

  #build(simEntries: number): Simulation[] {
    const simBytes = this.#maxBytes * this.#rate
    return this.#configs.map((c) => new Simulation((s) => this.#make(s, c.share, c.secondChance), simEntries, simBytes))
  }

  /**
   * A byte budget whose simulations outgrew their size: a quarter of the
   * keys sampled now, at a quarter of the bytes, from scratch (the evidence
   * goes; the choice stays).
   */
  #resample(): void {
    this.#rate /= 4
    this.#threshold = this.#rate * 2 ** 32
    this.#sims = this.#build(Infinity)
    this.#gain.fill(0)
    this.#differ.fill(0)
    this.#requests = 0
  }

  /** The end of an epoch; returns whether the choice changed. */
  #decide(): boolean {
    this.#requests = 0
    const from = this.#configs[this.#chosen]!
    let best = -1
    let bestZ = 0
    for (let i = 0; i < this.#sims.length; i++) {
      const g = this.#gain[i]!
      if (i === this.#chosen || g <= 0) continue
      const z = g / Math.sqrt(this.#differ[i]!) - (this.#configs[i]!.step === from.step ? Z_SECOND_CHANCE : Z_MOVE)
      if (z > bestZ) {
        bestZ = z
        best = i
      }
    }
    if (best >= 0) {
      const to = this.#configs[best]!
      const step = from.step + Math.sign(to.step - from.step)
      // The share one step toward the best, with the best's second chance where that share has the choice.
      this.#chosen = this.#configs.findIndex((c) => c.step === step && (c.secondChance === to.secondChance || c.share > SECOND_CHANCE_OPTIONAL))
      this.#gain.fill(0)
      this.#differ.fill(0)
      return true
    }
    for (let i = 0; i < this.#sims.length; i++) {
      this.#gain[i]! *= DECAY
      this.#differ[i]! *= DECAY
    }
    return false
  }
}
