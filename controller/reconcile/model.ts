// The Model reconciler: works out the build key of the model's code and settings at its commit,
// and creates the next ModelBuild for a key never built, or points at the build that has it.
// A `git revert` brings back an old key, so it reuses the old build: rollback without a build.
import { createHash } from "node:crypto";
import { setCondition } from "../api/conditions.ts";
import type { Model, ModelBuild, ModelStatus } from "../api/types.generated.ts";
import {
  ANNOTATION_COMMIT,
  ANNOTATION_MANIFEST_FILES,
  ANNOTATION_REBUILD,
  ANNOTATION_SOURCE_PATH,
  LABEL_MANAGED_BY,
  LABEL_MODEL,
  LABEL_SOURCE,
  type ReconcileContext,
} from "./context.ts";
import { done, type ObjectKey, type ReconcileResult } from "./queue.ts";

export interface BuildKeyInputs {
  /** The files of the source path, the manifests among them left out (GitSource.contentId). */
  content: string;
  runtime: string;
  file: string;
  function: string;
  buildScript: string | undefined;
  baseImage: string;
  /** The `modelship.dev/rebuild` annotation: changing it builds the same code again. */
  rebuild?: string;
}

/**
 * DESIGN §3: sha256 of the source path's content and everything else that shapes a build. The
 * content leaves the manifests out (DESIGN says the tree id; but a manifest beside the code is
 * in that tree, and changing `replicas` must not rebuild).
 */
export function computeBuildKey(inputs: BuildKeyInputs): string {
  const parts = [
    inputs.content,
    inputs.runtime,
    inputs.file,
    inputs.function,
    inputs.buildScript ?? "",
    inputs.baseImage,
    // Only when set, so that keys made before the annotation existed stay the same.
    ...(inputs.rebuild ? [inputs.rebuild] : []),
  ];
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex");
}

/** The manifest files annotation, or none when it is missing or not a JSON list. */
export function manifestFilesOf(annotation: string | undefined): string[] {
  try {
    const files = JSON.parse(annotation ?? "[]") as unknown;
    return Array.isArray(files) ? files.filter((file) => typeof file === "string") : [];
  } catch {
    return [];
  }
}

export type BuildChoice = { reuse: ModelBuild } | { create: number };

/** The build with this key, or the number the next build gets (numbers only grow). */
export function chooseBuild(builds: ModelBuild[], buildKey: string): BuildChoice {
  const same = builds.find((build) => build.spec.buildKey === buildKey);
  if (same) return { reuse: same };
  const highest = Math.max(0, ...builds.map((build) => build.spec.number));
  return { create: highest + 1 };
}

export function buildName(model: string, number: number): string {
  return `${model}-${number}`;
}

/** The Model's Ready condition, from its current build. */
export function modelReadiness(build: ModelBuild): {
  status: "True" | "False";
  reason: string;
  message: string;
} {
  const number = build.spec.number;
  switch (build.status?.phase) {
    case "Succeeded":
      return { status: "True", reason: "BuildSucceeded", message: `build ${number} is ready` };
    case "Failed":
      return {
        status: "False",
        reason: "BuildFailed",
        message: `build ${number} failed: ${build.status.message ?? "no message"}`,
      };
    default:
      return { status: "False", reason: "Building", message: `build ${number} is in progress` };
  }
}

export function newModelBuild(
  model: Model,
  number: number,
  buildKey: string,
  tree: string,
  commit: string,
  sourcePath: string,
): ModelBuild {
  const labels = model.metadata.labels ?? {};
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: {
      name: buildName(model.metadata.name, number),
      namespace: model.metadata.namespace ?? "default",
      labels: {
        [LABEL_MODEL]: model.metadata.name,
        [LABEL_MANAGED_BY]: "modelship",
        ...(labels[LABEL_SOURCE] ? { [LABEL_SOURCE]: labels[LABEL_SOURCE] } : {}),
      },
    },
    spec: {
      model: model.metadata.name,
      number,
      commit,
      tree,
      buildKey,
      ...(labels[LABEL_SOURCE] ? { repository: labels[LABEL_SOURCE] } : {}),
      sourcePath,
      runtime: model.spec.runtime,
      file: model.spec.file,
      function: model.spec.function,
      ...(model.spec.buildScript ? { buildScript: model.spec.buildScript } : {}),
    },
  };
}

export function modelReconciler(context: ReconcileContext) {
  return async (key: ObjectKey): Promise<ReconcileResult> => {
    const { store } = context;
    const model = store.get("Model", key.namespace, key.name);
    if (!model) return done;
    const labels = model.metadata.labels ?? {};
    const annotations = model.metadata.annotations ?? {};
    const repository = labels[LABEL_SOURCE];
    const commit = annotations[ANNOTATION_COMMIT];
    const sourcePath = annotations[ANNOTATION_SOURCE_PATH];
    const generation = (model.metadata as { generation?: number }).generation;
    const now = context.clock.now();
    if (!repository || !commit || !sourcePath) {
      // Created by hand, not by a sync: there is no commit to build from.
      await store.patchStatus("Model", key.namespace, key.name, {
        ...model.status,
        conditions: setCondition(
          model.status?.conditions,
          {
            type: "Stalled",
            status: "True",
            reason: "NoSource",
            message:
              "this Model was not applied from a ModelRepository, so there is no commit to build",
          },
          now,
          generation,
        ),
      });
      return { type: "terminal", error: new Error(`Model ${key.name} has no source commit`) };
    }

    const source = { namespace: key.namespace, name: repository };
    const tree = await context.sources.treeId(source, commit, sourcePath);
    const content = await context.sources.contentId(
      source,
      commit,
      sourcePath,
      new Set(manifestFilesOf(annotations[ANNOTATION_MANIFEST_FILES])),
    );
    const buildKey = computeBuildKey({
      content,
      runtime: model.spec.runtime,
      file: model.spec.file,
      function: model.spec.function,
      buildScript: model.spec.buildScript,
      baseImage: context.baseImage(model.spec.runtime),
      rebuild: annotations[ANNOTATION_REBUILD],
    });
    const builds = store
      .list("ModelBuild", key.namespace)
      .filter((build) => build.spec.model === key.name);
    const choice = chooseBuild(builds, buildKey);
    let build: ModelBuild;
    if ("reuse" in choice) {
      build = choice.reuse;
    } else {
      build = await store.apply(
        newModelBuild(model, choice.create, buildKey, tree, commit, sourcePath),
      );
      context.log(
        `model ${key.name}: new build ${choice.create} from commit ${commit.slice(0, 7)}`,
      );
    }
    const readiness = modelReadiness(build);
    let conditions = setCondition(
      model.status?.conditions,
      { type: "Ready", ...readiness },
      now,
      generation,
    );
    conditions = setCondition(
      conditions,
      {
        type: "Reconciling",
        status: readiness.reason === "Building" ? "True" : "False",
        reason: readiness.reason === "Building" ? "Building" : "Idle",
        message: readiness.message,
      },
      now,
      generation,
    );
    const status: ModelStatus = {
      latestBuild: build.spec.number,
      buildKey,
      sourceCommit: commit,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      conditions: conditions.filter((condition) => condition.type !== "Stalled"),
    };
    await store.patchStatus("Model", key.namespace, key.name, status);
    return done;
  };
}
