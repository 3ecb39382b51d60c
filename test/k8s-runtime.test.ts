// KubeRuntime and KubeGatewayFeed against a real control plane: what they create carries our
// labels and an owner reference, what they cache and delete is only ever what carries them
// (the installation's own Deployment and Service next door are never touched), and drift made
// by hand (kubectl scale, set image, delete) is reported and undone by the next apply.
// Needs the binaries from `bash test/k8s/build-binaries.sh`; see docs/k8s-test-cluster.md.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelBuild } from "../controller/api/types.generated.ts";
import type { NamespacedName } from "../controller/core/keys.ts";
import { isManaged } from "../controller/core/labels.ts";
import type { RolloutSpec } from "../controller/core/ports.ts";
import { Gateway } from "../controller/gateway/gateway.ts";
import { KubeClient, loadKubeConfig } from "../controller/platform/kubernetes/client.ts";
import { KubeGatewayFeed } from "../controller/platform/kubernetes/gateway-feed.ts";
import { replicaSecretOf } from "../controller/platform/kubernetes/replica-secret.ts";
import { KubeRuntime } from "../controller/platform/kubernetes/runtime.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";
import { eventually } from "./helpers/replica.ts";
import { POD_CIDR, startCluster, type TestCluster } from "./k8s/cluster.ts";
import { connectionsTo } from "./k8s/sockets.ts";

const NAMESPACE = "modelship";
const SCORER: NamespacedName = { namespace: NAMESPACE, name: "scorer" };
const INSTALLATION: NamespacedName = { namespace: NAMESPACE, name: "modelship-controller" };

let cluster: TestCluster;
let client: KubeClient;
let runtime: KubeRuntime;
const woken: string[] = [];
const REPLICA_KEY = "the installation's replica key";
let ownerUid = "";

beforeAll(async () => {
  cluster = await startCluster({ nodes: 1 });
  client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
  cluster.kubectlOk(["create", "namespace", NAMESPACE]);
  cluster.kubectlOk(["apply", "-f", join(PROJECT_ROOT, "crds")]);
  cluster.kubectlOk(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  cluster.kubectlOk(
    ["apply", "-f", "-"],
    JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [
        {
          apiVersion: "modelship.dev/v1alpha1",
          kind: "Model",
          metadata: { name: "scorer", namespace: NAMESPACE },
          spec: { runtime: "python3", file: "score.py", function: "predict" },
        },
        {
          apiVersion: "modelship.dev/v1alpha1",
          kind: "ModelDeployment",
          metadata: { name: "scorer", namespace: NAMESPACE },
          spec: { model: "scorer", replicas: 2 },
        },
      ],
    }),
  );
  ownerUid = cluster.kubectlOk([
    "get",
    "modeldeployment",
    "-n",
    NAMESPACE,
    "scorer",
    "-o",
    "jsonpath={.metadata.uid}",
  ]);
  installationLookalike();
  runtime = new KubeRuntime(client, NAMESPACE, (deployment) => woken.push(deployment.name), {
    replicaKey: async () => REPLICA_KEY,
  });
  await runtime.start();
}, 240_000);

afterAll(async () => {
  await runtime?.stopWatching();
  client?.close();
  await cluster?.stop();
}, 60_000);

// biome-ignore lint/suspicious/noExplicitAny: objects read from kubectl are checked field by field
function getJson(kind: string, name: string): any {
  return JSON.parse(cluster.kubectlOk(["get", kind, "-n", NAMESPACE, name, "-o", "json"]));
}

function exists(kind: string, name: string): boolean {
  return cluster.kubectl(["get", kind, "-n", NAMESPACE, name]).status === 0;
}

/**
 * A Deployment and a Service named like the installation's own, without modelship's labels
 * (as kustomize makes them): what the controller once deleted by name.
 */
function installationLookalike(): void {
  cluster.kubectlOk(
    ["apply", "-f", "-"],
    JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [
        {
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: {
            name: INSTALLATION.name,
            namespace: NAMESPACE,
            labels: { "app.kubernetes.io/part-of": "modelship" },
          },
          spec: {
            replicas: 1,
            selector: { matchLabels: { app: INSTALLATION.name } },
            template: {
              metadata: { labels: { app: INSTALLATION.name } },
              spec: { containers: [{ name: "controller", image: "registry.invalid/modelship:1" }] },
            },
          },
        },
        {
          apiVersion: "v1",
          kind: "Service",
          metadata: {
            name: INSTALLATION.name,
            namespace: NAMESPACE,
            labels: { "app.kubernetes.io/part-of": "modelship" },
          },
          spec: { selector: { app: INSTALLATION.name }, ports: [{ port: 8081 }] },
        },
      ],
    }),
  );
}

function build(image = "registry.invalid/scorer@sha256:1"): ModelBuild {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: { name: "scorer-1", namespace: NAMESPACE },
    spec: {
      model: "scorer",
      number: 1,
      commit: "a".repeat(40),
      tree: "b".repeat(40),
      buildKey: "c".repeat(64),
      repository: "repo",
      sourcePath: "scorer",
      runtime: "python3",
      file: "score.py",
      function: "predict",
    },
    status: { phase: "Succeeded", image },
  };
}

function rollout(overrides: Partial<RolloutSpec> = {}): RolloutSpec {
  return {
    deployment: SCORER,
    model: "scorer",
    deploymentId: 7,
    build: build(),
    replicas: 2,
    env: {},
    timeoutSeconds: 30,
    ownerUid,
    ...overrides,
  };
}

describe("KubeRuntime on a real API server", () => {
  it("applies a Deployment, a Service, a Secret and a NetworkPolicy labelled as ours and owned by the ModelDeployment", async () => {
    await runtime.apply(rollout());
    await eventually(() => runtime.status(SCORER)?.complete === true, 60_000);
    for (const [kind, name] of [
      ["deployment", "scorer"],
      ["service", "scorer"],
      ["secret", "modelship-replica-scorer"],
      ["networkpolicy", "scorer"],
    ] as const) {
      const object = getJson(kind, name);
      expect(object.metadata.labels).toMatchObject({
        "app.kubernetes.io/managed-by": "modelship",
        "modelship.dev/deployment": "scorer",
        "modelship.dev/model": "scorer",
      });
      expect(object.metadata.ownerReferences).toEqual([
        {
          apiVersion: "modelship.dev/v1alpha1",
          kind: "ModelDeployment",
          name: "scorer",
          uid: ownerUid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
    }
    expect(runtime.status(SCORER)).toEqual({
      readyReplicas: 2,
      servingReplicas: 2,
      replicas: 2,
      complete: true,
    });
    expect(woken).toContain("scorer");
    const secret = getJson("secret", "modelship-replica-scorer");
    expect(Buffer.from(secret.data["gateway-secret"], "base64").toString()).toBe(
      replicaSecretOf(REPLICA_KEY, SCORER),
    );
  }, 90_000);

  it.each([
    ["deleted", ["delete", "secret", "modelship-replica-scorer"]],
    [
      "edited",
      [
        "patch",
        "secret",
        "modelship-replica-scorer",
        "--type=merge",
        `-p={"data":{"gateway-secret":"${Buffer.from("guessable").toString("base64")}"}}`,
      ],
    ],
  ])(
    "reports the replicas' Secret %s by hand as drift, and the next apply puts it back",
    async (_, edit) => {
      cluster.kubectlOk([...edit, "-n", NAMESPACE]);
      await eventually(() => runtime.status(SCORER)?.drifted !== undefined, 10_000);
      expect(runtime.status(SCORER)?.drifted).toMatch(
        /^Secret modelship-replica-scorer (is missing|holds another gateway secret)$/,
      );
      await runtime.apply(rollout());
      expect(runtime.status(SCORER)?.drifted).toBeUndefined();
      const secret = getJson("secret", "modelship-replica-scorer");
      expect(Buffer.from(secret.data["gateway-secret"], "base64").toString()).toBe(
        replicaSecretOf(REPLICA_KEY, SCORER),
      );
    },
    30_000,
  );

  it("finds the replicas in EndpointSlices, which carry the Service's labels; pod IPs are kwok's", async () => {
    await eventually(() => runtime.replicas(SCORER).filter((r) => r.ready).length === 2, 30_000);
    const [prefix] = POD_CIDR.split(".0.0/");
    for (const replica of runtime.replicas(SCORER)) {
      expect(replica.url).toMatch(
        new RegExp(`^http://${prefix?.replace(/\./g, "\\.")}\\.\\d+\\.\\d+:8080$`),
      );
    }
    const slices = JSON.parse(
      cluster.kubectlOk([
        "get",
        "endpointslices",
        "-n",
        NAMESPACE,
        "-l",
        "kubernetes.io/service-name=scorer",
        "-o",
        "json",
      ]),
    ).items as { metadata: { labels: Record<string, string> } }[];
    expect(slices.length).toBeGreaterThan(0);
    for (const slice of slices) {
      expect(slice.metadata.labels).toMatchObject({
        "app.kubernetes.io/managed-by": "modelship",
        "modelship.dev/deployment": "scorer",
        "modelship.dev/model": "scorer",
      });
    }
  }, 60_000);

  it("caches nothing without our label, and never maps the installation's objects to a deployment", async () => {
    // The look-alike's pods and slice exist by now (its slice has no label of ours).
    cluster.kubectlOk([
      "rollout",
      "status",
      "-n",
      NAMESPACE,
      `deployment/${INSTALLATION.name}`,
      "--timeout=60s",
    ]);
    await eventually(
      () =>
        cluster
          .kubectlOk([
            "get",
            "endpointslices",
            "-n",
            NAMESPACE,
            "-l",
            `kubernetes.io/service-name=${INSTALLATION.name}`,
            "-o",
            "name",
          ])
          .trim() !== "",
      30_000,
    );
    const cached = runtime.cached();
    const all = [...cached.deployments, ...cached.services, ...cached.slices];
    expect(all.length).toBeGreaterThanOrEqual(3);
    for (const object of all)
      expect(isManaged(object.metadata.labels), object.metadata.name).toBe(true);
    expect(woken).not.toContain(INSTALLATION.name);
    expect(runtime.status(INSTALLATION)).toBeUndefined();
    expect(runtime.replicas(INSTALLATION)).toEqual([]);
  }, 90_000);

  it("pause() of a name it did not create scales nothing", async () => {
    const before = getJson("deployment", INSTALLATION.name).spec.replicas;
    expect(await runtime.pause(INSTALLATION)).toBe(false);
    expect(getJson("deployment", INSTALLATION.name).spec.replicas).toBe(before);
  });

  it("stop() of a name it did not create deletes nothing", async () => {
    await runtime.stop(INSTALLATION);
    expect(exists("deployment", INSTALLATION.name)).toBe(true);
    expect(exists("service", INSTALLATION.name)).toBe(true);
  });

  it("refuses to apply over a namesake it did not create", async () => {
    const before = getJson("deployment", INSTALLATION.name);
    await expect(runtime.apply(rollout({ deployment: INSTALLATION }))).rejects.toThrow(
      /was not made by modelship/,
    );
    const after = getJson("deployment", INSTALLATION.name);
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect(after.metadata.labels["app.kubernetes.io/managed-by"]).toBeUndefined();
  });

  it.each<[string, string[], RegExp]>([
    ["kubectl scale", ["scale", "deployment/scorer", "--replicas=1"], /has 1 replicas, not 2/],
    [
      "kubectl set image",
      ["set", "image", "deployment/scorer", "replica=registry.invalid/other:1"],
      /runs image registry\.invalid\/other:1, not registry\.invalid\/scorer@sha256:1/,
    ],
    [
      "kubectl delete deployment",
      ["delete", "deployment", "scorer"],
      /Deployment scorer is missing/,
    ],
    ["kubectl delete service", ["delete", "service", "scorer"], /Service scorer is missing/],
  ])(
    "reports drift by %s, and the next apply() undoes it",
    async (_, command, drift) => {
      cluster.kubectlOk(["-n", NAMESPACE, ...command]);
      await eventually(() => drift.test(runtime.status(SCORER)?.drifted ?? ""), 10_000);
      await runtime.apply(rollout());
      expect(runtime.status(SCORER)?.drifted).toBeUndefined();
      const deployment = getJson("deployment", "scorer");
      expect(deployment.spec.replicas).toBe(2);
      expect(deployment.spec.template.spec.containers[0].image).toBe(
        "registry.invalid/scorer@sha256:1",
      );
      expect(exists("service", "scorer")).toBe(true);
      await eventually(() => runtime.status(SCORER)?.complete === true, 60_000);
    },
    90_000,
  );

  it("feeds the gateway from the caches, and stops without a connection left open", async () => {
    const port = Number(new URL(cluster.server).port);
    const own = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
    const before = new Set(connectionsTo(port));
    const gateway = new Gateway();
    const lines: string[] = [];
    const feed = new KubeGatewayFeed(own, NAMESPACE, gateway, (line) => lines.push(line));
    await feed.start();
    await eventually(() => feed.config().models[0]?.replicas.length === 2, 30_000);
    expect(feed.config().models.map((model) => model.name)).toEqual(["scorer"]);
    const started = Date.now();
    await feed.stop();
    expect(Date.now() - started).toBeLessThan(500);
    // Only the idle keep-alive connections are left, and close() ends those.
    own.close();
    await eventually(() => connectionsTo(port).every((local) => before.has(local)), 1000);
    expect(lines).toEqual([]);
  }, 60_000);

  it.each([
    ["once the watches run", 500],
    ["while the watches are still being opened", 0],
  ])(
    "lets a process exit at once after stopping its store and runtime %s",
    async (_, runMs) => {
      // What `modelship controller` and `modelship gateway` rely on to exit after SIGTERM: no
      // socket, timer or request of ours is left to hold the event loop.
      const module = (file: string) => JSON.stringify(join(PROJECT_ROOT, "controller", file));
      const code = `
      import { KubeClient, loadKubeConfig } from ${module("platform/kubernetes/client.ts")};
      import { KubeStore } from ${module("platform/kubernetes/store.ts")};
      import { KubeRuntime } from ${module("platform/kubernetes/runtime.ts")};
      const client = new KubeClient(loadKubeConfig(${JSON.stringify(cluster.kubeconfigPath)}));
      const store = new KubeStore(client, ${JSON.stringify(NAMESPACE)});
      const runtime = new KubeRuntime(client, ${JSON.stringify(NAMESPACE)}, () => {});
      const starting = Promise.all([store.start(), runtime.start()]);
      if (${runMs} > 0) {
        await starting;
        await store.allocateDeploymentId();
        await new Promise((resolve) => setTimeout(resolve, ${runMs}));
      }
      await Promise.all([store.stop(), runtime.stopWatching()]);
      await starting.catch(() => {});
      process.stdout.write("stopped " + Date.now() + "\\n");
    `;
      const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout.on("data", (chunk) => (output += chunk));
      child.stderr.on("data", (chunk) => (output += chunk));
      const exitedAt = await new Promise<number>((resolve) =>
        child.on("exit", () => resolve(Date.now())),
      );
      const stoppedAt = Number(/stopped (\d+)/.exec(output)?.[1]);
      expect(stoppedAt, output).toBeGreaterThan(0);
      expect(exitedAt - stoppedAt).toBeLessThan(500);
    },
    30_000,
  );

  it("pause() scales its own Deployment to zero and keeps it, its history and what guards it; apply() brings the replicas back", async () => {
    expect(await runtime.pause(SCORER)).toBe(true);
    expect(getJson("deployment", "scorer").spec.replicas).toBe(0);
    for (const kind of ["service", "networkpolicy"]) expect(exists(kind, "scorer")).toBe(true);
    expect(exists("secret", "modelship-replica-scorer")).toBe(true);
    const replicaSets = JSON.parse(
      cluster.kubectlOk([
        ...["get", "replicasets", "-n", NAMESPACE],
        ...["-l", "modelship.dev/deployment=scorer", "-o", "json"],
      ]),
    );
    expect(replicaSets.items.length).toBeGreaterThan(0);
    // A second pause has nothing to do; its answer says so.
    expect(await runtime.pause(SCORER)).toBe(false);
    await runtime.apply(rollout());
    expect(getJson("deployment", "scorer").spec.replicas).toBe(rollout().replicas);
  });

  it("stop() deletes its own Deployment, Service, Secret and NetworkPolicy", async () => {
    await runtime.stop(SCORER);
    expect(exists("deployment", "scorer")).toBe(false);
    expect(exists("service", "scorer")).toBe(false);
    expect(exists("secret", "modelship-replica-scorer")).toBe(false);
    expect(exists("networkpolicy", "scorer")).toBe(false);
    expect(runtime.status(SCORER)).toBeUndefined();
    expect(exists("deployment", INSTALLATION.name)).toBe(true);
  });
});
