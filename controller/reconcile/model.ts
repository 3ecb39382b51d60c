// The Model reconciler: works out the build key of the model's code and settings at its commit,
// creates the next ModelBuild for a key never built or points at the build that has it, and
// garbage-collects builds past the retention setting. A `git revert` brings back an old key, so
// it reuses the old build: rollback without a build.
import { createHash } from "node:crypto";
import { posix } from "node:path";
import type { Model, ModelBuild, ModelDeployment } from "../api/types.generated.ts";
import {
  ANNOTATION_COMMIT,
  ANNOTATION_MANIFEST_FILES,
  ANNOTATION_NESTED_SOURCES,
  ANNOTATION_REBUILD,
  ANNOTATION_SOURCE_PATH,
  isManaged,
  LABEL_MODEL,
  LABEL_REPOSITORY,
  ownedLabels,
} from "../core/labels.ts";
import { storedMetadata } from "../core/ports.ts";
import { excludePatterns, literalPattern } from "../source/source-filter.ts";
import type { ReconcileContext } from "./context.ts";
import { StallingError, waitFor } from "./outcome.ts";
import { type Pass, type ReconcilerSpec, reconcileWith, type Step } from "./skeleton.ts";

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
 * sha256 of the source path's content and everything else that shapes a build. The content
 * leaves the manifests out (the tree id would not: a manifest beside the code is in that tree,
 * and changing `replicas` must not rebuild).
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

/** What a build of a Model is made from: its key, and what it leaves out of its source path. */
export interface BuildIdentity {
  buildKey: string;
  exclude: string[];
}

/**
 * The build identity of a Model as a sync applies it (the source path, manifest files and nested
 * sources in its annotations): what the Model reconciler builds, and what `modelship plan` says
 * it will build. `contentOf` hashes the source path's files, less the manifests and `exclude`.
 */
export async function buildIdentityOf(
  model: Pick<Model, "metadata" | "spec">,
  contentOf: (manifestFiles: ReadonlySet<string>, exclude: string[]) => Promise<string>,
  baseImage: (runtime: Model["spec"]["runtime"]) => string,
): Promise<BuildIdentity> {
  const annotations = model.metadata.annotations ?? {};
  const spec = model.spec;
  const exclude = excludePatterns(
    annotations[ANNOTATION_SOURCE_PATH] ?? ".",
    pathListOf(annotations[ANNOTATION_NESTED_SOURCES]),
    spec.source?.exclude,
  );
  // The examples are for comparing builds, not part of one: editing them builds nothing.
  if (spec.examplesFile) exclude.push(`/${literalPattern(posix.normalize(spec.examplesFile))}`);
  const content = await contentOf(
    new Set(pathListOf(annotations[ANNOTATION_MANIFEST_FILES])),
    exclude,
  );
  const buildKey = computeBuildKey({
    content,
    runtime: spec.runtime,
    file: spec.file,
    function: spec.function,
    buildScript: spec.buildScript,
    baseImage: baseImage(spec.runtime),
    rebuild: annotations[ANNOTATION_REBUILD],
  });
  return { buildKey, exclude };
}

/** A JSON list of paths in an annotation (manifest files, nested sources), or none when it is missing or not one. */
export function pathListOf(annotation: string | undefined): string[] {
  try {
    const files = JSON.parse(annotation ?? "[]") as unknown;
    return Array.isArray(files) ? files.filter((file) => typeof file === "string") : [];
  } catch {
    return [];
  }
}

export type BuildChoice = { reuse: ModelBuild } | { create: number };

/**
 * The build with this key among those the controller made, or the number the next build gets:
 * numbers only grow, past every build of the model, whoever made it.
 */
export function chooseBuild(builds: ModelBuild[], buildKey: string): BuildChoice {
  const same = builds.find(
    (build) => build.spec.buildKey === buildKey && isManaged(build.metadata.labels),
  );
  if (same) return { reuse: same };
  const highest = Math.max(0, ...builds.map((build) => build.spec.number));
  return { create: highest + 1 };
}

export function buildName(model: string, number: number): string {
  return `${model}-${number}`;
}

export function newModelBuild(
  model: Model,
  number: number,
  buildKey: string,
  tree: string,
  commit: string,
  sourcePath: string,
  exclude: string[] = [],
): ModelBuild {
  const labels = model.metadata.labels ?? {};
  const repository = labels[LABEL_REPOSITORY];
  // No ownerReference to the Model, on purpose: a Model removed from git and restored by a
  // revert gets its builds back (rollback without a build). Retention collects old builds, and
  // deleting the ModelRepository deletes its models' builds.
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: {
      name: buildName(model.metadata.name, number),
      namespace: model.metadata.namespace ?? "default",
      labels: ownedLabels({
        [LABEL_MODEL]: model.metadata.name,
        ...(repository ? { [LABEL_REPOSITORY]: repository } : {}),
      }),
    },
    spec: {
      model: model.metadata.name,
      number,
      commit,
      tree,
      buildKey,
      ...(repository ? { repository } : {}),
      sourcePath,
      ...(exclude.length > 0 ? { exclude } : {}),
      runtime: model.spec.runtime,
      file: model.spec.file,
      function: model.spec.function,
      ...(model.spec.buildScript ? { buildScript: model.spec.buildScript } : {}),
    },
  };
}

/** Build numbers a deployment of the model still needs: what it runs, pins, or has run. */
export function buildsInUse(model: string, deployments: ModelDeployment[]): Set<number> {
  const used = new Set<number>();
  for (const deployment of deployments) {
    if (deployment.spec.model !== model) continue;
    if (typeof deployment.spec.build === "number") used.add(deployment.spec.build);
    if (deployment.status?.build !== undefined) used.add(deployment.status.build);
    for (const record of deployment.status?.history ?? []) used.add(record.build);
  }
  return used;
}

/**
 * The builds retention removes: all but the newest `keep`, the current one, and those in use.
 * A revert to a removed build's code makes a new build.
 */
export function buildsToCollect(
  builds: ModelBuild[],
  current: number | undefined,
  inUse: ReadonlySet<number>,
  keep: number,
): ModelBuild[] {
  const newestFirst = [...builds].sort((a, b) => b.spec.number - a.spec.number);
  return newestFirst
    .slice(Math.max(0, keep))
    .filter((build) => build.spec.number !== current && !inUse.has(build.spec.number));
}

interface ModelData {
  source?: { repository: string; commit: string; sourcePath: string };
  buildKey?: string;
  tree?: string;
  /** What its build leaves out of the source path (source-filter.ts). */
  exclude?: string[];
  build?: ModelBuild;
}

type ModelStep = Step<"Model", ModelData>;

export function modelSteps(context: ReconcileContext): ModelStep[] {
  const { store } = context;
  /** Every build of the model: a hand-made one counts for numbering, never for reuse. */
  const buildsOf = (pass: Pass<"Model", ModelData>) =>
    store
      .list("ModelBuild", pass.key.namespace)
      .filter((build) => build.spec.model === pass.key.name);
  /** The model's builds that the controller made: the only ones retention may delete. */
  const ownBuildsOf = (pass: Pass<"Model", ModelData>) =>
    buildsOf(pass).filter(
      (build) =>
        isManaged(build.metadata.labels) && build.metadata.labels?.[LABEL_MODEL] === pass.key.name,
    );

  const requireSource: ModelStep = async (pass) => {
    const repository = pass.object.metadata.labels?.[LABEL_REPOSITORY];
    const annotations = pass.object.metadata.annotations ?? {};
    const commit = annotations[ANNOTATION_COMMIT];
    const sourcePath = annotations[ANNOTATION_SOURCE_PATH];
    if (!repository || !commit || !sourcePath) {
      throw new StallingError(
        "NoSource",
        "this Model was not applied from a ModelRepository, so there is no commit to build",
      );
    }
    pass.data.source = { repository, commit, sourcePath };
    return undefined;
  };

  const computeKey: ModelStep = async (pass) => {
    const { repository, commit, sourcePath } = pass.data.source as NonNullable<ModelData["source"]>;
    const source = { namespace: pass.key.namespace, name: repository };
    const options = { signal: pass.signal };
    pass.data.tree = await context.sources.treeId(source, commit, sourcePath, options);
    const identity = await buildIdentityOf(
      pass.object,
      (manifestFiles, exclude) =>
        context.sources.contentId(source, commit, sourcePath, manifestFiles, exclude, options),
      context.baseImage,
    );
    pass.data.exclude = identity.exclude;
    pass.data.buildKey = identity.buildKey;
    return undefined;
  };

  const ensureBuild: ModelStep = async (pass) => {
    const buildKey = pass.data.buildKey as string;
    const choice = chooseBuild(buildsOf(pass), buildKey);
    if ("reuse" in choice) {
      pass.data.build = choice.reuse;
      return undefined;
    }
    const { commit, sourcePath } = pass.data.source as NonNullable<ModelData["source"]>;
    const name = buildName(pass.key.name, choice.create);
    if (store.get("ModelBuild", pass.key.namespace, name)) {
      throw new StallingError(
        "BuildNameTaken",
        `ModelBuild ${name} exists and was not made by modelship for build ${choice.create} of ${pass.key.name}; delete it to let the build go ahead`,
      );
    }
    pass.data.build = await store.apply(
      newModelBuild(
        pass.object,
        choice.create,
        buildKey,
        pass.data.tree as string,
        commit,
        sourcePath,
        pass.data.exclude as string[],
      ),
      { signal: pass.signal },
    );
    pass.event("Normal", "BuildCreated", `build ${choice.create} of commit ${commit.slice(0, 7)}`);
    return undefined;
  };

  const collectOldBuilds: ModelStep = async (pass) => {
    const current = pass.data.build?.spec.number;
    const inUse = buildsInUse(pass.key.name, store.list("ModelDeployment", pass.key.namespace));
    const collect = buildsToCollect(
      ownBuildsOf(pass),
      current,
      inUse,
      context.settings.buildRetention,
    );
    for (const build of collect) {
      await context.builder.remove(build, { signal: pass.signal });
      const uid = storedMetadata(build).uid;
      await store.delete("ModelBuild", pass.key.namespace, build.metadata.name, {
        signal: pass.signal,
        ...(uid ? { uid } : {}),
      });
    }
    if (collect.length > 0) {
      pass.event(
        "Normal",
        "BuildsCollected",
        `deleted build${collect.length === 1 ? "" : "s"} ${collect.map((build) => build.spec.number).join(", ")} (keeping the newest ${context.settings.buildRetention} and those a deployment uses)`,
      );
    }
    return undefined;
  };

  const reportBuild: ModelStep = async (pass) => {
    const build = pass.data.build as ModelBuild;
    const number = build.spec.number;
    pass.status.latestBuild = number;
    pass.status.buildKey = pass.data.buildKey as string;
    pass.status.sourceCommit = (pass.data.source as NonNullable<ModelData["source"]>).commit;
    switch (build.status?.phase) {
      case "Succeeded":
        pass.markReady("True", "BuildSucceeded", `build ${number} is ready`);
        return undefined;
      case "Failed":
        throw new StallingError(
          "BuildFailed",
          `build ${number} failed: ${build.status.message ?? "no message"}`,
        );
      default:
        // The ModelBuild's own changes wake the Model: nothing to poll.
        return waitFor("Building", `build ${number} is in progress`);
    }
  };

  return [requireSource, computeKey, ensureBuild, collectOldBuilds, reportBuild];
}

export function modelReconciler(context: ReconcileContext) {
  const spec: ReconcilerSpec<"Model", ModelData> = {
    kind: "Model",
    newData: () => ({}),
    steps: modelSteps(context),
  };
  return reconcileWith(spec, {
    store: context.store,
    events: context.events,
    now: () => context.clock.now(),
  });
}
