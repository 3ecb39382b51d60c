// One pass of each reconciler, table-driven, over a real in-memory store and fake Builder,
// Runtime and SourceReader ports: what each situation makes of the status (phase, conditions,
// observedGeneration), which events it records, what it asks the ports, and what the queue does
// next.

import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type {
  Condition,
  Model,
  ModelBuild,
  ModelBuildStatus,
  ModelDeployment,
} from "../controller/api/types.generated.ts";
import type {
  Builder,
  BuildProgress,
  EventType,
  Resource,
  RolloutSpec,
  RolloutStatus,
  Runtime,
} from "../controller/core/ports.ts";
import { LocalStore } from "../controller/platform/local/store.ts";
import { buildReconciler } from "../controller/reconcile/build.ts";
import {
  DEFAULT_RECONCILE_SETTINGS,
  type ReconcileContext,
} from "../controller/reconcile/context.ts";
import { deploymentReconciler } from "../controller/reconcile/deployment.ts";
import { ControllerMetrics } from "../controller/reconcile/metrics.ts";
import { computeBuildKey, modelReconciler } from "../controller/reconcile/model.ts";
import type { ReconcileResult } from "../controller/reconcile/queue.ts";

const NOW = new Date("2026-03-01T12:00:00.000Z");
const COMMIT = "c".repeat(40);
const NS = "default";

interface World {
  store: LocalStore;
  context: ReconcileContext;
  events: { type: EventType; reason: string; kind: string; name: string }[];
  calls: string[];
  progress: Map<string, BuildProgress | undefined>;
  rollout: RolloutStatus | undefined;
}

function world(): World {
  const store = new LocalStore(undefined, () => NOW);
  const calls: string[] = [];
  const progress = new Map<string, BuildProgress | undefined>();
  const state: World = {
    store,
    events: [],
    calls,
    progress,
    rollout: undefined,
    context: undefined as unknown as ReconcileContext,
  };
  const builder: Builder = {
    start: async (build) => {
      calls.push(`start ${build.metadata.name}`);
    },
    status: async (build) => progress.get(build.metadata.name),
    logs: async () => "",
    remove: async (build) => {
      calls.push(`remove ${build.metadata.name}`);
    },
  };
  const runtime: Runtime = {
    apply: async (spec: RolloutSpec) => {
      calls.push(
        `apply ${spec.deployment.name} id=${spec.deploymentId} build=${spec.build.spec.number} x${spec.replicas}`,
      );
    },
    status: () => state.rollout,
    stop: async (deployment) => {
      calls.push(`stop ${deployment.name}`);
    },
    pause: async (deployment) => {
      calls.push(`pause ${deployment.name}`);
      return true;
    },
    replicas: () => [],
  };
  state.context = {
    store,
    builder,
    runtime,
    sources: {
      treeId: async () => "t".repeat(40),
      contentId: async (_, commit) => `content-of-${commit.slice(0, 4)}`,
    },
    events: {
      record: (object: Resource, type: EventType, reason: string) =>
        state.events.push({ type, reason, kind: object.kind, name: object.metadata.name }),
    },
    clock: { now: () => NOW },
    gitSource: () => {
      throw new Error("no git here");
    },
    gatewayUrl: () => "http://gateway",
    baseImage: (runtimeName) => `local/${runtimeName}`,
    log: () => {},
    metrics: new ControllerMetrics(new Registry()),
    settings: { ...DEFAULT_RECONCILE_SETTINGS, buildRetention: 2 },
  };
  return state;
}

const signals = () => {
  const controller = new AbortController();
  return { signal: controller.signal, stopped: controller.signal };
};

const conditions = (object: Resource | undefined) =>
  ((object?.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).map(
    (item) => `${item.type}=${item.status}:${item.reason}`,
  );

const synced = {
  labels: { "app.kubernetes.io/managed-by": "modelship", "modelship.dev/repository": "models" },
  annotations: {
    "modelship.dev/commit": COMMIT,
    "modelship.dev/source-path": "iris",
    "modelship.dev/commit-author": "Ada <ada@example.com>",
  },
};

function modelObject(metadata: Partial<Model["metadata"]> = synced): Model {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "Model",
    metadata: { name: "iris", namespace: NS, ...metadata },
    spec: { runtime: "python3", file: "predict.py", function: "predict" },
  };
}

async function addBuild(
  store: LocalStore,
  number: number,
  status?: ModelBuildStatus,
  buildKey = `key-${number}`,
): Promise<void> {
  await store.apply<ModelBuild>({
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: {
      name: `iris-${number}`,
      namespace: NS,
      labels: { ...synced.labels, "modelship.dev/model": "iris" },
    },
    spec: {
      model: "iris",
      number,
      commit: COMMIT,
      tree: "t".repeat(40),
      buildKey,
      repository: "models",
      sourcePath: "iris",
      runtime: "python3",
      file: "predict.py",
      function: "predict",
    },
  });
  if (status) await store.patchStatus("ModelBuild", NS, `iris-${number}`, status);
}

const show = (result: ReconcileResult) =>
  result.type === "requeue" ? `requeue ${result.afterMs}` : result.type;

describe("a ModelBuild pass", () => {
  it.each<
    [string, ModelBuildStatus | undefined, BuildProgress | undefined, Record<string, unknown>]
  >([
    [
      "unknown to the builder: started, then polled",
      undefined,
      undefined,
      {
        result: "requeue 500",
        phase: "Building",
        conditions: ["Reconciling=True:Building", "Ready=Unknown:Building"],
        calls: ["start iris-1"],
        events: ["BuildStarted"],
      },
    ],
    [
      "running: polled, not started again",
      { phase: "Building" },
      { phase: "Building" },
      {
        result: "requeue 500",
        phase: "Building",
        conditions: ["Reconciling=True:Building", "Ready=Unknown:Building"],
        calls: [],
        events: [],
      },
    ],
    [
      "succeeded: Ready, with its image",
      { phase: "Building" },
      { phase: "Succeeded", image: "local:/builds/iris-1" },
      {
        result: "done",
        phase: "Succeeded",
        conditions: ["Ready=True:BuildSucceeded"],
        calls: [],
        events: ["BuildSucceeded"],
        observed: 1,
      },
    ],
    [
      "failed: Stalled, for good",
      { phase: "Building" },
      { phase: "Failed", message: "pip: no such package" },
      {
        result: "terminal",
        phase: "Failed",
        conditions: ["Stalled=True:BuildFailed", "Ready=False:BuildFailed"],
        calls: [],
        events: ["BuildFailed"],
        observed: 1,
      },
    ],
    [
      "already succeeded: the builder is not asked again",
      { phase: "Succeeded", image: "local:/b" },
      undefined,
      {
        result: "done",
        phase: "Succeeded",
        conditions: ["Ready=True:BuildSucceeded"],
        calls: [],
        events: [],
      },
    ],
  ])("%s", async (_, before, progress, want) => {
    const { store, context, calls, events, progress: builder } = world();
    await store.apply(modelObject());
    await addBuild(store, 1, before);
    builder.set("iris-1", progress);
    const result = await buildReconciler(context)(
      { kind: "ModelBuild", namespace: NS, name: "iris-1" },
      signals(),
    );
    const build = store.get("ModelBuild", NS, "iris-1");
    expect({
      result: show(result),
      phase: build?.status?.phase,
      conditions: conditions(build),
      calls,
      events: events.map((event) => event.reason),
      ...(want.observed === undefined ? {} : { observed: build?.status?.observedGeneration }),
    }).toStrictEqual(want);
  });
});

describe("a ModelBuild pass that cannot or need not run", () => {
  it.each<[string, boolean, number | undefined]>([
    ["its Model is gone", false, undefined],
    ["its Model has a newer build", true, 2],
  ])(
    "cancels a running build when %s: its tree is killed, the ModelBuild goes",
    async (_, withModel, latest) => {
      const { store, context, calls, events, progress } = world();
      if (withModel) {
        await store.apply(modelObject());
        await store.patchStatus("Model", NS, "iris", { latestBuild: latest as number });
      }
      await addBuild(store, 1, { phase: "Building" });
      progress.set("iris-1", { phase: "Building" });
      const result = await buildReconciler(context)(
        { kind: "ModelBuild", namespace: NS, name: "iris-1" },
        signals(),
      );
      expect(show(result)).toBe("done");
      expect(calls).toStrictEqual(["remove iris-1"]);
      expect(store.get("ModelBuild", NS, "iris-1")).toBeUndefined();
      expect(events.map((event) => event.reason)).toStrictEqual(
        withModel ? ["BuildCancelled"] : [],
      );
    },
  );

  it("does not cancel a build its Model still wants (the newest), nor a finished one", async () => {
    const { store, context, calls } = world();
    await store.apply(modelObject());
    await store.patchStatus("Model", NS, "iris", { latestBuild: 2 });
    await addBuild(store, 1, { phase: "Succeeded" });
    await addBuild(store, 2, { phase: "Building" });
    const reconcile = buildReconciler(context);
    for (const name of ["iris-1", "iris-2"]) {
      await reconcile({ kind: "ModelBuild", namespace: NS, name }, signals());
    }
    expect(calls).toStrictEqual(["start iris-2"]);
    expect(store.list("ModelBuild", NS)).toHaveLength(2);
  });

  it("starts no more than maxConcurrentBuilds at once; the others wait, Pending, for a slot", async () => {
    const { store, context, calls, progress } = world();
    await store.apply(modelObject());
    await store.patchStatus("Model", NS, "iris", { latestBuild: 3 });
    for (const number of [1, 2, 3]) await addBuild(store, number);
    const reconcile = buildReconciler({
      ...context,
      settings: { ...context.settings, maxConcurrentBuilds: 2 },
      // Three models' builds, not one model's: none supersedes another here.
      store: Object.assign(Object.create(store), {
        get: (kind: string, namespace: string, name: string) =>
          kind === "Model"
            ? { ...modelObject(), status: { latestBuild: 1 } }
            : store.get(kind as "ModelBuild", namespace, name),
      }),
    });
    const results: string[] = [];
    for (const name of ["iris-1", "iris-2", "iris-3"]) {
      results.push(show(await reconcile({ kind: "ModelBuild", namespace: NS, name }, signals())));
    }
    expect(calls).toStrictEqual(["start iris-1", "start iris-2"]);
    expect(results).toStrictEqual(["requeue 500", "requeue 500", "requeue 500"]);
    expect(store.get("ModelBuild", NS, "iris-3")?.status?.phase).toBe("Pending");
    expect(conditions(store.get("ModelBuild", NS, "iris-3"))).toStrictEqual([
      "Reconciling=True:Queued",
      "Ready=Unknown:Queued",
    ]);
    // Once one ends, the waiting one gets its slot.
    progress.set("iris-1", { phase: "Succeeded", image: "local:/b1" });
    await reconcile({ kind: "ModelBuild", namespace: NS, name: "iris-1" }, signals());
    await reconcile({ kind: "ModelBuild", namespace: NS, name: "iris-3" }, signals());
    expect(calls).toStrictEqual(["start iris-1", "start iris-2", "start iris-3"]);
  });
});

describe("a Model pass", () => {
  it("stalls a Model that no repository applied: there is no commit to build", async () => {
    const { store, context } = world();
    await store.apply(modelObject({}));
    const result = await modelReconciler(context)(
      { kind: "Model", namespace: NS, name: "iris" },
      signals(),
    );
    expect(show(result)).toBe("terminal");
    expect(conditions(store.get("Model", NS, "iris"))).toStrictEqual([
      "Stalled=True:NoSource",
      "Ready=False:NoSource",
    ]);
  });

  it.each<[string, [number, ModelBuildStatus | undefined][], Record<string, unknown>]>([
    [
      "a new key: the next build number, labelled, and waiting for it",
      [[1, { phase: "Succeeded" }]],
      {
        latest: 2,
        builds: ["iris-1", "iris-2"],
        conditions: ["Reconciling=True:Building", "Ready=Unknown:Building"],
        events: ["BuildCreated"],
        result: "done",
      },
    ],
  ])("%s", async (_, existing, want) => {
    const { store, context, events } = world();
    await store.apply(modelObject());
    for (const [number, status] of existing) await addBuild(store, number, status);
    const result = await modelReconciler(context)(
      { kind: "Model", namespace: NS, name: "iris" },
      signals(),
    );
    const model = store.get("Model", NS, "iris");
    expect({
      latest: model?.status?.latestBuild,
      builds: store.list("ModelBuild", NS).map((build) => build.metadata.name),
      conditions: conditions(model),
      events: events.map((event) => event.reason),
      result: show(result),
    }).toStrictEqual(want);
    expect(store.get("ModelBuild", NS, "iris-2")?.metadata.labels).toStrictEqual({
      "app.kubernetes.io/managed-by": "modelship",
      "modelship.dev/model": "iris",
      "modelship.dev/repository": "models",
    });
  });

  it.each<[string, ModelBuildStatus, string[], string]>([
    [
      "a build that succeeded: Ready",
      { phase: "Succeeded" },
      ["Ready=True:BuildSucceeded"],
      "done",
    ],
    [
      "a build that failed: Stalled with its reason",
      { phase: "Failed", message: "pip" },
      ["Stalled=True:BuildFailed", "Ready=False:BuildFailed"],
      "terminal",
    ],
  ])("the same key as an existing build, %s", async (_, status, want, result) => {
    const { store, context } = world();
    await store.apply(modelObject());
    // The key this Model has with the fake SourceReader's content id.
    const key = computeBuildKey({
      content: `content-of-${COMMIT.slice(0, 4)}`,
      runtime: "python3",
      file: "predict.py",
      function: "predict",
      buildScript: undefined,
      baseImage: "local/python3",
    });
    await addBuild(store, 1, status, key);
    const outcome = await modelReconciler(context)(
      { kind: "Model", namespace: NS, name: "iris" },
      signals(),
    );
    expect(store.list("ModelBuild", NS).map((build) => build.metadata.name)).toStrictEqual([
      "iris-1",
    ]);
    expect(store.get("Model", NS, "iris")?.status?.buildKey).toBe(key);
    expect(conditions(store.get("Model", NS, "iris"))).toStrictEqual(want);
    expect(show(outcome)).toBe(result);
  });

  it("collects builds past the retention, never one a deployment uses, and frees them", async () => {
    const { store, context, calls, events } = world();
    await store.apply(modelObject());
    for (const number of [1, 2, 3, 4]) await addBuild(store, number, { phase: "Succeeded" });
    await store.apply<ModelDeployment>({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelDeployment",
      metadata: { name: "iris", namespace: NS },
      spec: { model: "iris", build: 1 },
    });
    await modelReconciler(context)({ kind: "Model", namespace: NS, name: "iris" }, signals());
    // Retention 2 keeps the new build 5 and build 4; build 1 is pinned by the deployment.
    expect(
      store
        .list("ModelBuild", NS)
        .map((build) => build.spec.number)
        .sort(),
    ).toStrictEqual([1, 4, 5]);
    expect(calls).toStrictEqual(["remove iris-3", "remove iris-2"]);
    expect(events.map((event) => event.reason)).toStrictEqual(["BuildCreated", "BuildsCollected"]);
  });
});

describe("a ModelDeployment pass", () => {
  async function deploymentWorld(options: {
    model?: boolean;
    build?: ModelBuildStatus;
    rollout?: RolloutStatus;
    spec?: Partial<ModelDeployment["spec"]>;
  }) {
    const state = world();
    const { store } = state;
    if (options.model !== false) {
      await store.apply(modelObject());
      if (options.build) {
        await addBuild(store, 1, options.build);
        await store.patchStatus("Model", NS, "iris", { latestBuild: 1, sourceCommit: COMMIT });
      }
    }
    await store.apply<ModelDeployment>({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelDeployment",
      metadata: { name: "iris", namespace: NS },
      spec: { model: "iris", replicas: 2, ...options.spec },
    });
    state.rollout = options.rollout;
    const pass = () =>
      deploymentReconciler(state.context)(
        { kind: "ModelDeployment", namespace: NS, name: "iris" },
        signals(),
      );
    const read = () => store.get("ModelDeployment", NS, "iris");
    return Object.assign(state, { pass, read });
  }

  const complete: RolloutStatus = {
    readyReplicas: 2,
    servingReplicas: 2,
    replicas: 2,
    complete: true,
  };
  it.each<[string, Parameters<typeof deploymentWorld>[0], Record<string, unknown>]>([
    [
      "its Model does not exist: Stalled",
      { model: false },
      {
        result: "terminal",
        phase: "Failed",
        conditions: ["Stalled=True:ModelNotFound", "Ready=False:ModelNotFound"],
        calls: [],
      },
    ],
    [
      "its build is running: waiting for it",
      { build: { phase: "Building" } },
      {
        result: "done",
        phase: "Building",
        conditions: ["Reconciling=True:Building", "Ready=Unknown:Building"],
        calls: [],
      },
    ],
    [
      "its build failed: Stalled",
      { build: { phase: "Failed", message: "pip" } },
      {
        result: "terminal",
        phase: "Failed",
        conditions: ["Stalled=True:BuildFailed", "Ready=False:BuildFailed"],
        calls: [],
      },
    ],
    [
      "its build is ready: a rollout starts",
      { build: { phase: "Succeeded", image: "local:/b" } },
      {
        result: "requeue 300",
        phase: "Deploying",
        conditions: ["Reconciling=True:RolloutInProgress", "Ready=False:RolloutInProgress"],
        calls: ["apply iris id=1 build=1 x2"],
      },
    ],
    [
      "the runtime cannot load it: Stalled",
      {
        build: { phase: "Succeeded" },
        rollout: {
          readyReplicas: 0,
          servingReplicas: 0,
          replicas: 1,
          complete: false,
          failure: "no such function",
        },
      },
      {
        result: "terminal",
        phase: "Failed",
        conditions: ["Stalled=True:RolloutFailed", "Ready=False:RolloutFailed"],
        calls: ["apply iris id=1 build=1 x2"],
      },
    ],
    [
      "the rollout is complete: Deployed",
      { build: { phase: "Succeeded" }, rollout: complete },
      {
        result: "requeue 60000",
        phase: "Deployed",
        conditions: ["Ready=True:Deployed"],
        calls: ["apply iris id=1 build=1 x2"],
      },
    ],
    [
      "stopped: every replica is taken away, the workload kept, and drift checked again later",
      { build: { phase: "Succeeded" }, spec: { stopped: true } },
      {
        result: "requeue 60000",
        phase: "Stopped",
        conditions: ["Ready=False:Stopped"],
        calls: ["pause iris"],
      },
    ],
  ])("%s", async (_, options, want) => {
    const { pass, read, calls } = await deploymentWorld(options);
    const result = await pass();
    expect({
      result: show(result),
      phase: read()?.status?.phase,
      conditions: conditions(read()),
      calls,
    }).toStrictEqual(want);
  });

  it("records the rollout before the runtime runs it, then completes it, with events and history", async () => {
    const state = await deploymentWorld({ build: { phase: "Succeeded" } });
    const { pass, read, events } = state;
    await pass();
    expect(read()?.status).toMatchObject({
      deploymentId: 1,
      build: 1,
      history: [{ deploymentId: 1, build: 1, commit: COMMIT, deployedBy: "Ada <ada@example.com>" }],
    });
    state.rollout = complete;
    await pass();
    expect(read()?.status).toMatchObject({
      phase: "Deployed",
      ready: "2/2",
      observedGeneration: 1,
    });
    expect(events.map((event) => event.reason)).toStrictEqual([
      "RolloutStarted",
      "RolloutCompleted",
    ]);
    expect(read()?.status?.history?.[0]?.completedAt).toBe(NOW.toISOString());
    // A pass with nothing new makes no second rollout and no event; nor does a scale of the
    // same rollout (in progress, then complete again).
    await pass();
    state.rollout = { readyReplicas: 2, servingReplicas: 2, replicas: 3, complete: false };
    await pass();
    state.rollout = complete;
    await pass();
    expect(read()?.status?.deploymentId).toBe(1);
    expect(events.map((event) => event.reason)).toStrictEqual([
      "RolloutStarted",
      "RolloutCompleted",
    ]);
  });

  it("puts back a workload that drifted, and says so", async () => {
    const state = await deploymentWorld({ build: { phase: "Succeeded" }, rollout: complete });
    const { pass, calls, events } = state;
    await pass();
    state.rollout = { ...complete, drifted: "spec.replicas is 1, not 2" };
    await pass();
    expect(calls).toStrictEqual(["apply iris id=1 build=1 x2", "apply iris id=1 build=1 x2"]);
    expect(events.map((event) => event.reason)).toContain("DriftCorrected");
  });

  it("stops the replicas of a deployment that is gone", async () => {
    const { context, calls } = world();
    await deploymentReconciler(context)(
      { kind: "ModelDeployment", namespace: NS, name: "gone" },
      signals(),
    );
    expect(calls).toStrictEqual(["stop gone"]);
  });
});
