// The ports the reconcilers depend on (DESIGN §4), injected through one context object. The
// local platform (controller/platform/local) implements them for `modelship up`; the Kubernetes
// platform will implement the same ones.
import type { Kind } from "../api/schemas.ts";
import type {
  Model,
  ModelBuild,
  ModelDeployment,
  ModelRepository,
} from "../api/types.generated.ts";

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
}

export type WatchEvent = { type: "ADDED" | "MODIFIED" | "DELETED"; object: Resource };

export interface Store {
  /** From the cache: reconcilers read the current state, never the event that woke them. */
  get<K extends Kind>(kind: K, namespace: string, name: string): ResourceOf[K] | undefined;
  list<K extends Kind>(kind: K, namespace?: string): ResourceOf[K][];
  /**
   * Creates or updates an object's spec, labels and annotations (status is left alone);
   * `metadata.generation` grows when the spec changes. Returns the stored object.
   */
  apply<R extends Resource>(object: R): Promise<R>;
  /** Replaces the status (the status subresource). */
  patchStatus<K extends Kind>(
    kind: K,
    namespace: string,
    name: string,
    status: NonNullable<ResourceOf[K]["status"]>,
  ): Promise<ResourceOf[K]>;
  delete(kind: Kind, namespace: string, name: string): Promise<boolean>;
  /** Calls `listener` after every change; returns the function that stops it. */
  watch(listener: (event: WatchEvent) => void): () => void;
  /** The next deployment id: numeric, unique across the installation (CDSW's). */
  allocateDeploymentId(): Promise<number>;
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
  start(build: ModelBuild): Promise<void>;
  /** Undefined when this builder knows nothing of the build (never started, or lost). */
  status(build: ModelBuild): Promise<BuildProgress | undefined>;
  logs(build: ModelBuild): Promise<string>;
}

/** What one rollout runs: a build, as N replicas, with its settings. */
export interface RolloutSpec {
  /** namespace/name of the ModelDeployment. */
  key: string;
  model: string;
  deploymentId: number;
  build: ModelBuild;
  replicas: number;
  env: Record<string, string>;
  timeoutSeconds: number;
  /** What each replica may use (the Kubernetes runtime sets requests and limits). */
  resources?: { cpu?: string | number; memory?: string | number; gpu?: number };
  /** The ModelDeployment, for owner references (the Kubernetes runtime). */
  owner?: { name: string; uid: string };
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
  /** All replicas running, old rollouts' included. */
  replicas: number;
  /** Every replica runs the current rollout and is ready. */
  complete: boolean;
  /** The current rollout cannot progress (its replicas cannot load the function). */
  failure?: string;
}

export interface Runtime {
  /** Moves the deployment to `spec`, replacing replicas one by one; returns at once. */
  apply(spec: RolloutSpec): Promise<void>;
  status(key: string): RolloutStatus | undefined;
  /** Stops every replica of the deployment (calls in flight finish first). */
  stop(key: string): Promise<void>;
  replicas(key: string): ReplicaInfo[];
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
