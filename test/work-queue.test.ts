// WorkQueue on fake timers: dedup, re-runs, requeue, backoff, terminal, idle, stop (counts only).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  backoffMs,
  done,
  formatKey,
  type ObjectKey,
  parseKey,
  type ReconcileResult,
  requeueAfter,
  WorkQueue,
} from "../controller/reconcile/queue.ts";

const A = "Model/default/a";
const B = "Model/default/b";
const C = "Model/default/c";

/** A reconciler that records the keys it sees and answers from a script (then `done`). */
function recorder(script: (ReconcileResult | Error)[] = []) {
  const seen: string[] = [];
  const reconcile = async (key: ObjectKey): Promise<ReconcileResult> => {
    seen.push(formatKey(key));
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

let queues: WorkQueue[] = [];
function queue(...args: ConstructorParameters<typeof WorkQueue>): WorkQueue {
  const created = new WorkQueue(...args);
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

describe("formatKey and parseKey", () => {
  it.each<[ObjectKey, string]>([
    [{ kind: "Model", namespace: "default", name: "iris" }, "Model/default/iris"],
    [
      { kind: "ModelDeployment", namespace: "team-a", name: "web-2" },
      "ModelDeployment/team-a/web-2",
    ],
    [{ kind: "ModelRepository", namespace: "x", name: "models" }, "ModelRepository/x/models"],
  ])("%j ⇄ %s", (key, text) => {
    expect(formatKey(key)).toBe(text);
    expect(parseKey(text)).toStrictEqual(key);
    expect(parseKey(formatKey(key))).toStrictEqual(key);
  });

  it.each<[string, ObjectKey]>([
    ["Model/default", { kind: "Model", namespace: "default", name: "" }],
    ["", { kind: "", namespace: "", name: "" }],
  ])("parseKey(%j) fills missing parts with empty strings", (text, key) => {
    expect(parseKey(text)).toStrictEqual(key);
  });
});

describe("backoffMs", () => {
  it.each<[number, number, number, number]>([
    [0, 200, 30_000, 200],
    [1, 200, 30_000, 200],
    [2, 200, 30_000, 400],
    [3, 200, 30_000, 800],
    [4, 200, 30_000, 1_600],
    [8, 200, 30_000, 25_600],
    [9, 200, 30_000, 30_000],
    [50, 200, 30_000, 30_000],
    [1, 100, 250, 100],
    [2, 100, 250, 200],
    [3, 100, 250, 250],
  ])("failures %d, base %d, max %d → %d ms", (failures, base, max, expected) => {
    expect(backoffMs(failures, base, max)).toBe(expected);
  });
});

describe("WorkQueue", () => {
  it("reconciles a key added many times while waiting once, in first-added order", async () => {
    const { seen, reconcile } = recorder();
    const work = queue({ Model: reconcile });
    for (const key of [A, B, A, C, A, B]) work.add(key);
    work.start();
    await work.idle();
    expect(seen).toStrictEqual([A, B, C]);
  });

  it("reconciles a key added during its pass once more, after it, never two at once", async () => {
    const gate = deferred();
    const seen: string[] = [];
    let active = 0;
    let most = 0;
    const work = queue({
      Model: async (key) => {
        seen.push(key.name);
        active += 1;
        most = Math.max(most, active);
        if (seen.length === 1) await gate.promise;
        active -= 1;
        return done;
      },
    });
    work.add(A);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(seen).toStrictEqual(["a"]);
    work.add(A);
    work.add(A);
    work.add(A);
    gate.resolve();
    await work.idle();
    expect(seen).toStrictEqual(["a", "a"]);
    expect(most).toBe(1);
  });

  it("runs a requeued key again after its delay, once per request", async () => {
    const { seen, reconcile } = recorder([requeueAfter(100), requeueAfter(100)]);
    const work = queue({ Model: reconcile });
    work.add(A);
    work.start();
    await work.idle();
    const counts = [seen.length];
    await vi.advanceTimersByTimeAsync(99);
    counts.push(seen.length);
    await vi.advanceTimersByTimeAsync(1);
    counts.push(seen.length);
    await vi.advanceTimersByTimeAsync(100);
    counts.push(seen.length);
    await vi.advanceTimersByTimeAsync(10_000);
    counts.push(seen.length);
    expect(counts).toStrictEqual([1, 1, 2, 3, 3]);
  });

  it.each<[string, number, number, number]>([
    ["a later delay does not push back an earlier one", 50, 500, 50],
    ["an earlier delay replaces a later one", 500, 50, 50],
  ])("add with a delay: %s", async (_, first, second, wins) => {
    const { seen, reconcile } = recorder();
    const work = queue({ Model: reconcile });
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
    const work = queue(
      { Model: reconcile },
      {
        baseBackoffMs: 100,
        maxBackoffMs: 300,
        onError: (key, error, terminal) => errors.push([key, error.message, terminal]),
      },
    );
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
    expect(seen).toHaveLength(5);
    expect(errors).toStrictEqual([
      [A, "boom 1", false],
      [A, "boom 2", false],
      [A, "boom 3", false],
      [A, "boom 4", false],
    ]);
  });

  it("treats a thrown exception as an error and backs off", async () => {
    const { seen, reconcile } = recorder([new Error("thrown")]);
    const errors: [string, string, boolean][] = [];
    const work = queue(
      { Model: reconcile },
      {
        baseBackoffMs: 100,
        onError: (key, error, terminal) => errors.push([key, error.message, terminal]),
      },
    );
    work.add(A);
    work.start();
    await work.idle();
    await vi.advanceTimersByTimeAsync(99);
    const early = seen.length;
    await vi.advanceTimersByTimeAsync(1);
    expect([early, seen.length]).toStrictEqual([1, 2]);
    expect(errors).toStrictEqual([[A, "thrown", false]]);
  });

  it("starts the backoff afresh after a success", async () => {
    const error = { type: "error", error: new Error("x") } as const;
    const { seen, reconcile } = recorder([error, error, done, error]);
    const work = queue({ Model: reconcile }, { baseBackoffMs: 100, maxBackoffMs: 10_000 });
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

  it.each<[string, string, Record<string, ReconcileResult>, string]>([
    [
      "a terminal result",
      A,
      { Model: { type: "terminal", error: new Error("no source") } },
      "no source",
    ],
    ["an unknown kind", "Widget/default/x", {}, "no reconciler for Widget"],
  ])("%s is reported as terminal and not retried", async (_, key, results, message) => {
    const { seen, reconcile } = recorder(Object.values(results));
    const errors: [string, string, boolean][] = [];
    const work = queue(
      { Model: reconcile },
      { onError: (item, error, terminal) => errors.push([item, error.message, terminal]) },
    );
    work.add(key);
    work.start();
    await work.idle();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(seen).toHaveLength(key === A ? 1 : 0);
    expect(errors).toStrictEqual([[key, message, true]]);
  });

  it("dispatches each key to the reconciler of its kind", async () => {
    const seen: string[] = [];
    const work = queue({
      Model: async (key) => {
        seen.push(`model ${key.namespace}/${key.name}`);
        return done;
      },
      ModelBuild: async (key) => {
        seen.push(`build ${key.namespace}/${key.name}`);
        return done;
      },
    });
    work.add("ModelBuild/team-a/iris-1");
    work.add("Model/default/iris");
    work.start();
    await work.idle();
    expect(seen).toStrictEqual(["build team-a/iris-1", "model default/iris"]);
  });

  it("idle() resolves at once when nothing waits, and after the last pass otherwise", async () => {
    const { seen, reconcile } = recorder();
    const work = queue({ Model: reconcile });
    await work.idle();
    work.start();
    await work.idle();
    expect(seen).toStrictEqual([]);
    work.add(A);
    work.add(B);
    await work.idle();
    expect(seen).toStrictEqual([A, B]);
  });

  it("stop() waits for the pass in flight, then ends the loop and drops timers and adds", async () => {
    const gate = deferred();
    const seen: string[] = [];
    const work = queue({
      Model: async (key) => {
        seen.push(key.name);
        if (key.name === "a") await gate.promise;
        return requeueAfter(50);
      },
    });
    work.add(A);
    work.add(B);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    let stopped = false;
    const stopping = work.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    const whileInFlight = stopped;
    gate.resolve();
    await stopping;
    work.add(C);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(whileInFlight).toBe(false);
    expect(seen).toStrictEqual(["a"]);
    // B never ran; waiting for the queue to go idle must not hang on it.
    let idle = false;
    await work.idle().then(() => {
      idle = true;
    });
    expect(idle).toBe(true);
  });

  it("lets idle() waiters go when it stops with keys still queued", async () => {
    const gate = deferred();
    const work = queue({
      Model: async () => {
        await gate.promise;
        return done;
      },
    });
    work.add(A);
    work.add(B);
    work.start();
    await vi.advanceTimersByTimeAsync(0);
    let idle = false;
    const waiting = work.idle().then(() => {
      idle = true;
    });
    const stopping = work.stop();
    gate.resolve();
    await stopping;
    await waiting;
    expect(idle).toBe(true);
  });
});
