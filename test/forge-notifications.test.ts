// What the forge is told of the syncs, read off the store (platform/forge-notifications.ts):
// a new synced commit once, a refused commit once per reason, and a rollout's outcome only
// when the deployments describe that commit — never the previous commit's status, which is
// what they hold right after a sync.
import { describe, expect, it } from "vitest";
import type {
  Condition,
  Model,
  ModelBuild,
  ModelDeployment,
  ModelRepository,
} from "../controller/api/types.generated.ts";
import { ANNOTATION_COMMIT } from "../controller/core/labels.ts";
import type {
  FailedSync,
  RolloutOutcome,
  SyncedCommit,
  SyncNotifications,
} from "../controller/forge/sync-status.ts";
import {
  notifySyncs,
  rolloutVerdict,
  syncOutcome,
} from "../controller/platform/forge-notifications.ts";
import { LocalStore } from "../controller/platform/local/store.ts";

const C1 = "1".repeat(40);
const C2 = "2".repeat(40);
const NOW = "2025-01-01T00:00:00Z";

const condition = (type: string, status: Condition["status"], reason: string, message = reason) =>
  ({ type, status, reason, message, lastTransitionTime: NOW }) satisfies Condition;

function repository(status?: ModelRepository["status"]): ModelRepository {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelRepository",
    metadata: { name: "local", namespace: "default" },
    spec: { url: "https://github.com/acme/models.git" },
    ...(status ? { status } : {}),
  };
}

function model(commit: string, status: Model["status"]): Model {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "Model",
    metadata: { name: "iris", namespace: "default", annotations: { [ANNOTATION_COMMIT]: commit } },
    spec: { runtime: "python3", file: "predict.py", function: "predict" } as Model["spec"],
    status,
  };
}

function deployment(
  commit: string,
  status: ModelDeployment["status"],
  spec: Partial<ModelDeployment["spec"]> = {},
): ModelDeployment {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelDeployment",
    metadata: {
      name: "iris-prod",
      namespace: "default",
      annotations: { [ANNOTATION_COMMIT]: commit },
      generation: 1,
    } as ModelDeployment["metadata"],
    spec: { model: "iris", replicas: 1, ...spec } as ModelDeployment["spec"],
    status,
  };
}

function build(number: number, phase: "Building" | "Failed" | "Succeeded"): ModelBuild {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: { name: `iris-${number}`, namespace: "default" },
    spec: { model: "iris", number } as ModelBuild["spec"],
    status: { phase, ...(phase === "Failed" ? { message: "pip: no such package" } : {}) },
  };
}

/** Model iris at C2, its build 3 worked out. */
const caughtUp = model(C2, { latestBuild: 3, sourceCommit: C2 });
const deployed = {
  observedGeneration: 1,
  build: 3,
  servingBuild: 3,
  phase: "Deployed" as const,
  conditions: [condition("Ready", "True", "Deployed")],
};

describe("syncOutcome", () => {
  it.each<[string, ModelRepository["status"], ReturnType<typeof syncOutcome>]>([
    ["before any sync", undefined, {}],
    ["a synced commit", { lastSyncedCommit: C1, lastAttemptedCommit: C1 }, { synced: C1 }],
    [
      "a refused commit after a synced one",
      {
        lastSyncedCommit: C1,
        lastAttemptedCommit: C2,
        lastSyncError: "2 problems",
        conditions: [condition("Stalled", "True", "ValidationFailed")],
      },
      { synced: C1, failed: { commit: C2, message: "2 problems" } },
    ],
    [
      "a fetch that failed (retried, not stalled): no commit to tell about",
      {
        lastSyncedCommit: C1,
        lastAttemptedCommit: C1,
        lastSyncError: "cannot reach the remote",
        conditions: [condition("Reconciling", "True", "ProgressingWithRetry")],
      },
      { synced: C1 },
    ],
  ])("%s", (_, status, expected) => {
    expect(syncOutcome(repository(status))).toEqual(expected);
  });
});

describe("rolloutVerdict", () => {
  it.each<[string, ModelDeployment, Model | undefined, ModelBuild | undefined, string]>([
    [
      "serving the wanted build",
      deployment(C2, deployed),
      caughtUp,
      build(3, "Succeeded"),
      "serving",
    ],
    [
      "still the previous commit's deployment",
      deployment(C1, deployed),
      caughtUp,
      undefined,
      "pending",
    ],
    [
      "its Model has not worked out the build of the commit",
      deployment(C2, deployed),
      model(C2, { latestBuild: 2, sourceCommit: C1 }),
      undefined,
      "pending",
    ],
    [
      "the previous build serves while the new one builds",
      deployment(C2, { ...deployed, build: 2, servingBuild: 2 }),
      caughtUp,
      build(3, "Building"),
      "pending",
    ],
    [
      "a rollout in progress (Reconciling)",
      deployment(C2, {
        ...deployed,
        conditions: [
          condition("Reconciling", "True", "RolloutInProgress"),
          condition("Ready", "True", "RolloutInProgress"),
        ],
      }),
      caughtUp,
      undefined,
      "pending",
    ],
    [
      "a status of an earlier generation",
      deployment(C2, { ...deployed, observedGeneration: 0 }),
      caughtUp,
      undefined,
      "pending",
    ],
    ["the wanted build failed", deployment(C2, deployed), caughtUp, build(3, "Failed"), "failed"],
    [
      "the wanted build's rollout failed",
      deployment(C2, {
        ...deployed,
        conditions: [condition("Stalled", "True", "RolloutFailed", "ImportError")],
      }),
      caughtUp,
      undefined,
      "failed",
    ],
    [
      "an earlier build's failed rollout, not yet replaced",
      deployment(C2, {
        ...deployed,
        build: 2,
        conditions: [condition("Stalled", "True", "RolloutFailed")],
      }),
      caughtUp,
      build(3, "Building"),
      "pending",
    ],
    [
      "the previous commit's failed build, while the new one builds",
      deployment(C2, { ...deployed, conditions: [condition("Stalled", "True", "BuildFailed")] }),
      caughtUp,
      build(3, "Building"),
      "pending",
    ],
    [
      "stopped, as declared",
      deployment(C2, { observedGeneration: 1, phase: "Stopped" }, { stopped: true }),
      caughtUp,
      undefined,
      "serving",
    ],
    [
      "a pinned build that serves",
      deployment(C2, { ...deployed, build: 1, servingBuild: 1 }, { build: 1 }),
      caughtUp,
      build(1, "Succeeded"),
      "serving",
    ],
  ])("%s → %s", (_, md, mdl, mb, expected) => {
    expect(rolloutVerdict(C2, md, mdl, mb).state).toBe(expected);
  });
});

/** A notifier that writes down what it is told. */
function recorder() {
  const told: string[] = [];
  const notifications: SyncNotifications = {
    synced: (sync: SyncedCommit) => told.push(`synced ${sync.commit.slice(0, 1)} ${sync.objects}`),
    syncFailed: (failure: FailedSync) =>
      told.push(`failed ${failure.commit.slice(0, 1)} ${failure.message}`),
    rolledOut: (outcome: RolloutOutcome) =>
      told.push(`rolled out ${outcome.commit.slice(0, 1)} ok=${outcome.ok} ${outcome.message}`),
  };
  return { told, notifications };
}

const INVENTORY = [
  { kind: "Model", namespace: "default", name: "iris" },
  { kind: "ModelDeployment", namespace: "default", name: "iris-prod" },
];

describe("notifySyncs", () => {
  it("tells a new synced commit once, and its rollout's end once everything serves it", async () => {
    const store = new LocalStore();
    await store.apply(repository());
    const { told, notifications } = recorder();
    const stop = notifySyncs(store, notifications);
    const synced = { lastSyncedCommit: C2, lastAttemptedCommit: C2, inventory: INVENTORY };
    await store.patchStatus("ModelRepository", "default", "local", synced);
    // The same commit again on the next interval's pass: nothing new.
    await store.patchStatus("ModelRepository", "default", "local", {
      ...synced,
      lastSyncTime: NOW,
    });
    await store.apply(model(C2, undefined));
    await store.apply(deployment(C2, undefined));
    await store.patchStatus("ModelDeployment", "default", "iris-prod", deployed);
    expect(told).toEqual(["synced 2 2"]);
    await store.patchStatus("Model", "default", "iris", { latestBuild: 3, sourceCommit: C2 });
    expect(told).toEqual(["synced 2 2", "rolled out 2 ok=true serving: iris-prod build 3"]);
    await store.patchStatus("ModelDeployment", "default", "iris-prod", {
      ...deployed,
      replicas: 1,
    });
    expect(told).toHaveLength(2);
    stop();
  });

  it("tells a refused commit once per reason, and a stalled deployment by name", async () => {
    const store = new LocalStore();
    await store.apply(repository());
    const { told, notifications } = recorder();
    const stop = notifySyncs(store, notifications);
    const stalled = [condition("Stalled", "True", "ValidationFailed")];
    const refused = {
      lastAttemptedCommit: C1,
      lastSyncError: "1 problem",
      conditions: stalled,
    };
    await store.patchStatus("ModelRepository", "default", "local", refused);
    await store.patchStatus("ModelRepository", "default", "local", {
      ...refused,
      lastSyncTime: NOW,
    });
    await store.patchStatus("ModelRepository", "default", "local", {
      ...refused,
      lastSyncError: "2 problems",
    });
    await store.apply(model(C2, { latestBuild: 3, sourceCommit: C2 }));
    await store.apply(deployment(C2, undefined));
    await store.patchStatus("ModelRepository", "default", "local", {
      lastSyncedCommit: C2,
      lastAttemptedCommit: C2,
      inventory: INVENTORY,
    });
    await store.patchStatus("ModelDeployment", "default", "iris-prod", {
      ...deployed,
      conditions: [condition("Stalled", "True", "RolloutFailed", "the rollout of build 3 failed")],
    });
    expect(told).toEqual([
      "failed 1 1 problem",
      "failed 1 2 problems",
      "synced 2 2",
      "rolled out 2 ok=false ModelDeployment iris-prod stalled: the rollout of build 3 failed",
    ]);
    stop();
  });

  it("counts what the store held when it started as told, and follows only the repositories it is given", async () => {
    const store = new LocalStore();
    await store.apply(repository());
    await store.patchStatus("ModelRepository", "default", "local", {
      lastSyncedCommit: C1,
      lastAttemptedCommit: C1,
    });
    const { told, notifications } = recorder();
    const stop = notifySyncs(store, notifications);
    await store.patchStatus("ModelRepository", "default", "local", {
      lastSyncedCommit: C1,
      lastAttemptedCommit: C1,
      lastSyncTime: NOW,
    });
    expect(told).toEqual([]);
    stop();
    const ignoring = notifySyncs(store, notifications, () => false);
    await store.patchStatus("ModelRepository", "default", "local", {
      lastSyncedCommit: C2,
      lastAttemptedCommit: C2,
    });
    expect(told).toEqual([]);
    ignoring();
  });
});
