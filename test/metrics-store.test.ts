// The SQL metrics store, one table of cases run twice: on PGlite in process (what `modelship up`
// keeps) and on a real PostgreSQL server started from the machine's binaries (what a cluster
// runs). Migrations, exact numbers, delayed metrics, subjects, windows, pages, retention, batches.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseExactJson } from "../controller/metrics/exact-json.ts";
import type {
  MetricsQuery,
  MetricsRow,
  PredictionRecord,
  RunRecord,
} from "../controller/metrics/port.ts";
import { MIGRATIONS, migrate, SCHEMA_VERSION } from "../controller/metrics/schema.ts";
import {
  openEmbeddedClient,
  openPostgresClient,
  passwordHider,
  type SqlClient,
} from "../controller/metrics/sql-client.ts";
import {
  openEmbeddedMetricsStore,
  openMetricsStore,
  openPostgresMetricsStore,
  SqlMetricsStore,
} from "../controller/metrics/sql-store.ts";
import {
  type PostgresServer,
  startPostgresServer,
  TEST_PASSWORD,
} from "./helpers/postgres-server.ts";
import { eventually } from "./helpers/replica.ts";

const HOUR = 3_600_000;
/** An hour's start. */
const T0 = Date.UTC(2026, 2, 1, 12);

const root = mkdtempSync(join(tmpdir(), "modelship-metrics-store-"));
let server: PostgresServer;
let databases = 0;

beforeAll(async () => {
  server = await startPostgresServer();
}, 60_000);

afterAll(async () => {
  await server?.remove();
  rmSync(root, { recursive: true, force: true });
});

interface Backend {
  name: string;
  /** An empty database; each call of the function it returns opens a new client on it. */
  freshDatabase(): Promise<() => Promise<SqlClient>>;
}

const BACKENDS: Backend[] = [
  {
    name: "PGlite",
    async freshDatabase() {
      // A directory that does not exist yet: the store makes it.
      const dir = join(mkdtempSync(join(root, "pglite-")), "metrics");
      return () => openEmbeddedClient(dir);
    },
  },
  {
    name: "PostgreSQL",
    async freshDatabase() {
      const url = await server.createDatabase(`metrics_${++databases}`);
      return async () => openPostgresClient(url);
    },
  },
];

let written = 0;
const uuidOf = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;

function prediction(overrides: Partial<PredictionRecord> = {}): PredictionRecord {
  written += 1;
  return {
    uuid: uuidOf(written),
    model: "iris",
    build: 3,
    deployment: "prod",
    deploymentId: 7,
    startMs: T0,
    endMs: T0 + 5,
    metricsJson: '{"latency":1}',
    ...overrides,
  };
}

/** A finished experiment run's record, as `modelship run` makes one. */
function runRecord(overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    model: "iris",
    repository: "/home/grace/models",
    sourcePath: "iris",
    commit: "0123456789abcdef0123456789abcdef01234567",
    dirty: false,
    script: "fit.py",
    args: ["--alpha", "0.5"],
    status: "succeeded",
    exitCode: 0,
    startedMs: T0,
    durationMs: 2150,
    metrics: { mse: 0.0521, r2: 0.8931 },
    files: [{ name: "model.pkl", size: 435, tracked: true }],
    environment: "71b06d8af517d74b",
    ...overrides,
  };
}

/** Every row a query reads, page after page. */
async function readAll(store: SqlMetricsStore, query: MetricsQuery): Promise<MetricsRow[]> {
  const rows: MetricsRow[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.read({ ...query, ...(cursor ? { cursor } : {}) });
    rows.push(...page.rows);
    cursor = page.next;
  } while (cursor);
  return rows;
}

/** What tells rows apart in a test: a prediction's uuid, else the type and start. */
const idOf = (row: MetricsRow) => row.predictionUuid ?? `${row.type}@${row.startTimeStampMs}`;

describe.each(BACKENDS)("the metrics store on $name", (backend) => {
  // Each test opens fresh databases (PGlite compiles its WebAssembly): seconds on a busy machine.
  describe("migrations", { timeout: 30_000 }, () => {
    it("makes the schema on an empty database and records versions 1 and 2", async () => {
      const client = await (await backend.freshDatabase())();
      try {
        expect(await migrate(client)).toEqual([1, 2]);
        expect(
          await client.query("SELECT version, name FROM schema_migrations ORDER BY version"),
        ).toEqual(MIGRATIONS.map(({ version, name }) => ({ version, name })));
        const tables = await client.query<{ table_name: string }>(
          `SELECT table_name FROM information_schema.tables
           WHERE table_schema = 'public' ORDER BY table_name`,
        );
        expect(tables.map((table) => table.table_name)).toEqual([
          "aggregate_metrics",
          "delayed_metrics",
          "prediction_rollups",
          "predictions",
          "runs",
          "schema_migrations",
        ]);
      } finally {
        await client.close();
      }
    });

    it("opens a migrated database again without migrating, and its rows are there", async () => {
      const open = await backend.freshDatabase();
      const first = await openMetricsStore(await open());
      const record = prediction();
      await first.writePredictions([record]);
      await first.close();
      const client = await open();
      try {
        expect(await migrate(client)).toEqual([]);
        const again = await openMetricsStore(client);
        expect((await again.read({ model: "iris" })).rows.map(idOf)).toEqual([record.uuid]);
        expect(
          await client.query("SELECT version FROM schema_migrations ORDER BY version"),
        ).toEqual([{ version: 1 }, { version: 2 }]);
      } finally {
        await client.close();
      }
    });

    it("applies only the missing migrations, in order, and a failing one not at all", async () => {
      const client = await (await backend.freshDatabase())();
      try {
        await migrate(client);
        // Versions past the released ones, listed out of order.
        const next = [
          ...MIGRATIONS,
          { version: 11, name: "eleventh", sql: "ALTER TABLE tenth ADD COLUMN b integer" },
          { version: 10, name: "tenth", sql: "CREATE TABLE tenth (a integer)" },
        ];
        expect(await migrate(client, next)).toEqual([10, 11]);
        const failing = [
          ...next,
          {
            version: 12,
            name: "twelfth",
            sql: "CREATE TABLE twelfth (a integer); SELECT no_such_function()",
          },
        ];
        await expect(migrate(client, failing)).rejects.toThrow(/no_such_function/);
        expect(
          await client.query("SELECT version FROM schema_migrations ORDER BY version"),
        ).toEqual([{ version: 1 }, { version: 2 }, { version: 10 }, { version: 11 }]);
        expect(await client.query("SELECT to_regclass('twelfth') AS twelfth")).toEqual([
          { twelfth: null },
        ]);
      } finally {
        await client.close();
      }
    });

    it("adds the runs to a store made at version 1, whose predictions stay", async () => {
      const open = await backend.freshDatabase();
      const client = await open();
      await migrate(client, MIGRATIONS.slice(0, 1));
      const old = new SqlMetricsStore(client);
      const record = prediction();
      await old.writePredictions([record]);
      await old.close();
      const store = await openMetricsStore(await open());
      try {
        expect((await store.read({ model: "iris" })).rows.map(idOf)).toEqual([record.uuid]);
        expect(await store.recordRun(runRecord())).toBe(1);
      } finally {
        await store.close();
      }
    });

    it("refuses a database a newer modelship migrated, naming both versions, and changes nothing", async () => {
      const open = await backend.freshDatabase();
      const client = await open();
      await migrate(client);
      await client.query("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')");
      await client.close();
      await expect(openMetricsStore(await open())).rejects.toThrow(
        `the metrics database is at schema version 99, newer than this modelship's ${SCHEMA_VERSION}`,
      );
      const after = await open();
      try {
        expect(await after.query("SELECT version FROM schema_migrations ORDER BY version")).toEqual(
          [{ version: 1 }, { version: 2 }, { version: 99 }],
        );
      } finally {
        await after.close();
      }
    });
  });

  describe("reads and writes", () => {
    let store: SqlMetricsStore;
    let client: SqlClient;

    beforeAll(async () => {
      client = await (await backend.freshDatabase())();
      store = await openMetricsStore(client);
    }, 60_000);

    afterAll(async () => {
      await store?.close();
    });

    beforeEach(async () => {
      await client.query(
        "TRUNCATE predictions, delayed_metrics, aggregate_metrics, prediction_rollups, runs RESTART IDENTITY",
      );
    });

    it("reads a prediction back in CDSW's shape, its big integers exact", async () => {
      const record = prediction({
        startMs: T0 + 10,
        endMs: T0 + 25,
        metricsJson:
          '{"big": 9007199254740993, "huge": -18446744073709551617, "tiny": 1e-400, "x": 0.5, "label": "setosa", "ok": true, "list": [1, 2]}',
      });
      await store.writePredictions([record]);
      const { rows, next } = await store.read({ model: "iris" });
      expect(next).toBeUndefined();
      expect(rows).toStrictEqual([
        {
          type: "prediction",
          predictionUuid: record.uuid,
          modelCrn: "crn:modelship:iris",
          modelBuildCrn: "crn:modelship:iris/builds/3",
          modelDeploymentCrn: "crn:modelship:iris/deployments/prod/7",
          startTimeStampMs: T0 + 10,
          endTimeStampMs: T0 + 25,
          metrics: expect.any(Object),
        },
      ]);
      const metrics = rows[0]?.metrics ?? {};
      // Plain numbers stay numbers to compute with; the others keep their digits.
      expect([metrics.x, metrics.label, metrics.ok, metrics.list]).toEqual([
        0.5,
        "setosa",
        true,
        [1, 2],
      ]);
      expect(JSON.stringify(metrics.big)).toBe("9007199254740993");
      expect(JSON.stringify(metrics.huge)).toBe("-18446744073709551617");
      expect(JSON.stringify(metrics.tiny)).toMatch(/^0\.0{399}1$/);
      expect(await store.prediction(record.uuid)).toStrictEqual({
        model: "iris",
        build: 3,
        deployment: "prod",
        deploymentId: 7,
      });
    });

    it.each([
      ["an unknown uuid", uuidOf(999_999)],
      ["a malformed uuid", "not-a-uuid"],
    ])("knows no prediction by %s", async (_, uuid) => {
      await store.writePredictions([prediction()]);
      expect(await store.prediction(uuid)).toBeUndefined();
      expect(await store.trackDelayed(uuid, '{"truth": 1}', T0)).toBe(false);
      expect(await client.query("SELECT id FROM delayed_metrics")).toEqual([]);
    });

    it("merges delayed metrics over the tracked ones in arrival order, the latest last", async () => {
      const record = prediction({ metricsJson: '{"latency": 12, "guess": "setosa"}' });
      await store.writePredictions([record]);
      expect(await store.trackDelayed(record.uuid, '{"truth": "virginica", "n": 1}', T0 + 1)).toBe(
        true,
      );
      expect(
        await store.trackDelayed(
          record.uuid,
          '{"truth": "setosa", "id": 9007199254740993}',
          T0 + 2,
        ),
      ).toBe(true);
      const metrics = (await store.read({ model: "iris" })).rows[0]?.metrics ?? {};
      expect(Object.keys(metrics).sort()).toEqual(["guess", "id", "latency", "n", "truth"]);
      expect([metrics.latency, metrics.guess, metrics.truth, metrics.n]).toEqual([
        12,
        "setosa",
        "setosa",
        1,
      ]);
      expect(JSON.stringify(metrics.id)).toBe("9007199254740993");
    });

    it("keeps a subject's fields off a prediction that has none", async () => {
      const record = prediction({
        build: undefined,
        deployment: undefined,
        deploymentId: undefined,
      });
      await store.writePredictions([record]);
      expect(await store.prediction(record.uuid)).toStrictEqual({ model: "iris" });
      const [row] = (await store.read({ model: "iris" })).rows;
      expect(row).toStrictEqual({
        type: "prediction",
        predictionUuid: record.uuid,
        modelCrn: "crn:modelship:iris",
        startTimeStampMs: T0,
        endTimeStampMs: T0 + 5,
        metrics: { latency: 1 },
      });
    });

    describe("by subject", () => {
      const predictions = {
        build3prod7: prediction({ build: 3, deployment: "prod", deploymentId: 7 }),
        build3prod8: prediction({ build: 3, deployment: "prod", deploymentId: 8 }),
        build4prod8: prediction({ build: 4, deployment: "prod", deploymentId: 8 }),
        build4staging: prediction({ build: 4, deployment: "staging", deploymentId: 1 }),
        otherModel: prediction({ model: "wine" }),
      };
      const aggregates = {
        model: { model: "iris" },
        build3: { model: "iris", build: 3 },
        prod: { model: "iris", deployment: "prod" },
        prod8: { model: "iris", deployment: "prod", deploymentId: 8 },
        otherModel: { model: "wine" },
      };

      beforeEach(async () => {
        await store.writePredictions(Object.values(predictions));
        for (const [name, subject] of Object.entries(aggregates)) {
          await store.trackAggregate({
            ...subject,
            startMs: T0 + 100,
            endMs: T0 + 200,
            metrics: { name },
          });
        }
      });

      it.each<[string, MetricsQuery, string[], string[]]>([
        [
          "the model",
          { model: "iris" },
          ["build3prod7", "build3prod8", "build4prod8", "build4staging"],
          // A job tracks accuracy by deployment (CDSW's examples do): a model's read shows it.
          ["model", "build3", "prod", "prod8"],
        ],
        ["one build", { model: "iris", build: 3 }, ["build3prod7", "build3prod8"], ["build3"]],
        [
          "a deployment, every rollout",
          { model: "iris", deployment: "prod" },
          ["build3prod7", "build3prod8", "build4prod8"],
          ["prod", "prod8"],
        ],
        [
          "one rollout",
          { model: "iris", deployment: "prod", deploymentId: 8 },
          ["build3prod8", "build4prod8"],
          ["prod8"],
        ],
        ["another model", { model: "wine" }, ["otherModel"], ["otherModel"]],
        ["a model with nothing", { model: "rose" }, [], []],
      ])(
        "reads %s: its predictions and the aggregates inside it",
        async (_, query, expectedPredictions, expectedAggregates) => {
          const rows = await readAll(store, query);
          expect(
            rows.filter((row) => row.type === "prediction").map((row) => row.predictionUuid),
          ).toEqual(
            expectedPredictions.map((name) => predictions[name as keyof typeof predictions].uuid),
          );
          expect(
            rows.filter((row) => row.type === "aggregate").map((row) => row.metrics.name),
          ).toEqual(expectedAggregates);
        },
      );

      it("names an aggregate's subject by the CRNs it has, and returns increasing ids", async () => {
        const id = await store.trackAggregate({
          model: "iris",
          deployment: "prod",
          startMs: T0,
          endMs: T0 + HOUR,
          metrics: { accuracy: 0.9 },
        });
        expect(id).toBe(Object.keys(aggregates).length + 1);
        const aggregate = (await readAll(store, { model: "iris", deployment: "prod" })).find(
          (row) => row.type === "aggregate" && row.startTimeStampMs === T0,
        );
        expect(aggregate).toStrictEqual({
          type: "aggregate",
          modelCrn: "crn:modelship:iris",
          modelDeploymentCrn: "crn:modelship:iris/deployments/prod",
          startTimeStampMs: T0,
          endTimeStampMs: T0 + HOUR,
          metrics: { accuracy: 0.9 },
        });
      });
    });

    it("stores an aggregate's big integers exactly when they come as read (JSON.rawJSON)", async () => {
      await store.writePredictions([prediction({ metricsJson: '{"n": 9007199254740993}' })]);
      const [read] = (await store.read({ model: "iris" })).rows;
      await store.trackAggregate({
        model: "iris",
        startMs: T0 + 1,
        endMs: T0 + 2,
        metrics: { total: read?.metrics.n },
      });
      const aggregate = (await store.read({ model: "iris" })).rows.find(
        (row) => row.type === "aggregate",
      );
      expect(JSON.stringify(aggregate?.metrics)).toBe('{"total":9007199254740993}');
    });

    it.each<[string, Partial<MetricsQuery>, number[]]>([
      ["since, inclusive", { sinceMs: T0 + 2000 }, [2000, 3000]],
      ["until, exclusive", { untilMs: T0 + 3000 }, [1000, 2000]],
      ["both", { sinceMs: T0 + 2000, untilMs: T0 + 3000 }, [2000]],
      ["an empty window", { sinceMs: T0 + 2000, untilMs: T0 + 2000 }, []],
      ["no bound", {}, [1000, 2000, 3000]],
    ])("reads a window by start time: %s", async (_, window, starts) => {
      await store.writePredictions(
        [3000, 1000, 2000].map((offset) => prediction({ startMs: T0 + offset, endMs: T0 + 9999 })),
      );
      await store.trackAggregate({
        model: "iris",
        startMs: T0 + 3000,
        endMs: T0 + 3001,
        metrics: {},
      });
      const rows = await readAll(store, { model: "iris", ...window });
      expect(
        rows.filter((row) => row.type === "prediction").map((row) => row.startTimeStampMs - T0),
      ).toEqual(starts);
      expect(rows.filter((row) => row.type === "aggregate").length).toBe(
        starts.includes(3000) ? 1 : 0,
      );
    });

    it.each([1, 2, 3, 7, 100])(
      "pages through rows that share start times with limit %i: none lost, none repeated, oldest first",
      async (limit) => {
        // 5 start times, 3 predictions each, an aggregate at two of them and a rollup at T0.
        const records = [4, 1, 3, 0, 2].flatMap((step) =>
          [0, 1, 2].map(() => prediction({ startMs: T0 + step * 10 })),
        );
        await store.writePredictions(records.filter((_, index) => index % 2 === 0));
        await store.writePredictions(records.filter((_, index) => index % 2 === 1));
        await store.rollUp(T0 + 10);
        for (const step of [1, 3]) {
          await store.trackAggregate({
            model: "iris",
            startMs: T0 + step * 10,
            endMs: T0 + 99,
            metrics: {},
          });
        }
        const everything = (await store.read({ model: "iris" })).rows;
        expect(everything.length).toBe(1 + 12 + 2);
        const starts = everything.map((row) => row.startTimeStampMs);
        expect(starts).toEqual([...starts].sort((a, b) => a - b));

        const pages: MetricsRow[][] = [];
        let cursor: string | undefined;
        do {
          const page = await store.read({ model: "iris", limit, ...(cursor ? { cursor } : {}) });
          pages.push(page.rows);
          cursor = page.next;
        } while (cursor);
        expect(pages.flat().map(idOf)).toEqual(everything.map(idOf));
        expect(pages.flat()).toStrictEqual(everything);
        expect(pages.map((page) => page.length)).toEqual(
          Array.from({ length: Math.ceil(everything.length / limit) }, (_, index) =>
            Math.min(limit, everything.length - index * limit),
          ),
        );
      },
    );

    it("reads 1000 rows by default and at most 10000, and refuses a bad limit or cursor", async () => {
      await store.writePredictions(
        Array.from({ length: 10_001 }, (_, index) => prediction({ startMs: T0 + index })),
      );
      const byDefault = await store.read({ model: "iris" });
      expect([byDefault.rows.length, byDefault.next !== undefined]).toEqual([1000, true]);
      const most = await store.read({ model: "iris", limit: 50_000 });
      expect([most.rows.length, most.next !== undefined]).toEqual([10_000, true]);
      const rest = await store.read({ model: "iris", limit: 50_000, cursor: most.next as string });
      expect([rest.rows.map((row) => row.startTimeStampMs), rest.next]).toEqual([
        [T0 + 10_000],
        undefined,
      ]);
      await expect(store.read({ model: "iris", limit: 0 })).rejects.toThrow(RangeError);
      await expect(store.read({ model: "iris", limit: 1.5 })).rejects.toThrow(RangeError);
      await expect(store.read({ model: "iris", cursor: "bm90IGEgY3Vyc29y" })).rejects.toThrow(
        "not a metrics cursor",
      );
    }, 60_000);

    it("ignores a uuid already stored: a retried batch, or one repeated in a batch", async () => {
      const first = prediction({ metricsJson: '{"try": 1}' });
      const second = prediction();
      await store.writePredictions([first, second]);
      const third = prediction();
      await store.writePredictions([{ ...first, metricsJson: '{"try": 2}' }, third, third]);
      const rows = (await store.read({ model: "iris" })).rows;
      expect(rows.map(idOf)).toEqual([first.uuid, second.uuid, third.uuid]);
      expect(rows[0]?.metrics).toEqual({ try: 1 });
    });

    it.each([
      ["metrics that are not JSON", { metricsJson: '{"latency": 1' }, /json/i],
      ["metrics that are not an object", { metricsJson: "[1, 2]" }, /check constraint/],
      ["a malformed uuid", { uuid: "123" }, /uuid/],
    ])("writes nothing of a batch with %s", async (_, bad, message) => {
      await expect(
        store.writePredictions([prediction(), prediction(bad), prediction()]),
      ).rejects.toThrow(message);
      expect((await store.read({ model: "iris" })).rows).toEqual([]);
    });

    describe("experiment runs", () => {
      it("records runs numbered 1, 2, 3 and reads one back whole, its big integers exact", async () => {
        const first = runRecord();
        const second = runRecord({
          commit: undefined,
          dirty: true,
          script: "train/fit.py",
          args: [],
          status: "failed",
          exitCode: 3,
          // A metric as `modelship run` reads it from the script's line, with every digit.
          metrics: parseExactJson('{"steps": 9007199254740993}') as Record<string, unknown>,
          files: [
            { name: "out/notes.txt", size: 0, tracked: false },
            { name: "gone.pkl", tracked: true },
          ],
        });
        expect(await store.recordRun(first)).toBe(1);
        expect(await store.recordRun(second)).toBe(2);
        expect(await store.recordRun(runRecord({ model: "other" }))).toBe(3);
        expect(await store.getRun(1)).toStrictEqual({ id: 1, ...first });
        const { commit: _, ...withoutCommit } = second;
        const read = await store.getRun(2);
        expect(read).toStrictEqual({ id: 2, ...withoutCommit, metrics: expect.any(Object) });
        expect(JSON.stringify(read?.metrics)).toBe('{"steps":9007199254740993}');
      });

      it("lists runs newest first, one model's, at most the limit", async () => {
        for (const model of ["iris", "other", "iris"]) await store.recordRun(runRecord({ model }));
        const ids = (runs: { id: number }[]) => runs.map((run) => run.id);
        expect(ids(await store.listRuns())).toEqual([3, 2, 1]);
        expect(ids(await store.listRuns({ model: "iris" }))).toEqual([3, 1]);
        expect(ids(await store.listRuns({ limit: 2 }))).toEqual([3, 2]);
        expect(await store.listRuns({ model: "none" })).toEqual([]);
        await expect(store.listRuns({ limit: 0 })).rejects.toThrow("a positive integer");
      });

      it("answers no run for an id that names none", async () => {
        await store.recordRun(runRecord());
        for (const id of [2, 0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1]) {
          expect(await store.getRun(id)).toBeUndefined();
        }
      });

      it.each<[string, Partial<RunRecord>]>([
        ["a success whose exit code is not 0", { status: "succeeded", exitCode: 1 }],
        ["a failure whose exit code is 0", { status: "failed", exitCode: 0 }],
        ["a commit that is not one", { commit: "main" }],
        ["a negative duration", { durationMs: -1 }],
      ])("refuses %s, storing nothing", async (_, overrides) => {
        await expect(store.recordRun(runRecord(overrides))).rejects.toThrow();
        expect(await store.listRuns()).toEqual([]);
      });
    });

    describe("retention", () => {
      it("folds predictions older than the cutoff into hourly rollups with their delayed metrics, and deletes them", async () => {
        const hour0 = [
          prediction({ startMs: T0 + 1, metricsJson: '{"latency": 2, "label": "a", "ok": true}' }),
          prediction({ startMs: T0 + 2, metricsJson: '{"latency": 4, "score": 0.25}' }),
          prediction({
            startMs: T0 + 3,
            metricsJson: '{"latency": 6, "tokens": 9007199254740993}',
          }),
        ];
        const otherRollout = prediction({ startMs: T0 + 4, deploymentId: 8 });
        const hour1 = prediction({ startMs: T0 + HOUR + 5, metricsJson: '{"latency": 8}' });
        const kept = prediction({
          startMs: T0 + 2 * HOUR,
          endMs: T0 + 2 * HOUR + 5,
          metricsJson: '{"latency": 100}',
        });
        await store.writePredictions([...hour0, otherRollout, hour1, kept]);
        // Ground truth counts as what the prediction's metrics became: latency 2 is read as 3.
        expect(
          await store.trackDelayed(hour0[0]?.uuid as string, '{"latency": 3, "truth": 1}', T0),
        ).toBe(true);
        expect(await store.trackDelayed(kept.uuid, '{"truth": 0}', T0)).toBe(true);

        expect(await store.rollUp(T0 + 2 * HOUR)).toEqual({ predictions: 5, hours: 3 });

        const rows = await readAll(store, { model: "iris" });
        expect(
          rows.map((row) => [row.type, row.startTimeStampMs - T0, row.endTimeStampMs - T0]),
        ).toEqual([
          ["rollup", 0, HOUR],
          ["rollup", 0, HOUR],
          ["rollup", HOUR, 2 * HOUR],
          ["prediction", 2 * HOUR, 2 * HOUR + 5],
        ]);
        const [rollout7, rollout8, nextHour] = rows;
        expect(rollout7).toMatchObject({
          type: "rollup",
          count: 3,
          modelCrn: "crn:modelship:iris",
          modelBuildCrn: "crn:modelship:iris/builds/3",
          modelDeploymentCrn: "crn:modelship:iris/deployments/prod/7",
        });
        // Numbers only: the label and the boolean are not summed.
        const { tokens, ...summed } = rollout7?.metrics ?? {};
        expect(summed).toStrictEqual({
          latency: { count: 3, sum: 13, min: 3, max: 6 },
          score: { count: 1, sum: 0.25, min: 0.25, max: 0.25 },
          truth: { count: 1, sum: 1, min: 1, max: 1 },
        });
        expect(
          Object.fromEntries(
            Object.entries(tokens as object).map(([stat, value]) => [stat, JSON.stringify(value)]),
          ),
        ).toStrictEqual({
          count: "1",
          sum: "9007199254740993",
          min: "9007199254740993",
          max: "9007199254740993",
        });
        expect(rollout8).toMatchObject({
          count: 1,
          metrics: { latency: { count: 1, sum: 1, min: 1, max: 1 } },
        });
        expect(nextHour).toMatchObject({
          count: 1,
          metrics: { latency: { count: 1, sum: 8, min: 8, max: 8 } },
        });
        // The folded predictions and their delayed metrics are gone; the kept one keeps its own.
        expect(await store.prediction(hour1.uuid)).toBeUndefined();
        expect(await store.trackDelayed(hour1.uuid, '{"truth": 1}', T0)).toBe(false);
        expect(await client.query("SELECT prediction_uuid FROM delayed_metrics")).toEqual([
          { prediction_uuid: kept.uuid },
        ]);
        expect(rows[3]?.metrics).toEqual({ latency: 100, truth: 0 });
        // A read narrowed to one rollout has that rollout's rollups only.
        expect(
          (await readAll(store, { model: "iris", deployment: "prod", deploymentId: 8 })).map(
            (row) => row.count,
          ),
        ).toEqual([1]);
      });

      it("adds a later pass into the hour a former one wrote", async () => {
        await store.writePredictions([
          prediction({ startMs: T0 + 10, metricsJson: '{"latency": 5, "a": 1}' }),
          prediction({ startMs: T0 + 20, metricsJson: '{"latency": 7}' }),
          prediction({
            startMs: T0 + 30,
            build: undefined,
            deployment: undefined,
            deploymentId: undefined,
          }),
        ]);
        expect(await store.rollUp(T0 + HOUR)).toEqual({ predictions: 3, hours: 2 });
        expect(await store.rollUp(T0 + HOUR)).toEqual({ predictions: 0, hours: 0 });
        // Late arrivals in the same hour, for both subjects (one without a build or deployment).
        await store.writePredictions([
          prediction({ startMs: T0 + 40, metricsJson: '{"latency": 1, "b": 2}' }),
          prediction({ startMs: T0 + 50, metricsJson: '{"latency": 9}' }),
          prediction({
            startMs: T0 + 60,
            build: undefined,
            deployment: undefined,
            deploymentId: undefined,
          }),
        ]);
        expect(await store.rollUp(T0 + HOUR)).toEqual({ predictions: 3, hours: 2 });
        const rollups = await readAll(store, { model: "iris" });
        expect(rollups).toStrictEqual([
          {
            type: "rollup",
            modelCrn: "crn:modelship:iris",
            modelBuildCrn: "crn:modelship:iris/builds/3",
            modelDeploymentCrn: "crn:modelship:iris/deployments/prod/7",
            startTimeStampMs: T0,
            endTimeStampMs: T0 + HOUR,
            metrics: {
              latency: { count: 4, sum: 22, min: 1, max: 9 },
              a: { count: 1, sum: 1, min: 1, max: 1 },
              b: { count: 1, sum: 2, min: 2, max: 2 },
            },
            count: 4,
          },
          {
            type: "rollup",
            modelCrn: "crn:modelship:iris",
            startTimeStampMs: T0,
            endTimeStampMs: T0 + HOUR,
            metrics: { latency: { count: 2, sum: 2, min: 1, max: 1 } },
            count: 2,
          },
        ]);
        expect(await client.query("SELECT count(*) AS n FROM prediction_rollups")).toEqual([
          { n: "2" },
        ]);
      });
    });
  });
});

describe("the store in memory", () => {
  it("keeps rows while open", async () => {
    const store = await openEmbeddedMetricsStore("memory");
    try {
      const record = prediction();
      await store.writePredictions([record]);
      expect((await store.read({ model: "iris" })).rows.map(idOf)).toEqual([record.uuid]);
    } finally {
      await store.close();
    }
  });
});

describe("the store on a PostgreSQL server, beside other connections", () => {
  let url: string;
  let store: SqlMetricsStore;
  /** Another connection, as a gateway or a second controller would have. */
  let other: SqlClient;

  beforeAll(async () => {
    url = await server.createDatabase("concurrent");
    store = await openPostgresMetricsStore(url);
    other = openPostgresClient(url);
  });

  afterAll(async () => {
    await store?.close();
    await other?.close();
  });

  beforeEach(async () => {
    await other.query("TRUNCATE predictions, delayed_metrics, prediction_rollups");
  });

  /** Until a statement of this database waits for a lock another transaction holds. */
  const someoneWaits = () =>
    eventually(async () => {
      const [row] = await other.query<{ waiting: string }>(
        `SELECT count(*) AS waiting FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      return row?.waiting === "1";
    });

  it("migrates once when two processes open one database at once", async () => {
    const fresh = await server.createDatabase("raced");
    const clients = [openPostgresClient(fresh), openPostgresClient(fresh)];
    try {
      const applied = await Promise.all(clients.map((client) => migrate(client)));
      // Each version once, by one process or the other (they may take turns between versions).
      expect(applied.flat().sort((a, b) => a - b)).toEqual(
        MIGRATIONS.map((migration) => migration.version),
      );
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  });

  it("folds ground truth whose write was under way when a retention pass began", async () => {
    const record = prediction({ metricsJson: '{"latency": 1}' });
    await store.writePredictions([record]);
    let rolledUp: Promise<unknown> | undefined;
    await other.transaction(async (tx) => {
      // trackDelayed's statement, not yet committed…
      await tx.query(
        `INSERT INTO delayed_metrics (prediction_uuid, at_ms, metrics)
         SELECT uuid, 0, '{"truth": 1}' FROM predictions WHERE uuid = $1`,
        [record.uuid],
      );
      // …when the pass starts: it waits for the write instead of folding without it.
      rolledUp = store.rollUp(T0 + 1);
      await someoneWaits();
    });
    expect(await rolledUp).toEqual({ predictions: 1, hours: 1 });
    const [rollup] = (await store.read({ model: "iris" })).rows;
    expect(rollup?.metrics).toEqual({
      latency: { count: 1, sum: 1, min: 1, max: 1 },
      truth: { count: 1, sum: 1, min: 1, max: 1 },
    });
    expect(await other.query("SELECT id FROM delayed_metrics")).toEqual([]);
  });

  it("refuses ground truth for a prediction that a pass under way folds", async () => {
    const record = prediction();
    await store.writePredictions([record]);
    let tracked: Promise<boolean> | undefined;
    await other.transaction(async (tx) => {
      // What rollUp holds and does, not yet committed…
      await tx.query("LOCK TABLE delayed_metrics IN SHARE ROW EXCLUSIVE MODE");
      await tx.query("DELETE FROM predictions WHERE uuid = $1", [record.uuid]);
      // …when ground truth comes: it waits, then finds the prediction gone.
      tracked = store.trackDelayed(record.uuid, '{"truth": 1}', T0);
      await someoneWaits();
    });
    expect(await tracked).toBe(false);
    expect(await other.query("SELECT id FROM delayed_metrics")).toEqual([]);
  });
});

describe("the PostgreSQL store's errors", () => {
  it.each([
    [
      "a wrong password",
      () => server.urlOf("postgres").replace(TEST_PASSWORD, "wrong-secret-1"),
      "wrong-secret-1",
    ],
    [
      "a port nobody listens on",
      () => "postgres://modelship:secret-2@127.0.0.1:1/metrics",
      "secret-2",
    ],
    ["a URL that does not parse", () => "postgres://modelship:secret-3@[::1/metrics", "secret-3"],
  ])("never show the password, with %s", async (_, url, password) => {
    const error = await openPostgresMetricsStore(url()).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(Error);
    expect(String((error as Error).message)).not.toBe("");
    expect(inspect(error, { depth: 4 })).not.toContain(password);
  });

  it("masks a password an error shows anywhere, as written and decoded, and passes other errors as they are", () => {
    const hide = passwordHider("postgres://user:p%40ss@db.example:5432/metrics");
    const shown = Object.assign(new Error("could not use p@ss"), { code: "XX000" });
    expect(hide(shown)).toMatchObject({ message: "could not use ****", code: "XX000" });
    const inCause = new Error("failed", { cause: new Error("p%40ss") });
    expect(inspect(hide(inCause))).not.toContain("p%40ss");
    expect((hide(inCause) as Error).message).toBe("failed");
    const harmless = new Error("relation does not exist");
    expect(hide(harmless)).toBe(harmless);
    // Node reports a refused connection to each of several addresses with no message at all.
    const refused = new AggregateError(
      [
        new Error("connect ECONNREFUSED ::1:5432"),
        new Error("connect ECONNREFUSED 127.0.0.1:5432"),
      ],
      "",
    );
    expect((hide(refused) as Error).message).toBe(
      "connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432",
    );
    expect(
      (
        passwordHider("postgres://user:sec ret@[bad")(
          new Error("in postgres://user:sec ret@[bad"),
        ) as Error
      ).message,
    ).toBe("in ****");
  });

  it("fails while the server is down and serves again once it is back, on the same store", async () => {
    const outage = await startPostgresServer();
    try {
      const store = await openPostgresMetricsStore(outage.url);
      try {
        const before = prediction();
        await store.writePredictions([before]);
        await outage.stop();
        const down = await store.writePredictions([prediction()]).then(
          () => undefined,
          (reason: unknown) => reason,
        );
        expect(down).toBeInstanceOf(Error);
        expect(inspect(down, { depth: 4 })).not.toContain(TEST_PASSWORD);
        await outage.start();
        const after = prediction();
        await store.writePredictions([after]);
        expect((await store.read({ model: "iris" })).rows.map(idOf)).toEqual([
          before.uuid,
          after.uuid,
        ]);
      } finally {
        await store.close();
      }
    } finally {
      await outage.remove();
    }
  }, 60_000);
});
