/**
 * Redis Cluster's key hashing, without ioredis (src/options/bus.ts validates with it,
 * and must not load ioredis): which slot a key or shard channel is in, and a
 * key that shares a channel's slot.
 */
/** CRC16 (XMODEM) of Redis Cluster's key hashing. */
function crc16(buf: Buffer): number {
  let crc = 0
  for (const byte of buf) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

/** The hash tag of a key or shard channel (what is between its first `{` and the next `}`, when not empty), or undefined. */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf('{')
  if (open < 0) return undefined
  const close = key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : undefined
}

/** The cluster slot of a key or shard channel, as Redis computes it (hash tags included). */
export function slotOf(key: string): number {
  return crc16(Buffer.from(hashTag(key) ?? key, 'utf8')) % 16384
}

/**
 * A key in the same cluster slot as `channel`: the channel's own hash tag
 * when it has one, else the whole channel as the tag. Undefined when neither
 * works (a channel with a `}` and no tag: no tag can spell it).
 */
export function keyInSlotOf(channel: string, suffix: string): string | undefined {
  if (hashTag(channel) !== undefined) return `${channel}${suffix}`
  if (channel.includes('}')) return undefined
  return `{${channel}}${suffix}`
}
