// What both platforms run: the four reconcilers on one work queue, and which keys a store event
// wakes. The platforms differ only in the ports they pass in.
import type { ModelRepository } from "../api/types.generated.ts";
import type { Store, WatchEvent } from "../platform/ports.ts";
import type { GitSource } from "../source/git.ts";
import { repositoryReconciler } from "../source/sync.ts";
import { buildReconciler } from "./build.ts";
import type { ReconcileContext } from "./context.ts";
import { deploymentReconciler } from "./deployment.ts";
import { modelReconciler } from "./model.ts";
import { formatKey, WorkQueue } from "./queue.ts";

export function createControllerQueue(
  context: ReconcileContext,
  sourceOf: (repository: ModelRepository) => GitSource,
): WorkQueue {
  return new WorkQueue(
    {
      ModelRepository: repositoryReconciler({
        store: context.store,
        sourceOf,
        now: () => context.clock.now(),
        log: context.log,
      }),
      Model: modelReconciler(context),
      ModelBuild: buildReconciler(context),
      ModelDeployment: deploymentReconciler(context),
    },
    {
      onError: (key, error, terminal) =>
        context.log(`${key}: ${terminal ? "stalled" : "error (will retry)"}: ${error.message}`),
    },
  );
}

/**
 * The keys an event wakes (level-triggered: an event only says where to look again): the object
 * itself; for a ModelBuild its Model; for a Model or a ModelBuild the deployments of that model.
 */
export function keysToWake(event: WatchEvent, store: Store, defaultNamespace: string): string[] {
  const object = event.object;
  const namespace = object.metadata.namespace ?? defaultNamespace;
  const keys = [formatKey({ kind: object.kind, namespace, name: object.metadata.name })];
  const model =
    object.kind === "Model"
      ? object.metadata.name
      : object.kind === "ModelBuild"
        ? object.spec.model
        : undefined;
  if (object.kind === "ModelBuild")
    keys.push(formatKey({ kind: "Model", namespace, name: object.spec.model }));
  if (model) {
    for (const deployment of store.list("ModelDeployment", namespace)) {
      if (deployment.spec.model === model) {
        keys.push(
          formatKey({ kind: "ModelDeployment", namespace, name: deployment.metadata.name }),
        );
      }
    }
  }
  return keys;
}
