// What both platforms run: the four reconcilers, each on a work queue of its own (a slow git
// fetch or build never holds up a rollout), and which keys a store event wakes. The platforms
// differ only in the ports they pass in.
import { canonicalJson } from "../api/canonical-json.ts";
import { KINDS, type Kind } from "../api/schemas.ts";
import { formatKey, keyOf, type ObjectKey } from "../core/keys.ts";
import { type Resource, type Store, storedMetadata, type WatchEvent } from "../core/ports.ts";
import { buildReconciler } from "./build.ts";
import type { ReconcileContext } from "./context.ts";
import { deploymentReconciler } from "./deployment.ts";
import { modelReconciler } from "./model.ts";
import { WorkQueue } from "./queue.ts";
import { repositoryReconciler } from "./repository.ts";

/** Workers per kind: builds and rollouts wait on others, so more of them run at once. */
const CONCURRENCY: Record<Kind, number> = {
  ModelRepository: 2,
  Model: 2,
  ModelBuild: 4,
  ModelDeployment: 4,
};

/** A pass's deadline per kind: a first clone of a large repository takes a while. */
const PASS_TIMEOUT_MS: Record<Kind, number> = {
  ModelRepository: 10 * 60_000,
  Model: 2 * 60_000,
  ModelBuild: 2 * 60_000,
  ModelDeployment: 2 * 60_000,
};

/**
 * What in an object makes its own reconciler look again: not its status, which the reconciler
 * wrote itself (controller-runtime's GenerationChanged and metadata predicates, together).
 */
export function selfFingerprint(object: Resource): string {
  const metadata = storedMetadata(object);
  return canonicalJson([
    metadata.generation,
    object.metadata.labels ?? {},
    object.metadata.annotations ?? {},
    metadata.finalizers ?? [],
    metadata.deletionTimestamp ?? "",
  ]);
}

/**
 * The keys an event wakes (level-triggered: an event only says where to look again): for a
 * ModelBuild its Model; for a Model or a ModelBuild the deployments of that model; and the
 * object itself unless only its status changed.
 */
export function keysToWake(
  event: WatchEvent,
  store: Store,
  defaultNamespace: string,
  selfChanged: boolean,
): ObjectKey[] {
  const object = event.object;
  const key = keyOf(object, defaultNamespace);
  const keys: ObjectKey[] = selfChanged ? [key] : [];
  const model =
    object.kind === "Model"
      ? object.metadata.name
      : object.kind === "ModelBuild"
        ? object.spec.model
        : undefined;
  if (object.kind === "ModelBuild") keys.push({ ...key, kind: "Model", name: object.spec.model });
  if (model) {
    for (const deployment of store.list("ModelDeployment", key.namespace)) {
      if (deployment.spec.model === model) {
        keys.push({ ...key, kind: "ModelDeployment", name: deployment.metadata.name });
      }
    }
  }
  return keys;
}

export class Controller {
  private readonly queues: Record<Kind, WorkQueue>;
  private readonly context: ReconcileContext;
  private readonly defaultNamespace: string;
  /** Each object's fingerprint at its last event, to tell a status-only change. */
  private readonly seen = new Map<string, string>();

  constructor(context: ReconcileContext, defaultNamespace: string) {
    this.context = context;
    this.defaultNamespace = defaultNamespace;
    const reconcilers = {
      ModelRepository: repositoryReconciler(context),
      Model: modelReconciler(context),
      ModelBuild: buildReconciler(context),
      ModelDeployment: deploymentReconciler(context),
    };
    const queue = (kind: Kind) =>
      new WorkQueue(reconcilers[kind], {
        concurrency: CONCURRENCY[kind],
        passTimeoutMs: PASS_TIMEOUT_MS[kind],
        observer: context.metrics.queueObserver(kind),
        onError: (key, error, terminal) => {
          // A stall is an event and a condition already; errors being retried are logged.
          if (!terminal) context.log(`${formatKey(key)}: error (will retry): ${error.message}`);
        },
      });
    this.queues = {
      ModelRepository: queue("ModelRepository"),
      Model: queue("Model"),
      ModelBuild: queue("ModelBuild"),
      ModelDeployment: queue("ModelDeployment"),
    };
  }

  add(key: ObjectKey, afterMs = 0): void {
    this.queues[key.kind]?.add(key, afterMs);
  }

  /** A store event: wake what it concerns. */
  onEvent(event: WatchEvent): void {
    const id = formatKey(keyOf(event.object, this.defaultNamespace));
    const fingerprint = selfFingerprint(event.object);
    const selfChanged = event.type === "DELETED" || this.seen.get(id) !== fingerprint;
    if (event.type === "DELETED") this.seen.delete(id);
    else this.seen.set(id, fingerprint);
    for (const key of keysToWake(event, this.context.store, this.defaultNamespace, selfChanged)) {
      this.add(key);
    }
  }

  /** Every object gets a pass: a start picks up where the last run was. */
  enqueueAll(): void {
    for (const kind of KINDS) {
      for (const object of this.context.store.list(kind)) {
        this.seen.set(formatKey(keyOf(object, this.defaultNamespace)), selfFingerprint(object));
        this.add(keyOf(object, this.defaultNamespace));
      }
    }
  }

  start(): void {
    for (const queue of Object.values(this.queues)) queue.start();
  }

  /** Resolves once no queue has work waiting or in flight. */
  async idle(): Promise<void> {
    // A pass on one queue can wake another: go round until all are idle together.
    for (;;) {
      await Promise.all(Object.values(this.queues).map((queue) => queue.idle()));
      if (Object.values(this.queues).every((queue) => queue.isIdle)) return;
    }
  }

  async stop(): Promise<void> {
    await Promise.all(Object.values(this.queues).map((queue) => queue.stop()));
  }
}
