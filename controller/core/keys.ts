// Typed keys for the objects the ports and the queues talk about, so that no caller builds a
// "namespace/name" string and another splits it again.
import type { Kind } from "../api/schemas.ts";

export interface NamespacedName {
  namespace: string;
  name: string;
}

/** One object: what a work queue holds and a reconciler is handed. */
export interface ObjectKey extends NamespacedName {
  kind: Kind;
}

/** One rollout of a ModelDeployment: its deployment id, new for every rollout. */
export interface RolloutRef {
  deployment: NamespacedName;
  deploymentId: number;
}

/** `Kind/namespace/name`: the form keys take in queues, logs and maps. */
export function formatKey(key: ObjectKey): string {
  return `${key.kind}/${key.namespace}/${key.name}`;
}

/** `namespace/name`, for logs and map keys. */
export function formatName(key: NamespacedName): string {
  return `${key.namespace}/${key.name}`;
}

/** The key of a stored object; one with no namespace is in `defaultNamespace`. */
export function keyOf(
  object: { kind: string; metadata: { namespace?: string; name: string } },
  defaultNamespace = "default",
): ObjectKey {
  return {
    kind: object.kind as Kind,
    namespace: object.metadata.namespace ?? defaultNamespace,
    name: object.metadata.name,
  };
}

/** Just the namespace and name of a key (what the runtime and the sources are keyed by). */
export function namespacedName(key: NamespacedName): NamespacedName {
  return { namespace: key.namespace, name: key.name };
}

export function sameName(a: NamespacedName, b: NamespacedName): boolean {
  return a.namespace === b.namespace && a.name === b.name;
}
