// LocalStore: generations, resource versions, events, copies, the state file, canonical JSON.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { canonicalJson } from "../controller/api/canonical-json.ts";
import type { Model, ModelDeployment } from "../controller/api/types.generated.ts";
import { NotFoundError } from "../controller/core/errors.ts";
import type { WatchEvent } from "../controller/core/ports.ts";
import { LocalStore } from "../controller/platform/local/store.ts";

const NOW = new Date("2026-03-01T12:00:00.000Z");

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "modelship-store-"));
  file = join(dir, "state", "store.json");
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function model(
  name: string,
  spec: Partial<Model["spec"]> = {},
  metadata: Partial<Model["metadata"]> = {},
): Model {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "Model",
    metadata: { name, ...metadata },
    spec: { runtime: "python3", file: "predict.py", function: "predict", ...spec },
  };
}

function deployment(name: string, namespace?: string): ModelDeployment {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelDeployment",
    metadata: { name, ...(namespace ? { namespace } : {}) },
    spec: { model: "iris" },
  };
}

/** A store on the temp file, with the events it emits. */
function open(): { store: LocalStore; events: WatchEvent[] } {
  const store = new LocalStore(file, () => NOW);
  const events: WatchEvent[] = [];
  store.watch((event) => events.push(event));
  return { store, events };
}

const meta = (object: { metadata: unknown }) =>
  object.metadata as { generation: number; resourceVersion: string; uid: string };

describe("LocalStore.apply", () => {
  it("creates with generation 1, the default namespace, and an ADDED event", async () => {
    const { store, events } = open();
    const created = await store.apply(model("iris"));
    expect(created.metadata).toStrictEqual({
      name: "iris",
      namespace: "default",
      uid: meta(created).uid,
      generation: 1,
      resourceVersion: "1",
      creationTimestamp: NOW.toISOString(),
    });
    expect(meta(created).uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(events.map((event) => [event.type, event.object.metadata.name])).toStrictEqual([
      ["ADDED", "iris"],
    ]);
    expect(store.get("Model", "default", "iris")).toStrictEqual(created);
  });

  it.each<[string, Model, "MODIFIED" | undefined, number, string]>([
    ["the same spec: nothing", model("iris"), undefined, 1, "1"],
    [
      "the same spec in another key order: nothing",
      { ...model("iris"), spec: { function: "predict", file: "predict.py", runtime: "python3" } },
      undefined,
      1,
      "1",
    ],
    ["a spec change: generation 2", model("iris", { function: "score" }), "MODIFIED", 2, "2"],
    [
      "a label only: no generation bump",
      model("iris", {}, { labels: { team: "ml" } }),
      "MODIFIED",
      1,
      "2",
    ],
    [
      "an annotation only: no generation bump",
      model("iris", {}, { annotations: { "modelship.dev/commit": "abc" } }),
      "MODIFIED",
      1,
      "2",
    ],
    [
      "labels and spec: one bump",
      model("iris", { file: "p.py" }, { labels: { team: "ml" } }),
      "MODIFIED",
      2,
      "2",
    ],
  ])("re-apply with %s", async (_, next, event, generation, resourceVersion) => {
    const { store, events } = open();
    await store.apply(model("iris"));
    const stored = await store.apply(next);
    expect(events.slice(1).map((item) => item.type)).toStrictEqual(event ? [event] : []);
    expect(meta(stored).generation).toBe(generation);
    expect(meta(stored).resourceVersion).toBe(resourceVersion);
    expect(store.get("Model", "default", "iris")?.spec).toStrictEqual(next.spec);
    expect(store.get("Model", "default", "iris")?.metadata.labels).toStrictEqual(
      next.metadata.labels,
    );
  });

  it("drops labels that are no longer given, keeps the status", async () => {
    const { store } = open();
    await store.apply(model("iris", {}, { labels: { team: "ml" } }));
    await store.patchStatus("Model", "default", "iris", { latestBuild: 2 });
    const stored = await store.apply(model("iris"));
    expect(stored.metadata).not.toHaveProperty("labels");
    expect(stored.status).toStrictEqual({ latestBuild: 2 });
    expect(meta(stored).generation).toBe(1);
  });
});

describe("LocalStore.patchStatus", () => {
  it("replaces the status, keeps generation and spec, emits MODIFIED", async () => {
    const { store, events } = open();
    await store.apply(model("iris", { function: "score" }));
    const patched = await store.patchStatus("Model", "default", "iris", { latestBuild: 1 });
    expect(patched.status).toStrictEqual({ latestBuild: 1 });
    expect(patched.spec.function).toBe("score");
    expect(meta(patched)).toMatchObject({ generation: 1, resourceVersion: "2" });
    expect(events.map((event) => event.type)).toStrictEqual(["ADDED", "MODIFIED"]);
    expect(events[1]?.object.status).toStrictEqual({ latestBuild: 1 });
  });

  it.each<[string, object]>([
    ["the same status", { latestBuild: 1, buildKey: "k" }],
    ["the same status in another key order", { buildKey: "k", latestBuild: 1 }],
  ])("emits nothing for %s", async (_, status) => {
    const { store, events } = open();
    await store.apply(model("iris"));
    await store.patchStatus("Model", "default", "iris", { latestBuild: 1, buildKey: "k" });
    const again = await store.patchStatus("Model", "default", "iris", status);
    expect(events.map((event) => event.type)).toStrictEqual(["ADDED", "MODIFIED"]);
    expect(meta(again).resourceVersion).toBe("2");
  });

  it("fails for an object that does not exist, with a NotFoundError", async () => {
    const { store } = open();
    const failed = store.patchStatus("Model", "default", "nope", {});
    await expect(failed).rejects.toThrow("Model default/nope does not exist");
    await expect(failed).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe("LocalStore.delete", () => {
  it.each<[string, boolean, string[]]>([
    ["an object that exists: true and DELETED", true, ["ADDED", "DELETED"]],
    ["an object that does not: false and no event", false, ["ADDED"]],
  ])("%s", async (_, exists, expected) => {
    const { store, events } = open();
    await store.apply(model("iris"));
    expect(await store.delete("Model", "default", exists ? "iris" : "other")).toBe(exists);
    expect(events.map((event) => event.type)).toStrictEqual(expected);
    expect(store.get("Model", "default", "iris") === undefined).toBe(exists);
  });

  it("with a uid, deletes only that very object, not a namesake made since", async () => {
    const { store } = open();
    const first = await store.apply(model("iris"));
    await store.delete("Model", "default", "iris");
    await store.apply(model("iris"));
    expect(await store.delete("Model", "default", "iris", { uid: meta(first).uid })).toBe(false);
    expect(store.get("Model", "default", "iris")).toBeDefined();
  });

  it("an object with a finalizer only gets a deletionTimestamp, and goes when it is removed", async () => {
    const { store, events } = open();
    await store.apply(model("iris"));
    await store.setFinalizer("Model", "default", "iris", "modelship.dev/finalizer", true);
    await store.setFinalizer("Model", "default", "iris", "modelship.dev/finalizer", true);
    expect(await store.delete("Model", "default", "iris")).toBe(true);
    const marked = store.get("Model", "default", "iris")?.metadata as {
      deletionTimestamp?: string;
      finalizers?: string[];
    };
    expect(marked).toMatchObject({
      deletionTimestamp: NOW.toISOString(),
      finalizers: ["modelship.dev/finalizer"],
    });
    // A second delete changes nothing; no finalizer can be added any more.
    await store.delete("Model", "default", "iris");
    await expect(
      store.setFinalizer("Model", "default", "iris", "other.example/f", true),
    ).rejects.toThrow("is being deleted");
    await store.setFinalizer("Model", "default", "iris", "modelship.dev/finalizer", false);
    expect(store.get("Model", "default", "iris")).toBeUndefined();
    expect(events.map((event) => event.type)).toStrictEqual([
      "ADDED",
      "MODIFIED",
      "MODIFIED",
      "DELETED",
    ]);
  });

  it("removing the last finalizer of an object not being deleted just drops the list", async () => {
    const { store } = open();
    await store.apply(model("iris"));
    await store.setFinalizer("Model", "default", "iris", "f", true);
    await store.setFinalizer("Model", "default", "iris", "f", false);
    expect(store.get("Model", "default", "iris")?.metadata).not.toHaveProperty("finalizers");
  });

  it("the watcher that stopped hears nothing more", async () => {
    const store = new LocalStore(file, () => NOW);
    const heard: string[] = [];
    const stop = store.watch((event) => heard.push(event.type));
    await store.apply(model("a"));
    stop();
    await store.apply(model("b"));
    expect(heard).toStrictEqual(["ADDED"]);
  });
});

describe("LocalStore reads are copies", () => {
  it.each<[string, (store: LocalStore) => Model | undefined]>([
    ["get", (store) => store.get("Model", "default", "iris")],
    ["list", (store) => store.list("Model")[0]],
  ])("mutating what %s returns does not change the store", async (_, read) => {
    const { store } = open();
    await store.apply(model("iris", {}, { labels: { team: "ml" } }));
    const copy = read(store);
    if (!copy) throw new Error("not found");
    copy.spec.function = "changed";
    (copy.metadata.labels ?? {}).team = "changed";
    expect(store.get("Model", "default", "iris")?.spec.function).toBe("predict");
    expect(store.get("Model", "default", "iris")?.metadata.labels).toStrictEqual({ team: "ml" });
  });

  it("mutating what apply was given does not change the store", async () => {
    const { store } = open();
    const input = model("iris");
    await store.apply(input);
    input.spec.function = "changed";
    expect(store.get("Model", "default", "iris")?.spec.function).toBe("predict");
  });
});

describe("LocalStore.list", () => {
  it.each<[string, string | undefined, string[]]>([
    ["all namespaces, sorted by name", undefined, ["a", "b", "c"]],
    ["the default namespace", "default", ["a", "c"]],
    ["another namespace", "team-a", ["b"]],
    ["an empty namespace", "nobody", []],
  ])("%s", async (_, namespace, names) => {
    const { store } = open();
    await store.apply(deployment("c"));
    await store.apply(deployment("b", "team-a"));
    await store.apply(deployment("a", "default"));
    await store.apply(model("z"));
    expect(store.list("ModelDeployment", namespace).map((item) => item.metadata.name)).toEqual(
      names,
    );
  });
});

describe("the state file", () => {
  it("a new LocalStore on the same file sees everything, and versions go on", async () => {
    const { store } = open();
    await store.apply(model("iris", {}, { labels: { team: "ml" } }));
    await store.patchStatus("Model", "default", "iris", { latestBuild: 3 });
    await store.apply(deployment("iris", "team-a"));
    await store.delete("ModelDeployment", "team-a", "iris");
    await store.apply(deployment("web"));
    const before = {
      models: store.list("Model"),
      deployments: store.list("ModelDeployment"),
    };

    const reopened = new LocalStore(file, () => NOW);
    expect({
      models: reopened.list("Model"),
      deployments: reopened.list("ModelDeployment"),
    }).toStrictEqual(before);
    expect(reopened.get("ModelDeployment", "team-a", "iris")).toBeUndefined();
    const next = await reopened.apply(model("other"));
    expect(meta(next).resourceVersion).toBe("6");
  });

  it("deployment ids grow and survive a reload", async () => {
    const first = new LocalStore(file);
    expect([await first.allocateDeploymentId(), await first.allocateDeploymentId()]).toEqual([
      1, 2,
    ]);
    const second = new LocalStore(file);
    expect(await second.allocateDeploymentId()).toBe(3);
    expect(await new LocalStore(file).allocateDeploymentId()).toBe(4);
  });

  it("a missing file is an empty store", () => {
    expect(new LocalStore(file).list("Model")).toStrictEqual([]);
  });

  it.each<[string, string]>([
    ["not JSON", "{ this is not json"],
    ["empty", ""],
  ])("a damaged file (%s) gives an error naming it", (_, text) => {
    const damaged = join(dir, "store.json");
    writeFileSync(damaged, text);
    expect(() => new LocalStore(damaged)).toThrow(`${damaged} is damaged (`);
  });

  it("in memory (no file) works the same", async () => {
    const store = new LocalStore();
    await store.apply(model("iris"));
    expect(await store.allocateDeploymentId()).toBe(1);
    expect(store.list("Model").map((item) => item.metadata.name)).toStrictEqual(["iris"]);
  });
});

describe("LocalStore events", () => {
  const about = { kind: "Model", namespace: "default", name: "iris", uid: "u1" };

  it("keeps events per object, counts a repeat up, and survives a reload", async () => {
    const { store } = open();
    await store.apply(model("iris"));
    store.recordEvent({
      type: "Normal",
      reason: "BuildCreated",
      message: "build 1",
      object: about,
    });
    store.recordEvent({
      type: "Normal",
      reason: "BuildCreated",
      message: "build 1",
      object: about,
    });
    store.recordEvent({ type: "Warning", reason: "BuildFailed", message: "pip", object: about });
    store.recordEvent({
      type: "Normal",
      reason: "BuildCreated",
      message: "build 1",
      object: { ...about, name: "wine" },
    });
    const again = new LocalStore(file, () => NOW);
    const events = again.listEvents({ kind: "Model", namespace: "default", name: "iris" });
    expect(events.map((event) => [event.reason, event.count])).toStrictEqual([
      ["BuildCreated", 2],
      ["BuildFailed", 1],
    ]);
    expect(events[0]).toMatchObject({
      firstTimestamp: NOW.toISOString(),
      lastTimestamp: NOW.toISOString(),
    });
    expect(again.listEvents()).toHaveLength(3);
  });

  it("a repeat after another event is a new record", () => {
    const store = new LocalStore();
    for (const reason of ["A", "B", "A"]) {
      store.recordEvent({ type: "Normal", reason, message: "m", object: about });
    }
    expect(store.listEvents().map((event) => event.reason)).toStrictEqual(["A", "B", "A"]);
  });

  it("keeps the newest 1000", () => {
    const store = new LocalStore();
    for (let index = 0; index < 1005; index++) {
      store.recordEvent({ type: "Normal", reason: "R", message: `m${index}`, object: about });
    }
    const events = store.listEvents();
    expect([events.length, events[0]?.message]).toStrictEqual([1000, "m5"]);
  });
});

describe("canonicalJson", () => {
  it.each<[string, unknown, unknown, boolean]>([
    ["key order at the top", { a: 1, b: 2 }, { b: 2, a: 1 }, true],
    ["key order deep inside", { x: { a: [{ c: 1, d: 2 }] } }, { x: { a: [{ d: 2, c: 1 }] } }, true],
    ["array order matters", { a: [1, 2] }, { a: [2, 1] }, false],
    ["values matter", { a: 1 }, { a: "1" }, false],
    ["a missing key matters", { a: 1 }, { a: 1, b: null }, false],
    ["scalars", "text", "text", true],
  ])("%s", (_, a, b, equal) => {
    expect(canonicalJson(a) === canonicalJson(b)).toBe(equal);
  });

  it("writes sorted keys", () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: [3] } })).toBe('{"a":{"c":[3],"d":2},"b":1}');
  });
});
