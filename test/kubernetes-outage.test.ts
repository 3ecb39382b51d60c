// `modelship controller` as a process, over time and through an API server outage: its watches
// renew (a short relist interval and watch timeout stand in for the 10-minute relist that once
// set off a restart loop) without ever restarting, and when the API server is away for 30 s the
// controller loses its lease, campaigns again rather than exiting, and reconciles the next commit.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, PROJECT_ROOT, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";
import { modelRepositoryJson } from "./helpers/manifests.ts";
import { eventually } from "./helpers/replica.ts";
import { startCluster, type TestCluster } from "./k8s/cluster.ts";

const NAMESPACE = "outage";
const root = mkdtempSync(join(tmpdir(), "modelship-outage-"));
const repo = join(root, "repo");
const GIT_ENV = gitEnv({ name: "Dorothy Vaughan", email: "dorothy@example.com" });
let cluster: TestCluster;
let controller: CliProcess;

const manifest = `apiVersion: modelship.dev/v1alpha1
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
  replicas: 2
`;
const score = (version: number) => `def predict(args):\n    return {"version": ${version}}\n`;

/** A watch that broke or a list that failed: what a restart loop writes, over and over. */
const RESTART_LINE = /watch of .* broke|listing again|cannot list|periodic list of .* failed/;

async function deployedBuild(build: number, ms: number): Promise<void> {
  await eventually(async () => {
    const result = await cluster.kubectlAsync([
      ...["get", "md", "scorer", "-n", NAMESPACE, "-o"],
      "jsonpath={.status.phase} {.status.build}",
    ]);
    return result.stdout === `Deployed ${build}`;
  }, ms);
}

beforeAll(async () => {
  cluster = await startCluster({ nodes: 1 });
  const crds = await cluster.kubectlAsync(["apply", "-f", join(PROJECT_ROOT, "crds")]);
  expect(crds.status, crds.stderr).toBe(0);
  await cluster.kubectlAsync(["wait", "--for=condition=Established", "crd", "--all"]);
  await cluster.kubectlAsync(["create", "namespace", NAMESPACE]);
  // Where build Jobs run (the installation makes it: kustomize/base/namespace.yaml).
  await cluster.kubectlAsync(["create", "namespace", "modelship-builds"]);
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "scorer, version 1", { "score.py": score(1), "model.yaml": manifest });
  const repository = await cluster.kubectlAsync(
    ["apply", "-f", "-"],
    modelRepositoryJson({ name: "models", namespace: NAMESPACE, url: repo, interval: "1s" }),
  );
  expect(repository.status, repository.stderr).toBe(0);
  controller = await startCli(
    [
      "controller",
      ...["--kubeconfig", cluster.kubeconfigPath, "--namespace", NAMESPACE],
      ...["--port", "0", "--host", "127.0.0.1", "--cache-dir", join(root, "cache")],
    ],
    { env: { MODELSHIP_RELIST_INTERVAL: "2s", MODELSHIP_WATCH_TIMEOUT: "4s" } },
  );
  await deployedBuild(1, 60_000);
}, 240_000);

afterAll(async () => {
  const code = await controller?.stop();
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
  if (process.env.MODELSHIP_K8S_DEBUG) console.log(controller?.stdout());
  expect(code).toBe(0);
}, 60_000);

describe("modelship controller over time", () => {
  it("renews its watches every few seconds for 30 s with no restart, and still follows git", async () => {
    const before = controller.stdout().length;
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    const lines = controller.stdout().slice(before).split("\n");
    expect(lines.filter((line) => RESTART_LINE.test(line))).toStrictEqual([]);
    commitAll(repo, GIT_ENV, "scorer, version 2", { "score.py": score(2) });
    await deployedBuild(2, 30_000);
  }, 90_000);

  it("survives the API server stopped for 30 s: campaigns again, never exits, and reconciles the next commit", async () => {
    await cluster.stopApiServer();
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    expect(controller.child.exitCode).toBeNull();
    await cluster.startApiServer();
    commitAll(repo, GIT_ENV, "scorer, version 3", { "score.py": score(3) });
    await deployedBuild(3, 120_000);
    const log = controller.stdout();
    expect(log).toContain("lost the leader lease");
    expect(log.match(/leading as /g)?.length).toBe(2);
    expect(controller.child.exitCode).toBeNull();
    const ready = await fetch(`${controller.url}/readyz`);
    expect(ready.status).toBe(200);
  }, 240_000);
});
