// A point of a model's traffic chart, from two readings of the gateway's counters: calls and
// errors a second over the interval, and latency quantiles of its calls, as PromQL's rate() and
// histogram_quantile() compute them. Pure: `up` makes the points, the dashboard draws them.

/** A model's counters at one reading. */
export interface TrafficTotals {
  calls: number;
  /** Calls answered with an error code (any code but ok), model.busy included. */
  errors: number;
  busy: number;
  latencySeconds: number;
  /** Cumulative latency buckets: [upper bound in seconds, calls at most that long]. */
  buckets: [number, number][];
}

export interface TrafficPoint {
  time: string;
  callsPerSecond: number;
  errorsPerSecond: number;
  busyPerSecond: number;
  /** Null for an interval with no calls. */
  latencyMs: { mean: number; p50: number; p99: number } | null;
}

export const emptyTotals = (): TrafficTotals => ({
  calls: 0,
  errors: 0,
  busy: 0,
  latencySeconds: 0,
  buckets: [],
});

/**
 * The q-quantile of the calls in cumulative buckets, interpolated linearly inside the bucket it
 * falls in, as histogram_quantile() does; past the last bound, the last bound.
 */
export function bucketQuantile(buckets: [number, number][], total: number, q: number): number {
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      const inBucket = count - lowerCount;
      return inBucket === 0
        ? bound
        : lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return lowerBound;
}

/** The point for an interval of `seconds`, from the totals at its start and at its end. */
export function pointBetween(
  before: TrafficTotals | undefined,
  after: TrafficTotals,
  seconds: number,
  time: Date,
): TrafficPoint {
  const start = before ?? emptyTotals();
  // A counter that went down was reset (a model removed, then added again): count from zero.
  const reset = after.calls < start.calls;
  const base = reset ? emptyTotals() : start;
  const calls = after.calls - base.calls;
  const startBuckets = new Map(base.buckets);
  const buckets = after.buckets.map(
    ([bound, count]) => [bound, count - (startBuckets.get(bound) ?? 0)] as [number, number],
  );
  const rounded = (ms: number) => Math.round(ms * 1000) / 1000;
  return {
    time: time.toISOString(),
    callsPerSecond: calls / seconds,
    errorsPerSecond: (after.errors - base.errors) / seconds,
    busyPerSecond: (after.busy - base.busy) / seconds,
    latencyMs:
      calls === 0
        ? null
        : {
            mean: rounded(((after.latencySeconds - base.latencySeconds) / calls) * 1000),
            p50: rounded(bucketQuantile(buckets, calls, 0.5) * 1000),
            p99: rounded(bucketQuantile(buckets, calls, 0.99) * 1000),
          },
  };
}
