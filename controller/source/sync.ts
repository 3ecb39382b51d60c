// The GitOps sync (DESIGN §3), the ModelRepository reconciler: fetch the branch, validate every
// manifest under the path at the head commit C, and only if all of them are valid apply them
// and prune what git no longer declares. One invalid manifest means nothing from C is applied:
// the errors go to the ModelRepository's status and to the log, and what runs keeps running.
import { setCondition } from "../api/conditions.ts";
import type { Kind } from "../api/schemas.ts";
import type { ModelRepository, ModelRepositoryStatus } from "../api/types.generated.ts";
import type { Resource, Store } from "../platform/ports.ts";
import {
  ANNOTATION_AUTHOR,
  ANNOTATION_COMMIT,
  ANNOTATION_MANIFEST_FILES,
  ANNOTATION_SOURCE_PATH,
  LABEL_MANAGED_BY,
  LABEL_SOURCE,
} from "../reconcile/context.ts";
import { done, type ObjectKey, type ReconcileResult, requeueAfter } from "../reconcile/queue.ts";
import type { GitSource, Revision } from "./git.ts";
import {
  type DeclaredObject,
  formatProblem,
  modelSourcePath,
  validateManifests,
} from "./validate.ts";

/** Set to "true" on a ModelRepository to follow a branch whose history was rewritten. */
export const ANNOTATION_ALLOW_REWRITE = "modelship.dev/allow-rewrite";

/** The kinds a sync applies and prunes (ModelBuilds belong to the controller). */
const SYNCED_KINDS: Kind[] = ["Model", "ModelDeployment"];

/** Milliseconds in a Go-style duration (`30s`, `1h30m`, `1.5s`), or undefined if it is not one. */
export function parseDurationMs(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join("") !== text) return undefined;
  return parts.reduce(
    (sum, part) => sum + Number(part[1]) * (units[part[2] as string] as number),
    0,
  );
}

/** The shortest polling interval: a zero interval would fetch in a tight loop. */
const MIN_INTERVAL_MS = 1000;

/** Polling interval: the spec's (at least 1 s), else 5 s for a local path and 30 s for a URL. */
export function syncIntervalMs(repository: ModelRepository): number {
  const parsed = repository.spec.interval ? parseDurationMs(repository.spec.interval) : undefined;
  if (parsed !== undefined) return Math.max(parsed, MIN_INTERVAL_MS);
  return /^https?:\/\//.test(repository.spec.url) ? 30_000 : 5_000;
}

export function authorOf(revision: Revision): string {
  return revision.authorEmail
    ? `${revision.authorName} <${revision.authorEmail}>`
    : revision.authorName;
}

/** The objects to apply for a commit: as declared, plus the sync's labels and annotations. */
export function desiredObjects(
  declared: DeclaredObject[],
  repository: string,
  revision: Revision,
  /** Where objects that name no namespace go: the ModelRepository's own (as Flux does). */
  defaultNamespace = "default",
): Resource[] {
  // Manifests often live beside the code; a Model's build must not change when only they do.
  const manifestFiles = JSON.stringify([...new Set(declared.map((item) => item.repoPath))].sort());
  return declared
    .filter((item) => SYNCED_KINDS.includes(item.kind))
    .map((item) => {
      const metadata = (item.object.metadata ?? {}) as {
        namespace?: unknown;
        labels?: Record<string, string>;
        annotations?: Record<string, string>;
      };
      const annotations: Record<string, string> = {
        ...metadata.annotations,
        [ANNOTATION_COMMIT]: revision.commit,
        [ANNOTATION_AUTHOR]: authorOf(revision),
      };
      if (item.kind === "Model") {
        annotations[ANNOTATION_SOURCE_PATH] = modelSourcePath({
          object: item.object,
          repoPath: item.repoPath,
        });
        annotations[ANNOTATION_MANIFEST_FILES] = manifestFiles;
      }
      return {
        apiVersion: "modelship.dev/v1alpha1",
        kind: item.kind,
        metadata: {
          name: item.name,
          namespace: typeof metadata.namespace === "string" ? metadata.namespace : defaultNamespace,
          labels: {
            ...metadata.labels,
            [LABEL_MANAGED_BY]: "modelship",
            [LABEL_SOURCE]: repository,
          },
          annotations,
        },
        spec: item.object.spec,
      } as Resource;
    });
}

function identity(object: {
  kind: string;
  metadata: { namespace?: string; name: string };
}): string {
  return `${object.kind}/${object.metadata.namespace ?? "default"}/${object.metadata.name}`;
}

/** What this repository applied before and no longer declares. */
export function objectsToPrune(
  existing: Resource[],
  desired: Resource[],
  repository: string,
): Resource[] {
  const wanted = new Set(desired.map(identity));
  return existing.filter(
    (object) =>
      object.metadata.labels?.[LABEL_SOURCE] === repository && !wanted.has(identity(object)),
  );
}

export interface SyncContext {
  store: Store;
  /** The git source of a repository (kept between syncs, so clones are reused). */
  sourceOf(repository: ModelRepository): GitSource;
  now(): Date;
  log(line: string): void;
  maxReplicas?: number;
}

export function repositoryReconciler(context: SyncContext) {
  return async (key: ObjectKey): Promise<ReconcileResult> => {
    const repository = context.store.get("ModelRepository", key.namespace, key.name);
    if (!repository) return done;
    const interval = syncIntervalMs(repository);
    if (repository.spec.suspend) return done;
    const now = context.now();
    const previous = repository.status ?? {};
    const generation = (repository.metadata as { generation?: number }).generation;
    const writeStatus = (status: ModelRepositoryStatus) =>
      context.store.patchStatus("ModelRepository", key.namespace, key.name, {
        ...status,
        lastSyncTime: now.toISOString(),
        ...(generation === undefined ? {} : { observedGeneration: generation }),
      });
    const fail = async (reason: string, message: string, commit?: string) => {
      if (previous.lastSyncError !== message) {
        context.log(
          `repository ${key.name}: sync failed${commit ? ` at ${commit.slice(0, 7)}` : ""}:\n${message}`,
        );
      }
      await writeStatus({
        ...previous,
        ...(commit ? { lastAttemptedCommit: commit } : {}),
        lastSyncError: message,
        conditions: setCondition(
          previous.conditions,
          { type: "Ready", status: "False", reason, message },
          now,
          generation,
        ),
      });
      return requeueAfter(interval);
    };

    const source = context.sourceOf(repository);
    let revision: Revision;
    try {
      revision = await source.fetch();
    } catch (error) {
      const reason = (error as { reason?: string }).reason ?? "FetchFailed";
      return fail(reason, (error as Error).message);
    }
    const commit = revision.commit;
    if (
      previous.lastSyncedCommit === commit &&
      previous.lastAttemptedCommit === commit &&
      previous.observedGeneration === generation
    ) {
      return requeueAfter(interval);
    }
    if (
      previous.lastSyncedCommit &&
      repository.metadata.annotations?.[ANNOTATION_ALLOW_REWRITE] !== "true" &&
      !(await source.isAncestor(previous.lastSyncedCommit, commit))
    ) {
      return fail(
        "HistoryRewritten",
        `branch ${repository.spec.branch ?? "main"} was rewritten (a force push?): the last synced commit ${previous.lastSyncedCommit.slice(0, 7)} is not an ancestor of ${commit.slice(0, 7)}. Nothing from ${commit.slice(0, 7)} is applied; to follow the new history, annotate the ModelRepository ${ANNOTATION_ALLOW_REWRITE}: "true" (modelship up --allow-rewrite)`,
        commit,
      );
    }

    let declared: DeclaredObject[];
    try {
      const manifests = await source.manifests(commit, repository.spec.path ?? ".");
      const result = await validateManifests(manifests, source.tree(commit), {
        ...(context.maxReplicas ? { maxReplicas: context.maxReplicas } : {}),
      });
      if (result.problems.length > 0) {
        const lines = result.problems.map(formatProblem);
        return fail(
          "ValidationFailed",
          `${lines.length} problem${lines.length === 1 ? "" : "s"} at commit ${commit.slice(0, 7)}; nothing from it is applied:\n${lines.join("\n")}`,
          commit,
        );
      }
      declared = result.declared;
    } catch (error) {
      const reason = (error as { reason?: string }).reason ?? "SourceUnreadable";
      return fail(reason, (error as Error).message, commit);
    }

    const desired = desiredObjects(declared, key.name, revision, key.namespace);
    for (const object of desired) await context.store.apply(object);
    const existing = SYNCED_KINDS.flatMap((kind) => context.store.list(kind) as Resource[]);
    const pruned = objectsToPrune(existing, desired, key.name);
    for (const object of pruned) {
      await context.store.delete(
        object.kind,
        object.metadata.namespace ?? "default",
        object.metadata.name,
      );
    }
    const message = `applied ${desired.length} objects from ${commit.slice(0, 7)}${pruned.length ? `, pruned ${pruned.length}` : ""}`;
    context.log(`repository ${key.name}: ${message} (${revision.message.split("\n")[0]})`);
    const status: ModelRepositoryStatus = {
      lastSyncedCommit: commit,
      lastAttemptedCommit: commit,
      objects: desired.map((object) => ({
        kind: object.kind,
        namespace: object.metadata.namespace ?? "default",
        name: object.metadata.name,
      })),
      conditions: setCondition(
        previous.conditions,
        { type: "Ready", status: "True", reason: "Synced", message },
        now,
        generation,
      ),
    };
    await writeStatus(status);
    return requeueAfter(interval);
  };
}
