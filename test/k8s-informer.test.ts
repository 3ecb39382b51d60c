// The Kubernetes platform's informer (controller/platform/kubernetes/informer.ts) against a real
// control plane: list and watch, the server's watch timeout, periodic relists beside a running
// watch, 410 Gone, an API server outage, and stop() closing its socket.
// Needs the binaries from `bash test/k8s/build-binaries.sh`; see docs/k8s-test-cluster.md.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubeClient, loadKubeConfig } from "../controller/platform/kubernetes/client.ts";
import {
  type Change,
  Informer,
  type InformerTimings,
  type KubeObject,
} from "../controller/platform/kubernetes/informer.ts";
import { eventually } from "./helpers/replica.ts";
import { startCluster, type TestCluster, UNCACHED_RESOURCE } from "./k8s/cluster.ts";
import { connectionsTo } from "./k8s/sockets.ts";

const NAMESPACE = "informer-test";
const SELECTOR = "test.modelship.dev/informer=yes";
const CONFIGMAPS = `/api/v1/namespaces/${NAMESPACE}/configmaps`;

let cluster: TestCluster;
let client: KubeClient;

beforeAll(async () => {
  cluster = await startCluster({ nodes: 0 });
  client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
  cluster.kubectlOk(["create", "namespace", NAMESPACE]);
}, 240_000);

afterAll(async () => {
  client?.close();
  await cluster?.stop();
}, 60_000);

function configMap(name: string, data: Record<string, string>, labelled = true): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name,
      namespace: NAMESPACE,
      labels: labelled ? { "test.modelship.dev/informer": "yes" } : { other: "x" },
    },
    data,
  });
}

function apply(name: string, data: Record<string, string>, labelled = true): void {
  cluster.kubectlOk(["apply", "-f", "-"], configMap(name, data, labelled));
}

function remove(name: string): void {
  cluster.kubectlOk(["delete", "configmap", "-n", NAMESPACE, name, "--wait=false"]);
}

/** The labelled ConfigMaps as the API server has them now: name → data.v. */
function listed(): Record<string, string | undefined> {
  const items = JSON.parse(
    cluster.kubectlOk(["get", "configmaps", "-n", NAMESPACE, "-l", SELECTOR, "-o", "json"]),
  ).items as { metadata: { name: string }; data?: { v?: string } }[];
  return Object.fromEntries(items.map((item) => [item.metadata.name, item.data?.v]));
}

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

function cached(informer: Informer<ConfigMap>): Record<string, string | undefined> {
  return Object.fromEntries(
    informer
      .list(NAMESPACE)
      .map((object) => [object.metadata.name, object.data?.v] as const)
      .sort(([a], [b]) => a.localeCompare(b)),
  );
}

/** An informer of the labelled ConfigMaps, its changes and its log lines. */
function follow(
  timings: Partial<InformerTimings>,
  { path = CONFIGMAPS, resource = "test ConfigMaps", own = client } = {},
) {
  const log: string[] = [];
  const changes: Change<ConfigMap>[] = [];
  const informer = new Informer<ConfigMap>({
    client: own,
    path,
    resource,
    labelSelector: SELECTOR,
    log: (line) => log.push(line),
    timings,
  });
  informer.onChange((change) => changes.push(change));
  const seen = (type: Change<ConfigMap>["type"], name: string) =>
    changes.filter((change) => change.type === type && change.object.metadata.name === name).length;
  return { informer, log, changes, seen };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("Informer on a real API server", () => {
  it("fills its cache from a list, then sees adds, updates and deletes of matching objects only", async () => {
    apply("before", { v: "1" });
    apply("unlabelled", { v: "1" }, false);
    const { informer, seen } = follow({});
    await informer.start();
    try {
      expect(cached(informer)).toEqual({ before: "1" });
      expect(seen("add", "before")).toBe(1);

      apply("later", { v: "1" });
      await eventually(() => informer.get(NAMESPACE, "later") !== undefined);
      apply("later", { v: "2" });
      await eventually(() => informer.get(NAMESPACE, "later")?.data?.v === "2");
      expect(seen("update", "later")).toBe(1);
      // Losing the label is a delete for a watch with a selector.
      apply("before", { v: "1" }, false);
      await eventually(() => informer.get(NAMESPACE, "before") === undefined);
      remove("later");
      await eventually(() => seen("delete", "later") === 1);
      expect(informer.get(NAMESPACE, "unlabelled")).toBeUndefined();
      expect(cached(informer)).toEqual(listed());
      expect(informer.stats).toMatchObject({ lists: 1, restarts: 0, expiredRelists: 0 });
    } finally {
      await informer.stop();
      remove("before");
      remove("unlabelled");
    }
  }, 30_000);

  it("resumes a watch the server ended (its timeoutSeconds) with no list and no log line", async () => {
    const { informer, log, seen } = follow({ watchTimeoutSeconds: { min: 1, max: 1 } });
    await informer.start();
    try {
      await sleep(4500);
      apply("after-timeouts", { v: "1" });
      await eventually(() => seen("add", "after-timeouts") === 1);
      expect(informer.stats.watchTimeouts).toBeGreaterThanOrEqual(3);
      expect(informer.stats.watches).toBe(informer.stats.watchTimeouts + 1);
      expect(informer.stats).toMatchObject({ lists: 1, restarts: 0, expiredRelists: 0 });
      expect(log).toEqual([]);
    } finally {
      await informer.stop();
      remove("after-timeouts");
    }
  }, 30_000);

  it("lists every 2 s beside one running watch for 30 s: no restart, no missed or doubled event", async () => {
    // One watch for the whole test; quiet for the last 17 s, longer than the client's idle
    // socket timeout, which must not cut a watch that is merely quiet.
    const { informer, log, seen } = follow({
      relistIntervalMs: 2000,
      watchTimeoutSeconds: { min: 120, max: 120 },
    });
    await informer.start();
    const names: string[] = [];
    try {
      for (let i = 0; i < 12; i++) {
        const name = `busy-${i}`;
        names.push(name);
        apply(name, { v: "1" });
        apply(name, { v: "2" });
        if (i % 3 === 0) remove(name);
        await sleep(1000);
      }
      await sleep(17_000);
      apply("last", { v: "1" });
      await eventually(() => informer.get(NAMESPACE, "last") !== undefined);
      expect(cached(informer)).toEqual(listed());
      for (const name of names) {
        expect(seen("add", name), name).toBe(1);
        expect(seen("delete", name), name).toBe(names.indexOf(name) % 3 === 0 ? 1 : 0);
      }
      expect(informer.stats.lists).toBeGreaterThanOrEqual(13);
      expect(informer.stats).toMatchObject({ watches: 1, restarts: 0, expiredRelists: 0 });
      expect(log).toEqual([]);
    } finally {
      await informer.stop();
      for (const name of [...names, "last"]) {
        cluster.kubectlOk([
          "delete",
          "configmap",
          "-n",
          NAMESPACE,
          name,
          "--ignore-not-found",
          "--wait=false",
        ]);
      }
    }
  }, 60_000);

  it("lists again when its resourceVersion has expired (410 Gone), and goes on watching", async () => {
    // PodTemplates have no watch cache on the test cluster: compacting etcd expires the
    // resourceVersion the next watch resumes from.
    const path = `/api/v1/namespaces/${NAMESPACE}/${UNCACHED_RESOURCE}`;
    const template = (name: string) =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "PodTemplate",
        metadata: { name, namespace: NAMESPACE, labels: { "test.modelship.dev/informer": "yes" } },
        template: { spec: { containers: [{ name: "c", image: "registry.invalid/x:1" }] } },
      });
    cluster.kubectlOk(["apply", "-f", "-"], template("first"));
    const { informer, log, seen } = follow(
      { watchTimeoutSeconds: { min: 1, max: 1 } },
      { path, resource: "PodTemplates" },
    );
    await informer.start();
    try {
      // etcd's revision moves on (writes the informer does not watch), the informer's stays
      // where it listed. A watch from revision R starts at R + 1: two writes and a compaction
      // to the newest revision make it expire.
      apply("elsewhere", { v: "1" }, false);
      apply("elsewhere", { v: "2" }, false);
      await cluster.compactEtcd();
      await eventually(() => informer.stats.expiredRelists === 1, 10_000);
      expect(log).toEqual([expect.stringMatching(/^watch of PodTemplates: .*; listing again$/)]);
      cluster.kubectlOk(["apply", "-f", "-"], template("second"));
      await eventually(() => seen("add", "second") === 1);
      expect(seen("add", "first")).toBe(1);
      expect(informer.stats).toMatchObject({ lists: 2, restarts: 0 });
    } finally {
      await informer.stop();
      cluster.kubectlOk(["delete", "podtemplates", "-n", NAMESPACE, "--all", "--wait=false"]);
      remove("elsewhere");
    }
  }, 30_000);

  it("stop() aborts the running watch at once and leaves no connection to the API server", async () => {
    const port = Number(new URL(cluster.server).port);
    const own = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
    const before = new Set(connectionsTo(port));
    const { informer } = follow({}, { own });
    await informer.start();
    await sleep(300);
    const during = connectionsTo(port).filter((local) => !before.has(local));
    expect(during.length).toBeGreaterThanOrEqual(1);
    const started = Date.now();
    await informer.stop();
    expect(Date.now() - started).toBeLessThan(200);
    // The descriptor is closed on the next turns of the event loop.
    await eventually(
      () => connectionsTo(port).filter((local) => !before.has(local)).length === 0,
      1000,
    );
    own.close();
  }, 30_000);

  it("rides out an API server outage: bounded restarts with backoff, then sees later changes", async () => {
    const { informer, log, seen } = follow({ backoff: { initialMs: 500, maxMs: 30_000 } });
    await informer.start();
    try {
      await cluster.stopApiServer();
      const down = Date.now();
      await sleep(15_000);
      await cluster.startApiServer();
      const outage = Date.now() - down;
      apply("after-outage", { v: "1" });
      await eventually(() => seen("add", "after-outage") === 1, 40_000);
      const restarts = log.filter((line) => /^watch of test ConfigMaps broke/.test(line));
      // 0.5 + 1 + 2 + 4 + 8 + 16 s: at most six retries fit in the outage and the recovery.
      expect(restarts.length).toBeGreaterThanOrEqual(2);
      expect(restarts.length).toBeLessThanOrEqual(Math.ceil(Math.log2(outage / 500 + 1)) + 1);
      const waits = restarts.map((line) => Number(/in (\d+) ms/.exec(line)?.[1]));
      expect(waits).toEqual([...waits].sort((a, b) => a - b));
      expect(waits[0]).toBe(500);
      expect(informer.stats.restarts).toBe(restarts.length);
      // Healthy again: no more restarts.
      const settled = informer.stats.restarts;
      await sleep(3000);
      expect(informer.stats.restarts).toBe(settled);
      expect(cached(informer)).toEqual(listed());
    } finally {
      await informer.stop();
    }
  }, 120_000);
});
