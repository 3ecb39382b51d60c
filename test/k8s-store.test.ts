// KubeStore and KubeEventRecorder against a real control plane: server-side apply with owner
// references and read-your-writes, guarded finalizers, deletes with a uid precondition and
// deletes held by a finalizer, NotFound semantics, the deployment-id ConfigMap, and Events that
// count up instead of piling up.
// Needs the binaries from `bash test/k8s/build-binaries.sh`; see docs/k8s-test-cluster.md.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelRepository } from "../controller/api/types.generated.ts";
import { isNotFound } from "../controller/core/errors.ts";
import { storedMetadata } from "../controller/core/ports.ts";
import { KubeClient, loadKubeConfig } from "../controller/platform/kubernetes/client.ts";
import { KubeEventRecorder } from "../controller/platform/kubernetes/events.ts";
import { ID_CONFIG_MAP, KubeStore } from "../controller/platform/kubernetes/store.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";
import { eventually } from "./helpers/replica.ts";
import { startCluster, type TestCluster } from "./k8s/cluster.ts";

const NAMESPACE = "modelship";
const FINALIZER = "modelship.dev/finalizer";

let cluster: TestCluster;
let client: KubeClient;
let store: KubeStore;
const storeLog: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({ nodes: 0 });
  client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
  cluster.kubectlOk(["create", "namespace", NAMESPACE]);
  cluster.kubectlOk(["apply", "-f", join(PROJECT_ROOT, "crds")]);
  cluster.kubectlOk(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  store = new KubeStore(client, NAMESPACE, (line) => storeLog.push(line));
  await store.start();
}, 240_000);

afterAll(async () => {
  await store?.stop();
  client?.close();
  await cluster?.stop();
}, 60_000);

// biome-ignore lint/suspicious/noExplicitAny: objects read from kubectl are checked field by field
function getJson(kind: string, name: string): any {
  return JSON.parse(cluster.kubectlOk(["get", kind, "-n", NAMESPACE, name, "-o", "json"]));
}

function repository(name: string): ModelRepository {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelRepository",
    metadata: { name, namespace: NAMESPACE },
    spec: { url: "https://git.example.com/models.git" },
  };
}

async function applied(name: string): Promise<ModelRepository> {
  return store.apply(repository(name));
}

describe("KubeStore on a real API server", () => {
  it("applies spec and owner references, and reads its own write from the cache at once", async () => {
    const owner = await applied("owner");
    const ownerUid = storedMetadata(owner).uid as string;
    const child = repository("child");
    child.metadata.labels = { team: "a" };
    (child.metadata as { ownerReferences?: unknown[] }).ownerReferences = [
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelRepository",
        name: "owner",
        uid: ownerUid,
      },
    ];
    const written = await store.apply(child);
    // Read your writes: the cache already has it, at the written version.
    const cached = store.get("ModelRepository", NAMESPACE, "child");
    expect(storedMetadata(cached as ModelRepository).resourceVersion).toBe(
      storedMetadata(written).resourceVersion,
    );
    expect(getJson("modelrepository", "child").metadata).toMatchObject({
      labels: { team: "a" },
      ownerReferences: [{ kind: "ModelRepository", name: "owner", uid: ownerUid }],
    });
    const managed = JSON.parse(
      cluster.kubectlOk([
        "get",
        "modelrepository",
        "-n",
        NAMESPACE,
        "child",
        "-o",
        "json",
        "--show-managed-fields",
      ]),
    ).metadata.managedFields as { manager: string }[];
    expect(managed.map((entry) => entry.manager)).toEqual(["modelship"]);
  });

  it("adds and removes a finalizer, keeps another's, and does nothing twice", async () => {
    await applied("finalized");
    cluster.kubectlOk([
      "patch",
      "modelrepository",
      "-n",
      NAMESPACE,
      "finalized",
      "--type=merge",
      "-p",
      '{"metadata":{"finalizers":["example.com/other"]}}',
    ]);
    await store.setFinalizer("ModelRepository", NAMESPACE, "finalized", FINALIZER, true);
    expect(getJson("modelrepository", "finalized").metadata.finalizers).toEqual([
      "example.com/other",
      FINALIZER,
    ]);
    expect(
      storedMetadata(store.get("ModelRepository", NAMESPACE, "finalized") as ModelRepository)
        .finalizers,
    ).toContain(FINALIZER);
    const version = getJson("modelrepository", "finalized").metadata.resourceVersion;
    await store.setFinalizer("ModelRepository", NAMESPACE, "finalized", FINALIZER, true);
    expect(getJson("modelrepository", "finalized").metadata.resourceVersion).toBe(version);
    await store.setFinalizer("ModelRepository", NAMESPACE, "finalized", FINALIZER, false);
    expect(getJson("modelrepository", "finalized").metadata.finalizers).toEqual([
      "example.com/other",
    ]);
    cluster.kubectlOk([
      "patch",
      "modelrepository",
      "-n",
      NAMESPACE,
      "finalized",
      "--type=json",
      "-p",
      '[{"op":"remove","path":"/metadata/finalizers"}]',
    ]);
    // A first finalizer, on an object with no list at all.
    await store.setFinalizer("ModelRepository", NAMESPACE, "finalized", FINALIZER, true);
    expect(getJson("modelrepository", "finalized").metadata.finalizers).toEqual([FINALIZER]);
    await store.setFinalizer("ModelRepository", NAMESPACE, "finalized", FINALIZER, false);
    expect(getJson("modelrepository", "finalized").metadata.finalizers).toBeUndefined();
  });

  it("never loses a concurrent finalizer change: the guard fails, the store reads again", async () => {
    await applied("contended");
    const names = ["a", "b", "c", "d"].map((letter) => `example.com/${letter}`);
    await Promise.all(
      names.map((name) =>
        store.setFinalizer("ModelRepository", NAMESPACE, "contended", name, true),
      ),
    );
    expect([...getJson("modelrepository", "contended").metadata.finalizers].sort()).toEqual(names);
    await Promise.all(
      names.map((name) =>
        store.setFinalizer("ModelRepository", NAMESPACE, "contended", name, false),
      ),
    );
    expect(getJson("modelrepository", "contended").metadata.finalizers).toBeUndefined();
  });

  it("deletes only the object with the given uid", async () => {
    const object = await applied("precise");
    expect(
      await store.delete("ModelRepository", NAMESPACE, "precise", { uid: "not-its-uid" }),
    ).toBe(false);
    expect(getJson("modelrepository", "precise").metadata.uid).toBe(storedMetadata(object).uid);
    expect(
      await store.delete("ModelRepository", NAMESPACE, "precise", {
        uid: storedMetadata(object).uid as string,
      }),
    ).toBe(true);
    expect(store.get("ModelRepository", NAMESPACE, "precise")).toBeUndefined();
    expect(await store.delete("ModelRepository", NAMESPACE, "precise")).toBe(false);
  });

  it("leaves an object with a finalizer in place with a deletionTimestamp until it is removed", async () => {
    await applied("held");
    await store.setFinalizer("ModelRepository", NAMESPACE, "held", FINALIZER, true);
    expect(await store.delete("ModelRepository", NAMESPACE, "held")).toBe(true);
    const held = store.get("ModelRepository", NAMESPACE, "held") as ModelRepository;
    expect(storedMetadata(held).deletionTimestamp).toMatch(/^\d{4}-/);
    expect(getJson("modelrepository", "held").metadata.deletionTimestamp).toBeDefined();
    await store.setFinalizer("ModelRepository", NAMESPACE, "held", FINALIZER, false);
    expect(store.get("ModelRepository", NAMESPACE, "held")).toBeUndefined();
    expect(cluster.kubectl(["get", "modelrepository", "-n", NAMESPACE, "held"]).status).not.toBe(0);
  });

  it("says NotFound as the ports do", async () => {
    const missing = store.patchStatus("ModelRepository", NAMESPACE, "missing", {
      observedGeneration: 1,
    });
    await expect(missing).rejects.toSatisfy(isNotFound);
    await expect(
      store.setFinalizer("ModelRepository", NAMESPACE, "missing", FINALIZER, true),
    ).rejects.toSatisfy(isNotFound);
    // Removing a finalizer from nothing is already done.
    await store.setFinalizer("ModelRepository", NAMESPACE, "missing", FINALIZER, false);
  });

  it("writes status through the status subresource, leaving the spec alone", async () => {
    await applied("with-status");
    await store.patchStatus("ModelRepository", NAMESPACE, "with-status", { observedGeneration: 1 });
    expect(store.get("ModelRepository", NAMESPACE, "with-status")?.status).toEqual({
      observedGeneration: 1,
    });
    expect(getJson("modelrepository", "with-status").spec.url).toBe(
      "https://git.example.com/models.git",
    );
  });

  it("allocates deployment ids from a ConfigMap labelled as ours", async () => {
    expect(await store.allocateDeploymentId()).toBe(1);
    expect(await Promise.all([store.allocateDeploymentId(), store.allocateDeploymentId()])).toEqual(
      expect.arrayContaining([2, 3]),
    );
    const configMap = getJson("configmap", ID_CONFIG_MAP);
    expect(configMap.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "modelship" });
    expect(configMap.data.lastDeploymentId).toBe("3");
  });

  it.each<[string, "list" | "all"]>([
    ["a list of namespaces (an informer each)", "list"],
    ["every namespace (one cluster-wide informer)", "all"],
  ])("follows %s, and nothing else", async (_, mode) => {
    for (const namespace of [`${mode}-a`, `${mode}-b`, `${mode}-unfollowed`]) {
      cluster.kubectlOk(["create", "namespace", namespace]);
    }
    const followed = new KubeStore(
      client,
      NAMESPACE,
      () => {},
      {},
      mode === "all" ? "all" : [`${mode}-a`, `${mode}-b`],
    );
    await followed.start();
    try {
      const inNamespace = (namespace: string) => ({
        ...repository(`in-${namespace}`),
        metadata: { name: `in-${namespace}`, namespace },
      });
      // The unfollowed one first: by the time the others are in the cache, a watch of its
      // namespace would have brought it too.
      cluster.kubectlOk(["apply", "-f", "-"], JSON.stringify(inNamespace(`${mode}-unfollowed`)));
      await followed.apply(inNamespace(`${mode}-a`));
      await followed.apply(inNamespace(`${mode}-b`));
      const names = followed
        .list("ModelRepository")
        .map((item) => `${item.metadata.namespace}/${item.metadata.name}`)
        .filter((name) => name.startsWith(mode));
      if (mode === "all") {
        await eventually(
          () =>
            followed.get("ModelRepository", `${mode}-unfollowed`, `in-${mode}-unfollowed`) !==
            undefined,
          10_000,
        );
        expect(
          followed.list("ModelRepository", `${mode}-b`).map((item) => item.metadata.name),
        ).toEqual([`in-${mode}-b`]);
      } else {
        expect(names.sort()).toEqual([`${mode}-a/in-${mode}-a`, `${mode}-b/in-${mode}-b`]);
        expect(
          followed.get("ModelRepository", `${mode}-unfollowed`, `in-${mode}-unfollowed`),
        ).toBeUndefined();
      }
    } finally {
      await followed.stop();
    }
  });

  it("an aborted call rejects at once", async () => {
    const controller = new AbortController();
    const call = store.apply(repository("aborted"), { signal: controller.signal });
    controller.abort();
    await expect(call).rejects.toMatchObject({ name: "AbortError" });
    expect(storeLog).toEqual([]);
  });
});

describe("KubeEventRecorder on a real API server", () => {
  it("creates an Event for an object, and a repeat counts it up", async () => {
    const object = await applied("evented");
    const lines: string[] = [];
    const recorder = new KubeEventRecorder(client, (line) => lines.push(line));
    recorder.record(
      object,
      "Warning",
      "SyncFailed",
      "cannot fetch the repository\nthe second line",
    );
    recorder.record(
      object,
      "Warning",
      "SyncFailed",
      "cannot fetch the repository\nthe second line",
    );
    recorder.record(object, "Normal", "SyncApplied", "applied 3 objects");
    await recorder.flush();
    expect(lines).toEqual([
      "WARNING ModelRepository modelship/evented: SyncFailed: cannot fetch the repository",
      "WARNING ModelRepository modelship/evented: SyncFailed: cannot fetch the repository",
      "ModelRepository modelship/evented: SyncApplied: applied 3 objects",
    ]);
    const events = JSON.parse(
      cluster.kubectlOk([
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        "involvedObject.name=evented",
        "-o",
        "json",
      ]),
    ).items as {
      metadata: { labels: Record<string, string> };
      involvedObject: Record<string, string>;
      reason: string;
      type: string;
      count: number;
      source: { component: string };
      reportingComponent: string;
      firstTimestamp: string;
      lastTimestamp: string;
    }[];
    expect(events.map((event) => [event.reason, event.type, event.count]).sort()).toEqual([
      ["SyncApplied", "Normal", 1],
      ["SyncFailed", "Warning", 2],
    ]);
    for (const event of events) {
      expect(event.involvedObject).toMatchObject({
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelRepository",
        namespace: NAMESPACE,
        name: "evented",
        uid: storedMetadata(object).uid,
      });
      expect(event.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "modelship" });
      expect(event.source.component).toBe("modelship-controller");
      expect(event.reportingComponent).toBe("modelship-controller");
      expect(event.firstTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    // kubectl describe shows them.
    await eventually(() =>
      cluster
        .kubectlOk(["describe", "modelrepository", "-n", NAMESPACE, "evented"])
        .includes("SyncFailed"),
    );
  });

  it("stop() writes what is queued, then only logs", async () => {
    const object = await applied("stopping");
    const lines: string[] = [];
    const recorder = new KubeEventRecorder(client, (line) => lines.push(line));
    recorder.record(object, "Normal", "Queued", "before stop");
    await recorder.stop();
    recorder.record(object, "Normal", "Late", "after stop");
    await recorder.flush();
    const reasons = cluster
      .kubectlOk([
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        "involvedObject.name=stopping",
        "-o",
        "jsonpath={.items[*].reason}",
      ])
      .trim();
    expect(reasons).toBe("Queued");
    expect(lines).toHaveLength(2);
  });

  it("never throws into the caller and logs a failing write once", async () => {
    const object = repository("nowhere");
    object.metadata.namespace = "no-such-namespace";
    const lines: string[] = [];
    const recorder = new KubeEventRecorder(client, (line) => lines.push(line));
    expect(() => {
      recorder.record(object, "Normal", "One", "first");
      recorder.record(object, "Normal", "Two", "second");
    }).not.toThrow();
    await recorder.flush();
    expect(lines.filter((line) => line.startsWith("events: cannot write an Event"))).toHaveLength(
      1,
    );
    expect(lines).toHaveLength(3);
  });
});
