// The local platform's Builder (docs/builds.md): runs
// runtime/scripts/local-build.sh for each build, keeps its output, and reports its phase.
// Statuses live in memory only; the caller keeps them in its store, and after a restart
// `LocalBuilder.completedImage` tells a finished build's directory from an unfinished one.
import { access, lstat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { modelEnvironment } from "./sandbox.ts";

export interface LocalBuildRequest {
  /** A unique name, such as "default/iris-3". */
  name: string;
  runtime: "python3" | "r";
  /** The model's source directory, already exported from git at the build's commit. */
  sourceDir: string;
  /** Where the build goes; must not exist yet. */
  outputDir: string;
  buildScript?: string;
  /**
   * Where builds of the same build script and requirements share their venv or R library
   * (local-build.sh --env-cache); undefined: each build makes its own.
   */
  envCacheDir?: string;
  /** The build's whole environment: nothing of this process's is passed on. */
  env?: Record<string, string>;
  /** Run the build as this user (see docs/security.md); undefined: as this process. */
  user?: { uid: number; gid: number };
  /** Called with each line of output as it comes, for a console to follow the build. */
  onLine?: (line: string, stream: "out" | "err") => void;
}

export type LocalBuildPhase = "Building" | "Succeeded" | "Failed";

export interface LocalBuildStatus {
  phase: LocalBuildPhase;
  startedAt: string;
  completedAt?: string;
  /** On failure: what failed and the last 20 lines of output. */
  message?: string;
  /** On success: "local:<outputDir>" */
  image?: string;
}

export interface LocalBuilderOptions {
  /** The build script; default: runtime/scripts/local-build.sh of this checkout. */
  script?: string;
  /** How many of the last output lines a failure's message quotes; default 20. */
  logLines?: number;
  /** How many output lines `logs()` keeps per build (the oldest go first); default 10000. */
  maxLogLines?: number;
  /** A build still running after this long is killed and fails; default 30 minutes. */
  deadlineMs?: number;
}

export const DEFAULT_BUILD_DEADLINE_MS = 30 * 60_000;

export const DEFAULT_BUILD_SCRIPT = fileURLToPath(
  new URL("../../../runtime/scripts/local-build.sh", import.meta.url),
);

/** local-build.sh writes exactly one line with this prefix (on stderr) when it fails. */
const ERROR_PREFIX = "==> error: ";
/** Each kept line starts with "out | " or "err | ". */
const STREAM_PREFIX_LENGTH = 6;
/** SIGTERM first, SIGKILL this long after. */
const FORCE_KILL_AFTER_MS = 5000;

interface BuildState {
  status: LocalBuildStatus;
  /** The output, each line prefixed with its stream. */
  lines: string[];
  /** Lines dropped from the front of `lines` because of `maxLogLines`. */
  dropped: number;
  /** Set while the process runs. */
  kill?: () => void;
  /** Why it was ended early, if it was: stop(), cancel() or its deadline. */
  endedBy?: "stop" | "cancel" | "deadline";
}

interface Build extends BuildState {
  /** Resolves with the final status; never rejects. */
  done: Promise<LocalBuildStatus>;
}

export class LocalBuilder {
  private readonly script: string;
  private readonly logLines: number;
  private readonly maxLogLines: number;
  private readonly deadlineMs: number;
  private readonly builds = new Map<string, Build>();
  private closed = false;

  constructor(options: LocalBuilderOptions = {}) {
    this.script = options.script ?? DEFAULT_BUILD_SCRIPT;
    this.logLines = options.logLines ?? 20;
    this.maxLogLines = Math.max(options.maxLogLines ?? 10_000, this.logLines);
    this.deadlineMs = options.deadlineMs ?? DEFAULT_BUILD_DEADLINE_MS;
  }

  /**
   * "local:<outputDir>" when outputDir holds a finished build (its build.json exists, and
   * local-build.sh writes it last), else undefined: not built, still building, or failed. A
   * build whose shared environment is gone (its link leads nowhere) is not finished either.
   */
  static async completedImage(outputDir: string): Promise<string | undefined> {
    const dir = resolve(outputDir);
    try {
      await access(join(dir, "build.json"));
      for (const environment of ["venv", "rlib"]) {
        const path = join(dir, environment);
        const link = await lstat(path).catch(() => undefined);
        if (link?.isSymbolicLink()) await access(path);
      }
      return `local:${dir}`;
    } catch {
      return undefined;
    }
  }

  /** Starts the build (idempotent: a second start of the same name is a no-op while it runs or after it ended). */
  start(request: LocalBuildRequest): void {
    if (this.builds.has(request.name)) return;
    const state: BuildState = {
      status: { phase: "Building", startedAt: new Date().toISOString() },
      lines: [],
      dropped: 0,
    };
    const done = this.closed
      ? Promise.resolve(this.finish(state, { phase: "Failed", message: "the builder is stopped" }))
      : this.run(state, request);
    this.builds.set(request.name, Object.assign(state, { done }));
  }

  status(name: string): LocalBuildStatus | undefined {
    const build = this.builds.get(name);
    return build && { ...build.status };
  }

  /** The captured output (stdout and stderr interleaved as lines, each line prefixed "out | " or "err | "). */
  logs(name: string): string {
    const build = this.builds.get(name);
    if (!build) return "";
    const head = build.dropped > 0 ? [`... ${build.dropped} earlier lines dropped`] : [];
    const lines = [...head, ...build.lines];
    return lines.length > 0 ? `${lines.join("\n")}\n` : "";
  }

  /** Resolves with the final status. Rejects for a name that was never started. */
  async wait(name: string): Promise<LocalBuildStatus> {
    const build = this.builds.get(name);
    if (!build) throw new Error(`no build named ${name}`);
    return { ...(await build.done) };
  }

  /**
   * Kills a build's whole process tree if it runs (a newer build superseded it, or its Model
   * went), waits for it, and forgets it.
   */
  async cancel(name: string): Promise<void> {
    const build = this.builds.get(name);
    if (!build) return;
    if (build.status.phase === "Building") {
      build.endedBy = "cancel";
      build.kill?.();
      await build.done;
    }
    this.builds.delete(name);
  }

  /** Kills running builds (SIGTERM, then SIGKILL after 5 s) and waits for them. */
  async stop(): Promise<void> {
    this.closed = true;
    const running = [...this.builds.values()].filter((build) => build.status.phase === "Building");
    for (const build of running) {
      build.endedBy = "stop";
      build.kill?.();
    }
    await Promise.all(running.map((build) => build.done));
  }

  private async run(build: BuildState, request: LocalBuildRequest): Promise<LocalBuildStatus> {
    const outputDir = resolve(request.outputDir);
    const args = ["--runtime", request.runtime, "--source", resolve(request.sourceDir)];
    args.push("--output", outputDir);
    if (request.buildScript !== undefined) args.push("--build-script", request.buildScript);
    if (request.envCacheDir !== undefined) args.push("--env-cache", resolve(request.envCacheDir));
    const maxLogLines = this.maxLogLines;
    // An execa transform: called with each line (without its newline), yields nothing.
    const onLine = request.onLine;
    const record = (stream: "out" | "err") =>
      // biome-ignore lint/correctness/useYield: the line is kept here, not passed on.
      function* (line: string) {
        onLine?.(line, stream);
        build.lines.push(`${stream} | ${line}`);
        if (build.lines.length > maxLogLines) {
          build.lines.shift();
          build.dropped++;
        }
      };

    try {
      const subprocess = execa(this.script, args, {
        // The build's own environment and nothing else: this process's (a git token, say)
        // is not the model's to see.
        // No pip cache: it would land in the build (HOME), made read-only with it.
        env: modelEnvironment({ PIP_NO_CACHE_DIR: "1", ...request.env }, outputDir),
        extendEnv: false,
        ...(request.user ? { uid: request.user.uid, gid: request.user.gid } : {}),
        stdin: "ignore",
        // Each line goes to `record`, which yields nothing: execa keeps no copy of the output.
        stdout: record("out"),
        stderr: record("err"),
        reject: false,
        // Its own process group: a kill reaches pip, R and whatever else the build script started.
        killDescendants: true,
        killSignal: "SIGTERM",
        forceKillAfterDelay: FORCE_KILL_AFTER_MS,
      });
      build.kill = () => subprocess.kill();
      // Whatever the build script left running in the background would hold the output pipes
      // open and the build with them: once the script itself exits, its process group goes.
      subprocess.nodeChildProcess.once("exit", () => subprocess.kill());
      const deadline = setTimeout(() => {
        build.endedBy = "deadline";
        subprocess.kill();
      }, this.deadlineMs);
      const result = await subprocess;
      clearTimeout(deadline);
      build.kill = undefined;

      if (result.exitCode === 0) {
        const image = await LocalBuilder.completedImage(outputDir);
        if (image) return this.finish(build, { phase: "Succeeded", image });
        return this.failed(build, `${this.scriptName} finished without writing build.json`);
      }
      const errorLine = build.lines.findLast((line) => line.startsWith(`err | ${ERROR_PREFIX}`));
      let what: string;
      if (build.endedBy === "stop") what = "the build was stopped";
      else if (build.endedBy === "cancel") what = "the build was cancelled";
      else if (build.endedBy === "deadline") {
        what = `the build ran past its deadline of ${formatDuration(this.deadlineMs)} and was killed`;
      } else if (result.signal) what = `${this.scriptName} was killed by ${result.signal}`;
      else if (errorLine) what = errorLine.slice(STREAM_PREFIX_LENGTH + ERROR_PREFIX.length);
      else if (result.exitCode !== undefined) {
        what = `${this.scriptName} exited with code ${result.exitCode}`;
      } else what = `could not run ${this.script}: ${result.originalMessage ?? result.message}`;
      return this.failed(build, what, errorLine);
    } catch (error) {
      build.kill = undefined;
      return this.failed(build, `could not run ${this.script}: ${(error as Error).message}`);
    }
  }

  private get scriptName(): string {
    return this.script.slice(this.script.lastIndexOf("/") + 1);
  }

  /** A Failed status whose message is `what` and then the last lines of output. */
  private failed(build: BuildState, what: string, omit?: string): LocalBuildStatus {
    const tail = build.lines
      .filter((line) => line !== omit)
      .slice(-this.logLines)
      .map((line) => line.slice(STREAM_PREFIX_LENGTH));
    const message = tail.length > 0 ? `${what}:\n${tail.join("\n")}` : what;
    return this.finish(build, { phase: "Failed", message });
  }

  private finish(
    build: BuildState,
    outcome: Pick<LocalBuildStatus, "phase" | "message" | "image">,
  ): LocalBuildStatus {
    build.status = {
      startedAt: build.status.startedAt,
      completedAt: new Date().toISOString(),
      ...outcome,
    };
    return { ...build.status };
  }
}

/** `30m`, `90s`, `1h30m`: how a deadline reads in a message. */
export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  const parts: [number, string][] = [
    [Math.floor(seconds / 3600), "h"],
    [Math.floor((seconds % 3600) / 60), "m"],
    [seconds % 60, "s"],
  ];
  const text = parts
    .filter(([value]) => value > 0)
    .map(([value, unit]) => `${value}${unit}`)
    .join("");
  return text || `${ms}ms`;
}
