// Under `modelship up`, a Python model's replicas are forked from one preloaded parent: the file
// is loaded once for two replicas, both workers are children of a fork_server (run as the model
// user when up runs as root), and a rollback to a build whose parent is still kept forks its
// replicas instead of loading the file again. The real command, real git, a real build.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminFileOf, removeUpTestRoot, stopUp } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-up-preloaded-"));
const GIT_ENV = gitEnv({ name: "Dorothy Vaughan", email: "dorothy@example.com" });
/** Where the model notes each load of its file: a place the model user may write. */
const journalDir = mkdtempSync(join(tmpdir(), "modelship-loads-"));
chmodSync(journalDir, 0o777);
const journal = join(journalDir, "loads.txt");

afterAll(() => {
  removeUpTestRoot(root);
  rmSync(journalDir, { recursive: true, force: true });
});

// Each call takes 50 ms, so that two calls at once are on two replicas.
const predict = (version: number) => `import os
import time
with open(${JSON.stringify(journal)}, "a") as out:
    out.write("${version}\\n")

def predict(args):
    time.sleep(0.05)
    with open("/proc/%d/cmdline" % os.getppid(), "rb") as f:
        parent = f.read().decode().replace("\\0", " ")
    return {"version": ${version}, "pid": os.getpid(), "ppid": os.getppid(), "parent": parent, "uid": os.getuid()}
`;

const loads = () => readFileSync(journal, "utf8").trim().split("\n");

describe("replicas under modelship up", () => {
  it("are forked from one preloaded parent, and a rollback forks from the kept one", async () => {
    writeFileSync(journal, "");
    chmodSync(journal, 0o666);
    const repo = join(root, "repo");
    execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
    const manifest = openModelManifest({
      name: "forked",
      file: "predict.py",
      function: "predict",
      replicas: 2,
    });
    commitAll(repo, GIT_ENV, "version 1", { "model.yaml": manifest, "predict.py": predict(1) });
    const up = await startCli([
      ...["up", "--repo", repo, "--state-dir", join(root, "state"), "--port", "0"],
      ...["--interval", "1h"],
    ]);
    try {
      const admin = adminFileOf(join(root, "state"));
      const call = async () =>
        (await postJson(`${admin.gatewayUrl}/models/forked/predict`, {})).body.response as {
          version: number;
          pid: number;
          ppid: number;
          parent: string;
          uid: number;
        };
      const seen = new Map<number, Awaited<ReturnType<typeof call>>>();
      await eventually(async () => {
        const answers = await Promise.all([call(), call()].map((p) => p.catch(() => undefined)));
        for (const answer of answers) if (answer?.version === 1) seen.set(answer.pid, answer);
        return seen.size === 2;
      }, 120_000);
      const [first, second] = [...seen.values()];
      expect(first?.ppid).toBe(second?.ppid);
      expect(first?.parent).toContain("modelship.fork_server");
      expect(loads()).toEqual(["1"]);
      if (process.getuid?.() === 0) expect(first?.uid).not.toBe(0);

      // A new version loads its own file once; reverting it brings back version 1, whose
      // parent is still kept: its replicas are forked, the file is not loaded again. The branch
      // is watched, so neither waits for the hour's poll.
      writeFileSync(join(repo, "predict.py"), predict(2));
      runGit(repo, GIT_ENV, "commit", "-qam", "version 2");
      await eventually(async () => (await call().catch(() => undefined))?.version === 2, 120_000);
      expect(loads()).toEqual(["1", "2"]);
      runGit(repo, GIT_ENV, "revert", "--no-edit", "HEAD");
      await eventually(async () => {
        const answers = await Promise.all([call(), call()].map((p) => p.catch(() => undefined)));
        return answers.every((answer) => answer?.version === 1);
      }, 120_000);
      expect(loads()).toEqual(["1", "2"]);
    } finally {
      await stopUp(up);
    }
  }, 300_000);
});
