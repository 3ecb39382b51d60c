// The last hour of each model's traffic, for the dashboard's rate and latency charts: every few
// seconds the gateway's own Prometheus counters are read, and the difference from the reading
// before becomes one point (core/traffic.ts). Nothing is added to the call path.
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import {
  emptyTotals,
  pointBetween,
  type TrafficPoint,
  type TrafficTotals,
} from "../../core/traffic.ts";

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

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
    // A reading that fails is a gap in the chart, never a reason for `up` to stop.
    const sample = () => this.sample().catch(() => {});
    void sample();
    this.timer = setInterval(sample, this.intervalMs);
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
