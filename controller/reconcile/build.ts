// The ModelBuild reconciler: drives the Builder port until the build has ended, and records
// the phase, the image and, on failure, the builder's message (the script's last lines). A
// failed build is terminal: the ModelBuild stalls, and only a new commit makes a new build.
import type { Model, ModelBuild, ModelBuildStatus } from "../api/types.generated.ts";
import { formatName } from "../core/keys.ts";
import { type BuildProgress, storedMetadata } from "../core/ports.ts";
import type { ReconcileContext } from "./context.ts";
import { finished, StallingError, waitFor } from "./outcome.ts";
import { type Pass, type ReconcilerSpec, reconcileWith, type Step } from "./skeleton.ts";

/**
 * Why a build that has not ended is no longer wanted, if it is not: its Model is gone, or the
 * Model has a newer build (a newer commit supersedes this one before it finished).
 */
export function unwantedBecause(build: ModelBuild, model: Model | undefined): string | undefined {
  if (!model) return `its Model ${build.spec.model} is gone`;
  const latest = model.status?.latestBuild;
  if (latest !== undefined && latest > build.spec.number) {
    return `build ${latest} of ${build.spec.model} supersedes it`;
  }
  return undefined;
}

/** The build's status fields after the builder reported `progress`. */
export function progressStatus(
  previous: ModelBuildStatus,
  progress: BuildProgress,
  now: Date,
): ModelBuildStatus {
  return {
    ...previous,
    phase: progress.phase,
    startedAt: progress.startedAt ?? previous.startedAt ?? now.toISOString(),
    ...(progress.completedAt ? { completedAt: progress.completedAt } : {}),
    ...(progress.image ? { image: progress.image } : {}),
    ...(progress.message ? { message: progress.message } : {}),
  };
}

interface BuildData {
  progress?: BuildProgress;
}

type BuildStep = Step<"ModelBuild", BuildData>;

export function buildSteps(context: ReconcileContext): BuildStep[] {
  const failed = (build: ModelBuildStatus) =>
    new StallingError("BuildFailed", build.message ?? "the build failed");

  const reportFinished: BuildStep = async (pass) => {
    const status = pass.status;
    if (status.phase === "Failed") throw failed(status);
    if (status.phase !== "Succeeded") return undefined;
    pass.markReady("True", "BuildSucceeded", `built ${status.image ?? ""}`.trim());
    return finished();
  };

  /**
   * Builds the builder runs, as last seen: each holds a slot. Not the store's phases — after a
   * restart, a build recorded as Building may not run at all (the local builder starts it over).
   */
  const running = new Set<string>();
  let deciding: Promise<unknown> = Promise.resolve();

  /** Starts the build if a slot is free: at most `maxConcurrentBuilds` run at once. */
  const startWhenSlotFree = (pass: Pass<"ModelBuild", BuildData>): Promise<boolean> => {
    // One decision at a time, so that two passes never take the last slot together.
    const decision = deciding.then(async () => {
      if (running.size >= context.settings.maxConcurrentBuilds) return false;
      await context.builder.start(pass.object, { signal: pass.signal });
      running.add(formatName(pass.key));
      return true;
    });
    deciding = decision.catch(() => {});
    return decision;
  };

  const cancelWhenUnwanted: BuildStep = async (pass) => {
    const model = context.store.get("Model", pass.key.namespace, pass.object.spec.model);
    const why = unwantedBecause(pass.object, model);
    if (!why) return undefined;
    // The build's process tree is killed and what it left freed; the ModelBuild goes (a
    // revert to its code makes a new build, rather than finding a build that never ended).
    await context.builder.remove(pass.object, { signal: pass.signal });
    running.delete(formatName(pass.key));
    const uid = storedMetadata(pass.object).uid;
    await context.store.delete("ModelBuild", pass.key.namespace, pass.key.name, {
      signal: pass.signal,
      ...(uid ? { uid } : {}),
    });
    const message = `cancelled build ${pass.object.spec.number}: ${why}`;
    if (model) context.events.record(model, "Normal", "BuildCancelled", message);
    else context.log(`ModelBuild ${pass.key.namespace}/${pass.key.name}: ${message}`);
    return finished();
  };

  const startBuild: BuildStep = async (pass) => {
    const options = { signal: pass.signal };
    let progress = await context.builder.status(pass.object, options);
    // One already running (a restarted controller finds its Jobs) holds its slot too.
    if (progress?.phase === "Building") running.add(formatName(pass.key));
    if (!progress) {
      if (!(await startWhenSlotFree(pass))) {
        pass.status.phase = "Pending";
        return waitFor(
          "Queued",
          `waiting for a free build slot: ${context.settings.maxConcurrentBuilds} builds run at once (maxConcurrentBuilds)`,
          context.settings.buildPollMs,
        );
      }
      pass.event(
        "Normal",
        "BuildStarted",
        `building commit ${pass.object.spec.commit.slice(0, 7)}`,
      );
      progress = (await context.builder.status(pass.object, options)) ?? { phase: "Building" };
    }
    if (progress.phase !== "Building") running.delete(formatName(pass.key));
    pass.data.progress = progress;
    return undefined;
  };

  const trackBuild: BuildStep = async (pass) => {
    const progress = pass.data.progress as BuildProgress;
    pass.status = progressStatus(pass.status, progress, pass.now);
    switch (progress.phase) {
      case "Building":
        return waitFor("Building", "the build is running", context.settings.buildPollMs);
      case "Succeeded":
        pass.event("Normal", "BuildSucceeded", `built ${progress.image ?? ""}`.trim());
        pass.markReady("True", "BuildSucceeded", `built ${progress.image ?? ""}`.trim());
        return undefined;
      case "Failed":
        throw failed(pass.status);
    }
  };

  return [reportFinished, cancelWhenUnwanted, startBuild, trackBuild];
}

export function buildReconciler(context: ReconcileContext) {
  const spec: ReconcilerSpec<"ModelBuild", BuildData> = {
    kind: "ModelBuild",
    newData: () => ({}),
    steps: buildSteps(context),
  };
  return reconcileWith(spec, {
    store: context.store,
    events: context.events,
    now: () => context.clock.now(),
  });
}
