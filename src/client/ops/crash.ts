/**
 * CRASH: makes a shard thread die of an uncaught exception, as a bug would,
 * so that tests can watch the router fail what was in flight and restart
 * the shard (`cache.crashShardForTest`). No reply: the shard is gone.
 */
import { Op } from '../../wire/protocol.js'
import type { FrameSender, Sink } from './sender.js'

/** Asks shard `shard` to throw; `sink` settles when the router has seen the shard die. */
export function sendCrash(router: FrameSender, shard: number, sink: Sink): void {
  const w = router.writer(shard)
  w.u8(Op.CRASH)
  w.u8(0)
  router.commit(shard, sink, 0)
}
