// Experiments (CDSW's "Run Experiment"), as a user runs them: `modelship run fit.py` on a copy of
// manifests/examples/iris-metrics in a real git repository, in the environment a build of the
// model is made in (cached), recorded in the metrics store — directly in STATE/metrics with no
// `modelship up` running, through the admin API of the one that runs — and `modelship runs`
// reading them back, `runs add` copying a file a run left into the work tree.
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitRunArguments } from "../controller/cli/run.ts";
import type { Run } from "../controller/metrics/port.ts";
import type { AdminFile } from "../controller/platform/local/admin.ts";
import {
  type CliProcess,
  type CliRun,
  PROJECT_ROOT,
  runCliAsync,
  startCli,
} from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit, writeFiles } from "./helpers/git.ts";
import { eventually } from "./helpers/replica.ts";
import { removeUpTestRoot, stopUp } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-experiments-"));
const repo = join(root, "repo");
const GIT_ENV = gitEnv({ name: "Grace Hopper", email: "grace@example.com" });
/** The state directory goes where `modelship up` puts it by default, under XDG_STATE_HOME. */
const ENV = {
  XDG_STATE_HOME: join(root, "xdg"),
  MODELSHIP_STATE_DIR: "",
  MODELSHIP_METRICS_URL: "",
};
let head: string;
/** The environment of fit.py's dependencies, built by the first run. */
let environment: string | undefined;

/** A `modelship` command in the repository, not blocking this process (an `up` may be running). */
function cli(args: string[], cwd = repo): Promise<CliRun> {
  return runCliAsync(args, { cwd, env: ENV });
}

/** The one state directory the commands made, the default of `up` for this repository. */
function stateDir(): string {
  const names = readdirSync(join(ENV.XDG_STATE_HOME, "modelship"));
  expect(names).toHaveLength(1);
  return join(ENV.XDG_STATE_HOME, "modelship", names[0] as string);
}

async function runsJson(): Promise<Run[]> {
  const listed = await cli(["runs", "-o", "json"]);
  expect(listed.stderr).toBe("");
  expect(listed.exitCode).toBe(0);
  return (JSON.parse(listed.stdout) as { items: Run[] }).items;
}

const environmentBuilt = (stderr: string) => /built environment ([0-9a-f]{16})/.exec(stderr)?.[1];
const environmentReused = (stderr: string) =>
  /reusing environment ([0-9a-f]{16})/.exec(stderr)?.[1];

beforeAll(() => {
  cpSync(join(PROJECT_ROOT, "manifests/examples/iris-metrics"), repo, { recursive: true });
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  head = commitAll(repo, GIT_ENV, "iris with metrics, and fit.py");
});

afterAll(() => {
  removeUpTestRoot(root);
});

describe("modelship run with no modelship up: the runs go to STATE/metrics directly", () => {
  it("runs fit.py in the model's build environment and records MSE, R² and model.pkl", async () => {
    const run = await cli(["run", "fit.py"]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^trained: width = 0\.4198 \* length/m);
    // Made by local-build.sh as a build is: the model's build script ran in it.
    expect(run.stderr).toContain("env | ==> running build script build.sh");
    environment = environmentBuilt(run.stderr);
    expect(environment).toBeDefined();
    expect(run.stderr).toContain("run 1 succeeded");
    // What the script wrote went to its copy of the source, not to the work tree.
    expect(existsSync(join(repo, "model.pkl"))).toBe(false);
    expect(runGit(repo, GIT_ENV, "status", "--porcelain")).toBe("");

    const [recorded] = await runsJson();
    expect(recorded).toMatchObject({
      id: 1,
      model: "iris-metrics",
      repository: realpathSync(repo),
      sourcePath: ".",
      commit: head,
      dirty: false,
      script: "fit.py",
      args: [],
      status: "succeeded",
      exitCode: 0,
      environment,
    });
    expect(recorded?.metrics.mse).toBeCloseTo(0.0521, 4);
    expect(recorded?.metrics.r2).toBeCloseTo(0.8931, 4);
    expect(recorded?.durationMs).toBeGreaterThan(0);
    const files = recorded?.files ?? [];
    expect(files).toEqual([{ name: "model.pkl", size: expect.any(Number), tracked: true }]);
    const kept = join(stateDir(), "runs/1/files/model.pkl");
    expect(statSync(kept).size).toBe(files[0]?.size);
    // A pickle (protocol 2 or later starts with 0x80).
    expect(readFileSync(kept)[0]).toBe(0x80);
    expect(readFileSync(join(stateDir(), "runs/1/output.log"), "utf8")).toContain("trained:");
  }, 120_000);

  it("reuses the environment while the dependencies stay the same, and builds another when they change", async () => {
    const envs = join(stateDir(), "envs");
    const listed = readdirSync(envs).sort();
    const log = join(envs, `${environment}.log`);
    const logBefore = { text: readFileSync(log, "utf8"), mtimeMs: statSync(log).mtimeMs };

    // What follows the script is the script's, --help too.
    const again = await cli(["run", "fit.py", "--seed", "1", "--help"]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^trained: /);
    expect(environmentReused(again.stderr)).toBe(environment);
    expect(again.stderr).not.toContain("env | ");
    expect(readdirSync(envs).sort()).toEqual(listed);
    expect({ text: readFileSync(log, "utf8"), mtimeMs: statSync(log).mtimeMs }).toEqual(logBefore);
    expect((await runsJson())[0]).toMatchObject({
      id: 2,
      args: ["--seed", "1", "--help"],
      environment,
    });

    // A new dependency set is a new environment; the old one stays for the runs that use it.
    writeFiles(repo, { "requirements.txt": "scikit-learn>=1.3,<2\n# pinned later\n" });
    try {
      const changed = await cli(["run", "fit.py"]);
      expect(changed.exitCode, changed.stderr).toBe(0);
      const other = environmentBuilt(changed.stderr);
      expect(other).toBeDefined();
      expect(other).not.toBe(environment);
      expect((await runsJson())[0]).toMatchObject({ id: 3, dirty: true, environment: other });
    } finally {
      runGit(repo, GIT_ENV, "checkout", "-q", "requirements.txt");
    }
  }, 120_000);

  it("says what is wrong before running anything", async () => {
    writeFileSync(join(root, "loose.py"), "print(1)\n");
    const cases: [string[], string][] = [
      [["run"], "name the script to run: modelship run SCRIPT [ARGS...]"],
      [["run", "missing.py"], "missing.py: no such file"],
      [["run", "model.yaml"], "Model iris-metrics's runtime is python3, which runs .py scripts"],
      [
        ["run", "--model", "nosuch", "fit.py"],
        'no Model "nosuch" in the work tree\'s manifests (iris-metrics)',
      ],
      [["run", join(root, "loose.py")], "is not in a git work tree"],
    ];
    for (const [args, message] of cases) {
      const run = await cli(args);
      expect([run.exitCode, run.stderr]).toEqual([2, expect.stringContaining(message)]);
    }
    expect((await runsJson()).length).toBe(3);
  }, 60_000);

  it("records a failing script as failed, with its exit code and what it tracked", async () => {
    writeFiles(repo, {
      "fail.py": [
        "import sys",
        "import modelship as cdsw",
        'cdsw.track_metric("loss", 9007199254740993)',
        'print("diverged", file=sys.stderr)',
        "sys.exit(3)",
        "",
      ].join("\n"),
    });
    try {
      const run = await cli(["run", "fail.py"]);
      expect(run.exitCode).toBe(3);
      expect(run.stderr).toContain("diverged");
      expect(run.stderr).toContain("run 4 failed with exit code 3");
      const shown = await cli(["runs", "show", "4", "-o", "json"]);
      expect(shown.exitCode, shown.stderr).toBe(0);
      // Every digit of the metric: it is stored exactly.
      expect(shown.stdout).toContain('"loss": 9007199254740993');
      expect(JSON.parse(shown.stdout)).toMatchObject({
        status: "failed",
        exitCode: 3,
        script: "fail.py",
        // fail.py is not committed.
        dirty: true,
        commit: head,
        files: [],
      });
    } finally {
      rmSync(join(repo, "fail.py"));
    }
  }, 60_000);

  it("lists the runs newest first, a column per metric, and shows one", async () => {
    const listed = await cli(["runs"]);
    expect(listed.exitCode, listed.stderr).toBe(0);
    const [header, ...rows] = listed.stdout.trimEnd().split("\n");
    expect(header).toMatch(
      /^RUN\s+STATUS\s+MODEL\s+SCRIPT\s+COMMIT\s+AGE\s+DURATION\s+loss\s+mse\s+r2$/,
    );
    expect(rows.map((row) => row.split(/\s+/)[0])).toEqual(["4", "3", "2", "1"]);
    expect(rows[0]).toMatch(/^4\s+failed \(3\)\s+iris-metrics\s+fail\.py\s+[0-9a-f]{7}-dirty\s/);
    expect(rows[0]).toMatch(/9007199254740993\s*$/);
    expect(rows[3]).toMatch(
      /^1\s+succeeded\s+iris-metrics\s+fit\.py\s+[0-9a-f]{7}\s.*\s0\.05\d+\s+0\.89\d+$/,
    );

    const shown = await cli(["runs", "show", "1"]);
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(`Commit:       ${head}\n`);
    expect(shown.stdout).toMatch(/^ {2}model\.pkl {2}\d+ bytes {2}\(track_file\)$/m);
    expect(shown.stdout).toMatch(/^ {2}mse {2}0\.05\d+$/m);

    const missing = await cli(["runs", "show", "99"]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain("no run 99 in ");
  }, 60_000);

  it("copies model.pkl into the model's source directory, and never overwrites without --force", async () => {
    const kept = readFileSync(join(stateDir(), "runs/1/files/model.pkl"));
    const added = await cli(["runs", "add", "1", "model.pkl"]);
    expect(added.exitCode, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^copied model\.pkl of run 1 to model\.pkl \(\d+ bytes\)/);
    expect(readFileSync(join(repo, "model.pkl"))).toEqual(kept);

    writeFileSync(join(repo, "model.pkl"), "mine\n");
    const refused = await cli(["runs", "add", "1", "model.pkl"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain("model.pkl exists; nothing was copied (pass --force");
    expect(readFileSync(join(repo, "model.pkl"), "utf8")).toBe("mine\n");
    expect((await cli(["runs", "add", "1", "model.pkl", "--force"])).exitCode).toBe(0);
    expect(readFileSync(join(repo, "model.pkl"))).toEqual(kept);

    expect((await cli(["runs", "add", "2", "model.pkl", "--to", "models/"])).exitCode).toBe(0);
    expect(readFileSync(join(repo, "models/model.pkl"))).toEqual(kept);
    const outside = await cli(["runs", "add", "1", "model.pkl", "--to", join(root, "elsewhere")]);
    expect(outside.exitCode).toBe(2);
    expect(outside.stderr).toContain("is outside the work tree");
    const unknown = await cli(["runs", "add", "1", "weights.bin"]);
    expect(unknown.stderr).toContain("run 1 left no file weights.bin (its files: model.pkl)");
    rmSync(join(repo, "model.pkl"));
    rmSync(join(repo, "models"), { recursive: true });
  }, 60_000);

  it("refuses to add a file over 50 MB, saying to keep big artifacts out of git", async () => {
    // Sparse: 60 MiB that cost no disk.
    writeFiles(repo, {
      "big.py": 'with open("big.bin", "wb") as out:\n    out.truncate(60 * 1024 * 1024)\n',
    });
    try {
      const run = await cli(["run", "big.py"]);
      expect(run.exitCode, run.stderr).toBe(0);
      expect((await runsJson())[0]?.files).toEqual([
        { name: "big.bin", size: 60 * 1024 * 1024, tracked: false },
      ]);
      const refused = await cli(["runs", "add", "5", "big.bin"]);
      expect(refused.exitCode).toBe(1);
      expect(refused.stderr).toContain("big.bin of run 5 is 60 MiB, larger than the 50 MiB");
      expect(refused.stderr).toContain("big artifacts do not belong in git");
      expect(refused.stderr).toContain("object store");
      expect(refused.stderr).toContain("train at build time");
      expect(existsSync(join(repo, "big.bin"))).toBe(false);
    } finally {
      rmSync(join(repo, "big.py"));
    }
  }, 60_000);

  it("refuses to read a store another process holds, and a finished run waits for it to record", async () => {
    const lock = join(stateDir(), "up.lock");
    // This test's process stands for one that holds the lock without an admin API.
    writeFileSync(lock, `${process.pid}\n`);
    let waiting: Promise<CliRun> | undefined;
    try {
      const refused = await cli(["runs"]);
      expect(refused.exitCode).toBe(2);
      expect(refused.stderr).toContain(
        `the metrics store ${join(stateDir(), "metrics")} is in use by process ${process.pid}`,
      );
      const logFile = join(root, "waiting-run.txt");
      writeFiles(repo, { "quick.py": `open(${JSON.stringify(logFile)}, "w").write("done")\n` });
      waiting = cli(["run", "quick.py"]);
      // The script has run; its record waits for the lock.
      await eventually(() => existsSync(logFile), 30_000);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const stillWaiting = Symbol("still waiting");
      expect(await Promise.race([waiting, stillWaiting])).toBe(stillWaiting);
    } finally {
      rmSync(lock, { force: true });
    }
    const recorded = await waiting;
    expect(recorded?.exitCode, recorded?.stderr).toBe(0);
    expect(recorded?.stderr).toContain("run 6 succeeded");
    rmSync(join(repo, "quick.py"));
  }, 60_000);
});

describe("modelship run for an R model", () => {
  it("runs an R script with Rscript and the build's library, recording what it appends to the metrics file", async () => {
    const rRepo = join(root, "r-repo");
    cpSync(join(PROJECT_ROOT, "manifests/examples/add-numbers-r"), rRepo, { recursive: true });
    execFileSync("git", ["init", "-q", "-b", "main", rRepo], { env: GIT_ENV });
    // The R SDK lives in the worker: a script writes the run's metric line itself.
    commitAll(rRepo, GIT_ENV, "add-numbers and a script that sums its arguments", {
      "total.R": [
        "total <- sum(as.numeric(commandArgs(trailingOnly = TRUE)))",
        'cat("total", total, "\\n")',
        'cat(sprintf(\'{"key":"total","value":%s}\\n\', total), file = Sys.getenv("MODELSHIP_RUN_METRICS_FILE"), append = TRUE)',
        "",
      ].join("\n"),
    });
    const state = ["--state-dir", join(root, "r-state")];
    const run = await cli(["run", ...state, "total.R", "1", "2", "3.5"], rRepo);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toBe("total 6.5 \n");
    expect(run.stderr).toContain("env | ==> creating the R library");
    const listed = await cli(["runs", ...state, "-o", "json"], rRepo);
    const [recorded] = (JSON.parse(listed.stdout) as { items: Run[] }).items;
    expect(recorded).toMatchObject({
      model: "add-numbers-r",
      script: "total.R",
      args: ["1", "2", "3.5"],
      status: "succeeded",
      metrics: { total: 6.5 },
    });
  }, 60_000);
});

describe("modelship run beside a running modelship up: the runs go through its admin API", () => {
  let up: CliProcess | undefined;
  let admin: AdminFile;

  beforeAll(async () => {
    up = await startCli(["up", "--repo", repo, "--port", "0", "--interval", "1h"], {
      env: ENV,
    });
    admin = JSON.parse(readFileSync(join(stateDir(), "admin.json"), "utf8")) as AdminFile;
  }, 120_000);

  afterAll(async () => {
    await stopUp(up);
  }, 30_000);

  it("records a run in the store up holds open, after the runs made without it", async () => {
    const run = await cli(["run", "fit.py"]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(environmentReused(run.stderr)).toBe(environment);
    expect(run.stderr).toContain("run 7 succeeded");
    // While up holds the state directory's lock, only its API can have taken the record.
    expect(run.stderr).toContain(
      `(recorded in the metrics store of modelship up (pid ${(up as CliProcess).child.pid}))`,
    );
    const runs = await runsJson();
    expect(runs.map((recorded) => recorded.id)).toEqual([7, 6, 5, 4, 3, 2, 1]);
    expect(runs[0]?.metrics.r2).toBeCloseTo(0.8931, 4);

    // Its files are kept as a run's without up, and added the same way.
    const added = await cli(["runs", "add", "7", "model.pkl", "--to", "copies/"]);
    expect(added.exitCode, added.stderr).toBe(0);
    expect(readFileSync(join(repo, "copies/model.pkl"))).toEqual(
      readFileSync(join(stateDir(), "runs/7/files/model.pkl")),
    );
    rmSync(join(repo, "copies"), { recursive: true });
  }, 60_000);

  it("answers the runs routes, refusing a record with a wrong field by name", async () => {
    const call = (path: string, init: RequestInit = {}) =>
      fetch(`${admin.url}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${admin.token}`, "content-type": "application/json" },
      });
    const one = (await (await call("/api/v1/runs/1")).json()) as Run;
    expect(one).toMatchObject({ id: 1, script: "fit.py", status: "succeeded" });

    const { id: _, ...record } = one;
    const wrong = await call("/api/v1/runs", {
      method: "POST",
      body: JSON.stringify({ ...record, status: "succeeded", exitCode: 2 }),
    });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toEqual({
      error: `not a run's record: "status" succeeded does not go with "exitCode" 2`,
    });
    const noScript = await call("/api/v1/runs", {
      method: "POST",
      body: JSON.stringify({ ...record, script: 7 }),
    });
    expect(await noScript.json()).toEqual({
      error: `not a run's record: "script" must be a non-empty string`,
    });
    const created = await call("/api/v1/runs", { method: "POST", body: JSON.stringify(record) });
    expect([created.status, await created.json()]).toEqual([201, { id: 8 }]);

    expect((await call("/api/v1/runs/999")).status).toBe(404);
    expect((await call("/api/v1/runs/abc")).status).toBe(404);
    expect((await call("/api/v1/runs?limit=0")).status).toBe(400);
    const page = (await (await call("/api/v1/runs?model=iris-metrics&limit=2")).json()) as {
      items: Run[];
    };
    expect(page.items.map((run) => run.id)).toEqual([8, 7]);
    const unauthorized = await fetch(`${admin.url}/api/v1/runs`);
    expect(unauthorized.status).toBe(401);
  }, 30_000);
});

describe("run's arguments", () => {
  it.each<[string[], ReturnType<typeof splitRunArguments>]>([
    [["fit.py"], { own: [], script: "fit.py", scriptArgs: [] }],
    [
      ["--model", "iris", "--rebuild", "fit.py", "--model", "x", "-h"],
      {
        own: ["--model", "iris", "--rebuild"],
        script: "fit.py",
        scriptArgs: ["--model", "x", "-h"],
      },
    ],
    [["--state-dir=/s", "fit.py"], { own: ["--state-dir=/s"], script: "fit.py", scriptArgs: [] }],
    [["--", "-odd.py", "a"], { own: [], script: "-odd.py", scriptArgs: ["a"] }],
    [["--help"], { own: ["--help"], script: undefined, scriptArgs: [] }],
  ])("%j: run's own up to the script, the rest the script's", (args, expected) => {
    expect(splitRunArguments(args)).toEqual(expected);
  });
});
