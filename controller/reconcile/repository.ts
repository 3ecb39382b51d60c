// The ModelRepository reconciler: the GitOps sync. Every interval it fetches the branch,
// validates every manifest under the path at the head commit and, only if all of them are valid,
// applies what differs from git (so a hand edit or a hand delete is put back), prunes what the
// last good sync applied and git no longer declares, and records that inventory. One invalid
// manifest means nothing from the commit is applied: the repository stalls on it with the
// errors, and what runs keeps running. Deleting the ModelRepository deletes its inventory
// (deletionPolicy Delete) or leaves it (Orphan), through a finalizer.
import { conditionOf, removeCondition } from "../api/conditions.ts";
import { parseDurationMs } from "../api/duration.ts";
import type { Kind } from "../api/schemas.ts";
import type { InventoryEntry, ModelRepository } from "../api/types.generated.ts";
import { formatName, type NamespacedName, namespacedName } from "../core/keys.ts";
import { ANNOTATION_ALLOW_REWRITE, REPOSITORY_FINALIZER } from "../core/labels.ts";
import { type Resource, storedMetadata } from "../core/ports.ts";
import {
  type CommitObjects,
  driftOf,
  inventoryOf,
  inventoryToPrune,
  objectsAtCommit,
  ownedBy,
  ownershipConflicts,
} from "../source/desired.ts";
import type { Revision } from "../source/git.ts";
import { formatProblemSummary, type ValidateOptions } from "../source/validate.ts";
import type { ReconcileContext } from "./context.ts";
import { finished, StallingError } from "./outcome.ts";
import { type Pass, type ReconcilerSpec, reconcileWith, type Step } from "./skeleton.ts";

/** The shortest polling interval: a zero interval would fetch in a tight loop. */
const MIN_INTERVAL_MS = 1000;

/** Polling interval: the spec's (at least 1 s), else 5 s for a local path and 30 s for a URL. */
export function syncIntervalMs(repository: ModelRepository): number {
  const parsed = repository.spec.interval ? parseDurationMs(repository.spec.interval) : undefined;
  if (parsed !== undefined) return Math.max(parsed, MIN_INTERVAL_MS);
  return /^https?:\/\//.test(repository.spec.url) ? 30_000 : 5_000;
}

/**
 * How the sync validates a commit in a namespace: the installation's replica limit, and the
 * Models other namespaces hold (a model's name is its route, so it is one model's everywhere).
 */
export function syncValidateOptions(context: ReconcileContext, namespace: string): ValidateOptions {
  return {
    namespace,
    ...(context.settings.maxReplicas ? { maxReplicas: context.settings.maxReplicas } : {}),
    modelNamespaces: (name) =>
      context.store
        .list("Model")
        .filter((model) => model.metadata.name === name)
        .map((model) => model.metadata.namespace ?? "default"),
  };
}

/** What validating a commit gave: its objects, or why none of them can apply. */
interface Validated {
  /** The commit and the repository's generation (its path or its replica limit may change). */
  at: string;
  desired?: Resource[];
  failure?: { reason: string; message: string };
}

interface SyncData {
  revision?: Revision;
  desired?: Resource[];
}

type SyncPass = Pass<"ModelRepository", SyncData>;
type SyncStep = Step<"ModelRepository", SyncData>;

function shortCommit(commit: string): string {
  return commit.slice(0, 7);
}

/** The inventory's objects that exist and are still this repository's. */
function ownedObjects(
  context: ReconcileContext,
  entries: InventoryEntry[],
  repository: NamespacedName,
): Resource[] {
  return entries.flatMap((entry) => {
    const object = context.store.get(entry.kind as Kind, entry.namespace, entry.name);
    return object && ownedBy(object, repository) ? [object] : [];
  });
}

/** Deployments go before their Models, so that none is seen for a moment without its Model. */
const DELETE_ORDER: Record<string, number> = { ModelDeployment: 0, Model: 1, ModelBuild: 2 };

/** Deletes objects, each only as the very object seen (a namesake made since stays). */
async function deleteAll(
  context: ReconcileContext,
  objects: Resource[],
  signal: AbortSignal,
): Promise<void> {
  const ordered = [...objects].sort(
    (a, b) => (DELETE_ORDER[a.kind] ?? 3) - (DELETE_ORDER[b.kind] ?? 3),
  );
  for (const object of ordered) {
    const uid = storedMetadata(object).uid;
    await context.store.delete(
      object.kind,
      object.metadata.namespace ?? "default",
      object.metadata.name,
      { signal, ...(uid ? { uid } : {}) },
    );
  }
}

/**
 * Deletes the builds the controller made for this repository's models, pruned ones included
 * (ModelBuilds have no ownerReference, so that a Model restored by a revert finds its builds
 * again; a repository that goes takes them along).
 */
async function deleteBuildsOf(
  context: ReconcileContext,
  repository: NamespacedName,
  signal: AbortSignal,
): Promise<void> {
  const builds = context.store
    .list("ModelBuild", repository.namespace)
    .filter((build) => build.spec.repository === repository.name && ownedBy(build, repository));
  for (const build of builds) await context.builder.remove(build, { signal });
  await deleteAll(context, builds, signal);
}

function describe(objects: { kind: string; name: string }[]): string {
  return objects.map((object) => `${object.kind}/${object.name}`).join(", ");
}

export function repositorySteps(context: ReconcileContext): SyncStep[] {
  /** Validation results per repository, for the commit and generation they were made at. */
  const validated = new Map<string, Validated>();

  const finalizeDeletion: SyncStep = async (pass) => {
    const metadata = storedMetadata(pass.object);
    if (!metadata.deletionTimestamp) return undefined;
    if (metadata.finalizers?.includes(REPOSITORY_FINALIZER)) {
      const policy = pass.object.spec.deletionPolicy ?? "Delete";
      const owned = ownedObjects(context, pass.status.inventory ?? [], namespacedName(pass.key));
      if (policy === "Delete") {
        await deleteAll(context, owned, pass.signal);
        await deleteBuildsOf(context, namespacedName(pass.key), pass.signal);
      }
      context.log(
        `ModelRepository ${formatName(pass.key)}: deleted; ${
          policy === "Delete"
            ? `deleted what it applied${owned.length ? ` (${describe(owned.map(entryName))})` : ""}`
            : "what it applied keeps running (deletionPolicy Orphan)"
        }`,
      );
      await context.store.setFinalizer(
        "ModelRepository",
        pass.key.namespace,
        pass.key.name,
        REPOSITORY_FINALIZER,
        false,
        { signal: pass.signal },
      );
    }
    validated.delete(formatName(pass.key));
    return finished();
  };

  const ensureFinalizer: SyncStep = async (pass) => {
    if (storedMetadata(pass.object).finalizers?.includes(REPOSITORY_FINALIZER)) return undefined;
    await context.store.setFinalizer(
      "ModelRepository",
      pass.key.namespace,
      pass.key.name,
      REPOSITORY_FINALIZER,
      true,
      { signal: pass.signal },
    );
    return undefined;
  };

  const stopWhenSuspended: SyncStep = async (pass) => {
    const wasSuspended = conditionOf(pass.status.conditions, "Suspended") !== undefined;
    if (!pass.object.spec.suspend) {
      if (wasSuspended) {
        pass.status.conditions = removeCondition(pass.status.conditions, "Suspended");
        pass.event("Normal", "Resumed", "spec.suspend is false: syncing again");
      }
      return undefined;
    }
    pass.mark(
      "Suspended",
      "True",
      "Suspended",
      "spec.suspend is true: nothing is fetched or applied and drift is not corrected; what runs keeps running",
    );
    if (!wasSuspended) pass.event("Normal", "Suspended", "spec.suspend is true: syncing stops");
    // Ready keeps saying what the last sync did, which is still what runs; before any sync,
    // nothing is known.
    const ready = conditionOf(pass.status.conditions, "Ready");
    if (ready) pass.markReady(ready.status, ready.reason, ready.message);
    else pass.markReady("Unknown", "Suspended", "suspended before its first sync");
    return finished();
  };

  const fetchRevision: SyncStep = async (pass) => {
    pass.status.lastSyncTime = pass.now.toISOString();
    const source = context.gitSource(pass.object);
    const started = performance.now();
    try {
      pass.data.revision = await source.fetch({ signal: pass.signal });
      context.metrics.fetched(formatName(pass.key), (performance.now() - started) / 1000, false);
    } catch (error) {
      context.metrics.fetched(formatName(pass.key), (performance.now() - started) / 1000, true);
      pass.status.lastSyncError = (error as Error).message;
      throw error;
    }
    return undefined;
  };

  /** Stalls: this commit cannot apply, and only a change (a new commit, a fix) helps. */
  const stall = (pass: SyncPass, reason: string, message: string): never => {
    pass.status.lastAttemptedCommit = pass.data.revision?.commit;
    pass.status.lastSyncError = message;
    throw new StallingError(reason, message);
  };

  const refuseRewrittenHistory: SyncStep = async (pass) => {
    const commit = (pass.data.revision as Revision).commit;
    const last = pass.status.lastSyncedCommit;
    if (!last || pass.object.metadata.annotations?.[ANNOTATION_ALLOW_REWRITE] === "true") {
      return undefined;
    }
    const source = context.gitSource(pass.object);
    if (await source.isAncestor(last, commit)) return undefined;
    return stall(
      pass,
      "HistoryRewritten",
      `branch ${pass.object.spec.branch ?? "main"} was rewritten (a force push?): the last synced commit ${shortCommit(last)} is not an ancestor of ${shortCommit(commit)}. Nothing from ${shortCommit(commit)} is applied; to follow the new history, annotate the ModelRepository ${ANNOTATION_ALLOW_REWRITE}: "true" (modelship up --allow-rewrite)`,
    );
  };

  const loadDesired: SyncStep = async (pass) => {
    const revision = pass.data.revision as Revision;
    const at = `${revision.commit} ${pass.generation ?? 0}`;
    let found = validated.get(formatName(pass.key));
    if (found?.at !== at) {
      found = { at, ...(await validate(pass, revision)) };
      validated.set(formatName(pass.key), found);
    }
    if (found.failure) return stall(pass, found.failure.reason, found.failure.message);
    pass.data.desired = found.desired;
    return undefined;
  };

  /** The commit's objects, or why it cannot apply; the same commit gives the same answer. */
  const validate = async (pass: SyncPass, revision: Revision): Promise<Omit<Validated, "at">> => {
    let result: CommitObjects;
    try {
      result = await objectsAtCommit(
        context.gitSource(pass.object),
        revision,
        pass.object.spec.path ?? ".",
        namespacedName(pass.key),
        syncValidateOptions(context, pass.key.namespace),
      );
    } catch (error) {
      const reason = (error as { reason?: string }).reason ?? "SourceUnreadable";
      return { failure: { reason, message: (error as Error).message } };
    }
    if (result.desired === undefined) {
      const count = result.problems.length;
      return {
        failure: {
          reason: "ValidationFailed",
          // The message goes into the status, a condition and an event: bounded, however many.
          message: `${count} problem${count === 1 ? "" : "s"} at commit ${shortCommit(revision.commit)}; nothing from it is applied:\n${formatProblemSummary(result.problems)}`,
        },
      };
    }
    return { desired: result.desired };
  };

  const current = (object: Resource) =>
    context.store.get(object.kind, object.metadata.namespace ?? "default", object.metadata.name);

  const refuseForeignObjects: SyncStep = async (pass) => {
    const conflicts = ownershipConflicts(
      pass.data.desired ?? [],
      current,
      namespacedName(pass.key),
    );
    if (conflicts.length === 0) return undefined;
    return stall(
      pass,
      "OwnershipConflict",
      `${conflicts.length} object${conflicts.length === 1 ? "" : "s"} at commit ${shortCommit((pass.data.revision as Revision).commit)} cannot be applied; nothing from it is applied:\n${conflicts.join("\n")}`,
    );
  };

  const applyDesired: SyncStep = async (pass) => {
    const revision = pass.data.revision as Revision;
    const sameCommit = pass.status.lastSyncedCommit === revision.commit;
    const corrected: string[] = [];
    for (const object of pass.data.desired ?? []) {
      const drift = driftOf(current(object), object);
      if (drift === undefined) continue;
      await context.store.apply(object, { signal: pass.signal });
      if (sameCommit) corrected.push(`${object.kind}/${object.metadata.name} (${drift})`);
    }
    if (corrected.length > 0) {
      pass.event(
        "Normal",
        "DriftCorrected",
        `put back what git declares at ${shortCommit(revision.commit)}: ${corrected.join(", ")}`,
      );
    }
    return undefined;
  };

  const pruneRemoved: SyncStep = async (pass) => {
    const gone = inventoryToPrune(pass.status.inventory, pass.data.desired ?? []);
    const owned = ownedObjects(context, gone, namespacedName(pass.key));
    if (owned.length === 0) return undefined;
    await deleteAll(context, owned, pass.signal);
    pass.event(
      "Normal",
      "Pruned",
      `pruned what git no longer declares: ${describe(owned.map(entryName))}`,
    );
    return undefined;
  };

  const recordSync: SyncStep = async (pass) => {
    const revision = pass.data.revision as Revision;
    const desired = pass.data.desired ?? [];
    const message = `applied ${desired.length} objects from ${shortCommit(revision.commit)}`;
    if (pass.status.lastSyncedCommit !== revision.commit) {
      pass.event("Normal", "SyncApplied", `${message} (${revision.message.split("\n")[0]})`);
    }
    pass.status.lastSyncedCommit = revision.commit;
    pass.status.lastAttemptedCommit = revision.commit;
    delete pass.status.lastSyncError;
    pass.status.inventory = inventoryOf(desired);
    pass.markReady("True", "Synced", message);
    return undefined;
  };

  return [
    finalizeDeletion,
    ensureFinalizer,
    stopWhenSuspended,
    fetchRevision,
    refuseRewrittenHistory,
    loadDesired,
    refuseForeignObjects,
    applyDesired,
    pruneRemoved,
    recordSync,
  ];
}

function entryName(object: Resource): { kind: string; name: string } {
  return { kind: object.kind, name: object.metadata.name };
}

export function repositoryReconciler(context: ReconcileContext) {
  const spec: ReconcilerSpec<"ModelRepository", SyncData> = {
    kind: "ModelRepository",
    newData: () => ({}),
    steps: repositorySteps(context),
    // A source polls: done, stalled or failed, it is fetched again after its interval.
    resyncAfterMs: (repository) =>
      storedMetadata(repository).deletionTimestamp ? undefined : syncIntervalMs(repository),
  };
  return reconcileWith(spec, {
    store: context.store,
    events: context.events,
    now: () => context.clock.now(),
  });
}
