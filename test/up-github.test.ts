// `modelship up --github-repo` against a fake GitHub API (helpers/fake-github.ts): each synced
// commit gets a commit status and a deployment that turns success once the model serves it, a
// refused commit a failure status with the reason; a signed pull_request delivery to the admin
// API's /hooks/git gets a check run and the sticky comment; a push delivery fetches at once.
// Without credentials, up refuses to start.

import { execFileSync } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdminFile } from "../controller/platform/local/admin.ts";
import { type CliProcess, runCli, startCli } from "./helpers/cli.ts";
import { FakeGitHub } from "./helpers/fake-github.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminFileOf, removeUpTestRoot, stopUp } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-github-"));
const repo = join(root, "repo");
const stateDir = join(root, "state");
const TOKEN = "ghp_upTestTokenNeverLogged";
const SECRET = "the-webhook-secret";
const GIT_ENV = gitEnv({ name: "Katherine Johnson", email: "katherine@example.com" });
const CONTEXT = "modelship/sync/default/local";
let github: FakeGitHub;
let up: CliProcess;
let admin: AdminFile;
let first: string;

/** A delivery to the admin API's /hooks/git, signed as GitHub signs it. */
function deliver(event: string, payload: unknown): Promise<Response> {
  const body = JSON.stringify(payload);
  return fetch(`${admin.url}/hooks/git`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
    },
    body,
  });
}

const ours = { repository: { full_name: "acme/models" } };

beforeAll(async () => {
  github = await new FakeGitHub({ owner: "acme", repo: "models", token: TOKEN }).start();
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  first = commitAll(repo, GIT_ENV, "echo", {
    "echo.py": "def echo(args):\n    return args\n",
    "model.yaml": openModelManifest({ name: "echo", file: "echo.py", function: "echo" }),
  });
  up = await startCli(
    [
      ...["up", "--repo", repo, "--state-dir", stateDir, "--port", "0", "--interval", "1h"],
      ...["--github-repo", "acme/models"],
    ],
    {
      env: {
        GITHUB_TOKEN: TOKEN,
        GITHUB_API_URL: github.url,
        MODELSHIP_WEBHOOK_SECRET: SECRET,
      },
    },
  );
  admin = adminFileOf(stateDir);
}, 30_000);

afterAll(async () => {
  await stopUp(up);
  await github?.close();
  removeUpTestRoot(root);
}, 30_000);

describe("modelship up --github-repo", () => {
  it("refuses to start without GitHub credentials, naming GITHUB_TOKEN", () => {
    const run = runCli(["up", "--repo", repo, "--github-repo", "acme/models"], {
      env: { GITHUB_TOKEN: "", GITHUB_APP_ID: "" },
    });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain("GITHUB_TOKEN");
  });

  it("posts a commit status for the sync, and a deployment that succeeds once the model serves", async () => {
    await eventually(
      async () => (await postJson(`${up.url}/models/echo/predict`, { a: 1 })).status === 200,
      90_000,
    );
    await eventually(() => github.deployments[0]?.statuses.at(-1)?.state === "success", 10_000);
    expect(github.statuses).toContainEqual({
      sha: first,
      state: "success",
      context: CONTEXT,
      description: "applied 2 objects",
    });
    expect(github.deployments).toMatchObject([
      {
        sha: first,
        environment: "modelship/default/local",
        statuses: [
          { state: "in_progress", description: "rolling out" },
          { state: "success", description: "serving: echo build 1" },
        ],
      },
    ]);
    expect(
      github.requests.every((request) => request.headers.authorization === `token ${TOKEN}`),
    ).toBe(true);
    expect(up.stdout()).not.toContain(TOKEN);
  }, 120_000);

  it("plans a signed pull_request delivery to /hooks/git: a check run and one comment, edited on the next push", async () => {
    // The pull request's branch: a code change (a new build), then a typo in the function name.
    runGit(repo, GIT_ENV, "checkout", "-q", "-b", "feature");
    const change = commitAll(repo, GIT_ENV, "echo: wrap", {
      "echo.py": 'def echo(args):\n    return {"echo": args}\n',
    });
    const renamed = openModelManifest({ name: "echo", file: "echo.py", function: "ech" });
    const typo = commitAll(repo, GIT_ENV, "echo: rename", { "model.yaml": renamed });
    const functionLine = renamed.split("\n").indexOf("  function: ech") + 1;
    runGit(repo, GIT_ENV, "checkout", "-q", "main");
    const opened = (head: string, action: string) =>
      deliver("pull_request", {
        action,
        pull_request: {
          number: 3,
          base: { sha: first, ref: "main" },
          head: { sha: head, ref: "feature" },
        },
        ...ours,
      });

    expect((await opened(change, "opened")).status).toBe(202);
    await eventually(() => github.comments.length === 1, 20_000);
    expect(github.checkRuns).toMatchObject([
      {
        name: "modelship/plan",
        head_sha: change,
        conclusion: "success",
        output: { title: "1 new build, 1 rollout" },
      },
    ]);
    const comment = github.comments[0];
    expect(comment?.body).toMatch(/^<!-- modelship:plan -->\n/);
    expect(comment?.body).toContain(
      "| `echo` | new build 2 (its code or build settings changed) |",
    );
    expect(comment?.body).toContain("| `echo` | new rollout: build 1 → 2 |");

    expect((await opened(typo, "synchronize")).status).toBe(202);
    await eventually(() => github.checkRuns.length === 2, 20_000);
    await eventually(() => github.comments[0]?.body.includes("❌") === true, 10_000);
    // Edited in place: still one comment, now with the problem.
    expect(github.comments).toHaveLength(1);
    expect(github.comments[0]?.body).toContain('/spec/function: function "ech" is not defined');
    const failed = github.checkRuns[1];
    expect(failed).toMatchObject({ head_sha: typo, conclusion: "failure" });
    expect(failed?.annotations).toMatchObject([
      {
        path: "model.yaml",
        annotation_level: "failure",
        start_line: functionLine,
        end_line: functionLine,
      },
    ]);
    expect(String(failed?.annotations[0]?.message)).toContain(
      'Model/echo /spec/function: function "ech"',
    );
  }, 60_000);

  it("fetches on a push delivery, and posts a failure status with the reason for a commit it refuses", async () => {
    const broken = commitAll(repo, GIT_ENV, "broken", { "model.yaml": "kind: Model\n" });
    expect((await deliver("push", { ref: "refs/heads/main", after: broken, ...ours })).status).toBe(
      202,
    );
    await eventually(() => github.statuses.some((status) => status.sha === broken), 10_000);
    const status = github.statuses.find((entry) => entry.sha === broken);
    expect(status).toMatchObject({ state: "failure", context: CONTEXT });
    expect(status?.description).toMatch(/problem.*nothing from it is applied/);
    // Refused: the deployment of the commit that serves stays the only one.
    expect(github.deployments).toHaveLength(1);
  });
});
