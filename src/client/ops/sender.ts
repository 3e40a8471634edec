/**
 * What the op modules of this folder need of the router: the shard a key
 * goes to, the shard's open frame, and the registration of an op once its
 * bytes are written. An interface rather than the Router class itself: the
 * router imports these modules' reply decoders, so they cannot import it back
 * (no import circles; see .dependency-cruiser.cjs). The one implementation is
 * {@link Router} (src/client/router.ts), so every call through it stays monomorphic.
 */
import type { FrameWriter } from '../../wire/protocol.js'

/** Receives the results of the ops registered with it. */
export interface Sink {
  resolve(index: number, result: unknown): void
  reject(index: number, error: Error): void
}

/** The router as the request encoders see it (see src/client/router.ts for each member's contract). */
export interface FrameSender {
  readonly shardCount: number
  /** The op a get sends: GET_NEAR when this thread keeps a near cache, else GET. */
  readonly getOp: number
  keyHash(key: string): number
  shardOf(key: string): number
  shardOfHash(hash: number): number
  writer(shard: number): FrameWriter
  commit(shard: number, sink: Sink, index: number): void
  commitWrite(shard: number, sink: Sink, index: number, region: number, key: string | undefined, hash: number, grows?: number, keeps?: boolean): void
  /** Whether a set without a TTL leaves its entry without expiry in `region` (the region has no default TTL). */
  keepsForever(region: number): boolean
}
