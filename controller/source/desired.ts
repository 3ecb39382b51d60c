// What a commit declares, as the objects to apply, and how that compares with what is there: the
// inventory of what the last good sync applied, what to prune from it, which existing objects are
// not this repository's to change, and which have drifted from git. Pure functions, shared by the
// sync and by anything that wants to say what a sync would do.
import { canonicalJson, isRecord } from "../api/canonical-json.ts";
import { type Kind, withDefaults } from "../api/schemas.ts";
import type { InventoryEntry } from "../api/types.generated.ts";
import { type NamespacedName, sameName } from "../core/keys.ts";
import {
  ANNOTATION_AUTHOR,
  ANNOTATION_COMMIT,
  ANNOTATION_MANIFEST,
  ANNOTATION_MANIFEST_FILES,
  ANNOTATION_NESTED_SOURCES,
  ANNOTATION_SOURCE_PATH,
  isManaged,
  LABEL_MANAGED_BY,
  LABEL_REPOSITORY,
  MANAGED_BY,
} from "../core/labels.ts";
import type { Resource } from "../core/ports.ts";
import type { GitSource, Revision } from "./git.ts";
import { nestedSourcesOf } from "./source-filter.ts";
import {
  type DeclaredObject,
  modelLayout,
  modelSourcePath,
  type Problem,
  type ValidateOptions,
  validateManifests,
} from "./validate.ts";

/** The kinds a sync applies and prunes (ModelBuilds belong to the controller). */
export const SYNCED_KINDS: readonly Kind[] = ["Model", "ModelDeployment"];

export function authorOf(revision: Revision): string {
  return revision.authorEmail
    ? `${revision.authorName} <${revision.authorEmail}>`
    : revision.authorName;
}

/** What a commit declares under a path: its problems, and the objects to apply when it has none. */
export interface CommitObjects {
  problems: Problem[];
  declared: DeclaredObject[];
  /** Only when there is no problem: a commit applies whole or not at all. */
  desired?: Resource[];
}

/**
 * Reads and validates every manifest under `path` at a commit, and makes the objects a sync
 * applies: what the sync does at each commit and what `modelship plan` says it will do.
 */
export async function objectsAtCommit(
  source: Pick<GitSource, "manifests" | "tree">,
  revision: Revision,
  path: string,
  repository: NamespacedName,
  options: ValidateOptions,
): Promise<CommitObjects> {
  const manifests = await source.manifests(revision.commit, path);
  const result = await validateManifests(manifests, source.tree(revision.commit), options);
  if (result.problems.length > 0) return { problems: result.problems, declared: result.declared };
  return {
    problems: [],
    declared: result.declared,
    desired: desiredObjects(result.declared, repository, revision),
  };
}

/** The objects to apply for a commit: as declared, plus the sync's labels and annotations. */
export function desiredObjects(
  declared: DeclaredObject[],
  repository: NamespacedName,
  revision: Revision,
): Resource[] {
  // Manifests often live beside the code; a Model's build must not change when only they do.
  const manifestFiles = JSON.stringify([...new Set(declared.map((item) => item.repoPath))].sort());
  // Another Model's directory inside a Model's source is that model's, not part of this build.
  const models = declared.filter((item) => item.kind === "Model");
  const nested = nestedSourcesOf(models.map(modelLayout));
  const nestedOf = new Map(models.map((item, index) => [item, nested[index] ?? []]));
  return declared
    .filter((item) => SYNCED_KINDS.includes(item.kind))
    .map((item) => {
      const metadata = (item.object.metadata ?? {}) as {
        labels?: Record<string, string>;
        annotations?: Record<string, string>;
      };
      const annotations: Record<string, string> = {
        ...metadata.annotations,
        [ANNOTATION_COMMIT]: revision.commit,
        [ANNOTATION_AUTHOR]: authorOf(revision),
        [ANNOTATION_MANIFEST]: `${item.repoPath}:${item.line}`,
      };
      if (item.kind === "Model") {
        annotations[ANNOTATION_SOURCE_PATH] = modelSourcePath({
          object: item.object,
          repoPath: item.repoPath,
        });
        annotations[ANNOTATION_MANIFEST_FILES] = manifestFiles;
        const inside = nestedOf.get(item) ?? [];
        if (inside.length > 0) annotations[ANNOTATION_NESTED_SOURCES] = JSON.stringify(inside);
      }
      return {
        apiVersion: "modelship.dev/v1alpha1",
        kind: item.kind,
        metadata: {
          name: item.name,
          // Validation has refused any other namespace than the repository's.
          namespace: repository.namespace,
          labels: {
            ...metadata.labels,
            [LABEL_MANAGED_BY]: MANAGED_BY,
            [LABEL_REPOSITORY]: repository.name,
          },
          annotations,
        },
        spec: desiredSpec(item),
      } as Resource;
    });
}

/**
 * A declared object's spec with the schema's defaults, as the API server will store it: a field
 * git leaves at its default is then one the sync sets, and a hand edit of it is drift to put
 * back. All but a ModelDeployment's `replicas` left out of git: that one belongs to the scale
 * subresource (`kubectl scale`, a HorizontalPodAutoscaler), and the sync neither sets nor
 * corrects it — the API server's default applies when the object is made.
 */
export function desiredSpec(item: Pick<DeclaredObject, "kind" | "object">): unknown {
  const spec = withDefaults(item.kind, item.object).spec as Record<string, unknown>;
  const declared = (item.object as { spec?: Record<string, unknown> }).spec;
  if (item.kind === "ModelDeployment" && declared?.replicas === undefined) {
    const { replicas: _scaledElsewhere, ...rest } = spec;
    return rest;
  }
  return spec;
}

function entryOf(object: Resource): InventoryEntry {
  return {
    kind: object.kind,
    namespace: object.metadata.namespace ?? "default",
    name: object.metadata.name,
  };
}

function entryId(entry: InventoryEntry): string {
  return `${entry.kind}/${entry.namespace}/${entry.name}`;
}

/** The inventory of a set of objects: kind, namespace and name, sorted. */
export function inventoryOf(objects: Resource[]): InventoryEntry[] {
  return objects.map(entryOf).sort((a, b) => entryId(a).localeCompare(entryId(b)));
}

/** What the last good sync applied and this one no longer declares. */
export function inventoryToPrune(
  previous: InventoryEntry[] | undefined,
  desired: Resource[],
): InventoryEntry[] {
  const wanted = new Set(desired.map((object) => entryId(entryOf(object))));
  return (previous ?? []).filter((entry) => !wanted.has(entryId(entry)));
}

/**
 * Whether an existing object is this repository's to change or delete: it carries our
 * managed-by label and names this repository. An object made by hand, or by another repository,
 * is never touched (pruned, overwritten) by this one.
 */
export function ownedBy(existing: Resource, repository: NamespacedName): boolean {
  const labels = existing.metadata.labels;
  return (
    isManaged(labels) &&
    sameName(
      {
        namespace: existing.metadata.namespace ?? "default",
        name: labels?.[LABEL_REPOSITORY] ?? "",
      },
      repository,
    )
  );
}

/** Why the desired objects cannot all be applied: the ones that exist and are someone else's. */
export function ownershipConflicts(
  desired: Resource[],
  existing: (object: Resource) => Resource | undefined,
  repository: NamespacedName,
): string[] {
  return desired.flatMap((object) => {
    const found = existing(object);
    if (!found || ownedBy(found, repository)) return [];
    const other = found.metadata.labels?.[LABEL_REPOSITORY];
    const who =
      isManaged(found.metadata.labels) && other
        ? `it belongs to ModelRepository "${other}"`
        : "it was not made by a ModelRepository (created by hand?)";
    return [
      `${object.kind} "${object.metadata.name}" already exists in namespace ${object.metadata.namespace} and ${who}; rename it in git or delete the existing one`,
    ];
  });
}

/**
 * Whether `live` holds every field `wanted` declares, with the same value. Fields only `live`
 * has are not a difference: the API server's defaults, or another manager's, which server-side
 * apply leaves alone too. Lists are compared whole, as apply replaces them.
 */
export function holds(live: unknown, wanted: unknown): boolean {
  if (isRecord(wanted)) {
    if (!isRecord(live)) return false;
    return Object.entries(wanted).every(([key, value]) => holds(live[key], value));
  }
  return canonicalJson(live) === canonicalJson(wanted);
}

/**
 * What differs between the live object and the desired one, in what a sync sets: the spec's
 * fields, labels and annotations it declares (defaults and others' additions are left alone, as
 * server-side apply leaves them). Undefined when nothing does.
 */
export function driftOf(live: Resource | undefined, desired: Resource): string | undefined {
  if (!live) return "it does not exist";
  if (!holds(live.spec, desired.spec)) return "its spec was changed";
  for (const field of ["labels", "annotations"] as const) {
    const wanted = desired.metadata[field] ?? {};
    const actual = live.metadata[field] ?? {};
    const changed = Object.keys(wanted).find((key) => actual[key] !== wanted[key]);
    if (changed) return `its ${field.slice(0, -1)} ${changed} was changed`;
  }
  return undefined;
}
