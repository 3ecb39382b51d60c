// The control loop's shared behaviour (test/helpers/control-loop.ts) on the Kubernetes
// platform: a real control plane (kwok plays the nodes, so build pods succeed without running,
// and the Model "broken"'s fail, see test/k8s/stages/pod-fail-build.yaml), the controller in this
// process, and every hand edit made as an operator makes it: with kubectl. Reads come from the
// controller's own caches, which follow the API server.
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll } from "vitest";
import type { Kind } from "../controller/api/schemas.ts";
import { KubeClient, loadKubeConfig, PLURALS } from "../controller/platform/kubernetes/client.ts";
import { KubernetesPlatform } from "../controller/platform/kubernetes/platform.ts";
import { DEFAULT_SETTINGS } from "../controller/platform/kubernetes/settings.ts";
import { ControllerMetrics } from "../controller/reconcile/metrics.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";
import { controlLoopSuite, type EventSeen } from "./helpers/control-loop.ts";
import { modelRepositoryJson } from "./helpers/manifests.ts";
import { startCluster, type TestCluster } from "./k8s/cluster.ts";

const NAMESPACE = "loop";
const log: string[] = [];
let cluster: TestCluster;
let platform: KubernetesPlatform | undefined;

const kubectl = (...args: string[]) => cluster.kubectlOk(args);

const resource = (kind: Kind) => `${PLURALS[kind]}.modelship.dev`;

beforeAll(async () => {
  cluster = await startCluster({ nodes: 1 });
  kubectl("apply", "-f", join(PROJECT_ROOT, "crds"));
  kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s");
  kubectl("create", "namespace", NAMESPACE);
  // Where build Jobs run (the installation makes it: kustomize/base/namespace.yaml).
  kubectl("create", "namespace", DEFAULT_SETTINGS.buildNamespace);
}, 180_000);

afterAll(async () => {
  await platform?.stop();
  await cluster?.stop();
  if (process.env.MODELSHIP_TEST_DEBUG) console.log(log.join("\n"));
}, 60_000);

controlLoopSuite("kubernetes", {
  namespace: NAMESPACE,
  repository: "loop",
  buildTimeoutMs: 60_000,
  async start(repo, interval) {
    const created = cluster.kubectl(
      ["apply", "-f", "-"],
      modelRepositoryJson({ name: "loop", namespace: NAMESPACE, url: repo, interval }),
    );
    if (created.status !== 0) throw new Error(`kubectl apply: ${created.stderr}`);
    platform = new KubernetesPlatform({
      client: new KubeClient(loadKubeConfig(cluster.kubeconfigPath)),
      settings: { ...DEFAULT_SETTINGS, namespace: NAMESPACE, registry: "registry.test:5000" },
      cacheDir: join(cluster.dir, "git-cache"),
      metrics: new ControllerMetrics(new Registry()),
      log: (line) => log.push(line),
      reconcile: { deploymentResyncMs: 2000 },
    });
    await platform.start();
  },
  async stop() {
    await platform?.stop();
    platform = undefined;
  },
  get: (kind, name) => platform?.store.get(kind, NAMESPACE, name),
  list: (kind) => platform?.store.list(kind, NAMESPACE) ?? [],
  async editSpec(kind, name, spec) {
    kubectl(
      "patch",
      resource(kind),
      name,
      "-n",
      NAMESPACE,
      "--type=merge",
      "-p",
      JSON.stringify({ spec }),
    );
  },
  async remove(kind, name) {
    kubectl("delete", resource(kind), name, "-n", NAMESPACE, "--wait=false");
  },
  async create(object) {
    const result = cluster.kubectl(["create", "-f", "-"], JSON.stringify(object));
    if (result.status !== 0) throw new Error(`kubectl create: ${result.stderr}`);
  },
  events(kind, name): EventSeen[] {
    const list = JSON.parse(
      kubectl(
        "get",
        "events",
        "-n",
        NAMESPACE,
        `--field-selector=involvedObject.kind=${kind},involvedObject.name=${name}`,
        "-o",
        "json",
      ),
    ) as { items: EventSeen[] };
    return list.items.map(({ type, reason, message }) => ({ type, reason, message }));
  },
});
