// `modelship run SCRIPT [ARGS...]`: CDSW's "Run Experiment" (docs/metrics.md#experiments). The
// script runs in the environment a build of its Model is made in (cached by what makes it), in a
// fresh copy of the Model's source directory, so that nothing it writes lands in the work tree;
// what it tracked and the files it left are recorded as a run, in the metrics store.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { lstat, mkdir, readdir, rename } from "node:fs/promises";
import { constants } from "node:os";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { createInterface } from "node:readline";
import { StringDecoder } from "node:string_decoder";
import { parseArgs, promisify } from "node:util";
import { isRecord } from "../api/canonical-json.ts";
import { parseExactJson } from "../metrics/exact-json.ts";
import { metricsUrlFlag } from "../metrics/open.ts";
import type { RunFile, RunRecord } from "../metrics/port.ts";
import { removeTree } from "../platform/local/builder-port.ts";
import {
  copyTree,
  type Environment,
  ensureEnvironment,
  scriptInvocation,
} from "../platform/local/run-environment.ts";
import type { CommandResult, Output } from "./output.ts";
import { withRuns } from "./run-store.ts";
import { type RunTarget, targetOf } from "./run-target.ts";
import { formatRunDuration, formatValue } from "./runs.ts";

export const RUN_HELP = `Usage: modelship run [--model NAME] [--rebuild] SCRIPT [ARGS...]

Runs a training script as an experiment, as CDSW's "Run Experiment" does, and records the run:
the work tree's commit (and whether it had changes), the script and its arguments, how it ended,
when it started and how long it took, the last value of each metric it tracked
(track_metric), and the files it created or changed (kept in STATE/runs/ID; modelship runs add
copies one into the work tree). Prints the script's output as it comes, and exits with its exit
code.

The script runs in the environment a build of its Model is made in: runtime/scripts/local-build.sh
with the Model's runtime and build script, made once and reused while the build script, the
dependency files (requirements.txt, …) and local-build.sh stay the same. It runs in a fresh copy
of the Model's source directory, so what it writes never lands in the work tree. The Model is the
one whose source directory holds SCRIPT, among the manifests of the work tree.

Arguments after SCRIPT are the script's (to pass one named like an option of run before SCRIPT,
put -- first). Runs are recorded in the metrics store of the state directory: through the admin
API of the modelship up running on it, else in STATE/metrics directly.

Options:
  --model NAME       the Model whose environment and source directory to use
  --rebuild          build the environment again, even when one is cached
  --metrics-url URL  with no modelship up running, record in this PostgreSQL server
                     (postgres://…; or MODELSHIP_METRICS_URL) instead of STATE/metrics
  --state-dir DIR    the state directory (also MODELSHIP_STATE_DIR; default: that of the
                     modelship up following this work tree, else the one it makes by default)
`;

const execFileAsync = promisify(execFile);

/** The options of run that take a value: what follows one is not the script. */
const VALUE_OPTIONS = new Set(["--model", "--metrics-url", "--state-dir"]);

/** How long a finished run waits to record while another process holds the store's lock. */
const RECORD_WAIT_MS = 60_000;

/** run's own arguments (up to SCRIPT), the script, and the script's arguments. */
export function splitRunArguments(args: string[]): {
  own: string[];
  script: string | undefined;
  scriptArgs: string[];
} {
  const own: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] as string;
    if (arg === "--") {
      return { own, script: args[index + 1], scriptArgs: args.slice(index + 2) };
    }
    if (!arg.startsWith("-") || arg === "-") {
      return { own, script: arg, scriptArgs: args.slice(index + 1) };
    }
    own.push(arg);
    const value = args[index + 1];
    if (VALUE_OPTIONS.has(arg) && value !== undefined) {
      own.push(value);
      index++;
    }
  }
  return { own, script: undefined, scriptArgs: [] };
}

/**
 * The work tree's HEAD, and whether anything differs from it (untracked files too, as `git
 * status` shows them), from the git command: it knows every layout a work tree may have (a
 * linked worktree's .git file, a submodule's). Without git, the run is recorded without a commit.
 */
async function gitState(
  workTree: string,
  warn: (line: string) => void,
): Promise<{ commit?: string; dirty: boolean }> {
  const run = (...args: string[]) =>
    execFileAsync("git", ["-C", workTree, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
  try {
    const status = await run("status", "--porcelain");
    const dirty = status.stdout !== "";
    // Before the first commit there is no HEAD: rev-parse --verify fails, quietly.
    const head = await run("rev-parse", "--verify", "--quiet", "HEAD^{commit}").catch(
      () => undefined,
    );
    const commit = head?.stdout.trim();
    return commit ? { commit, dirty } : { dirty };
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    warn(
      `${missing ? "git is not on PATH" : `git cannot read ${workTree}: ${(error as { stderr?: string }).stderr?.trim() || (error as Error).message}`}; the run is recorded without its commit`,
    );
    return { dirty: true };
  }
}

interface FileState {
  /** What tells a changed file: its size, modification time and inode. */
  signature: string;
  size: number;
}

/** The regular files below `root`, by path relative to it ('/'-separated). */
async function filesBelow(root: string, base = ""): Promise<Map<string, FileState>> {
  const found = new Map<string, FileState>();
  for (const entry of await readdir(join(root, base), { withFileTypes: true })) {
    const path = base === "" ? entry.name : `${base}/${entry.name}`;
    if (entry.isDirectory()) {
      for (const [below, state] of await filesBelow(root, path)) found.set(below, state);
    } else if (entry.isFile()) {
      const info = await lstat(join(root, path), { bigint: true });
      found.set(path, {
        signature: `${info.size}:${info.mtimeNs}:${info.ino}`,
        size: Number(info.size),
      });
    }
  }
  return found;
}

/** What a run's metrics file holds: the last value of each key, and the files track_file named. */
async function readTracked(
  file: string,
  warn: (line: string) => void,
): Promise<{ metrics: Record<string, unknown>; tracked: string[] }> {
  const metrics: Record<string, unknown> = {};
  const tracked: string[] = [];
  if (!existsSync(file)) return { metrics, tracked };
  let number = 0;
  for await (const line of createInterface({
    input: createReadStream(file),
    crlfDelay: Infinity,
  })) {
    number++;
    if (line.trim() === "") continue;
    let entry: unknown;
    try {
      entry = parseExactJson(line);
    } catch {
      entry = undefined;
    }
    if (isRecord(entry) && typeof entry.key === "string" && "value" in entry) {
      metrics[entry.key] = entry.value;
    } else if (isRecord(entry) && typeof entry.file === "string" && entry.file !== "") {
      if (!tracked.includes(entry.file)) tracked.push(entry.file);
    } else {
      warn(
        `line ${number} of ${file} is neither a metric ({"key": …, "value": …}) nor a file ({"file": …}): left out`,
      );
    }
  }
  return { metrics, tracked };
}

/** The exit code of a process that ended with `code` or `signal`, as a shell reports it. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

/** Runs the script, its output to `output` and to `logFile` as it comes; resolves with its exit code. */
function runScript(
  invocation: { file: string; args: string[]; env: Record<string, string> },
  cwd: string,
  logFile: string,
  output: Output,
): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    // Its own process group: a signal for the run reaches what the script started, and what it
    // leaves running once it exits (holding the output pipes open) is ended with it.
    const child = spawn(invocation.file, invocation.args, {
      cwd,
      env: invocation.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const log = createWriteStream(logFile);
    const relay = (stream: NodeJS.ReadableStream, write: (text: string) => void) => {
      // A character split across two chunks is written whole.
      const decoder = new StringDecoder("utf8");
      stream.on("data", (chunk: Buffer) => {
        log.write(chunk);
        write(decoder.write(chunk));
      });
      stream.on("end", () => write(decoder.end()));
    };
    relay(child.stdout, (text) => text && output.out(text));
    relay(child.stderr, (text) => text && output.err(text));
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // The group is gone already.
      }
    };
    const forwarded: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
    // Ctrl-C (or a kill of modelship run) ends the script, and the run is still recorded.
    for (const signal of forwarded) process.on(signal, signalGroup);
    let exitCode = 0;
    child.once("exit", (code, signal) => {
      exitCode = exitCodeOf(code, signal);
      signalGroup("SIGKILL");
    });
    child.once("error", (error) => {
      for (const signal of forwarded) process.off(signal, signalGroup);
      log.end();
      reject(new Error(`could not run ${invocation.file}: ${error.message}`));
    });
    child.once("close", () => {
      for (const signal of forwarded) process.off(signal, signalGroup);
      log.end(() => resolvePromise(exitCode));
    });
  });
}

/**
 * The files a run left: those created or changed in its copy, and those track_file named (by a
 * path relative to the script's directory, or absolute). Names relative to the copy's top.
 */
function outputsOf(
  before: Map<string, FileState>,
  after: Map<string, FileState>,
  tracked: string[],
  copy: string,
  scriptDir: string,
  warn: (line: string) => void,
): RunFile[] {
  const files = new Map<string, RunFile>();
  for (const [name, state] of after) {
    if (before.get(name)?.signature !== state.signature) {
      files.set(name, { name, size: state.size, tracked: false });
    }
  }
  for (const named of tracked) {
    const path = relative(copy, resolve(scriptDir, named)).split(sep).join("/");
    if (path.startsWith("..") || isAbsolute(path)) {
      warn(`track_file("${named}") names a file outside the run's copy of the source: not kept`);
      continue;
    }
    const state = after.get(path);
    if (!state) warn(`track_file("${named}") names a file the run did not leave`);
    files.set(path, {
      name: path,
      ...(state ? { size: state.size } : {}),
      tracked: true,
    });
  }
  return [...files.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The SDK's settings from the caller's environment (docs/metrics.md#settings), so that a script
 * may read metrics or call a model as the caller could; nothing else of it reaches the script.
 */
function sdkSettings(env: NodeJS.ProcessEnv): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const name of ["MODELSHIP_URL", "MODELSHIP_API_KEY", "MODELSHIP_DEV"]) {
    const value = env[name];
    if (value) settings[name] = value;
  }
  return settings;
}

/** The environment of the target's Model, made now unless it is cached; its lines go to `output`. */
async function environmentOf(
  target: RunTarget,
  rebuild: boolean,
  output: Output,
): Promise<Environment> {
  const note = (line: string) => output.err(`modelship run: ${line}\n`);
  const buildScript = target.model.spec.buildScript;
  // Ctrl-C while the environment builds stops the build (its process group) too.
  const aborted = new AbortController();
  const abort = () => aborted.abort();
  process.once("SIGINT", abort);
  process.once("SIGTERM", abort);
  try {
    const environment = await ensureEnvironment(
      {
        runtime: target.runtime,
        sourceDir: target.sourceDir,
        ...(typeof buildScript === "string" ? { buildScript } : {}),
        leftOut: (path) => target.notCopied(path) || target.buildLeftOut(path),
      },
      join(target.stateDir, "envs"),
      {
        rebuild,
        onLine: (line) => output.err(`env | ${line}\n`),
        onWait: (holder) =>
          note(`waiting for process ${holder}, which is building the same environment`),
        signal: aborted.signal,
      },
    );
    note(
      environment.built
        ? `built environment ${environment.key} for model ${target.model.name} (its log: ${environment.log})`
        : `reusing environment ${environment.key} of model ${target.model.name} (the same build script, dependency files and local-build.sh; --rebuild builds it again)`,
    );
    return environment;
  } finally {
    process.off("SIGINT", abort);
    process.off("SIGTERM", abort);
  }
}

/**
 * Runs the script in a fresh copy of the source, in `pending`; leaves there what is kept of the
 * run (output.log, metrics.jsonl, files/) and returns its record.
 */
async function execute(
  target: RunTarget,
  environment: Environment,
  scriptArgs: string[],
  pending: string,
  output: Output,
): Promise<RunRecord> {
  const note = (line: string) => output.err(`modelship run: ${line}\n`);
  const { commit, dirty } = await gitState(target.workTree, note);
  const copy = join(pending, "work");
  const home = join(pending, "home");
  const metricsFile = join(pending, "metrics.jsonl");
  await mkdir(home, { recursive: true, mode: 0o700 });
  await copyTree(target.sourceDir, copy, target.notCopied);
  // The script runs where the caller is, when that is inside the source directory.
  const here = relative(target.sourceDir, process.cwd());
  const cwd = here.startsWith("..") || isAbsolute(here) ? copy : join(copy, here);
  const before = await filesBelow(copy);
  const invocation = await scriptInvocation(
    environment,
    target.runtime,
    join(copy, target.script),
    scriptArgs,
    { ...sdkSettings(process.env), MODELSHIP_RUN_METRICS_FILE: metricsFile },
    home,
  );
  const sourcePath = target.model.layout.sourcePath;
  note(
    `running ${target.script} in a copy of ${sourcePath === "." ? "the work tree" : sourcePath} (${commit ? commit.slice(0, 7) : "no commit yet"}${dirty ? ", with changes" : ""})`,
  );
  const startedMs = Date.now();
  const started = performance.now();
  const exitCode = await runScript(
    invocation,
    existsSync(cwd) ? cwd : copy,
    join(pending, "output.log"),
    output,
  );
  const durationMs = Math.round(performance.now() - started);

  const { metrics, tracked } = await readTracked(metricsFile, note);
  const scriptDir = dirname(join(copy, target.script));
  const files = outputsOf(before, await filesBelow(copy), tracked, copy, scriptDir, note);
  // The files are kept (moved: the copy is on the same file system) and the rest goes.
  for (const file of files) {
    if (file.size === undefined) continue;
    const kept = join(pending, "files", ...file.name.split("/"));
    await mkdir(dirname(kept), { recursive: true });
    await rename(join(copy, ...file.name.split("/")), kept);
  }
  await removeTree(copy);
  await removeTree(home);
  return {
    model: target.model.name,
    repository: target.workTree,
    sourcePath,
    ...(commit ? { commit } : {}),
    dirty,
    script: target.script,
    args: scriptArgs,
    status: exitCode === 0 ? "succeeded" : "failed",
    exitCode,
    startedMs,
    durationMs,
    metrics,
    files,
    environment: environment.key,
  };
}

/** Records the run and makes `pending` its directory, STATE/runs/ID; returns the id and where. */
async function keep(
  record: RunRecord,
  stateDir: string,
  pending: string,
  metricsUrl: string | undefined,
  output: Output,
): Promise<{ id: number; where: string; directory: string }> {
  let recorded: { id: number; where: string };
  try {
    recorded = await withRuns(stateDir, { metricsUrl, waitMs: RECORD_WAIT_MS }, async (runs) => ({
      id: await runs.record(record),
      where: runs.where,
    }));
  } catch (error) {
    throw new Error(
      `the run is not recorded (${(error as Error).message}); its output and files are in ${pending}`,
    );
  }
  const directory = join(stateDir, "runs", String(recorded.id));
  if (existsSync(directory)) {
    // Left by a store that was replaced (its ids start again at 1): kept aside, not mixed in.
    const when = new Date(record.startedMs).toISOString().replace(/[:.]/g, "-");
    const aside = `${directory}.before-${when}`;
    await rename(directory, aside);
    output.err(
      `modelship run: ${directory} held the files of an earlier store's run ${recorded.id}: moved to ${aside}\n`,
    );
  }
  await rename(pending, directory);
  return { ...recorded, directory };
}

/** The lines that end a run: how it ended, what it tracked, where its files are. */
function summaryOf(record: RunRecord, kept: { id: number; where: string; directory: string }) {
  const ended = record.exitCode === 0 ? "succeeded" : `failed with exit code ${record.exitCode}`;
  const lines = [
    `run ${kept.id} ${ended} in ${formatRunDuration(record.durationMs)} (recorded in ${kept.where})`,
  ];
  const keys = Object.keys(record.metrics);
  if (keys.length > 0) {
    const shown = keys.map((key) => `${key} ${formatValue(record.metrics[key])}`);
    lines.push(`  metrics: ${shown.join(", ")}`);
  }
  const files = record.files.filter((file) => file.size !== undefined);
  if (files.length > 0) {
    lines.push(
      `  files:   ${files.map((file) => file.name).join(", ")} (in ${join(kept.directory, "files")}; modelship runs add ${kept.id} FILE copies one into the work tree)`,
    );
  }
  return lines.join("\n");
}

export async function runRun(args: string[], output: Output): Promise<CommandResult> {
  const { own, script, scriptArgs } = splitRunArguments(args);
  if (own.includes("--help") || own.includes("-h")) {
    output.out(RUN_HELP);
    return { exitCode: 0 };
  }
  const { values } = parseArgs({
    args: own,
    options: {
      model: { type: "string" },
      rebuild: { type: "boolean", default: false },
      "metrics-url": { type: "string" },
      "state-dir": { type: "string" },
    },
  });
  if (script === undefined) {
    throw new Error("name the script to run: modelship run SCRIPT [ARGS...] (see --help)");
  }
  const target = await targetOf(script, values.model, values["state-dir"]);
  const environment = await environmentOf(target, values.rebuild, output);
  // Everything of the run is made here, and becomes STATE/runs/ID once the store gives the id.
  const pending = join(target.stateDir, "runs", `.pending-${randomBytes(6).toString("hex")}`);
  const record = await execute(target, environment, scriptArgs, pending, output);
  const metricsUrl = metricsUrlFlag(values["metrics-url"]) ?? process.env.MODELSHIP_METRICS_URL;
  const kept = await keep(record, target.stateDir, pending, metricsUrl, output);
  output.err(`modelship run: ${summaryOf(record, kept)}\n`);
  return { exitCode: record.exitCode };
}
