// What `plan` says is what the sync does: the plan of each change is made from a running local
// platform's store (its builds, its base images), then the change is synced for real — real
// builds, real replicas — and the platform must have done exactly that: the build key and
// number the plan named, a revert back on the old build with no build, a scale with no rollout.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { conditionOf } from "../controller/api/conditions.ts";
import { LocalPlatform } from "../controller/platform/local/platform.ts";
import type { Plan } from "../controller/reconcile/plan.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { eventually } from "./helpers/replica.ts";
import { removeUpTestRoot } from "./helpers/up.ts";

const GIT_ENV = gitEnv({ name: "Dorothy Vaughan", email: "dorothy@example.com" });
const root = mkdtempSync(join(tmpdir(), "modelship-plan-sync-"));
const repo = join(root, "repo");
const log: string[] = [];
let platform: LocalPlatform;

const ADD = readFileSync(
  join(PROJECT_ROOT, "manifests/examples/add-numbers/add_numbers.py"),
  "utf8",
);
const manifest = (replicas: number) =>
  openModelManifest({ name: "add", file: "add_numbers.py", function: "add", replicas });

beforeAll(async () => {
  runGit(root, GIT_ENV, "init", "-q", "-b", "main", repo);
  commitAll(repo, GIT_ENV, "add", { "add_numbers.py": ADD, "model.yaml": manifest(1) });
  platform = new LocalPlatform({
    stateDir: join(root, "state"),
    // Long enough that only syncNow() moves it: each plan is made before its sync.
    repository: { url: repo, branch: "main", path: ".", interval: "1h" },
    host: "127.0.0.1",
    gatewayPort: 0,
    log: (line) => log.push(line),
  });
  await platform.start();
  await servedAt(runGit(repo, GIT_ENV, "rev-parse", "HEAD"));
}, 180_000);

afterAll(async () => {
  await platform?.stop();
  if (process.env.MODELSHIP_TEST_DEBUG) console.log(log.join("\n"));
  removeUpTestRoot(root);
});

/** Waits until the deployment's rollout of the synced commit is Ready. */
async function servedAt(commit: string): Promise<void> {
  platform.syncNow();
  await eventually(() => {
    const deployment = platform.store.get("ModelDeployment", "default", "add");
    const model = platform.store.get("Model", "default", "add");
    return (
      model?.status?.sourceCommit === commit &&
      deployment?.metadata.annotations?.["modelship.dev/commit"] === commit &&
      conditionOf(deployment?.status?.conditions, "Ready")?.status === "True" &&
      deployment.status?.readyReplicas === deployment.spec.replicas
    );
  }, 150_000);
}

function commit(message: string, files: Record<string, string>): { base: string; head: string } {
  const base = runGit(repo, GIT_ENV, "rev-parse", "HEAD");
  return { base, head: commitAll(repo, GIT_ENV, message, files) };
}

function modelOf(plan: Plan) {
  return plan.models.find((model) => model.name === "add");
}

function deploymentOf(plan: Plan) {
  return plan.deployments.find((deployment) => deployment.name === "add");
}

describe("plan against a running local platform", () => {
  let firstKey = "";
  it("names the new build's number and key, and the sync makes that build", async () => {
    firstKey = platform.store.get("Model", "default", "add")?.status?.buildKey ?? "";
    const change = commit("a new formula", {
      "add_numbers.py": 'def add(args):\n    return args["a"] + args["b"] + 0\n',
    });
    const plan = await platform.plan(change.base, change.head);
    expect(plan.buildNumbers).toBe("the controller's builds");
    expect(modelOf(plan)?.buildKey.base).toBe(firstKey);
    expect(modelOf(plan)?.build).toStrictEqual({ action: "build", number: 2 });
    expect(deploymentOf(plan)).toMatchObject({ effect: "rollout", build: { base: 1, head: 2 } });
    await servedAt(change.head);
    const model = platform.store.get("Model", "default", "add");
    expect(model?.status?.latestBuild).toBe(2);
    expect(model?.status?.buildKey).toBe(modelOf(plan)?.buildKey.head);
  }, 180_000);

  it("names the build a revert brings back, and the sync builds nothing", async () => {
    const base = runGit(repo, GIT_ENV, "rev-parse", "HEAD");
    runGit(repo, GIT_ENV, "revert", "--no-edit", "HEAD");
    const head = runGit(repo, GIT_ENV, "rev-parse", "HEAD");
    const plan = await platform.plan(base, head);
    expect(modelOf(plan)?.build).toMatchObject({ action: "reuse", number: 1, phase: "Succeeded" });
    expect(modelOf(plan)?.buildKey.head).toBe(firstKey);
    expect(deploymentOf(plan)).toMatchObject({ effect: "rollout", build: { base: 2, head: 1 } });
    await servedAt(head);
    expect(platform.store.get("ModelDeployment", "default", "add")?.status?.build).toBe(1);
    expect(
      platform.store
        .list("ModelBuild", "default")
        .map((build) => build.spec.number)
        .sort(),
    ).toStrictEqual([1, 2]);
  }, 180_000);

  it("says a scale keeps the rollout, and the sync keeps its deploymentId", async () => {
    const before = platform.store.get("ModelDeployment", "default", "add")?.status?.deploymentId;
    const change = commit("two replicas", { "model.yaml": manifest(2) });
    const plan = await platform.plan(change.base, change.head);
    expect(deploymentOf(plan)).toMatchObject({ effect: "scale", replicas: { base: 1, head: 2 } });
    await servedAt(change.head);
    const deployment = platform.store.get("ModelDeployment", "default", "add");
    expect(deployment?.status?.deploymentId).toBe(before);
    expect(deployment?.status?.readyReplicas).toBe(2);
  }, 180_000);

  it("with predict, runs the example through both builds and says the answer moved", async () => {
    const withExample = manifest(2).replace(
      "  authentication:",
      "  example:\n    input: { a: 3, b: 5 }\n    output: 8\n  authentication:",
    );
    const change = commit("off by one", {
      "add_numbers.py": 'def add(args):\n    return args["a"] + args["b"] + 1\n',
      "model.yaml": withExample,
    });
    const plan = await platform.plan(change.base, change.head, { predict: true });
    expect(plan.predictions).toMatchObject([
      {
        model: "add",
        outcome: "compared",
        examples: 1,
        changed: 1,
        expectedMismatchCount: 1,
        differences: [
          { example: "spec.example", input: { a: 3, b: 5 }, base: 8, head: 9, maxDelta: 1 },
        ],
      },
    ]);
  }, 180_000);
});
