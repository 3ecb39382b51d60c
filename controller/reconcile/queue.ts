// The reconcile contract (DESIGN §5), after controller-runtime: a de-duplicated queue of
// `Kind/namespace/name` keys, one pass at a time; each pass re-reads the object from the store
// and returns what to do next. Errors back off exponentially per key; a terminal error does
// not retry (the reconciler has marked the object Stalled).

export type ReconcileResult =
  | { type: "done" }
  | { type: "requeue"; afterMs: number }
  | { type: "error"; error: Error }
  | { type: "terminal"; error: Error };

export const done: ReconcileResult = { type: "done" };
export const requeueAfter = (afterMs: number): ReconcileResult => ({ type: "requeue", afterMs });

export interface ObjectKey {
  kind: string;
  namespace: string;
  name: string;
}

export function formatKey(key: ObjectKey): string {
  return `${key.kind}/${key.namespace}/${key.name}`;
}

export function parseKey(text: string): ObjectKey {
  const [kind = "", namespace = "", name = ""] = text.split("/");
  return { kind, namespace, name };
}

export type Reconciler = (key: ObjectKey) => Promise<ReconcileResult>;

export interface QueueOptions {
  /** First wait after an error, doubled per error in a row, up to `maxBackoffMs`. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Told about every error (the key and the message), for the log. */
  onError?: (key: string, error: Error, terminal: boolean) => void;
}

/** Wait before the next try after `failures` errors in a row. */
export function backoffMs(failures: number, base: number, max: number): number {
  return Math.min(base * 2 ** Math.max(0, failures - 1), max);
}

export class WorkQueue {
  private readonly reconcilers: Record<string, Reconciler>;
  private readonly options: Required<Omit<QueueOptions, "onError">> & Pick<QueueOptions, "onError">;
  /** Keys waiting for a pass, in order; the set keeps each key in once. */
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  /** The key being reconciled, and whether it was added again meanwhile. */
  private current: string | undefined;
  private dirty = false;
  private running = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private idleWaiters: (() => void)[] = [];
  private loop: Promise<void> | undefined;

  constructor(reconcilers: Record<string, Reconciler>, options: QueueOptions = {}) {
    this.reconcilers = reconcilers;
    this.options = {
      baseBackoffMs: options.baseBackoffMs ?? 200,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      onError: options.onError,
    };
  }

  /** Queues a pass for the key, now or after `afterMs` (the earliest request wins). */
  add(key: string, afterMs = 0): void {
    if (this.stopped) return;
    if (afterMs > 0) {
      const at = Date.now() + afterMs;
      const pending = this.timers.get(key);
      if (pending && pending.at <= at) return;
      if (pending) clearTimeout(pending.timer);
      const timer = setTimeout(() => {
        this.timers.delete(key);
        this.add(key);
      }, afterMs);
      this.timers.set(key, { at, timer });
      return;
    }
    if (key === this.current) {
      this.dirty = true;
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.ready.push(key);
    this.wake?.();
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /**
   * Resolves when no key waits and none is being reconciled (timers may still be set), or once
   * the queue has stopped.
   */
  idle(): Promise<void> {
    if (this.stopped || (this.ready.length === 0 && this.current === undefined)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.wake?.();
    await this.loop;
    // What was still queued will not be reconciled by this queue: nobody should wait for it.
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const key = this.ready.shift();
      if (key === undefined) {
        for (const resolve of this.idleWaiters.splice(0)) resolve();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      this.queued.delete(key);
      this.current = key;
      this.dirty = false;
      const result = await this.pass(key);
      this.current = undefined;
      this.settle(key, result);
      if (this.dirty) this.add(key);
    }
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private async pass(key: string): Promise<ReconcileResult> {
    const parsed = parseKey(key);
    const reconcile = this.reconcilers[parsed.kind];
    if (!reconcile)
      return { type: "terminal", error: new Error(`no reconciler for ${parsed.kind}`) };
    try {
      return await reconcile(parsed);
    } catch (error) {
      return { type: "error", error: error as Error };
    }
  }

  private settle(key: string, result: ReconcileResult): void {
    switch (result.type) {
      case "done":
        this.failures.delete(key);
        return;
      case "requeue":
        this.failures.delete(key);
        this.add(key, result.afterMs);
        return;
      case "error": {
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        this.options.onError?.(key, result.error, false);
        this.add(key, backoffMs(failures, this.options.baseBackoffMs, this.options.maxBackoffMs));
        return;
      }
      case "terminal":
        this.failures.delete(key);
        this.options.onError?.(key, result.error, true);
    }
  }
}
