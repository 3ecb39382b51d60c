// Which keys a store event wakes: the object itself only when more than its status changed (a
// reconciler's own status write must not wake it again), a ModelBuild's Model, and a Model's or
// a ModelBuild's deployments.
import { describe, expect, it } from "vitest";
import type { Model, ModelBuild, ModelDeployment } from "../controller/api/types.generated.ts";
import { formatKey } from "../controller/core/keys.ts";
import type { Resource } from "../controller/core/ports.ts";
import { LocalStore } from "../controller/platform/local/store.ts";
import { keysToWake, selfFingerprint } from "../controller/reconcile/controller.ts";

const model: Model = {
  apiVersion: "modelship.dev/v1alpha1",
  kind: "Model",
  metadata: { name: "iris", namespace: "team", labels: { a: "1" } },
  spec: { runtime: "python3", file: "p.py", function: "f" },
};

const deployment = (name: string, modelName: string): ModelDeployment => ({
  apiVersion: "modelship.dev/v1alpha1",
  kind: "ModelDeployment",
  metadata: { name, namespace: "team" },
  spec: { model: modelName },
});

const build: ModelBuild = {
  apiVersion: "modelship.dev/v1alpha1",
  kind: "ModelBuild",
  metadata: { name: "iris-2", namespace: "team" },
  spec: {
    model: "iris",
    number: 2,
    commit: "c".repeat(40),
    tree: "t".repeat(40),
    buildKey: "k",
    sourcePath: ".",
    runtime: "python3",
    file: "p.py",
    function: "f",
  },
};

describe("keysToWake", () => {
  const store = new LocalStore();
  for (const object of [
    deployment("web", "iris"),
    deployment("batch", "iris"),
    deployment("other", "wine"),
  ]) {
    void store.apply(object);
  }

  it.each<[string, Resource, boolean, string[]]>([
    [
      "a Model: itself and its deployments",
      model,
      true,
      ["Model/team/iris", "ModelDeployment/team/batch", "ModelDeployment/team/web"],
    ],
    [
      "a Model whose status alone changed: only its deployments",
      model,
      false,
      ["ModelDeployment/team/batch", "ModelDeployment/team/web"],
    ],
    [
      "a ModelBuild: itself, its Model and the Model's deployments",
      build,
      true,
      [
        "ModelBuild/team/iris-2",
        "Model/team/iris",
        "ModelDeployment/team/batch",
        "ModelDeployment/team/web",
      ],
    ],
    [
      "a ModelBuild's status: its Model and deployments still (they read it)",
      build,
      false,
      ["Model/team/iris", "ModelDeployment/team/batch", "ModelDeployment/team/web"],
    ],
    ["a ModelDeployment: itself", deployment("web", "iris"), true, ["ModelDeployment/team/web"]],
    ["a ModelDeployment's status: nothing", deployment("web", "iris"), false, []],
  ])("%s", (_, object, selfChanged, expected) => {
    const keys = keysToWake({ type: "MODIFIED", object }, store, "default", selfChanged);
    expect(keys.map(formatKey)).toStrictEqual(expected);
  });
});

describe("selfFingerprint", () => {
  const changed = (change: (copy: Model) => void) => {
    const copy = structuredClone(model);
    change(copy);
    return selfFingerprint(copy) !== selfFingerprint(model);
  };
  it.each<[string, (copy: Model) => void, boolean]>([
    ["nothing", () => {}, false],
    ["the status", (copy) => Object.assign(copy, { status: { latestBuild: 3 } }), false],
    [
      "the resourceVersion",
      (copy) => Object.assign(copy.metadata, { resourceVersion: "9" }),
      false,
    ],
    ["the generation (the spec)", (copy) => Object.assign(copy.metadata, { generation: 2 }), true],
    ["a label", (copy) => Object.assign(copy.metadata, { labels: { a: "2" } }), true],
    ["an annotation", (copy) => Object.assign(copy.metadata, { annotations: { x: "y" } }), true],
    ["the finalizers", (copy) => Object.assign(copy.metadata, { finalizers: ["f"] }), true],
    [
      "the deletion",
      (copy) => Object.assign(copy.metadata, { deletionTimestamp: "2026-03-01T00:00:00Z" }),
      true,
    ],
  ])("%s changed → wakes the object: %s", (_, change, expected) => {
    expect(changed(change)).toBe(expected);
  });
});
