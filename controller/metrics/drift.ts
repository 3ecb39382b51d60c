// Drift of one input feature between two windows of predictions, as the population stability
// index (PSI): the baseline's deciles cut both windows into bins, and
//   PSI = Σ (current% − baseline%) · ln(current% / baseline%).
// Below 0.1 is usually read as no shift, 0.1–0.25 as a moderate one, above 0.25 as a large one.
// manifests/examples/iris-metrics/metrics_job.py computes the same figure in Python.
import type { MetricsRow } from "./port.ts";

/** Stands in for an empty bin's share, whose logarithm would be infinite. */
const EMPTY_BIN_SHARE = 1e-4;

/**
 * Bin edges: the baseline's quantiles at 1/bins … (bins−1)/bins, duplicates removed, so that
 * each bin holds about as many baseline values.
 */
export function quantileEdges(sortedBaseline: number[], bins: number): number[] {
  const edges: number[] = [];
  for (let index = 1; index < bins; index++) {
    const position = (index / bins) * (sortedBaseline.length - 1);
    const low = Math.floor(position);
    const high = Math.ceil(position);
    const lowValue = sortedBaseline[low] as number;
    const value = lowValue + (position - low) * ((sortedBaseline[high] as number) - lowValue);
    if (edges.length === 0 || value > (edges[edges.length - 1] as number)) edges.push(value);
  }
  return edges;
}

/** Each bin's share of `values`: bin i holds values v with edges[i-1] < v ≤ edges[i]. */
export function binShares(values: number[], edges: number[]): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (const value of values) {
    let bin = 0;
    while (bin < edges.length && value > (edges[bin] as number)) bin += 1;
    counts[bin] = (counts[bin] as number) + 1;
  }
  return counts.map((count) => Math.max(count / values.length, EMPTY_BIN_SHARE));
}

export function populationStabilityIndex(baseline: number[], current: number[], bins = 10): number {
  if (baseline.length === 0 || current.length === 0) {
    throw new Error("the PSI needs values in both windows");
  }
  const edges = quantileEdges(
    [...baseline].sort((a, b) => a - b),
    bins,
  );
  const before = binShares(baseline, edges);
  const after = binShares(current, edges);
  let psi = 0;
  for (let bin = 0; bin < before.length; bin++) {
    const b = before[bin] as number;
    const c = after[bin] as number;
    psi += (c - b) * Math.log(c / b);
  }
  return psi;
}

/**
 * A feature's value in a prediction's metrics: the metric of that name, or a member of the
 * tracked `input` (CDSW's examples track the whole input as one metric); a dotted name
 * (`input.petal_length`) is followed as a path. Undefined when it is not a number.
 */
export function featureValue(
  metrics: Record<string, unknown>,
  feature: string,
): number | undefined {
  const direct = pathValue(metrics, feature);
  const value = direct !== undefined ? direct : pathValue(metrics, `input.${feature}`);
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return undefined;
}

function pathValue(value: unknown, path: string): unknown {
  let current = value;
  for (const part of path.split(".")) {
    if (typeof current !== "object" || current === null || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

export interface DriftReport {
  feature: string;
  psi: number;
  baseline: { count: number; startMs: number; endMs: number };
  current: { count: number; startMs: number; endMs: number };
  /** Predictions in the window whose metrics had no number for the feature. */
  skipped: number;
}

/**
 * The PSI of `feature` between the predictions before `splitMs` (the baseline) and those from
 * it on (the current window); without a split, the window's time range is cut in half.
 */
export function driftOf(rows: MetricsRow[], feature: string, splitMs?: number): DriftReport {
  const points: { time: number; value: number }[] = [];
  let skipped = 0;
  for (const row of rows) {
    if (row.type !== "prediction") continue;
    const value = featureValue(row.metrics, feature);
    if (value === undefined) skipped += 1;
    else points.push({ time: row.startTimeStampMs, value });
  }
  if (points.length < 2) {
    throw new Error(
      `${points.length} predictions in the window tracked a number for "${feature}"; the drift needs some in each half`,
    );
  }
  // Loops, not Math.min(...): a spread of a large window overflows the stack.
  const first = points.reduce((low, point) => Math.min(low, point.time), Infinity);
  const last = points.reduce((high, point) => Math.max(high, point.time), -Infinity);
  const split = splitMs ?? first + (last - first) / 2;
  const baseline = points.filter((point) => point.time < split);
  const current = points.filter((point) => point.time >= split);
  if (baseline.length === 0 || current.length === 0) {
    throw new Error(
      `the ${baseline.length === 0 ? "baseline (before" : "current window (from"} ${new Date(split).toISOString()}) has no predictions with "${feature}"`,
    );
  }
  const span = (window: typeof points) => ({
    count: window.length,
    startMs: window.reduce((low, point) => Math.min(low, point.time), Infinity),
    endMs: window.reduce((high, point) => Math.max(high, point.time), -Infinity),
  });
  return {
    feature,
    psi: populationStabilityIndex(
      baseline.map((point) => point.value),
      current.map((point) => point.value),
    ),
    baseline: span(baseline),
    current: span(current),
    skipped,
  };
}
