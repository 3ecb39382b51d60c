// Real replicas for the test control plane's pods. kwok runs no containers, so the harness plays
// the kubelet for model pods: for each Running pod of a ModelDeployment it starts the agent the
// pod's image would run — `modelship replica` with the pod's env and arguments, over the source
// of the pod's build, exported from git at the build's commit — and marks the pod Ready once the
// agent's /readyz answers, as the kubelet's readiness probe would. A deleted pod's agent stops
// after a grace period, as the kubelet's SIGTERM comes after the endpoints have gone.
//
// Addresses: the API server refuses loopback endpoints in EndpointSlices, so pods keep kwok's
// unroutable 239.255.0.0/16 addresses (cluster.ts, POD_CIDR) and each agent listens on the
// loopback address with the same last two octets; the gateway feed maps one to the other
// (KubeGatewayFeed's replicaUrl, with loopbackUrl). No byte goes anywhere but 127.0.0.0/8.
import { mkdirSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { ModelBuild } from "../../controller/api/types.generated.ts";
import { LABEL_BUILD, LABEL_DEPLOYMENT, LABEL_MODEL } from "../../controller/core/labels.ts";
import type { KubeClient } from "../../controller/platform/kubernetes/client.ts";
import { Informer, type KubeObject } from "../../controller/platform/kubernetes/informer.ts";
import { GitSource } from "../../controller/source/git.ts";
import { type CliProcess, startCli } from "../helpers/cli.ts";
import { POD_CIDR } from "./cluster.ts";

const POD_PREFIX = POD_CIDR.split(".").slice(0, 2).join(".");
const LOOPBACK_PREFIX = "127.255";
/** How long a deleted pod's agent keeps answering: what was in flight finishes. */
const DELETE_GRACE_MS = 3000;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string };
    fieldRef?: { fieldPath: string };
  };
}

interface Pod extends KubeObject {
  metadata: KubeObject["metadata"] & { deletionTimestamp?: string };
  spec: {
    containers: {
      name: string;
      image?: string;
      args?: string[];
      env?: EnvVar[];
      ports?: { containerPort: number }[];
    }[];
  };
  status?: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] };
}

/** The loopback address an agent for this pod IP listens on. */
export function loopbackOf(podIp: string): string {
  if (!podIp.startsWith(`${POD_PREFIX}.`)) throw new Error(`${podIp} is not in ${POD_CIDR}`);
  return `${LOOPBACK_PREFIX}${podIp.slice(POD_PREFIX.length)}`;
}

/** The replica URL the gateway should call for the URL an EndpointSlice gives. */
export function loopbackUrl(podUrl: string): string {
  const url = new URL(podUrl);
  url.hostname = loopbackOf(url.hostname);
  return url.origin;
}

export interface PodAgentsOptions {
  client: KubeClient;
  namespace: string;
  /** The git repository the ModelBuilds name (a local path). */
  repo: string;
  workDir: string;
  log(line: string): void;
}

export class PodAgents {
  private readonly options: PodAgentsOptions;
  private readonly pods: Informer<Pod>;
  private readonly agents = new Map<string, Promise<CliProcess | undefined>>();
  /**
   * Agents of deleted pods in their grace period, by loopback address: kwok gives a deleted
   * pod's IP to the next pod at once, and that pod's agent needs the address, so the old one
   * goes first (on a node the old pod's sandbox is gone before its IP is given again).
   */
  private readonly retiring = new Map<string, () => Promise<void>>();
  private readonly sources = new Map<string, Promise<string>>();
  private readonly git: GitSource;
  private stopped = false;
  /** Agents started, by pod name: what the tests count. */
  readonly started: string[] = [];

  constructor(options: PodAgentsOptions) {
    this.options = options;
    this.git = new GitSource({
      url: options.repo,
      branch: "main",
      cacheDir: mkdtempSync(join(options.workDir, "git-")),
    });
    this.pods = new Informer<Pod>({
      client: options.client,
      path: `/api/v1/namespaces/${options.namespace}/pods`,
      resource: `replica pods in ${options.namespace}`,
      labelSelector: "app.kubernetes.io/name=modelship-replica",
    });
    this.pods.onChange(({ type, object }) => {
      if (type === "delete" || object.metadata.deletionTimestamp) this.retire(object);
      else if (object.status?.phase === "Running" && object.status.podIP) this.serve(object);
    });
  }

  async start(): Promise<void> {
    await this.pods.start();
    for (const pod of this.pods.list()) {
      if (pod.status?.phase === "Running" && pod.status.podIP) this.serve(pod);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.pods.stop();
    const agents = await Promise.all(this.agents.values());
    await Promise.all([
      ...agents.map((agent) => agent?.stop()),
      ...[...this.retiring.values()].map((stopNow) => stopNow()),
    ]);
    this.agents.clear();
  }

  private serve(pod: Pod): void {
    const name = pod.metadata.name;
    if (this.stopped || this.agents.has(name)) return;
    const agent = this.startAgent(pod).catch((error: Error) => {
      this.options.log(`pod ${name}: no agent: ${error.message}`);
      return undefined;
    });
    this.agents.set(name, agent);
  }

  private retire(pod: Pod): void {
    const name = pod.metadata.name;
    const agent = this.agents.get(name);
    if (!agent) return;
    this.agents.delete(name);
    const address = pod.status?.podIP ? loopbackOf(pod.status.podIP) : undefined;
    let stopping: Promise<void> | undefined;
    const stopNow = () => {
      stopping ??= agent.then(async (running) => {
        await running?.stop();
      });
      if (address && this.retiring.get(address) === stopNow) this.retiring.delete(address);
      return stopping;
    };
    if (address) this.retiring.set(address, stopNow);
    setTimeout(() => void stopNow(), DELETE_GRACE_MS);
  }

  /** The source of a build, exported once from git at its commit. */
  private source(build: ModelBuild): Promise<string> {
    const name = build.metadata.name;
    let dir = this.sources.get(name);
    if (!dir) {
      const target = join(this.options.workDir, "builds", name);
      mkdirSync(target, { recursive: true });
      dir = this.git
        .fetch()
        .then(() =>
          this.git.exportTree(
            build.spec.commit,
            build.spec.sourcePath,
            target,
            build.spec.exclude ?? [],
          ),
        )
        .then(() => target);
      this.sources.set(name, dir);
    }
    return dir;
  }

  private async secretValue(name: string, key: string): Promise<string> {
    const secret = await this.options.client.request<{ data?: Record<string, string> }>(
      "GET",
      `/api/v1/namespaces/${this.options.namespace}/secrets/${name}`,
    );
    const value = secret.data?.[key];
    if (value === undefined) throw new Error(`Secret ${name} has no ${key}`);
    return Buffer.from(value, "base64").toString("utf8");
  }

  /** What the pod's container would see: its env, with Secret and field references resolved. */
  private async environment(pod: Pod, env: EnvVar[]): Promise<Record<string, string>> {
    const resolved: Record<string, string> = {};
    for (const variable of env) {
      const from = variable.valueFrom;
      if (from?.secretKeyRef) {
        resolved[variable.name] = await this.secretValue(
          from.secretKeyRef.name,
          from.secretKeyRef.key,
        );
      } else if (from?.fieldRef?.fieldPath === "metadata.name") {
        resolved[variable.name] = pod.metadata.name;
      } else if (variable.value !== undefined) {
        resolved[variable.name] = variable.value;
      }
    }
    return resolved;
  }

  private async startAgent(pod: Pod): Promise<CliProcess | undefined> {
    const labels = pod.metadata.labels ?? {};
    const buildName = `${labels[LABEL_MODEL]}-${labels[LABEL_BUILD]}`;
    const build = await this.options.client.request<ModelBuild>(
      "GET",
      `/apis/modelship.dev/v1alpha1/namespaces/${this.options.namespace}/modelbuilds/${buildName}`,
    );
    const dir = await this.source(build);
    const [container] = pod.spec.containers;
    if (!container) throw new Error("the pod has no container");
    const env = await this.environment(pod, container.env ?? []);
    // The image's entry point (build-context.ts), then the container's arguments, with
    // $(POD_NAME) expanded as the kubelet does.
    const args = (container.args ?? []).map((arg) =>
      arg.replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (_, variable: string) => env[variable] ?? ""),
    );
    const port = container.ports?.[0]?.containerPort ?? 8080;
    const address = loopbackOf(pod.status?.podIP as string);
    // The address's last pod, if its agent is still in its grace period, goes now.
    await this.retiring.get(address)?.();
    if (this.stopped) return undefined;
    const agent = await startCli(
      [
        ...["replica", "--dir", dir, "--file", build.spec.file, "--function", build.spec.function],
        ...["--runtime", build.spec.runtime, "--port", String(port), "--host", address],
        ...args,
      ],
      { env },
    );
    this.started.push(pod.metadata.name);
    this.options.log(
      `pod ${pod.metadata.name} (${labels[LABEL_DEPLOYMENT]}, build ${labels[LABEL_BUILD]}): agent on ${agent.url}`,
    );
    await this.markReadyWhenReady(pod, agent);
    return agent;
  }

  /** The kubelet's readiness probe: /readyz, then the pod's Ready condition. */
  private async markReadyWhenReady(pod: Pod, agent: CliProcess): Promise<void> {
    for (;;) {
      if (this.stopped || !this.agents.has(pod.metadata.name)) return;
      const ready = await fetch(`${agent.url}/readyz`).then(
        (response) => response.status === 200,
        () => false,
      );
      if (ready) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const now = new Date().toISOString();
    const [container] = pod.spec.containers;
    await this.options.client.request(
      "PATCH",
      `/api/v1/namespaces/${this.options.namespace}/pods/${pod.metadata.name}/status`,
      {
        status: {
          conditions: [
            { type: "Ready", status: "True", lastTransitionTime: now },
            { type: "ContainersReady", status: "True", lastTransitionTime: now },
          ],
          containerStatuses: [
            {
              name: container?.name,
              image: container?.image,
              imageID: "",
              ready: true,
              restartCount: 0,
              started: true,
              state: { running: { startedAt: now } },
            },
          ],
        },
      },
      "application/strategic-merge-patch+json",
    );
  }
}
