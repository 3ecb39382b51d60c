// npm run bench:metrics — what tracking metrics costs, as ratios in one run (docs/benchmarks.md).
// Two models, each in two versions that differ only in tracking:
//   add:  `add` (tracks nothing) and `tracked_add` (model_metrics, tracks its input and result),
//         a function that costs nothing, so every cost of the metrics shows: the worst case;
//   iris: the iris example's predict.py and iris-metrics' predict_with_metrics.py, the same
//         scikit-learn model, as a model does real work.
// They are served by three gateways side by side, called in interleaved rounds:
//   off:      the untracked versions, a gateway without a metrics store;
//   on:       the tracked versions, a gateway writing every prediction to PGlite (its own store);
//   unstored: the tracked versions, a gateway without a store: the worker's and agent's share.
// The goal: metrics cost at most 5 % of throughput.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import {
  closedLoop,
  type ModelFile,
  median,
  ROOT,
  type Started,
  start,
  startReplica,
  stopAll,
} from "./lib.ts";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 2 : 5;
const SECONDS = quick ? 1.5 : 3;
const REPLICAS = 2;
const SIDES = ["off", "on", "unstored"] as const;
type Side = (typeof SIDES)[number];

interface Model {
  name: string;
  body: string;
  untracked: { model: ModelFile; functionName: string };
  tracked: { model: ModelFile; functionName: string };
}

/** The iris examples, trained in a copy as their build does. */
function irisModels(directory: string): Model {
  for (const example of ["iris", "iris-metrics"]) {
    cpSync(join(ROOT, "manifests/examples", example), join(directory, example), {
      recursive: true,
    });
    const fit = spawnSync("python3", ["fit.py"], {
      cwd: join(directory, example),
      env: { ...process.env, PYTHONPATH: join(ROOT, "runtime/python") },
      encoding: "utf8",
    });
    if (fit.status !== 0) throw new Error(`${example}/fit.py failed: ${fit.stderr}`);
  }
  return {
    name: "iris",
    body: JSON.stringify({ petal_length: 4.2 }),
    untracked: {
      model: { directory: join(directory, "iris"), file: "predict.py" },
      functionName: "predict",
    },
    tracked: {
      model: { directory: join(directory, "iris-metrics"), file: "predict_with_metrics.py" },
      functionName: "predict",
    },
  };
}

const ADD: Model = {
  name: "add",
  body: JSON.stringify({ a: 3, b: 5 }),
  untracked: {
    model: { directory: join(ROOT, "bench/models"), file: "bench_model.py" },
    functionName: "add",
  },
  tracked: {
    model: { directory: join(ROOT, "bench/models"), file: "bench_model.py" },
    functionName: "tracked_add",
  },
};

async function replicasOf(model: Model, tracked: boolean): Promise<Started[]> {
  const version = tracked ? model.tracked : model.untracked;
  return Promise.all(
    Array.from({ length: REPLICAS }, (_, index) =>
      startReplica(
        `${model.name}-${tracked ? "on" : "off"}-${index + 1}`,
        version.functionName,
        tracked ? ["--serves", `${model.name}/1/${model.name}/1`] : [],
        version.model,
      ),
    ),
  );
}

function gatewayConfig(directory: string, side: Side, models: [Model, Started[]][]): string {
  const file = join(directory, `${side}.json`);
  const routes = models.map(([model, replicas]) => ({
    name: model.name,
    authentication: { enabled: false },
    replicas: replicas.map((replica, index) => ({
      id: `${model.name}-${index + 1}`,
      url: replica.url,
    })),
  }));
  writeFileSync(file, JSON.stringify({ models: routes }));
  return file;
}

async function main(): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), "modelship-bench-metrics-"));
  try {
    const models = [ADD, irisModels(directory)];
    const untracked: [Model, Started[]][] = [];
    const tracked: [Model, Started[]][] = [];
    for (const model of models) {
      untracked.push([model, await replicasOf(model, false)]);
      tracked.push([model, await replicasOf(model, true)]);
    }
    const port = ["--port", "0"];
    const gateways: Record<Side, Started> = {
      off: await start([
        "gateway",
        "--config",
        gatewayConfig(directory, "off", untracked),
        ...port,
      ]),
      on: await start([
        "gateway",
        ...["--config", gatewayConfig(directory, "on", tracked), ...port],
        ...["--metrics-dir", join(directory, "metrics")],
      ]),
      // The same replicas as `on`, one side at a time.
      unstored: await start([
        "gateway",
        ...["--config", gatewayConfig(directory, "unstored", tracked), ...port],
      ]),
    };

    console.log(
      `machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, load average ${loadavg()
        .map((value) => value.toFixed(2))
        .join(" ")}`,
    );
    console.log(
      `${REPLICAS} replicas per model; ${ROUNDS} interleaved rounds of ${SECONDS} s; calls/s`,
    );
    for (const model of models) {
      for (const concurrency of [1, 4]) {
        const figures: Record<Side, number[]> = { off: [], on: [], unstored: [] };
        const ratios = { on: [] as number[], unstored: [] as number[] };
        for (let round = 0; round < ROUNDS; round++) {
          // Rotate which goes first, so none always meets another's leftovers.
          const order = SIDES.map((_, index) => SIDES[(index + round) % SIDES.length] as Side);
          const result: Record<Side, number> = { off: 0, on: 0, unstored: 0 };
          for (const side of order) {
            const url = `${gateways[side].url}/models/${model.name}/predict`;
            result[side] = await closedLoop([url], concurrency, model.body, SECONDS);
            figures[side].push(result[side]);
          }
          ratios.on.push(result.on / result.off);
          ratios.unstored.push(result.unstored / result.off);
        }
        const list = (values: number[]) => values.map((ratio) => ratio.toFixed(3)).join(" ");
        console.log(
          `  ${model.name} c=${concurrency}: off ${median(figures.off).toFixed(0)}, on ${median(figures.on).toFixed(0)}, tracked without a store ${median(figures.unstored).toFixed(0)}`,
        );
        console.log(
          `    on ÷ off ${list(ratios.on)}, median ${median(ratios.on).toFixed(3)} (goal ≥ 0.95); without a store ÷ off ${list(ratios.unstored)}, median ${median(ratios.unstored).toFixed(3)}`,
        );
      }
    }
    // Every call was answered 200 (closedLoop throws otherwise); were they all stored?
    const metrics = `${gateways.on.url}/metrics`;
    const written = await metricValue(metrics, "modelship_metrics_predictions_written_total");
    const dropped = await metricValue(metrics, "modelship_metrics_predictions_dropped_total");
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
