/**
 * Write counters by key hash, for fills that must not overwrite a newer
 * write: a fill (a getOrCompute load, a tier's hit copied up) takes the key's
 * mark before it reads, and is stored only if the mark did not change
 * meanwhile. {@link bump} a key when a write of it starts, {@link bumpAll}
 * for one that covers many keys (a clear, a pattern delete, a tag). Keys
 * share slots: a collision can only make a fill skip, never store one it
 * should not. Used by write-through regions (src/backing/) and the tier
 * chain (src/tiers/).
 */
export class WriteMarks {
  readonly #slots = new Uint32Array(4096)
  #all = 0

  bump(key: string): void {
    this.#slots[slotOf(key)]!++
  }

  bumpAll(): void {
    this.#all++
  }

  mark(key: string): number {
    return (this.#slots[slotOf(key)]! + this.#all * 0x10000) >>> 0
  }
}

/** FNV-1a over the key's UTF-16 units, to 12 bits. */
function slotOf(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return (h >>> 0) & 4095
}
