// The metrics SDK (`import modelship as cdsw`) and the workers' side of it: CDSW's dev-mode
// example run unchanged but for the import, the `metrics` member of the workers' answer lines
// (Python and R, over raw fds 3/4 as docs/workers.md shows), the HTTP calls against a small
// server that checks what the SDK sends, and an experiment's metrics file.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "./helpers/cli.ts";

const PYTHON_PACKAGE = join(PROJECT_ROOT, "runtime/python");
const R_WORKER = join(PROJECT_ROOT, "runtime/r/worker.R");

/** Cleanups of what a test started: processes, servers, temporary directories. */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "modelship-sdk-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Only what Python needs: none of this process's MODELSHIP_* settings leak in. */
function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LANG: "C.UTF-8",
    PYTHONPATH: PYTHON_PACKAGE,
    ...extra,
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a script to its end, without blocking this process (the test's HTTP server answers). */
function runPython(dir: string, script: string, env: Record<string, string> = {}): Promise<Run> {
  const child = spawn("python3", [script], { cwd: dir, env: baseEnv(env) });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  return new Promise((resolve) => {
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The last line of a script's stdout, parsed: the scripts print their findings as JSON. */
function lastJson(run: Run): unknown {
  expect(run.stderr, run.stderr).not.toMatch(/Traceback/);
  expect(run.code, run.stderr).toBe(0);
  const lines = run.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] as string);
}

describe("CDSW's dev mode, with only `import cdsw` changed", () => {
  // CDSW's documented example (Model Metrics, dev mode), the import aside.
  const MODEL = `import modelship as cdsw
import numpy as np

SLOPE, INTERCEPT = 0.4, -0.3

@cdsw.model_metrics
def predict(args):
    # Track the input.
    cdsw.track_metric("input", args)
    petal_length = float(args.get("petal_length"))
    result = np.array([[SLOPE * petal_length + INTERCEPT]])
    # Track the output.
    cdsw.track_metric("predict_result", result[0][0])
    return result[0][0]
`;
  const SCRIPT = `import json
import time

import modelship as cdsw
from predict_with_metrics import predict

model_deployment_crn = "crn:cdp:ml:us-west-1:8a1e15cd-04c2-48aa-8f35-b4a8c11997d3:workspace:ec3efe6f-c4f5-4593-857b-a80698e4857e/d54e8925-a9a1-4d1f-b7d1-b95961661ac5"

score_x = [1.0 + i * 0.25 for i in range(20)]
score_y = [0.4 * x - 0.3 + (0.1 if i % 2 else -0.1) for i, x in enumerate(score_x)]

# Record the current time so we can retrieve the metrics tracked for these calls.
start_timestamp_ms = int(round(time.time() * 1000))

uuids = []
predictions = []
for i in range(len(score_x)):
    output = predict({"petal_length": score_x[i]})
    # Record the UUID of each prediction for correlation with ground truth.
    uuids.append(output["uuid"])
    predictions.append(output["prediction"])

# Record the current time.
end_timestamp_ms = int(round(time.time() * 1000))

before = cdsw.read_metrics(model_deployment_crn=model_deployment_crn,
                           start_timestamp_ms=start_timestamp_ms,
                           end_timestamp_ms=end_timestamp_ms, dev=True)

# Track the true values alongside the corresponding predictions using track_delayed_metrics.
for i in range(len(score_x)):
    cdsw.track_delayed_metrics({"actual_result": score_y[i]}, uuids[i], dev=True)

# Use the track_aggregate_metrics function to record the mean squared error.
mse = sum((p - y) ** 2 for p, y in zip(predictions, score_y)) / len(score_y)
aggregate = cdsw.track_aggregate_metrics({"mse": mse}, start_timestamp_ms, end_timestamp_ms,
                                         model_deployment_crn=model_deployment_crn, dev=True)

data = cdsw.read_metrics(model_deployment_crn=model_deployment_crn,
                         start_timestamp_ms=start_timestamp_ms,
                         end_timestamp_ms=end_timestamp_ms, dev=True)

try:
    cdsw.track_delayed_metrics({"actual_result": 1}, "no-such-uuid", dev=True)
    unknown = None
except cdsw.MetricsError as error:
    unknown = {"code": error.code, "message": str(error)}
try:
    cdsw.read_metrics(dev=True)
    no_crn = None
except ValueError as error:
    no_crn = str(error)

print(json.dumps({"uuids": uuids, "predictions": predictions, "before": before, "data": data,
                  "aggregate": aggregate, "mse": mse, "unknown": unknown, "noCrn": no_crn,
                  "start": start_timestamp_ms, "end": end_timestamp_ms}))
`;

  interface Row {
    type: string;
    predictionUuid?: string;
    startTimeStampMs: number;
    endTimeStampMs: number;
    modelDeploymentCrn?: string;
    metrics: Record<string, unknown>;
  }
  interface Findings {
    uuids: string[];
    predictions: number[];
    before: { metrics: Row[] };
    data: { metrics: Row[] };
    aggregate: unknown;
    mse: number;
    unknown: { code: string; message: string };
    noCrn: string;
    start: number;
    end: number;
  }

  it("keeps 20 predictions with their uuids, merges delayed metrics, and lists the aggregate", async () => {
    const dir = tempDir({ "predict_with_metrics.py": MODEL, "simulate.py": SCRIPT });
    const found = lastJson(await runPython(dir, "simulate.py")) as Findings;

    expect(found.uuids).toHaveLength(20);
    expect(new Set(found.uuids).size).toBe(20);
    for (const uuid of found.uuids) expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/);
    expect(found.predictions[0]).toBeCloseTo(0.1);

    const before = found.before.metrics;
    expect(before.map((row) => row.predictionUuid)).toEqual(found.uuids);
    expect(before[0]).toEqual({
      type: "prediction",
      predictionUuid: found.uuids[0],
      startTimeStampMs: expect.any(Number),
      endTimeStampMs: expect.any(Number),
      // numpy's float64 became a number
      metrics: { input: { petal_length: 1.0 }, predict_result: found.predictions[0] },
    });
    for (const row of before) {
      expect(row.startTimeStampMs).toBeGreaterThanOrEqual(found.start);
      expect(row.endTimeStampMs).toBeGreaterThanOrEqual(row.startTimeStampMs);
      expect(row.endTimeStampMs).toBeLessThanOrEqual(found.end);
    }

    const rows = found.data.metrics;
    const predictions = rows.filter((row) => row.type === "prediction");
    expect(predictions).toHaveLength(20);
    expect(predictions[3]?.metrics).toEqual({
      input: { petal_length: 1.75 },
      predict_result: found.predictions[3],
      actual_result: expect.closeTo(0.4 * 1.75 - 0.3 + 0.1, 10),
    });
    expect(found.aggregate).toEqual({ success: true, id: 1 });
    const aggregates = rows.filter((row) => row.type === "aggregate");
    expect(aggregates).toEqual([
      {
        type: "aggregate",
        modelDeploymentCrn: expect.stringMatching(/^crn:cdp:ml:/),
        startTimeStampMs: found.start,
        endTimeStampMs: found.end,
        metrics: { mse: found.mse },
      },
    ]);
    // Oldest first: the aggregate starts with the window, before or with the first prediction.
    const starts = rows.map((row) => row.startTimeStampMs);
    expect(starts).toEqual([...starts].sort((a, b) => a - b));

    expect(found.unknown.code).toBe("metrics.unknown_prediction");
    expect(found.unknown.message).toContain("no-such-uuid");
    expect(found.noCrn).toContain("model_crn, model_build_crn or model_deployment_crn");
  });

  it("is the default with MODELSHIP_DEV=1, and names the deployment of MODELSHIP_DEPLOYMENT_CRN", async () => {
    const dir = tempDir({
      "predict_with_metrics.py": MODEL,
      "read.py": `import json
import modelship as cdsw
from predict_with_metrics import predict

output = predict({"petal_length": 2})
cdsw.track_delayed_metrics({"actual_result": 0.6}, output["uuid"])
mine = cdsw.read_metrics(model_deployment_crn="iris/deployments/prod")
by_model = cdsw.read_metrics(model_crn="crn:modelship:iris")
other = cdsw.read_metrics(model_deployment_crn="crn:modelship:iris/deployments/canary")
print(json.dumps({"output": output, "mine": mine, "byModel": by_model, "other": other}))
`,
    });
    const found = lastJson(
      await runPython(dir, "read.py", {
        MODELSHIP_DEV: "1",
        MODELSHIP_DEPLOYMENT_CRN: "crn:modelship:iris/deployments/prod/3",
        // Never reached: dev mode stays in the process.
        MODELSHIP_URL: "http://127.0.0.1:1",
      }),
    ) as {
      output: Record<string, unknown>;
      mine: { metrics: Row[] };
      byModel: { metrics: Row[] };
      other: { metrics: Row[] };
    };
    expect(found.output).toEqual({
      prediction: expect.closeTo(0.5, 10),
      uuid: expect.any(String),
      model_deployment_crn: "crn:modelship:iris/deployments/prod/3",
    });
    const row = {
      type: "prediction",
      predictionUuid: found.output.uuid,
      modelCrn: "crn:modelship:iris",
      modelDeploymentCrn: "crn:modelship:iris/deployments/prod/3",
      startTimeStampMs: expect.any(Number),
      endTimeStampMs: expect.any(Number),
      metrics: {
        input: { petal_length: 2 },
        predict_result: expect.closeTo(0.5, 10),
        actual_result: 0.6,
      },
    };
    expect(found.mine.metrics).toEqual([row]);
    expect(found.byModel.metrics).toEqual([row]);
    expect(found.other.metrics).toEqual([]);
  });
});

/** A worker spoken to over its own fds 3 and 4, the way the agent does (docs/workers.md). */
class RawWorker {
  readonly child: ChildProcess;
  readonly stderr: string[] = [];
  private readonly lines: string[] = [];
  private readonly waiting: ((line: string | undefined) => void)[] = [];
  private ended = false;

  constructor(command: string, args: string[], cwd: string, env: Record<string, string> = {}) {
    this.child = spawn(command, args, {
      cwd,
      env: baseEnv(env),
      stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"],
    });
    (this.child.stdio[3] as Writable).on("error", () => {});
    createInterface({ input: this.child.stderr as Readable }).on("line", (line) => {
      this.stderr.push(line);
    });
    const answers = createInterface({ input: this.child.stdio[4] as Readable });
    answers.on("line", (line) => {
      const next = this.waiting.shift();
      if (next) next(line);
      else this.lines.push(line);
    });
    answers.on("close", () => {
      this.ended = true;
      for (const next of this.waiting.splice(0)) next(undefined);
    });
    cleanups.push(() => this.stop());
  }

  /** The next line on fd 4, raw. */
  next(): Promise<string | undefined> {
    const line = this.lines.shift();
    if (line !== undefined || this.ended) return Promise.resolve(line);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Sends one request line and returns its answer line, raw. */
  async call(line: string): Promise<string> {
    (this.child.stdio[3] as Writable).write(`${line}\n`);
    const answer = await this.next();
    if (answer === undefined) throw new Error(`the worker ended: ${this.stderr.join("\n")}`);
    return answer;
  }

  /** Closes fd 3 (the worker then exits); SIGKILL if it has not after 5 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    (child.stdio[3] as Writable).end();
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

const PYTHON_MODEL = `import threading
import numpy as np
import modelship as cdsw

@cdsw.model_metrics
def predict(args):
    cdsw.track_metric("input", args)
    cdsw.track_metrics({"score": np.float64(0.75), "vector": np.arange(3), "caf\\u00e9": "cr\\u00e8me"})
    # A thread the model starts tracks into the same prediction.
    worker = threading.Thread(target=cdsw.track_metric, args=("from_thread", True))
    worker.start()
    worker.join()
    return {"label": "setosa"}

@cdsw.model_metrics
def decorated_quiet(args):
    return args["a"] * 2

def plain(args):
    return args["a"] + 1

def tracks_only(args):
    cdsw.track_metric("seen", args["a"])
    return args["a"]

def nan_metric(args):
    cdsw.track_metric("score", float("nan"))
    return 1

def object_metric(args):
    cdsw.track_metric("model", object())
    return 1

def huge_metrics(args):
    cdsw.track_metric("blob", "x" * (70 * 1024))
    return "answered"
`;

describe("the Python worker's answers with metrics", () => {
  function pythonWorker(functionName: string, env: Record<string, string> = {}) {
    const dir = tempDir({ "model.py": PYTHON_MODEL });
    const args = ["-m", "modelship.worker", "--file", "model.py", "--function", functionName];
    return new RawWorker("python3", args, dir, env);
  }

  async function ready(worker: RawWorker): Promise<void> {
    expect(JSON.parse((await worker.next()) ?? "null")).toEqual({
      type: "ready",
      protocol: 1,
      runtime: "python3",
    });
  }

  const UUID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

  it("carries a decorated call's metrics, before the response, which is wrapped with the request's uuid", async () => {
    const crn = "crn:modelship:iris/deployments/prod/2";
    const worker = pythonWorker("predict", { MODELSHIP_DEPLOYMENT_CRN: crn });
    await ready(worker);
    const line = await worker.call(`{"id":1,"uuid":"${UUID}","request":{"petal_length":1.5}}`);
    // ASCII, metrics first, then the wrapped response.
    expect(line).toBe(
      `{"id":1,"ok":true,"metrics":{"input":{"petal_length":1.5},"score":0.75,"vector":[0,1,2],"caf\\u00e9":"cr\\u00e8me","from_thread":true},` +
        `"response":{"prediction":{"label":"setosa"},"uuid":"${UUID}","model_deployment_crn":"${crn}"}}`,
    );
    // Each call its own prediction: nothing of the first is in the second.
    const second = JSON.parse(
      await worker.call('{"id":2,"uuid":"u-2","request":{"petal_length":2}}'),
    );
    expect(second.metrics.input).toEqual({ petal_length: 2 });
    expect(second.response.uuid).toBe("u-2");
  });

  it("keeps no uuid when the request has none, and sends empty metrics for a decorated call that tracked none", async () => {
    const worker = pythonWorker("decorated_quiet");
    await ready(worker);
    const withUuid = JSON.parse(await worker.call(`{"id":1,"uuid":"${UUID}","request":{"a":2}}`));
    expect(withUuid).toEqual({
      id: 1,
      ok: true,
      metrics: {},
      response: { prediction: 4, uuid: UUID, model_deployment_crn: null },
    });
    // Called without one (plan --predict, a replica called by hand), the same input gets the
    // same answer.
    const without = JSON.parse(await worker.call('{"id":2,"request":{"a":3}}'));
    expect(without.response).toEqual({ prediction: 6, uuid: null, model_deployment_crn: null });
  });

  it("has no metrics for a function that neither is decorated nor tracks; a tracking one sends them unwrapped", async () => {
    const plain = pythonWorker("plain");
    await ready(plain);
    expect(await plain.call(`{"id":1,"uuid":"${UUID}","request":{"a":2}}`)).toBe(
      '{"id":1,"ok":true,"response":3}',
    );
    const tracks = pythonWorker("tracks_only");
    await ready(tracks);
    expect(await tracks.call(`{"id":1,"uuid":"${UUID}","request":{"a":2}}`)).toBe(
      '{"id":1,"ok":true,"metrics":{"seen":2},"response":2}',
    );
  });

  it("fails the call, with no metrics, for a metric that is not JSON, naming its key", async () => {
    const nan = pythonWorker("nan_metric");
    await ready(nan);
    const answer = JSON.parse(await nan.call(`{"id":1,"uuid":"${UUID}","request":{}}`));
    expect(answer).toEqual({
      id: 1,
      ok: false,
      error: { type: "ValueError", message: expect.stringContaining("metric 'score' is not JSON") },
    });
    expect(answer.error.message).toContain("NaN and Infinity are not JSON");
    const object = pythonWorker("object_metric");
    await ready(object);
    const refused = JSON.parse(await object.call('{"id":1,"request":{}}'));
    expect(refused).toMatchObject({ ok: false, error: { type: "TypeError" } });
    expect(refused.error.message).toContain("metric 'model' is not JSON");
    expect(refused.metrics).toBeUndefined();
  });

  it("drops metrics larger than 64 KiB with a line on stderr, and answers without them", async () => {
    const worker = pythonWorker("huge_metrics");
    await ready(worker);
    const line = await worker.call(`{"id":1,"uuid":"${UUID}","request":{}}`);
    expect(line).toBe('{"id":1,"ok":true,"response":"answered"}');
    await worker.stop();
    const size = `{"blob":"${"x".repeat(70 * 1024)}"}`.length;
    expect(worker.stderr).toContain(
      `modelship: dropped the metrics of prediction ${UUID}: ${size} bytes encoded, more than the 65536 (64 KiB) an answer carries; the answer goes without them`,
    );
  });
});

describe("the R worker's answers with metrics", () => {
  const R_MODEL = `predict <- function(args) {
  track_metric("input", args)
  track_metrics(list(score = 0.75, "caf\\u00e9" = "cr\\u00e8me"))
  list(label = "setosa")
}
plain <- function(args) args$a + 1
huge <- function(args) {
  track_metric("blob", strrep("x", 70 * 1024))
  "answered"
}
`;

  function rWorker(functionName: string) {
    const dir = tempDir({ "model.R": R_MODEL });
    const args = ["--vanilla", R_WORKER, "--file", "model.R", "--function", functionName];
    return new RawWorker("Rscript", args, dir);
  }

  async function ready(worker: RawWorker): Promise<void> {
    expect(JSON.parse((await worker.next()) ?? "null")).toMatchObject({ type: "ready" });
  }

  it("carries what the model tracked, in ASCII; a model that tracked nothing has no metrics", async () => {
    const worker = rWorker("predict");
    await ready(worker);
    expect(await worker.call('{"id":1,"uuid":"u-1","request":{"a":3}}')).toBe(
      '{"id":1,"ok":true,"metrics":{"input":{"a":3},"score":0.75,"caf\\u00e9":"cr\\u00e8me"},"response":{"label":"setosa"}}',
    );
    const second = JSON.parse(await worker.call('{"id":2,"uuid":"u-2","request":{"a":4}}'));
    expect(second.metrics.input).toEqual({ a: 4 });
    const plain = rWorker("plain");
    await ready(plain);
    expect(await plain.call('{"id":1,"uuid":"u-1","request":{"a":3}}')).toBe(
      '{"id":1,"ok":true,"response":4}',
    );
  });

  it("drops metrics larger than 64 KiB with a line on stderr", async () => {
    const worker = rWorker("huge");
    await ready(worker);
    expect(await worker.call('{"id":1,"uuid":"u-1","request":{}}')).toBe(
      '{"id":1,"ok":true,"response":"answered"}',
    );
    await worker.stop();
    expect(worker.stderr.join("\n")).toContain("dropped the metrics of prediction u-1");
  });
});

interface Received {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  body: unknown;
}

/** A stand-in for the gateway's metrics endpoints: records each request, answers as it would. */
async function fakeGateway(
  answer: (request: Received) => { status: number; body: unknown },
): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const url = new URL(request.url ?? "/", "http://127.0.0.1");
      const text = Buffer.concat(chunks).toString("utf8");
      const got: Received = {
        method: request.method ?? "",
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        authorization: request.headers.authorization,
        body: text === "" ? undefined : JSON.parse(text),
      };
      received.push(got);
      const { status, body } = answer(got);
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, received };
}

describe("the SDK's HTTP calls", () => {
  const ROW_1 = {
    type: "prediction",
    predictionUuid: "u-1",
    modelCrn: "crn:modelship:iris",
    modelBuildCrn: "crn:modelship:iris/builds/3",
    modelDeploymentCrn: "crn:modelship:iris/deployments/prod/2",
    startTimeStampMs: 1000,
    endTimeStampMs: 1010,
    metrics: { input: { a: 1 }, actual: 2 },
  };
  const ROW_2 = {
    type: "aggregate",
    modelCrn: "crn:modelship:iris",
    modelDeploymentCrn: "crn:modelship:iris/deployments/prod",
    startTimeStampMs: 1000,
    endTimeStampMs: 2000,
    metrics: { mse: 0.25 },
  };

  function answerOf(request: Received): { status: number; body: unknown } {
    const route = `${request.method} ${request.path}`;
    if (route === "GET /model-metrics") {
      return request.query.cursor === undefined
        ? { status: 200, body: { metrics: [ROW_1], next: "page-2" } }
        : { status: 200, body: { metrics: [ROW_2] } };
    }
    if (route === "POST /model-metrics/delayed") {
      const { predictionUuid } = request.body as { predictionUuid: string };
      return predictionUuid === "u-1"
        ? { status: 200, body: { success: true } }
        : {
            status: 404,
            body: {
              success: false,
              error: "metrics.unknown_prediction",
              message: `no prediction has the uuid ${predictionUuid}`,
            },
          };
    }
    if (route === "POST /model-metrics/aggregate")
      return { status: 201, body: { success: true, id: 7 } };
    if (route === "POST /model") {
      const { accessKey } = request.body as { accessKey: string };
      return accessKey === "good-access-key"
        ? {
            status: 200,
            body: {
              success: true,
              response: { label: "setosa" },
              replicaId: "iris-1",
              uuid: "u-9",
            },
          }
        : {
            status: 401,
            body: { success: false, error: "auth.invalid_key", message: "no model has that key" },
          };
    }
    return { status: 404, body: { success: false, error: "route.not_found", message: route } };
  }

  const SCRIPT = `import json
import numpy as np
import modelship as cdsw

found = {}
found["read"] = cdsw.read_metrics(model_deployment_crn="crn:modelship:iris/deployments/prod",
                                  start_timestamp_ms=1000, end_timestamp_ms=2000.0)
found["delayed"] = cdsw.track_delayed_metrics({"actual": np.int64(2)}, "u-1")
try:
    cdsw.track_delayed_metrics({"actual": 3}, "u-404")
except cdsw.MetricsError as error:
    found["missing"] = {"message": str(error), "status": error.status, "code": error.code}
found["aggregate"] = cdsw.track_aggregate_metrics({"mse": np.float64(0.25)}, 1000, 2000,
                                                  model_deployment_crn="crn:modelship:iris/deployments/prod")
found["byBuild"] = cdsw.track_aggregate_metrics({"n": 1}, 0, 10, model_build_crn="iris/builds/3")
found["called"] = cdsw.call_model("good-access-key", {"petal_length": np.float64(1.5)})
found["refused"] = cdsw.call_model("bad-access-key", {"a": 1}, api_key="msk_other")
print(json.dumps(found))
`;

  it("sends each endpoint what it takes, with the API key, and reads every page", async () => {
    const gateway = await fakeGateway(answerOf);
    const dir = tempDir({ "job.py": SCRIPT });
    const found = lastJson(
      await runPython(dir, "job.py", {
        MODELSHIP_URL: `${gateway.url}/`,
        MODELSHIP_API_KEY: "msk_key",
      }),
    );
    expect(found).toEqual({
      read: { metrics: [ROW_1, ROW_2] },
      delayed: { success: true },
      missing: {
        message: `metrics.unknown_prediction: no prediction has the uuid u-404 (HTTP 404 from POST ${gateway.url}/model-metrics/delayed)`,
        status: 404,
        code: "metrics.unknown_prediction",
      },
      aggregate: { success: true, id: 7 },
      byBuild: { success: true, id: 7 },
      called: { success: true, response: { label: "setosa" }, replicaId: "iris-1", uuid: "u-9" },
      refused: { success: false, error: "auth.invalid_key", message: "no model has that key" },
    });
    const query = {
      modelDeploymentCrn: "crn:modelship:iris/deployments/prod",
      startTimestampMs: "1000",
      // CDSW's end is inclusive, the API's exclusive.
      endTimestampMs: "2001",
      limit: "1000",
    };
    const key = "Bearer msk_key";
    expect(gateway.received).toEqual([
      { method: "GET", path: "/model-metrics", query, authorization: key, body: undefined },
      {
        method: "GET",
        path: "/model-metrics",
        query: { ...query, cursor: "page-2" },
        authorization: key,
        body: undefined,
      },
      {
        method: "POST",
        path: "/model-metrics/delayed",
        query: {},
        authorization: key,
        body: { predictionUuid: "u-1", metrics: { actual: 2 } },
      },
      {
        method: "POST",
        path: "/model-metrics/delayed",
        query: {},
        authorization: key,
        body: { predictionUuid: "u-404", metrics: { actual: 3 } },
      },
      {
        method: "POST",
        path: "/model-metrics/aggregate",
        query: {},
        authorization: key,
        body: {
          metrics: { mse: 0.25 },
          startTimestampMs: 1000,
          endTimestampMs: 2000,
          modelDeploymentCrn: "crn:modelship:iris/deployments/prod",
        },
      },
      {
        method: "POST",
        path: "/model-metrics/aggregate",
        query: {},
        authorization: key,
        // The prefix left out is put back: "iris/builds/3" is crn:modelship:iris/builds/3.
        body: {
          metrics: { n: 1 },
          startTimestampMs: 0,
          endTimestampMs: 10,
          modelBuildCrn: "crn:modelship:iris/builds/3",
        },
      },
      {
        method: "POST",
        path: "/model",
        query: {},
        authorization: key,
        body: { accessKey: "good-access-key", request: { petal_length: 1.5 } },
      },
      {
        method: "POST",
        path: "/model",
        query: {},
        authorization: "Bearer msk_other",
        body: { accessKey: "bad-access-key", request: { a: 1 } },
      },
    ]);
  });

  it("sends no Authorization without a key, omits an open window's end, and says when the gateway is not there", async () => {
    const gateway = await fakeGateway(() => ({ status: 200, body: { metrics: [] } }));
    const dir = tempDir({
      "read.py": `import json
import os
import modelship as cdsw

found = {"read": cdsw.read_metrics(model_crn="crn:modelship:iris")}
os.environ["MODELSHIP_URL"] = "http://127.0.0.1:1"
try:
    cdsw.read_metrics(model_crn="crn:modelship:iris")
except cdsw.MetricsError as error:
    found["unreachable"] = str(error)
try:
    cdsw.track_metric("score", float("nan"))
except ValueError as error:
    found["nan"] = str(error)
print(json.dumps(found))
`,
    });
    const found = lastJson(await runPython(dir, "read.py", { MODELSHIP_URL: gateway.url })) as {
      read: unknown;
      unreachable: string;
      nan: string;
    };
    expect(found.read).toEqual({ metrics: [] });
    expect(gateway.received).toEqual([
      {
        method: "GET",
        path: "/model-metrics",
        query: { modelCrn: "crn:modelship:iris", startTimestampMs: "0", limit: "1000" },
        authorization: undefined,
        body: undefined,
      },
    ]);
    expect(found.unreachable).toContain("cannot reach modelship at http://127.0.0.1:1");
    expect(found.nan).toContain("metric 'score' is not JSON");
  });
});

describe("an experiment's metrics (MODELSHIP_RUN_METRICS_FILE)", () => {
  const SCRIPT = `import json
import modelship as cdsw

@cdsw.model_metrics
def predict(args):
    cdsw.track_metric("inside", 1)
    return 2

cdsw.track_metric("R_squared", 0.79)
cdsw.track_metrics({"n": 150, "features": ["petal_length"]})
predict({})
cdsw.track_file("model.pkl")
print(json.dumps(cdsw.session_metrics()))
`;

  it("appends a JSON line per metric and per file outside a prediction", async () => {
    const dir = tempDir({ "train.py": SCRIPT });
    const file = join(dir, "run-metrics.jsonl");
    const kept = lastJson(await runPython(dir, "train.py", { MODELSHIP_RUN_METRICS_FILE: file }));
    expect(kept).toEqual([]);
    expect(readFileSync(file, "utf8")).toBe(
      [
        '{"key":"R_squared","value":0.79}',
        '{"key":"n","value":150}',
        '{"key":"features","value":["petal_length"]}',
        '{"file":"model.pkl"}',
        "",
      ].join("\n"),
    );
  });

  it("keeps them in the session without the file, and does not fail", async () => {
    const dir = tempDir({ "train.py": SCRIPT });
    expect(lastJson(await runPython(dir, "train.py"))).toEqual([
      { key: "R_squared", value: 0.79 },
      { key: "n", value: 150 },
      { key: "features", value: ["petal_length"] },
      { file: "model.pkl" },
    ]);
  });
});
