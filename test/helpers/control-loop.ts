// The control loop's behaviour, written once and run against both platforms (the local store and
// a real API server): drift is corrected, a repository takes over nothing it did not make, a
// failed build stalls with its reason, every transition is an event, suspend stops syncing, and
// deleting a repository removes (or orphans) what it applied. Each platform brings a driver that
// does what an operator would do there (kubectl on a cluster; the store itself locally).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Kind } from "../../controller/api/schemas.ts";
import type { Condition, ModelRepository } from "../../controller/api/types.generated.ts";
import type { Resource } from "../../controller/core/ports.ts";
import { commitAll, gitEnv, runGit } from "./git.ts";
import { eventually } from "./replica.ts";

export interface EventSeen {
  type: string;
  reason: string;
  message: string;
}

export interface ControlLoopDriver {
  /** Where objects are (the ModelRepository's namespace). */
  namespace: string;
  /** The name of the ModelRepository that start() makes. */
  repository: string;
  /** Starts the platform, following `repo` with a ModelRepository polling every `interval`. */
  start(repo: string, interval: string): Promise<void>;
  stop(): Promise<void>;
  get(kind: Kind, name: string): Resource | undefined;
  list(kind: Kind): Resource[];
  /** A hand edit of an object's spec (kubectl edit / patch). */
  editSpec(kind: Kind, name: string, spec: Record<string, unknown>): Promise<void>;
  /** A hand delete (kubectl delete). */
  remove(kind: Kind, name: string): Promise<void>;
  /** Creates an object by hand, not through git (kubectl apply). */
  create(object: Resource): Promise<void>;
  /** The events recorded about an object. */
  events(kind: Kind, name: string): EventSeen[];
  /** How long a build that fails takes to say so, at most. */
  buildTimeoutMs: number;
  /**
   * Another namespace the platform watches, where `create` can make objects by hand; absent
   * where the controller watches its own namespace only.
   */
  otherNamespace?: {
    name: string;
    get(kind: Kind, name: string): Resource | undefined;
    remove(kind: Kind, name: string): Promise<void>;
  };
}

const GIT_ENV = gitEnv({ name: "Mary Jackson", email: "mary@example.com" });
const INTERVAL_MS = 1000;
/** "Within two intervals", with room for a pass's own work on a busy machine. */
const TWO_INTERVALS_MS = 2 * INTERVAL_MS + 4000;
/** Events are written after the status, and on Kubernetes through a queue: they come a bit later. */
const EVENT_MS = 10_000;

/** A Model whose code is in the directory of its name (so that models never share a build). */
const model = (name: string, extra = "") => `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: ${name}
spec:
  runtime: python3
  file: predict.py
  function: predict
  source:
    path: ${name}
${extra}`;

const deployment = (
  name: string,
  replicas: number,
  extra = "",
) => `apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: ${name}
${extra}spec:
  model: ${name}
  replicas: ${replicas}
`;

const predict = (version: number) => `def predict(args):\n    return {"version": ${version}}\n`;

function conditionOf(object: Resource | undefined, type: string): Condition | undefined {
  const status = object?.status as { conditions?: Condition[] } | undefined;
  return status?.conditions?.find((condition) => condition.type === type);
}

export function controlLoopSuite(name: string, driver: ControlLoopDriver): void {
  const REPOSITORY = driver.repository;
  const root = mkdtempSync(join(tmpdir(), "modelship-loop-"));
  const repo = join(root, "repo");
  const commit = (message: string, files: Record<string, string | null>) =>
    commitAll(repo, GIT_ENV, message, files);
  const status = <T>(kind: Kind, object: string) => driver.get(kind, object)?.status as T;
  const deployedReplicas = (object: string) =>
    status<{ phase?: string; replicas?: number }>("ModelDeployment", object);
  const repository = () => driver.get("ModelRepository", REPOSITORY) as ModelRepository | undefined;
  const reasons = (kind: Kind, object: string) =>
    driver.events(kind, object).map((event) => event.reason);
  const specReplicas = (object: string) =>
    (driver.get("ModelDeployment", object)?.spec as { replicas?: number } | undefined)?.replicas;
  const synced = (commitId: string) => () => repository()?.status?.lastSyncedCommit === commitId;

  describe(`the control loop (${name})`, () => {
    beforeAll(async () => {
      execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
      const head = commit("scorer, version 1", {
        "scorer/predict.py": predict(1),
        "scorer.yaml": `${model("scorer")}---\n${deployment("scorer", 2)}`,
      });
      await driver.start(repo, `${INTERVAL_MS / 1000}s`);
      await eventually(synced(head), 60_000);
    }, 120_000);

    afterAll(async () => {
      await driver.stop();
      rmSync(root, { recursive: true, force: true });
    }, 60_000);

    it("applies, builds and rolls out, with an event for every transition and the inventory in status", async () => {
      await eventually(() => deployedReplicas("scorer")?.phase === "Deployed", 120_000);
      const repositoryStatus = repository()?.status;
      expect(repositoryStatus?.inventory).toStrictEqual([
        { kind: "Model", namespace: driver.namespace, name: "scorer" },
        { kind: "ModelDeployment", namespace: driver.namespace, name: "scorer" },
      ]);
      expect(repositoryStatus?.lastSyncTime).toBeDefined();
      expect(conditionOf(repository(), "Ready")).toMatchObject({
        status: "True",
        reason: "Synced",
      });
      await eventually(
        () => reasons("ModelDeployment", "scorer").includes("RolloutCompleted"),
        30_000,
      );
      await eventually(
        () => reasons("ModelRepository", REPOSITORY).includes("SyncApplied"),
        EVENT_MS,
      );
      await eventually(() => reasons("Model", "scorer").includes("BuildCreated"), EVENT_MS);
      for (const [kind, object, wanted] of [
        ["ModelBuild", "scorer-1", ["BuildStarted", "BuildSucceeded"]],
        ["ModelDeployment", "scorer", ["RolloutStarted", "RolloutCompleted"]],
      ] as const) {
        await eventually(
          () => wanted.every((reason) => reasons(kind, object).includes(reason)),
          EVENT_MS,
        );
      }
      const deployed = driver.get("ModelDeployment", "scorer");
      const generation = (deployed?.metadata as { generation?: number } | undefined)?.generation;
      const observed = (deployed?.status as { observedGeneration?: number } | undefined)
        ?.observedGeneration;
      expect(observed).toBe(generation);
      expect(conditionOf(deployed, "Reconciling")).toBeUndefined();
      expect(conditionOf(deployed, "Stalled")).toBeUndefined();
    }, 180_000);

    it("puts back a hand edit of a ModelDeployment within two intervals, and says so", async () => {
      await driver.editSpec("ModelDeployment", "scorer", { model: "scorer", replicas: 5 });
      await eventually(() => specReplicas("scorer") === 2, TWO_INTERVALS_MS);
      await eventually(
        () => reasons("ModelRepository", REPOSITORY).includes("DriftCorrected"),
        EVENT_MS,
      );
      await eventually(() => deployedReplicas("scorer")?.phase === "Deployed", 60_000);
    }, 60_000);

    it("puts back a hand edit of a field git leaves at its default", async () => {
      const stopped = () =>
        (driver.get("ModelDeployment", "scorer")?.spec as { stopped?: boolean } | undefined)
          ?.stopped;
      await driver.editSpec("ModelDeployment", "scorer", {
        model: "scorer",
        replicas: 2,
        stopped: true,
      });
      await eventually(() => stopped() === true, 10_000);
      await eventually(() => stopped() === false, TWO_INTERVALS_MS);
      await eventually(() => deployedReplicas("scorer")?.phase === "Deployed", 60_000);
    }, 60_000);

    it("brings back a ModelDeployment deleted by hand", async () => {
      const uid = () =>
        (driver.get("ModelDeployment", "scorer")?.metadata as { uid?: string } | undefined)?.uid;
      const before = uid();
      await driver.remove("ModelDeployment", "scorer");
      // A new object, not the old one still in a cache.
      await eventually(() => uid() !== undefined && uid() !== before, TWO_INTERVALS_MS);
      await eventually(
        () =>
          driver
            .events("ModelRepository", REPOSITORY)
            .some(
              (event) =>
                event.reason === "DriftCorrected" &&
                event.message.includes("ModelDeployment/scorer (it does not exist)"),
            ),
        10_000,
      );
      await eventually(() => deployedReplicas("scorer")?.phase === "Deployed", 60_000);
    }, 90_000);

    it("stops correcting drift while suspended and says so; corrects it again once resumed", async () => {
      const spec = repository()?.spec as ModelRepository["spec"];
      await driver.editSpec("ModelRepository", REPOSITORY, { ...spec, suspend: true });
      await eventually(() => conditionOf(repository(), "Suspended")?.status === "True", 30_000);
      await driver.editSpec("ModelDeployment", "scorer", { model: "scorer", replicas: 1 });
      // Two intervals and more: nothing puts it back.
      await new Promise((resolve) => setTimeout(resolve, 3 * INTERVAL_MS));
      expect(specReplicas("scorer")).toBe(1);
      await eventually(
        () => reasons("ModelRepository", REPOSITORY).includes("Suspended"),
        EVENT_MS,
      );
      await driver.editSpec("ModelRepository", REPOSITORY, { ...spec, suspend: false });
      await eventually(() => specReplicas("scorer") === 2, TWO_INTERVALS_MS + 5000);
      // The status is written after the apply, and on a cluster read back through another
      // watch than the deployment's: it may show a moment later.
      await eventually(() => conditionOf(repository(), "Suspended") === undefined, 10_000);
    }, 60_000);

    it("stalls a failed build, its Model and its deployment, with the reason, and keeps the rest running", async () => {
      const head = commit("a model whose build fails", {
        "broken/predict.py": predict(1),
        "broken/build.sh": "echo 'no such package: fancy' >&2\nexit 3\n",
        "broken.yaml": `${model("broken", "  buildScript: build.sh\n")}---\n${deployment("broken", 1)}`,
      });
      await eventually(synced(head), 30_000);
      // Each of the three stalls in its own pass, on its own queue: wait for all of them.
      await eventually(
        () =>
          (["ModelBuild", "Model", "ModelDeployment"] as const).every(
            (kind) =>
              conditionOf(
                driver.get(kind, kind === "ModelBuild" ? "broken-1" : "broken"),
                "Stalled",
              )?.status === "True",
          ),
        driver.buildTimeoutMs,
      );
      for (const [kind, object] of [
        ["ModelBuild", "broken-1"],
        ["Model", "broken"],
        ["ModelDeployment", "broken"],
      ] as const) {
        const found = driver.get(kind, object);
        expect(conditionOf(found, "Stalled"), `${kind} ${object}`).toMatchObject({
          status: "True",
          reason: "BuildFailed",
        });
        expect(conditionOf(found, "Ready"), `${kind} ${object}`).toMatchObject({
          status: "False",
          reason: "BuildFailed",
        });
        expect(conditionOf(found, "Reconciling"), `${kind} ${object}`).toBeUndefined();
      }
      expect(status<{ phase?: string }>("ModelBuild", "broken-1").phase).toBe("Failed");
      expect(status<{ phase?: string }>("ModelDeployment", "broken").phase).toBe("Failed");
      expect(driver.events("ModelBuild", "broken-1")).toContainEqual(
        expect.objectContaining({ type: "Warning", reason: "BuildFailed" }),
      );
      expect(deployedReplicas("scorer")?.phase).toBe("Deployed");
    }, 240_000);

    it("refuses a manifest aimed at another namespace: nothing from the commit is applied", async () => {
      const before = repository()?.status?.lastSyncedCommit;
      const head = commit("a deployment in someone else's namespace", {
        "elsewhere.yaml": deployment("scorer-elsewhere", 1, "  namespace: kube-system\n").replace(
          "model: scorer-elsewhere",
          "model: scorer",
        ),
      });
      await eventually(() => repository()?.status?.lastAttemptedCommit === head, 30_000);
      expect(repository()?.status?.lastSyncedCommit).toBe(before);
      expect(conditionOf(repository(), "Stalled")).toMatchObject({
        status: "True",
        reason: "ValidationFailed",
      });
      expect(conditionOf(repository(), "Ready")?.status).toBe("False");
      expect(repository()?.status?.lastSyncError).toContain(
        `elsewhere.yaml:5:14: ModelDeployment/scorer-elsewhere /metadata/namespace: namespace "kube-system" is not this repository's`,
      );
      expect(driver.get("ModelDeployment", "scorer-elsewhere")).toBeUndefined();
      const fixed = commit("back to our namespace", { "elsewhere.yaml": null });
      await eventually(synced(fixed), 30_000);
      expect(conditionOf(repository(), "Stalled")).toBeUndefined();
    }, 60_000);

    it("takes over nothing it did not make: an object made by hand stays as it is", async () => {
      await driver.create({
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelDeployment",
        metadata: { name: "handmade", namespace: driver.namespace },
        spec: { model: "scorer", replicas: 1 },
      } as Resource);
      const head = commit("a deployment named like a hand-made one", {
        "handmade.yaml": deployment("handmade", 3).replace("model: handmade", "model: scorer"),
      });
      await eventually(() => repository()?.status?.lastAttemptedCommit === head, 30_000);
      expect(conditionOf(repository(), "Stalled")).toMatchObject({ reason: "OwnershipConflict" });
      expect(repository()?.status?.lastSyncError).toContain(
        'ModelDeployment "handmade" already exists in namespace',
      );
      expect(specReplicas("handmade")).toBe(1);
      const fixed = commit("not that name", { "handmade.yaml": null });
      await eventually(synced(fixed), 30_000);
      // Not in the inventory, so never pruned either.
      expect(driver.get("ModelDeployment", "handmade")).toBeDefined();
      await driver.remove("ModelDeployment", "handmade");
    }, 60_000);

    it("lets a second repository take over nothing of the first's, not even when deleted", async () => {
      const intruder = join(root, "intruder");
      execFileSync("git", ["init", "-q", "-b", "main", intruder], { env: GIT_ENV });
      commitAll(intruder, GIT_ENV, "the same name, no authentication", {
        "scorer/predict.py": predict(9),
        "scorer.yaml": `${model("scorer", "  authentication:\n    enabled: false\n")}---\n${deployment("scorer", 1)}`,
      });
      await driver.create({
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelRepository",
        metadata: { name: "intruder", namespace: driver.namespace },
        spec: { url: intruder, branch: "main", interval: `${INTERVAL_MS / 1000}s` },
      } as Resource);
      const theirs = () => driver.get("ModelRepository", "intruder") as ModelRepository | undefined;
      await eventually(
        () => conditionOf(theirs(), "Stalled")?.reason === "OwnershipConflict",
        30_000,
      );
      expect(theirs()?.status?.lastSyncError).toContain(
        `Model "scorer" already exists in namespace ${driver.namespace} and it belongs to ModelRepository "${REPOSITORY}"`,
      );
      const scorer = driver.get("Model", "scorer");
      expect(
        (scorer?.spec as { authentication?: { enabled?: boolean } } | undefined)?.authentication
          ?.enabled,
      ).not.toBe(false);
      expect(scorer?.metadata.labels?.["modelship.dev/repository"]).toBe(REPOSITORY);
      expect(specReplicas("scorer")).toBe(2);
      await driver.remove("ModelRepository", "intruder");
      await eventually(() => theirs() === undefined, 30_000);
      expect(driver.get("Model", "scorer")).toBeDefined();
      expect(driver.get("ModelDeployment", "scorer")).toBeDefined();
    }, 90_000);

    const elsewhere = driver.otherNamespace;
    if (elsewhere) {
      it("refuses a Model whose name another namespace has, and leaves that one as it is", async () => {
        await driver.create({
          apiVersion: "modelship.dev/v1alpha1",
          kind: "Model",
          metadata: { name: "twin", namespace: elsewhere.name },
          spec: {
            runtime: "python3",
            file: "predict.py",
            function: "predict",
            authentication: { enabled: true },
          },
        } as Resource);
        const head = commit("a namesake of another namespace's model, with no authentication", {
          "twin/predict.py": predict(1),
          "twin.yaml": `${model("twin", "  authentication:\n    enabled: false\n")}---\n${deployment("twin", 1)}`,
        });
        await eventually(() => repository()?.status?.lastAttemptedCommit === head, 30_000);
        expect(conditionOf(repository(), "Stalled")).toMatchObject({ reason: "ValidationFailed" });
        expect(repository()?.status?.lastSyncError).toContain(
          `twin.yaml:4:9: Model/twin /metadata/name: namespace ${elsewhere.name} already has a Model "twin"`,
        );
        expect(driver.get("Model", "twin")).toBeUndefined();
        const theirs = elsewhere.get("Model", "twin")?.spec as
          | { authentication?: { enabled?: boolean } }
          | undefined;
        expect(theirs?.authentication?.enabled).toBe(true);
        const fixed = commit("not that name", { "twin.yaml": null, "twin/predict.py": null });
        await eventually(synced(fixed), 30_000);
        await elsewhere.remove("Model", "twin");
      }, 60_000);
    }

    it("prunes what git no longer declares, and says so", async () => {
      const head = commit("retire the broken model", { "broken.yaml": null });
      await eventually(synced(head), 30_000);
      await eventually(() => driver.get("ModelDeployment", "broken") === undefined, 30_000);
      expect(driver.get("Model", "broken")).toBeUndefined();
      await eventually(() => reasons("ModelRepository", REPOSITORY).includes("Pruned"), EVENT_MS);
      expect(repository()?.status?.inventory?.map((entry) => entry.name)).toStrictEqual([
        "scorer",
        "scorer",
      ]);
    }, 60_000);

    it("leaves what it applied when deleted with deletionPolicy Orphan", async () => {
      const spec = repository()?.spec as ModelRepository["spec"];
      await driver.editSpec("ModelRepository", REPOSITORY, { ...spec, deletionPolicy: "Orphan" });
      await eventually(() => repository()?.spec.deletionPolicy === "Orphan", 10_000);
      await driver.remove("ModelRepository", REPOSITORY);
      await eventually(() => repository() === undefined, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL_MS));
      expect(driver.get("ModelDeployment", "scorer")).toBeDefined();
      expect(driver.get("Model", "scorer")).toBeDefined();
      expect(deployedReplicas("scorer")?.phase).toBe("Deployed");
    }, 60_000);

    it("removes what it applied, builds and replicas included, when deleted (deletionPolicy Delete)", async () => {
      await driver.create({
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelRepository",
        metadata: { name: REPOSITORY, namespace: driver.namespace },
        spec: { url: repo, branch: "main", interval: `${INTERVAL_MS / 1000}s` },
      } as Resource);
      const head = runGit(repo, GIT_ENV, "rev-parse", "HEAD");
      // The same name and labels: the orphans are this repository's again.
      await eventually(synced(head), 30_000);
      expect(conditionOf(repository(), "Ready")?.status).toBe("True");
      await driver.remove("ModelRepository", REPOSITORY);
      await eventually(
        () =>
          repository() === undefined &&
          driver.get("ModelDeployment", "scorer") === undefined &&
          driver.get("Model", "scorer") === undefined,
        30_000,
      );
      await eventually(() => driver.list("ModelBuild").length === 0, 30_000);
    }, 60_000);
  });
}
