// The ModelDeployment reconciler: resolves which build to run, gives every rollout a new
// deploymentId and a history record, drives the Runtime port (which replaces replicas one by
// one and is re-applied when its workload drifted), and reports the phase. What runs keeps
// running while a new build builds or fails.
import { createHash } from "node:crypto";
import { canonicalJson } from "../api/canonical-json.ts";
import type {
  DeploymentRecord,
  Model,
  ModelBuild,
  ModelDeploymentStatus,
} from "../api/types.generated.ts";
import { namespacedName } from "../core/keys.ts";
import {
  ANNOTATION_AUTHOR,
  ANNOTATION_COMMIT,
  ANNOTATION_RESTARTED_AT,
  LABEL_DEPLOYMENT,
} from "../core/labels.ts";
import { type RolloutSpec, type RolloutStatus, storedMetadata } from "../core/ports.ts";
import type { ReconcileContext } from "./context.ts";
import { buildName } from "./model.ts";
import { type Because, finished, StallingError, waitFor } from "./outcome.ts";
import { type Pass, type ReconcilerSpec, reconcileWith, type Step } from "./skeleton.ts";

export const DEFAULT_TIMEOUT_SECONDS = 30;

/** `latest` follows the Model's current build; a number pins that build. */
export function resolveBuildNumber(
  wanted: number | "latest" | undefined,
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
  /** What each replica may use: a change replaces the replicas (as a pod template's does). */
  resources?: RolloutSpec["resources"];
  /** The replicas' body limit: a change replaces them too. */
  maxRequestBytes?: number;
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
        // Only when set, so that the hashes of deployments made before they counted stay the
        // same: an upgrade restarts no replica that did not ask for these.
        ...(inputs.resources && Object.keys(inputs.resources).length > 0
          ? [canonicalJson(inputs.resources)]
          : []),
        ...(inputs.maxRequestBytes === undefined ? [] : [inputs.maxRequestBytes]),
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

/** The newest `limit` records; a record still open (it may be serving) is never dropped. */
export function trimHistory(history: DeploymentRecord[], limit: number): DeploymentRecord[] {
  const excess = history.length - Math.max(1, limit);
  if (excess <= 0) return history;
  let dropped = 0;
  return history.filter((entry) => {
    if (dropped >= excess || entry.stoppedAt === undefined) return true;
    dropped += 1;
    return false;
  });
}

/**
 * The rollout before `current` that may still be serving: of those not closed, the one that
 * completed (it replaced all before it, so at most one did), else the latest. A rollout that
 * failed after it never completed is passed over: it is not what serves, nor what to bring back.
 */
export function servingBefore(
  history: DeploymentRecord[] | undefined,
  current: number,
): DeploymentRecord | undefined {
  const open = [...(history ?? [])]
    .reverse()
    .filter((entry) => entry.deploymentId !== current && entry.stoppedAt === undefined);
  return open.find((entry) => entry.completedAt !== undefined) ?? open[0];
}

/** The Model has a commit it has not worked out its build for yet. */
export function modelIsBehind(model: Model): boolean {
  const commit = model.metadata.annotations?.[ANNOTATION_COMMIT];
  return commit !== undefined && model.status?.sourceCommit !== commit;
}

export type DeploymentPhase = NonNullable<ModelDeploymentStatus["phase"]>;

/** Why the wanted build cannot roll out (yet), and whether waiting can help. */
export type Blocker = Because & { terminal: boolean };

/** What stands between the deployment and a rollout of the build it wants, if anything. */
export function buildBlocker(
  modelName: string,
  model: Model | undefined,
  number: number | undefined,
  build: ModelBuild | undefined,
): Blocker | undefined {
  if (!model) {
    return {
      terminal: true,
      reason: "ModelNotFound",
      message: `Model "${modelName}" does not exist`,
    };
  }
  if (number === undefined) {
    return {
      terminal: false,
      reason: "Building",
      message: `waiting for the first build of ${modelName}`,
    };
  }
  if (!build) {
    return {
      terminal: true,
      reason: "BuildNotFound",
      message: `build ${number} of ${modelName} does not exist`,
    };
  }
  if (build.status?.phase === "Failed") {
    return {
      terminal: true,
      reason: "BuildFailed",
      message: `build ${number} failed: ${build.status.message ?? ""}`.trim(),
    };
  }
  if (build.status?.phase !== "Succeeded") {
    return { terminal: false, reason: "Building", message: `build ${number} is in progress` };
  }
  return undefined;
}

/**
 * The phase while the wanted build cannot roll out: what runs, if anything, keeps running, and
 * a wanted build that failed for good makes it Degraded, not Deployed.
 */
export function blockedPhase(blocker: Blocker, serving: boolean): DeploymentPhase {
  if (serving) return blocker.terminal ? "Degraded" : "Deployed";
  return blocker.terminal ? "Failed" : "Building";
}

/** The phase of a rollout the runtime is carrying out; a failed one is Degraded while an earlier one serves. */
export function rolloutPhase(rollout: RolloutStatus | undefined): DeploymentPhase {
  if (!rollout) return "Deploying";
  if (rollout.failure) return earlierReplicasServing(rollout) ? "Degraded" : "Failed";
  return rollout.complete ? "Deployed" : "Deploying";
}

function earlierReplicasServing(rollout: RolloutStatus): boolean {
  return rollout.servingReplicas > rollout.readyReplicas;
}

/**
 * The build that answers calls now: an earlier rollout's while any of its replicas is ready
 * (the current one has not replaced it), else the current one's once it has a ready replica.
 */
export function servingBuildOf(
  status: ModelDeploymentStatus,
  rollout: RolloutStatus | undefined,
): number | undefined {
  if (!rollout || rollout.servingReplicas === 0 || status.deploymentId === undefined) {
    return undefined;
  }
  const before = servingBefore(status.history, status.deploymentId);
  if (before && earlierReplicasServing(rollout)) return before.build;
  return rollout.readyReplicas > 0 ? status.build : undefined;
}

interface DeploymentData {
  model?: Model;
  build?: ModelBuild;
  number?: number;
  blocker?: Blocker;
}

type DeploymentPass = Pass<"ModelDeployment", DeploymentData>;
type DeploymentStep = Step<"ModelDeployment", DeploymentData>;

function isRunning(status: ModelDeploymentStatus): boolean {
  return status.deploymentId !== undefined && status.phase !== "Stopped";
}

export function deploymentSteps(context: ReconcileContext): DeploymentStep[] {
  const { store, runtime } = context;
  const wantedReplicas = (pass: DeploymentPass) => pass.object.spec.replicas ?? 1;

  /** Hands the current rollout to the runtime; a workload that drifted is put back. */
  const ensureRuntime = async (pass: DeploymentPass): Promise<void> => {
    const { status, object } = pass;
    if (status.deploymentId === undefined || status.build === undefined) return;
    const model = object.spec.model;
    const build = store.get("ModelBuild", pass.key.namespace, buildName(model, status.build));
    if (build?.status?.phase !== "Succeeded") return;
    const before = servingBefore(status.history, status.deploymentId);
    const previousBuild =
      before && store.get("ModelBuild", pass.key.namespace, buildName(model, before.build));
    const drifted = runtime.status(namespacedName(pass.key))?.drifted;
    const uid = storedMetadata(object).uid;
    await runtime.apply(
      {
        ...(before && previousBuild?.status?.phase === "Succeeded"
          ? { previous: { deploymentId: before.deploymentId, build: previousBuild } }
          : {}),
        deployment: namespacedName(pass.key),
        model,
        deploymentId: status.deploymentId,
        build,
        replicas: wantedReplicas(pass),
        env: object.spec.env ?? {},
        timeoutSeconds: object.spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
        ...(object.spec.resources ? { resources: object.spec.resources } : {}),
        ...(object.spec.maxRequestBytes === undefined
          ? {}
          : { maxRequestBytes: object.spec.maxRequestBytes }),
        ...(uid ? { ownerUid: uid } : {}),
      },
      { signal: pass.signal },
    );
    if (drifted) pass.event("Normal", "DriftCorrected", `put the replicas back: ${drifted}`);
  };

  /** The counts and URL of what the runtime runs now. */
  const reportCounts = (pass: DeploymentPass, rollout: RolloutStatus | undefined) => {
    // What answers calls, of whichever rollout: an old build serving while a new one fails to
    // start is 3/3, not 0/3.
    const serving = rollout?.servingReplicas ?? 0;
    pass.status.replicas = rollout?.replicas ?? 0;
    pass.status.readyReplicas = serving;
    pass.status.ready = `${serving}/${wantedReplicas(pass)}`;
    const servingBuild = servingBuildOf(pass.status, rollout);
    if (servingBuild === undefined) delete pass.status.servingBuild;
    else pass.status.servingBuild = servingBuild;
    pass.status.url = `${context.gatewayUrl()}/models/${pass.object.spec.model}/predict`;
    pass.status.selector = `${LABEL_DEPLOYMENT}=${pass.key.name}`;
  };

  const stopWhenStopped: DeploymentStep = async (pass) => {
    if (!pass.object.spec.stopped) return undefined;
    // Every pass, not only the first: a replica started by hand since is taken away again.
    const changed = await runtime.pause(namespacedName(pass.key), { signal: pass.signal });
    if (pass.status.phase !== "Stopped") {
      pass.status.history = closeRecords(pass.status.history, undefined, pass.now);
      pass.event("Normal", "Stopped", "spec.stopped is true: every replica was stopped");
    } else if (changed) {
      pass.event("Normal", "DriftCorrected", "spec.stopped is true: took the replicas away again");
    }
    pass.status.phase = "Stopped";
    delete pass.status.servingBuild;
    pass.status.replicas = 0;
    pass.status.readyReplicas = 0;
    pass.status.ready = `0/${wantedReplicas(pass)}`;
    pass.markReady("False", "Stopped", "spec.stopped is true");
    return finished();
  };

  const resolveBuild: DeploymentStep = async (pass) => {
    const spec = pass.object.spec;
    const model = store.get("Model", pass.key.namespace, spec.model);
    const number = resolveBuildNumber(spec.build, model?.status?.latestBuild);
    const build =
      number === undefined
        ? undefined
        : store.get("ModelBuild", pass.key.namespace, buildName(spec.model, number));
    pass.data.model = model;
    pass.data.number = number;
    pass.data.build = build;
    // A commit that changes the model's code and this deployment together must make one
    // rollout, not one for the new settings and another for the new build: while the Model has
    // not worked out its build for its commit, what runs keeps running unchanged.
    if (
      isRunning(pass.status) &&
      model &&
      (spec.build ?? "latest") === "latest" &&
      modelIsBehind(model)
    ) {
      pass.data.blocker = {
        terminal: false,
        reason: "WaitingForModel",
        message: `Model ${spec.model} is working out the build of its new commit`,
      };
      return undefined;
    }
    pass.data.blocker = buildBlocker(spec.model, model, number, build);
    return undefined;
  };

  const keepServingWhileBlocked: DeploymentStep = async (pass) => {
    const blocker = pass.data.blocker;
    if (!blocker) return undefined;
    const running = isRunning(pass.status);
    if (running) await ensureRuntime(pass);
    const rollout = running ? runtime.status(namespacedName(pass.key)) : undefined;
    const serving = (rollout?.servingReplicas ?? 0) > 0;
    if (running) reportCounts(pass, rollout);
    pass.status.phase = blockedPhase(blocker, serving);
    // What serves comes first: the reason may run to many lines (a build's last output). No
    // counts in it: a message that changed with each replica would be a new Warning each time.
    const message = serving
      ? `build ${pass.status.servingBuild ?? pass.status.build} keeps serving; ${blocker.message}`
      : blocker.message;
    if (serving && !blocker.terminal) pass.markReady("True", "ServingPreviousBuild", message);
    if (blocker.terminal) throw new StallingError(blocker.reason, message);
    return waitFor(blocker.reason, message);
  };

  const startRollout: DeploymentStep = async (pass) => {
    const spec = pass.object.spec;
    const build = pass.data.build as ModelBuild;
    const number = pass.data.number as number;
    const hash = rolloutHash({
      model: spec.model,
      buildKey: build.spec.buildKey,
      build: number,
      env: spec.env ?? {},
      timeoutSeconds: spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
      restartedAt: pass.object.metadata.annotations?.[ANNOTATION_RESTARTED_AT],
      ...(spec.resources ? { resources: spec.resources } : {}),
      ...(spec.maxRequestBytes === undefined ? {} : { maxRequestBytes: spec.maxRequestBytes }),
    });
    const status = pass.status;
    if (status.rolloutHash === hash && isRunning(status)) return undefined;
    // Recorded before the runtime acts, so that a crash here never allocates a second id.
    const deploymentId = await store.allocateDeploymentId({ signal: pass.signal });
    const author = pass.data.model?.metadata.annotations?.[ANNOTATION_AUTHOR];
    // What asked for it is the commit synced now; a build reused by a revert is older.
    const cause = pass.object.metadata.annotations?.[ANNOTATION_COMMIT] ?? build.spec.commit;
    const record: DeploymentRecord = {
      deploymentId,
      build: number,
      commit: cause,
      buildCommit: build.spec.commit,
      deployedAt: pass.now.toISOString(),
      ...(author ? { deployedBy: author } : {}),
    };
    pass.status = {
      ...status,
      phase: "Deploying",
      build: number,
      ...(build.status?.image ? { image: build.status.image } : {}),
      deploymentId,
      rolloutHash: hash,
      history: trimHistory([...(status.history ?? []), record], context.settings.historyLimit),
    };
    // Written now: the id must be on record before any replica runs it.
    await store.patchStatus("ModelDeployment", pass.key.namespace, pass.key.name, pass.status, {
      signal: pass.signal,
    });
    pass.event("Normal", "RolloutStarted", `rollout ${deploymentId} of build ${number}`);
    return undefined;
  };

  const applyRollout: DeploymentStep = async (pass) => {
    await ensureRuntime(pass);
    return undefined;
  };

  const reportRollout: DeploymentStep = async (pass) => {
    const rollout = runtime.status(namespacedName(pass.key));
    const phase = rolloutPhase(rollout);
    const number = pass.status.build;
    reportCounts(pass, rollout);
    pass.status.phase = phase;
    // The current rollout's own replicas: what its progress is counted in.
    const ready = rollout?.readyReplicas ?? 0;
    if (phase === "Failed" || phase === "Degraded") {
      // The failed build's number, and what serves instead if anything; no counts (see above).
      const failed = `the rollout of build ${number} failed: ${rollout?.failure ?? "unknown"}`;
      const serving = pass.status.servingBuild;
      throw new StallingError(
        "RolloutFailed",
        phase === "Degraded" && serving !== undefined
          ? `build ${serving} keeps serving; ${failed}`
          : failed,
      );
    }
    if (phase === "Deploying") {
      pass.markReady(
        ready > 0 ? "True" : "False",
        "RolloutInProgress",
        `rolling out build ${number}: ${ready}/${wantedReplicas(pass)} ready`,
      );
      return waitFor(
        "RolloutInProgress",
        `rollout ${pass.status.deploymentId} in progress`,
        context.settings.rolloutPollMs,
      );
    }
    // The rollout has replaced every earlier one: their records end now, and this one's says
    // when it completed (a later scale of the same rollout is not a second completion).
    const history = closeRecords(pass.status.history, pass.status.deploymentId, pass.now);
    const record = history.find((entry) => entry.deploymentId === pass.status.deploymentId);
    if (record && !record.completedAt) {
      record.completedAt = pass.now.toISOString();
      pass.event("Normal", "RolloutCompleted", `build ${number} deployed on ${ready} replicas`);
    }
    pass.status.history = history;
    pass.markReady("True", "Deployed", `build ${number} serves on ${ready} replicas`);
    return undefined;
  };

  return [
    stopWhenStopped,
    resolveBuild,
    keepServingWhileBlocked,
    startRollout,
    applyRollout,
    reportRollout,
  ];
}

export function deploymentReconciler(context: ReconcileContext) {
  const spec: ReconcilerSpec<"ModelDeployment", DeploymentData> = {
    kind: "ModelDeployment",
    newData: () => ({}),
    steps: deploymentSteps(context),
    // A workload is checked for drift now and then, even when no event says so; a stopped one
    // too, so that it stays at no replicas.
    resyncAfterMs: () => context.settings.deploymentResyncMs,
    // Deleted or pruned: its replicas go too.
    whenMissing: (key, signal) => context.runtime.stop(namespacedName(key), { signal }),
  };
  return reconcileWith(spec, {
    store: context.store,
    events: context.events,
    now: () => context.clock.now(),
  });
}
