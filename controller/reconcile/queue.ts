// The work queue of one kind, after controller-runtime's: a de-duplicated queue of object keys
// worked by up to `concurrency` workers, never two on the same key; a key added while it is being
// reconciled gets one more pass after. Each pass gets an AbortSignal that fires at its deadline or
// when the queue stops, and a pass that outlives its deadline ends as an error rather than holding
// a worker. Errors back off exponentially per key; requeues are jittered, so that objects with the
// same interval do not poll in step.
import { formatKey, type ObjectKey } from "../core/keys.ts";

export type ReconcileResult =
  | { type: "done" }
  | { type: "requeue"; afterMs: number }
  | { type: "error"; error: Error }
  /** Stalled: no retry; `afterMs` only when the object polls anyway (a source's interval). */
  | { type: "terminal"; error: Error; afterMs?: number };

/** The signals a pass gets: `signal` for its I/O (deadline or stop), `stopped` for stop alone. */
export interface PassSignals {
  signal: AbortSignal;
  stopped: AbortSignal;
}

export type Reconciler = (key: ObjectKey, signals: PassSignals) => Promise<ReconcileResult>;

/** What a queue reports, for the controller's metrics (metrics.ts). */
export interface QueueObserver {
  /** Keys waiting for a worker, after every change. */
  depth(waiting: number): void;
  /** How long a key waited between being added and a worker taking it. */
  waited(seconds: number): void;
  /** One pass: how long it took and how it ended. */
  reconciled(seconds: number, result: ReconcileResult["type"]): void;
}

export interface QueueOptions {
  /** Workers; a key is never on two at once. Default 1. */
  concurrency?: number;
  /** First wait after an error, doubled per error in a row, up to `maxBackoffMs`. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** A pass's deadline; its signal aborts then. Default 2 minutes. */
  passTimeoutMs?: number;
  /** A requeue waits up to this fraction longer, at random. Default 0.1. */
  jitter?: number;
  random?: () => number;
  /** Told about every error (the key and the message), for the log. */
  onError?: (key: ObjectKey, error: Error, terminal: boolean) => void;
  observer?: QueueObserver;
}

/** How long a pass may go on after its signal aborted before its worker gives up on it. */
const ABORT_GRACE_MS = 5000;

/** Wait before the next try after `failures` errors in a row. */
export function backoffMs(failures: number, base: number, max: number): number {
  return Math.min(base * 2 ** Math.max(0, failures - 1), max);
}

/** A requeue's wait with up to `fraction` more added at random (`random` in [0, 1)). */
export function jittered(afterMs: number, fraction: number, random: () => number): number {
  return Math.round(afterMs * (1 + fraction * random()));
}

interface Timer {
  at: number;
  timer: NodeJS.Timeout;
}

export class WorkQueue {
  private readonly reconcile: Reconciler;
  private readonly options: Required<Omit<QueueOptions, "onError" | "observer">> &
    Pick<QueueOptions, "onError" | "observer">;
  /** Keys waiting for a worker, in order, with when each was added; the map keeps each once. */
  private readonly ready: string[] = [];
  private readonly waiting = new Map<string, { key: ObjectKey; since: number }>();
  /** Keys on a worker; `dirty` ones were added again meanwhile. */
  private readonly processing = new Set<string>();
  private readonly dirty = new Map<string, ObjectKey>();
  private readonly timers = new Map<string, Timer>();
  private readonly failures = new Map<string, number>();
  private readonly stopController = new AbortController();
  private running = false;
  private workers: Promise<void>[] = [];
  private wake: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(reconcile: Reconciler, options: QueueOptions = {}) {
    this.reconcile = reconcile;
    this.options = {
      concurrency: Math.max(1, options.concurrency ?? 1),
      baseBackoffMs: options.baseBackoffMs ?? 200,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      passTimeoutMs: options.passTimeoutMs ?? 120_000,
      jitter: options.jitter ?? 0.1,
      random: options.random ?? Math.random,
      onError: options.onError,
      observer: options.observer,
    };
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  /** Keys waiting for a worker. */
  get depth(): number {
    return this.ready.length;
  }

  /** Whether nothing waits and nothing is being reconciled (always, once stopped). */
  get isIdle(): boolean {
    return this.stopped || (this.ready.length === 0 && this.processing.size === 0);
  }

  /** Queues a pass for the key, now or after `afterMs` (the earliest request wins). */
  add(key: ObjectKey, afterMs = 0): void {
    if (this.stopped) return;
    const id = formatKey(key);
    if (afterMs > 0) {
      const at = Date.now() + afterMs;
      const pending = this.timers.get(id);
      if (pending && pending.at <= at) return;
      if (pending) clearTimeout(pending.timer);
      const timer = setTimeout(() => {
        this.timers.delete(id);
        this.add(key);
      }, afterMs);
      this.timers.set(id, { at, timer });
      return;
    }
    if (this.processing.has(id)) {
      this.dirty.set(id, key);
      return;
    }
    if (this.waiting.has(id)) return;
    this.waiting.set(id, { key, since: performance.now() });
    this.ready.push(id);
    this.options.observer?.depth(this.ready.length);
    this.wake.shift()?.();
  }

  start(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    for (let index = 0; index < this.options.concurrency; index++) {
      this.workers.push(this.work());
    }
  }

  /**
   * Resolves when no key waits and none is being reconciled (timers may still be set), or once
   * the queue has stopped.
   */
  idle(): Promise<void> {
    if (this.isIdle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private settleIdle(): void {
    if (this.isIdle) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Aborts every pass in flight (their I/O ends at once) and waits for the workers. */
  async stop(): Promise<void> {
    this.stopController.abort(new Error("the work queue is stopping"));
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const resolve of this.wake.splice(0)) resolve();
    await Promise.all(this.workers);
    // What was still queued will not be reconciled by this queue: nobody should wait for it.
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private async work(): Promise<void> {
    while (!this.stopped) {
      const id = this.ready.shift();
      if (id === undefined) {
        await new Promise<void>((resolve) => this.wake.push(resolve));
        continue;
      }
      const entry = this.waiting.get(id) as { key: ObjectKey; since: number };
      this.waiting.delete(id);
      this.options.observer?.depth(this.ready.length);
      this.options.observer?.waited((performance.now() - entry.since) / 1000);
      this.processing.add(id);
      const started = performance.now();
      const { result, settled } = await this.pass(entry.key);
      this.options.observer?.reconciled((performance.now() - started) / 1000, result.type);
      this.settle(entry.key, id, result);
      // A pass that ignored its signal still holds its key: no second pass of it meanwhile.
      settled.then(() => this.release(id));
    }
    this.settleIdle();
  }

  private release(id: string): void {
    this.processing.delete(id);
    const again = this.dirty.get(id);
    this.dirty.delete(id);
    if (again) this.add(again);
    this.settleIdle();
  }

  private async pass(key: ObjectKey): Promise<{ result: ReconcileResult; settled: Promise<void> }> {
    const stopped = this.stopController.signal;
    // One controller per pass, aborted at its deadline or when the queue stops. A timer of our
    // own rather than AbortSignal.timeout(), so that the deadline follows the clock the rest of
    // the queue uses (fake timers in tests); and no AbortSignal.any(), whose listeners on the
    // long-lived stop signal would outlive every pass.
    const pass = new AbortController();
    const timeout = this.options.passTimeoutMs;
    const onStop = () => pass.abort(stopped.reason);
    stopped.addEventListener("abort", onStop, { once: true });
    const deadlineTimer = setTimeout(
      () => pass.abort(new DOMException(`the pass took longer than ${timeout} ms`, "TimeoutError")),
      timeout,
    );
    const { signal } = pass;
    const running = this.reconcile(key, { signal, stopped }).catch(
      (error: unknown): ReconcileResult => ({
        type: "error",
        error: error instanceof Error ? error : new Error(String(error)),
      }),
    );
    const settled = running.then(() => {
      clearTimeout(deadlineTimer);
      stopped.removeEventListener("abort", onStop);
    });
    let giveUp: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const abandoned = new Promise<ReconcileResult>((resolve) => {
      onAbort = () => {
        giveUp = setTimeout(
          () =>
            resolve({
              type: "error",
              error: new Error(
                `the pass did not end within ${ABORT_GRACE_MS} ms of its deadline or stop`,
              ),
            }),
          ABORT_GRACE_MS,
        );
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return { result: await Promise.race([running, abandoned]), settled };
    } finally {
      clearTimeout(giveUp);
      if (onAbort) signal.removeEventListener("abort", onAbort);
    }
  }

  private settle(key: ObjectKey, id: string, result: ReconcileResult): void {
    const { jitter, random } = this.options;
    switch (result.type) {
      case "done":
        this.failures.delete(id);
        return;
      case "requeue":
        this.failures.delete(id);
        this.add(key, jittered(result.afterMs, jitter, random));
        return;
      case "error": {
        const failures = (this.failures.get(id) ?? 0) + 1;
        this.failures.set(id, failures);
        if (!this.stopped) this.options.onError?.(key, result.error, false);
        this.add(key, backoffMs(failures, this.options.baseBackoffMs, this.options.maxBackoffMs));
        return;
      }
      case "terminal":
        this.failures.delete(id);
        this.options.onError?.(key, result.error, true);
        if (result.afterMs !== undefined) this.add(key, jittered(result.afterMs, jitter, random));
    }
  }
}
