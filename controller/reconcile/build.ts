// The ModelBuild reconciler: drives the Builder port until the build has ended, and records
// the phase, the image and, on failure, the builder's message (the script's last lines). A
// failed build is terminal: the ModelBuild stalls, and only a new commit makes a new build.
import type { ModelBuildStatus } from "../api/types.generated.ts";
import type { BuildProgress } from "../core/ports.ts";
import type { ReconcileContext } from "./context.ts";
import { finished, StallingError, waitFor } from "./outcome.ts";
import { type ReconcilerSpec, reconcileWith, type Step } from "./skeleton.ts";

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

  const startBuild: BuildStep = async (pass) => {
    const options = { signal: pass.signal };
    let progress = await context.builder.status(pass.object, options);
    if (!progress) {
      await context.builder.start(pass.object, options);
      pass.event(
        "Normal",
        "BuildStarted",
        `building commit ${pass.object.spec.commit.slice(0, 7)}`,
      );
      progress = (await context.builder.status(pass.object, options)) ?? { phase: "Building" };
    }
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

  return [reportFinished, startBuild, trackBuild];
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
