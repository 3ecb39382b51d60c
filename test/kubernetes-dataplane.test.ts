// The whole path on the Kubernetes platform, with real replicas: the controller (in this process)
// builds with a Job and rolls out a Deployment on the test control plane; for each of the
// Deployment's pods the harness runs the agent the pod's image would run, with the pod's env and
// its build's source, and marks the pod Ready when the agent is (test/k8s/pod-agents.ts); the
// gateway follows EndpointSlices and calls those agents, which call real Python workers.
// Every byte goes to 127.0.0.0/8: the pods' own addresses are unroutable, and the gateway maps
// each to its agent's loopback address.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeServer, listen } from "../controller/api/http.ts";
import { Gateway } from "../controller/gateway/gateway.ts";
import { KubeClient, loadKubeConfig } from "../controller/platform/kubernetes/client.ts";
import { KubeGatewayFeed } from "../controller/platform/kubernetes/gateway-feed.ts";
import { KubernetesPlatform } from "../controller/platform/kubernetes/platform.ts";
import { DEFAULT_SETTINGS } from "../controller/platform/kubernetes/settings.ts";
import { ControllerMetrics } from "../controller/reconcile/metrics.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { modelRepositoryJson, openModelManifest } from "./helpers/manifests.ts";
import { eventually } from "./helpers/replica.ts";
import { startCluster, type TestCluster } from "./k8s/cluster.ts";
import { loopbackUrl, PodAgents } from "./k8s/pod-agents.ts";

const NAMESPACE = "models";
const BUILDS = DEFAULT_SETTINGS.buildNamespace;
const root = mkdtempSync(join(tmpdir(), "modelship-dataplane-"));
const repo = join(root, "repo");
const GIT_ENV = gitEnv({ name: "Frances Allen", email: "frances@example.com" });
const log: string[] = [];

let cluster: TestCluster;
let client: KubeClient;
let platform: KubernetesPlatform;
let agents: PodAgents;
let gateway: Gateway;
let feed: KubeGatewayFeed;
let gatewayUrl: string;

const score = (version: number) =>
  `import os\ndef predict(args):\n    return {"version": ${version}, "sum": args["a"] + args["b"], "pod": os.environ.get("POD_NAME")}\n`;

const kubectl = (...args: string[]) => cluster.kubectlOk(args);
// biome-ignore lint/suspicious/noExplicitAny: objects read from kubectl are checked field by field
const getJson = (...args: string[]): any =>
  JSON.parse(kubectl("get", "-n", NAMESPACE, ...args, "-o", "json"));

/** One call through the gateway. */
async function call(
  a: number,
  b: number,
): Promise<{ status: number; version?: number; sum?: number; pod?: string; message?: string }> {
  const response = await fetch(`${gatewayUrl}/models/scorer/predict`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ a, b }),
  });
  const body = (await response.json()) as {
    response?: { version: number; sum: number; pod: string };
    message?: string;
  };
  return {
    status: response.status,
    ...body.response,
    ...(body.message ? { message: body.message } : {}),
  };
}

const jobs = () =>
  JSON.parse(kubectl("get", "jobs", "-n", BUILDS, "-l", "modelship.dev/model=scorer", "-o", "json"))
    .items.length as number;

beforeAll(async () => {
  cluster = await startCluster({ nodes: 2, realReplicas: true });
  kubectl("apply", "-f", join(PROJECT_ROOT, "crds"));
  kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s");
  kubectl("create", "namespace", NAMESPACE);
  kubectl("create", "namespace", BUILDS);
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "scorer, version 1", {
    "score.py": score(1),
    "model.yaml": openModelManifest({
      name: "scorer",
      file: "score.py",
      function: "predict",
      replicas: 2,
    }),
  });
  client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
  agents = new PodAgents({
    client,
    namespace: NAMESPACE,
    repo,
    workDir: root,
    log: (line) => log.push(line),
  });
  await agents.start();
  platform = new KubernetesPlatform({
    client,
    settings: { ...DEFAULT_SETTINGS, namespace: NAMESPACE, registry: "registry.test:5000" },
    cacheDir: join(root, "cache"),
    metrics: new ControllerMetrics(new Registry()),
    log: (line) => log.push(line),
  });
  await platform.start();
  gateway = new Gateway();
  feed = new KubeGatewayFeed(client, NAMESPACE, gateway, (line) => log.push(line), {
    replicaUrl: loopbackUrl,
  });
  await feed.start();
  gatewayUrl = await listen(gateway.server, "127.0.0.1", 0);
}, 300_000);

afterAll(async () => {
  await feed?.stop();
  if (gateway) {
    const closed = closeServer(gateway.server);
    await gateway.close(1000);
    gateway.server.closeAllConnections();
    await closed;
  }
  await platform?.stop();
  await agents?.stop();
  client?.close();
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
  if (process.env.MODELSHIP_K8S_DEBUG) console.log(log.join("\n"));
}, 60_000);

describe("the Kubernetes platform with real replicas", () => {
  it("answers a call through the gateway from a real worker behind a pod of the Deployment", async () => {
    const created = cluster.kubectl(
      ["apply", "-f", "-"],
      modelRepositoryJson({ name: "models", namespace: NAMESPACE, url: repo, interval: "1s" }),
    );
    expect(created.status, created.stderr).toBe(0);
    await eventually(async () => {
      const status = platform.store.get("ModelDeployment", NAMESPACE, "scorer")?.status;
      return status?.phase === "Deployed" && status.ready === "2/2";
    }, 120_000);
    // The gateway knows both replicas, and the secret each one's agent was started with.
    await eventually(() => {
      const replicas = feed.config().models.find((model) => model.name === "scorer")?.replicas;
      return replicas?.length === 2 && replicas.every((replica) => replica.secret !== undefined);
    }, 10_000);
    const answer = await call(2, 3);
    expect(answer, answer.message).toMatchObject({ status: 200, version: 1, sum: 5 });
    // The answer came from a pod of the Deployment: the worker saw that pod's own env.
    const pods = getJson("pods", "-l", "modelship.dev/deployment=scorer").items.map(
      (pod: { metadata: { name: string } }) => pod.metadata.name,
    );
    expect(pods).toContain(answer.pod);
    expect(agents.started).toEqual(expect.arrayContaining(pods));
  }, 180_000);

  it("rolls a new version out under a steady caller with no failed call, then `git revert` answers the old version with no Job", async () => {
    let calls = 0;
    const failures: string[] = [];
    const versions = new Set<number>();
    let calling = true;
    const caller = (async () => {
      while (calling) {
        calls++;
        const answer = await call(calls, 1).catch((error: Error) => ({
          status: 0,
          error: error.message,
        }));
        if (answer.status !== 200) failures.push(JSON.stringify(answer));
        else if ("version" in answer && answer.version !== undefined) versions.add(answer.version);
      }
    })();
    try {
      const jobsBefore = jobs();
      commitAll(repo, GIT_ENV, "scorer, version 2", { "score.py": score(2) });
      await eventually(async () => (await call(1, 1)).version === 2, 120_000);
      await eventually(() => jobs() === jobsBefore + 1, 30_000);
      // The rollout is over once only version 2 answers.
      await eventually(async () => {
        const status = platform.store.get("ModelDeployment", NAMESPACE, "scorer")?.status;
        return status?.phase === "Deployed" && status.build === 2 && status.ready === "2/2";
      }, 120_000);

      runGit(repo, GIT_ENV, "revert", "--no-edit", "HEAD");
      await eventually(async () => (await call(1, 1)).version === 1, 120_000);
      await eventually(async () => {
        const status = platform.store.get("ModelDeployment", NAMESPACE, "scorer")?.status;
        return status?.phase === "Deployed" && status.build === 1 && status.ready === "2/2";
      }, 120_000);
      // Build 1 again, from its image: no Job was made for the revert.
      expect(jobs()).toBe(jobsBefore + 1);
    } finally {
      calling = false;
      await caller;
    }
    expect(calls).toBeGreaterThan(50);
    expect(versions).toEqual(new Set([1, 2]));
    expect(failures).toEqual([]);
  }, 420_000);
});
