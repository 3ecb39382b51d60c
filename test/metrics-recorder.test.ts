// The gateway's metrics write buffer against a store that takes, fails or hangs on demand: the
// buffer's bounds and retries, and that every prediction is either written or counted as
// dropped. (The real stores are in metrics-store.test.ts; the path through a real gateway in
// metrics-gateway.test.ts.)
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import {
  MetricsRecorder,
  type MetricsRecorderOptions,
} from "../controller/gateway/metrics-recorder.ts";
import type { PredictionRecord } from "../controller/metrics/port.ts";

/** A store whose writes succeed, fail, or hang until released, as the test says. */
class ScriptedStore {
  written: PredictionRecord[] = [];
  batches: number[] = [];
  mode: "take" | "fail" | "hang" = "take";
  private hung: (() => void)[] = [];

  async writePredictions(records: PredictionRecord[]): Promise<void> {
    this.batches.push(records.length);
    if (this.mode === "fail") throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
    // As PostgreSQL refuses a value jsonb cannot hold: the whole statement fails.
    if (records.some((record) => record.metricsJson.includes("\\u0000"))) {
      throw Object.assign(new Error("unsupported Unicode escape sequence"), { code: "22P05" });
    }
    if (this.mode === "hang") await new Promise<void>((resolve) => this.hung.push(resolve));
    this.written.push(...records);
  }

  release(): void {
    for (const resolve of this.hung.splice(0)) resolve();
  }
}

const recorders: MetricsRecorder[] = [];
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((recorder) => recorder.close(100)));
});

function setUp(options: Partial<MetricsRecorderOptions> = {}) {
  const store = new ScriptedStore();
  const register = new Registry();
  const log: string[] = [];
  const recorder = new MetricsRecorder({
    store,
    register,
    log: (line) => log.push(line),
    flushIntervalMs: 10,
    maxRetryMs: 20,
    ...options,
  });
  recorders.push(recorder);
  const counter = async (name: string, labels: Record<string, string> = {}) => {
    const metric = (await register.getMetricsAsJSON()).find((entry) => entry.name === name);
    const values = (metric?.values ?? []) as { value: number; labels: Record<string, string> }[];
    const value = values.find((entry) =>
      Object.entries(labels).every(([key, label]) => entry.labels[key] === label),
    );
    return value?.value ?? 0;
  };
  return { store, recorder, log, counter };
}

let sequence = 0;
function prediction(): PredictionRecord {
  sequence += 1;
  return { uuid: `u-${sequence}`, model: "iris", startMs: 1, endMs: 2, metricsJson: "{}" };
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("the condition never held");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("the metrics write buffer", () => {
  it.each([
    { records: 1, batchSize: 500, batches: [1] },
    { records: 1200, batchSize: 500, batches: [500, 500, 200] },
    { records: 10, batchSize: 3, batches: [3, 3, 3, 1] },
  ])("writes $records predictions in batches of at most $batchSize", async (row) => {
    const { store, recorder, counter } = setUp({ batchSize: row.batchSize });
    for (let index = 0; index < row.records; index++) recorder.record(prediction());
    await until(() => store.written.length === row.records);
    expect(store.batches).toEqual(row.batches);
    expect(await counter("modelship_metrics_predictions_written_total")).toBe(row.records);
    expect(recorder.pending).toBe(0);
  });

  it("keeps a failed batch, retries it, and logs the failure once and the recovery", async () => {
    const { store, recorder, log, counter } = setUp();
    store.mode = "fail";
    for (let index = 0; index < 5; index++) recorder.record(prediction());
    await until(() => store.batches.length >= 3);
    expect(recorder.pending).toBe(5);
    store.mode = "take";
    await until(() => store.written.length === 5);
    expect(store.written.map((record) => record.uuid)).toEqual([
      ...new Set(store.written.map((record) => record.uuid)),
    ]);
    expect(await counter("modelship_metrics_write_failures_total")).toBeGreaterThanOrEqual(2);
    expect(log.filter((line) => line.includes("failed (connect ECONNREFUSED"))).toHaveLength(1);
    expect(log.some((line) => line.includes("takes writes again"))).toBe(true);
    expect(await counter("modelship_metrics_predictions_dropped_total")).toBe(0);
  });

  it("drops what does not fit while the store is down, and counts and logs every one", async () => {
    const { store, recorder, log, counter } = setUp({ capacity: 100, batchSize: 10 });
    store.mode = "fail";
    for (let index = 0; index < 250; index++) recorder.record(prediction());
    expect(recorder.pending).toBeLessThanOrEqual(100);
    const dropped = await counter("modelship_metrics_predictions_dropped_total", {
      reason: "buffer_full",
    });
    expect(dropped + recorder.pending).toBe(250);
    expect(dropped).toBe(150);
    expect(
      log.some((line) =>
        /metrics of \d+ predictions? were dropped: the write buffer is full \(100/.test(line),
      ),
    ).toBe(true);
    store.mode = "take";
    await until(() => store.written.length === 100);
    expect(await counter("modelship_metrics_predictions_written_total")).toBe(100);
  });

  it("takes a hung write for a failure after the write timeout, and a late success twice is harmless", async () => {
    const { store, recorder, counter } = setUp({ writeTimeoutMs: 30 });
    store.mode = "hang";
    recorder.record(prediction());
    await until(() => store.batches.length >= 2);
    expect(await counter("modelship_metrics_write_failures_total")).toBeGreaterThanOrEqual(1);
    store.mode = "take";
    store.release();
    await until(() => recorder.pending === 0);
    // The hung write and its retry both land: the store ignores a uuid it has (ON CONFLICT).
    expect(store.written.length).toBeGreaterThanOrEqual(1);
  });

  it("drops only the predictions whose values the store refuses, and counts and logs them", async () => {
    const { store, recorder, log, counter } = setUp({ batchSize: 100 });
    const poisoned = new Set([7, 50, 51]);
    for (let index = 0; index < 100; index++) {
      const record = prediction();
      if (poisoned.has(index)) record.metricsJson = '{"note":"a\\u0000b"}';
      recorder.record(record);
    }
    await until(() => store.written.length === 97);
    expect(recorder.pending).toBe(0);
    expect(
      await counter("modelship_metrics_predictions_dropped_total", { reason: "invalid" }),
    ).toBe(3);
    expect(await counter("modelship_metrics_write_failures_total")).toBe(0);
    expect(
      log.some((line) =>
        /\d+ predictions? were dropped: the store refused them \(the last: prediction u-\d+ of model iris: unsupported Unicode/.test(
          line,
        ),
      ),
    ).toBe(true);
  });

  it("holds at most capacityBytes of metrics while the store is down", async () => {
    const { store, recorder, counter } = setUp({ capacityBytes: 10_000, batchSize: 10 });
    store.mode = "fail";
    for (let index = 0; index < 50; index++) {
      const record = prediction();
      record.metricsJson = `{"input":"${"x".repeat(990)}"}`;
      recorder.record(record);
    }
    expect(recorder.pending).toBeLessThanOrEqual(10);
    const dropped = await counter("modelship_metrics_predictions_dropped_total", {
      reason: "buffer_full",
    });
    expect(dropped + recorder.pending).toBe(50);
  });

  it("flush() writes what it holds now, and rejects with the store's error", async () => {
    const { store, recorder } = setUp({ flushIntervalMs: 60_000 });
    recorder.record(prediction());
    recorder.record(prediction());
    await recorder.flush();
    expect(store.written).toHaveLength(2);
    store.mode = "fail";
    recorder.record(prediction());
    await expect(recorder.flush()).rejects.toThrow(/ECONNREFUSED/);
  });

  it("close() writes what is left, and counts what it could not as dropped at shutdown", async () => {
    const first = setUp({ flushIntervalMs: 60_000 });
    for (let index = 0; index < 3; index++) first.recorder.record(prediction());
    await first.recorder.close(1000);
    expect(first.store.written).toHaveLength(3);

    const second = setUp({ flushIntervalMs: 60_000 });
    second.store.mode = "fail";
    for (let index = 0; index < 4; index++) second.recorder.record(prediction());
    await second.recorder.close(100);
    expect(
      await second.counter("modelship_metrics_predictions_dropped_total", { reason: "shutdown" }),
    ).toBe(4);
    expect(
      second.log.some((line) => line.includes("4 predictions were dropped: the gateway stopped")),
    ).toBe(true);
    // After close, a late prediction is counted too, not kept.
    second.recorder.record(prediction());
    expect(
      await second.counter("modelship_metrics_predictions_dropped_total", { reason: "shutdown" }),
    ).toBe(5);
  });
});
