// npm run bench:gateway-apply — what a configuration change costs the gateway (docs/benchmarks.md),
// at 10, 100 and 1,000 models, each with an inputSchema of its own (the worst case: no two share a
// compiled validator). In one run, in this process (no network): the first apply; the background
// compile it leaves (how long until done, and the longest the event loop was held); the same
// configuration again; a change to one model as a whole configuration (apply) and as a change
// (applyChanges, what the Kubernetes feed sends); and, as the baseline, what the gateway did before
// per change: a fresh Ajv and a compile for every model. The first apply is also measured in a
// fresh process of its own (`--cold N`), as a gateway's or `up`'s start meets it.
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import { newInputSchemaAjv } from "../controller/api/schemas.ts";
import type { GatewayConfig, ModelRoute } from "../controller/gateway/config.ts";
import { Gateway } from "../controller/gateway/gateway.ts";
import { median } from "./lib.ts";

const SIZES = [10, 100, 1000];
const REPEATS = 15;

function schemaOf(index: number): Record<string, unknown> {
  return {
    type: "object",
    required: ["petal_length"],
    properties: {
      petal_length: { type: "number", exclusiveMinimum: 0, maximum: 100 + index },
      species: { type: "string", enum: ["setosa", "versicolor", "virginica"] },
    },
  };
}

function routeOf(index: number, version = 0): ModelRoute {
  return {
    name: `model-${index}`,
    accessKeySha256: index.toString(16).padStart(64, "0"),
    authentication: { enabled: true },
    inputSchema: schemaOf(index + version * 100_000),
    queueTimeoutSeconds: 30,
    timeoutSeconds: 30,
    stopped: false,
    replicas: [
      { id: `model-${index}-1`, url: `unix:/tmp/modelship-bench-${index}-1.sock` },
      { id: `model-${index}-2`, url: `unix:/tmp/modelship-bench-${index}-2.sock` },
    ],
  };
}

function configOf(size: number, changed = -1, version = 0): GatewayConfig {
  return {
    models: Array.from({ length: size }, (_, index) =>
      routeOf(index, index === changed ? version : 0),
    ),
    apiKeys: [],
  };
}

function timed(run: () => void): number {
  const started = performance.now();
  run();
  return performance.now() - started;
}

/** Runs the background compile to its end; how long it took and its longest slice. */
async function backgroundCompile(
  gateway: Gateway,
): Promise<{ totalMs: number; longestMs: number }> {
  const started = performance.now();
  let longest = 0;
  let last = performance.now();
  while (gateway.configurationStats().schemasToCompile > 0) {
    await new Promise((resolve) => setImmediate(resolve));
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }
  return { totalMs: performance.now() - started, longestMs: longest };
}

const coldFlag = process.argv.indexOf("--cold");
if (coldFlag !== -1) {
  // In a process of its own: a gateway made, then its first configuration, as at a start.
  const size = Number(process.argv[coldFlag + 1]);
  const gateway = new Gateway();
  const firstMs = timed(() => gateway.apply(configOf(size)));
  await gateway.close(0);
  console.log(JSON.stringify({ firstMs }));
  process.exit(0);
}

/** The first apply of `size` models in a fresh process, the median of 3. */
function coldFirstApply(size: number): number {
  const runs = [1, 2, 3].map(() => {
    const out = execFileSync(
      process.execPath,
      [process.argv[1] as string, "--cold", String(size)],
      {
        encoding: "utf8",
      },
    );
    return (JSON.parse(out) as { firstMs: number }).firstMs;
  });
  return median(runs);
}

const rows: string[][] = [];
const [load1] = loadavg();
for (const size of SIZES) {
  const firsts: number[] = [];
  const compiles: { totalMs: number; longestMs: number }[] = [];
  const agains: number[] = [];
  const oneByApply: number[] = [];
  const oneByChanges: number[] = [];
  for (let repeat = 0; repeat < (size === 1000 ? 5 : REPEATS); repeat++) {
    const gateway = new Gateway();
    const config = configOf(size);
    firsts.push(timed(() => gateway.apply(config)));
    compiles.push(await backgroundCompile(gateway));
    // Made before the clock starts, as `changed` is: the gateway's part is what is timed.
    const again = configOf(size);
    agains.push(timed(() => gateway.apply(again)));
    const changed = configOf(size, repeat % size, repeat + 1);
    oneByApply.push(timed(() => gateway.apply(changed)));
    await backgroundCompile(gateway);
    const route = routeOf(repeat % size, repeat + 2);
    oneByChanges.push(timed(() => gateway.applyChanges({ models: [route] })));
    await backgroundCompile(gateway);
    await gateway.close(0);
  }
  // The baseline: a fresh Ajv and a compile per model, on every change, as before.
  const baseline = timed(() => {
    for (const route of configOf(size).models) {
      newInputSchemaAjv().compile(route.inputSchema as Record<string, unknown>);
    }
  });
  const compile = {
    totalMs: median(compiles.map((each) => each.totalMs)),
    longestMs: Math.max(...compiles.map((each) => each.longestMs)),
  };
  rows.push([
    String(size),
    median(firsts).toFixed(2),
    coldFirstApply(size).toFixed(2),
    `${compile.totalMs.toFixed(1)} (longest slice ${compile.longestMs.toFixed(1)})`,
    median(agains).toFixed(3),
    median(oneByApply).toFixed(3),
    median(oneByChanges).toFixed(3),
    baseline.toFixed(1),
    (baseline / median(oneByChanges)).toFixed(0),
  ]);
}

console.log(
  `Gateway.apply(), every model with its own inputSchema; load average ${load1?.toFixed(2)}`,
);
console.log(`Node ${process.version}; medians of ${REPEATS} runs (5 at 1,000 models), in ms\n`);
const header = [
  "models",
  "first apply",
  "first apply, fresh process",
  "then compiled in the background",
  "same again",
  "one changed, apply()",
  "one changed, applyChanges()",
  "before: fresh Ajv + compile each",
  "before ÷ applyChanges()",
];
console.log(`| ${header.join(" | ")} |`);
console.log(`|${header.map(() => "---").join("|")}|`);
for (const row of rows) console.log(`| ${row.join(" | ")} |`);
