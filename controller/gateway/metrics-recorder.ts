// The gateway's side of the metrics store (docs/metrics.md): predictions that tracked metrics
// are kept in a bounded buffer and written in batches, off the hot path. A call is answered
// before its metrics are stored, and never waits for the store: when the store is down or slow
// the buffer fills, and what does not fit is counted (modelship_metrics_predictions_dropped_total)
// and logged — lost, but never silently.
import { Counter, Gauge, type Registry } from "prom-client";
import { formatBytes } from "../api/http.ts";
import type { MetricsStore, PredictionRecord } from "../metrics/port.ts";

export interface MetricsRecorderOptions {
  store: Pick<MetricsStore, "writePredictions">;
  /** Where the gateway's Prometheus metrics are. */
  register: Registry;
  log: (line: string) => void;
  /** Predictions held at most, waiting to be written (default 20,000). */
  capacity?: number;
  /**
   * Bytes of metrics held at most (default 64 MB): 20,000 predictions of 64 KiB each would be
   * more than a gateway's memory, and a gateway that runs out answers no model at all.
   */
  capacityBytes?: number;
  /** Predictions per write (default 500). */
  batchSize?: number;
  /** How long a prediction may wait for a batch to fill (default 200 ms). */
  flushIntervalMs?: number;
  /** A write that takes longer counts as failed, and is tried again (default 5 s). */
  writeTimeoutMs?: number;
  /** The longest wait before trying a failing store again (default 5 s). */
  maxRetryMs?: number;
  /** How often a summary of what was dropped is logged (default 10 s). */
  dropLogIntervalMs?: number;
}

export type DropReason = "buffer_full" | "shutdown" | "invalid";

export class MetricsRecorder {
  private readonly options: Required<Omit<MetricsRecorderOptions, "store" | "register" | "log">>;
  private readonly store: Pick<MetricsStore, "writePredictions">;
  private readonly log: (line: string) => void;
  private buffer: PredictionRecord[] = [];
  /** The metrics' bytes in `buffer` (their JSON is ASCII: its length is its size). */
  private bufferedBytes = 0;
  /** The store's last word on a prediction it refused, for the log. */
  private lastRefusal = "";
  private timer: NodeJS.Timeout | undefined;
  /** The write in flight, if any: one at a time, so batches land in order. */
  private writing: Promise<void> | undefined;
  private failuresInARow = 0;
  private lastError = "";
  private closed = false;
  /** Drops since the last summary, by reason. */
  private droppedSinceLog = new Map<DropReason, number>();
  private dropLogTimer: NodeJS.Timeout | undefined;
  private readonly meters: ReturnType<typeof recorderMetrics>;

  constructor(options: MetricsRecorderOptions) {
    this.store = options.store;
    this.log = options.log;
    this.options = {
      capacity: options.capacity ?? 20_000,
      capacityBytes: options.capacityBytes ?? 64 * 1024 * 1024,
      batchSize: options.batchSize ?? 500,
      flushIntervalMs: options.flushIntervalMs ?? 200,
      writeTimeoutMs: options.writeTimeoutMs ?? 5000,
      maxRetryMs: options.maxRetryMs ?? 5000,
      dropLogIntervalMs: options.dropLogIntervalMs ?? 10_000,
    };
    this.meters = recorderMetrics(options.register, () => this.buffer.length);
  }

  /** Takes one prediction's metrics: the hot path, so it only appends (or counts a drop). */
  record(record: PredictionRecord): void {
    if (this.closed) {
      this.drop("shutdown", 1);
      return;
    }
    if (
      this.buffer.length >= this.options.capacity ||
      this.bufferedBytes + record.metricsJson.length > this.options.capacityBytes
    ) {
      this.drop("buffer_full", 1);
      return;
    }
    this.buffer.push(record);
    this.bufferedBytes += record.metricsJson.length;
    this.meters.recorded.inc();
    if (this.buffer.length >= this.options.batchSize) this.writeSoon(0);
    else this.writeSoon(this.options.flushIntervalMs);
  }

  /** Predictions waiting to be written. */
  get pending(): number {
    return this.buffer.length;
  }

  /**
   * Writes everything buffered now, and resolves when it is stored or the store failed (whose
   * message it rejects with). Used before a lookup that must see the latest predictions.
   */
  async flush(): Promise<void> {
    while (this.buffer.length > 0 || this.writing) {
      if (this.writing) {
        await this.writing;
        continue;
      }
      const failuresBefore = this.failuresInARow;
      await this.writeBatch();
      if (this.failuresInARow > failuresBefore) throw new Error(this.lastError);
    }
  }

  /**
   * Stops taking predictions and writes what it holds, for at most `graceMs`; what is still
   * unwritten then is counted and logged as dropped.
   */
  async close(graceMs = 5000): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const deadline = Date.now() + graceMs;
    while ((this.buffer.length > 0 || this.writing) && Date.now() < deadline) {
      try {
        await this.flush();
      } catch {
        await delay(Math.min(200, Math.max(0, deadline - Date.now())));
      }
    }
    if (this.buffer.length > 0) {
      this.drop("shutdown", this.buffer.length);
      this.buffer = [];
      this.bufferedBytes = 0;
    }
    this.logDrops();
    clearTimeout(this.dropLogTimer);
  }

  private writeSoon(ms: number): void {
    if (this.writing) return; // the write in flight schedules the next one when it ends
    if (this.timer !== undefined) {
      if (ms > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.writeBatch();
    }, ms);
  }

  private writeBatch(): Promise<void> {
    if (this.writing) return this.writing;
    if (this.buffer.length === 0) return Promise.resolve();
    const batch = this.buffer.splice(0, this.options.batchSize);
    this.bufferedBytes -= bytesOf(batch);
    this.writing = this.write(batch).finally(() => {
      this.writing = undefined;
      if (this.buffer.length > 0 && !this.closed) {
        // Back off while the store fails; otherwise go on at once if a batch is ready.
        const wait =
          this.failuresInARow > 0
            ? Math.min(100 * 2 ** (this.failuresInARow - 1), this.options.maxRetryMs)
            : this.buffer.length >= this.options.batchSize
              ? 0
              : this.options.flushIntervalMs;
        this.writeSoon(wait);
      }
    });
    return this.writing;
  }

  private async write(batch: PredictionRecord[]): Promise<void> {
    const started = performance.now();
    const { retry, error } = await this.writeSplitting(batch);
    if (error === undefined) {
      this.meters.writeSeconds.set((performance.now() - started) / 1000);
      if (this.failuresInARow > 0) {
        this.log(
          `metrics: the store takes writes again after ${this.failuresInARow} failed ${this.failuresInARow === 1 ? "try" : "tries"}; ${this.buffer.length} predictions still to write`,
        );
      }
      this.failuresInARow = 0;
      return;
    }
    this.meters.writeFailures.inc();
    this.lastError = error.message;
    if (this.failuresInARow === 0) {
      this.log(
        `metrics: writing ${retry.length} predictions failed (${this.lastError}); they are kept and tried again, and predictions are still answered`,
      );
    }
    this.failuresInARow += 1;
    // Back at the front, oldest first; what no longer fits is dropped, counted and logged.
    this.buffer = retry.concat(this.buffer);
    this.bufferedBytes += bytesOf(retry);
    let excess = 0;
    while (
      this.buffer.length > this.options.capacity ||
      (this.bufferedBytes > this.options.capacityBytes && this.buffer.length > 0)
    ) {
      this.bufferedBytes -= (this.buffer.pop() as PredictionRecord).metricsJson.length;
      excess += 1;
    }
    if (excess > 0) this.drop("buffer_full", excess);
  }

  /**
   * Writes a batch. One prediction whose metrics the store refuses (a value PostgreSQL's jsonb
   * cannot hold: a \u0000, a number out of its range) must not hold back every other: such a
   * batch is halved until the refused ones stand alone, and they are dropped, counted as
   * `invalid` and logged. Returns what is left when the store fails otherwise (down, slow).
   */
  private async writeSplitting(
    batch: PredictionRecord[],
  ): Promise<{ retry: PredictionRecord[]; error?: Error }> {
    try {
      await withTimeout(this.store.writePredictions(batch), this.options.writeTimeoutMs);
      this.meters.written.inc(batch.length);
      return { retry: [] };
    } catch (error) {
      if (!refusesTheData(error)) return { retry: batch, error: error as Error };
      if (batch.length === 1) {
        const [record] = batch as [PredictionRecord];
        this.lastRefusal = `prediction ${record.uuid} of model ${record.model}: ${(error as Error).message}`;
        this.drop("invalid", 1);
        return { retry: [] };
      }
      const middle = Math.ceil(batch.length / 2);
      const first = await this.writeSplitting(batch.slice(0, middle));
      if (first.error)
        return { retry: [...first.retry, ...batch.slice(middle)], error: first.error };
      return this.writeSplitting(batch.slice(middle));
    }
  }

  private drop(reason: DropReason, count: number): void {
    this.meters.dropped.inc({ reason }, count);
    const before = this.droppedSinceLog.get(reason) ?? 0;
    this.droppedSinceLog.set(reason, before + count);
    if (reason === "shutdown") return;
    // The first drop is logged at once; the rest are summed up every dropLogIntervalMs.
    if (this.dropLogTimer === undefined) {
      this.logDrops();
      this.dropLogTimer = setTimeout(() => {
        this.dropLogTimer = undefined;
        this.logDrops();
      }, this.options.dropLogIntervalMs);
      this.dropLogTimer.unref();
    }
  }

  private logDrops(): void {
    for (const [reason, count] of this.droppedSinceLog) {
      if (count === 0) continue;
      const why =
        reason === "buffer_full"
          ? `the write buffer is full (${this.options.capacity} predictions or ${formatBytes(this.options.capacityBytes)})${this.failuresInARow > 0 ? ` because the store fails: ${this.lastError}` : ", the store is slower than the calls"}`
          : reason === "invalid"
            ? `the store refused them (the last: ${this.lastRefusal})`
            : "the gateway stopped before the store took them";
      this.log(
        `metrics: the metrics of ${count} ${count === 1 ? "prediction" : "predictions"} were dropped: ${why}`,
      );
    }
    this.droppedSinceLog.clear();
  }
}

function recorderMetrics(register: Registry, buffered: () => number) {
  return {
    recorded: new Counter({
      name: "modelship_metrics_predictions_recorded_total",
      help: "Predictions whose tracked metrics were taken into the write buffer.",
      registers: [register],
    }),
    written: new Counter({
      name: "modelship_metrics_predictions_written_total",
      help: "Predictions whose tracked metrics the metrics store took.",
      registers: [register],
    }),
    dropped: new Counter({
      name: "modelship_metrics_predictions_dropped_total",
      help: "Predictions whose tracked metrics were not stored: the buffer was full (the store was down or slow), the store refused their values (invalid), or the gateway stopped first.",
      labelNames: ["reason"],
      registers: [register],
    }),
    writeFailures: new Counter({
      name: "modelship_metrics_write_failures_total",
      help: "Batch writes to the metrics store that failed or timed out (they are tried again).",
      registers: [register],
    }),
    writeSeconds: new Gauge({
      name: "modelship_metrics_last_write_seconds",
      help: "How long the last successful batch write took.",
      registers: [register],
    }),
    buffer: new Gauge({
      name: "modelship_metrics_buffer_predictions",
      help: "Predictions waiting to be written to the metrics store.",
      registers: [register],
      collect() {
        this.set(buffered());
      },
    }),
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the store within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function bytesOf(records: PredictionRecord[]): number {
  return records.reduce((sum, record) => sum + record.metricsJson.length, 0);
}

/** PostgreSQL's data exceptions (class 22): the values are wrong, not the store. */
function refusesTheData(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && code.startsWith("22");
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
