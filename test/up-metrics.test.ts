// Model metrics under `modelship up`: its embedded store (PGlite in STATE/metrics) takes what a
// committed model tracks, `modelship describe` shows the CRNs the SDK reads by, `modelship
// metrics` reads the store, the metrics survive a restart, and a damaged store directory costs
// the metrics, never the models.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MetricsRow } from "../controller/metrics/port.ts";
import { type CliProcess, PROJECT_ROOT, runCli, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { removeUpTestRoot } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-up-metrics-"));
const repo = join(root, "repo");
const stateDir = join(root, "state");
const GIT_ENV = gitEnv({ name: "Grace Hopper", email: "grace@example.com" });
let up: CliProcess | undefined;

const MODEL = `import modelship as cdsw


@cdsw.model_metrics
def double(args):
    cdsw.track_metric("input", args)
    cdsw.track_metric("doubled", args["x"] * 2)
    return args["x"] * 2
`;

async function startUp(): Promise<CliProcess> {
  const started = await startCli([
    ...["up", "--repo", repo, "--state-dir", stateDir, "--port", "0", "--interval", "1h"],
  ]);
  await eventually(
    async () => (await postJson(`${started.url}/models/doubler/predict`, { x: 0 })).status === 200,
    90_000,
  );
  return started;
}

const cli = (...args: string[]) => runCli([...args, "--state-dir", stateDir]);

function metricsJson(...args: string[]): MetricsRow[] {
  const run = cli("metrics", "doubler", "-o", "json", ...args);
  expect(run.stderr).toBe("");
  expect(run.exitCode).toBe(0);
  return (JSON.parse(run.stdout) as { metrics: MetricsRow[] }).metrics;
}

beforeAll(async () => {
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "a model that tracks metrics", {
    "double.py": MODEL,
    "model.yaml": openModelManifest({ name: "doubler", file: "double.py", function: "double" }),
  });
  up = await startUp();
}, 120_000);

afterAll(async () => {
  await up?.stop();
  removeUpTestRoot(root);
}, 30_000);

describe("metrics under modelship up", () => {
  it("stores what each prediction tracked, by the CRNs describe prints", async () => {
    const url = (up as CliProcess).url;
    const since = Date.now();
    const uuids: string[] = [];
    let split = 0;
    for (let x = 1; x <= 10; x++) {
      if (x === 6) {
        // A row's time is the worker's clock rounded to the millisecond (CDSW's
        // int(round(time.time() * 1000))), so the 5th prediction's can be the very
        // millisecond Date.now() reads right after its answer. A few ms on each side of the
        // split keep the two windows apart.
        await new Promise((resolve) => setTimeout(resolve, 5));
        split = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const answer = await postJson(`${url}/models/doubler/predict`, { x });
      expect(answer.body.response.prediction).toBe(2 * x);
      uuids.push(answer.body.response.uuid);
    }
    const described = cli("describe", "modeldeployment", "doubler");
    expect(described.stdout).toContain("CRN:          crn:modelship:doubler/deployments/doubler/1");
    expect(described.stdout).toContain("Build CRN:    crn:modelship:doubler/builds/1");
    expect(cli("describe", "model", "doubler").stdout).toContain(
      "CRN:          crn:modelship:doubler",
    );

    await eventually(() => metricsJson("--since", String(since)).length === 10, 10_000);
    const rows = metricsJson("--since", String(since), "--build", "1");
    expect(rows.map((row) => row.predictionUuid)).toEqual(uuids);
    expect(rows[2]).toMatchObject({
      type: "prediction",
      modelDeploymentCrn: "crn:modelship:doubler/deployments/doubler/1",
      metrics: { input: { x: 3 }, doubled: 6 },
    });
    expect(metricsJson("--since", String(since), "--build", "2")).toEqual([]);

    // The SDK reads the same through the gateway, with a model API key.
    const apiKey = cli("apikeys", "create", "--user", "grace").stdout.trim();
    const read = spawnSync(
      "python3",
      [
        "-c",
        `import modelship as cdsw
rows = cdsw.read_metrics(model_deployment_crn="crn:modelship:doubler/deployments/doubler/1", start_timestamp_ms=${since})["metrics"]
cdsw.track_delayed_metrics({"truth": 7}, rows[0]["predictionUuid"])
print(len(rows))`,
      ],
      {
        encoding: "utf8",
        env: {
          PATH: process.env.PATH,
          PYTHONPATH: join(PROJECT_ROOT, "runtime/python"),
          MODELSHIP_URL: url,
          MODELSHIP_API_KEY: apiKey,
        },
      },
    );
    expect(read.stderr).toBe("");
    expect(read.stdout.trim()).toBe("10");
    expect(metricsJson("--since", String(since))[0]?.metrics).toMatchObject({
      doubled: 2,
      truth: 7,
    });

    const table = cli("metrics", "doubler", "--since", "1h");
    expect(table.stdout).toMatch(/TIME\s+TYPE\s+PREDICTION\s+BUILD\s+DEPLOYMENT\s+METRICS/);
    expect(table.stdout).toContain("11 predictions, 0 aggregates, 0 hourly rollups");
    const drift = cli(
      ...["metrics", "doubler", "--drift", "x", "--since", String(since), "--split", String(split)],
    );
    expect(drift.stdout).toMatch(/^drift of x \(population stability index\): \d+\.\d{4}/);
    expect(drift.stdout).toContain("baseline: 5 predictions");
  }, 60_000);

  it("refuses a bad option or a password on the command line before opening a store", () => {
    const state = join(root, "refused-state");
    // Each exits at once: an opened store's thread would keep the process from exiting.
    const badFlag = runCli([
      "up",
      "--repo",
      repo,
      "--state-dir",
      state,
      "--port",
      "0",
      "--max-builds",
      "0",
    ]);
    expect(badFlag.exitCode).not.toBe(0);
    expect(badFlag.stderr).toContain("--max-builds");
    const password = runCli([
      ...["up", "--repo", repo, "--state-dir", state, "--port", "0"],
      ...["--metrics-url", "postgres://ada:s3cret@127.0.0.1:1/metrics"],
    ]);
    expect(password.exitCode).not.toBe(0);
    expect(password.stderr).toContain("MODELSHIP_METRICS_URL");
    expect(password.stderr + password.stdout).not.toContain("s3cret");
  });

  it("keeps the metrics across a restart, and serves without them when the store is damaged", async () => {
    const before = metricsJson().length;
    expect(before).toBeGreaterThan(10);
    expect(await up?.stop()).toBe(0);
    up = await startUp();
    // Everything from before the restart, and the call that found the model serving again.
    await eventually(() => metricsJson().length === before + 1, 10_000);

    expect(await up.stop()).toBe(0);
    // A store directory that is not one: the models are served, the metrics not kept, and
    // the log says where and what to do.
    renameSync(join(stateDir, "metrics"), join(root, "metrics-moved"));
    writeFileSync(join(stateDir, "metrics"), "not a database\n");
    up = await startUp();
    expect(up.stdout()).toMatch(
      /metrics: cannot open the metrics store in \S+metrics .*models are served, but the metrics they track are not kept; move \S+ away/,
    );
    const answer = await postJson(`${up.url}/models/doubler/predict`, { x: 4 });
    expect(answer.body.response.prediction).toBe(8);
    const refused = cli("metrics", "doubler");
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain("without a metrics store");
    expect(readFileSync(join(stateDir, "metrics"), "utf8")).toBe("not a database\n");
  }, 180_000);
});
