// The labels and annotations modelship puts on what it creates. Ownership rests on them: the
// controller lists, watches, changes and deletes only objects labelled managed-by modelship, and
// each object also carries the labels of the object that owns it (docs/kubernetes.md#ownership).

/** Kubernetes' recommended label: every object modelship creates carries it. */
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "modelship";
/** `app.kubernetes.io/managed-by=modelship`, as a label selector. */
export const MANAGED_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

/** On what a sync applies: the ModelRepository that applied it (for people and for ownership checks). */
export const LABEL_REPOSITORY = "modelship.dev/repository";
/** On ModelBuilds, Jobs, Deployments and Services: the Model they belong to. */
export const LABEL_MODEL = "modelship.dev/model";
/** On Deployments, Services, EndpointSlices and pods: the ModelDeployment they run. */
export const LABEL_DEPLOYMENT = "modelship.dev/deployment";
/** On Jobs and build pods: the ModelBuild they make. */
export const LABEL_BUILD = "modelship.dev/build";

export const ANNOTATION_COMMIT = "modelship.dev/commit";
export const ANNOTATION_SOURCE_PATH = "modelship.dev/source-path";
/** On Models: the files (repo-relative, a JSON list) that hold the commit's manifests. */
export const ANNOTATION_MANIFEST_FILES = "modelship.dev/manifest-files";
/**
 * On Models: the directories (repo-relative, a JSON list) of the commit's other Models that lie
 * inside this one's source path, which its build leaves out (source-filter.ts).
 */
export const ANNOTATION_NESTED_SOURCES = "modelship.dev/nested-sources";
/**
 * On everything a sync applies: where it is declared, `path:line` (repo-relative) at the commit
 * of ANNOTATION_COMMIT, so that the dashboard and `describe` point at the YAML to change.
 */
export const ANNOTATION_MANIFEST = "modelship.dev/manifest";
export const ANNOTATION_AUTHOR = "modelship.dev/commit-author";
/**
 * On a ModelDeployment: a new value restarts every replica (a new rollout of the same build).
 * Committed to git, or set by `modelship rollout restart`, as `kubectl rollout restart` sets
 * its Deployment's.
 */
export const ANNOTATION_RESTARTED_AT = "modelship.dev/restartedAt";
/** On a Model: a new value makes a new build of the same code (CDSW's "Rebuild"). */
export const ANNOTATION_REBUILD = "modelship.dev/rebuild";
/**
 * On a ModelRepository: a new value asks for a fetch now (Flux's `reconcile.fluxcd.io/requestedAt`).
 * A controller replica that does not lead answers the git webhook by setting it, and the leader
 * fetches.
 */
export const ANNOTATION_REQUESTED_AT = "modelship.dev/requestedAt";
/** Set to "true" on a ModelRepository to follow a branch whose history was rewritten. */
export const ANNOTATION_ALLOW_REWRITE = "modelship.dev/allow-rewrite";

/**
 * Annotations that operations set besides git (a restart, a request to fetch): a sync that does
 * not declare one keeps it, as server-side apply keeps the fields another manager set. A sync
 * that declares one sets it.
 */
export const OPERATION_ANNOTATIONS: readonly string[] = [
  ANNOTATION_RESTARTED_AT,
  ANNOTATION_REQUESTED_AT,
];

/** The finalizer that makes deleting a ModelRepository remove (or orphan) what it applied. */
export const REPOSITORY_FINALIZER = "modelship.dev/finalizer";

/** The labels every object that `owner` makes carries: ours, and the owner's. */
export function ownedLabels(owner: Record<string, string>): Record<string, string> {
  return { ...owner, [LABEL_MANAGED_BY]: MANAGED_BY };
}

export function isManaged(labels: Record<string, string> | undefined): boolean {
  return labels?.[LABEL_MANAGED_BY] === MANAGED_BY;
}
