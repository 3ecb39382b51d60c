// What a rollout's replicas serve, as both runtimes tell their replica agents: the gateway
// stores it with the metrics a prediction tracks, and the model gets it as CRNs.
import type { RolloutSpec } from "../core/ports.ts";
import type { ReplicaServes } from "../replica/agent.ts";

export function servesOf(spec: RolloutSpec): ReplicaServes {
  return {
    model: spec.model,
    build: spec.build.spec.number,
    deployment: spec.deployment.name,
    deploymentId: spec.deploymentId,
  };
}

/** `modelship replica --serves`'s value (cli/replica.ts parses it). */
export function servesArgument(spec: RolloutSpec): string {
  const serves = servesOf(spec);
  return `${serves.model}/${serves.build}/${serves.deployment}/${serves.deploymentId}`;
}
