// The shared secret between the gateway and a deployment's replicas (docs/security.md). One
// random key for the installation, `replicas.key` in the Secret modelship-keys, which the
// controller makes and the gateway reads already; each deployment's secret is derived from it
// (HMAC-SHA256 of namespace/name), so the gateway needs no access to any other Secret. The
// controller puts a deployment's secret in a Secret of its own, which the pods read as
// MODELSHIP_GATEWAY_SECRET: the agent then answers /predict only to a caller that sends it.
import { createHmac, randomBytes } from "node:crypto";
import type { NamespacedName } from "../../core/keys.ts";

/** The field of modelship-keys that holds the installation's replica key. */
export const REPLICA_KEY_FIELD = "replicas.key";
/** The field of a deployment's Secret that holds its replicas' secret. */
export const REPLICA_SECRET_FIELD = "gateway-secret";

/** A new installation key: 32 random bytes, hex. */
export function newReplicaKey(): string {
  return randomBytes(32).toString("hex");
}

/** The Secret that holds a deployment's replica secret. */
export function replicaSecretName(deployment: string): string {
  return `modelship-replica-${deployment}`;
}

/** A deployment's replica secret: printable ASCII (hex), as the agent's header needs. */
export function replicaSecretOf(key: string, deployment: NamespacedName): string {
  return createHmac("sha256", key)
    .update(`${deployment.namespace}/${deployment.name}`)
    .digest("hex");
}
