// npm run bench:metrics — what tracking metrics costs, as a ratio in one run (docs/benchmarks.md):
// the same calls through two gateways side by side, interleaved round by round:
//   off: `add`, a function that tracks nothing, behind a gateway without a metrics store;
//   on:  `tracked_add`, decorated with model_metrics and tracking its input and result, behind
//        a gateway that writes every prediction to an embedded metrics store (PGlite);
//   tracked, no store: `tracked_add` behind a gateway without a store — what the worker and the
//        agent cost, apart from the store's writes.
// The goal: metrics cost at most 5 % of throughput.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { closedLoop, percentile, type Started, start, startReplica, stopAll } from "./lib.ts";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 2 : 5;
const SECONDS = quick ? 1.5 : 4;
const REPLICAS = 2;

function gatewayConfig(directory: string, name: string, replicas: Started[]): string {
  const file = join(directory, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      models: [
        {
          name,
          authentication: { enabled: false },
          replicas: replicas.map((replica, index) => ({
            id: `${name}-${index + 1}`,
            url: replica.url,
          })),
        },
      ],
    }),
  );
  return file;
}

async function main(): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), "modelship-bench-metrics-"));
  try {
    const plain = await Promise.all(
      Array.from({ length: REPLICAS }, (_, index) => startReplica(`off-${index + 1}`, "add")),
    );
    const tracked = await Promise.all(
      Array.from({ length: REPLICAS }, (_, index) =>
        startReplica(`on-${index + 1}`, "tracked_add", ["--serves", `on/1/on/${index + 1}`]),
      ),
    );
    const off = await start([
      "gateway",
      "--config",
      gatewayConfig(directory, "off", plain),
      "--port",
      "0",
    ]);
    const on = await start([
      "gateway",
      ...["--config", gatewayConfig(directory, "on", tracked), "--port", "0"],
      ...["--metrics-dir", join(directory, "metrics")],
    ]);
    // The same replicas, one side at a time: what the worker and agent cost without the store.
    const unstored = await start([
      "gateway",
      ...["--config", gatewayConfig(directory, "unstored", tracked), "--port", "0"],
    ]);
    const body = JSON.stringify({ a: 3, b: 5 });
    const urls = {
      off: `${off.url}/models/off/predict`,
      on: `${on.url}/models/on/predict`,
      unstored: `${unstored.url}/models/unstored/predict`,
    };
    // The tracked answer is CDSW's: {"prediction": 8, "uuid": ...}.
    const sample = await fetch(urls.on, { method: "POST", body });
    if (!sample.ok) throw new Error(`the tracked model answered ${sample.status}`);

    console.log(
      `machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, load average ${loadavg()
        .map((value) => value.toFixed(2))
        .join(" ")}`,
    );
    console.log(
      `${REPLICAS} replicas each; ${ROUNDS} interleaved rounds of ${SECONDS} s per figure; calls/s`,
    );
    for (const concurrency of [1, 4]) {
      const ratios = { on: [] as number[], unstored: [] as number[] };
      const figures = { off: [] as number[], on: [] as number[], unstored: [] as number[] };
      for (let round = 0; round < ROUNDS; round++) {
        // Rotate which goes first, so none always meets another's leftovers.
        const sides = ["off", "on", "unstored"] as const;
        const order = sides.map(
          (_, index) => sides[(index + round) % sides.length] as (typeof sides)[number],
        );
        const result = { off: 0, on: 0, unstored: 0 };
        for (const side of order) {
          result[side] = await closedLoop([urls[side]], concurrency, body, SECONDS);
          figures[side].push(result[side]);
        }
        ratios.on.push(result.on / result.off);
        ratios.unstored.push(result.unstored / result.off);
      }
      const median = (values: number[]) => percentile(values, 50);
      const list = (values: number[]) => values.map((ratio) => ratio.toFixed(3)).join(" ");
      console.log(
        `  concurrency ${concurrency}: off ${median(figures.off).toFixed(0)}, on ${median(figures.on).toFixed(0)}, tracked without a store ${median(figures.unstored).toFixed(0)}`,
      );
      console.log(
        `    on ÷ off per round ${list(ratios.on)}, median ${median(ratios.on).toFixed(3)}   (goal ≥ 0.95)`,
      );
      console.log(
        `    tracked without a store ÷ off ${list(ratios.unstored)}, median ${median(ratios.unstored).toFixed(3)}`,
      );
    }
    // Every call was answered 200 (closedLoop throws otherwise); were they all stored?
    const written = await metricValue(
      `${on.url}/metrics`,
      "modelship_metrics_predictions_written_total",
    );
    const dropped = await metricValue(
      `${on.url}/metrics`,
      "modelship_metrics_predictions_dropped_total",
    );
    console.log(`  the store took ${written} predictions' metrics, ${dropped} dropped`);
  } finally {
    stopAll();
    rmSync(directory, { recursive: true, force: true });
  }
}

/** The sum of a Prometheus metric's samples. */
async function metricValue(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith(name))
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
}

await main();
