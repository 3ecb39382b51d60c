// The per-model queue, on fake timers: who gets which replica, in what order, and when.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ModelDispatcher,
  nextHoldMs,
  type Probe,
  type ReplicaSlot,
  type SlotOutcome,
} from "../controller/gateway/dispatcher.ts";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function dispatcherWith(ids: string[], probe?: Probe): ModelDispatcher {
  const dispatcher = new ModelDispatcher(() => Date.now(), probe);
  dispatcher.setReplicas(ids.map((id, index) => ({ id, url: `http://127.0.0.1:${9001 + index}` })));
  return dispatcher;
}

/** Takes a replica that must be free now. */
function take(dispatcher: ModelDispatcher): ReplicaSlot {
  const slot = dispatcher.acquire(0);
  if (slot instanceof Promise) throw new Error("expected a free replica");
  return slot;
}

/** Records, in order, what each waiting caller got. */
function waitFor(
  dispatcher: ModelDispatcher,
  label: string,
  got: string[],
  waitMs = 1000,
  first = false,
) {
  const acquired = dispatcher.acquire(waitMs, first);
  if (!(acquired instanceof Promise)) throw new Error("expected to wait");
  return acquired.then((slot) => {
    got.push(`${label}:${slot?.id ?? "busy"}`);
  });
}

/** A probe whose answers the test gives, one per probe, recording which replica was probed. */
function scriptedProbe(answers: (string | undefined)[]) {
  const probed: string[] = [];
  const probe: Probe = (slot) => {
    probed.push(slot.id);
    return Promise.resolve(answers.shift());
  };
  return { probe, probed };
}

/** Runs timers for `ms` and lets the probes' promises settle. */
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
}

// After "unreachable" the hold is the wait before the next probe of the ejected replica.
describe("nextHoldMs", () => {
  it.each<[number, SlotOutcome, number]>([
    [0, "answered", 0],
    [40, "answered", 0],
    [40, "errored", 0],
    [0, "refused", 1],
    [1, "refused", 2],
    [32, "refused", 50],
    [50, "refused", 50],
    [0, "unreachable", 100],
    [1, "unreachable", 100],
    [800, "unreachable", 1600],
    [1600, "unreachable", 2000],
  ])("after a hold of %i ms, %s → %i ms", (previous, outcome, expected) => {
    expect(nextHoldMs(previous, outcome)).toBe(expected);
  });
});

describe("ModelDispatcher", () => {
  it("hands free replicas out in list order while none has answered, then makes callers wait", () => {
    const dispatcher = dispatcherWith(["a", "b", "c"]);
    expect([take(dispatcher).id, take(dispatcher).id, take(dispatcher).id]).toEqual([
      "a",
      "b",
      "c",
    ]);
    expect(dispatcher.acquire(1000)).toBeInstanceOf(Promise);
    expect(dispatcher.queueLength).toBe(1);
    expect(dispatcher.busyCount).toBe(3);
  });

  // Which free replica a call takes. Steps: "take" takes one and notes its id; "answered x",
  // "errored x", "refused x", "unreachable x" release the replica x was given with that
  // outcome; "wait N" runs timers (and probes) for N ms.
  const choices: { name: string; replicas: string[]; steps: string[]; taken: string[] }[] = [
    {
      name: "calls one at a time stay on the replica that answered",
      replicas: ["a", "b"],
      steps: ["take", "answered a", "take", "answered a", "take"],
      taken: ["a", "a", "a"],
    },
    {
      name: "of two free replicas, the one that answered last, not the first in the list",
      replicas: ["a", "b", "c"],
      steps: ["take", "take", "answered a", "answered b", "take"],
      taken: ["a", "b", "b"],
    },
    {
      name: "the replica that answered last, even when it is last in the list",
      replicas: ["a", "b", "c"],
      steps: ["take", "take", "take", "answered a", "answered c", "take"],
      taken: ["a", "b", "c", "c"],
    },
    {
      name: "one that answered an error goes behind one that answered a result",
      replicas: ["a", "b"],
      steps: ["take", "take", "answered a", "errored b", "take", "answered a", "take"],
      taken: ["a", "b", "a", "a"],
    },
    {
      name: "one that answered an error is not first, even when it answered last",
      replicas: ["a", "b"],
      steps: ["take", "take", "answered b", "errored a", "take"],
      taken: ["a", "b", "b"],
    },
    {
      name: "a replica that refused goes behind one never used, after its hold",
      replicas: ["a", "b"],
      steps: ["take", "answered a", "take", "refused a", "wait 5", "take", "answered b", "take"],
      taken: ["a", "a", "b", "b"],
    },
    {
      name: "a replica held after a refusal is skipped while it is held",
      replicas: ["a", "b"],
      steps: ["take", "take", "refused b", "wait 5", "refused a", "take"],
      taken: ["a", "b", "b"],
    },
    {
      name: "a replica that failed and was probed back goes behind the others",
      replicas: ["a", "b"],
      steps: ["take", "unreachable a", "wait 150", "take", "answered b", "take", "take"],
      taken: ["a", "b", "b", "a"],
    },
  ];
  for (const { name, replicas, steps, taken } of choices) {
    it(`takes a free replica: ${name}`, async () => {
      // Every probe finds an agent: an ejected replica is back after its first probe (100 ms).
      const dispatcher = dispatcherWith(replicas, () => Promise.resolve(undefined));
      const held = new Map<string, ReplicaSlot>();
      const order: string[] = [];
      for (const step of steps) {
        const [verb, argument = ""] = step.split(" ");
        if (verb === "take") {
          const slot = take(dispatcher);
          held.set(slot.id, slot);
          order.push(slot.id);
        } else if (verb === "wait") {
          await advance(Number(argument));
        } else {
          const slot = held.get(argument);
          if (!slot) throw new Error(`${argument} was not taken`);
          held.delete(argument);
          dispatcher.release(slot, verb as SlotOutcome);
        }
      }
      expect(order).toEqual(taken);
    });
  }

  it("serves waiting callers in arrival order as replicas come free", async () => {
    const dispatcher = dispatcherWith(["a", "b"]);
    const [a, b] = [take(dispatcher), take(dispatcher)];
    const got: string[] = [];
    const waits = ["first", "second", "third"].map((label) => waitFor(dispatcher, label, got));
    dispatcher.release(b, "answered");
    dispatcher.release(a, "answered");
    await Promise.resolve();
    expect(got).toEqual(["first:b", "second:a"]);
    // The first caller is done with b: the third gets it.
    dispatcher.release(b, "answered");
    await Promise.all(waits);
    expect(got).toEqual(["first:b", "second:a", "third:b"]);
  });

  it("answers at once when there is no time to wait, and after the wait otherwise", async () => {
    const dispatcher = dispatcherWith(["a"]);
    take(dispatcher);
    expect(await dispatcher.acquire(0)).toBeUndefined();
    const got: string[] = [];
    const wait = waitFor(dispatcher, "caller", got, 200);
    vi.advanceTimersByTime(199);
    await Promise.resolve();
    expect(got).toEqual([]);
    vi.advanceTimersByTime(2);
    await wait;
    expect(got).toEqual(["caller:busy"]);
    expect(dispatcher.queueLength).toBe(0);
  });

  it("holds back a replica that refused a call, then gives it to the caller who waits", async () => {
    const dispatcher = dispatcherWith(["a"]);
    const slot = take(dispatcher);
    dispatcher.release(slot, "refused");
    // Held for 1 ms: not free now.
    expect(dispatcher.acquire(0)).toBeInstanceOf(Promise);
    const got: string[] = [];
    const wait = waitFor(dispatcher, "retry", got, 1000, true);
    vi.advanceTimersByTime(2);
    await wait;
    expect(got).toEqual(["retry:a"]);
  });

  it("puts a refused caller back at the head of the line", async () => {
    const dispatcher = dispatcherWith(["a"]);
    const slot = take(dispatcher);
    const got: string[] = [];
    const later = waitFor(dispatcher, "later", got);
    const refused = waitFor(dispatcher, "refused", got, 1000, true);
    dispatcher.release(slot, "answered");
    await refused;
    expect(got).toEqual(["refused:a"]);
    dispatcher.release(slot, "answered");
    await later;
    expect(got).toEqual(["refused:a", "later:a"]);
  });

  it("keeps a replica's state across a new replica list, drops removed ones, and serves waiters from new ones", async () => {
    const dispatcher = dispatcherWith(["a", "b"]);
    const a = take(dispatcher);
    const b = take(dispatcher);
    const got: string[] = [];
    const wait = waitFor(dispatcher, "caller", got);
    dispatcher.setReplicas([
      { id: "a", url: a.url },
      { id: "c", url: "http://127.0.0.1:9100" },
    ]);
    await wait;
    expect(got).toEqual(["caller:c"]);
    expect(a.busy).toBe(true);
    dispatcher.release(b, "answered");
    expect(b.removed).toBe(true);
    expect(dispatcher.replicaCount).toBe(2);
    dispatcher.release(a, "answered");
    expect(take(dispatcher).id).toBe("a");
  });

  it("ends every wait when closed", async () => {
    const dispatcher = dispatcherWith(["a"]);
    take(dispatcher);
    const got: string[] = [];
    const wait = waitFor(dispatcher, "caller", got);
    dispatcher.close();
    await wait;
    expect(got).toEqual(["caller:busy"]);
    // A caller sent back to the line of a model that is gone is not kept waiting.
    const late: string[] = [];
    await waitFor(dispatcher, "retry", late, 30_000, true);
    expect(late).toEqual(["retry:busy"]);
  });

  it("hands no replica to a caller whose deadline has passed, even a free one", async () => {
    const dispatcher = dispatcherWith(["a"]);
    expect(await dispatcher.acquire(-1)).toBeUndefined();
    const a = take(dispatcher);
    const got: string[] = [];
    const wait = waitFor(dispatcher, "late", got, 100);
    // The clock passes the deadline before the waiter's timer has had a chance to run.
    vi.setSystemTime(Date.now() + 150);
    dispatcher.release(a, "answered");
    await wait;
    expect(got).toEqual(["late:busy"]);
    expect(take(dispatcher).id).toBe("a");
  });

  it("ejects a replica that failed: nobody gets it; it is probed with backoff until an agent answers", async () => {
    const { probe, probed } = scriptedProbe([
      "connect ECONNREFUSED",
      "connect ECONNREFUSED",
      undefined,
    ]);
    const dispatcher = dispatcherWith(["a", "b"], probe);
    const a = take(dispatcher);
    dispatcher.release(a, "unreachable", "connect ECONNREFUSED");
    expect([dispatcher.ejectedCount, dispatcher.ejections, dispatcher.unavailable]).toEqual([
      1,
      1,
      false,
    ]);
    expect(dispatcher.ejectedReasons()).toBe("a: connect ECONNREFUSED");
    // Only b is handed out, again and again.
    for (let call = 0; call < 3; call++) {
      const slot = take(dispatcher);
      expect(slot.id).toBe("b");
      dispatcher.release(slot, "answered");
    }
    // Probes at 100 ms, then 200 ms later, then 400 ms later: the third finds an agent.
    await advance(99);
    expect(probed).toEqual([]);
    await advance(1);
    expect(probed).toEqual(["a"]);
    await advance(199);
    expect(probed).toEqual(["a"]);
    await advance(1);
    expect(probed).toEqual(["a", "a"]);
    await advance(400);
    expect(probed).toEqual(["a", "a", "a"]);
    expect(dispatcher.ejectedCount).toBe(0);
    const back = [take(dispatcher).id, take(dispatcher).id].sort();
    expect(back).toEqual(["a", "b"]);
    await advance(10_000);
    expect(probed).toHaveLength(3);
    expect(dispatcher.ejections).toBe(1);
  });

  it("lets every waiter go at once when the last replica in rotation is ejected, and turns new callers away at once", async () => {
    const { probe } = scriptedProbe([]);
    const dispatcher = dispatcherWith(["a", "b"], probe);
    const [a, b] = [take(dispatcher), take(dispatcher)];
    const got: string[] = [];
    const waits = ["first", "second"].map((label) => waitFor(dispatcher, label, got, 30_000));
    dispatcher.release(a, "unreachable", "no answer");
    await Promise.resolve();
    // b is still a candidate: nobody is let go yet, and a is given to nobody.
    expect(got).toEqual([]);
    dispatcher.release(b, "unreachable", "not an agent");
    await Promise.all(waits);
    expect(got).toEqual(["first:busy", "second:busy"]);
    expect(dispatcher.unavailable).toBe(true);
    expect(dispatcher.queueLength).toBe(0);
    expect(dispatcher.ejectedReasons()).toBe("a: no answer; b: not an agent");
    // A new caller does not wait in line for replicas that are all out.
    expect(await dispatcher.acquire(30_000)).toBeUndefined();
  });

  it("gives a waiter the replica a probe brings back", async () => {
    const { probe } = scriptedProbe([undefined]);
    const dispatcher = dispatcherWith(["a", "b"], probe);
    const [a, b] = [take(dispatcher), take(dispatcher)];
    dispatcher.release(a, "unreachable", "connect ECONNREFUSED");
    const got: string[] = [];
    const wait = waitFor(dispatcher, "caller", got, 30_000);
    await advance(100);
    await wait;
    expect(got).toEqual(["caller:a"]);
    dispatcher.release(b, "answered");
  });

  it("stops probing a replica the registry removes, and every replica when closed", async () => {
    const { probe, probed } = scriptedProbe(Array(100).fill("connect ECONNREFUSED"));
    const dispatcher = dispatcherWith(["a", "b"], probe);
    const [a, b] = [take(dispatcher), take(dispatcher)];
    dispatcher.release(a, "unreachable", "connect ECONNREFUSED");
    dispatcher.release(b, "unreachable", "connect ECONNREFUSED");
    await advance(100);
    expect(probed).toEqual(["a", "b"]);
    dispatcher.setReplicas([{ id: "b", url: b.url }]);
    await advance(10_000);
    expect(probed.filter((id) => id === "a")).toHaveLength(1);
    const probesOfB = probed.length;
    expect(probesOfB).toBeGreaterThan(3);
    dispatcher.close();
    await advance(10_000);
    expect(probed).toHaveLength(probesOfB);
    expect(vi.getTimerCount()).toBe(0);
  });
});
