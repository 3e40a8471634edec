/**
 * The receiving peer of the bus section (forked by bus.ts): a process of its
 * own, so that propagation crosses a real process boundary (own event loop,
 * own sockets, own origin), as it does between the instances of a service.
 *
 * Unlike the one-shot children of child.ts, this one lives through the whole
 * section and answers requests by id: the parent resets and reads its stats
 * between runs while its subscriptions stay up. It exits when the parent says
 * "close", and on its own when the IPC channel goes away (the parent died), so
 * it never outlives the harness.
 */
import { createHistogram } from 'node:perf_hooks'
import { Redis } from 'ioredis'
import { createCache } from '../src/index.js'
import type { Cache, InvalidationEvent } from '../src/index.js'
import { summarize } from './report.js'
import type { PeerRequest, PeerStats } from './bus.js'
import { servePeer } from './peer_process.js'

/** One receiving cache per channel: each publisher variant of the parent has a channel of its own. */
const caches = new Map<string, Cache>()
/** End-to-end latency of the timestamped keys (see {@link watchLatencyKeys}), in ns. */
const e2e = createHistogram()
/** Invalidation events seen per channel since the last reset. */
const events = new Map<string, number>()
/** Latency of the raw pub/sub messages (see {@link subscribeRaw}), in ns. */
const raw = createHistogram()
let rawSub: Redis | undefined

/** Same clock as the bus's send stamp: epoch ms with sub-ms precision. */
const epochNow = (): number => performance.timeOrigin + performance.now()

/**
 * Keys under `prefix` end in the publisher's epoch-ms timestamp, taken just
 * before its `set()`. A get issued from the listener runs after the applied
 * delete (pending writes send reads to the shard), so when it resolves the
 * invalidation is in effect here: that instant minus the timestamp is the
 * whole path, publisher's tick batching and receiver's shard round trip
 * included. Other keys (the write runs) cost one prefix test per event.
 */
function watchLatencyKeys(cache: Cache, channel: string, prefix: string): void {
  cache.on('invalidation', (e: InvalidationEvent) => {
    events.set(channel, (events.get(channel) ?? 0) + 1)
    const keys = e.keys
    if (keys === undefined || keys.length === 0 || !keys[0]!.startsWith(prefix)) return
    for (const key of keys) {
      const sentAt = Number(key.slice(key.lastIndexOf(':') + 1))
      if (!Number.isFinite(sentAt)) continue
      cache.get(key).then(
        () => e2e.record(Math.max(1, Math.round((epochNow() - sentAt) * 1e6))),
        () => {},
      )
    }
  })
}

/**
 * A plain ioredis subscriber, no shardcache: the transport's own latency on
 * this machine, measured like the bus's (sender's stamp, in the first 8 bytes,
 * to receipt), so a slow bus can be told apart from a loaded machine.
 */
async function subscribeRaw(url: string, channel: string): Promise<void> {
  rawSub = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  rawSub.on('error', () => {}) // surfaces through subscribe(), or as missing samples
  await rawSub.connect()
  rawSub.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
    if (message.length >= 8) raw.record(Math.max(1, Math.round((epochNow() - message.readDoubleLE(0)) * 1e6)))
  })
  await rawSub.subscribe(channel)
}

function cacheOf(channel: string): Cache {
  const c = caches.get(channel)
  if (c === undefined) throw new Error(`no receiving cache on channel ${JSON.stringify(channel)}`)
  return c
}

async function handle(req: PeerRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'open': {
      for (const channel of req.channels) {
        // required (the default): createCache resolves once subscribed, so nothing the parent publishes next is missed.
        const cache = await createCache({
          shards: req.shards,
          regions: { default: { maxBytes: req.maxBytes } },
          bus: { redis: req.url, channel },
        })
        caches.set(channel, cache)
        watchLatencyKeys(cache, channel, req.latencyPrefix)
      }
      await subscribeRaw(req.url, req.rawChannel)
      return { pid: process.pid }
    }
    case 'reset': {
      await cacheOf(req.channel).resetStats()
      events.set(req.channel, 0)
      e2e.reset()
      raw.reset()
      return null
    }
    case 'stats': {
      const bus = (await cacheOf(req.channel).stats()).bus
      if (bus === undefined) throw new Error('receiving cache has no bus stats')
      const out: PeerStats = {
        bus,
        events: events.get(req.channel) ?? 0,
        e2e: e2e.count === 0 ? undefined : summarize(e2e),
        raw: raw.count === 0 ? undefined : summarize(raw),
      }
      return out
    }
    case 'close': {
      for (const c of caches.values()) await c.close()
      caches.clear()
      rawSub?.disconnect()
      return null
    }
  }
}

servePeer<PeerRequest>('bus_child', handle)
