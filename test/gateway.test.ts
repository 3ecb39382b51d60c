// The gateway in front of real replica agents (real Python and R workers), over real HTTP.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CALLER_ERRORS, type CallerErrorCode } from "../controller/api/errors.ts";
import type { GatewayConfig, ModelRoute } from "../controller/gateway/config.ts";
import { generateAccessKey, generateApiKey, hashKey } from "../controller/gateway/keys.ts";
import { openEmbeddedMetricsStore } from "../controller/metrics/sql-store.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";
import { type RunningGateway, refusingUrl, route, startGateway } from "./helpers/gateway.ts";
import { type JsonAnswer, postJson, type RunningReplica, startReplica } from "./helpers/replica.ts";

const started: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((running) => running.stop()));
});

async function replicas(
  count: number,
  options: Parameters<typeof startReplica>[0],
): Promise<RunningReplica[]> {
  const list = await Promise.all(
    Array.from({ length: count }, (_, index) =>
      startReplica({ replicaId: `${options.functionName}-${index + 1}`, ...options }),
    ),
  );
  started.push(...list);
  await Promise.all(list.map((replica) => replica.agent.whenReady()));
  return list;
}

async function gateway(
  config: Partial<GatewayConfig>,
  options: Parameters<typeof startGateway>[1] = {},
): Promise<RunningGateway> {
  const running = await startGateway({ models: [], apiKeys: [], ...config }, options);
  started.push(running);
  return running;
}

function predict(base: string, name: string, request: unknown, headers = {}): Promise<JsonAnswer> {
  return postJson(`${base}/models/${name}/predict`, request, headers);
}

const DAY_MS = 86_400_000;

describe("the gateway", () => {
  it("answers both CDSW's POST /model and POST /models/{name}/predict, keeping calls one at a time on a warm replica", async () => {
    const accessKey = generateAccessKey();
    const list = await replicas(3, { functionName: "add" });
    const { url } = await gateway({
      models: [route("add-numbers", list, { accessKeySha256: hashKey(accessKey) })],
    });
    const viaKey = await postJson(`${url}/model`, { accessKey, request: { a: 3, b: 5 } });
    expect(viaKey.status).toBe(200);
    expect(viaKey.body).toMatchObject({ success: true, response: 8 });
    expect(viaKey.body.uuid).toMatch(/^[0-9a-f-]{36}$/);

    const seen = new Set<string>();
    for (let call = 0; call < 3; call++) {
      const answer = await predict(url, "add-numbers", { a: call, b: 1 });
      expect(answer.body.response).toBe(call + 1);
      seen.add(answer.body.replicaId);
    }
    // One after another, calls stay on the replica that answered last: its worker is warm.
    // (Calls that overlap spread: the next test.)
    expect(seen.size).toBe(1);
  });

  it("never gives a replica two calls at once, under many concurrent callers", async () => {
    const list = await replicas(3, { functionName: "in_flight" });
    const { url } = await gateway({ models: [route("probe", list)] });
    const answers = await Promise.all(
      Array.from({ length: 60 }, () => predict(url, "probe", { seconds: 0.01 })),
    );
    expect(answers.map((answer) => answer.status)).toEqual(answers.map(() => 200));
    // Each worker counts the requests it holds; the agent must never send a second one.
    expect(new Set(answers.map((answer) => answer.body.response.inFlight))).toEqual(new Set([1]));
    expect(new Set(answers.map((answer) => answer.body.replicaId)).size).toBe(3);
    expect(list.map((replica) => replica.agent.stats.busy)).toEqual([0, 0, 0]);
  });

  it("serves waiting callers first come, first served", async () => {
    const list = await replicas(1, { functionName: "sleeps" });
    const { url } = await gateway({ models: [route("sleepy", list)] });
    const order: number[] = [];
    const first = predict(url, "sleepy", { seconds: 0.3 });
    const queued: Promise<void>[] = [];
    for (const caller of [1, 2, 3, 4]) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      queued.push(predict(url, "sleepy", { seconds: 0.01 }).then(() => void order.push(caller)));
    }
    await Promise.all([first, ...queued]);
    expect(order).toEqual([1, 2, 3, 4]);
  });

  it("answers 429 model.busy once a caller has waited queueTimeoutSeconds, and counts it", async () => {
    const list = await replicas(1, { functionName: "sleeps" });
    const { url } = await gateway({
      models: [route("sleepy", list, { queueTimeoutSeconds: 0.2 })],
    });
    const slow = predict(url, "sleepy", { seconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const turnedAway = await predict(url, "sleepy", { seconds: 0 });
    expect([turnedAway.status, turnedAway.code]).toEqual([429, "model.busy"]);
    expect(turnedAway.body.message).toContain("all 1 replicas");
    expect((await slow).status).toBe(200);

    const metrics = await fetch(`${url}/metrics`).then((response) => response.text());
    expect(metrics).toContain('modelship_gateway_busy_total{model="sleepy"} 1');
    expect(metrics).toContain(
      'modelship_gateway_requests_total{model="sleepy",code="model.busy"} 1',
    );
    expect(metrics).toContain('modelship_gateway_requests_total{model="sleepy",code="ok"} 1');
    expect(metrics).toMatch(/modelship_gateway_queue_wait_seconds_count\{model="sleepy"\} 2/);
  });

  it("sends a call to another replica when one is unreachable or not ready", async () => {
    const [healthy] = await replicas(1, { functionName: "add" });
    const loading = await startReplica({ functionName: "predict", file: "slow_load.py" });
    started.push(loading);
    const { url } = await gateway({
      models: [
        {
          ...route("add-numbers", [loading, healthy as RunningReplica]),
          replicas: [
            { id: "gone", url: "http://127.0.0.1:9" },
            { id: loading.agent.options.replicaId, url: loading.url },
            { id: "add-1", url: (healthy as RunningReplica).url },
          ],
        },
      ],
    });
    for (let call = 0; call < 3; call++) {
      const answer = await predict(url, "add-numbers", { a: 1, b: 1 });
      expect([answer.status, answer.body.replicaId]).toEqual([200, "add-1"]);
    }
    expect(loading.agent.stats.notReady).toBeGreaterThan(0);
  });

  it("fails over from a replica whose host does not resolve, and survives a malformed path", async () => {
    const [healthy] = await replicas(1, { functionName: "add" });
    const { url } = await gateway({
      models: [
        {
          ...route("add-numbers", []),
          replicas: [
            { id: "nowhere", url: "http://no-such-host.invalid:9001" },
            { id: "add-1", url: (healthy as RunningReplica).url },
          ],
        },
      ],
    });
    for (let call = 0; call < 2; call++) {
      const answer = await predict(url, "add-numbers", { a: 2, b: 3 });
      expect([answer.status, answer.body.replicaId]).toEqual([200, "add-1"]);
    }
    const malformed = await postJson(`${url}/models/%E0%A4%A/predict`, {});
    expect([malformed.status, malformed.code]).toEqual([404, "model.not_found"]);
    expect((await predict(url, "add-numbers", { a: 1, b: 1 })).body.response).toBe(2);
  });

  it("tells a caller waiting for a model that is removed that it is gone (404), not busy", async () => {
    const list = await replicas(1, { functionName: "sleeps" });
    const { url, gateway: running } = await gateway({ models: [route("sleepy", list)] });
    const slow = predict(url, "sleepy", { seconds: 0.5 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const waiting = predict(url, "sleepy", { seconds: 0 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    running.apply({ models: [], apiKeys: [] });
    const answer = await waiting;
    expect([answer.status, answer.code]).toEqual([404, "model.not_found"]);
    expect(answer.body.message).toContain("was removed while the call waited");
    expect((await slow).status).toBe(200);
  });

  it("lets a call in flight finish when its model is removed from the configuration", async () => {
    const list = await replicas(1, { functionName: "sleeps" });
    const { url, gateway: running } = await gateway({ models: [route("sleepy", list)] });
    const slow = predict(url, "sleepy", { seconds: 0.5 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    running.apply({ models: [], apiKeys: [] });
    const answer = await slow;
    expect([answer.status, answer.body.response]).toEqual([200, "awake"]);
    expect((await predict(url, "sleepy", { seconds: 0 })).code).toBe("model.not_found");
  });

  it("answers the same through the Python and the R worker (add-numbers)", async () => {
    const examples = join(PROJECT_ROOT, "manifests/examples");
    const [python] = await replicas(1, {
      functionName: "add",
      directory: join(examples, "add-numbers"),
      file: "add_numbers.py",
    });
    const [r] = await replicas(1, {
      functionName: "add",
      runtime: "r",
      directory: join(examples, "add-numbers-r"),
      file: "add_numbers.R",
    });
    const { url } = await gateway({
      models: [
        route("add-numbers", [python as RunningReplica]),
        route("add-numbers-r", [r as RunningReplica]),
      ],
    });
    for (const request of [
      { a: 3, b: 5 },
      { a: -1.5, b: 0.25 },
      { a: 1e6, b: 2 },
    ]) {
      const fromPython = await predict(url, "add-numbers", request);
      const fromR = await predict(url, "add-numbers-r", request);
      expect(fromPython.body.response).toBe(request.a + request.b);
      expect(fromR.body.response).toBe(fromPython.body.response);
    }
  });
});

describe("a deployment's maxRequestBytes", () => {
  it("lowers or raises the body limit for its model alone, on both paths", async () => {
    const accessKey = generateAccessKey();
    const list = await replicas(1, { functionName: "add" });
    const { url } = await gateway(
      {
        models: [
          route("small", list, { maxRequestBytes: 128, accessKeySha256: hashKey(accessKey) }),
          route("large", list, { maxRequestBytes: 2048 }),
          route("default", list),
        ],
      },
      { bodyLimitBytes: 1024 },
    );
    const padded = (bytes: number) => ({ a: 1, b: 2, pad: "x".repeat(bytes) });
    expect((await predict(url, "small", padded(10))).body.response).toBe(3);
    const tooLarge = await predict(url, "small", padded(200));
    expect([tooLarge.status, tooLarge.code]).toEqual([413, "request.too_large"]);
    expect(tooLarge.body.message).toContain("larger than 128 bytes");
    // Above the gateway's own 1024 bytes, within this model's 2048.
    expect((await predict(url, "large", padded(1500))).body.response).toBe(3);
    expect((await predict(url, "default", padded(1500))).code).toBe("request.too_large");
    // POST /model reads up to the largest limit, then holds the body to the model's own.
    const viaKey = await postJson(`${url}/model`, { accessKey, request: padded(100) });
    expect([viaKey.status, viaKey.code]).toEqual([413, "request.too_large"]);
    const small = await postJson(`${url}/model`, { accessKey, request: padded(1) });
    expect(small.body).toMatchObject({ response: 3 });
  });
});

describe("keys", () => {
  it("revokes a rotated access key on the very next call", async () => {
    const list = await replicas(1, { functionName: "add" });
    const oldKey = generateAccessKey();
    const routeWith = (key: string): ModelRoute =>
      route("add-numbers", list, { accessKeySha256: hashKey(key) });
    const { url, gateway: running } = await gateway({ models: [routeWith(oldKey)] });
    expect(
      (await postJson(`${url}/model`, { accessKey: oldKey, request: { a: 1, b: 1 } })).status,
    ).toBe(200);

    const newKey = generateAccessKey();
    running.apply({ models: [routeWith(newKey)], apiKeys: [] });
    const old = await postJson(`${url}/model`, { accessKey: oldKey, request: { a: 1, b: 1 } });
    expect([old.status, old.code]).toEqual([401, "auth.invalid_key"]);
    const fresh = await postJson(`${url}/model`, { accessKey: newKey, request: { a: 1, b: 1 } });
    expect(fresh.body.response).toBe(2);
  });

  it("checks model API keys: valid, expired, deleted, other user's", async () => {
    const list = await replicas(1, { functionName: "add" });
    const issued = new Date("2026-01-01T00:00:00Z");
    const alice = generateApiKey("alice", issued);
    const shortLived = generateApiKey("alice", issued, DAY_MS);
    const bob = generateApiKey("bob", issued);
    let now = issued.getTime() + 2 * DAY_MS;
    const models = [
      route("add-numbers", list, { authentication: { enabled: true, users: ["alice"] } }),
    ];
    const { url, gateway: running } = await gateway(
      { models, apiKeys: [alice.record, shortLived.record, bob.record] },
      { now: () => now },
    );
    const call = (key?: string) =>
      predict(url, "add-numbers", { a: 2, b: 2 }, key ? { authorization: `Bearer ${key}` } : {});

    expect((await call(alice.key)).body.response).toBe(4);
    expect((await call()).code).toBe("auth.missing_key");
    const expired = await call(shortLived.key);
    expect([expired.status, expired.code]).toEqual([401, "auth.expired_key"]);
    expect(expired.body.message).toContain(shortLived.record.id);
    const forbidden = await call(bob.key);
    expect([forbidden.status, forbidden.code]).toEqual([403, "auth.forbidden"]);
    expect((await call(`${alice.key}x`)).code).toBe("auth.invalid_key");

    // Deleting a key revokes it; a year later the default expiry applies to the rest.
    running.apply({ models, apiKeys: [bob.record] });
    expect((await call(alice.key)).code).toBe("auth.invalid_key");
    now = issued.getTime() + 366 * DAY_MS;
    running.apply({
      models: [route("add-numbers", list, { authentication: { enabled: true } })],
      apiKeys: [bob.record],
    });
    expect((await call(bob.key)).code).toBe("auth.expired_key");
    // Keys never show in answers.
    expect(JSON.stringify(await call(bob.key))).not.toContain(bob.key);
  });
});

describe("every error in the registry", () => {
  // Each entry brings about one error and returns the answer; the table must cover the registry.
  const scenarios: Record<CallerErrorCode, () => Promise<JsonAnswer>> = {
    "request.invalid_json": async () => {
      const { url } = await gateway({
        models: [route("m", await replicas(1, { functionName: "add" }))],
      });
      return predict(url, "m", '{"a": 1,');
    },
    "request.too_large": async () => {
      const { url } = await gateway({ models: [route("m", [])] });
      // The default limit, CDSW's: 5 MB.
      return predict(url, "m", { blob: "x".repeat(5 * 1024 * 1024) });
    },
    "request.invalid_input": async () => {
      const inputSchema = {
        type: "object",
        required: ["petal_length"],
        properties: { petal_length: { type: "number" } },
      };
      const { url } = await gateway({ models: [route("iris", [], { inputSchema })] });
      const answer = await predict(url, "iris", { petal_length: "long" });
      expect(answer.body.problems).toEqual(["/petal_length: must be number"]);
      return answer;
    },
    "auth.missing_key": async () => {
      const { url } = await gateway({ models: [route("m", [])] });
      return postJson(`${url}/model`, { request: {} });
    },
    "auth.invalid_key": async () => {
      const { url } = await gateway({
        models: [route("m", [], { accessKeySha256: hashKey(generateAccessKey()) })],
      });
      return postJson(`${url}/model`, { accessKey: generateAccessKey(), request: {} });
    },
    "auth.expired_key": async () => {
      const key = generateApiKey("carol", new Date(Date.now() - 2 * DAY_MS), DAY_MS);
      const { url } = await gateway({
        models: [route("m", [], { authentication: { enabled: true } })],
        apiKeys: [key.record],
      });
      return predict(url, "m", {}, { authorization: `Bearer ${key.key}` });
    },
    "auth.forbidden": async () => {
      const key = generateApiKey("mallory", new Date());
      const { url } = await gateway({
        models: [route("m", [], { authentication: { enabled: true, users: ["alice"] } })],
        apiKeys: [key.record],
      });
      return predict(url, "m", {}, { authorization: `Bearer ${key.key}` });
    },
    "model.not_found": async () => {
      const { url } = await gateway({ models: [] });
      return predict(url, "nobody", {});
    },
    "model.stopped": async () => {
      const { url } = await gateway({ models: [route("m", [], { stopped: true })] });
      return predict(url, "m", {});
    },
    "model.unavailable": async () => {
      // The one replica refuses connections: it is ejected, and the caller told why at once.
      const url = await refusingUrl();
      const { url: gatewayUrl } = await gateway({
        models: [{ ...route("m", []), replicas: [{ id: "m-1", url }] }],
      });
      const answer = await predict(gatewayUrl, "m", {});
      expect(answer.body.message).toContain(
        `all 1 replicas of model "m" are unreachable: m-1: connect ECONNREFUSED ${url.slice(7)}`,
      );
      return answer;
    },
    "model.busy": async () => {
      // No replica at all: the caller waits its queueTimeoutSeconds, then is told why.
      const { url } = await gateway({ models: [route("m", [], { queueTimeoutSeconds: 0.1 })] });
      const answer = await predict(url, "m", {});
      expect(answer.body.message).toContain("has no ready replica");
      return answer;
    },
    "model.timeout": async () => {
      const list = await replicas(1, { functionName: "sleeps", timeoutSeconds: 0.3 });
      const { url } = await gateway({ models: [route("m", list)] });
      return predict(url, "m", { seconds: 5 });
    },
    "model.error": async () => {
      const { url } = await gateway({
        models: [route("m", await replicas(1, { functionName: "fails" }))],
      });
      const answer = await predict(url, "m", { a: 1 });
      expect(answer.body.exception).toMatchObject({ type: "ValueError" });
      return answer;
    },
    "model.unexpected_shutdown": async () => {
      const { url } = await gateway({
        models: [route("m", await replicas(1, { functionName: "exits" }))],
      });
      return predict(url, "m", {});
    },
    "model.response_too_large": async () => {
      // An answer of 20 KB through a gateway whose response limit is 10 KB.
      const list = await replicas(1, { functionName: "answer_of_megabytes", file: "sizes.py" });
      const { url } = await gateway({ models: [route("m", list)] }, { responseLimitBytes: 10_240 });
      const answer = await predict(url, "m", { megabytes: 20 / 1024 });
      expect(answer.body.message).toContain("the gateway's response limit of 10240 bytes");
      return answer;
    },
    "metrics.unknown_prediction": async () => {
      const store = await openEmbeddedMetricsStore("memory");
      started.push({ stop: () => store.close() });
      const alice = generateApiKey("alice", new Date());
      const { url } = await gateway({ apiKeys: [alice.record] }, { metricsStore: store });
      return postJson(
        `${url}/model-metrics/delayed`,
        { predictionUuid: "0b6c3a52-5a44-4a3e-9d7e-4bb1c0f3a9e1", metrics: { actual: 1 } },
        { authorization: `Bearer ${alice.key}` },
      );
    },
    "metrics.unavailable": async () => {
      // A gateway without a metrics store: the metrics API says so.
      const { url } = await gateway({});
      const response = await fetch(`${url}/model-metrics?modelCrn=iris`);
      return {
        status: response.status,
        code: response.headers.get("x-modelship-code"),
        body: await response.json(),
      };
    },
  };

  it("has a scenario for each code", () => {
    expect(Object.keys(scenarios).sort()).toEqual(Object.keys(CALLER_ERRORS).sort());
  });

  it.each(Object.entries(CALLER_ERRORS) as [CallerErrorCode, number][])(
    "%s is answered with HTTP %i, its code and a message",
    async (code, status) => {
      const answer = await scenarios[code]();
      expect([answer.status, answer.code]).toEqual([status, code]);
      expect(answer.body).toMatchObject({ success: false, error: code });
      expect(answer.body.message.length).toBeGreaterThan(20);
    },
    // The metrics codes open an embedded PostgreSQL (PGlite): seconds on a busy machine.
    30_000,
  );
});
