// The Kubernetes platform's Runtime: a Deployment (rolling, maxUnavailable 0, readiness on the
// agent's /readyz) and a Service per ModelDeployment, with a Secret holding the replicas' gateway
// secret and a NetworkPolicy that lets only the gateway's pods in (docs/security.md). Health
// comes from the Deployment's own status, as `kubectl rollout status` reads it; replicas come
// from the Service's EndpointSlices.
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
import { holds } from "../../source/desired.ts";
import { servesArgument } from "../serves.ts";
import { MODEL_UID, REPLICA_PORT } from "./build-context.ts";
import {
  API_VERSION,
  deleteExactly,
  FIELD_MANAGER,
  isInvalid,
  isNotFound,
  type KubeClient,
} from "./client.ts";
import {
  InformerSet,
  type InformerTimings,
  type KubeObject,
  versionOf,
  type WatchedNamespaces,
} from "./informer.ts";
import { podSecurity } from "./pod-security.ts";
import { REPLICA_SECRET_FIELD, replicaSecretName, replicaSecretOf } from "./replica-secret.ts";

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

export interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

export interface NetworkPolicyObject extends KubeObject {
  spec?: Record<string, unknown>;
}

/** The gateway's pods: the only ones a replica lets in (kustomize/base/gateway.yaml). */
export const GATEWAY_POD_LABELS = { "app.kubernetes.io/name": "modelship-gateway" };
/** Where the agent reads the gateway secret (modelship replica). */
const GATEWAY_SECRET_ENV = "MODELSHIP_GATEWAY_SECRET";

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
  secret?: SecretObject;
  networkPolicy?: NetworkPolicyObject;
}

/** What apply() asks for. */
export interface WantedWorkload {
  deployment: DeploymentObject;
  service: ServiceObject;
  secret: SecretObject;
  networkPolicy: NetworkPolicyObject;
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
    // Pods of every ReplicaSet: the old ones keep serving while a new template cannot.
    servingReplicas: status.readyReplicas ?? 0,
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
  const secretName = wanted.secret.metadata.name;
  if (!live.secret) return `Secret ${secretName} is missing`;
  if (live.secret.data?.[REPLICA_SECRET_FIELD] !== wanted.secret.data?.[REPLICA_SECRET_FIELD]) {
    // Never the values themselves: they are secrets.
    return `Secret ${secretName} holds another gateway secret`;
  }
  if (!live.networkPolicy) return `NetworkPolicy ${name} is missing`;
  // The API server writes fields in its own order, and may add defaults: holds() sees past both.
  if (!holds(live.networkPolicy.spec, wanted.networkPolicy.spec)) {
    return `NetworkPolicy ${name} lets in other callers than the gateway`;
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

/**
 * The Deployment, Service, Secret and NetworkPolicy for a rollout, in the ModelDeployment's
 * namespace. `replicaSecret` is the deployment's gateway secret (replicaSecretOf).
 */
/** How an installation runs its workloads. */
export interface WorkloadOptions {
  /** The installation's namespace, where the gateway's pods are. */
  gatewayNamespace: string;
  /** Secrets the model pods pull their images with (a private registry). */
  imagePullSecrets?: readonly string[];
}

export function workloadObjects(
  spec: RolloutSpec,
  replicaSecret: string,
  options: WorkloadOptions,
): WantedWorkload {
  const imagePullSecrets = options.imagePullSecrets ?? [];
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
          // A model has no business with the API server, nor with other Services' addresses.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          // What the Pod Security `restricted` level asks, as the image's user (build-context.ts).
          securityContext: podSecurity.restrictedPod(MODEL_UID),
          ...(imagePullSecrets.length > 0
            ? { imagePullSecrets: imagePullSecrets.map((name) => ({ name })) }
            : {}),
          // The image is read-only at run time; a model may still write scratch files here.
          volumes: [{ name: "tmp", emptyDir: {} }],
          containers: [
            {
              name: REPLICA_CONTAINER,
              image: spec.build.status?.image,
              securityContext: podSecurity.restrictedContainer(MODEL_UID),
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
              args: [
                "--replica-id",
                "$(POD_NAME)",
                "--serves",
                servesArgument(spec),
                "--timeout-seconds",
                String(spec.timeoutSeconds),
                // As large a body as the gateway lets through for this model.
                ...(spec.maxRequestBytes === undefined
                  ? []
                  : ["--body-limit-bytes", String(spec.maxRequestBytes)]),
              ],
              env: [
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                // The agent's, not the model's: `modelship replica` keeps MODELSHIP_* to itself.
                {
                  name: GATEWAY_SECRET_ENV,
                  valueFrom: {
                    secretKeyRef: { name: replicaSecretName(name), key: REPLICA_SECRET_FIELD },
                  },
                },
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
  const secret: SecretObject = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: replicaSecretName(name), namespace, labels, ...owner },
    type: "Opaque",
    data: { [REPLICA_SECRET_FIELD]: Buffer.from(replicaSecret).toString("base64") },
  };
  // No way around the gateway: only its pods may reach the replicas' port. (The kubelet's
  // probes come from the node, which network policies do not govern.) A pod selector alone
  // means this namespace's pods: the gateway's namespace is named, as the model may be elsewhere.
  const networkPolicy: NetworkPolicyObject = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, namespace, labels, ...owner },
    spec: {
      podSelector: { matchLabels: { [LABEL_DEPLOYMENT]: name } },
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [
            {
              namespaceSelector: {
                matchLabels: { "kubernetes.io/metadata.name": options.gatewayNamespace },
              },
              podSelector: { matchLabels: GATEWAY_POD_LABELS },
            },
          ],
          ports: [{ protocol: "TCP", port: REPLICA_PORT }],
        },
      ],
    },
  };
  return { deployment, service, secret, networkPolicy } as WantedWorkload;
}

function deploymentPath({ namespace, name }: NamespacedName): string {
  return `/apis/apps/v1/namespaces/${namespace}/deployments/${encodeURIComponent(name)}`;
}

function servicePath({ namespace, name }: NamespacedName): string {
  return `/api/v1/namespaces/${namespace}/services/${encodeURIComponent(name)}`;
}

function secretPath({ namespace, name }: NamespacedName): string {
  return `/api/v1/namespaces/${namespace}/secrets/${encodeURIComponent(replicaSecretName(name))}`;
}

function networkPolicyPath({ namespace, name }: NamespacedName): string {
  return `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies/${encodeURIComponent(name)}`;
}

function fingerprintOf(wanted: WantedWorkload): string {
  return createHash("sha256")
    .update(
      JSON.stringify([wanted.deployment, wanted.service, wanted.secret, wanted.networkPolicy]),
    )
    .digest("hex");
}

export interface KubeRuntimeOptions {
  log?: (line: string) => void;
  timings?: Partial<InformerTimings>;
  /**
   * The installation's replica key (replica-secret.ts), from which each deployment's gateway
   * secret is derived; apply() fails with its error while it cannot be had.
   */
  replicaKey?: () => Promise<string>;
  /** Secrets the model pods pull their images with (a private registry). */
  imagePullSecrets?: readonly string[];
  /** The namespaces whose deployments it runs: its own, by default. */
  watched?: WatchedNamespaces;
}

export class KubeRuntime implements Runtime {
  private readonly client: KubeClient;
  private readonly deployments: InformerSet<DeploymentObject>;
  private readonly services: InformerSet<ServiceObject>;
  /** Only a runtime that applies (with a replica key) watches these: the gateway's need not. */
  private readonly secrets: InformerSet<SecretObject> | undefined;
  private readonly networkPolicies: InformerSet<NetworkPolicyObject> | undefined;
  private readonly slices: InformerSet<EndpointSlice>;
  private readonly replicaKey: (() => Promise<string>) | undefined;
  private readonly imagePullSecrets: readonly string[];
  /** The installation's namespace: where the gateway is. */
  private readonly installationNamespace: string;
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
    this.replicaKey = options.replicaKey;
    this.imagePullSecrets = options.imagePullSecrets ?? [];
    this.installationNamespace = namespace;
    const watched = options.watched ?? [namespace];
    const follow = <T extends KubeObject>(path: string, resource: string): InformerSet<T> => {
      const informer = new InformerSet<T>(
        watched,
        (followed) =>
          followed === undefined
            ? `${path}/${resource}`
            : `${path}/namespaces/${followed}/${resource}`,
        {
          client,
          resource,
          // Only what modelship made: the installation's own Deployments and Services (and
          // anyone else's) are never cached, never mapped to a ModelDeployment, never deleted.
          labelSelector: MANAGED_SELECTOR,
          ...(options.log ? { log: options.log } : {}),
          ...(options.timings ? { timings: options.timings } : {}),
        },
      );
      informer.onChange(({ object }) => {
        const name = object.metadata.labels?.[LABEL_DEPLOYMENT];
        if (name) onChange({ namespace: object.metadata.namespace ?? namespace, name });
      });
      return informer;
    };
    this.deployments = follow("/apis/apps/v1", "deployments");
    this.services = follow("/api/v1", "services");
    if (this.replicaKey) {
      this.secrets = follow("/api/v1", "secrets");
      this.networkPolicies = follow("/apis/networking.k8s.io/v1", "networkpolicies");
    }
    // The EndpointSlice controller copies the Service's labels onto its slices.
    this.slices = follow("/apis/discovery.k8s.io/v1", "endpointslices");
  }

  private get informers() {
    return [
      this.deployments,
      this.services,
      this.slices,
      ...(this.secrets ? [this.secrets] : []),
      ...(this.networkPolicies ? [this.networkPolicies] : []),
    ];
  }

  async start(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.start()));
  }

  async stopWatching(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.stop()));
  }

  /** What the caches hold (tests: nothing without our label ever does). */
  cached(): {
    deployments: DeploymentObject[];
    services: ServiceObject[];
    slices: KubeObject[];
    secrets: SecretObject[];
    networkPolicies: NetworkPolicyObject[];
  } {
    return {
      deployments: this.deployments.list(),
      services: this.services.list(),
      slices: this.slices.list(),
      secrets: this.secrets?.list() ?? [],
      networkPolicies: this.networkPolicies?.list() ?? [],
    };
  }

  private live(deployment: NamespacedName): LiveWorkload {
    const { namespace, name } = deployment;
    const found = <T extends KubeObject>(
      informer: InformerSet<T> | undefined,
      objectName = name,
    ) => {
      const object = informer?.get(namespace, objectName);
      return object && isOurs(object, name) ? object : undefined;
    };
    const live: LiveWorkload = {};
    const liveDeployment = found(this.deployments);
    const liveService = found(this.services);
    const liveSecret = found(this.secrets, replicaSecretName(name));
    const liveNetworkPolicy = found(this.networkPolicies);
    if (liveDeployment) live.deployment = liveDeployment;
    if (liveService) live.service = liveService;
    if (liveSecret) live.secret = liveSecret;
    if (liveNetworkPolicy) live.networkPolicy = liveNetworkPolicy;
    return live;
  }

  async apply(spec: RolloutSpec, options: CallOptions = {}): Promise<void> {
    if (!this.deployments.follows(spec.deployment.namespace)) {
      throw new Error(
        `the runtime does not follow the namespace of ${formatName(spec.deployment)}`,
      );
    }
    if (!this.replicaKey || !this.secrets || !this.networkPolicies) {
      throw new Error("this runtime only watches: it was made without a replica key");
    }
    const secret = replicaSecretOf(await this.replicaKey(), spec.deployment);
    const objects = workloadObjects(spec, secret, {
      gatewayNamespace: this.installationNamespace,
      imagePullSecrets: this.imagePullSecrets,
    });
    const wanted = { ...objects, fingerprint: fingerprintOf(objects) };
    const key = formatName(spec.deployment);
    const live = this.live(spec.deployment);
    // Nothing new asked and nothing changed by hand: nothing to send.
    if (this.applied.get(key)?.fingerprint === wanted.fingerprint && !driftOf(live, wanted)) {
      return;
    }
    // The Secret before the pods that read it, the NetworkPolicy before they can be reached.
    const parts = [
      [this.secrets, secretPath(spec.deployment), objects.secret, live.secret],
      [
        this.networkPolicies,
        networkPolicyPath(spec.deployment),
        objects.networkPolicy,
        live.networkPolicy,
      ],
      [this.deployments, deploymentPath(spec.deployment), objects.deployment, live.deployment],
      [this.services, servicePath(spec.deployment), objects.service, live.service],
    ] as const;
    const settled: Promise<void>[] = [];
    for (const [informer, path, object, existing] of parts) {
      if (!existing) {
        await this.refuseNamesake(object.kind ?? "object", path, spec.deployment.name, options);
      }
      const applied = await this.client.apply<KubeObject>(path, object, options);
      // Read your writes: status() right after must not see the old object and call it drift.
      settled.push(
        this.settle(
          informer as InformerSet<KubeObject>,
          spec.deployment,
          (cached) => versionOf(cached) >= versionOf(applied),
          options,
          object.metadata.name,
        ),
      );
    }
    this.applied.set(key, wanted);
    await Promise.all(settled);
  }

  /** Waits (bounded, abortable) until the cache shows `done` for the deployment's object. */
  private async settle<T extends KubeObject>(
    informer: InformerSet<T>,
    { namespace, name }: NamespacedName,
    done: (cached: T | undefined) => boolean,
    options: CallOptions,
    objectName: string = name,
  ): Promise<void> {
    await informer.waitFor(namespace, objectName, done, {
      timeoutMs: CACHE_WAIT_MS,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /**
   * Throws when an object of that name exists without our labels for this deployment: a
   * server-side apply would silently take it over (another tool's, or the installation's own).
   */
  private async refuseNamesake(
    kind: string,
    path: string,
    deployment: string,
    options: CallOptions,
  ): Promise<void> {
    let existing: KubeObject;
    try {
      existing = await this.client.request<KubeObject>("GET", path, undefined, undefined, options);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    if (!isOurs(existing, deployment)) {
      throw new Error(
        `${kind} ${existing.metadata.namespace}/${existing.metadata.name} exists and was not made by modelship (it lacks ${LABEL_MANAGED_BY}=${MANAGED_BY} and ${LABEL_DEPLOYMENT}=${deployment}): not taking it over`,
      );
    }
  }

  status(deployment: NamespacedName): RolloutStatus | undefined {
    const live = this.live(deployment);
    const wanted = this.applied.get(formatName(deployment));
    const drifted = wanted ? driftOf(live, wanted) : undefined;
    if (!live.deployment) {
      return drifted
        ? { readyReplicas: 0, servingReplicas: 0, replicas: 0, complete: false, drifted }
        : undefined;
    }
    // The rollout asked for, when known: a Deployment still on an older template is not done.
    const id = deploymentIdOf(wanted?.deployment ?? live.deployment);
    const status = rolloutStatusOf(live.deployment, id);
    return drifted ? { ...status, drifted } : status;
  }

  async stop(deployment: NamespacedName, options: CallOptions = {}): Promise<void> {
    this.applied.delete(formatName(deployment));
    const live = this.live(deployment);
    // The pods first; the Secret they read and the policy that guards them after.
    const parts = [
      [this.deployments, deploymentPath(deployment), live.deployment],
      [this.services, servicePath(deployment), live.service],
      [this.secrets, secretPath(deployment), live.secret],
      [this.networkPolicies, networkPolicyPath(deployment), live.networkPolicy],
    ] as const;
    for (const [informer, path, object] of parts) {
      if (informer) {
        await this.deleteOurs(
          informer as InformerSet<KubeObject>,
          path,
          deployment,
          object,
          options,
        );
      }
    }
  }

  /**
   * Scales the deployment's Deployment to zero and keeps it, its ReplicaSets (the rollout
   * history, for `kubectl rollout undo`), its Service, Secret and NetworkPolicy. Only the
   * Deployment we made, by its uid; true when it had replicas.
   */
  async pause(deployment: NamespacedName, options: CallOptions = {}): Promise<boolean> {
    // What was applied is forgotten: resuming sends it all again, with its replicas.
    this.applied.delete(formatName(deployment));
    const live = this.live(deployment).deployment;
    const uid = live?.metadata.uid;
    if (!live || !uid || live.spec.replicas === 0) return false;
    try {
      await this.client.request(
        "PATCH",
        `${deploymentPath(deployment)}?fieldManager=${FIELD_MANAGER}`,
        [
          // That very object: a namesake made since is left alone.
          { op: "test", path: "/metadata/uid", value: uid },
          { op: "replace", path: "/spec/replicas", value: 0 },
        ],
        "application/json-patch+json",
        options,
      );
    } catch (error) {
      // Deleted, or replaced (a failed test is 422): nothing of ours to scale.
      if (isNotFound(error) || isInvalid(error)) return false;
      throw error;
    }
    await this.settle(
      this.deployments,
      deployment,
      (cached) => cached?.metadata.uid !== uid || cached.spec.replicas === 0,
      options,
    );
    return true;
  }

  /**
   * Deletes `object` (what our cache holds with our labels for this deployment, or nothing),
   * with a uid precondition so that a namesake created since is left alone.
   */
  private async deleteOurs<T extends KubeObject>(
    informer: InformerSet<T>,
    path: string,
    deployment: NamespacedName,
    object: T | undefined,
    options: CallOptions,
  ): Promise<void> {
    const uid = object?.metadata.uid;
    if (!object || !uid || !(await deleteExactly(this.client, path, uid, options))) return;
    await this.settle(
      informer,
      deployment,
      (cached) => cached?.metadata.uid !== uid,
      options,
      object.metadata.name,
    );
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
