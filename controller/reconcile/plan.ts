// What a change to the tracked branch will do, worked out before it lands: the objects the sync
// would add, change and prune (the sync's own loader, inventory and desired objects), which
// Models need a new build and which get an existing one back (the Model reconciler's build key
// and choice), and which ModelDeployments roll out, scale, stop or go (the rollout hash the
// deployment reconciler compares). Nothing is applied, built or run here.
import { canonicalJson, isRecord } from "../api/canonical-json.ts";
import type {
  Model,
  ModelBuild,
  ModelDeployment,
  ModelRepository,
} from "../api/types.generated.ts";
import { type NamespacedName, namespacedName } from "../core/keys.ts";
import {
  ANNOTATION_AUTHOR,
  ANNOTATION_COMMIT,
  ANNOTATION_MANIFEST_FILES,
  ANNOTATION_RESTARTED_AT,
  ANNOTATION_SOURCE_PATH,
} from "../core/labels.ts";
import type { Resource, Store } from "../core/ports.ts";
import {
  type CommitObjects,
  desiredObjects,
  inventoryOf,
  inventoryToPrune,
  objectsAtCommit,
} from "../source/desired.ts";
import type { GitSource, Revision } from "../source/git.ts";
import type { Problem, ValidateOptions } from "../source/validate.ts";
import type { ReconcileContext } from "./context.ts";
import { DEFAULT_TIMEOUT_SECONDS, resolveBuildNumber, rolloutHash } from "./deployment.ts";
import { buildIdentityOf, chooseBuild, newModelBuild } from "./model.ts";
import type { ModelPredictions } from "./prediction-diff.ts";
import { syncValidateOptions } from "./repository.ts";

/** What the planner reads from git: the sync's reads at a commit, and the branch's history. */
export type PlanSource = Pick<
  GitSource,
  "manifests" | "tree" | "contentId" | "treeId" | "firstParents"
>;

/**
 * The builds a Model has, for numbering and reuse: the store's (what the controller made), or
 * the ones the branch's history would have made (historyCatalog) where there is no store.
 */
export interface BuildCatalog {
  /** Where the numbers come from, said with the plan. */
  origin: string;
  builds(namespace: string, model: string): ModelBuild[];
}

export interface FieldChange {
  /** A JSON pointer into the object: `/spec/replicas`, `/metadata/labels/team`. */
  path: string;
  before?: unknown;
  after?: unknown;
}

export type ObjectAction = "added" | "changed" | "removed" | "unchanged";

export interface ObjectPlan {
  kind: "Model" | "ModelDeployment";
  namespace: string;
  name: string;
  action: ObjectAction;
  /** The manifest that declares it (at the head; at the base when it is removed). */
  file: string;
  changes: FieldChange[];
}

/** What a Model's build becomes at the head. */
export type BuildPlan =
  /** Its build key is the base's: the same build keeps serving. */
  | { action: "unchanged"; number?: number }
  /** A key never built: the next build, with this number. */
  | { action: "build"; number: number }
  /** A key built before (a revert): that build comes back, with no build. */
  | { action: "reuse"; number: number; commit: string; phase?: string }
  /** The key could not be worked out (the head is invalid, a path is missing). */
  | { action: "unknown"; reason: string };

export interface ModelPlan {
  namespace: string;
  name: string;
  action: ObjectAction;
  /** The build serving at the base, when known. */
  baseBuild?: number;
  /** Absent for a removed Model. */
  build?: BuildPlan;
  buildKey: { base?: string; head?: string };
}

export type DeploymentEffect =
  | "create"
  | "rollout"
  | "scale"
  | "update"
  | "stop"
  | "start"
  | "remove"
  | "none";

export interface DeploymentPlan {
  namespace: string;
  name: string;
  model: string;
  action: ObjectAction;
  effect: DeploymentEffect;
  /** The build each side runs; a number the head's build will get, or undefined when unknown. */
  build: { base?: number; head?: number };
  /** Absent on a side that leaves replicas to the scale subresource. */
  replicas: { base?: number; head?: number };
  /** Why, one short phrase each: `build 1 → 2`, `env LEVEL changed`. */
  reasons: string[];
}

export interface PlanSide {
  commit: string;
  message: string;
  author: string;
  problems: Problem[];
}

export interface Plan {
  repository: NamespacedName;
  path: string;
  base: PlanSide;
  head: PlanSide;
  /** The head is valid: the sync would apply it. */
  valid: boolean;
  /** Where the build numbers come from (BuildCatalog.origin). */
  buildNumbers: string;
  objects: ObjectPlan[];
  models: ModelPlan[];
  deployments: DeploymentPlan[];
  /** With `--predict`: each head Model's examples through the base's build and the head's. */
  predictions?: ModelPredictions[];
}

export interface PlanOptions {
  source: PlanSource;
  /** The ModelRepository the commits belong to: its namespace and name label the objects. */
  repository: NamespacedName;
  path: string;
  base: Revision;
  head: Revision;
  validate: ValidateOptions;
  baseImage: (runtime: Model["spec"]["runtime"]) => string;
  catalog: BuildCatalog;
}

/** Annotations the sync writes on every commit: bookkeeping, not a change anyone made. */
const BOOKKEEPING_ANNOTATIONS = new Set([
  ANNOTATION_COMMIT,
  ANNOTATION_AUTHOR,
  ANNOTATION_MANIFEST_FILES,
]);

function escapePointer(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}

/**
 * The fields that differ between two values, as JSON pointers below `path`. Objects are
 * compared key by key; lists and scalars whole (an apply replaces a list).
 */
export function fieldChanges(before: unknown, after: unknown, path = ""): FieldChange[] {
  if (isRecord(before) && isRecord(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((key) =>
      fieldChanges(before[key], after[key], `${path}/${escapePointer(key)}`),
    );
  }
  if (canonicalJson(before) === canonicalJson(after)) return [];
  return [
    {
      path: path || "/",
      ...(before === undefined ? {} : { before }),
      ...(after === undefined ? {} : { after }),
    },
  ];
}

/** What of a desired object a person changes in git: its spec, labels and annotations less the sync's bookkeeping. */
function comparable(object: Resource | undefined): unknown {
  if (!object) return undefined;
  const annotations = Object.fromEntries(
    Object.entries(object.metadata.annotations ?? {}).filter(
      ([key]) => !BOOKKEEPING_ANNOTATIONS.has(key),
    ),
  );
  return {
    metadata: { labels: object.metadata.labels ?? {}, annotations },
    spec: object.spec,
  };
}

function objectId(object: { kind: string; namespace?: string; name: string }): string {
  return `${object.kind}/${object.namespace ?? "default"}/${object.name}`;
}

function resourceId(object: Resource): string {
  return objectId({
    kind: object.kind,
    namespace: object.metadata.namespace ?? "default",
    name: object.metadata.name,
  });
}

/** The manifest each desired object came from, by object id. */
function filesOf(objects: CommitObjects): Map<string, string> {
  return new Map(objects.declared.map((item) => [objectId(item), item.repoPath]));
}

/**
 * Added, changed, removed and unchanged objects between two commits' desired objects. What is
 * removed is what the sync prunes: the base's inventory less the head's objects.
 */
export function objectPlans(
  base: Resource[],
  head: Resource[],
  files: { base: Map<string, string>; head: Map<string, string> },
): ObjectPlan[] {
  const baseById = new Map(base.map((object) => [resourceId(object), object]));
  const plans: ObjectPlan[] = head.map((object) => {
    const id = resourceId(object);
    const before = baseById.get(id);
    const changes = fieldChanges(comparable(before), comparable(object));
    return {
      kind: object.kind as ObjectPlan["kind"],
      namespace: object.metadata.namespace ?? "default",
      name: object.metadata.name,
      action: before === undefined ? "added" : changes.length > 0 ? "changed" : "unchanged",
      file: files.head.get(id) ?? "",
      changes: before === undefined ? [] : changes,
    };
  });
  for (const entry of inventoryToPrune(inventoryOf(base), head)) {
    plans.push({
      kind: entry.kind as ObjectPlan["kind"],
      namespace: entry.namespace,
      name: entry.name,
      action: "removed",
      file: files.base.get(objectId(entry)) ?? "",
      changes: [],
    });
  }
  return plans.sort((a, b) => objectId(a).localeCompare(objectId(b)));
}

/** A build choice said as a plan: the same key as the base's, a reuse, or a new number. */
export function buildPlanOf(
  builds: ModelBuild[],
  baseKey: string | undefined,
  headKey: string,
): BuildPlan {
  const choice = chooseBuild(builds, headKey);
  if ("reuse" in choice) {
    if (headKey === baseKey) return { action: "unchanged", number: choice.reuse.spec.number };
    return {
      action: "reuse",
      number: choice.reuse.spec.number,
      commit: choice.reuse.spec.commit,
      ...(choice.reuse.status?.phase ? { phase: choice.reuse.status.phase } : {}),
    };
  }
  if (headKey === baseKey) return { action: "unchanged" };
  return { action: "build", number: choice.create };
}

function replicasOf(spec: ModelDeployment["spec"] | undefined): number | undefined {
  return typeof spec?.replicas === "number" ? spec.replicas : undefined;
}

interface DeploymentSide {
  deployment: ModelDeployment;
  build: number | undefined;
  buildKey: string | undefined;
}

function hashOf(side: DeploymentSide): string | undefined {
  if (side.build === undefined || side.buildKey === undefined) return undefined;
  const spec = side.deployment.spec;
  return rolloutHash({
    model: spec.model,
    buildKey: side.buildKey,
    build: side.build,
    env: spec.env ?? {},
    timeoutSeconds: spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
    restartedAt: side.deployment.metadata.annotations?.[ANNOTATION_RESTARTED_AT],
    ...(spec.resources ? { resources: spec.resources } : {}),
    ...(spec.maxRequestBytes === undefined ? {} : { maxRequestBytes: spec.maxRequestBytes }),
  });
}

/** Why a rollout happens: the inputs of the rollout hash that differ. */
function rolloutReasons(base: DeploymentSide, head: DeploymentSide): string[] {
  const reasons: string[] = [];
  const before = base.deployment.spec;
  const after = head.deployment.spec;
  if (base.build !== head.build) {
    reasons.push(`build ${base.build ?? "?"} → ${head.build ?? "?"}`);
  } else if (base.buildKey !== head.buildKey) {
    reasons.push(`build ${head.build ?? "?"} is rebuilt`);
  }
  const beforeEnv = before.env ?? {};
  const afterEnv = after.env ?? {};
  const env = [...new Set([...Object.keys(beforeEnv), ...Object.keys(afterEnv)])]
    .filter((name) => beforeEnv[name] !== afterEnv[name])
    .sort();
  if (env.length > 0) reasons.push(`env ${env.join(", ")} changed`);
  const timeout = (spec: ModelDeployment["spec"]) => spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
  if (timeout(before) !== timeout(after)) {
    reasons.push(`timeoutSeconds ${timeout(before)} → ${timeout(after)}`);
  }
  if (canonicalJson(before.resources ?? {}) !== canonicalJson(after.resources ?? {})) {
    reasons.push(
      `resources ${canonicalJson(before.resources ?? {})} → ${canonicalJson(after.resources ?? {})}`,
    );
  }
  if (before.maxRequestBytes !== after.maxRequestBytes) {
    reasons.push(
      `maxRequestBytes ${before.maxRequestBytes ?? "default"} → ${after.maxRequestBytes ?? "default"}`,
    );
  }
  const restarted = (side: DeploymentSide) =>
    side.deployment.metadata.annotations?.[ANNOTATION_RESTARTED_AT];
  if (restarted(base) !== restarted(head)) reasons.push("restartedAt annotation changed");
  return reasons;
}

/**
 * What a ModelDeployment's change does to what runs: a new rollout when an input of its
 * rollout hash changes (build, env, timeoutSeconds, resources, maxRequestBytes, restartedAt);
 * a scale when only its replicas do; a stop or a start; an update of gateway settings only.
 */
export function deploymentEffect(
  base: DeploymentSide | undefined,
  head: DeploymentSide | undefined,
): { effect: DeploymentEffect; reasons: string[] } {
  if (!head) return { effect: "remove", reasons: ["its replicas stop and it is deleted"] };
  const replicas = replicasOf(head.deployment.spec);
  if (!base) {
    if (head.deployment.spec.stopped) return { effect: "create", reasons: ["created stopped"] };
    return {
      effect: "create",
      reasons: [
        `rolls out build ${head.build ?? "?"}${replicas === undefined ? "" : ` with ${replicas} replica${replicas === 1 ? "" : "s"}`}`,
      ],
    };
  }
  const wasStopped = base.deployment.spec.stopped === true;
  const isStopped = head.deployment.spec.stopped === true;
  if (isStopped && !wasStopped)
    return { effect: "stop", reasons: ["stopped: calls get 503 model.stopped"] };
  if (wasStopped && !isStopped) {
    return { effect: "start", reasons: [`started again: rolls out build ${head.build ?? "?"}`] };
  }
  const reasons: string[] = [];
  let effect: DeploymentEffect = "none";
  const rollout = !isStopped && hashOf(base) !== hashOf(head);
  if (rollout) {
    effect = "rollout";
    reasons.push(...rolloutReasons(base, head));
    if (reasons.length === 0) reasons.push("the build it runs is not known yet");
  }
  const before = replicasOf(base.deployment.spec);
  if (before !== replicas && replicas !== undefined) {
    if (effect === "none") effect = "scale";
    reasons.push(`replicas ${before ?? "as scaled"} → ${replicas}`);
  }
  if (effect === "none") {
    const changed = fieldChanges(base.deployment.spec, head.deployment.spec).map(
      (change) => change.path,
    );
    if (changed.length > 0) {
      effect = "update";
      const fields = changed.map((path) => `spec.${path.slice(1).replaceAll("/", ".")}`);
      reasons.push(`${fields.join(", ")} changed (no new rollout)`);
    }
  }
  return { effect, reasons };
}

/**
 * The builds the branch's history would have made: every valid commit on the first-parent line
 * up to `base` (at most `limit`, oldest first), a build numbered from 1 per Model for each build
 * key not seen before. Where there is no store to ask, this is how a revert finds the build
 * number that comes back; a commit the sync never saw (several landed between two polls) may
 * make the numbers differ from the controller's.
 */
export async function historyCatalog(
  options: Omit<PlanOptions, "head" | "catalog">,
  limit: number,
): Promise<BuildCatalog> {
  const builds = new Map<string, ModelBuild[]>();
  const commits = (await options.source.firstParents(options.base.commit, limit)).reverse();
  for (const revision of commits) {
    const objects = await objectsAtCommit(
      options.source,
      revision,
      options.path,
      options.repository,
      options.validate,
    ).catch(() => undefined);
    for (const model of objects?.desired ?? []) {
      if (model.kind !== "Model") continue;
      const identity = await identityAt(options, revision.commit, model as Model).catch(
        () => undefined,
      );
      if (!identity) continue;
      const id = `${model.metadata.namespace}/${model.metadata.name}`;
      const known = builds.get(id) ?? [];
      const choice = chooseBuild(known, identity.buildKey);
      if ("reuse" in choice) continue;
      const sourcePath = model.metadata.annotations?.[ANNOTATION_SOURCE_PATH] ?? ".";
      const tree = await options.source.treeId(revision.commit, sourcePath);
      known.push(
        newModelBuild(
          model as Model,
          choice.create,
          identity.buildKey,
          tree,
          revision.commit,
          sourcePath,
          identity.exclude,
        ),
      );
      builds.set(id, known);
    }
  }
  return {
    origin: `the history of ${options.base.commit.slice(0, 7)} (${commits.length} commit${commits.length === 1 ? "" : "s"}; no controller was asked)`,
    builds: (namespace, model) => builds.get(`${namespace}/${model}`) ?? [],
  };
}

/** The builds the controller made, as its store holds them: the numbers a sync will use. */
export function storeCatalog(
  store: Pick<Store, "list">,
  origin = "the controller's builds",
): BuildCatalog {
  return {
    origin,
    builds: (namespace, model) =>
      store.list("ModelBuild", namespace).filter((build) => build.spec.model === model),
  };
}

/** The build identity of a desired Model at a commit. */
export function identityAt(
  options: Pick<PlanOptions, "source" | "baseImage">,
  commit: string,
  model: Model,
) {
  const sourcePath = model.metadata.annotations?.[ANNOTATION_SOURCE_PATH] ?? ".";
  return buildIdentityOf(
    model,
    (manifestFiles, exclude) =>
      options.source.contentId(commit, sourcePath, manifestFiles, exclude),
    options.baseImage,
  );
}

function sideOf(revision: Revision, objects: CommitObjects): PlanSide {
  return {
    commit: revision.commit,
    message: revision.message.split("\n")[0] ?? "",
    author: revision.authorName,
    problems: objects.problems,
  };
}

/** One commit of a change, loaded as the sync loads it. */
export interface LoadedCommit {
  revision: Revision;
  objects: CommitObjects;
  /**
   * Its objects as the sync makes them; for an invalid commit, those it declares (all but those
   * whose spec is not even an object), to compare by.
   */
  compared: Resource[];
}

export interface LoadedChange {
  base: LoadedCommit;
  head: LoadedCommit;
}

/**
 * Both commits of a change through the sync's loader. A commit whose path is missing, or whose
 * sources cannot be read, gets that as its problem, as the sync reports it.
 */
export async function loadChange(
  options: Pick<PlanOptions, "source" | "path" | "repository" | "validate" | "base" | "head">,
): Promise<LoadedChange> {
  const load = async (revision: Revision): Promise<LoadedCommit> => {
    const objects: CommitObjects = await objectsAtCommit(
      options.source,
      revision,
      options.path,
      options.repository,
      options.validate,
    ).catch((error: Error) => ({
      problems: [
        {
          file: options.path,
          line: 1,
          column: 1,
          pointer: "",
          rule: "source-path",
          message: error.message,
        },
      ],
      declared: [],
    }));
    // An invalid commit is compared by what it declares: the sync would apply none of it, but
    // what changes is still what a reviewer wants to see.
    const compared =
      objects.desired ??
      desiredObjects(
        objects.declared.filter((item) => isRecord(item.object.spec)),
        options.repository,
        revision,
      );
    return { revision, objects, compared };
  };
  return { base: await load(options.base), head: await load(options.head) };
}

/**
 * What the sync will do when the branch moves from `base` to `head`; `change` when both commits
 * are loaded already (loadChange), so that a caller that needs them too reads them once.
 */
export async function planChange(options: PlanOptions, change?: LoadedChange): Promise<Plan> {
  const loaded = change ?? (await loadChange(options));
  const baseObjects = loaded.base.objects;
  const headObjects = loaded.head.objects;
  const base = loaded.base.compared;
  const head = loaded.head.compared;
  const objects = objectPlans(base, head, {
    base: filesOf(baseObjects),
    head: filesOf(headObjects),
  });

  const models = new Map<string, ModelPlan>();
  const keyOf = async (revision: Revision, model: Resource | undefined) =>
    model === undefined
      ? undefined
      : (await identityAt(options, revision.commit, model as Model)).buildKey;
  for (const plan of objects.filter((object) => object.kind === "Model")) {
    const find = (list: Resource[]) =>
      list.find((object) => object.kind === "Model" && resourceId(object) === objectId(plan));
    const baseKey = await keyOf(options.base, find(base)).catch(() => undefined);
    const builds = options.catalog.builds(plan.namespace, plan.name);
    const baseChoice = baseKey === undefined ? undefined : chooseBuild(builds, baseKey);
    const baseBuild =
      baseChoice && "reuse" in baseChoice ? baseChoice.reuse.spec.number : undefined;
    const modelPlan: ModelPlan = {
      namespace: plan.namespace,
      name: plan.name,
      action: plan.action,
      ...(baseBuild === undefined ? {} : { baseBuild }),
      buildKey: baseKey === undefined ? {} : { base: baseKey },
    };
    if (plan.action !== "removed") {
      try {
        const headKey = (await keyOf(options.head, find(head))) as string;
        modelPlan.buildKey.head = headKey;
        modelPlan.build = buildPlanOf(builds, baseKey, headKey);
      } catch (error) {
        modelPlan.build = { action: "unknown", reason: (error as Error).message };
      }
    }
    models.set(objectId(plan), modelPlan);
  }

  const sideFor = (
    list: Resource[],
    plan: ObjectPlan,
    which: "base" | "head",
  ): DeploymentSide | undefined => {
    const deployment = list.find(
      (object) => object.kind === "ModelDeployment" && resourceId(object) === objectId(plan),
    ) as ModelDeployment | undefined;
    if (!deployment) return undefined;
    const model = models.get(
      objectId({ kind: "Model", namespace: plan.namespace, name: deployment.spec.model }),
    );
    const modelBuild =
      which === "base"
        ? model?.baseBuild
        : model?.build && "number" in model.build
          ? model.build.number
          : undefined;
    const build = resolveBuildNumber(deployment.spec.build, modelBuild);
    const pinned = typeof deployment.spec.build === "number";
    const buildKey = pinned
      ? options.catalog
          .builds(plan.namespace, deployment.spec.model)
          .find((candidate) => candidate.spec.number === build)?.spec.buildKey
      : model?.buildKey[which];
    return { deployment, build, buildKey };
  };
  const deployments = objects
    .filter((object) => object.kind === "ModelDeployment")
    .map((plan): DeploymentPlan => {
      const before = sideFor(base, plan, "base");
      const after = sideFor(head, plan, "head");
      const { effect, reasons } = deploymentEffect(before, after);
      const replicasBefore = replicasOf(before?.deployment.spec);
      const replicasAfter = replicasOf(after?.deployment.spec);
      return {
        namespace: plan.namespace,
        name: plan.name,
        model: (after ?? before)?.deployment.spec.model ?? "",
        action: plan.action,
        effect,
        build: {
          ...(before?.build === undefined ? {} : { base: before.build }),
          ...(after?.build === undefined ? {} : { head: after.build }),
        },
        replicas: {
          ...(replicasBefore === undefined ? {} : { base: replicasBefore }),
          ...(replicasAfter === undefined ? {} : { head: replicasAfter }),
        },
        reasons,
      };
    });

  return {
    repository: options.repository,
    path: options.path,
    base: sideOf(options.base, baseObjects),
    head: sideOf(options.head, headObjects),
    valid: headObjects.desired !== undefined,
    buildNumbers: options.catalog.origin,
    objects,
    models: [...models.values()],
    deployments,
  };
}

/**
 * How a ModelRepository's controller plans a change of its branch: its git source, its path,
 * its validation settings, its store's builds and base images, and the two commits. `fetch`
 * names refs to fetch first from a URL repository (a pull request's head, which is on no branch
 * the sync fetches).
 */
export async function repositoryPlanOptions(
  context: ReconcileContext,
  repository: ModelRepository,
  refs: { base: string; head: string; fetch?: string[] },
  options: { signal?: AbortSignal } = {},
): Promise<PlanOptions & { source: GitSource }> {
  const source = context.gitSource(repository);
  for (const ref of refs.fetch ?? []) await source.fetchRef(ref, options);
  const key = namespacedName({
    namespace: repository.metadata.namespace ?? "default",
    name: repository.metadata.name,
  });
  return {
    source,
    repository: key,
    path: repository.spec.path ?? ".",
    base: await source.revision(refs.base),
    head: await source.revision(refs.head),
    validate: syncValidateOptions(context, key.namespace),
    baseImage: context.baseImage,
    catalog: storeCatalog(context.store),
  };
}

/** The plan of a change to a ModelRepository's branch, as its controller sees it. */
export async function planForRepository(
  context: ReconcileContext,
  repository: ModelRepository,
  refs: { base: string; head: string; fetch?: string[] },
  options: { signal?: AbortSignal } = {},
): Promise<Plan> {
  return planChange(await repositoryPlanOptions(context, repository, refs, options));
}
