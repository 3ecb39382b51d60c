// Table tests of the reconcilers' pure steps (model, build, deployment) and kstatus conditions.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { conditionOf, removeCondition, setCondition } from "../controller/api/conditions.ts";
import type {
  Condition,
  DeploymentRecord,
  Model,
  ModelBuild,
  ModelBuildStatus,
  ModelDeployment,
} from "../controller/api/types.generated.ts";
import type { BuildProgress, RolloutStatus } from "../controller/core/ports.ts";
import { progressStatus } from "../controller/reconcile/build.ts";
import {
  type Blocker,
  blockedPhase,
  buildBlocker,
  closeRecords,
  type DeploymentPhase,
  modelIsBehind,
  type RolloutInputs,
  resolveBuildNumber,
  rolloutHash,
  rolloutPhase,
  servingBefore,
  servingBuildOf,
  trimHistory,
} from "../controller/reconcile/deployment.ts";
import {
  type BuildKeyInputs,
  buildsInUse,
  buildsToCollect,
  chooseBuild,
  computeBuildKey,
  newModelBuild,
  pathListOf,
} from "../controller/reconcile/model.ts";

const T0 = new Date("2026-03-01T12:00:00.000Z");
const T1 = new Date("2026-03-01T12:05:00.000Z");
const TREE = "a".repeat(40);
const COMMIT = "c".repeat(40);

function build(
  number: number,
  buildKey = `key-${number}`,
  status?: ModelBuildStatus,
  generation?: number,
): ModelBuild {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: {
      name: `iris-${number}`,
      namespace: "default",
      labels: { "app.kubernetes.io/managed-by": "modelship", "modelship.dev/model": "iris" },
      ...(generation === undefined ? {} : { generation }),
    },
    spec: {
      model: "iris",
      number,
      commit: COMMIT,
      tree: TREE,
      buildKey,
      sourcePath: "models/iris",
      runtime: "python3",
      file: "predict.py",
      function: "predict",
    },
    ...(status ? { status } : {}),
  };
}

function model(overrides: { labels?: Record<string, string>; namespace?: string } = {}): Model {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "Model",
    metadata: {
      name: "iris",
      ...(overrides.namespace ? { namespace: overrides.namespace } : {}),
      ...(overrides.labels ? { labels: overrides.labels } : {}),
    },
    spec: { runtime: "r", file: "predict.R", function: "predict" },
  };
}

/** A runtime's status with nothing ready unless told: each case names what matters to it. */
function rollout(fields: Partial<RolloutStatus>): RolloutStatus {
  return { readyReplicas: 0, servingReplicas: 0, replicas: 3, complete: false, ...fields };
}

describe("computeBuildKey", () => {
  const base: BuildKeyInputs = {
    content: "c0ffee",
    runtime: "python3",
    file: "predict.py",
    function: "predict",
    buildScript: undefined,
    baseImage: "python3",
  };

  it("is a sha256 in hex, the same for the same inputs", () => {
    const key = computeBuildKey(base);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(computeBuildKey({ ...base })).toBe(key);
  });

  it.each<[string, Partial<BuildKeyInputs>]>([
    ["content", { content: "decaf" }],
    ["runtime", { runtime: "r" }],
    ["file", { file: "model.py" }],
    ["function", { function: "score" }],
    ["buildScript", { buildScript: "build.sh" }],
    ["baseImage", { baseImage: "python:3.12-slim" }],
    ["the rebuild annotation", { rebuild: "1" }],
  ])("changes when %s changes", (_, change) => {
    expect(computeBuildKey({ ...base, ...change })).not.toBe(computeBuildKey(base));
  });

  it("is the same with no rebuild annotation and an empty one (keys made before it stay valid)", () => {
    expect(computeBuildKey({ ...base, rebuild: "" })).toBe(computeBuildKey(base));
  });

  it("does not confuse parts that join to the same text", () => {
    const a = computeBuildKey({ ...base, file: "ab", function: "c" });
    const b = computeBuildKey({ ...base, file: "a", function: "bc" });
    expect(a).not.toBe(b);
  });
});

describe("pathListOf", () => {
  it.each<[string | undefined, string[]]>([
    [undefined, []],
    ["", []],
    ["not json", []],
    ['{"a":1}', []],
    ["[]", []],
    ['["iris/model.yaml","deploy/iris.yaml"]', ["iris/model.yaml", "deploy/iris.yaml"]],
    ['["a.yaml",3,null,"b.yaml"]', ["a.yaml", "b.yaml"]],
  ])("%j → %j", (annotation, files) => {
    expect(pathListOf(annotation)).toStrictEqual(files);
  });
});

describe("chooseBuild", () => {
  it.each<[string, ModelBuild[], string, { reuse: number } | { create: number }]>([
    ["no builds: number 1", [], "k", { create: 1 }],
    ["a new key after 1 and 2: number 3", [build(1), build(2)], "k", { create: 3 }],
    ["a gap (1, 4): max + 1", [build(1), build(4)], "k", { create: 5 }],
    ["unsorted (4, 2): max + 1", [build(4), build(2)], "k", { create: 5 }],
    ["the key of build 1: reuse it", [build(1), build(2)], "key-1", { reuse: 1 }],
    ["the key of the latest: reuse it", [build(1), build(2)], "key-2", { reuse: 2 }],
    [
      "the key of a build made by hand: not reused, but counted",
      [build(1), { ...build(2), metadata: { name: "iris-2", namespace: "default" } }],
      "key-2",
      { create: 3 },
    ],
  ])("%s", (_, builds, key, expected) => {
    const choice = chooseBuild(builds, key);
    expect("reuse" in choice ? { reuse: choice.reuse.spec.number } : choice).toStrictEqual(
      expected,
    );
    if ("reuse" in choice) expect(builds).toContain(choice.reuse);
  });
});

describe("newModelBuild", () => {
  it.each<[string, Model, ModelBuild]>([
    [
      "a Model from a repository, in its namespace, with a build script",
      {
        ...model({
          namespace: "team-a",
          labels: { "modelship.dev/repository": "models-repo", "app.kubernetes.io/part-of": "x" },
        }),
        spec: { runtime: "python3", file: "p.py", function: "f", buildScript: "build.sh" },
      },
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelBuild",
        metadata: {
          name: "iris-7",
          namespace: "team-a",
          labels: {
            "modelship.dev/model": "iris",
            "modelship.dev/repository": "models-repo",
            "app.kubernetes.io/managed-by": "modelship",
          },
        },
        spec: {
          model: "iris",
          number: 7,
          commit: COMMIT,
          tree: TREE,
          buildKey: "the-key",
          repository: "models-repo",
          sourcePath: "src/iris",
          runtime: "python3",
          file: "p.py",
          function: "f",
          buildScript: "build.sh",
        },
      },
    ],
    [
      "a Model without a source label or build script, no namespace",
      model(),
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelBuild",
        metadata: {
          name: "iris-7",
          namespace: "default",
          labels: { "modelship.dev/model": "iris", "app.kubernetes.io/managed-by": "modelship" },
        },
        spec: {
          model: "iris",
          number: 7,
          commit: COMMIT,
          tree: TREE,
          buildKey: "the-key",
          sourcePath: "src/iris",
          runtime: "r",
          file: "predict.R",
          function: "predict",
        },
      },
    ],
  ])("%s", (_, from, expected) => {
    expect(newModelBuild(from, 7, "the-key", TREE, COMMIT, "src/iris")).toStrictEqual(expected);
  });
});

describe("progressStatus", () => {
  it.each<[string, ModelBuildStatus, BuildProgress, ModelBuildStatus]>([
    [
      "Building: started now",
      {},
      { phase: "Building" },
      { phase: "Building", startedAt: T1.toISOString() },
    ],
    [
      "Building: the previous start is kept when the builder gives none",
      { phase: "Building", startedAt: T0.toISOString() },
      { phase: "Building" },
      { phase: "Building", startedAt: T0.toISOString() },
    ],
    [
      "the builder's start wins over the previous",
      { phase: "Building", startedAt: T0.toISOString() },
      { phase: "Building", startedAt: "2026-03-01T11:00:00.000Z" },
      { phase: "Building", startedAt: "2026-03-01T11:00:00.000Z" },
    ],
    [
      "Succeeded: image and completion",
      { phase: "Building", startedAt: T0.toISOString() },
      { phase: "Succeeded", completedAt: T1.toISOString(), image: "local/iris:1" },
      {
        phase: "Succeeded",
        startedAt: T0.toISOString(),
        completedAt: T1.toISOString(),
        image: "local/iris:1",
      },
    ],
    [
      "Failed: the builder's message",
      { phase: "Building", startedAt: T0.toISOString() },
      { phase: "Failed", message: "ERROR: no module numpy" },
      { phase: "Failed", startedAt: T0.toISOString(), message: "ERROR: no module numpy" },
    ],
  ])("%s", (_, previous, progress, expected) => {
    expect(progressStatus(previous, progress, T1)).toStrictEqual(expected);
  });
});

describe("build retention", () => {
  const deployment = (
    model: string,
    build: number | "latest" | undefined,
    status: { build?: number; history?: number[] } = {},
  ) =>
    ({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelDeployment",
      metadata: { name: `${model}-d`, namespace: "default" },
      spec: { model, ...(build === undefined ? {} : { build }) },
      status: {
        ...(status.build === undefined ? {} : { build: status.build }),
        history: (status.history ?? []).map((number) => ({
          deploymentId: number,
          build: number,
          deployedAt: T0.toISOString(),
        })),
      },
    }) as ModelDeployment;

  it.each<[string, ModelDeployment[], number[]]>([
    ["no deployment", [], []],
    [
      "a pinned build, the running one, and the history",
      [deployment("iris", 2, { build: 5, history: [3, 4] })],
      [2, 3, 4, 5],
    ],
    ["latest adds nothing of its own", [deployment("iris", "latest", { build: 7 })], [7]],
    ["other models' deployments do not count", [deployment("wine", 2, { build: 3 })], []],
  ])("buildsInUse: %s", (_, deployments, expected) => {
    expect([...buildsInUse("iris", deployments)].sort((a, b) => a - b)).toStrictEqual(expected);
  });

  const numbers = (list: ModelBuild[]) => list.map((item) => item.spec.number);
  const builds = (...list: number[]) => list.map((number) => build(number));

  it.each<[string, ModelBuild[], number | undefined, number[], number, number[]]>([
    ["fewer than the retention: none", builds(1, 2, 3), 3, [], 10, []],
    ["exactly the retention: none", builds(1, 2, 3), 3, [], 3, []],
    ["the oldest beyond the retention", builds(1, 2, 3, 4, 5), 5, [], 3, [2, 1]],
    ["whatever their order in the store", builds(4, 1, 5, 3, 2), 5, [], 3, [2, 1]],
    ["never the current one, even when old", builds(1, 2, 3, 4, 5), 1, [], 2, [3, 2]],
    ["never one in use", builds(1, 2, 3, 4, 5), 5, [1], 2, [3, 2]],
    ["a retention of 0 keeps the current and those in use", builds(1, 2, 3), 3, [2], 0, [1]],
  ])("buildsToCollect: %s", (_, list, current, inUse, keep, expected) => {
    expect(numbers(buildsToCollect(list, current, new Set(inUse), keep))).toStrictEqual(expected);
  });
});

describe("resolveBuildNumber", () => {
  it.each<[ModelDeploymentBuild, number | undefined, number | undefined]>([
    [undefined, 4, 4],
    ["latest", 4, 4],
    [undefined, undefined, undefined],
    ["latest", undefined, undefined],
    [2, 4, 2],
    [2, undefined, 2],
    [9, 4, 9],
  ])("wanted %s, latest %s → %s", (wanted, latest, expected) => {
    expect(resolveBuildNumber(wanted, latest)).toBe(expected);
  });
});
type ModelDeploymentBuild = Parameters<typeof resolveBuildNumber>[0];

describe("rolloutHash", () => {
  const base: RolloutInputs = {
    model: "iris",
    buildKey: "key-3",
    build: 3,
    env: { A: "1", B: "2" },
    timeoutSeconds: 30,
    restartedAt: undefined,
  };

  it("is the same for the same inputs", () => {
    expect(rolloutHash({ ...base, env: { ...base.env } })).toBe(rolloutHash(base));
    expect(rolloutHash(base)).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each<[string, Partial<RolloutInputs>]>([
    ["the model", { model: "wine" }],
    ["the build key", { buildKey: "key-4" }],
    ["the build number", { build: 4 }],
    ["an env value", { env: { A: "1", B: "3" } }],
    ["an env name", { env: { A: "1", C: "2" } }],
    ["one more env var", { env: { A: "1", B: "2", C: "3" } }],
    ["no env", { env: {} }],
    ["the timeout", { timeoutSeconds: 60 }],
    ["a restart", { restartedAt: T1.toISOString() }],
    ["the memory per replica", { resources: { memory: "4Gi" } }],
    ["the CPU per replica", { resources: { cpu: "500m" } }],
    ["a body limit", { maxRequestBytes: 20_000_000 }],
  ])("changes with %s", (_, change) => {
    expect(rolloutHash({ ...base, ...change })).not.toBe(rolloutHash(base));
  });

  it.each<[string, object]>([
    ["env in another key order", { env: { B: "2", A: "1" } }],
    ["replicas (not an input)", { replicas: 5 }],
    ["no resources and empty resources", { resources: {} }],
  ])("does not change with %s", (_, change) => {
    const other = { ...base, ...change };
    expect(rolloutHash(other)).toBe(rolloutHash(base));
  });

  it("stays what it was before resources and body limits counted, for a deployment without them", () => {
    // The hash of a stored rollout: were it to change, an upgrade would restart every replica.
    const earlier = createHash("sha256")
      .update(
        JSON.stringify([
          "iris",
          "key-3",
          3,
          [
            ["A", "1"],
            ["B", "2"],
          ],
          30,
          "",
        ]),
      )
      .digest("hex");
    expect(rolloutHash(base)).toBe(earlier);
  });

  it("tells a second restart from the first", () => {
    const first = rolloutHash({ ...base, restartedAt: T0.toISOString() });
    expect(rolloutHash({ ...base, restartedAt: T1.toISOString() })).not.toBe(first);
  });
});

describe("deployment history", () => {
  const record = (deploymentId: number, stoppedAt?: string): DeploymentRecord => ({
    deploymentId,
    build: deploymentId,
    deployedAt: T0.toISOString(),
    ...(stoppedAt ? { stoppedAt } : {}),
  });
  const earlier = "2026-02-01T00:00:00.000Z";
  const now = T1.toISOString();

  it.each<[string, DeploymentRecord[] | undefined, number | undefined, DeploymentRecord[]]>([
    ["no history", undefined, 3, []],
    ["empty history", [], 3, []],
    ["only the current: left open", [record(3)], 3, [record(3)]],
    [
      "earlier open records close now, the current stays open",
      [record(1), record(2), record(3)],
      3,
      [record(1, now), record(2, now), record(3)],
    ],
    [
      "closed records keep their stop time",
      [record(1, earlier), record(2), record(3)],
      3,
      [record(1, earlier), record(2, now), record(3)],
    ],
    [
      "no current (stopping): every open record closes",
      [record(1, earlier), record(2), record(3)],
      undefined,
      [record(1, earlier), record(2, now), record(3, now)],
    ],
  ])("closeRecords: %s", (_, history, current, expected) => {
    const before = structuredClone(history);
    expect(closeRecords(history, current, T1)).toStrictEqual(expected);
    expect(history).toStrictEqual(before);
  });

  it.each<[string, DeploymentRecord[] | undefined, number, number | undefined]>([
    ["no history", undefined, 3, undefined],
    ["only the current", [record(3)], 3, undefined],
    ["the one open before the current", [record(1, earlier), record(2), record(3)], 3, 2],
    ["the latest of several open", [record(1), record(2), record(3)], 3, 2],
    ["skips a closed one", [record(1), record(2, earlier), record(3)], 3, 1],
    ["all before are closed", [record(1, earlier), record(2, earlier), record(3)], 3, undefined],
    [
      "the completed one over a later rollout that failed before completing",
      [{ ...record(1), completedAt: earlier }, record(2), record(3)],
      3,
      1,
    ],
    ["a current not yet recorded", [record(1, earlier), record(2)], 9, 2],
  ])("servingBefore: %s", (_, history, current, expected) => {
    expect(servingBefore(history, current)?.deploymentId).toBe(expected);
  });

  it.each<[string, DeploymentRecord[], number, number[]]>([
    ["within the limit: all", [record(1, earlier), record(2)], 5, [1, 2]],
    [
      "over it: the oldest closed go",
      [record(1, earlier), record(2, earlier), record(3, earlier), record(4)],
      2,
      [3, 4],
    ],
    [
      "an open record is never dropped",
      [record(1), record(2, earlier), record(3, earlier), record(4)],
      2,
      [1, 4],
    ],
    ["a limit below 1 keeps one", [record(1, earlier), record(2)], 0, [2]],
  ])("trimHistory: %s", (_, history, limit, expected) => {
    expect(trimHistory(history, limit).map((entry) => entry.deploymentId)).toStrictEqual(expected);
  });
});

describe("what a deployment waits for, and its phase", () => {
  const iris = model();
  const blocker = (
    modelObject: Model | undefined,
    number: number | undefined,
    buildObject: ModelBuild | undefined,
  ) => buildBlocker("iris", modelObject, number, buildObject);

  it.each<[string, Blocker | undefined, Partial<Blocker> | undefined]>([
    [
      "no Model: terminal",
      blocker(undefined, 2, build(2)),
      { terminal: true, reason: "ModelNotFound" },
    ],
    [
      "no build yet: waiting",
      blocker(iris, undefined, undefined),
      { terminal: false, reason: "Building" },
    ],
    [
      "a pinned build that does not exist: terminal",
      blocker(iris, 4, undefined),
      { terminal: true, reason: "BuildNotFound" },
    ],
    [
      "a failed build: terminal, with its message",
      blocker(iris, 2, build(2, "k", { phase: "Failed", message: "pip: no such package" })),
      { terminal: true, reason: "BuildFailed", message: "build 2 failed: pip: no such package" },
    ],
    [
      "a build without status: waiting",
      blocker(iris, 2, build(2)),
      { terminal: false, reason: "Building" },
    ],
    [
      "a build in progress: waiting",
      blocker(iris, 2, build(2, "k", { phase: "Building" })),
      { terminal: false, reason: "Building" },
    ],
    [
      "a succeeded build: nothing in the way",
      blocker(iris, 2, build(2, "k", { phase: "Succeeded" })),
      undefined,
    ],
  ])("buildBlocker: %s", (_, found, expected) => {
    if (expected === undefined) expect(found).toBeUndefined();
    else expect(found).toMatchObject(expected);
  });

  it.each<[boolean, boolean, DeploymentPhase]>([
    [false, false, "Building"],
    [true, false, "Failed"],
    [false, true, "Deployed"],
    [true, true, "Degraded"],
  ])("blockedPhase: terminal %s, serving %s → %s", (terminal, serving, expected) => {
    expect(blockedPhase({ terminal, reason: "R", message: "m" }, serving)).toBe(expected);
  });

  it.each<[string, RolloutStatus | undefined, DeploymentPhase]>([
    ["nothing yet", undefined, "Deploying"],
    ["progressing", rollout({ readyReplicas: 1, servingReplicas: 3, replicas: 4 }), "Deploying"],
    ["complete", rollout({ readyReplicas: 3, servingReplicas: 3, complete: true }), "Deployed"],
    ["failing, nothing else serving", rollout({ replicas: 1, failure: "cannot load" }), "Failed"],
    [
      "failing while the earlier rollout serves",
      rollout({ servingReplicas: 3, replicas: 4, failure: "cannot load" }),
      "Degraded",
    ],
  ])("rolloutPhase: %s → %s", (_, rollout, expected) => {
    expect(rolloutPhase(rollout)).toBe(expected);
  });

  const history = [
    { deploymentId: 4, build: 2, deployedAt: "2026-01-01T00:00:00Z" },
    { deploymentId: 5, build: 3, deployedAt: "2026-01-02T00:00:00Z" },
  ];
  it.each<[string, RolloutStatus | undefined, number | undefined]>([
    ["no runtime status", undefined, undefined],
    ["nothing ready", rollout({ replicas: 3 }), undefined],
    ["only the earlier rollout ready", rollout({ servingReplicas: 3, replicas: 4 }), 2],
    ["both ready, mid-rollout", rollout({ readyReplicas: 1, servingReplicas: 3, replicas: 4 }), 2],
    ["the current one has replaced it", rollout({ readyReplicas: 3, servingReplicas: 3 }), 3],
    [
      "the current rollout failed, the earlier serves",
      rollout({ servingReplicas: 3, failure: "x" }),
      2,
    ],
  ])("servingBuildOf: %s → build %s", (_, rollout, expected) => {
    expect(servingBuildOf({ build: 3, deploymentId: 5, history }, rollout)).toBe(expected);
  });

  it("servingBuildOf: an earlier rollout closed already is not what serves", () => {
    const closed: DeploymentRecord[] = [
      {
        deploymentId: 4,
        build: 2,
        deployedAt: "2026-01-01T00:00:00Z",
        stoppedAt: "2026-01-02T00:01:00Z",
      },
      { deploymentId: 5, build: 3, deployedAt: "2026-01-02T00:00:00Z" },
    ];
    // Counted as serving by a stale runtime status, yet closed: the current build is reported.
    const status = rollout({ readyReplicas: 1, servingReplicas: 3 });
    expect(servingBuildOf({ build: 3, deploymentId: 5, history: closed }, status)).toBe(3);
  });
});

describe("conditions", () => {
  const ready = (status: Condition["status"], at: Date, reason = "R"): Condition => ({
    type: "Ready",
    status,
    reason,
    message: "m",
    lastTransitionTime: at.toISOString(),
  });
  const stalled: Condition = {
    type: "Stalled",
    status: "True",
    reason: "NoSource",
    message: "no commit",
    observedGeneration: 2,
    lastTransitionTime: T0.toISOString(),
  };

  it.each<[string, Condition[] | undefined, Condition["status"], string]>([
    ["a new condition gets now", undefined, "True", T1.toISOString()],
    ["a new condition among others gets now", [stalled], "False", T1.toISOString()],
    ["same status keeps the old time", [ready("True", T0)], "True", T0.toISOString()],
    ["False → True moves it", [ready("False", T0)], "True", T1.toISOString()],
    ["True → Unknown moves it", [ready("True", T0)], "Unknown", T1.toISOString()],
  ])("setCondition: %s", (_, conditions, status, time) => {
    const next = setCondition(
      conditions,
      { type: "Ready", status, reason: "Deployed", message: "serving" },
      T1,
      3,
    );
    expect(conditionOf(next, "Ready")).toStrictEqual({
      type: "Ready",
      status,
      reason: "Deployed",
      message: "serving",
      observedGeneration: 3,
      lastTransitionTime: time,
    });
    expect(next.filter((condition) => condition.type === "Ready")).toHaveLength(1);
  });

  it("setCondition leaves the other conditions, and its input, as they were", () => {
    const input = [stalled, ready("False", T0), { ...stalled, type: "Reconciling" }];
    const before = structuredClone(input);
    const next = setCondition(
      input,
      { type: "Ready", status: "True", reason: "X", message: "" },
      T1,
    );
    expect(input).toStrictEqual(before);
    expect(next.filter((condition) => condition.type !== "Ready")).toStrictEqual([
      stalled,
      { ...stalled, type: "Reconciling" },
    ]);
    expect(conditionOf(next, "Ready")).not.toHaveProperty("observedGeneration");
  });

  it.each<[string, Condition[] | undefined, string, string[]]>([
    ["removes the one named", [stalled, ready("True", T0)], "Stalled", ["Ready"]],
    ["keeps all when absent", [ready("True", T0)], "Stalled", ["Ready"]],
    ["undefined is empty", undefined, "Ready", []],
  ])("removeCondition %s", (_, conditions, type, left) => {
    expect(removeCondition(conditions, type).map((condition) => condition.type)).toStrictEqual(
      left,
    );
  });

  it.each<[Condition[] | undefined, string, Condition | undefined]>([
    [[stalled, ready("True", T0)], "Stalled", stalled],
    [[stalled, ready("True", T0)], "Ready", ready("True", T0)],
    [[stalled], "Ready", undefined],
    [undefined, "Ready", undefined],
  ])("conditionOf %#", (conditions, type, expected) => {
    expect(conditionOf(conditions, type)).toStrictEqual(expected);
  });
});

describe("modelIsBehind", () => {
  const model = (commit: string | undefined, sourceCommit: string | undefined) =>
    ({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "Model",
      metadata: {
        name: "m",
        ...(commit ? { annotations: { "modelship.dev/commit": commit } } : {}),
      },
      spec: { runtime: "python3", file: "f.py", function: "f" },
      ...(sourceCommit ? { status: { sourceCommit } } : {}),
    }) as Model;
  it.each<[string, string | undefined, string | undefined, boolean]>([
    ["worked out for its commit", "c2", "c2", false],
    ["a new commit not worked out yet", "c2", "c1", true],
    ["never reconciled", "c1", undefined, true],
    ["not from git", undefined, undefined, false],
  ])("%s → %s", (_, commit, sourceCommit, expected) => {
    expect(modelIsBehind(model(commit, sourceCommit))).toBe(expected);
  });
});
