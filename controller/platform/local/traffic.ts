// The last hour of each model's traffic, for the dashboard's rate and latency charts: every few
// seconds the gateway's own Prometheus counters are read, and the difference from the reading
// before becomes one point (calls and errors a second, latency quantiles over the interval, as
// PromQL's rate() and histogram_quantile() compute them). Nothing is added to the call path.
import type { MetricObjectWithValues, MetricValue } from "prom-client";

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

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

const emptyTotals = (): TrafficTotals => ({
  calls: 0,
  errors: 0,
  busy: 0,
  latencySeconds: 0,
  buckets: [],
});

/** Each model's counters, from the gateway's registry read as JSON. */
export function totalsByModel(metrics: Metrics): Map<string, TrafficTotals> {
  const totals = new Map<string, TrafficTotals>();
  const of = (model: unknown) => {
    const name = String(model ?? "");
    let entry = totals.get(name);
    if (!entry) {
      entry = emptyTotals();
      totals.set(name, entry);
    }
    return entry;
  };
  for (const metric of metrics) {
    // A histogram's values are named x_bucket, x_sum and x_count (prom-client's JSON).
    for (const { labels, value, metricName } of metric.values as (MetricValue<string> & {
      metricName?: string;
    })[]) {
      // Calls to no model (a wrong path) count under "", which no chart shows.
      if (!labels.model) continue;
      const entry = of(labels.model);
      if (metric.name === "modelship_gateway_requests_total") {
        entry.calls += value;
        if (labels.code !== "ok") entry.errors += value;
      } else if (metric.name === "modelship_gateway_busy_total") {
        entry.busy += value;
      } else if (metric.name === "modelship_gateway_request_duration_seconds") {
        if (metricName?.endsWith("_sum")) entry.latencySeconds = value;
        else if (metricName?.endsWith("_bucket") && labels.le !== "+Inf") {
          entry.buckets.push([Number(labels.le), value]);
        }
      }
    }
  }
  for (const entry of totals.values()) entry.buckets.sort((a, b) => a[0] - b[0]);
  return totals;
}

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

export interface TrafficHistoryOptions {
  /** Reads the gateway's metrics. */
  read: () => Promise<Metrics>;
  intervalMs?: number;
  /** Points kept per model: an hour at the default interval. */
  keep?: number;
  now?: () => Date;
}

export const TRAFFIC_INTERVAL_MS = 5000;

export class TrafficHistory {
  readonly intervalMs: number;
  private readonly read: () => Promise<Metrics>;
  private readonly keep: number;
  private readonly now: () => Date;
  private readonly points = new Map<string, TrafficPoint[]>();
  private last: { time: Date; totals: Map<string, TrafficTotals> } | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: TrafficHistoryOptions) {
    this.read = options.read;
    this.intervalMs = options.intervalMs ?? TRAFFIC_INTERVAL_MS;
    this.keep = options.keep ?? Math.ceil((60 * 60 * 1000) / this.intervalMs);
    this.now = options.now ?? (() => new Date());
  }

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Takes one reading; from the second one on, each model gets a point. */
  async sample(): Promise<void> {
    const totals = totalsByModel(await this.read());
    const time = this.now();
    const last = this.last;
    this.last = { time, totals };
    if (!last) return;
    const seconds = Math.max((time.getTime() - last.time.getTime()) / 1000, 0.001);
    for (const [model, after] of totals) {
      const series = this.points.get(model) ?? [];
      series.push(pointBetween(last.totals.get(model), after, seconds, time));
      if (series.length > this.keep) series.splice(0, series.length - this.keep);
      this.points.set(model, series);
    }
  }

  /** A model's points, oldest first. */
  of(model: string): TrafficPoint[] {
    return [...(this.points.get(model) ?? [])];
  }
}
