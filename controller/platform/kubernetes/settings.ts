// The installation's settings for the Kubernetes platform (kustomize/base/config.yaml holds them
// as a ConfigMap; `modelship controller` reads them from the environment).
import { parseDurationMs } from "../../api/duration.ts";
import type { InformerTimings, WatchedNamespaces } from "./informer.ts";

/** Requests and limits in Kubernetes quantities ("500m", "2Gi"). */
export interface ResourceSettings {
  cpu?: string;
  memory?: string;
}

export interface KubernetesSettings {
  /** The installation's namespace: its Lease, its keys, its state. */
  namespace: string;
  /**
   * Where ModelRepositories (and so their models) are followed: a list of namespaces, or
   * "all"; the installation's own namespace when unset. RBAC must match (docs/kubernetes.md).
   */
  watchNamespaces?: WatchedNamespaces;
  /**
   * Where build Jobs run: a namespace of their own, at the Pod Security `baseline` level (the
   * Kaniko executor runs as root in its container), holding none of the installation's Secrets.
   */
  buildNamespace: string;
  /** What a build pod requests (memory is also its limit; CPU is not throttled). */
  buildResources: ResourceSettings;
  /** A repository for Kaniko's layer cache (`--cache-repo`); no cache when unset. */
  buildCacheRepo?: string;
  /** Secrets (in the models' namespace) the model pods pull their images with. */
  imagePullSecrets: string[];
  /** Where builds push: `<registry>/<namespace>-<model>:build-<n>`. */
  registry: string;
  /** A Secret of type dockerconfigjson that may push to the registry (mounted into Kaniko). */
  pushSecret?: string;
  /** Push over plain HTTP (the dev overlay's in-cluster registry). */
  insecureRegistry: boolean;
  /**
   * Kaniko's executor. Upstream is archived; this is the maintained fork that publishes images
   * (github.com/osscontainertools/kaniko), pinned by version; pin it by digest in your overlay.
   */
  executorImage: string;
  /** The modelship image: the build's init container exports the source with it. */
  modelshipImage: string;
  /** The base image of each runtime: Node, modelship and Python or R (kustomize/images/). */
  baseImages: { python3: string; r: string };
  /** A build Job is killed after this long. */
  buildDeadlineSeconds: number;
  /** Finished build Jobs are deleted after this long (their ModelBuild keeps the outcome). */
  buildTtlSeconds: number;
  /** Where callers reach the gateway, for ModelDeployment.status.url. */
  gatewayUrl: string;
  /**
   * How the informers relist and renew their watches (defaults: a relist every 10 minutes, which
   * leaves the watch running; a watch the API server ends after 5 to 10 minutes). Shorter values
   * are for tests: MODELSHIP_RELIST_INTERVAL, MODELSHIP_WATCH_TIMEOUT.
   */
  informers: Partial<InformerTimings>;
}

export const DEFAULT_SETTINGS: KubernetesSettings = {
  namespace: "modelship",
  registry: "registry.modelship.svc.cluster.local:5000",
  insecureRegistry: false,
  buildNamespace: "modelship-builds",
  buildResources: { cpu: "1", memory: "2Gi" },
  imagePullSecrets: [],
  executorImage: "ghcr.io/osscontainertools/kaniko:v1.28.0",
  modelshipImage: "ghcr.io/modelship/modelship:0.1.0",
  baseImages: {
    python3: "ghcr.io/modelship/runtime-python:0.1.0",
    r: "ghcr.io/modelship/runtime-r:0.1.0",
  },
  buildDeadlineSeconds: 3600,
  buildTtlSeconds: 86_400,
  gatewayUrl: "http://modelship-gateway.modelship.svc.cluster.local",
  informers: {},
};

/** A duration setting in milliseconds; a value that is not a duration is an error naming it. */
function durationMs(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name];
  if (text === undefined || text === "") return undefined;
  const ms = parseDurationMs(text);
  if (ms === undefined || ms <= 0) {
    throw new Error(`${name} must be a duration such as 30s or 10m, not "${text}"`);
  }
  return ms;
}

/** The informer timings the environment sets. */
function informerTimings(env: NodeJS.ProcessEnv): Partial<InformerTimings> {
  const relist = durationMs(env, "MODELSHIP_RELIST_INTERVAL");
  const watch = durationMs(env, "MODELSHIP_WATCH_TIMEOUT");
  return {
    ...(relist === undefined ? {} : { relistIntervalMs: relist }),
    // The API server ends each watch after a time between half the setting and the setting.
    ...(watch === undefined
      ? {}
      : {
          watchTimeoutSeconds: { min: Math.max(1, watch / 2000), max: Math.max(1, watch / 1000) },
        }),
  };
}

/** A comma-separated list setting; empty entries are dropped. */
function list(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

/**
 * MODELSHIP_WATCH_NAMESPACES: a comma-separated list, or `*` for every namespace; the
 * installation's namespace when unset.
 */
export function watchedNamespacesFromEnv(env: NodeJS.ProcessEnv): WatchedNamespaces | undefined {
  const text = env.MODELSHIP_WATCH_NAMESPACES?.trim();
  if (!text) return undefined;
  if (text === "*") return "all";
  const namespaces = list(text);
  const invalid = namespaces.find((name) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name));
  if (invalid !== undefined) {
    throw new Error(
      `MODELSHIP_WATCH_NAMESPACES: "${invalid}" is not a namespace name (a comma-separated list, or *)`,
    );
  }
  return namespaces;
}

/** The namespaces followed: the setting, or the installation's own. */
export function watchedNamespaces(settings: KubernetesSettings): WatchedNamespaces {
  return settings.watchNamespaces ?? [settings.namespace];
}

/** Settings from MODELSHIP_* environment variables, over the defaults. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): KubernetesSettings {
  const watched = watchedNamespacesFromEnv(env);
  return {
    namespace: env.MODELSHIP_NAMESPACE ?? DEFAULT_SETTINGS.namespace,
    ...(watched ? { watchNamespaces: watched } : {}),
    registry: env.MODELSHIP_REGISTRY ?? DEFAULT_SETTINGS.registry,
    buildNamespace: env.MODELSHIP_BUILD_NAMESPACE || DEFAULT_SETTINGS.buildNamespace,
    buildResources: {
      cpu: env.MODELSHIP_BUILD_CPU || DEFAULT_SETTINGS.buildResources.cpu,
      memory: env.MODELSHIP_BUILD_MEMORY || DEFAULT_SETTINGS.buildResources.memory,
    },
    ...(env.MODELSHIP_BUILD_CACHE_REPO ? { buildCacheRepo: env.MODELSHIP_BUILD_CACHE_REPO } : {}),
    imagePullSecrets: list(env.MODELSHIP_IMAGE_PULL_SECRETS),
    ...(env.MODELSHIP_PUSH_SECRET ? { pushSecret: env.MODELSHIP_PUSH_SECRET } : {}),
    insecureRegistry: env.MODELSHIP_INSECURE_REGISTRY === "true",
    executorImage: env.MODELSHIP_EXECUTOR_IMAGE ?? DEFAULT_SETTINGS.executorImage,
    modelshipImage: env.MODELSHIP_IMAGE ?? DEFAULT_SETTINGS.modelshipImage,
    baseImages: {
      python3: env.MODELSHIP_PYTHON_BASE_IMAGE ?? DEFAULT_SETTINGS.baseImages.python3,
      r: env.MODELSHIP_R_BASE_IMAGE ?? DEFAULT_SETTINGS.baseImages.r,
    },
    buildDeadlineSeconds: Number(
      env.MODELSHIP_BUILD_DEADLINE_SECONDS ?? DEFAULT_SETTINGS.buildDeadlineSeconds,
    ),
    buildTtlSeconds: Number(env.MODELSHIP_BUILD_TTL_SECONDS ?? DEFAULT_SETTINGS.buildTtlSeconds),
    gatewayUrl: env.MODELSHIP_GATEWAY_URL ?? DEFAULT_SETTINGS.gatewayUrl,
    informers: informerTimings(env),
  };
}
