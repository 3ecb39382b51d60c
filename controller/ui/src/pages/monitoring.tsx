// A model's Monitoring, as CDSW shows it: each replica's status and counters, the calls and
// latency of the last hour, the metrics the model tracks, and its replicas' log — stdout and
// stderr marked, newest first, live.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, followLines } from "../api.ts";
import { Chart, type ChartProps } from "../chart.tsx";
import { Badge, Empty, ErrorNote, Table } from "../components.tsx";
import { usePoll } from "../hooks.ts";
import type { LogEntry, Model, ModelDeployment, ReplicaInfo, TrafficPoint } from "../types.ts";

/** CDSW's replica counters, in its order. */
const COUNTERS: [string, string][] = [
  ["received", "Received"],
  ["processed", "Processed"],
  ["success", "Success"],
  ["failure", "Failure"],
  ["error", "Error"],
  ["busy", "Busy"],
  ["notReady", "Not ready"],
  ["restarts", "Restarts"],
];

export function MonitoringTab({
  model,
  deployments,
}: {
  model: Model;
  deployments: ModelDeployment[];
}) {
  const name = model.metadata.name;
  // Which replicas run, by deployment: the log follows those, and again when they change.
  const [replicaIds, setReplicaIds] = useState<Record<string, string>>({});
  const onReplicas = useCallback(
    (deployment: string, ids: string) =>
      setReplicaIds((old) => (old[deployment] === ids ? old : { ...old, [deployment]: ids })),
    [],
  );
  return (
    <>
      {deployments.length === 0 && (
        <Empty>Nothing runs this model, so there is nothing to watch.</Empty>
      )}
      {deployments.map((deployment) => (
        <Replicas
          key={deployment.metadata.name}
          deployment={deployment.metadata.name}
          onReplicas={onReplicas}
        />
      ))}
      <Traffic model={name} />
      <TrackedMetrics model={name} />
      <Logs
        model={name}
        running={deployments.some((deployment) => !deployment.spec.stopped)}
        replicas={Object.values(replicaIds).join(" ")}
      />
    </>
  );
}

function Replicas({
  deployment,
  onReplicas,
}: {
  deployment: string;
  onReplicas: (deployment: string, ids: string) => void;
}) {
  const replicas = usePoll<{ items: ReplicaInfo[] }>(
    `/api/v1/modeldeployments/${encodeURIComponent(deployment)}/replicas`,
    2000,
  );
  const items = replicas.data?.items ?? [];
  const ids = items.map((replica) => replica.id).join(" ");
  useEffect(() => onReplicas(deployment, ids), [deployment, ids, onReplicas]);
  return (
    <div class="card">
      <h2>Replicas of {deployment}</h2>
      <ErrorNote message={replicas.error} />
      {replicas.data && items.length === 0 ? (
        <Empty>No replica runs.</Empty>
      ) : (
        <Table
          label={`Replicas of ${deployment}`}
          head={["Replica", "Build", "Status", ...COUNTERS.map(([, label]) => label)]}
        >
          {items.map((replica) => (
            <tr key={replica.id}>
              <th scope="row">
                <code>{replica.id}</code>
              </th>
              <td>{replica.build}</td>
              <td>
                <Badge phase={replica.ready ? "Ready" : "Not ready"} />
                {replica.reason && <span class="muted"> {replica.reason}</span>}
              </td>
              {COUNTERS.map(([key]) => (
                <td key={key} class="number">
                  {replica.stats[key] ?? "—"}
                </td>
              ))}
            </tr>
          ))}
        </Table>
      )}
    </div>
  );
}

/** The chart data for the traffic points: times in seconds, then each series. */
export function trafficSeries(points: TrafficPoint[]): {
  rate: ChartProps["data"];
  latency: ChartProps["data"];
} {
  const times = points.map((point) => Date.parse(point.time) / 1000);
  return {
    rate: [
      times,
      points.map((point) => point.callsPerSecond),
      points.map((point) => point.errorsPerSecond),
    ],
    latency: [
      times,
      points.map((point) => point.latencyMs?.p50 ?? null),
      points.map((point) => point.latencyMs?.p99 ?? null),
    ],
  };
}

/** "40 s", "12 min": how long the points cover. */
const span = (seconds: number) =>
  seconds < 120 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;

function Traffic({ model }: { model: string }) {
  const traffic = usePoll<{ intervalSeconds: number; items: TrafficPoint[] }>(
    `/api/v1/models/${encodeURIComponent(model)}/traffic`,
    5000,
  );
  const points = traffic.data?.items ?? [];
  const series = useMemo(() => trafficSeries(points), [traffic.data]);
  const calls = points.reduce(
    (sum, point) => sum + point.callsPerSecond * (traffic.data?.intervalSeconds ?? 0),
    0,
  );
  return (
    <div class="card">
      <h2>Calls and latency, last hour</h2>
      <ErrorNote message={traffic.error} />
      {points.length < 2 ? (
        <Empty>Measuring: a point every {traffic.data?.intervalSeconds ?? 5} s.</Empty>
      ) : (
        <>
          <p class="meta" data-testid="traffic-total">
            {Math.round(calls)} calls in the last{" "}
            {span(points.length * (traffic.data?.intervalSeconds ?? 5))}
          </p>
          <div class="columns">
            <Chart
              title="Request rate"
              unit="calls/s"
              series={[
                { label: "calls", color: "#2563eb" },
                { label: "errors", color: "#dc2626" },
              ]}
              data={series.rate}
            />
            <Chart
              title="Latency"
              unit="ms"
              series={[
                { label: "p50", color: "#059669" },
                { label: "p99", color: "#d97706" },
              ]}
              data={series.latency}
            />
          </div>
        </>
      )}
    </div>
  );
}

interface MetricsRow {
  type: string;
  predictionUuid?: string;
  modelBuildCrn?: string;
  startTimeStampMs: number;
  metrics: Record<string, unknown>;
}

/** The numeric metrics of the rows, as chart series: name → values by row (null when absent). */
export function numericMetrics(rows: MetricsRow[]): Map<string, (number | null)[]> {
  const names = new Set<string>();
  for (const row of rows) {
    for (const [key, value] of Object.entries(row.metrics)) {
      if (typeof value === "number" && Number.isFinite(value)) names.add(key);
    }
  }
  const series = new Map<string, (number | null)[]>();
  for (const key of [...names].sort().slice(0, 4)) {
    series.set(
      key,
      rows.map((row) => {
        const value = row.metrics[key];
        return typeof value === "number" && Number.isFinite(value) ? value : null;
      }),
    );
  }
  return series;
}

const METRIC_COLORS = ["#7c3aed", "#0891b2", "#be185d", "#65a30d"];
const METRICS_WINDOW_MS = 15 * 60 * 1000;

/** The most predictions the chart and table keep: the newest. */
const METRICS_ROWS = 2000;

/**
 * The predictions a model tracked since the page opened (and the 15 minutes before), read page
 * by page (the store answers oldest first) every 10 s from where the last read ended.
 */
function useTrackedRows(model: string): { rows: MetricsRow[]; error: string | undefined } {
  const [state, setState] = useState<{ rows: MetricsRow[]; error: string | undefined }>({
    rows: [],
    error: undefined,
  });
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    let rows: MetricsRow[] = [];
    let since = Date.now() - METRICS_WINDOW_MS;
    const tick = async () => {
      try {
        let cursor: string | undefined;
        do {
          const query = new URLSearchParams({
            modelCrn: `crn:modelship:${model}`,
            startTimestampMs: String(since),
            limit: "1000",
            ...(cursor ? { cursor } : {}),
          });
          const page = await api<{ metrics: MetricsRow[]; next?: string }>(
            `/api/v1/model-metrics?${query}`,
          );
          // By uuid: a row read again (the window starts at the last one read) replaces the
          // old one, with the delayed metrics merged into it since.
          const byUuid = new Map(rows.map((row) => [row.predictionUuid, row]));
          for (const row of page.metrics) {
            if (row.type === "prediction") byUuid.set(row.predictionUuid, row);
          }
          rows = [...byUuid.values()]
            .sort((a, b) => a.startTimeStampMs - b.startTimeStampMs)
            .slice(-METRICS_ROWS);
          cursor = page.next;
        } while (cursor && !stopped);
        since = rows.at(-1)?.startTimeStampMs ?? since;
        if (!stopped) setState({ rows, error: undefined });
      } catch (error) {
        if (!stopped) setState({ rows, error: (error as Error).message });
      }
      if (!stopped) timer = window.setTimeout(tick, 10_000);
    };
    void tick();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [model]);
  return state;
}

function TrackedMetrics({ model }: { model: string }) {
  const read = useTrackedRows(model);
  const rows = read.rows;
  const series = numericMetrics(rows);
  const unavailable = read.error?.includes("without a metrics store");
  return (
    <div class="card">
      <h2>Tracked metrics</h2>
      <p class="meta">From 15 minutes before this page opened; the latest 2,000.</p>
      {unavailable ? (
        <Empty>This modelship up runs without a metrics store.</Empty>
      ) : (
        <ErrorNote message={read.error} />
      )}
      {!read.error && rows.length === 0 && (
        <Empty>
          No tracked metrics: a model tracks them with <code>track_metric</code> (docs/metrics.md).
        </Empty>
      )}
      {series.size > 0 && (
        <Chart
          title="Tracked metrics"
          unit="value"
          series={[...series.keys()].map((label, index) => ({
            label,
            color: METRIC_COLORS[index] as string,
          }))}
          data={[rows.map((row) => row.startTimeStampMs / 1000), ...series.values()]}
        />
      )}
      {rows.length > 0 && (
        <Table label="Latest tracked metrics" head={["Time", "Build", "Prediction", "Metrics"]}>
          {rows
            .slice(-10)
            .reverse()
            .map((row) => (
              <tr key={row.predictionUuid ?? row.startTimeStampMs}>
                <td>{new Date(row.startTimeStampMs).toLocaleTimeString()}</td>
                <td>{row.modelBuildCrn?.split("/").pop() ?? "—"}</td>
                <td>
                  <code>{row.predictionUuid?.slice(0, 8) ?? "—"}</code>
                </td>
                <td>
                  <code class="wrap">{JSON.stringify(row.metrics)}</code>
                </td>
              </tr>
            ))}
        </Table>
      )}
    </div>
  );
}

const logKey = (line: LogEntry) => `${line.replica} ${line.seq}`;

/** Later first; within one replica and millisecond, the later line (by its seq) first. */
const newestFirst = (a: LogEntry, b: LogEntry) =>
  b.time.localeCompare(a.time) || (a.replica === b.replica ? b.seq - a.seq : 0);

/** The most log lines the pane keeps. */
const LOG_LINES = 1000;

/**
 * The replicas' log, newest first. The stream follows the replicas there are when it opens, so
 * it opens again when they change (a rollout, a restart); lines already shown are not repeated,
 * and the replaced replicas' lines stay.
 */
function Logs({ model, running, replicas }: { model: string; running: boolean; replicas: string }) {
  const [lines, setLines] = useState<LogEntry[]>([]);
  const [paused, setPaused] = useState(false);
  const seen = useRef(new Set<string>());
  useEffect(() => {
    if (!running || paused || replicas === "") return;
    const abort = new AbortController();
    let pending: LogEntry[] = [];
    let flush: number | undefined;
    void followLines<LogEntry>(
      `/api/v1/logs/${encodeURIComponent(model)}?follow=1`,
      (entry) => {
        // A reconnection replays what the replicas still hold: what is shown already is skipped.
        if (seen.current.has(`${entry.replica} ${entry.seq}`)) return;
        pending.push(entry);
        flush ??= window.setTimeout(() => {
          flush = undefined;
          const batch = pending;
          pending = [];
          setLines((old) => {
            const shown = new Set(old.map(logKey));
            const fresh = batch.filter((line) => {
              const key = logKey(line);
              if (shown.has(key)) return false;
              shown.add(key);
              return true;
            });
            // Newest first, as CDSW shows it: a replayed old line goes where it belongs.
            const kept = [...fresh, ...old].sort(newestFirst).slice(0, LOG_LINES);
            seen.current = new Set(kept.map(logKey));
            return kept;
          });
        }, 50);
      },
      abort.signal,
    );
    return () => {
      abort.abort();
      window.clearTimeout(flush);
    };
  }, [model, running, paused, replicas]);
  return (
    <div class="card">
      <div class="title-row">
        <h2>Log {running && !paused && <span class="live">live</span>}</h2>
        <button type="button" onClick={() => setPaused(!paused)} aria-pressed={paused}>
          {paused ? "Resume" : "Pause"}
        </button>
      </div>
      {lines.length === 0 ? (
        <Empty>{running ? "No output yet." : "No replica runs."}</Empty>
      ) : (
        // biome-ignore lint/a11y/noNoninteractiveTabindex: the log scrolls; the keyboard must reach it.
        <ol class="log-lines" aria-label={`Log of ${model}, newest first`} tabIndex={0}>
          {lines.map((entry) => (
            <li key={`${entry.replica} ${entry.seq}`} class={entry.stream}>
              <time>{entry.time.slice(11, 19)}</time>
              <span class="stream">{entry.stream}</span>
              <span class="replica">{entry.replica.split("-").pop()}</span>
              <span class="text">{entry.line}</span>
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
