// The test control plane (test/k8s/cluster.ts) is a real Kubernetes: checked here with the real
// kubectl. Needs the binaries from `bash test/k8s/build-binaries.sh`; see docs/k8s-test-cluster.md.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type KubectlResult,
  NODE_IP,
  POD_CIDR,
  startCluster,
  type TestCluster,
  VERSIONS,
} from "./k8s/cluster.ts";

let cluster: TestCluster | undefined;

beforeAll(async () => {
  cluster = await startCluster({ nodes: 1 });
}, 240_000);

afterAll(async () => {
  await cluster?.stop();
}, 60_000);

function kubectl(args: string[], input?: string): KubectlResult {
  if (!cluster) throw new Error("the cluster did not start");
  return cluster.kubectl(args, input);
}

/** Runs kubectl and fails the test, with its stderr, unless it exits 0. */
function ok(args: string[], input?: string): string {
  const result = kubectl(args, input);
  if (result.status !== 0) {
    throw new Error(`kubectl ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
  }
  return result.stdout;
}

interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] };
}

interface NodeJson {
  spec: { taints?: { key: string }[] };
  status: {
    addresses: { type: string; address: string }[];
    conditions: { type: string; status: string; lastTransitionTime?: string }[];
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether an IPv4 address is in a CIDR such as 239.255.0.0/16. */
function inCidr(ip: string, cidr: string): boolean {
  const [base = "", bits = "32"] = cidr.split("/");
  const number = (address: string) =>
    address.split(".").reduce((sum, part) => sum * 256 + Number(part), 0);
  const size = 2 ** (32 - Number(bits));
  return Math.floor(number(ip) / size) === Math.floor(number(base) / size);
}

function webDeployment(replicas: number): string {
  return JSON.stringify({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web" },
    spec: {
      replicas,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        // No container runs under kwok: the image is never pulled.
        spec: { containers: [{ name: "web", image: "registry.invalid/web:1" }] },
      },
    },
  });
}

function pods(namespace: string): PodJson[] {
  return JSON.parse(ok(["get", "pods", "-n", namespace, "-l", "app=web", "-o", "json"]))
    .items as PodJson[];
}

function readyCondition(conditions: { type: string; status: string }[] | undefined): string {
  return conditions?.find((c) => c.type === "Ready")?.status ?? "missing";
}

describe("test Kubernetes cluster (etcd, kube-apiserver, controller manager, scheduler, kwok)", () => {
  it("answers /readyz through the kubeconfig (CA-verified TLS, admin token)", () => {
    const result = kubectl(["get", "--raw", "/readyz"]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe("ok");
    expect(cluster?.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it("authenticates the admin token as a member of system:masters", () => {
    const allowed = kubectl(["auth", "can-i", "*", "*", "--all-namespaces"]);
    expect(allowed.stdout.trim()).toBe("yes");
    // RBAC is really on: an unauthenticated request is refused.
    const anonymous = kubectl(["--token=not-a-token", "get", "namespaces"]);
    expect(anonymous.status).not.toBe(0);
    expect(anonymous.stderr).toMatch(/Unauthorized|must be logged in/);
  });

  it("serves the pinned Kubernetes version", () => {
    const version = JSON.parse(ok(["get", "--raw", "/version"])) as { gitVersion: string };
    expect(version.gitVersion).toBe(VERSIONS.k8s);
  });

  it("has a fake kwok node that is Ready", () => {
    const node = JSON.parse(ok(["get", "node", "kwok-node-0", "-o", "json"])) as {
      metadata: { annotations: Record<string, string> };
      status: { conditions: { type: string; status: string }[] };
    };
    expect(node.metadata.annotations["kwok.x-k8s.io/node"]).toBe("fake");
    // A loopback address: whatever dials the node (the apiserver for logs, exec) stays here.
    expect((node as unknown as NodeJson).status.addresses).toContainEqual({
      type: "InternalIP",
      address: NODE_IP,
    });
    const ready = node.status.conditions.find((c) => c.type === "Ready");
    expect(ready?.status).toBe("True");
    expect(ok(["wait", "--for=condition=Ready", "node/kwok-node-0", "--timeout=30s"])).toContain(
      "condition met",
    );
  });

  it("runs a Deployment: 2 replicas scheduled, Running and Ready; rollout status succeeds", () => {
    ok(["create", "namespace", "deploy-test"]);
    ok(["apply", "-n", "deploy-test", "-f", "-"], webDeployment(2));
    const rollout = kubectl([
      "rollout",
      "status",
      "-n",
      "deploy-test",
      "deployment/web",
      "--timeout=90s",
    ]);
    expect(rollout.status, rollout.stderr).toBe(0);
    expect(rollout.stdout).toContain('deployment "web" successfully rolled out');

    const running = pods("deploy-test");
    expect(running).toHaveLength(2);
    for (const pod of running) {
      expect(pod.spec.nodeName).toBe("kwok-node-0");
      expect(pod.status.phase).toBe("Running");
      expect(readyCondition(pod.status.conditions)).toBe("True");
      // kwok's pod IPs: an address range no TCP connection can reach (see POD_CIDR).
      expect(inCidr(pod.status.podIP ?? "", POD_CIDR), pod.status.podIP).toBe(true);
    }
    expect(new Set(running.map((pod) => pod.status.podIP)).size).toBe(2);
    const deployment = JSON.parse(
      ok(["get", "deployment", "-n", "deploy-test", "web", "-o", "json"]),
    ).status as { readyReplicas?: number; availableReplicas?: number };
    expect(deployment.readyReplicas).toBe(2);
    expect(deployment.availableReplicas).toBe(2);
  }, 120_000);

  it("completes a Job (kwok's pod-complete stage: the pod succeeds without running)", () => {
    ok(["create", "namespace", "job-test"]);
    ok(
      ["apply", "-n", "job-test", "-f", "-"],
      JSON.stringify({
        apiVersion: "batch/v1",
        kind: "Job",
        metadata: { name: "build" },
        spec: {
          backoffLimit: 0,
          template: {
            spec: {
              restartPolicy: "Never",
              containers: [{ name: "build", image: "registry.invalid/builder:1" }],
            },
          },
        },
      }),
    );
    const waited = kubectl([
      "wait",
      "-n",
      "job-test",
      "--for=condition=Complete",
      "job/build",
      "--timeout=90s",
    ]);
    expect(waited.status, waited.stderr).toBe(0);
    const job = JSON.parse(ok(["get", "job", "-n", "job-test", "build", "-o", "json"])).status as {
      succeeded?: number;
      failed?: number;
    };
    expect(job.succeeded).toBe(1);
    expect(job.failed ?? 0).toBe(0);
    const pods = JSON.parse(ok(["get", "pods", "-n", "job-test", "-o", "json"])).items as PodJson[];
    expect(pods.map((pod) => pod.status.phase)).toEqual(["Succeeded"]);
  }, 120_000);

  it("serves a new CRD: created, established, and described by kubectl explain", async () => {
    const description = "A Gadget is a tiny test resource of the modelship test cluster.";
    ok(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: "gadgets.test.modelship.dev" },
        spec: {
          group: "test.modelship.dev",
          scope: "Namespaced",
          names: { plural: "gadgets", singular: "gadget", kind: "Gadget" },
          versions: [
            {
              name: "v1",
              served: true,
              storage: true,
              schema: {
                openAPIV3Schema: {
                  type: "object",
                  description,
                  properties: {
                    spec: {
                      type: "object",
                      description: "What the gadget should be.",
                      properties: { size: { type: "integer", description: "How big it is." } },
                    },
                  },
                },
              },
            },
          ],
        },
      }),
    );
    ok(["wait", "--for=condition=Established", "crd/gadgets.test.modelship.dev", "--timeout=60s"]);
    // The published OpenAPI lags the CRD's Established condition by a moment.
    let explain: KubectlResult = { status: null, stdout: "", stderr: "" };
    for (let attempt = 0; attempt < 60; attempt++) {
      explain = kubectl(["explain", "gadgets.test.modelship.dev"]);
      if (explain.status === 0 && explain.stdout.includes(description)) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(explain.status, explain.stderr).toBe(0);
    expect(explain.stdout).toContain("KIND:       Gadget");
    expect(explain.stdout).toContain(description);
    const field = ok(["explain", "gadgets.spec.size"]);
    expect(field).toContain("How big it is.");

    ok(
      ["apply", "-n", "default", "-f", "-"],
      JSON.stringify({
        apiVersion: "test.modelship.dev/v1",
        kind: "Gadget",
        metadata: { name: "g1" },
        spec: { size: 3 },
      }),
    );
    expect(ok(["get", "gadget", "g1", "-n", "default", "-o", "jsonpath={.spec.size}"])).toBe("3");
  }, 90_000);

  it("keeps the node and a Deployment's pods Ready for more than 3 minutes (kwok renews the node's Lease)", async () => {
    // Without node leases kwok refreshes a node's status only about once a minute, at the edge
    // of the node lifecycle controller's grace period: a run of the controller saw the node go
    // NotReady after about 2 minutes, tainted, and its pods evicted and replaced.
    ok(["create", "namespace", "lease-test"]);
    ok(["apply", "-n", "lease-test", "-f", "-"], webDeployment(2));
    ok(["rollout", "status", "-n", "lease-test", "deployment/web", "--timeout=90s"]);
    const node = () => JSON.parse(ok(["get", "node", "kwok-node-0", "-o", "json"])) as NodeJson;
    const readySince = () =>
      node().status.conditions.find((c) => c.type === "Ready")?.lastTransitionTime;
    const podUids = () =>
      pods("lease-test")
        .map((pod) => pod.metadata.uid)
        .sort();
    const since = readySince();
    const uids = podUids();
    const started = Date.now();
    const renewals = new Set<string>();
    while (Date.now() - started < 190_000) {
      await sleep(20_000);
      const now = node();
      expect(readyCondition(now.status.conditions), `after ${Date.now() - started} ms`).toBe(
        "True",
      );
      expect(now.spec.taints ?? []).toEqual([]);
      // Not even briefly NotReady between two looks: the condition never changed.
      expect(readySince()).toBe(since);
      renewals.add(
        ok([
          "get",
          "lease",
          "-n",
          "kube-node-lease",
          "kwok-node-0",
          "-o",
          "jsonpath={.spec.renewTime}",
        ]),
      );
    }
    expect(renewals.size).toBeGreaterThan(5);
    // The very pods of the start: none was evicted and replaced.
    expect(podUids()).toEqual(uids);
    const after = pods("lease-test");
    expect(after.map((pod) => [pod.status.phase, readyCondition(pod.status.conditions)])).toEqual([
      ["Running", "True"],
      ["Running", "True"],
    ]);
    const status = JSON.parse(ok(["get", "deployment", "-n", "lease-test", "web", "-o", "json"]))
      .status as { availableReplicas?: number };
    expect(status.availableReplicas).toBe(2);
  }, 300_000);

  it("stops the API server and starts it again on the same port, with the same certificate and data", async () => {
    ok(["create", "configmap", "-n", "default", "survivor", "--from-literal=a=b"]);
    const before = cluster?.pids["kube-apiserver"];
    await cluster?.stopApiServer();
    const down = kubectl(["get", "--raw", "/readyz", "--request-timeout=2s"]);
    expect(down.status).not.toBe(0);
    expect(down.stderr).toMatch(/connection to the server .* was refused/);
    await cluster?.startApiServer();
    expect(cluster?.pids["kube-apiserver"]).not.toBe(before);
    // The same kubeconfig: same port, and the CA in it still verifies the serving certificate.
    expect(ok(["get", "--raw", "/readyz"]).trim()).toBe("ok");
    expect(ok(["get", "configmap", "-n", "default", "survivor", "-o", "jsonpath={.data.a}"])).toBe(
      "b",
    );
  }, 120_000);
});
