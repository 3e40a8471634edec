/**
 * The histogram of frame round trips each router keeps (stats' frameLatency,
 * the metrics' shardcache_frame_seconds). Its own module: the router only
 * records into it, the stats read it.
 */
/**
 * Round trips of the frames a thread sends to its shards, in fixed
 * exponential buckets (Prometheus histogram style): one record per frame, not
 * per operation, so the hot path pays two clock reads per frame (send, reply).
 * Buckets rather than perf_hooks' HDR histogram (the bus's propagation
 * summary): bucket counts add up across shards and processes in Prometheus,
 * percentiles do not, and recording is a short loop, not a native call.
 */
export class FrameLatency {
  /** Upper bounds in seconds: 10 µs to ~1.3 s, doubling. */
  static readonly BOUNDS = Array.from({ length: 18 }, (_, i) => 10e-6 * 2 ** i)
  readonly counts = new Float64Array(FrameLatency.BOUNDS.length + 1)
  sum = 0
  count = 0

  /** Records a round trip of `ms` milliseconds. */
  record(ms: number): void {
    const s = ms / 1000
    let i = 0
    while (i < FrameLatency.BOUNDS.length && s > FrameLatency.BOUNDS[i]!) i++
    this.counts[i]!++
    this.sum += s
    this.count++
  }

  /** Cumulative counts per bound (the last is +Inf), the sum in seconds and the count. */
  snapshot(): { bounds: number[]; cumulative: number[]; sum: number; count: number } {
    const cumulative: number[] = []
    let c = 0
    for (const n of this.counts) cumulative.push((c += n))
    return { bounds: FrameLatency.BOUNDS, cumulative, sum: this.sum, count: this.count }
  }

  reset(): void {
    this.counts.fill(0)
    this.sum = 0
    this.count = 0
  }
}
