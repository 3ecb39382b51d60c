// The gateway's routes from the resources: one per deployed Model, with the ready replicas of
// its deployments, its keys and its settings. Both platforms feed the gateway with this.
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

export function gatewayConfigFrom(sources: RouteSources): GatewayConfig {
  const routes = new Map<string, ModelRoute>();
  for (const deployment of sources.store.list("ModelDeployment", sources.namespace)) {
    const namespace = deployment.metadata.namespace ?? "default";
    const model = sources.store.get("Model", namespace, deployment.spec.model);
    if (!model) continue;
    const replicas = sources.readyReplicas({ namespace, name: deployment.metadata.name });
    const existing = routes.get(model.metadata.name);
    if (existing) {
      existing.replicas.push(...replicas);
      continue;
    }
    const accessKeySha256 = sources.accessKeyHash({ namespace, name: model.metadata.name });
    routes.set(model.metadata.name, {
      name: model.metadata.name,
      ...(accessKeySha256 ? { accessKeySha256 } : {}),
      authentication: {
        enabled: model.spec.authentication?.enabled ?? true,
        ...(model.spec.authentication?.users ? { users: model.spec.authentication.users } : {}),
      },
      ...(model.spec.inputSchema ? { inputSchema: model.spec.inputSchema } : {}),
      queueTimeoutSeconds: deployment.spec.queueTimeoutSeconds ?? 30,
      timeoutSeconds: deployment.spec.timeoutSeconds ?? 30,
      stopped: deployment.spec.stopped ?? false,
      replicas,
    });
  }
  return { models: [...routes.values()], apiKeys: sources.apiKeys };
}
