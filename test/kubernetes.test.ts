// The Kubernetes platform against a real control plane (etcd, kube-apiserver, controller
// manager, scheduler; kwok plays the nodes) with the real kubectl. The controller runs in this
// process, as `modelship controller --kubeconfig` would, following a real git repository.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Gateway } from "../controller/gateway/gateway.ts";
import { hashKey } from "../controller/gateway/keys.ts";
import { jobName } from "../controller/platform/kubernetes/builder.ts";
import { KubeClient, loadKubeConfig } from "../controller/platform/kubernetes/client.ts";
import { KubeGatewayFeed } from "../controller/platform/kubernetes/gateway-feed.ts";
import { LeaderElector } from "../controller/platform/kubernetes/leader.ts";
import { KubernetesPlatform } from "../controller/platform/kubernetes/platform.ts";
import { KubeRuntime } from "../controller/platform/kubernetes/runtime.ts";
import { DEFAULT_SETTINGS } from "../controller/platform/kubernetes/settings.ts";
import { KubeStore } from "../controller/platform/kubernetes/store.ts";
import { ControllerMetrics } from "../controller/reconcile/metrics.ts";
import { PROJECT_ROOT, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { serveGit } from "./helpers/git-http.ts";
import { eventually } from "./helpers/replica.ts";
import { startCluster, type TestCluster } from "./k8s/cluster.ts";

const NAMESPACE = "modelship";
/** Where build Jobs run (kustomize/base/namespace.yaml: Pod Security `baseline`). */
const BUILDS = "modelship-builds";
const execFileAsync = promisify(execFile);
/** A second namespace the controller follows (MODELSHIP_WATCH_NAMESPACES). */
const TEAM = "team-b";
const root = mkdtempSync(join(tmpdir(), "modelship-k8s-"));
const repo = join(root, "repo");
let cluster: TestCluster;
let platform: KubernetesPlatform | undefined;
const controllerLog: string[] = [];

const GIT_ENV = gitEnv({ name: "Katherine Johnson", email: "katherine@example.com" });

function git(...args: string[]): string {
  return runGit(repo, GIT_ENV, ...args);
}

function commit(files: Record<string, string>, message: string): string {
  return commitAll(repo, GIT_ENV, message, files);
}

const score = (version: number) => `def predict(args):\n    return {"version": ${version}}\n`;
const MANIFEST = `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: scorer
spec:
  runtime: python3
  file: score.py
  function: predict
---
apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: scorer
spec:
  model: scorer
  replicas: REPLICAS
`;

/**
 * kubectl, run without blocking this process: the controller under test runs in it, and a
 * synchronous kubectl would freeze it for as long as kubectl takes.
 */
async function kubectl(...args: string[]): Promise<string> {
  const result = await cluster.kubectlAsync(args);
  if (result.status !== 0) throw new Error(`kubectl ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

// biome-ignore lint/suspicious/noExplicitAny: objects read from kubectl are checked field by field
async function getJson(...args: string[]): Promise<any> {
  return JSON.parse(await kubectl("get", "-n", NAMESPACE, ...args, "-o", "json"));
}

async function startController(): Promise<void> {
  platform = new KubernetesPlatform({
    client: new KubeClient(loadKubeConfig(cluster.kubeconfigPath)),
    settings: {
      ...DEFAULT_SETTINGS,
      namespace: NAMESPACE,
      registry: "registry.test:5000/models",
      insecureRegistry: true,
      watchNamespaces: [NAMESPACE, TEAM],
    },
    cacheDir: join(root, "cache"),
    metrics: new ControllerMetrics(new Registry()),
    log: (line) => controllerLog.push(line),
    // Builds are watched: with no polling to speak of, only the Job watch moves them on.
    reconcile: { buildPollMs: 600_000 },
  });
  await platform.start();
}

async function stopController(): Promise<void> {
  await platform?.stop();
  platform = undefined;
}

async function deployment(): Promise<{ phase?: string; build?: number; ready?: string }> {
  return (await getJson("modeldeployment", "scorer")).status ?? {};
}

async function deployedBuild(build: number): Promise<void> {
  await eventually(async () => {
    const status = await deployment();
    return status.phase === "Deployed" && status.build === build;
  }, 120_000);
}

/** The name of a model's build Job (builder.ts: readable, and unique by a hash). */
const jobOf = (model: string, number: number, namespace = NAMESPACE) =>
  jobName({ metadata: { namespace, name: `${model}-${number}` } });

/** The build Jobs of the scorer, in the build namespace. */
const jobNames = async () =>
  (
    (await getJson("jobs", "-n", BUILDS, "-l", "modelship.dev/model=scorer")).items as {
      metadata: { name: string };
    }[]
  )
    .map((job) => job.metadata.name)
    .sort();

/** `kubectl auth can-i` as one of the installation's service accounts: "yes" or "no". */
const canI = async (account: string, namespace: string, verb: string, resource: string) =>
  (
    await cluster.kubectlAsync([
      ...["auth", "can-i", verb, resource, "-n", namespace],
      `--as=system:serviceaccount:${NAMESPACE}:${account}`,
    ])
  ).stdout.trim();

/** The events of a namespace with this reason. */
const eventsWithReason = async (namespace: string, reason: string) =>
  ((await getJson("events", "-n", namespace)).items as { reason: string; message: string }[])
    .filter((event) => event.reason === reason)
    .map((event) => event.message);

/** Whether `kubectl get` finds the object. */
const exists = async (...args: string[]) =>
  (await cluster.kubectlAsync(["get", "-n", NAMESPACE, ...args])).status === 0;

beforeAll(async () => {
  cluster = await startCluster({ nodes: 2 });
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commit(
    { "score.py": score(1), "model.yaml": MANIFEST.replace("REPLICAS", "3") },
    "scorer, version 1",
  );
}, 300_000);

afterAll(async () => {
  await stopController();
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
  if (process.env.MODELSHIP_K8S_DEBUG) console.log(controllerLog.join("\n"));
}, 60_000);

describe("the Kubernetes platform", () => {
  it("installs with kustomize: the dev overlay passes a server dry run, the CRDs install, kubectl explain reads them", async () => {
    const overlay = join(PROJECT_ROOT, "kustomize/overlays/dev");
    // A server dry run creates nothing, so namespaced objects need their namespace to exist.
    await kubectl("create", "namespace", NAMESPACE);
    await kubectl("create", "namespace", BUILDS);
    const dryRun = await cluster.kubectlAsync(["apply", "-k", overlay, "--dry-run=server"]);
    expect([dryRun.status, dryRun.stderr]).toEqual([0, expect.not.stringContaining("rror")]);
    expect(dryRun.stdout).toContain(
      "customresourcedefinition.apiextensions.k8s.io/modeldeployments.modelship.dev created (server dry run)",
    );
    expect(dryRun.stdout).toContain(
      "deployment.apps/modelship-controller created (server dry run)",
    );
    await kubectl("apply", "-k", overlay);
    await kubectl(
      "wait",
      "--for=condition=Established",
      "crd/modeldeployments.modelship.dev",
      "--timeout=60s",
    );
    await eventually(
      async () =>
        (await cluster.kubectlAsync(["explain", "modeldeployment.spec.replicas"])).status === 0,
      60_000,
    );
    const explained = await kubectl("explain", "modeldeployment.spec.replicas");
    expect(explained).toContain(
      "How many replicas serve the model; each answers one request at a time.",
    );
    // From now on the API server's own Pod Security admission judges every pod made here.
    const level = async (namespace: string) =>
      (await getJson("namespace", namespace)).metadata.labels["pod-security.kubernetes.io/enforce"];
    expect([await level(NAMESPACE), await level(BUILDS)]).toEqual(["restricted", "baseline"]);
    // And admission is on: a pod that `restricted` forbids is refused, naming the level.
    const bare = cluster.kubectl(
      ["apply", "-n", NAMESPACE, "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "as-root" },
        spec: { containers: [{ name: "c", image: "registry.invalid/x:1" }] },
      }),
    );
    expect(bare.status).not.toBe(0);
    expect(bare.stderr).toContain('violates PodSecurity "restricted:latest"');
  }, 120_000);

  it("refuses replicas: 12 applied by hand, with the schema's limit", () => {
    const result = cluster.kubectl(
      ["apply", "-n", NAMESPACE, "-f", "-"],
      MANIFEST.split("---\n")[1]
        ?.replace("REPLICAS", "12")
        .replace("name: scorer\nspec", "name: too-many\nspec"),
    );
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("spec.replicas");
    expect(result.stderr).toContain("less than or equal to 9");
  });

  it("touches nothing it did not create: the installation's own Deployments and Services survive 30 s of a controller with no ModelRepository", async () => {
    const installed = async () =>
      (await kubectl("get", "deployments,services", "-n", NAMESPACE, "-o", "name"))
        .split("\n")
        .filter(Boolean)
        .sort();
    const before = await installed();
    expect(before).toStrictEqual(
      expect.arrayContaining([
        "deployment.apps/modelship-controller",
        "deployment.apps/modelship-gateway",
        "deployment.apps/registry",
        "service/modelship-gateway",
        "service/registry",
      ]),
    );
    await startController();
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    expect(await installed()).toStrictEqual(before);
    await stopController();
    expect(await installed()).toStrictEqual(before);
  }, 90_000);

  it("builds a commit with a Kaniko Job, then deploys 3 ready replicas", async () => {
    const repository = `apiVersion: modelship.dev/v1alpha1
kind: ModelRepository
metadata:
  name: models
  namespace: ${NAMESPACE}
spec:
  url: ${repo}
  branch: main
  interval: 2s
`;
    expect(cluster.kubectl(["apply", "-f", "-"], repository).status).toBe(0);
    await startController();

    await eventually(async () => (await jobNames()).includes(jobOf("scorer", 1)), 60_000);
    const job = await getJson("job", "-n", BUILDS, jobOf("scorer", 1));
    expect(job.spec.template.spec.automountServiceAccountToken).toBe(false);
    const kaniko = job.spec.template.spec.containers[0];
    expect(kaniko.args).toContain(
      "--destination=registry.test:5000/models/modelship/scorer:build-1",
    );
    expect(kaniko.args).toContain("--digest-file=/dev/termination-log");
    expect(job.spec.template.spec.initContainers[0].args).toContain(git("rev-parse", "HEAD"));

    await deployedBuild(1);
    expect((await deployment()).ready).toBe("3/3");
    const pods = (await getJson("pods", "-l", "modelship.dev/deployment=scorer")).items;
    expect(pods).toHaveLength(3);
    // Admitted under `restricted` (the models) and `baseline` (the build): nothing refused.
    expect(await eventsWithReason(NAMESPACE, "FailedCreate")).toEqual([]);
    expect(await eventsWithReason(BUILDS, "FailedCreate")).toEqual([]);
    expect(
      (await getJson("pods", "-n", BUILDS, "-l", "modelship.dev/model=scorer")).items,
    ).toHaveLength(1);
    const table = await kubectl("get", "modeldeployments", "-n", NAMESPACE);
    expect(table).toMatch(/^NAME\s+MODEL\s+BUILD\s+READY\s+PHASE\s+URL\s+AGE$/m);
    expect(table).toMatch(/^scorer\s+scorer\s+1\s+3\/3\s+Deployed\s+/m);
  }, 240_000);

  it("undoes `kubectl scale` of a model's Deployment within two intervals, and says so", async () => {
    await kubectl("scale", "deployment/scorer", "-n", NAMESPACE, "--replicas=1");
    await eventually(
      async () => (await getJson("deployment", "scorer")).spec.replicas === 3,
      2 * 2000 + 5000,
    );
    await eventually(async () => {
      const events = (
        await getJson(
          "events",
          "--field-selector=involvedObject.kind=ModelDeployment,involvedObject.name=scorer",
        )
      ).items as { reason: string; message: string }[];
      return events.some(
        (event) =>
          event.reason === "DriftCorrected" && event.message.includes("put the replicas back"),
      );
    }, 10_000);
    await deployedBuild(1);
  }, 60_000);

  it("feeds the gateway the ready replicas it finds in EndpointSlices", async () => {
    const gateway = new Gateway();
    const feed = new KubeGatewayFeed(
      new KubeClient(loadKubeConfig(cluster.kubeconfigPath)),
      NAMESPACE,
      gateway,
      (line) => controllerLog.push(line),
    );
    await feed.start();
    try {
      await eventually(() => (feed.config().models[0]?.replicas.length ?? 0) === 3, 30_000);
      const [route] = feed.config().models;
      const podIps = (await getJson("pods", "-l", "modelship.dev/deployment=scorer")).items.map(
        (pod: { status: { podIP: string } }) => `http://${pod.status.podIP}:8080`,
      );
      expect(route?.name).toBe("scorer");
      expect(route?.replicas.map((replica) => replica.url).sort()).toEqual(podIps.sort());
      expect(route?.authentication.enabled).toBe(true);
      // The controller gave the model an access key; the gateway holds only its hash.
      const secret = await getJson("secret", "modelship-keys");
      const accessKey = Buffer.from(secret.data["access.scorer"], "base64").toString("utf8");
      expect(accessKey).toMatch(/^[a-z2-7]{32}$/);
      expect(route?.accessKeySha256).toBe(hashKey(accessKey));
      // No way around the gateway: each replica gets the deployment's secret, which its pods
      // read from a Secret of their own, and only the gateway's pods may reach them.
      const shared = Buffer.from(
        (await getJson("secret", "modelship-replica-scorer")).data["gateway-secret"],
        "base64",
      ).toString("utf8");
      expect(shared).toMatch(/^[0-9a-f]{64}$/);
      expect(route?.replicas.map((replica) => replica.secret)).toEqual([shared, shared, shared]);
      const container = (await getJson("deployment", "scorer")).spec.template.spec.containers[0];
      expect(container.env).toContainEqual({
        name: "MODELSHIP_GATEWAY_SECRET",
        valueFrom: { secretKeyRef: { name: "modelship-replica-scorer", key: "gateway-secret" } },
      });
      expect(JSON.stringify(container)).not.toContain(shared);
      const policy = await getJson("networkpolicy", "scorer");
      expect(policy.spec.podSelector).toEqual({
        matchLabels: { "modelship.dev/deployment": "scorer" },
      });
      expect(policy.spec.ingress).toEqual([
        {
          from: [
            {
              namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": NAMESPACE } },
              podSelector: { matchLabels: { "app.kubernetes.io/name": "modelship-gateway" } },
            },
          ],
          ports: [{ protocol: "TCP", port: 8080 }],
        },
      ]);
    } finally {
      await feed.stop();
      await gateway.close();
    }
  }, 60_000);

  it("works with the rights its RBAC gives its own service accounts, and no more", async () => {
    /** A client that acts as one of the installation's service accounts. */
    const clientAs = async (account: string) => {
      const token = (await kubectl("create", "token", account, "-n", NAMESPACE)).trim();
      const config = JSON.parse(readFileSync(cluster.kubeconfigPath, "utf8"));
      config.users = [{ name: "admin", user: { token } }];
      const file = join(root, `${account}.kubeconfig`);
      writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
      return new KubeClient(loadKubeConfig(file));
    };
    const within = <T>(promise: Promise<T>, what: string) =>
      Promise.race([
        promise,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`${what} did not start within 20 s`)), 20_000),
        ),
      ]);
    const gateway = new Gateway();
    const gatewayClient = await clientAs("modelship-gateway");
    const feed = new KubeGatewayFeed(gatewayClient, NAMESPACE, gateway, (line) =>
      controllerLog.push(line),
    );
    const controllerClient = await clientAs("modelship-controller");
    const store = new KubeStore(controllerClient, NAMESPACE);
    const runtime = new KubeRuntime(controllerClient, NAMESPACE, () => {}, {
      replicaKey: async () => "a key",
    });
    try {
      await within(feed.start(), "the gateway feed");
      expect(feed.config().models.map((model) => model.name)).toContain("scorer");
      await within(store.start(), "the controller's store");
      await within(runtime.start(), "the controller's runtime");
      expect(store.get("ModelDeployment", NAMESPACE, "scorer")).toBeDefined();
    } finally {
      await feed.stop();
      await gateway.close();
      await store.stop();
      await runtime.stopWatching();
      gatewayClient.close();
      controllerClient.close();
    }
    const can = (account: string, verb: string, resource: string, namespace = NAMESPACE) =>
      canI(account, namespace, verb, resource);
    // Builds happen in their own namespace, and only there.
    for (const [verb, resource] of [
      ["create", "jobs.batch"],
      ["delete", "jobs.batch"],
      ["get", "pods/log"],
      ["create", "secrets"],
      ["delete", "secrets"],
    ] as const) {
      expect(
        `${verb} ${resource}: ${await can("modelship-controller", verb, resource, BUILDS)}`,
      ).toBe(`${verb} ${resource}: yes`);
    }
    expect(await can("modelship-controller", "create", "jobs.batch")).toBe("no");
    expect(await can("modelship-controller", "list", "secrets", BUILDS)).toBe("no");
    expect(await can("modelship-controller", "update", "leases.coordination.k8s.io/other")).toBe(
      "no",
    );
    for (const [verb, resource] of [
      ["patch", "modelrepositories.modelship.dev"],
      ["patch", "modeldeployments.modelship.dev/status"],
      ["delete", "modelbuilds.modelship.dev"],
      ["patch", "deployments.apps"],
      ["delete", "services"],
      ["create", "events"],
      ["patch", "events"],
      ["update", "leases.coordination.k8s.io/modelship-controller"],
      ["update", "configmaps/modelship-state"],
      ["patch", "secrets/modelship-keys"],
      ["watch", "secrets"],
      ["delete", "secrets"],
      ["create", "networkpolicies.networking.k8s.io"],
      ["delete", "networkpolicies.networking.k8s.io"],
    ] as const) {
      expect(`${verb} ${resource}: ${await can("modelship-controller", verb, resource)}`).toBe(
        `${verb} ${resource}: yes`,
      );
    }
    // The gateway only reads, and no Secret but the keys.
    expect(await can("modelship-gateway", "patch", "deployments.apps")).toBe("no");
    expect(await can("modelship-gateway", "get", "secrets/other")).toBe("no");
    expect(await can("modelship-gateway", "list", "secrets")).toBe("no");
  }, 90_000);

  it("rolls a code change out as build 2 in a new ReplicaSet, and git revert back to build 1 with no new Job", async () => {
    commit({ "score.py": score(2) }, "scorer, version 2");
    await deployedBuild(2);
    expect(await jobNames()).toEqual([jobOf("scorer", 1), jobOf("scorer", 2)]);
    const replicaSets = async () =>
      (await getJson("replicasets", "-l", "modelship.dev/deployment=scorer")).items.length;
    expect(await replicaSets()).toBe(2);
    const image = async (build: number) =>
      (await getJson("modelbuild", `scorer-${build}`)).status.image;
    const running = async () =>
      (await getJson("deployment", "scorer")).spec.template.spec.containers[0].image;
    expect(await running()).toBe(await image(2));

    git("revert", "--no-edit", "HEAD");
    await deployedBuild(1);
    expect(await running()).toBe(await image(1));
    expect(await jobNames()).toEqual([jobOf("scorer", 1), jobOf("scorer", 2)]);
    expect((await getJson("modelbuilds", "-l", "modelship.dev/model=scorer")).items).toHaveLength(
      2,
    );
  }, 240_000);

  it("restarts every replica with `modelship rollout restart --kubernetes`, and a sync keeps the restart", async () => {
    const before = await getJson("modeldeployment", "scorer");
    const replicaSets = async () =>
      (await getJson("replicasets", "-l", "modelship.dev/deployment=scorer")).items.length;
    const setsBefore = await replicaSets();
    // Run as a user runs it, without blocking the controller that runs in this process.
    const restarted = await execFileAsync(
      process.execPath,
      [
        join(PROJECT_ROOT, "bin", "modelship.js"),
        ...["rollout", "restart", "scorer", "--kubernetes"],
        ...["--kubeconfig", cluster.kubeconfigPath, "-n", NAMESPACE],
      ],
      { encoding: "utf8" },
    );
    expect(restarted.stdout).toContain("modeldeployment.modelship.dev/scorer restarted");
    await eventually(async () => {
      const status = await deployment();
      const id = (await getJson("modeldeployment", "scorer")).status?.deploymentId;
      return status.phase === "Deployed" && id !== before.status.deploymentId;
    }, 120_000);
    const after = await getJson("modeldeployment", "scorer");
    expect(after.status.build).toBe(before.status.build);
    expect(after.metadata.annotations["modelship.dev/restartedAt"]).toMatch(/^\d{4}-/);
    // A new template, so a new ReplicaSet: every pod replaced, by the Deployment's own rollout.
    expect(await replicaSets()).toBe(setsBefore + 1);

    // A commit that does not declare the annotation leaves it, and the rollout, as they are.
    const head = commit({}, "an empty commit: a sync with nothing new");
    await eventually(
      async () =>
        (await getJson("modelrepository", "models")).status?.lastSyncedCommit === head &&
        (await getJson("modeldeployment", "scorer")).metadata.annotations?.[
          "modelship.dev/commit"
        ] === head,
      60_000,
    );
    const synced = await getJson("modeldeployment", "scorer");
    expect(synced.metadata.annotations["modelship.dev/restartedAt"]).toBe(
      after.metadata.annotations["modelship.dev/restartedAt"],
    );
    expect(synced.status.deploymentId).toBe(after.status.deploymentId);
  }, 240_000);

  it("applies nothing from a malformed manifest, and says why on the ModelRepository", async () => {
    const bad = commit({ "model.yaml": MANIFEST.replace("REPLICAS", "three") }, "a typo");
    await eventually(
      async () => (await getJson("modelrepository", "models")).status?.lastAttemptedCommit === bad,
      60_000,
    );
    const status = (await getJson("modelrepository", "models")).status;
    expect(status.lastSyncedCommit).not.toBe(bad);
    expect(status.lastSyncError).toContain(
      "model.yaml:16:13: ModelDeployment/scorer /spec/replicas",
    );
    expect(await kubectl("get", "modelrepositories", "-n", NAMESPACE)).toMatch(
      /^models\s+\S+\s+main\s+[0-9a-f]+\s+False\s+/m,
    );
    expect((await getJson("modeldeployment", "scorer")).spec.replicas).toBe(3);
    git("revert", "--no-edit", "HEAD");
    await eventually(
      async () =>
        (await getJson("modelrepository", "models")).status?.lastSyncedCommit ===
        git("rev-parse", "HEAD"),
      60_000,
    );
  }, 120_000);

  it("stalls on a failed build: kubectl wait for Ready fails, for Stalled it returns at once, with the reason", async () => {
    // The scorer's own file, and a manifest (manifests are not part of a build): the scorer's
    // build stays as it is.
    const broken = MANIFEST.replaceAll("scorer", "broken").replace("REPLICAS", "1");
    commit({ "broken.yaml": broken }, "a model whose build fails");
    await eventually(() => exists("md", "broken"), 30_000);
    const stalled = await cluster.kubectlAsync([
      "wait",
      "--for=condition=Stalled",
      "modeldeployment/broken",
      "-n",
      NAMESPACE,
      "--timeout=90s",
    ]);
    expect([stalled.status, stalled.stderr]).toEqual([0, ""]);
    const started = Date.now();
    const ready = await cluster.kubectlAsync([
      "wait",
      "--for=condition=Ready",
      "modeldeployment/broken",
      "-n",
      NAMESPACE,
      "--timeout=5s",
    ]);
    expect(ready.status).not.toBe(0);
    expect(ready.stderr).toContain("timed out waiting for the condition");
    expect(Date.now() - started).toBeLessThan(30_000);
    const conditions = (await getJson("modeldeployment", "broken")).status.conditions as {
      type: string;
    }[];
    const condition = (type: string) => conditions.find((item) => item.type === type);
    expect(condition("Ready")).toMatchObject({ status: "False", reason: "BuildFailed" });
    expect(condition("Stalled")).toMatchObject({
      status: "True",
      reason: "BuildFailed",
      message: expect.stringContaining(`build 1 failed: build Job ${jobOf("broken", 1)} failed`),
    });
    expect(condition("Reconciling")).toBeUndefined();
    expect((await getJson("modeldeployment", "scorer")).status.phase).toBe("Deployed");
    git("revert", "--no-edit", "HEAD");
    await eventually(async () => !(await exists("md", "broken")), 60_000);
  }, 180_000);

  it("lets one controller lead at a time, through the Lease", async () => {
    const client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
    const options = { namespace: NAMESPACE, name: "test-lease", leaseSeconds: 2, renewSeconds: 1 };
    const first = new LeaderElector(client, { ...options, identity: "first" });
    const second = new LeaderElector(client, { ...options, identity: "second" });
    expect(await first.tryAcquire()).toBe(true);
    expect(await second.tryAcquire()).toBe(false);
    expect(await first.tryAcquire()).toBe(true);
    // The first stops renewing; once the lease has expired, the second takes it.
    await eventually(() => second.tryAcquire(), 10_000);
    expect(await first.tryAcquire()).toBe(false);
    const lease = await getJson("lease", "test-lease");
    expect(lease.spec).toMatchObject({ holderIdentity: "second", leaseTransitions: 1 });
  }, 30_000);

  it("scales a ModelDeployment: git's replicas win; without them the scale subresource owns them; stopped keeps the Deployment at 0", async () => {
    // The scorer's code under another name: only a manifest is added, so no build of the
    // scorer changes. Its ModelDeployment leaves replicas to the scale subresource.
    const elastic = (extra = "") =>
      MANIFEST.replaceAll("scorer", "elastic").replace("  replicas: REPLICAS\n", extra);
    commit({ "elastic.yaml": elastic() }, "elastic: replicas left to kubectl scale");
    await eventually(
      async () =>
        (await exists("md", "elastic")) && (await getJson("md", "elastic")).status?.ready === "1/1",
      60_000,
    );
    expect((await getJson("md", "elastic")).status.selector).toBe(
      "modelship.dev/deployment=elastic",
    );

    await kubectl("scale", "md/elastic", "-n", NAMESPACE, "--replicas=2");
    await eventually(
      async () => (await getJson("deployment", "elastic")).spec.replicas === 2,
      30_000,
    );
    await eventually(async () => (await getJson("md", "elastic")).status?.ready === "2/2", 30_000);
    // Three intervals of syncing leave it be: git does not say how many.
    await new Promise((resolve) => setTimeout(resolve, 3 * 2000));
    expect((await getJson("md", "elastic")).spec.replicas).toBe(2);
    const scale = JSON.parse(
      await kubectl(
        "get",
        "--raw",
        `/apis/modelship.dev/v1alpha1/namespaces/${NAMESPACE}/modeldeployments/elastic/scale`,
      ),
    );
    expect(scale).toMatchObject({ kind: "Scale", spec: { replicas: 2 }, status: { replicas: 2 } });

    // The scorer's git says 3: a scale is put back at the next sync.
    await kubectl("scale", "md/scorer", "-n", NAMESPACE, "--replicas=2");
    await eventually(async () => (await getJson("md", "scorer")).spec.replicas === 3, 20_000);

    commit({ "elastic.yaml": elastic("  stopped: true\n") }, "elastic: stopped");
    await eventually(async () => {
      const workload = await getJson("deployment", "elastic");
      return workload.spec.replicas === 0 && (workload.status.replicas ?? 0) === 0;
    }, 60_000);
    expect((await getJson("md", "elastic")).status.phase).toBe("Stopped");
    // The Deployment and its history stay: `kubectl rollout undo` still has something to undo.
    expect(
      (await getJson("replicasets", "-l", "modelship.dev/deployment=elastic")).items.length,
    ).toBeGreaterThan(0);
    // A hand scale of a stopped model is taken away again.
    await kubectl("scale", "deployment/elastic", "-n", NAMESPACE, "--replicas=1");
    await eventually(
      async () => (await getJson("deployment", "elastic")).spec.replicas === 0,
      90_000,
    );

    commit({ "elastic.yaml": elastic() }, "elastic: started again");
    await eventually(async () => (await getJson("md", "elastic")).status?.ready === "2/2", 60_000);
    git("rm", "-q", "elastic.yaml");
    git("commit", "-q", "-m", "elastic: gone");
    await eventually(async () => !(await exists("deployment", "elastic")), 60_000);
    await deployedBuild(1);
  }, 300_000);

  it("reads a repository's git token at each fetch: a rotated Secret is used without a restart, and reaches builds only through a Secret of their own", async () => {
    const projectRoot = join(root, "served");
    const served = join(projectRoot, "models");
    execFileSync("git", ["init", "-q", "-b", "main", served], { env: GIT_ENV });
    const manifest = MANIFEST.split("---\n")[0]?.replaceAll("scorer", "fetched") ?? "";
    let head = commitAll(served, GIT_ENV, "fetched", {
      "score.py": score(1),
      "model.yaml": manifest,
    });
    const server = await serveGit(projectRoot);
    const basic = (token: string) =>
      `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
    const setToken = (token: string) =>
      cluster.kubectl(
        ["apply", "-n", NAMESPACE, "-f", "-"],
        JSON.stringify({
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: "git-token" },
          stringData: { token },
        }),
      );
    const synced = async () => (await getJson("modelrepository", "remote")).status ?? {};
    try {
      server.requireAuthorization = basic("ghs_first");
      expect(setToken("ghs_first").status).toBe(0);
      const repository = {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelRepository",
        metadata: { name: "remote", namespace: NAMESPACE },
        spec: {
          url: `${server.url}/models`,
          branch: "main",
          interval: "2s",
          secretRef: { name: "git-token" },
        },
      };
      expect(cluster.kubectl(["apply", "-f", "-"], JSON.stringify(repository)).status).toBe(0);
      await eventually(async () => (await synced()).lastSyncedCommit === head, 60_000);

      // The build got the token through a Secret made for it, in the build namespace, gone
      // once the build ended.
      await eventually(
        async () =>
          (await exists("modelbuild", "fetched-1")) &&
          (await getJson("modelbuild", "fetched-1")).status?.phase === "Succeeded",
        60_000,
      );
      const job = await getJson("job", "-n", BUILDS, jobOf("fetched", 1));
      expect(
        job.spec.template.spec.initContainers[0].env.map(
          (variable: { valueFrom: { secretKeyRef: { name: string } } }) =>
            variable.valueFrom.secretKeyRef.name,
        ),
      ).toEqual([`${jobOf("fetched", 1)}-git`, `${jobOf("fetched", 1)}-git`]);
      await eventually(
        async () =>
          !(
            await cluster.kubectlAsync([
              "get",
              "secret",
              "-n",
              BUILDS,
              `${jobOf("fetched", 1)}-git`,
            ])
          ).stdout,
        30_000,
      );

      // The server now takes only a new token; git has a new commit.
      server.requireAuthorization = basic("ghs_second");
      head = commitAll(served, GIT_ENV, "fetched, version 2", { "score.py": score(2) });
      await eventually(async () => ((await synced()).lastSyncError ?? "").includes("401"), 30_000);
      expect((await synced()).lastSyncedCommit).not.toBe(head);

      expect(setToken("ghs_second").status).toBe(0);
      await eventually(async () => (await synced()).lastSyncedCommit === head, 30_000);
      const everything =
        JSON.stringify(await getJson("modelrepository", "remote")) +
        JSON.stringify(await getJson("events"));
      expect(everything).not.toContain("ghs_first");
      expect(everything).not.toContain("ghs_second");
    } finally {
      await kubectl(
        "delete",
        "modelrepository",
        "remote",
        "-n",
        NAMESPACE,
        "--wait=true",
        "--timeout=60s",
      );
      await server.close();
    }
  }, 240_000);

  it("runs as `modelship controller` in twos: both ready, one leads, a webhook on the standby makes the leader fetch", async () => {
    const namespace = "modelship-ha";
    await kubectl("create", "namespace", namespace);
    const haRepo = join(root, "ha-repo");
    execFileSync("git", ["init", "-q", "-b", "main", haRepo], { env: GIT_ENV });
    const first = commitAll(haRepo, GIT_ENV, "nothing yet", { "README.md": "soon\n" });
    const repository = `apiVersion: modelship.dev/v1alpha1
kind: ModelRepository
metadata:
  name: ha
  namespace: ${namespace}
spec:
  url: ${haRepo}
  branch: main
  interval: 1h
`;
    expect(cluster.kubectl(["apply", "-f", "-"], repository).status).toBe(0);
    const start = (name: string) =>
      startCli([
        "controller",
        ...["--kubeconfig", cluster.kubeconfigPath, "--namespace", namespace],
        ...["--port", "0", "--host", "127.0.0.1", "--cache-dir", join(root, `cache-${name}`)],
      ]);
    const controllers = [await start("a"), await start("b")];
    const statusOf = async (url: string, path: string) => (await fetch(`${url}${path}`)).status;
    try {
      for (const controller of controllers) {
        expect(await statusOf(controller.url, "/healthz")).toBe(200);
        // Ready means healthy: the standby too, or a Deployment of two never becomes Available.
        await eventually(async () => (await statusOf(controller.url, "/readyz")) === 200, 30_000);
      }
      await eventually(
        async () =>
          (await Promise.all(controllers.map((c) => statusOf(c.url, "/leaderz")))).filter(
            (status) => status === 200,
          ).length === 1,
        30_000,
      );
      const leading = await Promise.all(controllers.map((c) => statusOf(c.url, "/leaderz")));
      const leader = controllers[leading.indexOf(200)] as (typeof controllers)[number];
      const standby = controllers[leading.indexOf(503)] as (typeof controllers)[number];
      expect(await (await fetch(`${leader.url}/metrics`)).text()).toMatch(
        /^modelship_controller_leader 1$/m,
      );
      expect(await (await fetch(`${standby.url}/metrics`)).text()).toMatch(
        /^modelship_controller_leader 0$/m,
      );
      const synced = async () =>
        JSON.parse(await kubectl("get", "modelrepository", "ha", "-n", namespace, "-o", "json"))
          .status?.lastSyncedCommit;
      await eventually(async () => (await synced()) === first, 30_000);

      // The interval is an hour: only the webhook, answered by the standby, brings this in.
      const second = commitAll(haRepo, GIT_ENV, "still nothing", { "README.md": "later\n" });
      const hook = await fetch(`${standby.url}/hooks/git`, { method: "POST" });
      expect([hook.status, await hook.text()]).toEqual([
        202,
        "asked the leader to fetch 1 repositories",
      ]);
      await eventually(async () => (await synced()) === second, 30_000);

      // The leader stops: it gives the lease up, and the standby takes over at once.
      expect(await leader.stop()).toBe(0);
      await eventually(async () => (await statusOf(standby.url, "/leaderz")) === 200, 30_000);
    } finally {
      for (const controller of controllers) await controller.stop();
    }
  }, 120_000);

  it("installs the production overlay under Pod Security, and `kubectl rollout restart` of its two controllers completes", async () => {
    const overlay = join(PROJECT_ROOT, "kustomize/overlays/production");
    const rolledOut = () =>
      kubectl("rollout", "status", "deploy/modelship-controller", "-n", NAMESPACE, "--timeout=90s");
    await kubectl("apply", "-k", overlay);
    await rolledOut();
    await kubectl("rollout", "restart", "deploy/modelship-controller", "-n", NAMESPACE);
    // kwok marks pods Ready without running them: this shows the rollout's mechanics and that
    // `restricted` admits the pods; that a standby passes readiness is shown with real
    // processes in the test before.
    await rolledOut();
    const controller = await getJson("deployment", "modelship-controller");
    expect(controller.status).toMatchObject({ replicas: 2, updatedReplicas: 2, readyReplicas: 2 });
    expect(await eventsWithReason(NAMESPACE, "FailedCreate")).toEqual([]);
  }, 180_000);

  it("follows a ModelRepository in a second watched namespace, with the rights one RoleBinding there gives", async () => {
    await kubectl("create", "namespace", TEAM);
    // What docs/kubernetes.md says to apply for each namespace to follow.
    const binding = {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "modelship-controller-models", namespace: TEAM },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "modelship-controller-models",
      },
      subjects: [{ kind: "ServiceAccount", name: "modelship-controller", namespace: NAMESPACE }],
    };
    expect(cluster.kubectl(["apply", "-f", "-"], JSON.stringify(binding)).status).toBe(0);
    const can = (namespace: string, verb: string, resource: string) =>
      canI("modelship-controller", namespace, verb, resource);
    expect(await can(TEAM, "create", "deployments.apps")).toBe("yes");
    expect(await can(TEAM, "patch", "modeldeployments.modelship.dev/status")).toBe("yes");
    expect(await can("default", "create", "deployments.apps")).toBe("no");

    const teamRepo = join(root, "team-repo");
    execFileSync("git", ["init", "-q", "-b", "main", teamRepo], { env: GIT_ENV });
    commitAll(teamRepo, GIT_ENV, "team scorer", {
      "score.py": score(7),
      "model.yaml": MANIFEST.replaceAll("scorer", "teamscore").replace("REPLICAS", "1"),
    });
    const repository = {
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelRepository",
      metadata: { name: "team", namespace: TEAM },
      spec: { url: teamRepo, branch: "main", interval: "2s" },
    };
    expect(cluster.kubectl(["apply", "-f", "-"], JSON.stringify(repository)).status).toBe(0);
    const teamDeployment = async () =>
      (await cluster.kubectlAsync(["get", "md", "teamscore", "-n", TEAM, "-o", "json"])).stdout;
    await eventually(async () => {
      const text = await teamDeployment();
      return text !== "" && JSON.parse(text).status?.phase === "Deployed";
    }, 90_000);
    // Its workload is in its own namespace; its build ran where builds run, named for both.
    const workload = JSON.parse(
      await kubectl("get", "deployment", "teamscore", "-n", TEAM, "-o", "json"),
    );
    expect(workload.metadata.labels["app.kubernetes.io/managed-by"]).toBe("modelship");
    expect(await exists("deployment", "teamscore")).toBe(false);
    const job = JSON.parse(
      await kubectl("get", "job", jobOf("teamscore", 1, TEAM), "-n", BUILDS, "-o", "json"),
    );
    expect(job.metadata.labels["modelship.dev/build-namespace"]).toBe(TEAM);
    // Only the gateway reaches it, from the installation's namespace.
    const policy = JSON.parse(
      await kubectl("get", "networkpolicy", "teamscore", "-n", TEAM, "-o", "json"),
    );
    expect(policy.spec.ingress[0].from).toEqual([
      {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": NAMESPACE } },
        podSelector: { matchLabels: { "app.kubernetes.io/name": "modelship-gateway" } },
      },
    ]);
  }, 180_000);

  it("restarted in the middle of a build, makes no second Job and skips no build number", async () => {
    commit({ "score.py": score(3) }, "scorer, version 3");
    await eventually(async () => (await jobNames()).includes(jobOf("scorer", 3)), 60_000);
    await stopController();
    await startController();
    await deployedBuild(3);
    expect(await jobNames()).toEqual([jobOf("scorer", 1), jobOf("scorer", 2), jobOf("scorer", 3)]);
    const builds = (await getJson("modelbuilds", "-l", "modelship.dev/model=scorer")).items.map(
      (build: { spec: { number: number } }) => build.spec.number,
    );
    expect(builds.sort()).toEqual([1, 2, 3]);
  }, 240_000);
});
