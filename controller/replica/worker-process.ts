// Starts a language worker (runtime/python or runtime/r) and speaks its protocol: requests on the
// worker's fd 3, answers on its fd 4, one JSON object per line (docs/workers.md). The user's
// stdout and stderr are handed to the caller line by line, for the replica's log.
//
// The worker runs in a process group of its own, and the group is what gets signalled: whatever
// the model forks (children that ignore SIGTERM, grandchildren that outlive their parent) is
// stopped with it. Every reader of the worker's pipes is bounded, so a model that writes without
// end costs the agent a fixed amount of memory.
import { type ChildProcess, spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { DEFAULT_RESPONSE_LIMIT_BYTES, jsonTopLevelMembers } from "../api/http.ts";
import { BoundedLines, logLineText } from "./bounded-lines.ts";
import { DEFAULT_LOG_LINE_BYTES } from "./log-ring.ts";

export type Runtime = "python3" | "r";

export interface WorkerError {
  type: string;
  message: string;
  traceback?: string;
}

/**
 * An answer as the worker wrote it. A response stays JSON text, never parsed: parsing would
 * round integers beyond 2^53, and the caller gets it byte for byte.
 */
export type RawWorkerAnswer =
  | {
      id: number;
      kind: "response";
      responseJson: string;
      /** The metrics the function tracked (docs/metrics.md): a JSON object's text, ASCII only. */
      metricsJson?: string;
      /** Why metrics the worker sent were not kept (too large, not an object). */
      metricsDropped?: string;
    }
  | { id: number; kind: "error"; error: WorkerError }
  /** The answer passed `maxResponseBytes`; the rest of it was dropped as it arrived. */
  | { id: number; kind: "too_large" };

/** An answer with its response parsed, for callers that want values (tests, examples). */
export type WorkerAnswer =
  | { id: number; ok: true; response: unknown }
  | { id: number; ok: false; error: WorkerError };

export type WorkerEnd = {
  type: "exited";
  code: number | null;
  signal: NodeJS.Signals | null;
  /**
   * Why it could not start at all (no python3 on PATH, a directory that is not there), or why it
   * was killed (it broke the protocol).
   */
  error?: string;
};

export type WorkerStart =
  | { type: "ready"; protocol: number; runtime: Runtime }
  | { type: "load_error"; error: WorkerError }
  | WorkerEnd;

export interface WorkerOptions {
  runtime: Runtime;
  file: string;
  functionName: string;
  /** Working directory of the model's code. */
  cwd: string;
  /**
   * The worker's whole environment: nothing of this process's is inherited, so the agent's own
   * secrets never reach the model. The Python worker gets its package put first on PYTHONPATH.
   * Default: inheritedEnvironment(process.env).
   */
  env?: NodeJS.ProcessEnv;
  /** Run the worker as this user id (with `gid`; both or neither). Needs root. */
  uid?: number;
  gid?: number;
  /** Each line the user's code prints, tagged with its stream (at most `maxLineBytes`, marked). */
  onOutput?: (stream: "stdout" | "stderr", line: string) => void;
  /** The longest printed line kept whole; the rest of a longer one is counted, not kept. */
  maxLineBytes?: number;
  /** The largest response an answer may carry: a larger one ends its call as `too_large`. */
  maxResponseBytes?: number;
  /** How long the worker's process group has after SIGTERM (or after the worker's exit). */
  killGraceMs?: number;
  /**
   * The most the worker may allocate: RLIMIT_DATA, which counts the heap and private mappings
   * (numpy's arrays, R's vectors) but not the shared libraries an import maps. An allocation
   * past it fails inside the worker (Python's MemoryError, R's "cannot allocate vector").
   */
  memoryLimitBytes?: number | undefined;
  /**
   * Python: the socket of the model's preloaded parent (fork_server.py). The worker is then
   * forked from it (launch_worker.py), sharing what the file loaded, instead of loading it
   * afresh; without a parent there, it loads it itself.
   */
  forkServer?: string | undefined;
}

export const DEFAULT_KILL_GRACE_MS = 2000;
/** Room for an answer's id, ok, and an error's message and traceback, besides the response. */
const ANSWER_ENVELOPE_BYTES = 1024 * 1024;
/** After SIGKILL, how long the pipes may stay open: only a process that left the group holds them. */
const PIPES_AFTER_KILL_MS = 500;

/** What a worker is given of the agent's environment: enough to find programs and libraries. */
const INHERITED_VARIABLES = ["PATH", "HOME", "LANG"];

/** The variables of `INHERITED_VARIABLES` that `from` sets. */
export function inheritedEnvironment(from: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED_VARIABLES) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

const PYTHON_PACKAGE_DIR = fileURLToPath(new URL("../../runtime/python/", import.meta.url));
const R_WORKER = fileURLToPath(new URL("../../runtime/r/worker.R", import.meta.url));
const PYTHON_LAUNCHER = fileURLToPath(
  new URL("../../runtime/python/launch_worker.py", import.meta.url),
);

/** The shell's exit code when it cannot set the limit: the worker never starts unlimited. */
const LIMIT_FAILED_EXIT = 111;

/** The program and its arguments: a worker, a launcher of a forked one, or a preloaded parent. */
function programOf(options: WorkerOptions, parentSocket: string | undefined): [string, string[]] {
  const target = ["--file", options.file, "--function", options.functionName];
  if (options.runtime === "r") return ["Rscript", ["--vanilla", R_WORKER, ...target]];
  if (parentSocket !== undefined) {
    return ["python3", ["-m", "modelship.fork_server", ...target, "--socket", parentSocket]];
  }
  // -S: the launcher imports nothing beyond the standard library's core.
  if (options.forkServer !== undefined) return ["python3", ["-S", PYTHON_LAUNCHER, ...target]];
  return ["python3", ["-m", "modelship.worker", ...target]];
}

function commandOf(options: WorkerOptions, parentSocket?: string | undefined): [string, string[]] {
  const [command, args] = programOf(options, parentSocket);
  if (options.memoryLimitBytes === undefined) return [command, args];
  // Node cannot set a child's rlimits; a POSIX shell can, and then becomes the worker (exec).
  const kilobytes = Math.max(1, Math.ceil(options.memoryLimitBytes / 1024));
  return [
    "/bin/sh",
    [
      "-c",
      `ulimit -d "$1" || { echo "modelship: cannot limit the worker's memory to $1 KB (the hard limit here is $(ulimit -Hd) KB)" >&2; exit ${LIMIT_FAILED_EXIT}; }; shift; exec "$@"`,
      "modelship-worker",
      String(kilobytes),
      command,
      ...args,
    ],
  ];
}

function environmentOf(options: WorkerOptions): NodeJS.ProcessEnv {
  const env = { ...(options.env ?? inheritedEnvironment(process.env)) };
  if (options.runtime === "python3") {
    env.PYTHONPATH = [PYTHON_PACKAGE_DIR, env.PYTHONPATH].filter(Boolean).join(":");
    if (options.forkServer !== undefined) {
      env.MODELSHIP_FORK_SERVER = options.forkServer;
      // The forked child sets its own limit: the launcher's (the ulimit wrapper) is not its.
      if (options.memoryLimitBytes !== undefined) {
        env.MODELSHIP_FORK_MEMORY_LIMIT_BYTES = String(options.memoryLimitBytes);
      }
    }
  }
  return env;
}

function identityOf(options: WorkerOptions): { uid?: number; gid?: number } {
  if ((options.uid === undefined) !== (options.gid === undefined)) {
    // A uid alone would leave the worker in the agent's group (root's, often): refuse.
    throw new Error("a worker's uid and gid are given together, or neither");
  }
  return options.uid === undefined ? {} : { uid: options.uid, gid: options.gid };
}

/**
 * Process groups of workers that may still have members. If the agent exits first (a crash,
 * process.exit), they are killed on the way out: a worker must not outlive its agent.
 */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pid: number): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const group of liveGroups) signalGroup(group, "SIGKILL");
    });
  }
  liveGroups.add(pid);
}

/** Signals every process of the group; false when none is left. */
function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** One line the worker wrote on fd 4: a start message, an answer, or a broken promise. */
export type WorkerMessage =
  | { type: "start"; start: Exclude<WorkerStart, WorkerEnd> }
  | { type: "answer"; answer: RawWorkerAnswer }
  | { type: "invalid"; reason: string };

/**
 * Reads one line of the answer pipe. An answer's response is located, not parsed (the small
 * members are): `{"id":1,"ok":true,"response":<any JSON>}` or `{"id":1,"ok":false,"error":...}`.
 */
export function parseWorkerLine(text: string): WorkerMessage {
  let members: ReturnType<typeof jsonTopLevelMembers>;
  try {
    members = jsonTopLevelMembers(text);
  } catch (error) {
    return { type: "invalid", reason: (error as Error).message };
  }
  if (members === undefined) return { type: "invalid", reason: "not a JSON object" };
  const member = (name: string): unknown => {
    const span = members.get(name);
    return span === undefined ? undefined : JSON.parse(text.slice(span.start, span.end));
  };
  const type = member("type");
  if (type === "ready" || type === "load_error") {
    return { type: "start", start: JSON.parse(text) };
  }
  const id = member("id");
  if (typeof id !== "number") return { type: "invalid", reason: 'no numeric "id"' };
  const response = members.get("response");
  if (member("ok") === true && response !== undefined) {
    const responseJson = text.slice(response.start, response.end);
    const metrics = members.get("metrics");
    const tracked = metrics === undefined ? {} : metricsOf(text.slice(metrics.start, metrics.end));
    return { type: "answer", answer: { id, kind: "response", responseJson, ...tracked } };
  }
  const error = member("error") as WorkerError | undefined;
  if (member("ok") === false && typeof error?.type === "string") {
    return { type: "answer", answer: { id, kind: "error", error } };
  }
  return {
    type: "invalid",
    reason: 'neither "ok": true with "response" nor "ok": false with "error"',
  };
}

/**
 * The most a prediction's tracked metrics may take, as JSON: they travel to the gateway in an
 * HTTP header of the agent's answer, and a row of the metrics store is no place for a payload.
 */
export const MAX_METRICS_BYTES = 64 * 1024;

/**
 * A worker's `metrics` member, checked: the model wrote it, so it is kept only when it is a
 * JSON object within MAX_METRICS_BYTES. Characters beyond ASCII are escaped (`\u00e9`): the
 * text goes in a header, which carries Latin-1 at most.
 */
export function metricsOf(json: string): { metricsJson?: string; metricsDropped?: string } {
  if (json.charCodeAt(0) !== 0x7b) {
    return { metricsDropped: "the worker's metrics are not a JSON object" };
  }
  const ascii = /[^\x20-\x7e]/.test(json) ? json.replace(/[^\x20-\x7e]/g, headerSafe) : json;
  if (ascii.length > MAX_METRICS_BYTES) {
    return {
      metricsDropped: `the prediction's metrics take ${ascii.length} bytes as JSON, more than ${MAX_METRICS_BYTES}`,
    };
  }
  const depth = nestingDepth(ascii);
  if (depth > MAX_METRICS_DEPTH) {
    return {
      metricsDropped: `the prediction's metrics nest ${depth} deep, more than ${MAX_METRICS_DEPTH}`,
    };
  }
  return { metricsJson: ascii };
}

/**
 * How deep metrics may nest: a reader recurses once per level, and 20,000 levels fit in 40 KB
 * (a hostile model's, to break every read of the window).
 */
export const MAX_METRICS_DEPTH = 64;

/** The deepest nesting of objects and arrays in valid JSON text (brackets in strings skipped). */
function nestingDepth(json: string): number {
  let depth = 0;
  let deepest = 0;
  for (let index = 0; index < json.length; index++) {
    const code = json.charCodeAt(index);
    if (code === 0x22) {
      // A string: to its closing quote, past escapes.
      for (index++; json.charCodeAt(index) !== 0x22; index++) {
        if (json.charCodeAt(index) === 0x5c) index++;
      }
    } else if (code === 0x7b || code === 0x5b) {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (code === 0x7d || code === 0x5d) {
      depth -= 1;
    }
  }
  return deepest;
}

/**
 * One character of valid JSON text made header-safe without changing the value: a control
 * character can only be whitespace between tokens (strings escape theirs), so it becomes a
 * space; any other is inside a string, where its \uXXXX escape means the same.
 */
function headerSafe(unit: string): string {
  const code = unit.charCodeAt(0);
  return code < 0x20 ? " " : `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Starts a model's preloaded parent (fork_server.py) listening on `socketPath`: as a worker is
 * started (its directory, environment, user, memory limit; its own process group, killed with
 * the agent), but it serves forks, not calls. Its output is not the replicas' log: only its
 * first line, `{"type": "listening", ...}`, is read.
 */
export function spawnPreloadedParent(options: WorkerOptions, socketPath: string): ChildProcess {
  const [command, args] = commandOf({ ...options, forkServer: undefined }, socketPath);
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: environmentOf({ ...options, forkServer: undefined }),
    ...identityOf(options),
    detached: true,
    stdio: ["ignore", "pipe", "ignore"],
  });
  if (child.pid !== undefined) trackGroup(child.pid);
  return child;
}

/** A preloaded parent's group is gone: it is not to be killed on the way out. */
export function untrackProcessGroup(pid: number): void {
  liveGroups.delete(pid);
}

/** Signals the process group of a process started here (a worker, a preloaded parent). */
export function signalProcessGroup(pid: number, signal: NodeJS.Signals): boolean {
  return signalGroup(pid, signal);
}

export class WorkerProcess {
  readonly child: ChildProcess;
  /** Resolves once: the function is loaded, or it could not be, or the process died first. */
  readonly started: Promise<WorkerStart>;
  private readonly options: WorkerOptions;
  private readonly requests: Writable;
  private readonly pending = new Map<number, (answer: RawWorkerAnswer | undefined) => void>();
  private nextId = 1;
  private endedWith: WorkerEnd | undefined;
  private readonly endListeners: ((end: WorkerEnd) => void)[] = [];
  /** Resolves when the worker's own process has exited (or could not start). */
  private readonly leaderExited: Promise<void>;
  /** Why the worker was killed for breaking the protocol. */
  private violation: string | undefined;
  private readonly killGraceMs: number;
  private readonly maxResponseBytes: number;

  constructor(options: WorkerOptions) {
    this.options = options;
    this.killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_RESPONSE_LIMIT_BYTES;
    const [command, args] = commandOf(options);
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: environmentOf(options),
      ...identityOf(options),
      // A process group of its own (setsid), so that stop and timeout reach all it started.
      detached: true,
      // fd 3 carries requests to the worker, fd 4 its answers back.
      stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"],
    });
    const pid = this.child.pid;
    if (pid !== undefined) trackGroup(pid);
    this.requests = this.child.stdio[3] as Writable;
    // A worker that dies leaves its request pipe broken; the exit is reported through `started`
    // and the pending calls, not as an unhandled stream error.
    this.requests.on("error", () => {});
    for (const stream of ["stdout", "stderr"] as const) this.readOutput(stream);
    this.leaderExited = new Promise((resolve) => {
      this.child.once("exit", () => resolve());
      this.child.once("error", () => resolve());
    });
    this.started = new Promise<WorkerStart>((resolve) => {
      this.readAnswers(resolve);
      // Close our end of the request pipe: the R worker's relay (`cat <&3`) outlives R and
      // exits only on end of file, and "close" waits for it.
      this.child.once("exit", () => {
        this.requests.destroy();
        this.reapGroup();
      });
      // "close" comes after the last line on every pipe has been read, so a load error or an
      // answer written just before the exit is never taken for a silent death.
      const ended = (result: WorkerEnd) => {
        resolve(result);
        if (this.endedWith) return;
        this.endedWith = this.violation ? { ...result, error: this.violation } : result;
        // Whatever was in flight has no answer coming.
        for (const settle of this.pending.values()) settle(undefined);
        this.pending.clear();
        for (const listener of this.endListeners.splice(0)) listener(this.endedWith);
      };
      this.child.once("close", (code, signal) => ended({ type: "exited", code, signal }));
      // A process that cannot be spawned emits "error" (and maybe no "close"): the same end.
      this.child.once("error", (error) =>
        ended({ type: "exited", code: null, signal: null, error: error.message }),
      );
    });
  }

  private readOutput(stream: "stdout" | "stderr"): void {
    const lines = new BoundedLines({
      maxLineBytes: this.options.maxLineBytes ?? DEFAULT_LOG_LINE_BYTES,
      onLine: (line, dropped) => this.options.onOutput?.(stream, logLineText(line, dropped)),
    });
    const source = this.child[stream] as Readable;
    source.on("data", (chunk: Buffer) => lines.push(chunk));
    source.on("end", () => lines.end());
  }

  private readAnswers(onStart: (start: WorkerStart) => void): void {
    const lines = new BoundedLines({
      maxLineBytes: this.maxResponseBytes + ANSWER_ENVELOPE_BYTES,
      // Answered at once, not when the worker has finished writing what will be dropped anyway.
      onOverflow: () => this.settleOldest({ id: 0, kind: "too_large" }),
      onLine: (line, dropped) => {
        if (dropped === 0) this.onAnswerLine(line.toString("utf8"), onStart);
      },
    });
    const source = this.child.stdio[4] as Readable;
    source.on("data", (chunk: Buffer) => lines.push(chunk));
  }

  private onAnswerLine(text: string, onStart: (start: WorkerStart) => void): void {
    // After a broken promise nothing on the pipe is trusted, not even what looks like an answer.
    if (this.violation !== undefined) return;
    const message = parseWorkerLine(text);
    if (message.type === "start") {
      onStart(message.start);
    } else if (message.type === "answer") {
      const { answer } = message;
      const tooLarge =
        answer.kind === "response" &&
        Buffer.byteLength(answer.responseJson) > this.maxResponseBytes;
      const settle = this.pending.get(answer.id);
      this.pending.delete(answer.id);
      settle?.(tooLarge ? { id: answer.id, kind: "too_large" } : answer);
    } else {
      // Out of step with the protocol (the model wrote on fd 4 itself?): no later line can be
      // trusted. The call in flight ends with the worker.
      this.violation = `it wrote a line on fd 4 that is not a protocol message (${message.reason})`;
      this.kill();
    }
  }

  /** Settles the call sent first: the one an answer that cannot be read belongs to. */
  private settleOldest(answer: RawWorkerAnswer): void {
    const [id, settle] = this.pending.entries().next().value ?? [];
    if (id === undefined || settle === undefined) return;
    this.pending.delete(id);
    settle({ ...answer, id });
  }

  /**
   * Sends one request, JSON text the caller has checked, forwarded as it is (no re-encoding:
   * numbers reach the function as the caller wrote them). Resolves with the answer, or
   * undefined when the worker exits first. `uuid` names the prediction, for the metrics the
   * function tracks (docs/workers.md).
   */
  callJson(requestJson: string, uuid?: string): Promise<RawWorkerAnswer | undefined> {
    if (this.exited) return Promise.resolve(undefined);
    const id = this.nextId++;
    // One message per line: in valid JSON a line break can only be whitespace, so a space
    // stands in for it without changing the value.
    const oneLine = /[\r\n]/.test(requestJson) ? requestJson.replace(/[\r\n]/g, " ") : requestJson;
    const head = uuid === undefined ? `{"id":${id}` : `{"id":${id},"uuid":${JSON.stringify(uuid)}`;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.requests.write(`${head},"request":${oneLine}}\n`);
    });
  }

  /** callJson() for a value, with the response parsed: for tests and tools, not the agent. */
  async call(request: unknown, uuid?: string): Promise<WorkerAnswer | undefined> {
    const answer = await this.callJson(JSON.stringify(request) ?? "null", uuid);
    if (answer === undefined) return undefined;
    if (answer.kind === "response") {
      return { id: answer.id, ok: true, response: JSON.parse(answer.responseJson) };
    }
    if (answer.kind === "error") return { id: answer.id, ok: false, error: answer.error };
    const message = `the answer is larger than ${this.maxResponseBytes} bytes`;
    return { id: answer.id, ok: false, error: { type: "TooLarge", message } };
  }

  /**
   * Calls `listener` once the worker is gone for good — after its last output was read, or when
   * it could not be started — with the exit status.
   */
  onEnd(listener: (end: WorkerEnd) => void): void {
    if (this.endedWith) listener(this.endedWith);
    else this.endListeners.push(listener);
  }

  /**
   * Closes the request pipe (the worker then exits by itself); a worker still there after the
   * grace gets SIGTERM, and SIGKILL after another, with all its process group. Resolves when
   * it has ended: within three graces, whatever the model does (reapGroup bounds the rest).
   */
  async stop(): Promise<void> {
    if (this.endedWith) return;
    const ended = new Promise<void>((resolve) => this.onEnd(() => resolve()));
    this.requests.end();
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      if (await settlesWithin(this.leaderExited, this.killGraceMs)) break;
      this.signal(signal);
    }
    await ended;
  }

  get exited(): boolean {
    return (
      this.endedWith !== undefined || this.child.exitCode !== null || this.child.signalCode !== null
    );
  }

  /** Kills the worker and everything in its process group, at once. */
  kill(): void {
    this.signal("SIGKILL");
  }

  private signal(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid !== undefined) signalGroup(pid, signal);
  }

  /**
   * The worker's own process exited: what it left in its group (forked children, daemons) gets
   * SIGTERM now and SIGKILL after the grace, and then our ends of its pipes are closed in case
   * something that left the group still holds them, so the end is never wedged.
   */
  private reapGroup(): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    const leftSomething = signalGroup(pid, "SIGTERM");
    // The group's id stays reserved while any member lives, so the delayed SIGKILL cannot hit
    // a stranger unless the group emptied and the pid wrapped around within the grace.
    setTimeout(() => {
      if (leftSomething) signalGroup(pid, "SIGKILL");
      liveGroups.delete(pid);
      setTimeout(() => this.releasePipes(), PIPES_AFTER_KILL_MS).unref();
    }, this.killGraceMs).unref();
  }

  private releasePipes(): void {
    if (this.endedWith) return;
    for (const stream of this.child.stdio) stream?.destroy();
  }
}

/** Whether `promise` settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
