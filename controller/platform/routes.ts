// The gateway's routes from the resources: one per deployed Model, with the ready replicas of
// its deployments, its keys and its settings. Both platforms feed the gateway with this.
import type { Model, ModelDeployment } from "../api/types.generated.ts";
import type { NamespacedName } from "../core/keys.ts";
import type { Store } from "../core/ports.ts";
import type { GatewayConfig, ModelRoute, ReplicaAddress } from "../gateway/config.ts";
import type { ApiKeyRecord } from "../gateway/keys.ts";

export interface RouteSources {
  store: Store;
  /** Ready replicas of a ModelDeployment. */
  readyReplicas(deployment: NamespacedName): ReplicaAddress[];
  /** sha256 of the model's access key, if it has one. */
  accessKeyHash(model: NamespacedName): string | undefined;
  apiKeys: ApiKeyRecord[];
  namespace?: string;
}

/**
 * The routes: one per Model that has a deployment, keyed by namespace and name, with the ready
 * replicas of all that Model's deployments. The gateway's path names a model by its name alone,
 * so two Models of one name in different namespaces cannot both be served: the one created
 * first keeps the route, and the other gets none — never the first's route, keys or settings
 * (the sync refuses to make such a twin; this holds even for one made by hand).
 */
export function gatewayConfigFrom(sources: RouteSources): GatewayConfig {
  const byModel = new Map<string, { route: ModelRoute; created: string }>();
  for (const deployment of sources.store.list("ModelDeployment", sources.namespace)) {
    const namespace = deployment.metadata.namespace ?? "default";
    const model = sources.store.get("Model", namespace, deployment.spec.model);
    if (!model) continue;
    const replicas = sources.readyReplicas({ namespace, name: deployment.metadata.name });
    const key = `${namespace}/${model.metadata.name}`;
    const existing = byModel.get(key);
    if (existing) {
      existing.route.replicas.push(...replicas);
      continue;
    }
    byModel.set(key, {
      route: routeOf(
        model,
        deployment,
        replicas,
        sources.accessKeyHash({ namespace, name: model.metadata.name }),
      ),
      created: (model.metadata as { creationTimestamp?: string }).creationTimestamp ?? "",
    });
  }
  const byName = new Map<string, { route: ModelRoute; created: string }>();
  for (const entry of byModel.values()) {
    const taken = byName.get(entry.route.name);
    if (!taken || entry.created < taken.created) byName.set(entry.route.name, entry);
  }
  return { models: [...byName.values()].map((entry) => entry.route), apiKeys: sources.apiKeys };
}

function routeOf(
  model: Model,
  deployment: ModelDeployment,
  replicas: ReplicaAddress[],
  accessKeySha256: string | undefined,
): ModelRoute {
  return {
    name: model.metadata.name,
    ...(accessKeySha256 ? { accessKeySha256 } : {}),
    authentication: {
      enabled: model.spec.authentication?.enabled ?? true,
      ...(model.spec.authentication?.users ? { users: model.spec.authentication.users } : {}),
    },
    ...(model.spec.inputSchema ? { inputSchema: model.spec.inputSchema } : {}),
    ...(deployment.spec.maxRequestBytes === undefined
      ? {}
      : { maxRequestBytes: deployment.spec.maxRequestBytes }),
    queueTimeoutSeconds: deployment.spec.queueTimeoutSeconds ?? 30,
    timeoutSeconds: deployment.spec.timeoutSeconds ?? 30,
    stopped: deployment.spec.stopped ?? false,
    replicas,
  };
}
