// The Kubernetes platform's Runtime: a Deployment (rolling, maxUnavailable 0, readiness on the
// agent's /readyz) and a Service per ModelDeployment. Health comes from the Deployment's own
// status, as `kubectl rollout status` reads it; replicas come from the Service's EndpointSlices.
//
// Ownership: the informers list and watch only objects labelled managed-by modelship; an event
// reaches a ModelDeployment only through the `modelship.dev/deployment` label, never a name;
// stop() deletes only what carries our labels for that deployment, with a uid precondition; and
// apply() refuses to take over a namesake it did not create. Drift: status() reports where the
// live Deployment or Service differs from what the last apply() asked for, and the next apply()
// puts it back.
import { createHash } from "node:crypto";
import { formatName, type NamespacedName } from "../../core/keys.ts";
import {
  isManaged,
  LABEL_BUILD,
  LABEL_DEPLOYMENT,
  LABEL_MANAGED_BY,
  LABEL_MODEL,
  MANAGED_BY,
  MANAGED_SELECTOR,
  ownedLabels,
} from "../../core/labels.ts";
import type {
  CallOptions,
  ReplicaInfo,
  RolloutSpec,
  RolloutStatus,
  Runtime,
} from "../../core/ports.ts";
import { REPLICA_PORT } from "./build-context.ts";
import { API_VERSION, isConflict, isNotFound, type KubeClient } from "./client.ts";
import { Informer, type InformerTimings, type KubeObject, versionOf } from "./informer.ts";

const ANNOTATION_DEPLOYMENT_ID = "modelship.dev/deployment-id";
/** How long apply() and stop() wait for their own change to reach the cache. */
const CACHE_WAIT_MS = 5000;
const REPLICA_CONTAINER = "replica";

export interface DeploymentObject extends KubeObject {
  metadata: KubeObject["metadata"] & { generation?: number };
  spec: {
    replicas?: number;
    template: {
      metadata?: { annotations?: Record<string, string> };
      spec?: { containers?: { name: string; image?: string }[] };
    };
  };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

export type ServiceObject = KubeObject;

interface EndpointSlice extends KubeObject {
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean; terminating?: boolean };
    targetRef?: { name?: string };
  }[];
}

/** What one deployment has on the cluster (undefined: missing). */
export interface LiveWorkload {
  deployment?: DeploymentObject;
  service?: ServiceObject;
}

/** What apply() asks for. */
export interface WantedWorkload {
  deployment: DeploymentObject;
  service: ServiceObject;
}

/** `kubectl rollout status`'s reading of a Deployment, for one rollout (deploymentId). */
export function rolloutStatusOf(deployment: DeploymentObject, deploymentId: number): RolloutStatus {
  const wanted = deployment.spec.replicas ?? 1;
  const status = deployment.status ?? {};
  const observed = (deployment.metadata.generation ?? 0) <= (status.observedGeneration ?? 0);
  const current = deploymentIdOf(deployment) === deploymentId;
  const updated = status.updatedReplicas ?? 0;
  const replicas = status.replicas ?? 0;
  const available = status.availableReplicas ?? 0;
  const stuck = status.conditions?.find(
    (condition) =>
      condition.type === "Progressing" && condition.reason === "ProgressDeadlineExceeded",
  );
  return {
    readyReplicas: observed && current ? Math.min(updated, available) : 0,
    replicas,
    complete:
      observed && current && updated === wanted && replicas === updated && available === updated,
    ...(stuck
      ? { failure: `the rollout made no progress: ${stuck.message ?? "ProgressDeadlineExceeded"}` }
      : {}),
  };
}

function deploymentIdOf(deployment: DeploymentObject): number {
  return Number(deployment.spec.template.metadata?.annotations?.[ANNOTATION_DEPLOYMENT_ID] ?? 0);
}

function imageOf(deployment: DeploymentObject): string | undefined {
  return deployment.spec.template.spec?.containers?.find(
    (container) => container.name === REPLICA_CONTAINER,
  )?.image;
}

/**
 * Where the live workload differs from what was applied, in what modelship sets and others
 * may change (a `kubectl scale`, an edit of the image, a deleted object); undefined when it
 * does not. Fields the API server defaults are never compared.
 */
export function driftOf(live: LiveWorkload, wanted: WantedWorkload): string | undefined {
  const name = wanted.deployment.metadata.name;
  if (!live.deployment) return `Deployment ${name} is missing`;
  if (!live.service) return `Service ${name} is missing`;
  const replicas = live.deployment.spec.replicas ?? 1;
  if (replicas !== wanted.deployment.spec.replicas) {
    return `Deployment ${name} has ${replicas} replicas, not ${wanted.deployment.spec.replicas}`;
  }
  const id = deploymentIdOf(live.deployment);
  if (id !== deploymentIdOf(wanted.deployment)) {
    return `Deployment ${name} runs deployment id ${id}, not ${deploymentIdOf(wanted.deployment)}`;
  }
  const image = imageOf(live.deployment);
  if (image !== imageOf(wanted.deployment)) {
    return `Deployment ${name} runs image ${image}, not ${imageOf(wanted.deployment)}`;
  }
  return undefined;
}

/** Made by modelship for this very deployment: our label, and its deployment label. */
export function isOurs(object: KubeObject, deployment: string): boolean {
  return (
    isManaged(object.metadata.labels) && object.metadata.labels?.[LABEL_DEPLOYMENT] === deployment
  );
}

function quantity(value: string | number | undefined): string | undefined {
  return value === undefined ? undefined : String(value);
}

/** The Deployment and Service for a rollout, in the ModelDeployment's namespace. */
export function workloadObjects(spec: RolloutSpec): [DeploymentObject, ServiceObject] {
  const { namespace, name } = spec.deployment;
  const labels = ownedLabels({
    "app.kubernetes.io/name": "modelship-replica",
    [LABEL_DEPLOYMENT]: name,
    [LABEL_MODEL]: spec.model,
  });
  // The garbage collector removes both once the ModelDeployment is gone.
  const owner = spec.ownerUid
    ? {
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: "ModelDeployment",
            name,
            uid: spec.ownerUid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      }
    : {};
  const cpu = quantity(spec.resources?.cpu);
  const memory = quantity(spec.resources?.memory);
  const gpu = spec.resources?.gpu ?? 0;
  const resources = {
    requests: { ...(cpu ? { cpu } : {}), ...(memory ? { memory } : {}) },
    // Memory is limited (a model that leaks is restarted, not the node); CPU is not throttled.
    limits: {
      ...(memory ? { memory } : {}),
      ...(gpu > 0 ? { "nvidia.com/gpu": String(gpu) } : {}),
    },
  };
  const deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace, labels, ...owner },
    spec: {
      replicas: spec.replicas,
      selector: { matchLabels: { [LABEL_DEPLOYMENT]: name } },
      // A new rollout never lowers capacity: one extra replica at a time, none taken away early.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      progressDeadlineSeconds: 600,
      template: {
        metadata: {
          labels: { ...labels, [LABEL_BUILD]: String(spec.build.spec.number) },
          annotations: { [ANNOTATION_DEPLOYMENT_ID]: String(spec.deploymentId) },
        },
        spec: {
          terminationGracePeriodSeconds: spec.timeoutSeconds + 5,
          containers: [
            {
              name: REPLICA_CONTAINER,
              image: spec.build.status?.image,
              args: [
                "--replica-id",
                "$(POD_NAME)",
                "--timeout-seconds",
                String(spec.timeoutSeconds),
              ],
              env: [
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                ...Object.entries(spec.env)
                  .sort(([a], [b]) => a.localeCompare(b))
                  .map(([key, value]) => ({ name: key, value })),
              ],
              ports: [{ name: "http", containerPort: REPLICA_PORT }],
              readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 2 },
              livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 10 },
              resources,
            },
          ],
        },
      },
    },
  };
  const service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace, labels, ...owner },
    spec: {
      selector: { [LABEL_DEPLOYMENT]: name },
      ports: [{ name: "http", port: 80, targetPort: "http" }],
    },
  };
  return [deployment, service];
}

function deploymentPath({ namespace, name }: NamespacedName): string {
  return `/apis/apps/v1/namespaces/${namespace}/deployments/${encodeURIComponent(name)}`;
}

function servicePath({ namespace, name }: NamespacedName): string {
  return `/api/v1/namespaces/${namespace}/services/${encodeURIComponent(name)}`;
}

function fingerprintOf(wanted: WantedWorkload): string {
  return createHash("sha256")
    .update(JSON.stringify([wanted.deployment, wanted.service]))
    .digest("hex");
}

export interface KubeRuntimeOptions {
  log?: (line: string) => void;
  timings?: Partial<InformerTimings>;
}

export class KubeRuntime implements Runtime {
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly deployments: Informer<DeploymentObject>;
  private readonly services: Informer<ServiceObject>;
  private readonly slices: Informer<EndpointSlice>;
  /** What the last apply() asked for, per deployment: what drift is measured against. */
  private readonly applied = new Map<string, WantedWorkload & { fingerprint: string }>();

  /** `onChange` hears of every change to a deployment's Deployment, Service or EndpointSlices. */
  constructor(
    client: KubeClient,
    namespace: string,
    onChange: (deployment: NamespacedName) => void,
    options: KubeRuntimeOptions = {},
  ) {
    this.client = client;
    this.namespace = namespace;
    const follow = <T extends KubeObject>(path: string, resource: string): Informer<T> => {
      const informer = new Informer<T>({
        client,
        path: `${path}/namespaces/${namespace}/${resource}`,
        resource: `${resource} in ${namespace}`,
        // Only what modelship made: the installation's own Deployments and Services (and
        // anyone else's) are never cached, never mapped to a ModelDeployment, never deleted.
        labelSelector: MANAGED_SELECTOR,
        ...(options.log ? { log: options.log } : {}),
        ...(options.timings ? { timings: options.timings } : {}),
      });
      informer.onChange(({ object }) => {
        const name = object.metadata.labels?.[LABEL_DEPLOYMENT];
        if (name) onChange({ namespace: object.metadata.namespace ?? namespace, name });
      });
      return informer;
    };
    this.deployments = follow("/apis/apps/v1", "deployments");
    this.services = follow("/api/v1", "services");
    // The EndpointSlice controller copies the Service's labels onto its slices.
    this.slices = follow("/apis/discovery.k8s.io/v1", "endpointslices");
  }

  private get informers() {
    return [this.deployments, this.services, this.slices];
  }

  async start(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.start()));
  }

  async stopWatching(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.stop()));
  }

  /** What the caches hold (tests: nothing without our label ever does). */
  cached(): { deployments: DeploymentObject[]; services: ServiceObject[]; slices: KubeObject[] } {
    return {
      deployments: this.deployments.list(),
      services: this.services.list(),
      slices: this.slices.list(),
    };
  }

  private live(deployment: NamespacedName): LiveWorkload {
    const { namespace, name } = deployment;
    const found = <T extends KubeObject>(informer: Informer<T>) => {
      const object = informer.get(namespace, name);
      return object && isOurs(object, name) ? object : undefined;
    };
    const live: LiveWorkload = {};
    const liveDeployment = found(this.deployments);
    const liveService = found(this.services);
    if (liveDeployment) live.deployment = liveDeployment;
    if (liveService) live.service = liveService;
    return live;
  }

  async apply(spec: RolloutSpec, options: CallOptions = {}): Promise<void> {
    if (spec.deployment.namespace !== this.namespace) {
      throw new Error(
        `the runtime follows namespace ${this.namespace}, not ${formatName(spec.deployment)}`,
      );
    }
    const [deployment, service] = workloadObjects(spec);
    const wanted = { deployment, service, fingerprint: fingerprintOf({ deployment, service }) };
    const key = formatName(spec.deployment);
    const live = this.live(spec.deployment);
    // Nothing new asked and nothing changed by hand: nothing to send.
    if (this.applied.get(key)?.fingerprint === wanted.fingerprint && !driftOf(live, wanted)) {
      return;
    }
    if (!live.deployment) {
      await this.refuseNamesake("Deployment", deploymentPath(spec.deployment), options);
    }
    if (!live.service) await this.refuseNamesake("Service", servicePath(spec.deployment), options);
    const appliedDeployment = await this.client.apply<KubeObject>(
      deploymentPath(spec.deployment),
      deployment,
      options,
    );
    const appliedService = await this.client.apply<KubeObject>(
      servicePath(spec.deployment),
      service,
      options,
    );
    this.applied.set(key, wanted);
    // Read your writes: status() right after must not see the old object and call it drift.
    const reached = (version: number) => (cached: KubeObject | undefined) =>
      versionOf(cached) >= version;
    await Promise.all([
      this.settle(
        this.deployments,
        spec.deployment,
        reached(versionOf(appliedDeployment)),
        options,
      ),
      this.settle(this.services, spec.deployment, reached(versionOf(appliedService)), options),
    ]);
  }

  /** Waits (bounded, abortable) until the cache shows `done` for the deployment's object. */
  private async settle<T extends KubeObject>(
    informer: Informer<T>,
    { namespace, name }: NamespacedName,
    done: (cached: T | undefined) => boolean,
    options: CallOptions,
  ): Promise<void> {
    await informer.waitFor(namespace, name, done, {
      timeoutMs: CACHE_WAIT_MS,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /**
   * Throws when an object of that name exists without our labels for this deployment: a
   * server-side apply would silently take it over (another tool's, or the installation's own).
   */
  private async refuseNamesake(kind: string, path: string, options: CallOptions): Promise<void> {
    let existing: KubeObject;
    try {
      existing = await this.client.request<KubeObject>("GET", path, undefined, undefined, options);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    if (!isOurs(existing, existing.metadata.name)) {
      throw new Error(
        `${kind} ${existing.metadata.namespace}/${existing.metadata.name} exists and was not made by modelship (it lacks ${LABEL_MANAGED_BY}=${MANAGED_BY} and ${LABEL_DEPLOYMENT}=${existing.metadata.name}): not taking it over`,
      );
    }
  }

  status(deployment: NamespacedName): RolloutStatus | undefined {
    const live = this.live(deployment);
    const wanted = this.applied.get(formatName(deployment));
    const drifted = wanted ? driftOf(live, wanted) : undefined;
    if (!live.deployment) {
      return drifted ? { readyReplicas: 0, replicas: 0, complete: false, drifted } : undefined;
    }
    // The rollout asked for, when known: a Deployment still on an older template is not done.
    const id = deploymentIdOf(wanted?.deployment ?? live.deployment);
    const status = rolloutStatusOf(live.deployment, id);
    return drifted ? { ...status, drifted } : status;
  }

  async stop(deployment: NamespacedName, options: CallOptions = {}): Promise<void> {
    this.applied.delete(formatName(deployment));
    const live = this.live(deployment);
    await this.deleteOurs(
      this.deployments,
      deploymentPath(deployment),
      deployment,
      live.deployment,
      options,
    );
    await this.deleteOurs(
      this.services,
      servicePath(deployment),
      deployment,
      live.service,
      options,
    );
  }

  /**
   * Deletes `object` (what our cache holds with our labels for this deployment, or nothing),
   * with a uid precondition so that a namesake created since is left alone.
   */
  private async deleteOurs<T extends KubeObject>(
    informer: Informer<T>,
    path: string,
    deployment: NamespacedName,
    object: T | undefined,
    options: CallOptions,
  ): Promise<void> {
    const uid = object?.metadata.uid;
    if (!uid || !(await this.deleteExactly(path, uid, options))) return;
    await this.settle(informer, deployment, (cached) => cached?.metadata.uid !== uid, options);
  }

  /** Deletes the object with this uid; false when it is gone or has been replaced. */
  private async deleteExactly(path: string, uid: string, options: CallOptions): Promise<boolean> {
    try {
      await this.client.request(
        "DELETE",
        path,
        {
          apiVersion: "v1",
          kind: "DeleteOptions",
          propagationPolicy: "Background",
          preconditions: { uid },
        },
        undefined,
        options,
      );
      return true;
    } catch (error) {
      if (isNotFound(error) || isConflict(error)) return false;
      throw error;
    }
  }

  replicas(deployment: NamespacedName): ReplicaInfo[] {
    const live = this.live(deployment);
    const deploymentId = live.deployment ? deploymentIdOf(live.deployment) : 0;
    return this.slices
      .list(deployment.namespace)
      .filter((slice) => isOurs(slice, deployment.name))
      .flatMap((slice) => slice.endpoints ?? [])
      .filter((endpoint) => endpoint.addresses.length > 0)
      .map((endpoint) => ({
        id: endpoint.targetRef?.name ?? (endpoint.addresses[0] as string),
        deploymentId,
        build: 0,
        ready: endpoint.conditions?.ready === true && endpoint.conditions.terminating !== true,
        url: `http://${endpoint.addresses[0]}:${REPLICA_PORT}`,
        stats: {},
      }));
  }
}
