/**
 * The tags of a region slice's entries, both ways: per slot, the tags of its
 * entry, and per tag, the slots of the live entries carrying it (for
 * invalidateTag). Both live on the shard's heap, which is why each tag is
 * charged against the byte budget (src/wire/protocol.ts tagChargeBytes; the
 * accounting notes in workers/region_slots.ts say how).
 */

export class TagIndex {
  /** Per slot, the tags of its entry (sparse: most entries have none). */
  #bySlot: (string[] | undefined)[] = []
  /**
   * Tag → the slot, or the set of slots, of the live entries carrying it. A
   * tag on one entry only is held as its slot number: a Set of one costs ~150
   * bytes more (measured), and per-entry tags (`user:42` on the entry of user
   * 42) are common.
   */
  #index = new Map<string, number | Set<number>>()

  /** The tags of `slot`'s entry. */
  of(slot: number): string[] | undefined {
    return this.#bySlot[slot]
  }

  /** Gives `slot`'s entry `tags` (it has none: {@link untag} first). */
  tag(slot: number, tags: string[]): void {
    this.#bySlot[slot] = tags
    const index = this.#index
    for (const t of tags) {
      const slots = index.get(t)
      if (slots === undefined) index.set(t, slot)
      else if (typeof slots === 'number') index.set(t, new Set([slots, slot]))
      else slots.add(slot)
    }
  }

  /** Takes `slot`'s entry's tags off it and out of the index. */
  untag(slot: number): void {
    const tags = this.#bySlot[slot]
    if (tags === undefined) return
    this.#bySlot[slot] = undefined
    const index = this.#index
    for (const t of tags) {
      const slots = index.get(t)
      if (slots === undefined) continue
      if (typeof slots === 'number') {
        if (slots === slot) index.delete(t)
        continue
      }
      slots.delete(slot)
      if (slots.size === 1) index.set(t, slots.values().next().value!)
    }
  }

  /** The slots carrying `tag` (a copy: the caller removes them as it goes), or undefined for none. */
  slotsOf(tag: string): number[] | undefined {
    const slots = this.#index.get(tag)
    if (slots === undefined) return undefined
    return typeof slots === 'number' ? [slots] : [...slots]
  }

  clear(): void {
    this.#bySlot = []
    this.#index.clear()
  }

  /** @internal Throws unless `slot`'s tags are all indexed to it; returns how many it has. For invariant checks. */
  checkSlot(slot: number): number {
    const tags = this.#bySlot[slot]
    for (const t of tags ?? []) {
      const slots = this.#index.get(t)
      if (slots !== slot && !(slots instanceof Set && slots.has(slot))) throw new Error(`slot ${slot}'s tag ${JSON.stringify(t)} is not indexed`)
    }
    return tags?.length ?? 0
  }

  /** @internal Throws unless the index holds exactly `links` (slot, tag) links, each tag as a number or a Set of two or more. */
  checkLinks(links: number): void {
    let indexed = 0
    for (const slots of this.#index.values()) {
      if (slots instanceof Set && slots.size < 2) throw new Error(`a tag's set holds ${slots.size} slot(s): it should be a number or gone`)
      indexed += typeof slots === 'number' ? 1 : slots.size
    }
    if (indexed !== links) throw new Error(`the tag index holds ${indexed} links, entries say ${links}`)
  }
}
