// Starts a language worker (runtime/python or runtime/r) and speaks its protocol: requests on the
// worker's fd 3, answers on its fd 4, one JSON object per line (docs/workers.md). The user's
// stdout and stderr are handed to the caller line by line, for the replica's log.
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";

export type Runtime = "python3" | "r";

export interface WorkerError {
  type: string;
  message: string;
  traceback?: string;
}

export type WorkerAnswer =
  | { id: number; ok: true; response: unknown }
  | { id: number; ok: false; error: WorkerError };

export type WorkerStart =
  | { type: "ready"; protocol: number; runtime: Runtime }
  | { type: "load_error"; error: WorkerError }
  | {
      type: "exited";
      code: number | null;
      signal: NodeJS.Signals | null;
      /** Why it could not start at all (no python3 on PATH, a directory that is not there). */
      error?: string;
    };

export interface WorkerOptions {
  runtime: Runtime;
  file: string;
  functionName: string;
  /** Working directory of the model's code. */
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Each line the user's code prints, tagged with its stream. */
  onOutput?: (stream: "stdout" | "stderr", line: string) => void;
}

const PYTHON_PACKAGE_DIR = fileURLToPath(new URL("../../runtime/python/", import.meta.url));
const R_WORKER = fileURLToPath(new URL("../../runtime/r/worker.R", import.meta.url));

function commandOf(options: WorkerOptions): [string, string[]] {
  const target = ["--file", options.file, "--function", options.functionName];
  return options.runtime === "python3"
    ? ["python3", ["-m", "modelship.worker", ...target]]
    : ["Rscript", ["--vanilla", R_WORKER, ...target]];
}

export class WorkerProcess {
  readonly child: ChildProcess;
  /** Resolves once: the function is loaded, or it could not be, or the process died first. */
  readonly started: Promise<WorkerStart>;
  private readonly requests: Writable;
  private readonly pending = new Map<number, (answer: WorkerAnswer | undefined) => void>();
  private nextId = 1;
  private endedWith: Extract<WorkerStart, { type: "exited" }> | undefined;
  private readonly endListeners: ((end: Extract<WorkerStart, { type: "exited" }>) => void)[] = [];

  constructor(options: WorkerOptions) {
    const [command, args] = commandOf(options);
    const pythonPath = [PYTHON_PACKAGE_DIR, options.env?.PYTHONPATH ?? process.env.PYTHONPATH]
      .filter(Boolean)
      .join(":");
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env, PYTHONPATH: pythonPath },
      // fd 3 carries requests to the worker, fd 4 its answers back.
      stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"],
    });
    this.requests = this.child.stdio[3] as Writable;
    // A worker that dies leaves its request pipe broken; the exit is reported through `started`
    // and the pending calls, not as an unhandled stream error.
    this.requests.on("error", () => {});

    for (const stream of ["stdout", "stderr"] as const) {
      const lines = createInterface({ input: this.child[stream] as Readable });
      lines.on("line", (line) => options.onOutput?.(stream, line));
    }

    const answers = createInterface({ input: this.child.stdio[4] as Readable });
    this.started = new Promise<WorkerStart>((resolve) => {
      answers.on("line", (line) => {
        const message = JSON.parse(line) as WorkerStart | WorkerAnswer;
        if ("type" in message) {
          resolve(message);
          return;
        }
        const settle = this.pending.get(message.id);
        this.pending.delete(message.id);
        settle?.(message);
      });
      // Close our end of the request pipe: the R worker's relay (`cat <&3`) outlives R and
      // exits only on end of file, and "close" waits for it.
      this.child.once("exit", () => this.requests.destroy());
      // "close" comes after the last line on every pipe has been read, so a load error or an
      // answer written just before the exit is never taken for a silent death.
      const ended = (result: Extract<WorkerStart, { type: "exited" }>) => {
        resolve(result);
        this.endedWith ??= result;
        // Whatever was in flight has no answer coming.
        for (const settle of this.pending.values()) settle(undefined);
        this.pending.clear();
        for (const listener of this.endListeners.splice(0)) listener(result);
      };
      this.child.once("close", (code, signal) => ended({ type: "exited", code, signal }));
      // A process that cannot be spawned emits "error" (and maybe no "close"): the same end.
      this.child.once("error", (error) =>
        ended({ type: "exited", code: null, signal: null, error: error.message }),
      );
    });
  }

  /**
   * Sends one request; resolves with the answer, or undefined when the worker exits first.
   * `uuid` names the prediction, for the metrics the function tracks (docs/workers.md).
   */
  call(request: unknown, uuid?: string): Promise<WorkerAnswer | undefined> {
    if (this.exited) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.requests.write(`${JSON.stringify({ id, uuid, request })}\n`);
    });
  }

  /**
   * Calls `listener` once the worker is gone for good — after its last output was read, or when
   * it could not be started — with the exit status.
   */
  onEnd(listener: (end: Extract<WorkerStart, { type: "exited" }>) => void): void {
    if (this.endedWith) listener(this.endedWith);
    else this.endListeners.push(listener);
  }

  /** Closes the request pipe (the worker then exits by itself) and waits for the end. */
  async stop(): Promise<void> {
    if (this.endedWith) return;
    const ended = new Promise<void>((resolve) => this.onEnd(() => resolve()));
    this.requests.end();
    await ended;
  }

  get exited(): boolean {
    return (
      this.endedWith !== undefined || this.child.exitCode !== null || this.child.signalCode !== null
    );
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }
}
