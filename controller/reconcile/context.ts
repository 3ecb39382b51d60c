// What every reconciler gets: the ports, injected, never global, and the installation's settings.
import type { ModelRepository } from "../api/types.generated.ts";
import type { Builder, Clock, EventRecorder, Runtime, SourceReader, Store } from "../core/ports.ts";
import type { GitSource } from "../source/git.ts";
import type { ControllerMetrics } from "./metrics.ts";

export interface ReconcileSettings {
  /** ModelBuilds kept per model besides those a deployment runs or names in its history. */
  buildRetention: number;
  /** History records kept per ModelDeployment (the newest; the one serving is always kept). */
  historyLimit: number;
  /** How often a deployed ModelDeployment is checked for drift when no event comes. */
  deploymentResyncMs: number;
  /** How often a running build is polled. */
  buildPollMs: number;
  /** How many builds run at once; the others wait (phase Pending) for a slot. */
  maxConcurrentBuilds: number;
  /** How often a rollout in progress is polled. */
  rolloutPollMs: number;
  /** The upper bound of spec.replicas the validator enforces (default 9). */
  maxReplicas?: number;
}

export const DEFAULT_RECONCILE_SETTINGS: ReconcileSettings = {
  buildRetention: 10,
  historyLimit: 20,
  deploymentResyncMs: 60_000,
  buildPollMs: 500,
  maxConcurrentBuilds: 2,
  rolloutPollMs: 300,
};

export interface ReconcileContext {
  store: Store;
  builder: Builder;
  runtime: Runtime;
  sources: SourceReader;
  events: EventRecorder;
  clock: Clock;
  /** The git source of a repository (kept between syncs, so clones are reused). */
  gitSource(repository: ModelRepository): GitSource;
  /** Where callers reach a model: `${gatewayUrl()}/models/{name}/predict` (known once it listens). */
  gatewayUrl(): string;
  /** The base a build starts from, part of the build key (local: the runtime's name). */
  baseImage(runtime: "python3" | "r"): string;
  /** Lines for people that are not events (errors being retried). */
  log(line: string): void;
  metrics: ControllerMetrics;
  settings: ReconcileSettings;
}
