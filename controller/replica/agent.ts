// The replica agent's core: it keeps one language worker alive, hands it one request at a time,
// and turns what happens into an answer with a stable code (controller/api/errors.ts). The HTTP
// side is in agent-server.ts; this file does no I/O of its own besides the worker.
import { ERROR_STATUS, type ErrorBody, type ErrorCode } from "../api/errors.ts";
import { DEFAULT_RESPONSE_LIMIT_BYTES, formatBytes } from "../api/http.ts";
import { buildCrn, deploymentCrn, modelCrn } from "../metrics/crn.ts";
import { LogRing } from "./log-ring.ts";
import {
  inheritedEnvironment,
  type RawWorkerAnswer,
  type Runtime,
  type WorkerError,
  WorkerProcess,
} from "./worker-process.ts";

/** What a replica serves: told to the gateway with tracked metrics, and to the model as CRNs. */
export interface ReplicaServes {
  model: string;
  build: number;
  /** The ModelDeployment's name. */
  deployment: string;
  /** Its rollout (status.deploymentId). */
  deploymentId: number;
}

export interface ReplicaOptions {
  replicaId: string;
  /** What it serves; a replica run by hand may not say. */
  serves?: ReplicaServes;
  runtime: Runtime;
  /** The model's file, relative to `directory`. */
  file: string;
  functionName: string;
  /** The model's source directory: the worker's working directory. */
  directory: string;
  /**
   * The model's environment (its spec.env, and what the platform adds). The worker gets this
   * and PATH, HOME and LANG from the agent's own environment if this does not set them, and
   * nothing else of it: the agent's tokens and settings never reach the model.
   */
  env?: NodeJS.ProcessEnv;
  /** Run the worker as this user and group (both or neither; the agent must be root). */
  uid?: number;
  gid?: number;
  /** A call that runs longer has its worker killed and restarted: `504 model.timeout`. */
  timeoutSeconds: number;
  /** First wait before restarting a worker that died, doubled on each crash in a row. */
  restartBackoffMs?: number;
  /** The longest wait between restarts. */
  maxRestartBackoffMs?: number;
  logCapacity?: number;
  /** The log's bound in bytes of text (default 8 MB). */
  logByteCapacity?: number;
  /** The longest printed line kept whole (default 64 KB); a longer one is cut and marked. */
  logLineBytes?: number;
  /** The largest response, in bytes of JSON (default 50 MB): `502 model.response_too_large`. */
  responseLimitBytes?: number;
  /** How long a worker's process group has after SIGTERM before SIGKILL (default 2 s). */
  killGraceMs?: number;
  /** Send exception tracebacks to callers (`MODELSHIP_TRACEBACKS=1` in the worker). */
  tracebacks?: boolean;
  /** The most memory the worker may allocate (a data-size rlimit); none when undefined. */
  memoryLimitBytes?: number;
  /** Told of every state change: a supervisor updates the gateway when readiness changes. */
  onStateChange?: (state: ReplicaState) => void;
  /**
   * Python: the socket of the model's preloaded parent; each worker (the first, and each after
   * a crash or a timeout) is forked from it instead of loading the file (WorkerOptions).
   */
  forkServer?: string;
}

export interface ReplicaStats {
  /** Every predict call. */
  received: number;
  /** Calls handed to the worker that came to an end: success, failure, timeout or shutdown. */
  processed: number;
  /** Answered with the function's result. */
  success: number;
  /** The function raised, or returned something that is not JSON (`model.error`). */
  failure: number;
  /** Failed for another reason: invalid JSON, timeout, the worker died. */
  error: number;
  /** Turned away because a call was in flight (`replica.busy`). */
  busy: number;
  /** Turned away because no worker was ready (`replica.not_ready`). */
  notReady: number;
  /** Workers started after the first one. */
  restarts: number;
}

export type ReplicaState = "starting" | "ready" | "restarting" | "failed" | "stopped";

/** An answer ready for the wire: the body is the caller's JSON, already encoded. */
export interface ReplicaAnswer {
  status: number;
  code: "ok" | ErrorCode;
  body: string;
  /** How long the worker took, for answers the worker gave (or failed to give). */
  workerSeconds?: number;
  /** The metrics the function tracked, for the gateway's metrics store (docs/metrics.md). */
  metricsJson?: string;
}

const DEFAULT_RESTART_BACKOFF_MS = 100;
const DEFAULT_MAX_RESTART_BACKOFF_MS = 10_000;

export class ReplicaAgent {
  readonly options: ReplicaOptions;
  readonly log: LogRing;
  readonly stats: ReplicaStats = {
    received: 0,
    processed: 0,
    success: 0,
    failure: 0,
    error: 0,
    busy: 0,
    notReady: 0,
    restarts: 0,
  };
  private worker: WorkerProcess | undefined;
  private generation = 0;
  private stateNow: ReplicaState = "starting";
  /** Why the worker cannot serve: the load error, or the last exit. */
  private problem: string | undefined;
  private inFlight = false;
  /** stop() was called: no new call is taken. */
  private stopping = false;
  private crashesInARow = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly readyWaiters = new Set<() => void>();

  constructor(options: ReplicaOptions) {
    this.options = options;
    this.log = new LogRing(options.logCapacity, undefined, options.logByteCapacity);
  }

  get responseLimitBytes(): number {
    return this.options.responseLimitBytes ?? DEFAULT_RESPONSE_LIMIT_BYTES;
  }

  get state(): ReplicaState {
    return this.stateNow;
  }

  get ready(): boolean {
    return this.stateNow === "ready" && !this.stopping;
  }

  /** Why the replica is not ready, when it is not. */
  get notReadyReason(): string | undefined {
    if (this.ready) return undefined;
    if (this.stopping && this.stateNow === "ready") return "the replica is stopping";
    return this.problem ?? `the worker is ${this.stateNow}`;
  }

  get workerPid(): number | undefined {
    return this.worker?.child.pid;
  }

  /** Starts the first worker. The replica is ready once it has loaded the function. */
  start(): void {
    this.startWorker();
  }

  /** Resolves when the replica is ready, or rejects when its function cannot load. */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.ready) {
          this.readyWaiters.delete(check);
          resolve();
        } else if (this.stateNow === "failed" || this.stateNow === "stopped") {
          this.readyWaiters.delete(check);
          reject(new Error(this.notReadyReason));
        }
      };
      this.readyWaiters.add(check);
    });
  }

  private setState(state: ReplicaState): void {
    const changed = state !== this.stateNow;
    this.stateNow = state;
    for (const check of [...this.readyWaiters]) check();
    if (changed) this.options.onStateChange?.(state);
  }

  private note(line: string): void {
    this.log.append("agent", this.generation, line);
  }

  private startWorker(): void {
    this.generation += 1;
    const generation = this.generation;
    const { options } = this;
    const worker = new WorkerProcess({
      runtime: options.runtime,
      file: options.file,
      functionName: options.functionName,
      cwd: options.directory,
      env: workerEnvironment(process.env, options.env, options.tracebacks ?? false, options.serves),
      uid: options.uid,
      gid: options.gid,
      onOutput: (stream, line) => this.log.append(stream, generation, line),
      maxLineBytes: options.logLineBytes,
      maxResponseBytes: this.responseLimitBytes,
      killGraceMs: options.killGraceMs,
      memoryLimitBytes: options.memoryLimitBytes,
      forkServer: options.forkServer,
    });
    this.worker = worker;
    this.setState(generation === 1 ? "starting" : "restarting");
    this.note(`worker ${generation} started (pid ${worker.child.pid})`);

    worker.started.then((started) => {
      // A worker that finishes loading after stop() must not bring the replica back.
      if (this.worker !== worker || this.stateNow === "stopped") return;
      if (started.type === "ready") {
        this.problem = undefined;
        this.setState("ready");
        this.note(
          `worker ${generation} is ready: ${options.functionName} loaded from ${options.file}`,
        );
      } else if (started.type === "load_error") {
        // Loading the same file again fails the same way: no restart loop, a clear reason.
        this.problem = `cannot load ${options.functionName} from ${options.file}: ${started.error.type}: ${started.error.message}`;
        this.note(this.problem);
        this.setState("failed");
      }
    });
    // The end, not the exit: by then the worker's last lines (a load error) have been read.
    worker.onEnd(({ code, signal, error }) => {
      if (this.worker !== worker || this.stateNow === "stopped" || this.stateNow === "failed") {
        return;
      }
      const how = error ? `an error: ${error}` : signal ? `signal ${signal}` : `code ${code}`;
      this.problem = `worker ${generation} exited with ${how}`;
      this.note(this.problem);
      this.scheduleRestart();
    });
  }

  /** Restarts after a crash, waiting longer after each crash in a row (reset by a good call). */
  private scheduleRestart(): void {
    this.setState("restarting");
    const delay = restartDelayMs(
      this.crashesInARow,
      this.options.restartBackoffMs ?? DEFAULT_RESTART_BACKOFF_MS,
      this.options.maxRestartBackoffMs ?? DEFAULT_MAX_RESTART_BACKOFF_MS,
    );
    this.crashesInARow += 1;
    this.note(`restarting in ${delay} ms`);
    this.restartTimer = setTimeout(() => this.restart(), delay);
  }

  private restart(): void {
    this.restartTimer = undefined;
    if (this.stateNow === "stopped" || this.stateNow === "failed") return;
    this.stats.restarts += 1;
    this.startWorker();
  }

  /**
   * Calls the function with one request (JSON text), unless a call is already in flight.
   * `checked`: the caller (the gateway, in this process) has parsed the text already.
   */
  async predict(
    requestText: string,
    uuid?: string,
    { checked = false }: { checked?: boolean } = {},
  ): Promise<ReplicaAnswer> {
    this.stats.received += 1;
    if (this.inFlight) {
      this.stats.busy += 1;
      return this.fail(
        "replica.busy",
        "this replica is answering another request; each replica takes one at a time",
        uuid,
      );
    }
    const worker = this.worker;
    if (!this.ready || worker === undefined) {
      this.stats.notReady += 1;
      return this.fail(
        "replica.not_ready",
        `this replica cannot take requests yet: ${this.notReadyReason}`,
        uuid,
      );
    }
    try {
      // Only checked: the worker gets the text itself, so that numbers JSON.parse would round
      // (beyond 2^53, 1e400) reach the function as the caller wrote them.
      if (!checked) JSON.parse(requestText);
    } catch (error) {
      this.stats.error += 1;
      return this.fail(
        "request.invalid_json",
        `the request body is not JSON: ${(error as Error).message}`,
        uuid,
      );
    }

    this.inFlight = true;
    const started = performance.now();
    try {
      const answer = await this.callWithTimeout(worker, requestText, uuid);
      const workerSeconds = (performance.now() - started) / 1000;
      this.stats.processed += 1;
      if (answer === "timeout") {
        this.stats.error += 1;
        return {
          ...this.fail(
            "model.timeout",
            `the function ran longer than timeoutSeconds (${this.options.timeoutSeconds} s); its worker was restarted`,
            uuid,
          ),
          workerSeconds,
        };
      }
      if (answer === undefined) {
        this.stats.error += 1;
        return {
          ...this.fail(
            "model.unexpected_shutdown",
            `the worker exited while answering (${this.problem ?? "no exit status"}); it is being restarted — see the replica's log`,
            uuid,
          ),
          workerSeconds,
        };
      }
      // A worker that answers is healthy: the next crash restarts it without a long wait.
      this.crashesInARow = 0;
      return { ...this.answerOf(answer, uuid), workerSeconds };
    } finally {
      this.inFlight = false;
    }
  }

  /** The caller's answer to what the worker answered. */
  private answerOf(answer: RawWorkerAnswer, uuid: string | undefined): ReplicaAnswer {
    if (answer.kind === "response") {
      this.stats.success += 1;
      // The response's bytes are spliced in as the worker wrote them, never parsed.
      const body = `{"success":true,"response":${answer.responseJson},"replicaId":${JSON.stringify(this.options.replicaId)}${uuid ? `,"uuid":${JSON.stringify(uuid)}` : ""}}`;
      if (answer.metricsDropped !== undefined) {
        this.note(
          `metrics of prediction ${uuid ?? "(no uuid)"} not kept: ${answer.metricsDropped}`,
        );
      }
      return {
        status: 200,
        code: "ok",
        body,
        ...(answer.metricsJson === undefined ? {} : { metricsJson: answer.metricsJson }),
      };
    }
    if (answer.kind === "error") {
      this.stats.failure += 1;
      return this.fail("model.error", exceptionMessage(answer.error), uuid, answer.error);
    }
    this.stats.error += 1;
    return this.fail(
      "model.response_too_large",
      `the function's answer is larger than the replica's response limit of ${formatBytes(this.responseLimitBytes)}; return a URL to large results instead`,
      uuid,
    );
  }

  private async callWithTimeout(
    worker: WorkerProcess,
    requestText: string,
    uuid: string | undefined,
  ): Promise<RawWorkerAnswer | undefined | "timeout"> {
    let timer: NodeJS.Timeout | undefined;
    const overrun = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.options.timeoutSeconds * 1000);
    });
    try {
      const outcome = await Promise.race([worker.callJson(requestText, uuid), overrun]);
      if (outcome === "timeout") this.killForTimeout(worker);
      return outcome;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A worker stuck in the function cannot be interrupted politely: kill it with its process
   * group (whatever the function forked), start a fresh one.
   */
  private killForTimeout(worker: WorkerProcess): void {
    this.note(
      `a call ran past timeoutSeconds (${this.options.timeoutSeconds} s); killing worker ${this.generation}`,
    );
    // Detach it first, so that its exit is not taken for a crash (no backoff for a timeout).
    this.worker = undefined;
    worker.kill();
    this.restart();
  }

  private fail(
    code: ErrorCode,
    message: string,
    uuid: string | undefined,
    exception?: WorkerError,
  ): ReplicaAnswer {
    const body: ErrorBody = {
      success: false,
      error: code,
      message,
      replicaId: this.options.replicaId,
    };
    if (uuid) body.uuid = uuid;
    if (exception) body.exception = exception;
    return { status: ERROR_STATUS[code], code, body: JSON.stringify(body) };
  }

  /**
   * Takes no new call (they get `replica.not_ready`, so a gateway goes elsewhere), waits for the
   * call in flight (at most `graceMs`), then stops the worker.
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopping = true;
    const deadline = Date.now() + graceMs;
    while (this.inFlight && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    this.setState("stopped");
    clearTimeout(this.restartTimer);
    const worker = this.worker;
    if (worker === undefined) return;
    this.note(`stopping worker ${this.generation}`);
    if (this.inFlight) worker.kill();
    await worker.stop();
  }
}

/**
 * A worker's whole environment: PATH, HOME and LANG of the agent's (`agentEnv`) when set, the
 * model's own variables over them, and MODELSHIP_TRACEBACKS when tracebacks are asked for.
 */
export function workerEnvironment(
  agentEnv: NodeJS.ProcessEnv,
  modelEnv: NodeJS.ProcessEnv | undefined,
  tracebacks: boolean,
  serves?: ReplicaServes,
): NodeJS.ProcessEnv {
  return {
    ...inheritedEnvironment(agentEnv),
    ...modelEnv,
    ...(tracebacks ? { MODELSHIP_TRACEBACKS: "1" } : {}),
    ...(serves ? servedCrns(serves) : {}),
  };
}

/**
 * The ids of what the replica serves, for the model's code: `model_metrics` puts the
 * deployment's in each answer, as CDSW does, and scripts read metrics by them.
 */
export function servedCrns(serves: ReplicaServes): Record<string, string> {
  return {
    MODELSHIP_MODEL_CRN: modelCrn(serves.model),
    MODELSHIP_BUILD_CRN: buildCrn(serves.model, serves.build),
    MODELSHIP_DEPLOYMENT_CRN: deploymentCrn(serves.model, serves.deployment, serves.deploymentId),
  };
}

/** Exponential backoff: `base` after the first crash, doubled per crash in a row, at most `ceiling`. */
export function restartDelayMs(crashesBefore: number, base: number, ceiling: number): number {
  return Math.min(base * 2 ** crashesBefore, ceiling);
}

function exceptionMessage(error: WorkerError): string {
  return `the function raised ${error.type}: ${error.message}`;
}
