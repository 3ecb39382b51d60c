// The Kubernetes platform's Runtime: a Deployment (rolling, maxUnavailable 0, readiness on the
// agent's /readyz) and a Service per ModelDeployment. Health comes from the Deployment's own
// status, as `kubectl rollout status` reads it; replicas come from the Service's EndpointSlices.
import { createHash } from "node:crypto";
import {
  type Informer,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
} from "@kubernetes/client-node";
import type { ReplicaInfo, RolloutSpec, RolloutStatus, Runtime } from "../ports.ts";
import { REPLICA_PORT } from "./build-context.ts";
import { isNotFound, type KubeClient } from "./client.ts";

const MANAGED = "app.kubernetes.io/managed-by=modelship";
const ANNOTATION_DEPLOYMENT_ID = "modelship.dev/deployment-id";
const LABEL_DEPLOYMENT = "modelship.dev/deployment";

export interface DeploymentObject extends KubernetesObject {
  metadata: { name: string; namespace?: string; generation?: number };
  spec: {
    replicas?: number;
    template: { metadata?: { annotations?: Record<string, string> } };
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

interface EndpointSlice extends KubernetesObject {
  metadata: { name: string; labels?: Record<string, string> };
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean; terminating?: boolean };
    targetRef?: { name?: string };
  }[];
}

type Cache<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

/** `kubectl rollout status`'s reading of a Deployment, for one rollout (deploymentId). */
export function rolloutStatusOf(deployment: DeploymentObject, deploymentId: number): RolloutStatus {
  const wanted = deployment.spec.replicas ?? 1;
  const status = deployment.status ?? {};
  const observed = (deployment.metadata.generation ?? 0) <= (status.observedGeneration ?? 0);
  const current =
    deployment.spec.template.metadata?.annotations?.[ANNOTATION_DEPLOYMENT_ID] ===
    String(deploymentId);
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

function quantity(value: string | number | undefined): string | undefined {
  return value === undefined ? undefined : String(value);
}

/** The Deployment and Service for a rollout. */
export function workloadObjects(
  spec: RolloutSpec,
  namespace: string,
): [Record<string, unknown>, Record<string, unknown>] {
  const name = spec.key.split("/")[1] ?? spec.key;
  const labels = {
    "app.kubernetes.io/managed-by": "modelship",
    "app.kubernetes.io/name": "modelship-replica",
    [LABEL_DEPLOYMENT]: name,
    "modelship.dev/model": spec.model,
  };
  const owner = spec.owner
    ? {
        ownerReferences: [
          {
            apiVersion: "modelship.dev/v1alpha1",
            kind: "ModelDeployment",
            name: spec.owner.name,
            uid: spec.owner.uid,
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
          labels: { ...labels, "modelship.dev/build": String(spec.build.spec.number) },
          annotations: { [ANNOTATION_DEPLOYMENT_ID]: String(spec.deploymentId) },
        },
        spec: {
          terminationGracePeriodSeconds: spec.timeoutSeconds + 5,
          containers: [
            {
              name: "replica",
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

export class KubeRuntime implements Runtime {
  private readonly client: KubeClient;
  private readonly namespace: string;
  private deployments: Cache<DeploymentObject> | undefined;
  private slices: Cache<EndpointSlice> | undefined;
  /** What was last applied per key: a pass with nothing new sends nothing. */
  private readonly applied = new Map<string, string>();
  private readonly onChange: (key: string) => void;

  constructor(client: KubeClient, namespace: string, onChange: (key: string) => void) {
    this.client = client;
    this.namespace = namespace;
    this.onChange = onChange;
  }

  async start(): Promise<void> {
    const deploymentsPath = `/apis/apps/v1/namespaces/${this.namespace}/deployments`;
    this.deployments = makeInformer<DeploymentObject>(
      this.client.config,
      deploymentsPath,
      () =>
        this.client.request(
          "GET",
          `${deploymentsPath}?labelSelector=${encodeURIComponent(MANAGED)}`,
        ),
      MANAGED,
    );
    const slicesPath = `/apis/discovery.k8s.io/v1/namespaces/${this.namespace}/endpointslices`;
    this.slices = makeInformer<EndpointSlice>(this.client.config, slicesPath, () =>
      this.client.request("GET", slicesPath),
    );
    for (const informer of [this.deployments, this.slices] as Cache<KubernetesObject>[]) {
      for (const verb of ["add", "update", "delete"] as const) {
        informer.on(verb, (object) => {
          const name =
            object.metadata?.labels?.["kubernetes.io/service-name"] ??
            object.metadata?.labels?.[LABEL_DEPLOYMENT] ??
            object.metadata?.name;
          if (name) this.onChange(`${this.namespace}/${name}`);
        });
      }
      informer.on("error", () => {
        setTimeout(() => informer.start().catch(() => {}), 1000);
      });
    }
    await Promise.all([this.deployments.start(), this.slices.start()]);
  }

  async stopWatching(): Promise<void> {
    await Promise.all([this.deployments?.stop(), this.slices?.stop()]);
  }

  async apply(spec: RolloutSpec): Promise<void> {
    const [deployment, service] = workloadObjects(spec, this.namespace);
    const fingerprint = createHash("sha256")
      .update(JSON.stringify([deployment, service]))
      .digest("hex");
    if (this.applied.get(spec.key) === fingerprint) return;
    const name = spec.key.split("/")[1] ?? spec.key;
    await this.client.apply(
      `/apis/apps/v1/namespaces/${this.namespace}/deployments/${name}`,
      deployment,
    );
    await this.client.apply(`/api/v1/namespaces/${this.namespace}/services/${name}`, service);
    this.applied.set(spec.key, fingerprint);
  }

  private deploymentOf(key: string): DeploymentObject | undefined {
    return this.deployments?.get(key.split("/")[1] ?? key, this.namespace);
  }

  status(key: string): RolloutStatus | undefined {
    const deployment = this.deploymentOf(key);
    if (!deployment) return undefined;
    const id = Number(
      deployment.spec.template.metadata?.annotations?.[ANNOTATION_DEPLOYMENT_ID] ?? 0,
    );
    return rolloutStatusOf(deployment, id);
  }

  async stop(key: string): Promise<void> {
    const name = key.split("/")[1] ?? key;
    this.applied.delete(key);
    for (const path of [
      `/apis/apps/v1/namespaces/${this.namespace}/deployments/${name}`,
      `/api/v1/namespaces/${this.namespace}/services/${name}`,
    ]) {
      try {
        await this.client.request("DELETE", path, {
          kind: "DeleteOptions",
          apiVersion: "v1",
          propagationPolicy: "Background",
        });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
  }

  replicas(key: string): ReplicaInfo[] {
    const name = key.split("/")[1] ?? key;
    const deployment = this.deploymentOf(key);
    const deploymentId = Number(
      deployment?.spec.template.metadata?.annotations?.[ANNOTATION_DEPLOYMENT_ID] ?? 0,
    );
    return (this.slices?.list(this.namespace) ?? [])
      .filter((slice) => slice.metadata.labels?.["kubernetes.io/service-name"] === name)
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
