// The ModelBuild reconciler: drives the Builder port until the build has ended, and records
// the phase, the image and, on failure, the builder's message (the script's last lines).
import { setCondition } from "../api/conditions.ts";
import type { ModelBuild, ModelBuildStatus } from "../api/types.generated.ts";
import type { BuildProgress } from "../platform/ports.ts";
import type { ReconcileContext } from "./context.ts";
import { done, type ObjectKey, type ReconcileResult, requeueAfter } from "./queue.ts";

/** How often a running build is polled. */
export const BUILD_POLL_MS = 500;

export function isFinished(build: ModelBuild): boolean {
  return build.status?.phase === "Succeeded" || build.status?.phase === "Failed";
}

/** The build's status after the builder reported `progress` (undefined: not started yet). */
export function buildStatus(
  build: ModelBuild,
  progress: BuildProgress | undefined,
  now: Date,
): ModelBuildStatus {
  const previous = build.status ?? {};
  const generation = (build.metadata as { generation?: number }).generation;
  if (!progress) return { ...previous, phase: "Pending" };
  const status: ModelBuildStatus = {
    ...previous,
    phase: progress.phase,
    startedAt: progress.startedAt ?? previous.startedAt ?? now.toISOString(),
    ...(progress.completedAt ? { completedAt: progress.completedAt } : {}),
    ...(progress.image ? { image: progress.image } : {}),
    ...(progress.message ? { message: progress.message } : {}),
  };
  const ended = progress.phase !== "Building";
  status.conditions = setCondition(
    previous.conditions,
    {
      type: "Ready",
      status: progress.phase === "Succeeded" ? "True" : "False",
      reason: progress.phase === "Building" ? "Building" : `Build${progress.phase}`,
      message:
        progress.phase === "Failed"
          ? (progress.message ?? "the build failed")
          : progress.phase === "Succeeded"
            ? `built ${progress.image ?? ""}`.trim()
            : "the build is running",
    },
    now,
    generation,
  );
  if (ended && generation !== undefined) status.observedGeneration = generation;
  return status;
}

export function buildReconciler(context: ReconcileContext) {
  return async (key: ObjectKey): Promise<ReconcileResult> => {
    const { store, builder } = context;
    const build = store.get("ModelBuild", key.namespace, key.name);
    if (!build || isFinished(build)) return done;
    let progress = await builder.status(build);
    if (!progress) {
      await builder.start(build);
      context.log(`build ${key.name}: started (commit ${build.spec.commit.slice(0, 7)})`);
      progress = (await builder.status(build)) ?? { phase: "Building" };
    }
    const status = buildStatus(build, progress, context.clock.now());
    await store.patchStatus("ModelBuild", key.namespace, key.name, status);
    if (progress.phase === "Building") return requeueAfter(BUILD_POLL_MS);
    context.log(
      progress.phase === "Succeeded"
        ? `build ${key.name}: succeeded`
        : `build ${key.name}: FAILED — ${(progress.message ?? "").split("\n")[0]}`,
    );
    return done;
  };
}
