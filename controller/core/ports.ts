// The ports the reconcilers depend on, injected through one context object. The local platform
// (controller/platform/local) implements them for `modelship up`, the Kubernetes platform
// (controller/platform/kubernetes) over the API server. Every call that does I/O takes an
// AbortSignal (a deadline and the controller's stop), as Go's context.Context does.
import type { Kind } from "../api/schemas.ts";
import type {
  Model,
  ModelBuild,
  ModelDeployment,
  ModelRepository,
} from "../api/types.generated.ts";
import type { NamespacedName } from "./keys.ts";

export type Resource = ModelRepository | Model | ModelBuild | ModelDeployment;

export interface ResourceOf {
  ModelRepository: ModelRepository;
  Model: Model;
  ModelBuild: ModelBuild;
  ModelDeployment: ModelDeployment;
}

/** What the store adds to metadata, as the Kubernetes API server does. */
export interface StoredMetadata {
  uid: string;
  generation: number;
  resourceVersion: string;
  creationTimestamp: string;
  /** Set when a delete waits for finalizers. */
  deletionTimestamp?: string;
  finalizers?: string[];
}

/** The store's metadata of an object (absent fields: an object that was never stored). */
export function storedMetadata(object: { metadata: unknown }): Partial<StoredMetadata> {
  return object.metadata as Partial<StoredMetadata>;
}

export type WatchEvent = { type: "ADDED" | "MODIFIED" | "DELETED"; object: Resource };

/** Options of every port call that does I/O. */
export interface CallOptions {
  /** Aborts the call: its deadline passed, or the controller stops. */
  signal?: AbortSignal;
}

export interface Store {
  /** From the cache: reconcilers read the current state, never the event that woke them. */
  get<K extends Kind>(kind: K, namespace: string, name: string): ResourceOf[K] | undefined;
  list<K extends Kind>(kind: K, namespace?: string): ResourceOf[K][];
  /**
   * Creates or updates an object's spec, labels and annotations (status is left alone);
   * `metadata.generation` grows when the spec changes. Returns the stored object.
   */
  apply<R extends Resource>(object: R, options?: CallOptions): Promise<R>;
  /** Replaces the status (the status subresource). */
  patchStatus<K extends Kind>(
    kind: K,
    namespace: string,
    name: string,
    status: NonNullable<ResourceOf[K]["status"]>,
    options?: CallOptions,
  ): Promise<ResourceOf[K]>;
  /**
   * Deletes an object; one with finalizers only gets its deletionTimestamp until they are all
   * removed. With `uid`, only that very object (not a namesake made since). False when there was
   * nothing (of that uid) to delete. On Kubernetes, what names it as its owner goes after it.
   */
  delete(
    kind: Kind,
    namespace: string,
    name: string,
    options?: CallOptions & { uid?: string },
  ): Promise<boolean>;
  /**
   * Adds or removes one finalizer, guarded on the object's current finalizer list (a JSON Patch
   * `test` on Kubernetes), so that a concurrent change to the list is never overwritten.
   */
  setFinalizer(
    kind: Kind,
    namespace: string,
    name: string,
    finalizer: string,
    present: boolean,
    options?: CallOptions,
  ): Promise<void>;
  /** Calls `listener` after every change; returns the function that stops it. */
  watch(listener: (event: WatchEvent) => void): () => void;
  /** The next deployment id: numeric, unique across the installation (CDSW's). */
  allocateDeploymentId(options?: CallOptions): Promise<number>;
}

export interface BuildProgress {
  phase: "Building" | "Succeeded" | "Failed";
  startedAt?: string;
  completedAt?: string;
  image?: string;
  message?: string;
}

export interface Builder {
  /** Starts the build unless it runs or has ended (idempotent). */
  start(build: ModelBuild, options?: CallOptions): Promise<void>;
  /** Undefined when this builder knows nothing of the build (never started, or lost). */
  status(build: ModelBuild, options?: CallOptions): Promise<BuildProgress | undefined>;
  logs(build: ModelBuild, options?: CallOptions): Promise<string>;
  /** Frees what the build left (its directory, its Job); the ModelBuild is being deleted. */
  remove(build: ModelBuild, options?: CallOptions): Promise<void>;
}

/** What one rollout runs: a build, as N replicas, with its settings. */
export interface RolloutSpec {
  /** The ModelDeployment. */
  deployment: NamespacedName;
  model: string;
  deploymentId: number;
  build: ModelBuild;
  replicas: number;
  env: Record<string, string>;
  timeoutSeconds: number;
  /** What each replica may use (the Kubernetes runtime sets requests and limits). */
  resources?: { cpu?: string | number; memory?: string | number; gpu?: number };
  /** The largest request body a replica takes, when the deployment sets one (maxRequestBytes). */
  maxRequestBytes?: number;
  /** The ModelDeployment's uid, for owner references (the Kubernetes runtime). */
  ownerUid?: string;
  /**
   * The rollout that served before this one and may still serve (this one has not completed).
   * A runtime that has lost its replicas (a restart) brings it back first.
   */
  previous?: { deploymentId: number; build: ModelBuild };
}

export interface ReplicaInfo {
  id: string;
  deploymentId: number;
  build: number;
  ready: boolean;
  /** Why not ready (a load error), when it is not. */
  reason?: string;
  url: string;
  stats: Record<string, number>;
}

export interface RolloutStatus {
  /** Replicas of the current rollout that are ready. */
  readyReplicas: number;
  /** Ready replicas of any rollout, the current one's and earlier ones': what answers calls. */
  servingReplicas: number;
  /** All replicas running, old rollouts' included. */
  replicas: number;
  /** Every replica runs the current rollout and is ready. */
  complete: boolean;
  /** The current rollout cannot progress (its replicas cannot load the function). */
  failure?: string;
  /**
   * The workload differs from what the last apply() asked for (someone scaled or edited it, or
   * deleted it): the next apply() puts it back.
   */
  drifted?: string;
}

export interface Runtime {
  /** Moves the deployment to `spec`, replacing replicas one by one; returns at once. */
  apply(spec: RolloutSpec, options?: CallOptions): Promise<void>;
  status(deployment: NamespacedName): RolloutStatus | undefined;
  /** Stops every replica of the deployment (calls in flight finish first). */
  stop(deployment: NamespacedName, options?: CallOptions): Promise<void>;
  /**
   * Takes every replica away but keeps what serves them, for `spec.stopped`: the Kubernetes
   * runtime scales the Deployment to zero and keeps it and its ReplicaSets (the rollout
   * history); the local one has nothing to keep and stops. True when it changed anything (a
   * second call, or one after a hand edit put right, says whether there was drift).
   */
  pause(deployment: NamespacedName, options?: CallOptions): Promise<boolean>;
  replicas(deployment: NamespacedName): ReplicaInfo[];
}

/** Reads git for the Model reconciler: the ids that identify a model's code at a commit. */
export interface SourceReader {
  treeId(
    repository: NamespacedName,
    commit: string,
    path: string,
    options?: CallOptions,
  ): Promise<string>;
  /**
   * An id of the files below `path` that make up a build: other than `exclude` (repo-relative)
   * and than what `patterns` and the .modelshipignore leave out (see GitSource.contentId).
   */
  contentId(
    repository: NamespacedName,
    commit: string,
    path: string,
    exclude: ReadonlySet<string>,
    patterns: readonly string[],
    options?: CallOptions,
  ): Promise<string>;
}

export type EventType = "Normal" | "Warning";

/** One transition of an object, as a Kubernetes Event records it. */
export interface EventRecord {
  type: EventType;
  /** PascalCase: SyncApplied, BuildFailed, RolloutCompleted. */
  reason: string;
  message: string;
  object: { kind: string; namespace: string; name: string; uid?: string };
  /** How many times the same event happened in a row; first and last time. */
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
}

export interface EventRecorder {
  /**
   * Records a transition of `object`. Never throws and never holds up a reconcile: an event that
   * cannot be written is logged and dropped.
   */
  record(object: Resource, type: EventType, reason: string, message: string): void;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
