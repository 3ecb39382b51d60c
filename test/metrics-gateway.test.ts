// Model metrics end to end, with real parts: the iris-metrics example trained and served by real
// replica agents (Python workers), a real gateway on a real port, the metrics store (PGlite in
// process, and a real PostgreSQL server this test starts and stops), and the example's own
// scripts (simulate.py, metrics_job.py) calling it through the Python SDK.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayConfig, ModelRoute } from "../controller/gateway/config.ts";
import { generateAccessKey, generateApiKey, hashKey } from "../controller/gateway/keys.ts";
import { deploymentCrn, modelCrn } from "../controller/metrics/crn.ts";
import type { MetricsRow, MetricsStore } from "../controller/metrics/port.ts";
import {
  openEmbeddedMetricsStore,
  openPostgresMetricsStore,
} from "../controller/metrics/sql-store.ts";
import { PROJECT_ROOT, runProcess } from "./helpers/cli.ts";
import { type RunningGateway, route, startGateway } from "./helpers/gateway.ts";
import {
  type PostgresServer,
  startPostgresServer,
  TEST_PASSWORD,
} from "./helpers/postgres-server.ts";
import { eventually, postJson, type RunningReplica, startReplica } from "./helpers/replica.ts";

const EXAMPLE = join(PROJECT_ROOT, "manifests/examples/iris-metrics");
const PYTHON_PACKAGE = join(PROJECT_ROOT, "runtime/python");

let work: string;
let replicas: RunningReplica[] = [];
const accessKey = generateAccessKey();
const apiKey = generateApiKey("ada", new Date());

/** Runs a script of the example with the SDK's settings. */
function python(script: string, args: string[], env: Record<string, string>) {
  return runProcess("python3", [script, ...args], {
    cwd: work,
    env: { PATH: process.env.PATH ?? "", HOME: work, PYTHONPATH: PYTHON_PACKAGE, ...env },
  });
}

function config(): GatewayConfig {
  return {
    models: [
      route("iris-metrics", replicas, {
        accessKeySha256: hashKey(accessKey),
        authentication: { enabled: true },
      }),
    ],
    apiKeys: [apiKey.record],
  };
}

async function readRows(url: string, query: Record<string, string>): Promise<MetricsRow[]> {
  const rows: MetricsRow[] = [];
  let cursor: string | undefined;
  do {
    const parameters = new URLSearchParams({ ...query, ...(cursor ? { cursor } : {}) });
    const response = await fetch(`${url}/model-metrics?${parameters}`, {
      headers: { authorization: `Bearer ${apiKey.key}` },
    });
    expect(response.status).toBe(200);
    const page = (await response.json()) as { metrics: MetricsRow[]; next?: string };
    rows.push(...page.metrics);
    cursor = page.next;
  } while (cursor);
  return rows;
}

beforeAll(async () => {
  // Trained as its build does, in a copy: model.pkl never lands in the repository.
  work = mkdtempSync(join(tmpdir(), "modelship-iris-metrics-"));
  cpSync(EXAMPLE, work, { recursive: true });
  const fit = await python("fit.py", [], {});
  expect(fit.stderr).toBe("");
  expect(fit.stdout).toMatch(/^trained: /);
  replicas = await Promise.all(
    [1, 2].map((index) =>
      startReplica({
        replicaId: `iris-metrics-1-3-${index}`,
        serves: { model: "iris-metrics", build: 1, deployment: "iris-metrics", deploymentId: 3 },
        file: "predict_with_metrics.py",
        functionName: "predict",
        directory: work,
      }),
    ),
  );
  for (const replica of replicas) await eventually(() => replica.agent.ready, 30_000);
}, 120_000);

afterAll(async () => {
  await Promise.all(replicas.map((replica) => replica.stop()));
  rmSync(work, { recursive: true, force: true });
});

describe("model metrics through the gateway, into PGlite", () => {
  let store: MetricsStore;
  let running: RunningGateway;
  let env: Record<string, string>;

  beforeAll(async () => {
    store = await openEmbeddedMetricsStore("memory");
    running = await startGateway(config(), { metricsStore: store, log: () => {} });
    env = {
      MODELSHIP_URL: running.url,
      MODELSHIP_API_KEY: apiKey.key,
      MODELSHIP_ACCESS_KEY: accessKey,
    };
  });
  afterAll(async () => {
    await running.stop();
    await store.close();
  });

  it("answers CDSW's shape, with the uuid the metrics are stored by", async () => {
    const answer = await postJson(
      `${running.url}/model`,
      { accessKey, request: { petal_length: 5.4 } },
      { authorization: `Bearer ${apiKey.key}` },
    );
    expect(answer.status).toBe(200);
    expect(answer.body.response).toEqual({
      prediction: expect.any(Number),
      uuid: answer.body.uuid,
      model_deployment_crn: deploymentCrn("iris-metrics", "iris-metrics", 3),
    });
    // Read at once, as CDSW's scripts do: the gateway writes what it holds before it reads.
    const [row] = await readRows(running.url, { modelCrn: modelCrn("iris-metrics") });
    expect(row).toMatchObject({
      type: "prediction",
      predictionUuid: answer.body.uuid,
      modelBuildCrn: "crn:modelship:iris-metrics/builds/1",
      modelDeploymentCrn: deploymentCrn("iris-metrics", "iris-metrics", 3),
      metrics: { input: { petal_length: 5.4 }, predict_result: answer.body.response.prediction },
    });
    expect(row?.endTimeStampMs).toBeGreaterThanOrEqual(row?.startTimeStampMs as number);
  });

  it("100 predictions, ground truth for 50, accuracy and drift read back", async () => {
    const since = Date.now();
    const first = await python(
      "simulate.py",
      ["--count", "50", "--ground-truth", "truth-a.jsonl", "--seed", "1"],
      env,
    );
    expect(first.stderr).toBe("");
    const splitUnshifted = Date.now();
    const second = await python(
      "simulate.py",
      ["--count", "50", "--ground-truth", "truth-b.jsonl", "--seed", "2"],
      env,
    );
    expect(second.exitCode).toBe(0);

    // read_metrics: the 100 predictions, each with its uuid.
    const read = await python(
      "-c",
      [
        `import json, modelship as cdsw
rows = cdsw.read_metrics(model_crn="iris-metrics", start_timestamp_ms=${since})["metrics"]
print(json.dumps([row["predictionUuid"] for row in rows if row["type"] == "prediction"]))`,
      ],
      env,
    );
    expect(read.stderr).toBe("");
    const uuids = JSON.parse(read.stdout) as string[];
    expect(uuids).toHaveLength(100);
    expect(new Set(uuids).size).toBe(100);
    const truthA = readFileSync(join(work, "truth-a.jsonl"), "utf8").trim().split("\n");
    expect(truthA).toHaveLength(50);
    expect(uuids).toEqual(expect.arrayContaining(truthA.map((line) => JSON.parse(line).uuid)));

    // The job: ground truth for the first 50, accuracy, and the drift between two unshifted
    // halves.
    const unshifted = await python(
      "metrics_job.py",
      [
        "--ground-truth",
        "truth-a.jsonl",
        "--since-ms",
        String(since),
        "--split-ms",
        String(splitUnshifted),
      ],
      env,
    );
    expect(unshifted.stderr).toBe("");
    const unshiftedResult = JSON.parse(unshifted.stdout) as {
      accuracy: number;
      judged: number;
      psi_petal_length: number;
    };
    expect(unshiftedResult.judged).toBe(50);
    // A linear fit of iris petal width predicts most flowers within 0.25 cm.
    expect(unshiftedResult.accuracy).toBeGreaterThan(0.6);

    const rows = await readRows(running.url, {
      modelCrn: modelCrn("iris-metrics"),
      startTimestampMs: String(since),
    });
    const judged = rows.filter(
      (row) => row.type === "prediction" && "actual_petal_width" in row.metrics,
    );
    expect(judged).toHaveLength(50);
    const accuracy = rows.find((row) => row.type === "aggregate" && "accuracy" in row.metrics);
    expect(accuracy?.metrics.accuracy).toBe(unshiftedResult.accuracy);
    expect(accuracy?.metrics.judged).toBe(50);

    // Then a shifted population: its drift from the unshifted window is far larger.
    const splitShifted = Date.now();
    const shifted = await python(
      "simulate.py",
      ["--count", "50", "--ground-truth", "truth-c.jsonl", "--shift", "2", "--seed", "3"],
      env,
    );
    expect(shifted.exitCode).toBe(0);
    const drifted = await python(
      "metrics_job.py",
      [
        "--ground-truth",
        "truth-c.jsonl",
        "--since-ms",
        String(splitUnshifted),
        "--split-ms",
        String(splitShifted),
      ],
      env,
    );
    expect(drifted.stderr).toBe("");
    const driftedResult = JSON.parse(drifted.stdout) as { psi_petal_length: number };
    expect(driftedResult.psi_petal_length).toBeGreaterThan(0.25);
    expect(driftedResult.psi_petal_length).toBeGreaterThan(4 * unshiftedResult.psi_petal_length);
    const psiRows = (
      await readRows(running.url, {
        modelCrn: modelCrn("iris-metrics"),
        startTimestampMs: String(since),
      })
    ).filter((row) => row.type === "aggregate" && "psi_petal_length" in row.metrics);
    expect(psiRows.map((row) => row.metrics.psi_petal_length)).toEqual([
      unshiftedResult.psi_petal_length,
      driftedResult.psi_petal_length,
    ]);
  }, 120_000);

  it("drops only the metrics the store cannot hold, and keeps every other model's", async () => {
    writeFileSync(
      join(work, "notes.py"),
      'import modelship as cdsw\n\n\n@cdsw.model_metrics\ndef note(args):\n    cdsw.track_metric("note", args["note"])\n    return len(args["note"])\n',
    );
    const notes = await startReplica({
      replicaId: "notes-1",
      serves: { model: "notes", build: 1, deployment: "notes", deploymentId: 1 },
      file: "notes.py",
      functionName: "note",
      directory: work,
    });
    const log: string[] = [];
    const gateway = await startGateway(
      { models: [route("notes", [notes]), ...config().models], apiKeys: [apiKey.record] },
      { metricsStore: store, log: (line) => log.push(line) },
    );
    try {
      await eventually(() => notes.agent.ready, 30_000);
      const since = Date.now();
      // A NUL in a string: JSON can say it, PostgreSQL's jsonb cannot hold it.
      const notesCalls = ["fine", "a\u0000b", "also fine"].map((note) =>
        postJson(`${gateway.url}/models/notes/predict`, { note }),
      );
      for (const answer of await Promise.all(notesCalls)) expect(answer.status).toBe(200);
      const iris = await postJson(
        `${gateway.url}/models/iris-metrics/predict`,
        { petal_length: 3 },
        { authorization: `Bearer ${apiKey.key}` },
      );
      expect(iris.status).toBe(200);
      const kept = await readRows(gateway.url, {
        modelCrn: modelCrn("notes"),
        startTimestampMs: String(since),
      });
      expect(kept.map((row) => row.metrics.note).sort()).toEqual(["also fine", "fine"]);
      expect(
        await readRows(gateway.url, {
          modelCrn: modelCrn("iris-metrics"),
          startTimestampMs: String(since),
        }),
      ).toHaveLength(1);
      const text = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(text).toContain('modelship_metrics_predictions_dropped_total{reason="invalid"} 1');
      expect(
        log.some(
          (line) => line.includes("the store refused them") && line.includes("of model notes"),
        ),
      ).toBe(true);
    } finally {
      await gateway.stop();
      await notes.stop();
    }
  }, 60_000);

  it("serves a model's metrics only to its users, and only while it is served", async () => {
    const eve = generateApiKey("eve", new Date());
    const restricted = config();
    (restricted.models[0] as ModelRoute).authentication = { enabled: true, users: ["ada"] };
    restricted.apiKeys.push(eve.record);
    running.gateway.apply(restricted);
    const read = (key: string) =>
      fetch(`${running.url}/model-metrics?modelCrn=iris-metrics`, {
        headers: { authorization: `Bearer ${key}` },
      });
    try {
      expect((await read(apiKey.key)).status).toBe(200);
      const forbidden = await read(eve.key);
      expect([forbidden.status, forbidden.headers.get("x-modelship-code")]).toEqual([
        403,
        "auth.forbidden",
      ]);
      // Removed from the gateway, its users are not known here: nobody reads its metrics.
      running.gateway.apply({ models: [], apiKeys: restricted.apiKeys });
      for (const key of [eve.key, apiKey.key]) {
        const gone = await read(key);
        expect([gone.status, gone.headers.get("x-modelship-code")]).toEqual([
          404,
          "model.not_found",
        ]);
      }
    } finally {
      running.gateway.apply(config());
    }
  });

  it("refuses a missing or wrong API key, and ground truth for a uuid nobody made", async () => {
    const read = (authorization?: string) =>
      fetch(`${running.url}/model-metrics?modelCrn=iris-metrics`, {
        headers: authorization ? { authorization } : {},
      });
    expect((await read()).status).toBe(401);
    // The key first: without one, nothing is looked up (nor waited for).
    const anonymous = await postJson(`${running.url}/model-metrics/delayed`, {
      predictionUuid: "00000000-0000-4000-8000-000000000000",
      metrics: { actual: 1 },
    });
    expect([anonymous.status, anonymous.body.error]).toEqual([401, "auth.missing_key"]);
    const wrong = await read(`Bearer ${generateApiKey("eve", new Date()).key}`);
    expect([wrong.status, wrong.headers.get("x-modelship-code")]).toEqual([
      401,
      "auth.invalid_key",
    ]);
    const unknown = await postJson(
      `${running.url}/model-metrics/delayed`,
      { predictionUuid: "00000000-0000-4000-8000-000000000000", metrics: { actual: 1 } },
      { authorization: `Bearer ${apiKey.key}` },
    );
    expect([unknown.status, unknown.body.error]).toEqual([404, "metrics.unknown_prediction"]);
    const badCrn = await fetch(`${running.url}/model-metrics?modelCrn=Not+A+Crn`, {
      headers: { authorization: `Bearer ${apiKey.key}` },
    });
    expect(badCrn.status).toBe(400);
    const badCursor = await fetch(`${running.url}/model-metrics?modelCrn=iris-metrics&cursor=abc`, {
      headers: { authorization: `Bearer ${apiKey.key}` },
    });
    expect([badCursor.status, badCursor.headers.get("x-modelship-code")]).toEqual([
      400,
      "request.invalid_input",
    ]);
    expect(((await badCrn.json()) as { message: string }).message).toContain("crn:modelship:MODEL");
  });
});

describe("model metrics with the store down", () => {
  let server: PostgresServer;
  let store: MetricsStore;
  let running: RunningGateway;
  const log: string[] = [];

  beforeAll(async () => {
    server = await startPostgresServer();
    store = await openPostgresMetricsStore(await server.createDatabase("metrics_down"));
    running = await startGateway(config(), {
      metricsStore: store,
      log: (line) => log.push(line),
      // A small buffer, so that the outage fills it: the loss must show in the counts.
      metricsRecorder: {
        capacity: 40,
        batchSize: 10,
        flushIntervalMs: 20,
        writeTimeoutMs: 1000,
        maxRetryMs: 200,
      },
    });
  }, 120_000);
  afterAll(async () => {
    await running?.stop();
    await store?.close();
    await server?.remove();
  });

  async function counter(name: string, reason?: string): Promise<number> {
    const text = await (await fetch(`${running.url}/metrics`)).text();
    return text
      .split("\n")
      .filter((line) => line.startsWith(name) && (!reason || line.includes(`reason="${reason}"`)))
      .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
  }

  it("answers every prediction while the store is stopped, and counts what it could not keep", async () => {
    const call = () =>
      postJson(
        `${running.url}/models/iris-metrics/predict`,
        { petal_length: 4 },
        { authorization: `Bearer ${apiKey.key}` },
      );
    const statuses: number[] = [];
    for (let index = 0; index < 20; index++) statuses.push((await call()).status);
    await server.stop();
    for (let index = 0; index < 100; index++) statuses.push((await call()).status);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(
      await counter("modelship_metrics_predictions_dropped_total", "buffer_full"),
    ).toBeGreaterThan(0);
    expect(log.some((line) => line.includes("failed ("))).toBe(true);
    expect(log.some((line) => /metrics of \d+ predictions? were dropped/.test(line))).toBe(true);
    // No log line carries the store's password.
    expect(log.join("\n")).not.toContain(TEST_PASSWORD);

    await server.start();
    await eventually(() => (running.gateway.metricsRecorder?.pending ?? 1) === 0, 30_000);
    const written = await counter("modelship_metrics_predictions_written_total");
    const dropped = await counter("modelship_metrics_predictions_dropped_total");
    expect(written + dropped).toBe(120);
    const rows = await readRows(running.url, { modelCrn: modelCrn("iris-metrics") });
    expect(rows.filter((row) => row.type === "prediction")).toHaveLength(written);
  }, 120_000);
});
