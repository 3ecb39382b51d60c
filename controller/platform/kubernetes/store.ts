// The Kubernetes platform's Store: an informer per kind (list, then watch; restarted with
// backoff when the watch fails, and relisted on a timer), server-side apply with the field
// manager `modelship`, status through the status subresource, and a deployment-id counter in a
// ConfigMap updated with optimistic concurrency.
import {
  type Informer,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
} from "@kubernetes/client-node";
import { KINDS, type Kind } from "../../api/schemas.ts";
import type { Resource, ResourceOf, Store, WatchEvent } from "../ports.ts";
import { customPath, isConflict, isNotFound, type KubeClient } from "./client.ts";

/** How long a write waits for its own change to reach the cache (read your writes). */
const CACHE_WAIT_MS = 5000;
/** A full relist now and then, in case a watch silently missed an event. */
const RELIST_MS = 10 * 60_000;
const MAX_RESTART_BACKOFF_MS = 30_000;

export const ID_CONFIG_MAP = "modelship-state";

type Cached = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

function versionOf(object: unknown): number {
  return Number(
    (object as { metadata?: { resourceVersion?: string } } | undefined)?.metadata
      ?.resourceVersion ?? 0,
  );
}

export class KubeStore implements Store {
  private readonly client: KubeClient;
  readonly namespace: string;
  private readonly informers = new Map<Kind, Cached>();
  private readonly listeners = new Set<(event: WatchEvent) => void>();
  private relistTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly log: (line: string) => void;

  constructor(client: KubeClient, namespace: string, log: (line: string) => void = () => {}) {
    this.client = client;
    this.namespace = namespace;
    this.log = log;
  }

  /** Lists every kind and starts watching; resolves once the caches are filled. */
  async start(): Promise<void> {
    await Promise.all(KINDS.map((kind) => this.startInformer(kind)));
    this.relistTimer = setInterval(() => {
      for (const informer of this.informers.values()) {
        informer
          .stop()
          .then(() => informer.start())
          .catch(() => {});
      }
    }, RELIST_MS);
    this.relistTimer.unref();
  }

  private async startInformer(kind: Kind): Promise<void> {
    const path = customPath(kind, this.namespace);
    const informer = makeInformer(this.client.config, path, () =>
      this.client.request("GET", path),
    ) as Cached;
    const emit = (type: WatchEvent["type"]) => (object: KubernetesObject) => {
      for (const listener of this.listeners)
        listener({ type, object: object as unknown as Resource });
    };
    informer.on("add", emit("ADDED"));
    informer.on("update", emit("MODIFIED"));
    informer.on("delete", emit("DELETED"));
    let failures = 0;
    informer.on("error", (error) => {
      if (this.stopped) return;
      failures += 1;
      const wait = Math.min(500 * 2 ** (failures - 1), MAX_RESTART_BACKOFF_MS);
      this.log(
        `watch of ${kind} failed (${(error as Error)?.message ?? error}); restarting in ${wait} ms`,
      );
      setTimeout(() => {
        if (!this.stopped)
          informer.start().then(
            () => (failures = 0),
            () => {},
          );
      }, wait);
    });
    this.informers.set(kind, informer);
    await informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.relistTimer);
    await Promise.all([...this.informers.values()].map((informer) => informer.stop()));
  }

  private cache(kind: Kind): Cached {
    const informer = this.informers.get(kind);
    if (!informer) throw new Error("the store has not been started");
    return informer;
  }

  get<K extends Kind>(kind: K, namespace: string, name: string): ResourceOf[K] | undefined {
    const object = this.cache(kind).get(name, namespace);
    return object ? (structuredClone(object) as unknown as ResourceOf[K]) : undefined;
  }

  list<K extends Kind>(kind: K, namespace?: string): ResourceOf[K][] {
    return this.cache(kind)
      .list(namespace)
      .map((object) => structuredClone(object) as unknown as ResourceOf[K])
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  /** Waits until the cache holds the object at `version` or later (or its deletion). */
  private async settle(
    kind: Kind,
    name: string,
    namespace: string,
    version: number | "gone",
  ): Promise<void> {
    const deadline = Date.now() + CACHE_WAIT_MS;
    while (Date.now() < deadline) {
      const cached = this.cache(kind).get(name, namespace);
      if (version === "gone" ? !cached : versionOf(cached) >= version) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async apply<R extends Resource>(object: R): Promise<R> {
    const namespace = object.metadata.namespace ?? this.namespace;
    const { status: _status, ...withoutStatus } = object as R & { status?: unknown };
    const body = { ...withoutStatus, metadata: { ...object.metadata, namespace } };
    const applied = await this.client.apply<R>(
      customPath(object.kind, namespace, object.metadata.name),
      body,
    );
    await this.settle(object.kind, object.metadata.name, namespace, versionOf(applied));
    return applied;
  }

  async patchStatus<K extends Kind>(
    kind: K,
    namespace: string,
    name: string,
    status: NonNullable<ResourceOf[K]["status"]>,
  ): Promise<ResourceOf[K]> {
    const patched = await this.client.apply<ResourceOf[K]>(
      `${customPath(kind, namespace, name)}/status`,
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind,
        metadata: { name, namespace },
        status,
      },
    );
    await this.settle(kind, name, namespace, versionOf(patched));
    return patched;
  }

  async delete(kind: Kind, namespace: string, name: string): Promise<boolean> {
    try {
      await this.client.request("DELETE", customPath(kind, namespace, name));
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
    await this.settle(kind, name, namespace, "gone");
    return true;
  }

  watch(listener: (event: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The counter lives in a ConfigMap; a conflicting update (another writer) is retried. */
  async allocateDeploymentId(): Promise<number> {
    const path = `/api/v1/namespaces/${this.namespace}/configmaps`;
    for (let attempt = 0; attempt < 20; attempt++) {
      let current:
        | { metadata: { resourceVersion: string }; data?: Record<string, string> }
        | undefined;
      try {
        current = await this.client.request("GET", `${path}/${ID_CONFIG_MAP}`);
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
          ...(current ? { resourceVersion: current.metadata.resourceVersion } : {}),
        },
        data: { ...current?.data, lastDeploymentId: String(next) },
      };
      try {
        if (current) await this.client.request("PUT", `${path}/${ID_CONFIG_MAP}`, body);
        else await this.client.request("POST", path, body);
        return next;
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    throw new Error(`could not allocate a deployment id: ConfigMap ${ID_CONFIG_MAP} kept changing`);
  }
}
