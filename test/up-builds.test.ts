// Builds under `modelship up` are bounded and owned: a build past its deadline fails with that
// reason, a build whose Model goes away is killed with everything it started, no more than
// --max-builds run at once, and SIGTERM while a build runs stops it, answers the call in flight
// and exits 0. The real command, real git, real build scripts.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelBuild } from "../controller/api/types.generated.ts";
import type { AdminFile } from "../controller/platform/local/admin.ts";
import { type CliProcess, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminFileOf, adminGet, removeUpTestRoot } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-builds-"));
const GIT_ENV = gitEnv({ name: "Christine Darden", email: "christine@example.com" });
/** Where build scripts note when they start and end: a place the model user may write. */
const journal = join(mkdtempSync(join(tmpdir(), "modelship-journal-")), "journal.txt");

const model = (name: string, options: { buildScript?: boolean; replicas?: number } = {}) =>
  openModelManifest({
    name,
    file: "predict.py",
    function: "predict",
    sourcePath: name,
    buildScript: options.buildScript ? "build.sh" : undefined,
    replicas: options.replicas ?? 1,
  });

const slowPredict =
  "import time\ndef predict(args):\n    time.sleep(args.get('sleep', 0))\n    return {'ok': True}\n";

/** Processes whose command line holds `marker`, by pid. */
function processesWith(marker: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        // Arguments are NUL-separated.
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

interface Up {
  repo: string;
  up: CliProcess;
  admin: AdminFile;
  get<T>(path: string): Promise<T>;
}

async function startUp(name: string, files: Record<string, string>, flags: string[]): Promise<Up> {
  const repo = join(root, name, "repo");
  const stateDir = join(root, name, "state");
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "first", files);
  const up = await startCli([
    ...["up", "--repo", repo, "--state-dir", stateDir, "--port", "0", "--interval", "1s"],
    ...flags,
  ]);
  const admin = adminFileOf(stateDir);
  const get = <T>(path: string) => adminGet<T>(admin, path);
  return { repo, up, admin, get };
}

beforeAll(() => {
  writeFileSync(journal, "");
  chmodSync(journal, 0o666);
  chmodSync(join(journal, ".."), 0o777);
});

afterAll(() => {
  removeUpTestRoot(root);
  rmSync(join(journal, ".."), { recursive: true, force: true });
});

describe("builds under modelship up", () => {
  it("fails a build that runs past its deadline, with that reason, and leaves nothing running", async () => {
    const marker = "sleep 7301";
    const { up, get } = await startUp(
      "deadline",
      {
        "stuck/predict.py": slowPredict,
        "stuck/build.sh": `${marker}\n`,
        "stuck.yaml": model("stuck", { buildScript: true }),
      },
      // Long enough for the venv to be made first on a loaded machine (over 10 s has been seen
      // while the rest of the suite runs): the script must run before the deadline ends it.
      ["--build-deadline", "25s"],
    );
    try {
      // It does run: the deadline, not a failure to start, ends it.
      await eventually(() => processesWith(marker).length === 1, 40_000);
      await eventually(
        async () =>
          (await get<ModelBuild>("/api/v1/modelbuilds/stuck-1")).status?.phase === "Failed",
        30_000,
      );
      const build = await get<ModelBuild>("/api/v1/modelbuilds/stuck-1");
      expect(build.status?.message).toContain(
        "the build ran past its deadline of 25s and was killed",
      );
      await eventually(() => processesWith(marker).length === 0, 10_000);
    } finally {
      expect(await up.stop()).toBe(0);
    }
  }, 120_000);

  it("kills the running build of a Model removed from git, with everything it started", async () => {
    const marker = "sleep 7302";
    const { repo, up, get } = await startUp(
      "pruned",
      {
        "doomed/predict.py": slowPredict,
        // A child of a child, left in the background: the whole tree must go.
        "doomed/build.sh": `(${marker} &)\n${marker}\n`,
        "doomed.yaml": model("doomed", { buildScript: true }),
      },
      [],
    );
    try {
      await eventually(() => processesWith(marker).length === 2, 30_000);
      commitAll(repo, GIT_ENV, "no more doomed", { "doomed.yaml": null });
      await eventually(() => processesWith(marker).length === 0, 15_000);
      await eventually(
        async () => (await get<{ items: ModelBuild[] }>("/api/v1/modelbuilds")).items.length === 0,
        15_000,
      );
    } finally {
      expect(await up.stop()).toBe(0);
    }
  }, 60_000);

  it("runs no more builds at once than --max-builds", async () => {
    const files: Record<string, string> = {};
    for (const name of ["one", "two", "three"]) {
      files[`${name}/predict.py`] = slowPredict;
      files[`${name}/build.sh`] =
        `echo "start ${name}" >> ${journal}\nsleep 1\necho "end ${name}" >> ${journal}\n`;
      files[`${name}.yaml`] = model(name, { buildScript: true });
    }
    const { up, get } = await startUp("slots", files, ["--max-builds", "1"]);
    try {
      await eventually(
        async () =>
          (await get<{ items: ModelBuild[] }>("/api/v1/modelbuilds")).items.filter(
            (build) => build.status?.phase === "Succeeded",
          ).length === 3,
        60_000,
      );
      const lines = readFileSync(journal, "utf8").trim().split("\n");
      // Each build ends before the next starts.
      expect(lines.map((line) => line.split(" ")[0])).toStrictEqual([
        "start",
        "end",
        "start",
        "end",
        "start",
        "end",
      ]);
    } finally {
      expect(await up.stop()).toBe(0);
    }
  }, 90_000);

  it("stops on SIGTERM while a build runs: the call in flight is answered, the build killed, exit 0", async () => {
    const marker = "sleep 7303";
    const { repo, up, get } = await startUp(
      "sigterm",
      { "serving/predict.py": slowPredict, "serving.yaml": model("serving") },
      [],
    );
    await eventually(
      async () =>
        (await get<{ status?: { phase?: string } }>("/api/v1/modeldeployments/serving")).status
          ?.phase === "Deployed",
      60_000,
    );
    commitAll(repo, GIT_ENV, "a slow build", {
      "slow/predict.py": slowPredict,
      "slow/build.sh": `${marker}\n`,
      "slow.yaml": model("slow", { buildScript: true }),
    });
    await eventually(() => processesWith(marker).length === 1, 30_000);
    const call = postJson(`${up.url}/models/serving/predict`, { sleep: 2 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const exit = up.stop();
    const answer = await call;
    expect([answer.status, answer.body.response]).toStrictEqual([200, { ok: true }]);
    expect(await exit).toBe(0);
    expect(processesWith(marker)).toStrictEqual([]);
    expect(up.stdout()).toContain("modelship up: stopped");
  }, 90_000);
});
