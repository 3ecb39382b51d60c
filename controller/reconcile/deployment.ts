// The ModelDeployment reconciler: resolves which build to run, gives every rollout a new
// deploymentId and a history record, drives the Runtime port (which replaces replicas one by
// one), and reports the phase. What runs keeps running while a new build builds or fails.
import { createHash } from "node:crypto";
import { setCondition } from "../api/conditions.ts";
import type {
  DeploymentRecord,
  Model,
  ModelBuild,
  ModelDeployment,
  ModelDeploymentStatus,
} from "../api/types.generated.ts";
import type { RolloutStatus } from "../platform/ports.ts";
import {
  ANNOTATION_AUTHOR,
  ANNOTATION_COMMIT,
  ANNOTATION_RESTARTED_AT,
  type ReconcileContext,
} from "./context.ts";
import { buildName } from "./model.ts";
import { done, type ObjectKey, type ReconcileResult, requeueAfter } from "./queue.ts";

export const ROLLOUT_POLL_MS = 300;
const DEFAULT_TIMEOUT_SECONDS = 30;

/** `latest` follows the Model's current build; a number pins that build. */
export function resolveBuildNumber(
  wanted: ModelDeployment["spec"]["build"],
  latestBuild: number | undefined,
): number | undefined {
  return wanted === undefined || wanted === "latest" ? latestBuild : wanted;
}

export interface RolloutInputs {
  model: string;
  /** The build's key: two models' build 1 are different builds. */
  buildKey: string;
  build: number;
  env: Record<string, string>;
  timeoutSeconds: number;
  restartedAt: string | undefined;
}

/** What makes a new rollout (a new deploymentId); scaling replicas does not. */
export function rolloutHash(inputs: RolloutInputs): string {
  const env = Object.entries(inputs.env).sort(([a], [b]) => a.localeCompare(b));
  return createHash("sha256")
    .update(
      JSON.stringify([
        inputs.model,
        inputs.buildKey,
        inputs.build,
        env,
        inputs.timeoutSeconds,
        inputs.restartedAt ?? "",
      ]),
    )
    .digest("hex");
}

/**
 * Closes every record but `current`'s: called when `current` has replaced them all (or with
 * undefined when the deployment stops). Until then, the rollouts before it may still serve.
 */
export function closeRecords(
  history: DeploymentRecord[] | undefined,
  current: number | undefined,
  now: Date,
): DeploymentRecord[] {
  return (history ?? []).map((entry) =>
    entry.stoppedAt || entry.deploymentId === current
      ? entry
      : { ...entry, stoppedAt: now.toISOString() },
  );
}

/** The latest rollout before `current` that has not been closed: it may still be serving. */
export function servingBefore(
  history: DeploymentRecord[] | undefined,
  current: number,
): DeploymentRecord | undefined {
  return [...(history ?? [])]
    .reverse()
    .find((entry) => entry.deploymentId !== current && entry.stoppedAt === undefined);
}

/** The Model has a commit it has not worked out its build for yet. */
export function modelIsBehind(model: Model): boolean {
  const commit = model.metadata.annotations?.[ANNOTATION_COMMIT];
  return commit !== undefined && model.status?.sourceCommit !== commit;
}

export type DeploymentPhase = NonNullable<ModelDeploymentStatus["phase"]>;

/** The phase, from the build we want and what the runtime reports. */
export function deploymentPhase(
  wantedBuild: ModelBuild | undefined,
  running: boolean,
  rollout: RolloutStatus | undefined,
): DeploymentPhase {
  if (wantedBuild?.status?.phase !== "Succeeded") {
    if (running) return rollout?.complete ? "Deployed" : "Deploying";
    return wantedBuild?.status?.phase === "Failed" ? "Failed" : "Building";
  }
  if (!rollout) return "Deploying";
  if (rollout.failure) return "Failed";
  return rollout.complete ? "Deployed" : "Deploying";
}

/** The store's uid (on a Kubernetes API server, what owner references need). */
function uidOf(object: { metadata: unknown }): string | undefined {
  return (object.metadata as { uid?: string }).uid;
}

function generationOf(object: { metadata: unknown }): number | undefined {
  return (object.metadata as { generation?: number }).generation;
}

export function deploymentReconciler(context: ReconcileContext) {
  return async (key: ObjectKey): Promise<ReconcileResult> => {
    const { store, runtime } = context;
    const runtimeKey = `${key.namespace}/${key.name}`;
    const deployment = store.get("ModelDeployment", key.namespace, key.name);
    if (!deployment) {
      // Deleted or pruned: its replicas go too.
      await runtime.stop(runtimeKey);
      return done;
    }
    const now = context.clock.now();
    const generation = generationOf(deployment);
    const spec = deployment.spec;
    let status: ModelDeploymentStatus = { ...deployment.status };
    const write = async (update: ModelDeploymentStatus) => {
      status = update;
      await store.patchStatus("ModelDeployment", key.namespace, key.name, update);
    };
    const ready = (condition: { status: "True" | "False"; reason: string; message: string }) =>
      setCondition(status.conditions, { type: "Ready", ...condition }, now, generation);

    if (spec.stopped) {
      if (status.phase !== "Stopped") {
        await write({ ...status, phase: "Stopping" });
        await runtime.stop(runtimeKey);
        const history = closeRecords(status.history, undefined, now);
        context.log(`deployment ${key.name}: stopped`);
        await write({
          ...status,
          phase: "Stopped",
          history,
          replicas: 0,
          readyReplicas: 0,
          ready: `0/${spec.replicas ?? 1}`,
          ...(generation === undefined ? {} : { observedGeneration: generation }),
          conditions: ready({
            status: "False",
            reason: "Stopped",
            message: "spec.stopped is true",
          }),
        });
      }
      return done;
    }

    const model = store.get("Model", key.namespace, spec.model);
    const number = resolveBuildNumber(spec.build, model?.status?.latestBuild);
    const build =
      number === undefined
        ? undefined
        : store.get("ModelBuild", key.namespace, buildName(spec.model, number));
    const running = status.deploymentId !== undefined && status.phase !== "Stopped";
    // A commit that changes the model's code and this deployment together must make one
    // rollout, not one for the new settings and another for the new build: while the Model has
    // not worked out its build for its commit, what runs keeps running unchanged.
    if (running && model && (spec.build ?? "latest") === "latest" && modelIsBehind(model)) {
      await ensureRuntime(context, deployment, status, key);
      return done;
    }

    if (!model || number === undefined || !build || build.status?.phase !== "Succeeded") {
      const why = !model
        ? { reason: "ModelNotFound", message: `Model "${spec.model}" does not exist` }
        : number === undefined
          ? { reason: "Building", message: `waiting for the first build of ${spec.model}` }
          : !build
            ? {
                reason: "BuildNotFound",
                message: `build ${number} of ${spec.model} does not exist`,
              }
            : build.status?.phase === "Failed"
              ? {
                  reason: "BuildFailed",
                  message: `build ${number} failed: ${build.status.message ?? ""}`,
                }
              : { reason: "Building", message: `build ${number} is in progress` };
      const rollout = runtime.status(runtimeKey);
      const phase = deploymentPhase(build, running, rollout);
      const serving = running && (rollout?.readyReplicas ?? 0) > 0;
      await write({
        ...status,
        phase: !model || why.reason === "BuildNotFound" ? (serving ? phase : "Failed") : phase,
        conditions: ready(
          serving
            ? {
                status: "True",
                reason: "ServingPreviousBuild",
                message: `serving build ${status.build}; ${why.message}`,
              }
            : { status: "False", ...why },
        ),
      });
      if (running) await ensureRuntime(context, deployment, status, key);
      // Build progress arrives as ModelBuild events; nothing to poll here.
      return done;
    }

    const hash = rolloutHash({
      model: spec.model,
      buildKey: build.spec.buildKey,
      build: number,
      env: spec.env ?? {},
      timeoutSeconds: spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
      restartedAt: deployment.metadata.annotations?.[ANNOTATION_RESTARTED_AT],
    });
    if (
      status.rolloutHash !== hash ||
      status.deploymentId === undefined ||
      status.phase === "Stopped"
    ) {
      // Recorded before the runtime acts, so that a crash here never allocates a second id.
      const deploymentId = await store.allocateDeploymentId();
      const record: DeploymentRecord = {
        deploymentId,
        build: number,
        commit: build.spec.commit,
        deployedAt: now.toISOString(),
        ...(model.metadata.annotations?.[ANNOTATION_AUTHOR]
          ? { deployedBy: model.metadata.annotations[ANNOTATION_AUTHOR] }
          : {}),
      };
      context.log(`deployment ${key.name}: rollout ${deploymentId} of build ${number}`);
      await write({
        ...status,
        phase: "Deploying",
        build: number,
        image: build.status.image,
        deploymentId,
        rolloutHash: hash,
        history: [...(status.history ?? []), record],
      });
    }
    await ensureRuntime(context, deployment, status, key);
    const rollout = runtime.status(runtimeKey);
    const phase = deploymentPhase(build, true, rollout);
    const wanted = spec.replicas ?? 1;
    const readyCount = rollout?.readyReplicas ?? 0;
    const wasDeployed =
      deployment.status?.phase === "Deployed" &&
      deployment.status.deploymentId === status.deploymentId;
    await write({
      ...status,
      // The rollout has replaced every earlier one: their records end now.
      ...(phase === "Deployed"
        ? { history: closeRecords(status.history, status.deploymentId, now) }
        : {}),
      phase,
      replicas: rollout?.replicas ?? 0,
      readyReplicas: readyCount,
      ready: `${readyCount}/${wanted}`,
      url: `${context.gatewayUrl()}/models/${spec.model}/predict`,
      ...(phase === "Deployed" && generation !== undefined
        ? { observedGeneration: generation }
        : {}),
      conditions: setCondition(
        ready(
          phase === "Deployed"
            ? {
                status: "True",
                reason: "Deployed",
                message: `build ${number} serves on ${readyCount} replicas`,
              }
            : phase === "Failed"
              ? {
                  status: "False",
                  reason: "RolloutFailed",
                  message: rollout?.failure ?? "the rollout failed",
                }
              : {
                  status: readyCount > 0 ? "True" : "False",
                  reason: "RolloutInProgress",
                  message: `rolling out build ${number}: ${readyCount}/${wanted} ready`,
                },
        ),
        {
          type: "Reconciling",
          status: phase === "Deploying" ? "True" : "False",
          reason: phase === "Deploying" ? "RolloutInProgress" : "Idle",
          message: phase === "Deploying" ? `rollout ${status.deploymentId} in progress` : "",
        },
        now,
        generation,
      ),
    });
    if (phase === "Deployed" && !wasDeployed) {
      context.log(`deployment ${key.name}: build ${number} deployed on ${readyCount} replicas`);
    }
    if (phase === "Failed" && deployment.status?.phase !== "Failed") {
      context.log(`deployment ${key.name}: rollout FAILED — ${rollout?.failure ?? ""}`);
    }
    return phase === "Deploying" ? requeueAfter(ROLLOUT_POLL_MS) : done;
  };
}

/** Hands the current rollout to the runtime (it does nothing when that already runs). */
async function ensureRuntime(
  context: ReconcileContext,
  deployment: ModelDeployment,
  status: ModelDeploymentStatus,
  key: ObjectKey,
): Promise<void> {
  if (status.deploymentId === undefined || status.build === undefined) return;
  const build = context.store.get(
    "ModelBuild",
    key.namespace,
    buildName(deployment.spec.model, status.build),
  );
  if (build?.status?.phase !== "Succeeded") return;
  const before = servingBefore(status.history, status.deploymentId);
  const previousBuild =
    before &&
    context.store.get("ModelBuild", key.namespace, buildName(deployment.spec.model, before.build));
  await context.runtime.apply({
    ...(before && previousBuild?.status?.phase === "Succeeded"
      ? { previous: { deploymentId: before.deploymentId, build: previousBuild } }
      : {}),
    key: `${key.namespace}/${key.name}`,
    model: deployment.spec.model,
    deploymentId: status.deploymentId,
    build,
    replicas: deployment.spec.replicas ?? 1,
    env: deployment.spec.env ?? {},
    timeoutSeconds: deployment.spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
    ...(deployment.spec.resources ? { resources: deployment.spec.resources } : {}),
    ...(uidOf(deployment)
      ? { owner: { name: deployment.metadata.name, uid: uidOf(deployment) as string } }
      : {}),
  });
}
