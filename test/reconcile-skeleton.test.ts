// The reconcile skeleton: the kstatus summary (every rule), the mapping of what a pass produced
// to its outcome and the queue's result, the failure events, and reconcileWith itself over a
// real in-memory store: the status is always written, once, even when a step throws.
import { describe, expect, it } from "vitest";
import type { Condition, Model } from "../controller/api/types.generated.ts";
import type { ObjectKey } from "../controller/core/keys.ts";
import type { EventType, Resource } from "../controller/core/ports.ts";
import { LocalStore } from "../controller/platform/local/store.ts";
import {
  finished,
  type Outcome,
  outcomeOf,
  StallingError,
  WaitingError,
  waitFor,
} from "../controller/reconcile/outcome.ts";
import type { PassSignals } from "../controller/reconcile/queue.ts";
import {
  failureEvent,
  reconcileWith,
  resultOf,
  type Step,
} from "../controller/reconcile/skeleton.ts";
import { sortConditions, summarize } from "../controller/reconcile/summary.ts";

const T0 = new Date("2026-03-01T12:00:00.000Z");
const T1 = new Date("2026-03-01T12:05:00.000Z");

const condition = (
  type: string,
  status: Condition["status"],
  reason = "R",
  at = T0,
  message = "m",
): Condition => ({ type, status, reason, message, lastTransitionTime: at.toISOString() });

const types = (conditions: Condition[]) =>
  conditions.map((item) => `${item.type}=${item.status}:${item.reason}`);

const because = { reason: "BuildFailed", message: "build 3 failed" };

describe("summarize: the kstatus rules", () => {
  const outcomes: Record<string, Outcome> = {
    done: { type: "done" },
    waiting: { type: "waiting", because: { reason: "Building", message: "b" }, afterMs: 500 },
    error: {
      type: "error",
      because: { reason: "FetchFailed", message: "no route" },
      error: new Error(),
    },
    stalled: { type: "stalled", because },
  };
  const before = [condition("Reconciling", "True", "Old"), condition("Stalled", "True", "Old")];

  it.each<[string, Outcome, boolean, string[]]>([
    [
      "done, Ready not marked: Ready=True, no Reconciling or Stalled",
      outcomes.done as Outcome,
      false,
      ["Ready=True:Succeeded"],
    ],
    [
      "waiting, Ready not marked: Reconciling=True, Ready=Unknown",
      outcomes.waiting as Outcome,
      false,
      ["Reconciling=True:Building", "Ready=Unknown:Building"],
    ],
    [
      "error: Reconciling=True (retrying), Ready=False with the error",
      outcomes.error as Outcome,
      false,
      ["Reconciling=True:ProgressingWithRetry", "Ready=False:FetchFailed"],
    ],
    [
      "stalled: Stalled=True and Ready=False with the reason, no Reconciling",
      outcomes.stalled as Outcome,
      false,
      ["Stalled=True:BuildFailed", "Ready=False:BuildFailed"],
    ],
  ])("%s", (_, outcome, readyMarked, expected) => {
    const summary = summarize({
      conditions: before,
      readyMarked,
      outcome,
      generation: 4,
      observedGeneration: 3,
      now: T1,
    });
    expect(types(summary.conditions)).toStrictEqual(expected);
  });

  it.each<[string, Outcome, string]>([
    ["done keeps a marked Ready", outcomes.done as Outcome, "Ready=True:Deployed"],
    [
      "waiting keeps a marked Ready (serving while rolling out)",
      outcomes.waiting as Outcome,
      "Ready=True:Deployed",
    ],
    ["an error overrides it", outcomes.error as Outcome, "Ready=False:FetchFailed"],
    ["a stall overrides it", outcomes.stalled as Outcome, "Ready=False:BuildFailed"],
  ])("a Ready the steps marked: %s", (_, outcome, expected) => {
    const summary = summarize({
      conditions: [condition("Ready", "True", "Deployed", T1)],
      readyMarked: true,
      outcome,
      generation: 4,
      observedGeneration: 3,
      now: T1,
    });
    expect(types(summary.conditions).find((text) => text.startsWith("Ready="))).toBe(expected);
  });

  it.each<[string, number | undefined]>([
    ["done", 4],
    ["stalled", 4],
    ["waiting", 3],
    ["error", 3],
  ])("observedGeneration after %s → %s (set only when Ready or Stalled)", (name, expected) => {
    const summary = summarize({
      conditions: [],
      readyMarked: false,
      outcome: outcomes[name] as Outcome,
      generation: 4,
      observedGeneration: 3,
      now: T1,
    });
    expect(summary.observedGeneration).toBe(expected);
  });

  it("gives each condition it writes the generation it describes", () => {
    const summary = summarize({
      conditions: [],
      readyMarked: false,
      outcome: outcomes.stalled as Outcome,
      generation: 7,
      observedGeneration: undefined,
      now: T1,
    });
    expect(summary.conditions.map((item) => item.observedGeneration)).toStrictEqual([7, 7]);
  });

  it.each<[string, Condition, string]>([
    [
      "the same status keeps its time, even with a new reason",
      condition("Ready", "False", "Building", T0),
      T0.toISOString(),
    ],
    ["a new status moves it", condition("Ready", "True", "Deployed", T0), T1.toISOString()],
  ])("lastTransitionTime: %s", (_, previous, expected) => {
    const summary = summarize({
      conditions: [previous],
      readyMarked: false,
      outcome: outcomes.stalled as Outcome,
      generation: 1,
      observedGeneration: 1,
      now: T1,
    });
    const ready = summary.conditions.find((item) => item.type === "Ready");
    expect(ready?.lastTransitionTime).toBe(expected);
  });

  it("sorts Stalled, Reconciling, Ready, then the rest by type", () => {
    const sorted = sortConditions([
      condition("Suspended", "True"),
      condition("Ready", "True"),
      condition("Available", "True"),
      condition("Reconciling", "True"),
      condition("Stalled", "True"),
    ]);
    expect(sorted.map((item) => item.type)).toStrictEqual([
      "Stalled",
      "Reconciling",
      "Ready",
      "Available",
      "Suspended",
    ]);
  });

  it("keeps other conditions as they are", () => {
    const suspended = condition("Suspended", "True", "Suspended");
    const summary = summarize({
      conditions: [suspended],
      readyMarked: false,
      outcome: outcomes.done as Outcome,
      generation: 1,
      observedGeneration: 1,
      now: T1,
    });
    expect(summary.conditions).toContainEqual(suspended);
  });
});

describe("outcomeOf and resultOf: the one mapping", () => {
  it.each<[string, ReturnType<typeof finished> | undefined, unknown, Outcome["type"], string]>([
    ["every step went on", undefined, undefined, "done", "done"],
    ["finished()", finished(), undefined, "done", "done"],
    ["waitFor() with a poll", waitFor("Building", "b", 500), undefined, "waiting", "requeue 500"],
    ["waitFor() for an event", waitFor("Building", "b"), undefined, "waiting", "done"],
    ["a StallingError", undefined, new StallingError("BuildFailed", "x"), "stalled", "terminal"],
    ["a WaitingError", undefined, new WaitingError("Locked", "x", 2000), "waiting", "requeue 2000"],
    ["a generic Error", undefined, new Error("socket hang up"), "error", "error"],
    ["a thrown string", undefined, "weird", "error", "error"],
  ])("%s → %s, %s", (_, result, thrown, outcomeType, queueResult) => {
    const outcome = outcomeOf(result, thrown);
    expect(outcome.type).toBe(outcomeType);
    const next = resultOf(outcome, undefined);
    expect(next.type === "requeue" ? `requeue ${next.afterMs}` : next.type).toBe(queueResult);
  });

  it.each<[string, Outcome, string]>([
    ["done polls after the resync", { type: "done" }, "requeue 30000"],
    ["a stall polls after it too", { type: "stalled", because }, "terminal 30000"],
    ["waiting keeps its own wait", { type: "waiting", because, afterMs: 500 }, "requeue 500"],
  ])("with a resync: %s", (_, outcome, expected) => {
    const next = resultOf(outcome, 30_000);
    const after = "afterMs" in next ? next.afterMs : "";
    expect(`${next.type} ${after}`).toBe(expected);
  });

  it.each<[string, Error, string]>([
    [
      "a port's reason is kept",
      Object.assign(new Error("x"), { reason: "FetchFailed" }),
      "FetchFailed",
    ],
    ["no reason: ReconcileError", new Error("x"), "ReconcileError"],
    [
      "a reason that is not PascalCase is not trusted",
      Object.assign(new Error("x"), { reason: "ECONNRESET" }),
      "ReconcileError",
    ],
  ])("the reason of a generic error: %s", (_, error, expected) => {
    const outcome = outcomeOf(undefined, error);
    expect(outcome.type === "error" && outcome.because.reason).toBe(expected);
  });
});

describe("failureEvent", () => {
  const stalledNow = [condition("Stalled", "True", "BuildFailed", T1, "build 3 failed")];
  it.each<[string, Outcome, Condition[], Condition[], string | undefined]>([
    ["a new stall", { type: "stalled", because }, [], stalledNow, "BuildFailed"],
    ["the same stall again: none", { type: "stalled", because }, stalledNow, stalledNow, undefined],
    [
      "a new error",
      { type: "error", because: { reason: "FetchFailed", message: "down" }, error: new Error() },
      [],
      [condition("Ready", "False", "FetchFailed", T1, "down")],
      "FetchFailed",
    ],
    [
      "the same error again: none",
      { type: "error", because: { reason: "FetchFailed", message: "down" }, error: new Error() },
      [condition("Ready", "False", "FetchFailed", T1, "down")],
      [condition("Ready", "False", "FetchFailed", T1, "down")],
      undefined,
    ],
    ["done: none", { type: "done" }, [], [], undefined],
  ])("%s", (_, outcome, before, after, expected) => {
    expect(failureEvent(outcome, before, after)?.reason).toBe(expected);
  });
});

describe("reconcileWith", () => {
  interface Recorded {
    type: EventType;
    reason: string;
  }

  async function setUp(steps: Step<"Model", Record<string, never>>[]) {
    const store = new LocalStore(undefined, () => T1);
    await store.apply<Model>({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "Model",
      metadata: { name: "iris", namespace: "default" },
      spec: { runtime: "python3", file: "p.py", function: "f" },
    });
    const events: Recorded[] = [];
    let patches = 0;
    store.watch((event) => {
      if (event.type === "MODIFIED") patches += 1;
    });
    const missing: string[] = [];
    const reconcile = reconcileWith(
      {
        kind: "Model",
        newData: () => ({}),
        steps,
        whenMissing: async (gone) => {
          missing.push(gone.name);
        },
      },
      {
        store,
        events: {
          record: (_: Resource, type: EventType, reason: string) => events.push({ type, reason }),
        },
        now: () => T1,
      },
    );
    const controller = new AbortController();
    const signals: PassSignals = { signal: controller.signal, stopped: controller.signal };
    const key: ObjectKey = { kind: "Model", namespace: "default", name: "iris" };
    return {
      store,
      events,
      missing,
      patches: () => patches,
      run: (name = "iris") => reconcile({ ...key, name }, signals),
      ready: () =>
        store
          .get("Model", "default", "iris")
          ?.status?.conditions?.map((item) => `${item.type}=${item.status}:${item.reason}`),
    };
  }

  it("writes the status even when a step throws, with the error on Ready", async () => {
    const world = await setUp([
      async (pass) => {
        pass.status.latestBuild = 3;
        throw new Error("the API server went away");
      },
    ]);
    const result = await world.run();
    expect(result.type).toBe("error");
    expect(world.store.get("Model", "default", "iris")?.status?.latestBuild).toBe(3);
    expect(world.ready()).toStrictEqual([
      "Reconciling=True:ProgressingWithRetry",
      "Ready=False:ReconcileError",
    ]);
    expect(world.events).toStrictEqual([{ type: "Warning", reason: "ReconcileError" }]);
  });

  it("stops at the first step that ends the pass", async () => {
    const ran: string[] = [];
    const world = await setUp([
      async () => {
        ran.push("first");
        return undefined;
      },
      async () => {
        ran.push("second");
        return waitFor("Building", "build 1 is in progress", 500);
      },
      async () => {
        ran.push("third");
        return undefined;
      },
    ]);
    expect(await world.run()).toStrictEqual({ type: "requeue", afterMs: 500 });
    expect(ran).toStrictEqual(["first", "second"]);
  });

  it("patches nothing when the pass changed nothing", async () => {
    const world = await setUp([
      async (pass) => {
        pass.markReady("True", "BuildSucceeded", "build 1 is ready");
        return undefined;
      },
    ]);
    await world.run();
    const afterFirst = world.patches();
    await world.run();
    expect([afterFirst, world.patches()]).toStrictEqual([1, 1]);
  });

  it("records a stall's Warning once, and the steps' events after the status", async () => {
    const world = await setUp([
      async (pass) => {
        pass.event("Normal", "BuildCreated", "build 3");
        throw new StallingError("BuildFailed", "build 3 failed");
      },
    ]);
    await world.run();
    await world.run();
    expect(world.events).toStrictEqual([
      { type: "Normal", reason: "BuildCreated" },
      { type: "Warning", reason: "BuildFailed" },
      { type: "Normal", reason: "BuildCreated" },
    ]);
    expect(world.store.get("Model", "default", "iris")?.status?.observedGeneration).toBe(1);
  });

  it("calls whenMissing for an object that is gone, and writes nothing", async () => {
    const world = await setUp([]);
    expect(await world.run("gone")).toStrictEqual({ type: "done" });
    expect(world.missing).toStrictEqual(["gone"]);
  });

  it("does not fail a pass whose object was deleted by one of its steps", async () => {
    const world = await setUp([
      async (pass) => {
        await world.store.delete("Model", pass.key.namespace, pass.key.name);
        return finished();
      },
    ]);
    expect(await world.run()).toStrictEqual({ type: "done" });
  });

  it("says a pass cut short by its deadline ran past it", async () => {
    const store = new LocalStore(undefined, () => T1);
    await store.apply<Model>({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "Model",
      metadata: { name: "iris", namespace: "default" },
      spec: { runtime: "python3", file: "p.py", function: "f" },
    });
    const reconcile = reconcileWith(
      {
        kind: "Model",
        newData: () => ({}),
        steps: [
          async (pass) =>
            new Promise((_, reject) =>
              pass.signal.addEventListener("abort", () => reject(pass.signal.reason)),
            ),
        ],
      },
      { store, events: { record: () => {} }, now: () => T1 },
    );
    const deadline = new AbortController();
    const stopped = new AbortController();
    const running = reconcile(
      { kind: "Model", namespace: "default", name: "iris" },
      { signal: deadline.signal, stopped: stopped.signal },
    );
    deadline.abort(new DOMException("too slow", "TimeoutError"));
    expect((await running).type).toBe("error");
    const ready = store
      .get("Model", "default", "iris")
      ?.status?.conditions?.find((item) => item.type === "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "DeadlineExceeded" });
  });
});
