// WorkQueue on fake timers: dedup, re-runs, requeue with jitter, backoff, terminal, concurrency,
// deadlines and stop through the pass's signal, idle, and what it reports to its observer.
import { getEventListeners } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { formatKey, type ObjectKey } from "../controller/core/keys.ts";
import {
  backoffMs,
  jittered,
  type PassSignals,
  type QueueOptions,
  type ReconcileResult,
  type Reconciler,
  WorkQueue,
} from "../controller/reconcile/queue.ts";

const key = (name: string): ObjectKey => ({ kind: "Model", namespace: "default", name });
const A = key("a");
const B = key("b");
const C = key("c");
const done: ReconcileResult = { type: "done" };
const requeueAfter = (afterMs: number): ReconcileResult => ({ type: "requeue", afterMs });

/** A reconciler that records the keys it sees and answers from a script (then `done`). */
function recorder(script: (ReconcileResult | Error)[] = []) {
  const seen: string[] = [];
  const reconcile: Reconciler = async (item) => {
    seen.push(item.name);
    const next = script.shift() ?? done;
    if (next instanceof Error) throw next;
    return next;
  };
  return { seen, reconcile };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Resolves when the signal aborts, as a port call on a hung socket would. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

let queues: WorkQueue[] = [];
/** A queue without jitter unless asked: the timing tests read exact delays. */
function queue(reconcile: Reconciler, options: QueueOptions = {}): WorkQueue {
  const created = new WorkQueue(reconcile, { jitter: 0, ...options });
  queues.push(created);
  return created;
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(async () => {
  for (const item of queues) await item.stop();
  queues = [];
  vi.useRealTimers();
});

describe("formatKey", () => {
  it.each<[ObjectKey, string]>([
    [{ kind: "Model", namespace: "default", name: "iris" }, "Model/default/iris"],
    [
      { kind: "ModelDeployment", namespace: "team-a", name: "web-2" },
      "ModelDeployment/team-a/web-2",
    ],
    [{ kind: "ModelRepository", namespace: "x", name: "models" }, "ModelRepository/x/models"],
  ])("%j → %s", (item, text) => {
    expect(formatKey(item)).toBe(text);
  });
});

describe("backoffMs", () => {
  it.each<[number, number, number, number]>([
    [0, 200, 30_000, 200],
    [1, 200, 30_000, 200],
    [2, 200, 30_000, 400],
    [3, 200, 30_000, 800],
    [8, 200, 30_000, 25_600],
    [9, 200, 30_000, 30_000],
    [50, 200, 30_000, 30_000],
    [3, 100, 250, 250],
  ])("failures %d, base %d, max %d → %d ms", (failures, base, max, expected) => {
    expect(backoffMs(failures, base, max)).toBe(expected);
  });
});

describe("jittered", () => {
  it.each<[number, number, number, number]>([
    [1000, 0.1, 0, 1000],
    [1000, 0.1, 0.5, 1050],
    [1000, 0.1, 0.999, 1100],
    [30_000, 0.2, 0.25, 31_500],
    [1000, 0, 0.7, 1000],
  ])("%d ms, fraction %d, random %d → %d ms", (afterMs, fraction, random, expected) => {
    expect(jittered(afterMs, fraction, () => random)).toBe(expected);
  });
});

describe("WorkQueue", () => {
  it("reconciles a key added many times while waiting once, in first-added order", async () => {
    const { seen, reconcile } = recorder();
    const work = queue(reconcile);
    for (const item of [A, B, A, C, A, B]) work.add(item);
    work.start();
    await work.idle();
    expect(seen).toStrictEqual(["a", "b", "c"]);
  });

  it("reconciles a key added during its pass once more, after it, never two at once", async () => {
    const gate = deferred();
    const seen: string[] = [];
    let active = 0;
    let most = 0;
    const work = queue(
      async (item) => {
        seen.push(item.name);
        active += 1;
        most = Math.max(most, active);
        if (seen.length === 1) await gate.promise;
        active -= 1;
        return done;
      },
      { concurrency: 4 },
    );
    work.add(A);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    work.add(A);
    work.add(A);
    gate.resolve();
    await work.idle();
    expect(seen).toStrictEqual(["a", "a"]);
    expect(most).toBe(1);
  });

  it("works different keys at once, up to its concurrency", async () => {
    const gate = deferred();
    let active = 0;
    let most = 0;
    const work = queue(
      async () => {
        active += 1;
        most = Math.max(most, active);
        await gate.promise;
        active -= 1;
        return done;
      },
      { concurrency: 2 },
    );
    for (const item of [A, B, C]) work.add(item);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    const atOnce = active;
    gate.resolve();
    await work.idle();
    expect([atOnce, most]).toStrictEqual([2, 2]);
  });

  it("runs a requeued key again after its delay, once per request", async () => {
    const { seen, reconcile } = recorder([requeueAfter(100), requeueAfter(100)]);
    const work = queue(reconcile);
    work.add(A);
    work.start();
    await work.idle();
    const counts = [seen.length];
    for (const step of [99, 1, 100, 10_000]) {
      await vi.advanceTimersByTimeAsync(step);
      counts.push(seen.length);
    }
    expect(counts).toStrictEqual([1, 1, 2, 3, 3]);
  });

  it("adds up to its jitter to a requeue, so that equal intervals drift apart", async () => {
    const { seen, reconcile } = recorder([requeueAfter(1000)]);
    const work = queue(reconcile, { jitter: 0.1, random: () => 0.5 });
    work.add(A);
    work.start();
    await work.idle();
    await vi.advanceTimersByTimeAsync(1049);
    const early = seen.length;
    await vi.advanceTimersByTimeAsync(1);
    expect([early, seen.length]).toStrictEqual([1, 2]);
  });

  it.each<[string, number, number, number]>([
    ["a later delay does not push back an earlier one", 50, 500, 50],
    ["an earlier delay replaces a later one", 500, 50, 50],
  ])("add with a delay: %s", async (_, first, second, wins) => {
    const { seen, reconcile } = recorder();
    const work = queue(reconcile);
    work.start();
    work.add(A, first);
    work.add(A, second);
    await vi.advanceTimersByTimeAsync(wins - 1);
    const before = seen.length;
    await vi.advanceTimersByTimeAsync(1);
    const after = seen.length;
    await vi.advanceTimersByTimeAsync(1_000);
    expect([before, after, seen.length]).toStrictEqual([0, 1, 1]);
  });

  it("backs off after errors, base doubling up to max, and tells onError each time", async () => {
    const failures = [1, 2, 3, 4].map((n) => new Error(`boom ${n}`));
    const { seen, reconcile } = recorder(failures.map((error) => ({ type: "error", error })));
    const errors: [string, string, boolean][] = [];
    const work = queue(reconcile, {
      baseBackoffMs: 100,
      maxBackoffMs: 300,
      onError: (item, error, terminal) => errors.push([item.name, error.message, terminal]),
    });
    work.add(A);
    work.start();
    await work.idle();
    // Waits expected after failures 1..4: 100, 200, 300 (max), 300; then `done`.
    const counts: [number, number][] = [];
    for (const wait of [100, 200, 300, 300]) {
      await vi.advanceTimersByTimeAsync(wait - 1);
      const early = seen.length;
      await vi.advanceTimersByTimeAsync(1);
      counts.push([early, seen.length]);
    }
    await vi.advanceTimersByTimeAsync(60_000);
    expect(counts).toStrictEqual([
      [1, 2],
      [2, 3],
      [3, 4],
      [4, 5],
    ]);
    expect(errors).toStrictEqual([1, 2, 3, 4].map((n) => ["a", `boom ${n}`, false]));
  });

  it("treats a thrown exception as an error and backs off", async () => {
    const { seen, reconcile } = recorder([new Error("thrown")]);
    const work = queue(reconcile, { baseBackoffMs: 100 });
    work.add(A);
    work.start();
    await work.idle();
    await vi.advanceTimersByTimeAsync(99);
    const early = seen.length;
    await vi.advanceTimersByTimeAsync(1);
    expect([early, seen.length]).toStrictEqual([1, 2]);
  });

  it("starts the backoff afresh after a success", async () => {
    const error = { type: "error", error: new Error("x") } as const;
    const { seen, reconcile } = recorder([error, error, done, error]);
    const work = queue(reconcile, { baseBackoffMs: 100, maxBackoffMs: 10_000 });
    work.add(A);
    work.start();
    await vi.advanceTimersByTimeAsync(100 + 200);
    expect(seen).toHaveLength(3);
    work.add(A);
    await work.idle();
    expect(seen).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(99);
    const early = seen.length;
    await vi.advanceTimersByTimeAsync(1);
    expect([early, seen.length]).toStrictEqual([4, 5]);
  });

  it.each<[string, ReconcileResult, number[]]>([
    ["without a poll it is not retried", { type: "terminal", error: new Error("no source") }, [1]],
    [
      "with one (a source's interval) it is looked at again then",
      { type: "terminal", error: new Error("bad commit"), afterMs: 500 },
      [1, 2],
    ],
  ])("a terminal result: %s", async (_, result, expected) => {
    const { seen, reconcile } = recorder([result, result]);
    const terminal: boolean[] = [];
    const work = queue(reconcile, { onError: (_, __, isTerminal) => terminal.push(isTerminal) });
    work.add(A);
    work.start();
    await work.idle();
    const counts = [seen.length];
    await vi.advanceTimersByTimeAsync(500);
    if (expected.length > 1) counts.push(seen.length);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(counts).toStrictEqual(expected);
    expect(terminal.every(Boolean)).toBe(true);
  });

  it("aborts a pass's signal at its deadline, and the pass ends as an error", async () => {
    const signals: PassSignals[] = [];
    const errors: string[] = [];
    const work = queue(
      async (_, passSignals) => {
        signals.push(passSignals);
        await untilAborted(passSignals.signal);
        return done;
      },
      { passTimeoutMs: 1000, baseBackoffMs: 60_000, onError: (_, e) => errors.push(e.name) },
    );
    work.add(A);
    work.start();
    await vi.advanceTimersByTimeAsync(999);
    const before = signals[0]?.signal.aborted;
    await vi.advanceTimersByTimeAsync(1);
    await work.idle();
    expect([before, signals[0]?.signal.aborted, signals[0]?.stopped.aborted]).toStrictEqual([
      false,
      true,
      false,
    ]);
    expect(errors).toStrictEqual(["TimeoutError"]);
  });

  it("gives up on a pass that ignores its deadline, but never runs its key twice at once", async () => {
    const gate = deferred();
    const seen: string[] = [];
    const active = new Map<string, number>();
    let mostOfOneKey = 0;
    const errors: string[] = [];
    const work = queue(
      async (item) => {
        seen.push(item.name);
        active.set(item.name, (active.get(item.name) ?? 0) + 1);
        mostOfOneKey = Math.max(mostOfOneKey, active.get(item.name) ?? 0);
        // The first pass of a hangs, deaf to its signal.
        if (item.name === "a" && seen.length === 1) await gate.promise;
        active.set(item.name, (active.get(item.name) ?? 0) - 1);
        return done;
      },
      {
        passTimeoutMs: 1000,
        baseBackoffMs: 60_000,
        onError: (_, error) => errors.push(error.message),
      },
    );
    work.add(A);
    work.start();
    await vi.advanceTimersByTimeAsync(1000 + 5000);
    // Its worker moved on; b is worked meanwhile, a waits for its own pass to end.
    work.add(B);
    work.add(A);
    await vi.advanceTimersByTimeAsync(100);
    const whileHung = [...seen];
    gate.resolve();
    await vi.advanceTimersByTimeAsync(100);
    await work.idle();
    expect(errors).toStrictEqual(["the pass did not end within 5000 ms of its deadline or stop"]);
    expect(whileHung).toStrictEqual(["a", "b"]);
    expect(seen).toStrictEqual(["a", "b", "a"]);
    expect(mostOfOneKey).toBe(1);
  });

  it("stop() aborts the passes in flight at once: a hung call does not hold it", async () => {
    let stoppedSignal: AbortSignal | undefined;
    const work = queue(async (_, passSignals) => {
      stoppedSignal = passSignals.stopped;
      await untilAborted(passSignals.signal);
      return done;
    });
    work.add(A);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    let stopped = false;
    const stopping = work.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    await stopping;
    expect([stopped, stoppedSignal?.aborted]).toStrictEqual([true, true]);
  });

  it("stop() gives up on a pass deaf to its signal after the grace, and leaves no timer", async () => {
    const gate = deferred();
    const work = queue(async () => {
      await gate.promise;
      return done;
    });
    work.add(A);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    let stopped = false;
    const stopping = work.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(4999);
    const early = stopped;
    await vi.advanceTimersByTimeAsync(1);
    await stopping;
    gate.resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect([early, stopped, vi.getTimerCount()]).toStrictEqual([false, true, 0]);
  });

  it("leaves no listener on its stop signal once the passes are over", async () => {
    let stopped: AbortSignal | undefined;
    const work = queue(async (_, passSignals) => {
      stopped = passSignals.stopped;
      return done;
    });
    work.start();
    for (let round = 0; round < 50; round++) {
      work.add(key(`k${round}`));
      await work.idle();
    }
    expect(stopped && getEventListeners(stopped, "abort")).toStrictEqual([]);
  });

  it("idle() resolves at once when nothing waits, and after the last pass otherwise", async () => {
    const { seen, reconcile } = recorder();
    const work = queue(reconcile);
    await work.idle();
    work.start();
    await work.idle();
    expect(seen).toStrictEqual([]);
    work.add(A);
    work.add(B);
    await work.idle();
    expect(seen).toStrictEqual(["a", "b"]);
    expect(work.isIdle).toBe(true);
  });

  it("after stop(), drops timers and adds, and lets idle() waiters go", async () => {
    const gate = deferred();
    const seen: string[] = [];
    const work = queue(async (item) => {
      seen.push(item.name);
      if (item.name === "a") await gate.promise;
      return requeueAfter(50);
    });
    work.add(A);
    work.add(B);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    const waiting = work.idle();
    const stopping = work.stop();
    gate.resolve();
    await stopping;
    await waiting;
    work.add(C);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(seen).toStrictEqual(["a"]);
  });

  it("tells its observer the depth, each key's wait and each pass's result", async () => {
    const depths: number[] = [];
    const results: string[] = [];
    let waited = 0;
    const { reconcile } = recorder([requeueAfter(10), new Error("x")]);
    const work = queue(reconcile, {
      observer: {
        depth: (waiting) => depths.push(waiting),
        waited: () => {
          waited += 1;
        },
        reconciled: (_, result) => results.push(result),
      },
    });
    work.add(A);
    work.add(B);
    work.start();
    await work.idle();
    expect(depths.slice(0, 4)).toStrictEqual([1, 2, 1, 0]);
    expect(waited).toBe(2);
    expect(results).toStrictEqual(["requeue", "error"]);
  });
});
