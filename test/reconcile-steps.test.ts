// Table tests of the reconcilers' pure steps (model, build, deployment) and kstatus conditions.
import { describe, expect, it } from "vitest";
import { conditionOf, removeCondition, setCondition } from "../controller/api/conditions.ts";
import type {
  Condition,
  DeploymentRecord,
  Model,
  ModelBuild,
  ModelBuildStatus,
} from "../controller/api/types.generated.ts";
import type { BuildProgress, RolloutStatus } from "../controller/platform/ports.ts";
import { buildStatus, isFinished } from "../controller/reconcile/build.ts";
import {
  closeRecords,
  type DeploymentPhase,
  deploymentPhase,
  modelIsBehind,
  type RolloutInputs,
  resolveBuildNumber,
  rolloutHash,
  servingBefore,
} from "../controller/reconcile/deployment.ts";
import {
  type BuildKeyInputs,
  chooseBuild,
  computeBuildKey,
  manifestFilesOf,
  modelReadiness,
  newModelBuild,
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

describe("manifestFilesOf", () => {
  it.each<[string | undefined, string[]]>([
    [undefined, []],
    ["", []],
    ["not json", []],
    ['{"a":1}', []],
    ["[]", []],
    ['["iris/model.yaml","deploy/iris.yaml"]', ["iris/model.yaml", "deploy/iris.yaml"]],
    ['["a.yaml",3,null,"b.yaml"]', ["a.yaml", "b.yaml"]],
  ])("%j → %j", (annotation, files) => {
    expect(manifestFilesOf(annotation)).toStrictEqual(files);
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
  ])("%s", (_, builds, key, expected) => {
    const choice = chooseBuild(builds, key);
    expect("reuse" in choice ? { reuse: choice.reuse.spec.number } : choice).toStrictEqual(
      expected,
    );
    if ("reuse" in choice) expect(builds).toContain(choice.reuse);
  });
});

describe("modelReadiness", () => {
  it.each<[string, ModelBuildStatus | undefined, ReturnType<typeof modelReadiness>]>([
    [
      "Succeeded",
      { phase: "Succeeded" },
      { status: "True", reason: "BuildSucceeded", message: "build 3 is ready" },
    ],
    [
      "Failed with a message",
      { phase: "Failed", message: "pip: no such package" },
      { status: "False", reason: "BuildFailed", message: "build 3 failed: pip: no such package" },
    ],
    [
      "Failed without a message",
      { phase: "Failed" },
      { status: "False", reason: "BuildFailed", message: "build 3 failed: no message" },
    ],
    [
      "Building",
      { phase: "Building" },
      { status: "False", reason: "Building", message: "build 3 is in progress" },
    ],
    [
      "Pending",
      { phase: "Pending" },
      { status: "False", reason: "Building", message: "build 3 is in progress" },
    ],
    [
      "Pushing",
      { phase: "Pushing" },
      { status: "False", reason: "Building", message: "build 3 is in progress" },
    ],
    [
      "no status yet",
      undefined,
      { status: "False", reason: "Building", message: "build 3 is in progress" },
    ],
  ])("%s", (_, status, expected) => {
    expect(modelReadiness(build(3, "k", status))).toStrictEqual(expected);
  });
});

describe("newModelBuild", () => {
  it.each<[string, Model, ModelBuild]>([
    [
      "a Model from a repository, in its namespace, with a build script",
      {
        ...model({
          namespace: "team-a",
          labels: { "modelship.dev/source": "models-repo", "app.kubernetes.io/part-of": "x" },
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
            "modelship.dev/managed-by": "modelship",
            "modelship.dev/source": "models-repo",
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
          labels: { "modelship.dev/model": "iris", "modelship.dev/managed-by": "modelship" },
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

describe("isFinished", () => {
  it.each<[ModelBuildStatus["phase"] | "no status", boolean]>([
    ["no status", false],
    [undefined, false],
    ["Pending", false],
    ["Building", false],
    ["Pushing", false],
    ["Succeeded", true],
    ["Failed", true],
  ])("%s → %s", (phase, expected) => {
    const status = phase === "no status" ? undefined : { ...(phase ? { phase } : {}) };
    expect(isFinished(build(1, "k", status))).toBe(expected);
  });
});

describe("buildStatus", () => {
  const readyAt = (status: ModelBuildStatus) => conditionOf(status.conditions, "Ready");

  it("is Pending, and keeps the rest, when the builder knows nothing of the build", () => {
    const previous: ModelBuildStatus = { phase: "Building", startedAt: T0.toISOString() };
    expect(buildStatus(build(1, "k", previous, 1), undefined, T1)).toStrictEqual({
      phase: "Pending",
      startedAt: T0.toISOString(),
    });
    expect(buildStatus(build(1, "k", undefined, 1), undefined, T1)).toStrictEqual({
      phase: "Pending",
    });
  });

  it.each<[string, BuildProgress, ModelBuildStatus]>([
    [
      "Building: started now, not observed",
      { phase: "Building" },
      {
        phase: "Building",
        startedAt: T1.toISOString(),
        conditions: [
          {
            type: "Ready",
            status: "False",
            reason: "Building",
            message: "the build is running",
            observedGeneration: 1,
            lastTransitionTime: T1.toISOString(),
          },
        ],
      },
    ],
    [
      "Succeeded: image, completion, observed",
      {
        phase: "Succeeded",
        startedAt: T0.toISOString(),
        completedAt: T1.toISOString(),
        image: "local/iris:1",
      },
      {
        phase: "Succeeded",
        startedAt: T0.toISOString(),
        completedAt: T1.toISOString(),
        image: "local/iris:1",
        observedGeneration: 1,
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "BuildSucceeded",
            message: "built local/iris:1",
            observedGeneration: 1,
            lastTransitionTime: T1.toISOString(),
          },
        ],
      },
    ],
    [
      "Succeeded without an image",
      { phase: "Succeeded" },
      {
        phase: "Succeeded",
        startedAt: T1.toISOString(),
        observedGeneration: 1,
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "BuildSucceeded",
            message: "built",
            observedGeneration: 1,
            lastTransitionTime: T1.toISOString(),
          },
        ],
      },
    ],
    [
      "Failed: the builder's message",
      { phase: "Failed", message: "ERROR: no module numpy" },
      {
        phase: "Failed",
        startedAt: T1.toISOString(),
        message: "ERROR: no module numpy",
        observedGeneration: 1,
        conditions: [
          {
            type: "Ready",
            status: "False",
            reason: "BuildFailed",
            message: "ERROR: no module numpy",
            observedGeneration: 1,
            lastTransitionTime: T1.toISOString(),
          },
        ],
      },
    ],
    [
      "Failed without a message",
      { phase: "Failed" },
      {
        phase: "Failed",
        startedAt: T1.toISOString(),
        observedGeneration: 1,
        conditions: [
          {
            type: "Ready",
            status: "False",
            reason: "BuildFailed",
            message: "the build failed",
            observedGeneration: 1,
            lastTransitionTime: T1.toISOString(),
          },
        ],
      },
    ],
  ])("%s", (_, progress, expected) => {
    expect(buildStatus(build(1, "k", undefined, 1), progress, T1)).toStrictEqual(expected);
  });

  it.each<[string, string | undefined, string | undefined, string]>([
    [
      "the previous startedAt when the builder gives none",
      T0.toISOString(),
      undefined,
      T0.toISOString(),
    ],
    [
      "the builder's startedAt over the previous",
      T0.toISOString(),
      "2026-03-01T11:00:00.000Z",
      "2026-03-01T11:00:00.000Z",
    ],
    ["now when there is neither", undefined, undefined, T1.toISOString()],
  ])("startedAt: %s", (_, previous, reported, expected) => {
    const status = buildStatus(
      build(1, "k", { phase: "Building", ...(previous ? { startedAt: previous } : {}) }, 1),
      { phase: "Building", ...(reported ? { startedAt: reported } : {}) },
      T1,
    );
    expect(status.startedAt).toBe(expected);
  });

  it("sets no observedGeneration when the build has no generation", () => {
    const status = buildStatus(build(1, "k"), { phase: "Succeeded" }, T1);
    expect(status).not.toHaveProperty("observedGeneration");
    expect(readyAt(status)).not.toHaveProperty("observedGeneration");
  });

  it.each<[string, BuildProgress["phase"], string]>([
    ["Building → Building keeps the transition time", "Building", T0.toISOString()],
    ["Building → Failed keeps it (Ready stays False)", "Failed", T0.toISOString()],
    ["Building → Succeeded moves it", "Succeeded", T1.toISOString()],
  ])("%s", (_, phase, expected) => {
    const previous = buildStatus(build(1, "k", undefined, 1), { phase: "Building" }, T0);
    const next = buildStatus(build(1, "k", previous, 1), { phase }, T1);
    expect(readyAt(next)?.lastTransitionTime).toBe(expected);
    expect(next.conditions).toHaveLength(1);
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
  ])("changes with %s", (_, change) => {
    expect(rolloutHash({ ...base, ...change })).not.toBe(rolloutHash(base));
  });

  it.each<[string, object]>([
    ["env in another key order", { env: { B: "2", A: "1" } }],
    ["replicas (not an input)", { replicas: 5 }],
  ])("does not change with %s", (_, change) => {
    const other = { ...base, ...change };
    expect(rolloutHash(other)).toBe(rolloutHash(base));
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
    ["a current not yet recorded", [record(1, earlier), record(2)], 9, 2],
  ])("servingBefore: %s", (_, history, current, expected) => {
    expect(servingBefore(history, current)?.deploymentId).toBe(expected);
  });
});

describe("deploymentPhase", () => {
  type Wanted = "none" | "no status" | "Pending" | "Building" | "Failed" | "Succeeded";
  type Rollout = "none" | "progressing" | "complete" | "failing";
  const wantedBuild = (wanted: Wanted): ModelBuild | undefined =>
    wanted === "none"
      ? undefined
      : build(2, "k", wanted === "no status" ? undefined : { phase: wanted });
  const rollouts: Record<Rollout, RolloutStatus | undefined> = {
    none: undefined,
    progressing: { readyReplicas: 1, replicas: 3, complete: false },
    complete: { readyReplicas: 3, replicas: 3, complete: true },
    failing: { readyReplicas: 0, replicas: 1, complete: false, failure: "cannot load predict" },
  };

  // Rows: the wanted build; columns: the rollout; one table when nothing runs, one when it does.
  const notRunning: Record<Wanted, Record<Rollout, DeploymentPhase>> = {
    none: { none: "Building", progressing: "Building", complete: "Building", failing: "Building" },
    "no status": {
      none: "Building",
      progressing: "Building",
      complete: "Building",
      failing: "Building",
    },
    Pending: {
      none: "Building",
      progressing: "Building",
      complete: "Building",
      failing: "Building",
    },
    Building: {
      none: "Building",
      progressing: "Building",
      complete: "Building",
      failing: "Building",
    },
    Failed: { none: "Failed", progressing: "Failed", complete: "Failed", failing: "Failed" },
    Succeeded: {
      none: "Deploying",
      progressing: "Deploying",
      complete: "Deployed",
      failing: "Failed",
    },
  };
  // While something runs, a build that is not ready leaves the running rollout's phase.
  const running: Record<Wanted, Record<Rollout, DeploymentPhase>> = {
    none: {
      none: "Deploying",
      progressing: "Deploying",
      complete: "Deployed",
      failing: "Deploying",
    },
    "no status": {
      none: "Deploying",
      progressing: "Deploying",
      complete: "Deployed",
      failing: "Deploying",
    },
    Pending: {
      none: "Deploying",
      progressing: "Deploying",
      complete: "Deployed",
      failing: "Deploying",
    },
    Building: {
      none: "Deploying",
      progressing: "Deploying",
      complete: "Deployed",
      failing: "Deploying",
    },
    Failed: {
      none: "Deploying",
      progressing: "Deploying",
      complete: "Deployed",
      failing: "Deploying",
    },
    Succeeded: {
      none: "Deploying",
      progressing: "Deploying",
      complete: "Deployed",
      failing: "Failed",
    },
  };
  const cases = [
    ...Object.entries(notRunning).flatMap(([wanted, row]) =>
      Object.entries(row).map(
        ([rollout, phase]) => [wanted as Wanted, false, rollout as Rollout, phase] as const,
      ),
    ),
    ...Object.entries(running).flatMap(([wanted, row]) =>
      Object.entries(row).map(
        ([rollout, phase]) => [wanted as Wanted, true, rollout as Rollout, phase] as const,
      ),
    ),
  ];

  it("covers every combination", () => {
    expect(cases).toHaveLength(6 * 2 * 4);
  });

  it.each(cases)("build %s, running %s, rollout %s → %s", (wanted, isRunning, rollout, phase) => {
    expect(deploymentPhase(wantedBuild(wanted), isRunning, rollouts[rollout])).toBe(phase);
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
