// The first hour, end to end, as a newcomer lives it: `modelship up` run in the repository
// itself with no flags for state, on a machine without R; three models in one tree (one at the
// root, one R model and one Python model in subdirectories); then the everyday CDSW pieces —
// sample calls, the example call, the admin overview, a restart under load, a rollout that
// fails while the old build keeps serving, and a revert.
import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Model, ModelBuild, ModelDeployment } from "../controller/api/types.generated.ts";
import type { AdminFile } from "../controller/platform/local/admin.ts";
import { type CliProcess, runCli, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { freePort } from "./helpers/ports.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminGet as adminGetOf, removeUpTestRoot, stopUp } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-first-hour-"));
// The model user (nobody, under root) finds its programs through the PATH made below.
chmodSync(root, 0o755);
const repo = join(root, "models");
const stateHome = join(root, "state-home");
const GIT_ENV = gitEnv({ name: "Katherine Johnson", email: "katherine@example.com" });

/** Whether every user may go through `directory` (and all above it): the model user must. */
function everyoneCanReach(directory: string): boolean {
  for (let at = directory; ; at = dirname(at)) {
    try {
      if ((statSync(at).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (dirname(at) === at) return true;
  }
}

/**
 * This machine's PATH with R taken away, as the model user would search it: a directory of
 * links to everything else it can reach.
 */
function pathWithout(programs: string[]): string {
  const bin = join(root, "bin-without-r");
  mkdirSync(bin, { recursive: true });
  for (const directory of (process.env.PATH ?? "").split(delimiter)) {
    if (!everyoneCanReach(directory)) continue;
    let names: string[];
    try {
      names = readdirSync(directory);
    } catch {
      continue;
    }
    for (const name of names) {
      if (programs.includes(name)) continue;
      try {
        symlinkSync(join(directory, name), join(bin, name));
      } catch {
        // Taken by an earlier directory of PATH, as the shell would pick it.
      }
    }
  }
  return bin;
}

const ENV = {
  XDG_STATE_HOME: stateHome,
  PATH: pathWithout(["R", "Rscript"]),
  MODELSHIP_STATE_DIR: "",
};

const SCORER = `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: scorer
spec:
  runtime: python3
  file: score.py
  function: predict
  example:
    input: {"a": 1, "b": 2}
    output: {"sum": 3}
---
apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: scorer
spec:
  model: scorer
  replicas: 3
  maxRequestBytes: 8388608
  resources:
    cpu: 500m
    memory: 1Gi
`;

const R_MODEL = `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: rmodel
spec:
  runtime: r
  file: model.R
  function: predict
  authentication:
    enabled: false
---
apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: rmodel
spec:
  model: rmodel
`;

const score = (version: number) =>
  `def predict(args):\n    return {"version": ${version}, "sum": args["a"] + args["b"]}\n`;

let up: CliProcess;
let admin: AdminFile;
let apiKey: string;
let adminPort: number;

const git = (...args: string[]) => runGit(repo, GIT_ENV, ...args);
const commit = (message: string, files: Record<string, string | null> = {}) =>
  commitAll(repo, GIT_ENV, message, files);
/** A client command as the user types it: in the repository, no --state-dir. */
const cli = (...args: string[]) => runCli(args, { cwd: repo, env: ENV });

const adminGet = <T>(path: string) => adminGetOf<T>(admin, path);
const deployment = (name = "scorer") =>
  adminGet<ModelDeployment>(`/api/v1/modeldeployments/${name}`);
const model = (name: string) => adminGet<Model>(`/api/v1/models/${name}`);
const build = (name: string) => adminGet<ModelBuild>(`/api/v1/modelbuilds/${name}`);
const hook = () => fetch(`${admin.url}/hooks/git`, { method: "POST" });
const call = () =>
  postJson(
    `${up.url}/models/scorer/predict`,
    { a: 1, b: 2 },
    { authorization: `Bearer ${apiKey}` },
  );

async function synced(): Promise<void> {
  await hook();
  const head = git("rev-parse", "HEAD");
  await eventually(async () => {
    const repository = await adminGet<{ status?: { lastSyncedCommit?: string } }>(
      "/api/v1/modelrepositories/local",
    );
    return repository.status?.lastSyncedCommit === head;
  }, 30_000);
}

beforeAll(async () => {
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commit("three models", {
    "score.py": score(1),
    "model.yaml": SCORER,
    "build.sh": "#!/bin/sh\necho hello from the build script\n",
    "r/model.R": "predict <- function(args) list(ok = TRUE)\n",
    "r/model.yaml": R_MODEL,
    "other/other.py": "def predict(args):\n    return 1\n",
    "other/model.yaml": openModelManifest({ name: "other", file: "other.py", function: "predict" }),
  });
  adminPort = await freePort();
  up = await startCli(
    ["up", "--port", "0", "--admin-port", String(adminPort), "--interval", "1h"],
    { cwd: repo, env: ENV },
  );
  const [stateDir] = readdirSync(join(stateHome, "modelship"));
  admin = JSON.parse(
    readFileSync(join(stateHome, "modelship", stateDir as string, "admin.json"), "utf8"),
  ) as AdminFile;
  apiKey = cli("apikeys", "create", "--user", "katherine").stdout.trim();
}, 60_000);

afterAll(async () => {
  await stopUp(up);
  removeUpTestRoot(root);
}, 30_000);

describe("the first hour", () => {
  it("keeps its state outside the work tree and listens where it was told", async () => {
    await eventually(async () => (await deployment()).status?.phase === "Deployed", 120_000);
    expect(git("status", "--porcelain")).toBe("");
    expect(admin.url).toBe(`http://127.0.0.1:${adminPort}`);
    expect(up.stdout()).toContain(`state in ${join(stateHome, "modelship")}`);
  }, 180_000);

  it("streams the build script's output to the console and to logs --build", () => {
    expect(up.stdout()).toMatch(/scorer build 1 \| hello from the build script/);
    expect(up.stdout()).toMatch(/deployment default\/scorer: rollout \d+ of build 1: 3\/3 ready/);
    const logs = cli("logs", "scorer", "--build", "1");
    expect(logs.exitCode).toBe(0);
    expect(logs.stdout).toContain("hello from the build script");
  });

  it("fails an R build at once when Rscript is missing, naming it", async () => {
    await eventually(async () => (await build("rmodel-1")).status?.phase === "Failed", 60_000);
    const status = (await build("rmodel-1")).status;
    expect(status?.message).toMatch(/Rscript is not on PATH: install R/);
    const seconds =
      (Date.parse(status?.completedAt ?? "") - Date.parse(status?.startedAt ?? "")) / 1000;
    expect(seconds).toBeLessThan(10);
    // The console says so too, with the line that names it.
    expect(up.stdout()).toMatch(/WARNING ModelBuild default\/rmodel-1: BuildFailed/);
    expect(up.stdout()).toContain("Rscript is not on PATH");
  }, 90_000);

  it("says once what it does with resources it cannot enforce", () => {
    const said = up.stdout().match(/deployment default\/scorer: under modelship up, .*/g) ?? [];
    expect(said).toHaveLength(1);
    expect(said[0]).toContain("memory 1Gi is enforced per replica");
    expect(said[0]).toContain("cpu 500m is not enforced");
  });

  it("calls with the example when given no JSON, and prints sample calls that answer", async () => {
    const called = runCli(["call", "scorer", "--api-key", apiKey], { cwd: repo, env: ENV });
    expect(called.exitCode).toBe(0);
    expect(JSON.parse(called.stdout)).toMatchObject({ success: true, response: { sum: 3 } });

    const masked = cli("describe", "model", "scorer").stdout;
    const accessKey = cli("keys", "show", "scorer").stdout.trim();
    expect(masked).toContain("Sample calls:");
    expect(masked).not.toContain(accessKey);

    const shown = cli("describe", "model", "scorer", "--show-key").stdout;
    const curl = shown.split("\n").find((line) => line.trim().startsWith("curl "));
    expect(curl).toContain(accessKey);
    const run = spawnSync("sh", ["-c", curl as string], {
      encoding: "utf8",
      env: { ...process.env, MODELSHIP_API_KEY: apiKey },
    });
    expect(JSON.parse(run.stdout)).toMatchObject({ success: true, response: { sum: 3 } });

    // Given the API key too, the line carries it: it answers in a shell that has none.
    const filled = runCli(["describe", "model", "scorer", "--show-key"], {
      cwd: repo,
      env: { ...ENV, MODELSHIP_API_KEY: apiKey },
    }).stdout;
    const own = filled.split("\n").find((line) => line.trim().startsWith("curl ")) as string;
    expect(own).toContain(apiKey);
    const { MODELSHIP_API_KEY: _, ...withoutKey } = process.env;
    const alone = spawnSync("sh", ["-c", own], { encoding: "utf8", env: withoutKey });
    expect(JSON.parse(alone.stdout)).toMatchObject({ success: true, response: { sum: 3 } });
  }, 60_000);

  it("takes a body up to its deployment's maxRequestBytes, above the gateway's 5 MiB", async () => {
    const body = (megabytes: number) => ({ a: 1, b: 2, pad: "x".repeat(megabytes * 1024 * 1024) });
    const headers = { authorization: `Bearer ${apiKey}` };
    const large = await postJson(`${up.url}/models/scorer/predict`, body(6), headers);
    expect(large.body).toMatchObject({ success: true, response: { sum: 3 } });
    const tooLarge = await postJson(`${up.url}/models/scorer/predict`, body(9), headers);
    expect([tooLarge.status, tooLarge.code]).toEqual([413, "request.too_large"]);
    expect(tooLarge.body.message).toContain("8 MB");
  }, 60_000);

  it("builds nothing for a commit that touches only another model's directory", async () => {
    await eventually(async () => (await model("other")).status?.latestBuild === 1, 60_000);
    commit("change only the other model", {
      "other/other.py": "def predict(args):\n    return 2\n",
      "r/model.R": "predict <- function(args) list(ok = FALSE)\n",
    });
    await synced();
    await eventually(async () => (await model("other")).status?.latestBuild === 2, 60_000);
    const scorer = await model("scorer");
    expect(scorer.status?.sourceCommit).toBe(git("rev-parse", "HEAD"));
    expect(scorer.status?.latestBuild).toBe(1);
    const builds = await adminGet<{ items: ModelBuild[] }>("/api/v1/modelbuilds");
    expect(builds.items.filter((item) => item.spec.model === "scorer")).toHaveLength(1);
  }, 120_000);

  it("shows the admin overview: active models, replicas and what they request", () => {
    const top = cli("top");
    expect(top.exitCode).toBe(0);
    expect(top.stdout).toMatch(/^scorer\s+scorer\s+1\s+3\/3\s+1500m\s+3Gi\s+Deployed$/m);
    expect(top.stdout).toMatch(/Total: 3 active models, 5 replicas/);
  });

  it("restarts every replica with rollout restart, failing no call of a steady caller", async () => {
    const before = (await deployment()).status?.deploymentId;
    let running = true;
    const failures: string[] = [];
    let calls = 0;
    const caller = async () => {
      while (running) {
        const answer = await call();
        calls += 1;
        if (answer.status !== 200) failures.push(`${answer.status} ${answer.code}`);
      }
    };
    const callers = [caller(), caller()];
    const restarted = cli("rollout", "restart", "scorer");
    expect(restarted).toMatchObject({ exitCode: 0 });
    expect(restarted.stdout).toContain("modeldeployment.modelship.dev/scorer restarted");
    await eventually(async () => {
      const status = (await deployment()).status;
      return status?.phase === "Deployed" && status.deploymentId !== before;
    }, 120_000);
    running = false;
    await Promise.all(callers);
    expect(failures).toStrictEqual([]);
    expect(calls).toBeGreaterThan(10);
    // An operation, not a commit: the tree is as it was, and the next sync keeps the restart.
    expect(git("status", "--porcelain")).toBe("");
    const restartedId = (await deployment()).status?.deploymentId;
    const unrelated = commit("an unrelated commit");
    await synced();
    // Once the deployment has been looked at for that commit, it has made no new rollout.
    await eventually(async () => {
      const current = await deployment();
      return (
        current.metadata.annotations?.["modelship.dev/commit"] === unrelated &&
        current.status?.observedGeneration === current.metadata.generation &&
        current.status?.phase === "Deployed"
      );
    }, 30_000);
    expect((await deployment()).status?.deploymentId).toBe(restartedId);
  }, 180_000);

  it("keeps the old build serving 3/3 when a newer rollout fails, and says both", async () => {
    commit("a syntax error", { "score.py": "def predict(args:\n" });
    await synced();
    await eventually(async () => (await deployment()).status?.phase === "Degraded", 150_000);
    const status = (await deployment()).status;
    expect(status).toMatchObject({ servingBuild: 1, build: 2, ready: "3/3" });
    const stalled = status?.conditions?.find((condition) => condition.type === "Stalled");
    expect(stalled).toMatchObject({ status: "True", reason: "RolloutFailed" });
    expect(stalled?.message).toMatch(/^build 1 keeps serving; the rollout of build 2 failed: /);
    expect((await call()).body.response.version).toBe(1);

    const table = cli("get", "md", "scorer").stdout;
    expect(table).toMatch(/^scorer\s+scorer\s+1\s+3\/3\s+Degraded\s/m);
    const described = cli("describe", "md", "scorer").stdout;
    expect(described).toContain("Serving:      build 1 on 3/3 replicas");
    expect(described).toMatch(
      /Failing: {6}RolloutFailed: build 1 keeps serving; the rollout of build 2/,
    );
  }, 240_000);

  it("records the revert that rolled back, and the commit the build was made from", async () => {
    const first = git("rev-list", "--max-parents=0", "HEAD");
    git("revert", "--no-edit", "HEAD");
    const revert = git("rev-parse", "HEAD");
    await synced();
    await eventually(async () => {
      const status = (await deployment()).status;
      return status?.phase === "Deployed" && status.build === 1 && status.servingBuild === 1;
    }, 120_000);
    const history = (await deployment()).status?.history ?? [];
    expect(history.at(-1)).toMatchObject({ build: 1, commit: revert, buildCommit: first });
  }, 180_000);
});
