// The Kubernetes platform's Store: an informer per kind (informer.ts), server-side apply with the
// field manager `modelship`, status through the status subresource, deletes with a uid
// precondition, finalizers by guarded JSON Patch, and a deployment-id counter in a ConfigMap
// updated with optimistic concurrency. A write resolves once the cache holds it (read your
// writes), so that the next pass never acts on the state from before its own write.
import { KINDS, type Kind } from "../../api/schemas.ts";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../../core/labels.ts";
import type { CallOptions, Resource, ResourceOf, Store, WatchEvent } from "../../core/ports.ts";
import {
  customCollectionPath,
  customPath,
  deleteOptions,
  isConflict,
  isInvalid,
  isNotFound,
  type KubeClient,
  PLURALS,
} from "./client.ts";
import {
  type Change,
  InformerSet,
  type InformerTimings,
  type KubeObject,
  versionOf,
  type WatchedNamespaces,
} from "./informer.ts";

/** How long a write waits for its own change to reach the cache (read your writes). */
const CACHE_WAIT_MS = 5000;
/** A finalizer change re-reads and tries again this often when someone else changed the list. */
const FINALIZER_ATTEMPTS = 5;
const ID_ATTEMPTS = 20;

export const ID_CONFIG_MAP = "modelship-state";

const WATCH_TYPES = { add: "ADDED", update: "MODIFIED", delete: "DELETED" } as const;

/**
 * What an apply sends: spec (and any other top-level field but status), and of the metadata
 * only name, namespace, labels, annotations and owner references. The server's own fields
 * (uid, resourceVersion…) would act as preconditions, and finalizers belong to setFinalizer:
 * applying them would make them ours and remove others' on the next apply.
 */
export function appliedFields(object: Resource, namespace: string): Record<string, unknown> {
  const { status: _status, metadata, ...rest } = object as Resource & { status?: unknown };
  const { labels, annotations, ownerReferences } = metadata as {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: unknown[];
  };
  return {
    ...rest,
    metadata: {
      name: metadata.name,
      namespace,
      ...(labels ? { labels } : {}),
      ...(annotations ? { annotations } : {}),
      ...(ownerReferences ? { ownerReferences } : {}),
    },
  };
}

type JsonPatch = { op: "test" | "add" | "replace"; path: string; value: unknown }[];

/**
 * The JSON Patch that adds or removes `finalizer`, guarded by a `test` of the list it was
 * computed from (a concurrent change fails the test instead of being overwritten). With no list
 * yet, there is nothing to test: the resourceVersion guards instead. Undefined: nothing to do.
 */
export function finalizerPatch(
  object: KubeObject,
  finalizer: string,
  present: boolean,
): JsonPatch | undefined {
  const current = object.metadata.finalizers;
  if ((current?.includes(finalizer) ?? false) === present) return undefined;
  if (current === undefined) {
    return [
      { op: "test", path: "/metadata/resourceVersion", value: object.metadata.resourceVersion },
      { op: "add", path: "/metadata/finalizers", value: [finalizer] },
    ];
  }
  const next = present ? [...current, finalizer] : current.filter((name) => name !== finalizer);
  return [
    { op: "test", path: "/metadata/finalizers", value: current },
    { op: "replace", path: "/metadata/finalizers", value: next },
  ];
}

/**
 * When the cache shows a finalizer patch: at its version, or gone when the patch removed the
 * last finalizer of an object being deleted (the API server deletes it right after).
 */
function showsFinalizerPatch(patched: KubeObject): (cached: KubeObject | undefined) => boolean {
  const released =
    Boolean(patched.metadata.deletionTimestamp) && !patched.metadata.finalizers?.length;
  return (cached) =>
    !cached ||
    cached.metadata.uid !== patched.metadata.uid ||
    (!released && versionOf(cached) >= versionOf(patched));
}

/** A DELETE answers with the object (held by finalizers) or a Status naming it. */
interface DeleteAnswer {
  metadata?: { uid?: string };
  details?: { uid?: string };
}

interface IdConfigMap {
  metadata: { resourceVersion: string; labels?: Record<string, string> };
  data?: Record<string, string>;
}

export class KubeStore implements Store {
  private readonly client: KubeClient;
  readonly namespace: string;
  private readonly informers = new Map<Kind, InformerSet<KubeObject>>();
  /** The namespaces whose objects it follows: its own, by default. */
  readonly watched: WatchedNamespaces;
  private readonly listeners = new Set<(event: WatchEvent) => void>();
  private readonly log: (line: string) => void;
  private readonly timings: Partial<InformerTimings>;

  constructor(
    client: KubeClient,
    namespace: string,
    log: (line: string) => void = () => {},
    timings: Partial<InformerTimings> = {},
    watched: WatchedNamespaces = [namespace],
  ) {
    this.client = client;
    this.namespace = namespace;
    this.log = log;
    this.timings = timings;
    this.watched = watched;
  }

  /** Lists every kind and starts watching; resolves once the caches are filled. */
  async start(): Promise<void> {
    for (const kind of KINDS) {
      const informer = new InformerSet<KubeObject>(
        this.watched,
        (namespace) => customCollectionPath(kind, namespace),
        {
          client: this.client,
          resource: PLURALS[kind] ?? kind,
          log: this.log,
          timings: this.timings,
        },
      );
      informer.onChange((change) => this.emit(change));
      this.informers.set(kind, informer);
    }
    await Promise.all([...this.informers.values()].map((informer) => informer.start()));
  }

  /** Stops every watch (their sockets close at once). */
  async stop(): Promise<void> {
    await Promise.all([...this.informers.values()].map((informer) => informer.stop()));
  }

  private emit(change: Change<KubeObject>): void {
    const event: WatchEvent = {
      type: WATCH_TYPES[change.type],
      object: structuredClone(change.object) as unknown as Resource,
    };
    for (const listener of this.listeners) listener(event);
  }

  private informer(kind: Kind): InformerSet<KubeObject> {
    const informer = this.informers.get(kind);
    if (!informer) throw new Error("the store has not been started");
    return informer;
  }

  get<K extends Kind>(kind: K, namespace: string, name: string): ResourceOf[K] | undefined {
    const object = this.informer(kind).get(namespace, name);
    return object ? (structuredClone(object) as unknown as ResourceOf[K]) : undefined;
  }

  list<K extends Kind>(kind: K, namespace?: string): ResourceOf[K][] {
    return this.informer(kind)
      .list(namespace)
      .map((object) => structuredClone(object) as unknown as ResourceOf[K])
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  /**
   * Waits (up to CACHE_WAIT_MS) until the cache shows the write. The write itself has
   * succeeded: a slow cache or an abort ends the wait, never with an error.
   */
  private async settle(
    kind: Kind,
    namespace: string,
    name: string,
    done: (cached: KubeObject | undefined) => boolean,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    await this.informer(kind).waitFor(namespace, name, done, {
      timeoutMs: CACHE_WAIT_MS,
      ...(signal ? { signal } : {}),
    });
  }

  /** Until the cache has the object at `version` or later, or no longer has it. */
  private settleAt(
    kind: Kind,
    namespace: string,
    name: string,
    version: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    return this.settle(
      kind,
      namespace,
      name,
      (cached) => !cached || versionOf(cached) >= version,
      signal,
    );
  }

  async apply<R extends Resource>(object: R, options: CallOptions = {}): Promise<R> {
    const namespace = object.metadata.namespace ?? this.namespace;
    const applied = await this.client.apply<R>(
      customPath(object.kind, namespace, object.metadata.name),
      appliedFields(object, namespace),
      options,
    );
    // Unlike settleAt, an object not yet in the cache is waited for: it may be new.
    await this.settle(
      object.kind,
      namespace,
      object.metadata.name,
      (cached) => versionOf(cached) >= versionOf(applied as unknown as KubeObject),
      options.signal,
    );
    return applied;
  }

  async patchStatus<K extends Kind>(
    kind: K,
    namespace: string,
    name: string,
    status: NonNullable<ResourceOf[K]["status"]>,
    options: CallOptions = {},
  ): Promise<ResourceOf[K]> {
    const patched = await this.client.apply<ResourceOf[K]>(
      `${customPath(kind, namespace, name)}/status`,
      { apiVersion: "modelship.dev/v1alpha1", kind, metadata: { name, namespace }, status },
      options,
    );
    await this.settleAt(
      kind,
      namespace,
      name,
      versionOf(patched as unknown as KubeObject),
      options.signal,
    );
    return patched;
  }

  async delete(
    kind: Kind,
    namespace: string,
    name: string,
    options: CallOptions & { uid?: string } = {},
  ): Promise<boolean> {
    let answer: DeleteAnswer;
    try {
      answer = await this.client.request<DeleteAnswer>(
        "DELETE",
        customPath(kind, namespace, name),
        deleteOptions(options.uid),
        undefined,
        options,
      );
    } catch (error) {
      if (isNotFound(error)) return false;
      // The uid precondition failed: what has the name now is a namesake, not the object meant.
      if (options.uid && isConflict(error)) return false;
      throw error;
    }
    const uid = answer.metadata?.uid ?? answer.details?.uid;
    // Gone, replaced by a namesake, or waiting for its finalizers.
    await this.settle(
      kind,
      namespace,
      name,
      (cached) =>
        !cached ||
        (uid !== undefined && cached.metadata.uid !== uid) ||
        Boolean(cached.metadata.deletionTimestamp),
      options.signal,
    );
    return true;
  }

  async setFinalizer(
    kind: Kind,
    namespace: string,
    name: string,
    finalizer: string,
    present: boolean,
    options: CallOptions = {},
  ): Promise<void> {
    const path = customPath(kind, namespace, name);
    let lastError: unknown;
    for (let attempt = 0; attempt < FINALIZER_ATTEMPTS; attempt++) {
      let current: KubeObject;
      try {
        current = await this.client.request<KubeObject>("GET", path, undefined, undefined, options);
      } catch (error) {
        // Nothing to remove a finalizer from; adding one to nothing is the caller's NotFound.
        if (isNotFound(error) && !present) return;
        throw error;
      }
      const patch = finalizerPatch(current, finalizer, present);
      if (!patch) return;
      try {
        const patched = await this.client.request<KubeObject>(
          "PATCH",
          path,
          patch,
          "application/json-patch+json",
          options,
        );
        await this.settle(kind, namespace, name, showsFinalizerPatch(patched), options.signal);
        return;
      } catch (error) {
        // The list (or the resourceVersion) changed since the read: read again.
        if (!isConflict(error) && !isInvalid(error)) throw error;
        lastError = error;
      }
    }
    throw lastError;
  }

  watch(listener: (event: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The counter lives in a ConfigMap; a conflicting update (another writer) is retried. */
  async allocateDeploymentId(options: CallOptions = {}): Promise<number> {
    const path = `/api/v1/namespaces/${this.namespace}/configmaps`;
    for (let attempt = 0; attempt < ID_ATTEMPTS; attempt++) {
      let current: IdConfigMap | undefined;
      try {
        current = await this.client.request<IdConfigMap>(
          "GET",
          `${path}/${ID_CONFIG_MAP}`,
          undefined,
          undefined,
          options,
        );
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
      const next = Number(current?.data?.lastDeploymentId ?? 0) + 1;
      const body = {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: {
          name: ID_CONFIG_MAP,
          namespace: this.namespace,
          labels: { ...current?.metadata.labels, [LABEL_MANAGED_BY]: MANAGED_BY },
          // The update's precondition: nobody wrote the counter since the read.
          ...(current ? { resourceVersion: current.metadata.resourceVersion } : {}),
        },
        data: { ...current?.data, lastDeploymentId: String(next) },
      };
      try {
        if (current) {
          await this.client.request("PUT", `${path}/${ID_CONFIG_MAP}`, body, undefined, options);
        } else {
          await this.client.request("POST", path, body, undefined, options);
        }
        return next;
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    throw new Error(`could not allocate a deployment id: ConfigMap ${ID_CONFIG_MAP} kept changing`);
  }
}
