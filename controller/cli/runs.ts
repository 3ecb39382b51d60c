// `modelship runs`: the experiment runs `modelship run` recorded, with their metrics side by side
// as CDSW's Experiments table shows them; `runs show ID`, one run; `runs add RUN FILE`, a file a
// run left copied into the work tree to be committed (docs/metrics.md#experiments).
import { existsSync } from "node:fs";
import { copyFile, mkdir, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, posix, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { formatAge } from "../core/age.ts";
import { metricsUrlFlag } from "../metrics/open.ts";
import type { Run } from "../metrics/port.ts";
import { formatDuration } from "../platform/local/builder.ts";
import { formatBytes } from "../source/limits.ts";
import { formatTable } from "./client.ts";
import type { CommandResult, Output } from "./output.ts";
import { runsStateDir, withRuns } from "./run-store.ts";
import { realPath, workTreeOf } from "./state-dir.ts";

/** The largest file `runs add` copies into the work tree: CDSW's limit for a project's files. */
const MAX_ADDED_FILE_BYTES = 50 * 1024 * 1024;

export const RUNS_HELP = `Usage: modelship runs [--model NAME] [-o json]
       modelship runs show ID [-o json]
       modelship runs add RUN FILE [--to PATH] [--force]

Lists the experiment runs modelship run recorded, newest first, with one column per metric they
tracked (the last value of each); shows one run; or copies a file a run left into the work tree
(by default into its Model's source directory), to be committed.

runs add refuses a file larger than ${formatBytes(MAX_ADDED_FILE_BYTES)}: keep big artifacts out of git (in an object
store the model reads at load time, or train at build time, as the iris examples' build.sh runs
fit.py), and never overwrites a file without --force.

Options:
  --model NAME       only this Model's runs
  -o, --output FMT   table or json
  --to PATH          runs add: where the file goes (a directory, or a file name), inside the
                     work tree
  --force            runs add: overwrite a file that is there
  --metrics-url URL  with no modelship up running, read this PostgreSQL server (or
                     MODELSHIP_METRICS_URL) instead of STATE/metrics
  --state-dir DIR    the state directory (also MODELSHIP_STATE_DIR; default: that of the
                     modelship up following this work tree, else the one it makes by default)
`;

/** A metric's value in a table: a number or string as it is, anything else as JSON. */
export function formatValue(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** 0.4s, 12.3s, 2m5s. */
export function formatRunDuration(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : formatDuration(ms);
}

function commitOf(run: Run): string {
  const commit = run.commit ? run.commit.slice(0, 7) : "(none)";
  return run.dirty ? `${commit}-dirty` : commit;
}

function statusOf(run: Run): string {
  return run.status === "succeeded" ? "succeeded" : `failed (${run.exitCode})`;
}

/** A script and its arguments as a shell would take them back. */
function commandOf(run: Run): string {
  const quoted = (word: string) =>
    /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
  return [run.script, ...run.args].map(quoted).join(" ");
}

const SCRIPT_COLUMN_CHARS = 40;

/** A run's metric keys in a stable order (the store keeps jsonb's, shortest first). */
const keysOf = (metrics: Record<string, unknown>) => Object.keys(metrics).sort();

/** The Experiments table: a run a row, a metric a column. */
function runsTable(runs: Run[], now: Date): string {
  const keys = [...new Set(runs.flatMap((run) => keysOf(run.metrics)))].sort();
  return formatTable([
    ["RUN", "STATUS", "MODEL", "SCRIPT", "COMMIT", "AGE", "DURATION", ...keys],
    ...runs.map((run) => {
      const command = commandOf(run);
      return [
        String(run.id),
        statusOf(run),
        run.model,
        command.length > SCRIPT_COLUMN_CHARS
          ? `${command.slice(0, SCRIPT_COLUMN_CHARS - 1)}…`
          : command,
        commitOf(run),
        formatAge(new Date(run.startedMs).toISOString(), now),
        formatRunDuration(run.durationMs),
        ...keys.map((key) => (key in run.metrics ? formatValue(run.metrics[key]) : "")),
      ];
    }),
  ]);
}

/** Where a run's files are kept. */
function filesDir(stateDir: string, run: Run): string {
  return join(stateDir, "runs", String(run.id), "files");
}

function describeRun(run: Run, stateDir: string): string {
  const lines = [
    `Run:          ${run.id}`,
    `Model:        ${run.model}`,
    `Script:       ${commandOf(run)}`,
    `Status:       ${run.status === "succeeded" ? "succeeded" : `failed with exit code ${run.exitCode}`}`,
    `Commit:       ${run.commit ?? "(none yet)"}${run.dirty ? " (the work tree had changes)" : ""}`,
    `Work tree:    ${run.repository}${run.sourcePath === "." ? "" : ` (source ${run.sourcePath})`}`,
    `Started:      ${new Date(run.startedMs).toISOString()}`,
    `Duration:     ${formatRunDuration(run.durationMs)}`,
    `Environment:  ${run.environment}`,
  ];
  const keys = keysOf(run.metrics);
  lines.push(keys.length > 0 ? "Metrics:" : "Metrics:      (none tracked)");
  const width = Math.max(0, ...keys.map((key) => key.length));
  for (const key of keys) lines.push(`  ${key.padEnd(width)}  ${formatValue(run.metrics[key])}`);
  if (run.files.length === 0) lines.push("Files:        (none)");
  else {
    lines.push(`Files:        (kept in ${filesDir(stateDir, run)})`);
    const nameWidth = Math.max(...run.files.map((file) => file.name.length));
    for (const file of run.files) {
      const size = file.size === undefined ? "not left by the run" : formatBytes(file.size);
      lines.push(
        `  ${file.name.padEnd(nameWidth)}  ${size}${file.tracked ? "  (track_file)" : ""}`,
      );
    }
  }
  lines.push(`Output:       ${join(stateDir, "runs", String(run.id), "output.log")}`);
  return `${lines.join("\n")}\n`;
}

function runIdOf(text: string | undefined, usage: string): number {
  if (text === undefined) throw new Error(`name the run: ${usage}`);
  if (!/^[1-9][0-9]{0,15}$/.test(text)) throw new Error(`a run's id is a number, not "${text}"`);
  return Number(text);
}

export async function runRuns(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
      to: { type: "string" },
      force: { type: "boolean", default: false },
      "metrics-url": { type: "string" },
      "state-dir": { type: "string" },
    },
  });
  if (values.output !== "table" && values.output !== "json") {
    throw new Error(`--output must be json (or omitted for a table), not "${values.output}"`);
  }
  const found = workTreeOf(process.cwd());
  if (found === undefined && !values["state-dir"] && !process.env.MODELSHIP_STATE_DIR) {
    throw new Error("run it in the work tree the runs were made in, or pass --state-dir");
  }
  const workTree = found === undefined ? undefined : realPath(found);
  const stateDir = runsStateDir(values["state-dir"], workTree ?? process.cwd());
  const store = {
    metricsUrl: metricsUrlFlag(values["metrics-url"]) ?? process.env.MODELSHIP_METRICS_URL,
    // Reads refuse at once when another process holds the store: nothing is lost by asking again.
    waitMs: 0,
    readOnly: true,
  };
  const [subcommand, ...rest] = positionals;

  if (subcommand === undefined) {
    const runs = await withRuns(stateDir, store, (access) =>
      access.list(values.model ? { model: values.model } : {}),
    );
    if (values.output === "json") {
      output.out(`${JSON.stringify({ items: runs }, null, 2)}\n`);
    } else if (runs.length === 0) {
      output.err("No runs yet: modelship run SCRIPT runs one and records it.\n");
    } else {
      output.out(`${runsTable(runs, new Date())}\n`);
    }
    return { exitCode: 0 };
  }

  if (subcommand === "show") {
    const id = runIdOf(rest[0], "modelship runs show ID");
    const { run, where } = await withRuns(stateDir, store, async (access) => ({
      run: await access.get(id),
      where: access.where,
    }));
    if (!run) throw new Error(`no run ${id} in ${where}`);
    output.out(
      values.output === "json" ? `${JSON.stringify(run, null, 2)}\n` : describeRun(run, stateDir),
    );
    return { exitCode: 0 };
  }

  if (subcommand === "add") {
    const usage = "modelship runs add RUN FILE [--to PATH] [--force]";
    const id = runIdOf(rest[0], usage);
    if (rest[1] === undefined || rest.length > 2) throw new Error(`name one file: ${usage}`);
    if (workTree === undefined) throw new Error("runs add copies into a work tree: run it in one");
    const { run, where } = await withRuns(stateDir, store, async (access) => ({
      run: await access.get(id),
      where: access.where,
    }));
    if (!run) throw new Error(`no run ${id} in ${where}`);
    return addFile(run, posix.normalize(rest[1]), stateDir, workTree, values, output);
  }

  throw new Error(`unknown subcommand "${subcommand}": runs, runs show ID or runs add RUN FILE`);
}

/** `runs add`: copies a file the run left into the work tree, within the size git should hold. */
async function addFile(
  run: Run,
  name: string,
  stateDir: string,
  workTree: string,
  options: { to?: string | undefined; force: boolean },
  output: Output,
): Promise<CommandResult> {
  const file = run.files.find((candidate) => candidate.name === name);
  if (!file) {
    const names = run.files.map((candidate) => candidate.name).join(", ") || "none";
    throw new Error(`run ${run.id} left no file ${name} (its files: ${names})`);
  }
  if (file.size === undefined) {
    throw new Error(`run ${run.id} named ${name} with track_file, but did not leave it`);
  }
  const kept = join(filesDir(stateDir, run), ...name.split("/"));
  const size = (await stat(kept).catch(() => undefined))?.size;
  if (size === undefined) throw new Error(`run ${run.id}'s ${name} is not in ${kept} any more`);
  if (size > MAX_ADDED_FILE_BYTES) {
    output.err(
      `modelship runs add: ${name} of run ${run.id} is ${formatBytes(size)}, larger than the ${formatBytes(MAX_ADDED_FILE_BYTES)} a file copied into the work tree may be: ` +
        "big artifacts do not belong in git (every clone and every build would carry it). Keep it in an object store and have the model load it from there, " +
        "or train at build time, as the iris examples do (their build.sh runs fit.py, so model.pkl is made in each build and never committed). " +
        `The file stays in ${kept}.\n`,
    );
    return { exitCode: 1 };
  }
  let target =
    options.to === undefined ? join(workTree, run.sourcePath, name) : resolve(options.to);
  if (
    options.to !== undefined &&
    (options.to.endsWith("/") || (await stat(target).catch(() => undefined))?.isDirectory())
  ) {
    target = join(target, basename(name));
  }
  const inTree = relative(workTree, realPath(target));
  if (inTree.startsWith("..") || isAbsolute(inTree)) {
    throw new Error(
      `${options.to ?? target} is outside the work tree ${workTree}: runs add copies into the work tree, to be committed (the file is in ${kept})`,
    );
  }
  const shown = relative(process.cwd(), target) || target;
  if (existsSync(target) && !options.force) {
    output.err(
      `modelship runs add: ${shown} exists; nothing was copied (pass --force to overwrite it)\n`,
    );
    return { exitCode: 1 };
  }
  await mkdir(dirname(target), { recursive: true });
  await copyFile(kept, target);
  output.out(
    `copied ${name} of run ${run.id} to ${shown} (${formatBytes(size)}): git add it to commit it\n`,
  );
  return { exitCode: 0 };
}
