// `modelship up` end to end: a real git repository in a temp dir, the real command as a
// process, real builds, replicas and HTTP. One story, in order, as a user lives it.
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDeployment, ModelRepository } from "../controller/api/types.generated.ts";
import type { AdminFile } from "../controller/platform/local/admin.ts";
import { type CliProcess, runCli, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit, writeFiles } from "./helpers/git.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminFileOf, adminGet as adminGetOf, removeUpTestRoot, stopUp } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-up-"));
const repo = join(root, "repo");
const stateDir = join(root, "state");
let up: CliProcess;
let admin: AdminFile;

const GIT_ENV = gitEnv({ name: "Grace Hopper", email: "grace@example.com" });

function git(...args: string[]): string {
  return runGit(repo, GIT_ENV, ...args);
}

function write(path: string, text: string): void {
  writeFiles(repo, { [path]: text });
}

/** `sleep` (seconds) holds the call, so that calls at once overlap and take several replicas. */
function scoreFile(version: number): string {
  return `import time\n\ndef predict(args):\n    time.sleep(args.get("sleep", 0))\n    return {"version": ${version}, "sum": args["a"] + args["b"]}\n`;
}

const MANIFEST = `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: scorer
spec:
  runtime: python3
  file: score.py
  function: predict
  authentication:
    enabled: false
---
apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: scorer
spec:
  model: scorer
  replicas: REPLICAS
`;

function commit(message: string): string {
  return commitAll(repo, GIT_ENV, message);
}

const adminGet = <T>(path: string) => adminGetOf<T>(admin, path);

const deployment = () => adminGet<ModelDeployment>("/api/v1/modeldeployments/scorer");
const repository = () => adminGet<ModelRepository>("/api/v1/modelrepositories/local");
const buildCount = async () =>
  (await adminGet<{ items: unknown[] }>("/api/v1/modelbuilds")).items.length;
const hook = () => fetch(`${admin.url}/hooks/git`, { method: "POST" });

function call(request: unknown = { a: 1, b: 2 }) {
  return postJson(`${up.url}/models/scorer/predict`, request);
}

async function startUp(): Promise<void> {
  up = await startCli([
    "up",
    "--repo",
    repo,
    "--state-dir",
    stateDir,
    "--port",
    "0",
    "--interval",
    "1h",
  ]);
  admin = adminFileOf(stateDir);
}

async function deployedBuild(build: number): Promise<void> {
  await eventually(async () => {
    const current = await deployment();
    return current.status?.phase === "Deployed" && current.status.build === build;
  }, 120_000);
}

beforeAll(async () => {
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  write("score.py", scoreFile(1));
  write("model.yaml", MANIFEST.replace("REPLICAS", "3"));
  commit("scorer, version 1");
  await startUp();
}, 60_000);

afterAll(async () => {
  await stopUp(up);
  removeUpTestRoot(root);
}, 30_000);

describe("modelship up", () => {
  it("builds and deploys what the repository declares: calls come from 3 replicas", async () => {
    await deployedBuild(1);
    // Calls that overlap spread over the replicas (one at a time, they stay on a warm one).
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => call({ a: 1, b: 2, sleep: 0.2 })),
    );
    for (const answer of answers) {
      expect(answer.body).toMatchObject({ success: true, response: { version: 1, sum: 3 } });
    }
    expect(new Set(answers.map((answer) => answer.body.replicaId)).size).toBe(3);
    const listed = runCli(["get", "modeldeployments", "--state-dir", stateDir]);
    expect(listed.stdout).toMatch(/^NAME\s+MODEL\s+BUILD\s+READY\s+PHASE\s+URL\s+AGE$/m);
    expect(listed.stdout).toMatch(
      /^scorer\s+scorer\s+1\s+3\/3\s+Deployed\s+http:\/\/127\.0\.0\.1:\d+\/models\/scorer\/predict/m,
    );
  }, 180_000);

  it("rolls a code change out as build 2 with no failed call", async () => {
    const failures: unknown[] = [];
    const versions = new Set<number>();
    let calling = true;
    const caller = (async () => {
      while (calling) {
        const answer = await call();
        if (answer.status !== 200) failures.push(answer.body);
        else versions.add(answer.body.response.version);
      }
    })();
    write("score.py", scoreFile(2));
    commit("scorer, version 2");
    await hook();
    await deployedBuild(2);
    // The caller stays on a warm replica of build 1 while one serves: it may meet build 2 only
    // as the last of them goes. It calls on through the switch.
    await eventually(() => versions.has(2), 30_000);
    calling = false;
    await caller;
    expect(failures).toEqual([]);
    expect(versions).toEqual(new Set([1, 2]));
    expect((await call()).body.response.version).toBe(2);
    expect(await buildCount()).toBe(2);
  }, 180_000);

  it("rolls back on git revert without a new build", async () => {
    const before = (await deployment()).status?.deploymentId ?? 0;
    git("revert", "--no-edit", "HEAD");
    const reverted = Date.now();
    await hook();
    await eventually(async () => (await call()).body.response?.version === 1, 60_000);
    const seconds = (Date.now() - reverted) / 1000;
    console.log(`git revert → the old answer in ${seconds.toFixed(2)} s, with no build`);
    await deployedBuild(1);
    expect(await buildCount()).toBe(2);
    const status = (await deployment()).status;
    expect(status?.deploymentId).toBeGreaterThan(before);
    expect(status?.history?.map((record) => record.build)).toEqual([1, 2, 1]);
    expect(status?.history?.at(-1)?.deployedBy).toBe("Grace Hopper <grace@example.com>");
    expect(status?.history?.slice(0, -1).every((record) => record.stoppedAt)).toBe(true);
  }, 120_000);

  it("applies nothing from a commit with an invalid manifest, and says why", async () => {
    const good = (await repository()).status?.lastSyncedCommit;
    write("model.yaml", MANIFEST.replace("REPLICAS", "12"));
    write("score.py", scoreFile(3));
    const bad = commit("too many replicas");
    await hook();
    await eventually(async () => (await repository()).status?.lastAttemptedCommit === bad, 30_000);
    const status = (await repository()).status;
    expect(status?.lastSyncedCommit).toBe(good);
    expect(status?.lastSyncError).toContain(
      "model.yaml:18:13: ModelDeployment/scorer /spec/replicas:",
    );
    const table = runCli(["get", "modelrepositories", "--state-dir", stateDir]).stdout;
    expect(table).toMatch(/^local\s+\S+\s+main\s+[0-9a-f]{7}\s+False\s+/m);
    const described = runCli([
      "describe",
      "modelrepository",
      "local",
      "--state-dir",
      stateDir,
    ]).stdout;
    expect(described).toContain("ValidationFailed");
    expect(described).toContain("model.yaml:18:13");
    // What ran keeps running, unchanged.
    expect((await call()).body.response.version).toBe(1);
    expect(await buildCount()).toBe(2);
    git("revert", "--no-edit", "HEAD");
    await hook();
    await eventually(
      async () => (await repository()).status?.lastSyncedCommit === git("rev-parse", "HEAD"),
      30_000,
    );
  }, 60_000);

  it("marks a build whose script fails Failed with its last lines, and keeps serving", async () => {
    write("build.sh", "echo installing things\necho 'no such package: fancy' >&2\nexit 3\n");
    write("score.py", scoreFile(4));
    commit("a build that fails");
    await hook();
    await eventually(async () => {
      const build = await adminGet<{ status?: { phase?: string } }>("/api/v1/modelbuilds/scorer-3");
      return build.status?.phase === "Failed";
    }, 120_000);
    const described = runCli([
      "describe",
      "modelbuild",
      "scorer-3",
      "--state-dir",
      stateDir,
    ]).stdout;
    expect(described).toContain("exited with code 3");
    expect(described).toContain("no such package: fancy");
    expect((await call()).body.response.version).toBe(1);
    const status = (await deployment()).status;
    // The old build keeps serving, and the status says both: the wanted build failed for
    // good (Stalled, Ready=False, as kstatus has it; Degraded), and which build serves.
    expect(status?.phase).toBe("Degraded");
    expect(status?.servingBuild).toBe(1);
    expect(status?.ready).toBe("3/3");
    const condition = (type: string) => status?.conditions?.find((item) => item.type === type);
    expect(condition("Stalled")).toMatchObject({ status: "True", reason: "BuildFailed" });
    expect(condition("Ready")).toMatchObject({ status: "False", reason: "BuildFailed" });
    expect(condition("Ready")?.message).toMatch(
      /^build 1 keeps serving; build 3 failed: build script build.sh exited with code 3:\n/,
    );
    expect(condition("Reconciling")).toBeUndefined();
  }, 180_000);

  it("stops on spec.stopped, starts again, and restarts every replica on modelship.dev/restartedAt", async () => {
    const manifest = MANIFEST.replace("REPLICAS", "3");
    // Back to build 1's code: no build script, version 1.
    git("rm", "-q", "build.sh");
    write("score.py", scoreFile(1));
    write("model.yaml", `${manifest}  stopped: true\n`);
    commit("stop the scorer");
    await hook();
    await eventually(async () => (await deployment()).status?.phase === "Stopped", 60_000);
    const stopped = await call();
    expect([stopped.status, stopped.code]).toEqual([503, "model.stopped"]);

    write("model.yaml", manifest);
    commit("start it again");
    await hook();
    await deployedBuild(1);
    const started = (await deployment()).status;
    expect((await call()).body.response.version).toBe(1);

    write(
      "model.yaml",
      manifest.replace(
        "  name: scorer\nspec:\n  model:",
        '  name: scorer\n  annotations:\n    modelship.dev/restartedAt: "2026-11-24T12:00:00Z"\nspec:\n  model:',
      ),
    );
    commit("restart the scorer");
    await hook();
    await eventually(async () => {
      const status = (await deployment()).status;
      return status?.phase === "Deployed" && status.deploymentId !== started?.deploymentId;
    }, 60_000);
    // The last old replica may still be finishing its call; then only the new rollout's remain.
    const current = (await deployment()).status?.deploymentId;
    await eventually(async () => {
      const replicas = await adminGet<{ items: { deploymentId: number }[] }>(
        "/api/v1/modeldeployments/scorer/replicas",
      );
      return (
        replicas.items.length === 3 &&
        replicas.items.every((replica) => replica.deploymentId === current)
      );
    }, 30_000);
    // Restarting is not rebuilding: the build with this key exists already.
    expect((await deployment()).status?.build).toBe(1);
  }, 180_000);

  it("comes back after a restart with the same builds and deployment, rebuilding nothing", async () => {
    const before = await deployment();
    const builds = await buildCount();
    expect(await up.stop()).toBe(0);
    await startUp();
    // Ask the new instance's runtime, not the status the last one left in the store.
    await eventually(async () => {
      const replicas = await adminGet<{ items: { ready: boolean }[] }>(
        "/api/v1/modeldeployments/scorer/replicas",
      );
      return replicas.items.filter((replica) => replica.ready).length === 3;
    }, 60_000);
    const after = await deployment();
    expect(after.status?.deploymentId).toBe(before.status?.deploymentId);
    expect(after.status?.build).toBe(before.status?.build);
    expect(await buildCount()).toBe(builds);
    expect((await call()).body.response.version).toBe(1);
    expect(up.stdout()).not.toMatch(/new build|started \(commit/);
  }, 120_000);

  it("keeps the old build serving when a new one cannot load, across a restart too", async () => {
    // Valid manifests and a function that exists: only loading it fails.
    write("score.py", `import no_such_module\n\n${scoreFile(5)}`);
    commit("an import that fails");
    await hook();
    await eventually(async () => (await deployment()).status?.phase === "Degraded", 120_000);
    const failed = await deployment();
    expect(failed.status).toMatchObject({ servingBuild: 1, ready: "3/3" });
    expect(
      failed.status?.conditions?.find((condition) => condition.type === "Ready")?.message,
    ).toContain("no_such_module");
    expect((await call()).body.response.version).toBe(1);

    expect(await up.stop()).toBe(0);
    await startUp();
    try {
      await eventually(async () => (await call()).status === 200, 60_000);
      expect((await call()).body.response.version).toBe(1);
      git("revert", "--no-edit", "HEAD");
      await hook();
      await eventually(async () => {
        const status = (await deployment()).status;
        return status?.phase === "Deployed" && status.build === 1;
      }, 60_000);
    } catch (error) {
      console.log(
        `scorer at the failure: ${JSON.stringify((await deployment()).status)}\n${up.stdout()}`,
      );
      throw error;
    }
  }, 240_000);

  it("answers the CLI: call, logs, keys and apikeys", async () => {
    const cli = (...args: string[]) => runCli([...args, "--state-dir", stateDir]);
    const called = cli("call", "scorer", '{"a": 20, "b": 22}');
    expect(called.exitCode).toBe(0);
    expect(JSON.parse(called.stdout).response).toEqual({ version: 1, sum: 42 });

    const logs = cli("logs", "scorer").stdout;
    expect(logs).toMatch(/ \[agent\] worker 1 is ready: predict loaded from score.py$/m);

    const accessKey = cli("keys", "show", "scorer").stdout.trim();
    expect(accessKey).toMatch(/^[a-z2-7]{32}$/);
    const viaKey = await postJson(`${up.url}/model`, { accessKey, request: { a: 1, b: 1 } });
    expect(viaKey.body.response.sum).toBe(2);
    const rotated = cli("keys", "rotate", "scorer").stdout.trim();
    expect(rotated).not.toBe(accessKey);
    expect((await postJson(`${up.url}/model`, { accessKey, request: { a: 1, b: 1 } })).code).toBe(
      "auth.invalid_key",
    );

    const apiKey = cli("apikeys", "create", "--user", "alice", "--expires", "30d").stdout.trim();
    expect(apiKey).toMatch(/^msk_[a-z2-7]+_[a-z2-7]{32}$/);
    const listed = cli("apikeys", "list").stdout;
    expect(listed).toMatch(/^ID\s+USER\s+CREATED\s+EXPIRES$/m);
    expect(listed).toContain("alice");
    expect(listed).not.toContain(apiKey);
    const id = apiKey.split("_")[1] as string;
    expect(cli("apikeys", "delete", id).exitCode).toBe(0);
    expect(cli("apikeys", "list").stdout).not.toContain(id);
    // Nothing secret in what `modelship up` printed.
    expect(up.stdout()).not.toContain(accessKey);
    expect(up.stdout()).not.toContain(apiKey);
  }, 60_000);

  it("makes one rollout from a commit that changes both code and deployment, and rebuilds on modelship.dev/rebuild", async () => {
    const before = (await deployment()).status;
    const builds = await buildCount();
    const manifest = MANIFEST.replace("REPLICAS", "3");
    write("score.py", scoreFile(6));
    write("model.yaml", `${manifest}  env:\n    GREETING: hello\n`);
    commit("version 6, with an env");
    await hook();
    await deployedBuild(builds + 1);
    const after = (await deployment()).status;
    // The settings did not roll out on the old build first: one commit, one rollout.
    expect(after?.history?.length).toBe((before?.history?.length ?? 0) + 1);
    expect((await call()).body.response.version).toBe(6);

    write(
      "model.yaml",
      `${manifest.replace("  name: scorer\nspec:\n  runtime", '  name: scorer\n  annotations:\n    modelship.dev/rebuild: "1"\nspec:\n  runtime')}  env:\n    GREETING: hello\n`,
    );
    commit("rebuild, same code");
    await hook();
    await deployedBuild(builds + 2);
    expect((await call()).body.response.version).toBe(6);

    git("revert", "--no-edit", "HEAD", "HEAD~1");
    await hook();
    await deployedBuild(before?.build ?? 0);
    expect(await buildCount()).toBe(builds + 2);
  }, 240_000);

  it("prunes what git no longer declares: the deployment, its replicas and its route", async () => {
    git("rm", "-q", "model.yaml");
    commit("retire the scorer");
    await hook();
    await eventually(async () => (await call()).code === "model.not_found", 60_000);
    const listed = await adminGet<{ items: unknown[] }>("/api/v1/modeldeployments");
    expect(listed.items).toEqual([]);
    // The builds stay: they are the history a revert would roll out again.
    expect(await buildCount()).toBeGreaterThan(0);
  }, 60_000);

  it("refuses a rewritten history (force push), and applies nothing from it", async () => {
    const synced = (await repository()).status?.lastSyncedCommit;
    write("score.py", scoreFile(9));
    git("add", "-A");
    git("commit", "-q", "--amend", "-m", "history, rewritten");
    const rewritten = git("rev-parse", "HEAD");
    await hook();
    await eventually(
      async () => (await repository()).status?.lastAttemptedCommit === rewritten,
      30_000,
    );
    const status = (await repository()).status;
    expect(status?.lastSyncedCommit).toBe(synced);
    expect(status?.lastSyncError).toContain("was rewritten");
    expect(status?.lastSyncError).toContain("modelship.dev/allow-rewrite");
  }, 60_000);
});
