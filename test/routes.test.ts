// The gateway's routes from the resources: keyed by namespace and name, so that a Model's
// namesake in another namespace never shares its route, replicas, keys or settings.
import { describe, expect, it } from "vitest";
import type { Model, ModelDeployment } from "../controller/api/types.generated.ts";
import { formatName, type NamespacedName } from "../controller/core/keys.ts";
import { LocalStore } from "../controller/platform/local/store.ts";
import { gatewayConfigFrom } from "../controller/platform/routes.ts";

const model = (namespace: string, authentication: boolean): Model => ({
  apiVersion: "modelship.dev/v1alpha1",
  kind: "Model",
  metadata: { name: "iris", namespace },
  spec: {
    runtime: "python3",
    file: "p.py",
    function: "f",
    authentication: { enabled: authentication },
  },
});

const deployment = (namespace: string, name: string): ModelDeployment => ({
  apiVersion: "modelship.dev/v1alpha1",
  kind: "ModelDeployment",
  metadata: { name, namespace },
  spec: { model: "iris", timeoutSeconds: namespace === "team-a" ? 10 : 99 },
});

async function routes(objects: (Model | ModelDeployment)[]) {
  let now = Date.parse("2026-03-01T00:00:00Z");
  // Each object a second after the last: the order they were made in is the order of creation.
  const store = new LocalStore(undefined, () => {
    now += 1000;
    return new Date(now);
  });
  for (const object of objects) await store.apply(object);
  return gatewayConfigFrom({
    store,
    readyReplicas: (deployment: NamespacedName) => [
      { id: formatName(deployment), url: `http://127.0.0.1:1/${formatName(deployment)}` },
    ],
    accessKeyHash: (name: NamespacedName) => `hash-of-${formatName(name)}`,
    apiKeys: [],
  }).models;
}

describe("gatewayConfigFrom", () => {
  it("merges the replicas of one Model's deployments into its route", async () => {
    const [route] = await routes([
      model("team-a", true),
      deployment("team-a", "web"),
      deployment("team-a", "batch"),
    ]);
    expect(route?.replicas.map((replica) => replica.id).sort()).toStrictEqual([
      "team-a/batch",
      "team-a/web",
    ]);
  });

  it.each<[string, (Model | ModelDeployment)[]]>([
    [
      "the twin made later",
      [
        model("team-a", true),
        deployment("team-a", "web"),
        model("team-b", false),
        deployment("team-b", "web"),
      ],
    ],
    [
      "the twin made later, whatever the order of the list",
      [
        model("team-a", true),
        model("team-b", false),
        deployment("team-b", "web"),
        deployment("team-a", "web"),
      ],
    ],
  ])("serves a name once, for the Model made first: %s gets no share of it", async (_, objects) => {
    const served = await routes(objects);
    expect(served).toHaveLength(1);
    expect(served[0]).toMatchObject({
      name: "iris",
      authentication: { enabled: true },
      accessKeySha256: "hash-of-team-a/iris",
      timeoutSeconds: 10,
    });
    expect(served[0]?.replicas.map((replica) => replica.id)).toStrictEqual(["team-a/web"]);
  });

  it("carries a deployment's maxRequestBytes to its model's route, and none when unset", async () => {
    const limited = { ...deployment("team-a", "web") };
    limited.spec = { ...limited.spec, maxRequestBytes: 20 * 1024 * 1024 };
    const [route] = await routes([model("team-a", true), limited]);
    expect(route?.maxRequestBytes).toBe(20 * 1024 * 1024);
    const [plain] = await routes([model("team-a", true), deployment("team-a", "web")]);
    expect(plain).not.toHaveProperty("maxRequestBytes");
  });
});
