// `modelship metrics MODEL`: what a model's predictions tracked, from the metrics store of a
// running `modelship up` (through its admin API), and the drift of an input feature.
import { parseArgs } from "node:util";
import { parseDurationMs } from "../api/duration.ts";
import { buildCrn, deploymentCrn, modelCrn } from "../metrics/crn.ts";
import { driftOf } from "../metrics/drift.ts";
import type { MetricsRow } from "../metrics/port.ts";
import { adminJson, formatTable, STATE_DIR_OPTION } from "./client.ts";
import type { CommandResult, Output } from "./output.ts";

export const METRICS_HELP = `Usage: modelship metrics MODEL [--since T] [--until T] [--build N] [--deployment NAME[/ID]] [-o json] [--drift FEATURE [--split T]]

Prints what a model's predictions tracked (track_metric inside a function decorated with
model_metrics), the ground truth added later (track_delayed_metrics), the aggregates jobs
tracked (track_aggregate_metrics) and the hourly rollups of predictions older than the
retention, oldest first, from the running modelship up.

Options:
  --since T               from this time: an ISO date or time, ms since the epoch, or a
                          duration back from now (90m, 24h) (default: everything)
  --until T               up to (not including) this time (default: now)
  --build N               only what build N answered
  --deployment NAME[/ID]  only what ModelDeployment NAME answered (one rollout with /ID)
  -o json                 CDSW's read_metrics answer: {"metrics": [...]}
  --drift FEATURE         the population stability index of FEATURE (a metric, or a member of
                          the tracked "input") between the window's first half and its second
  --split T               with --drift: the baseline is before T, the current window after
  --state-dir DIR         the state directory of the modelship up to ask
`;

export async function runMetrics(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      since: { type: "string" },
      until: { type: "string" },
      build: { type: "string" },
      deployment: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
      drift: { type: "string" },
      split: { type: "string" },
      ...STATE_DIR_OPTION,
    },
  });
  const model = positionals[0];
  if (model === undefined || positionals.length > 1) {
    throw new Error("name one model: modelship metrics MODEL (see --help)");
  }
  if (values.output !== "table" && values.output !== "json") {
    throw new Error(`--output must be json (or omitted for a table), not "${values.output}"`);
  }
  const now = Date.now();
  const parameters = new URLSearchParams({ modelCrn: modelCrn(model) });
  if (values.build !== undefined) {
    if (!/^[1-9][0-9]*$/.test(values.build)) {
      throw new Error(`--build must be a build number, not "${values.build}"`);
    }
    parameters.set("modelBuildCrn", buildCrn(model, Number(values.build)));
  }
  if (values.deployment !== undefined) {
    const [name, id] = values.deployment.split("/");
    if (!name || (id !== undefined && !/^[1-9][0-9]*$/.test(id))) {
      throw new Error(`--deployment must be NAME or NAME/ID, not "${values.deployment}"`);
    }
    parameters.set(
      "modelDeploymentCrn",
      deploymentCrn(model, name, id === undefined ? undefined : Number(id)),
    );
  }
  if (values.since !== undefined) {
    parameters.set("startTimestampMs", String(timeOf(values.since, "--since", now)));
  }
  parameters.set(
    "endTimestampMs",
    String(values.until === undefined ? now + 1 : timeOf(values.until, "--until", now)),
  );
  const rows = await readAll(values["state-dir"], parameters);

  if (values.drift !== undefined) {
    const split = values.split === undefined ? undefined : timeOf(values.split, "--split", now);
    const report = driftOf(rows, values.drift, split);
    if (values.output === "json") {
      output.out(`${JSON.stringify(report, null, 2)}\n`);
      return { exitCode: 0 };
    }
    const window = (part: typeof report.baseline) =>
      `${part.count} predictions, ${iso(part.startMs)} to ${iso(part.endMs)}`;
    output.out(
      `drift of ${report.feature} (population stability index): ${report.psi.toFixed(4)} — ${psiReading(report.psi)}\n` +
        `  baseline: ${window(report.baseline)}\n  current:  ${window(report.current)}\n` +
        (report.skipped > 0
          ? `  ${report.skipped} predictions tracked no number for ${report.feature}\n`
          : ""),
    );
    return { exitCode: 0 };
  }
  if (values.output === "json") {
    output.out(`${JSON.stringify({ metrics: rows }, null, 2)}\n`);
    return { exitCode: 0 };
  }
  if (rows.length === 0) {
    output.err(`No metrics of model ${model} in the window.\n`);
    return { exitCode: 0 };
  }
  output.out(`${metricsTable(rows)}\n${countsLine(rows)}\n`);
  return { exitCode: 0 };
}

/** Every page of the answer. */
async function readAll(
  stateDir: string | undefined,
  parameters: URLSearchParams,
): Promise<MetricsRow[]> {
  const rows: MetricsRow[] = [];
  for (;;) {
    const page = await adminJson<{ metrics: MetricsRow[]; next?: string }>(
      stateDir,
      `/api/v1/model-metrics?${parameters}`,
    );
    rows.push(...page.metrics);
    if (!page.next) return rows;
    parameters.set("cursor", page.next);
  }
}

/** An ISO time, ms since the epoch, or a duration back from `now`. */
export function timeOf(text: string, flag: string, now: number): number {
  if (/^[0-9]{10,16}$/.test(text)) return Number(text);
  const back = parseDurationMs(text);
  if (back !== undefined) return now - back;
  const parsed = Date.parse(text);
  if (Number.isNaN(parsed)) {
    throw new Error(
      `${flag} must be an ISO time (2026-12-01T10:00:00Z), ms since the epoch, or a duration back from now (24h), not "${text}"`,
    );
  }
  return parsed;
}

function psiReading(psi: number): string {
  if (psi < 0.1) return "no significant shift";
  if (psi < 0.25) return "a moderate shift";
  return "a large shift";
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

const METRICS_COLUMN_CHARS = 80;

export function metricsTable(rows: MetricsRow[]): string {
  return formatTable([
    ["TIME", "TYPE", "PREDICTION", "BUILD", "DEPLOYMENT", "METRICS"],
    ...rows.map((row) => {
      const metrics = JSON.stringify(row.metrics);
      return [
        iso(row.startTimeStampMs),
        row.type === "rollup" ? `rollup of ${row.count}` : row.type,
        row.predictionUuid ?? "",
        row.modelBuildCrn?.split("/builds/")[1] ?? "",
        row.modelDeploymentCrn?.split("/deployments/")[1] ?? "",
        metrics.length > METRICS_COLUMN_CHARS
          ? `${metrics.slice(0, METRICS_COLUMN_CHARS - 1)}…`
          : metrics,
      ];
    }),
  ]);
}

function countsLine(rows: MetricsRow[]): string {
  const count = (type: MetricsRow["type"]) => rows.filter((row) => row.type === type).length;
  return `${count("prediction")} predictions, ${count("aggregate")} aggregates, ${count("rollup")} hourly rollups`;
}
