// The gateway in front of replicas that are not there, never answer, or are not our agent, over
// real sockets on 127.0.0.1. Every test has queueTimeoutSeconds 1 and timeoutSeconds 1 unless it
// says otherwise, so no caller may wait more than 2 s (docs/gateway.md#the-queue), and:
//
// | replica                    | the caller that meets it       | then                           |
// |----------------------------|--------------------------------|--------------------------------|
// | refuses connections        | another replica, else 503 now  | ejected, probed                |
// | answers a stranger's 404   | another replica, else 503 now  | ejected, probed; body dropped  |
// | breaks the connection      | 502 (the call may have run)    | ejected, probed                |
// | blackhole (never answers)  | 504 at its deadline            | busy until timeout + 5 s,      |
// |                            |                                | then ejected, probed           |
//
// Callers that wait while a blackhole still counts as busy get 429 at their queue deadline;
// callers that find every replica ejected get 503 model.unavailable at once.
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { CODE_HEADER, isKnownCode } from "../controller/api/errors.ts";
import { closeServer, listen } from "../controller/api/http.ts";
import type { ModelRoute } from "../controller/gateway/config.ts";
import { agentHead, readinessProblem } from "../controller/gateway/upstream.ts";
import { ReplicaAgent } from "../controller/replica/agent.ts";
import { createReplicaServer } from "../controller/replica/agent-server.ts";
import { type RunningGateway, refusingUrl, route, startGateway } from "./helpers/gateway.ts";
import {
  eventually,
  getJson,
  type JsonAnswer,
  MODELS_DIR,
  postJson,
  startReplica,
} from "./helpers/replica.ts";

const started: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((running) => running.stop()));
});

const QUEUE_S = 1;
const TIMEOUT_S = 1;
/** What a caller may wait at most: its queue deadline plus the model's timeout. */
const BOUND_MS = (QUEUE_S + TIMEOUT_S) * 1000;
/** Slack for the client's round trip and a busy machine; far below the bound itself. */
const MARGIN_MS = 300;
/** What a stranger answers: it must never reach a caller. */
const STRANGER_BODY = "<html>stranger's page: not found</html>";

/** A TCP server on 127.0.0.1 that counts connections and requests, and stops with the test. */
async function fakeServer(
  onRequest: (socket: Socket, head: string) => void,
): Promise<{ url: string; connections: number; requests: string[]; open(): Promise<number> }> {
  const sockets = new Set<Socket>();
  const state = { url: "", connections: 0, requests: [] as string[], open: () => open(server) };
  const server: Server = createServer((socket) => {
    state.connections += 1;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.on("data", (chunk) => {
      const head = chunk.toString("latin1").split("\r\n")[0] as string;
      state.requests.push(head);
      onRequest(socket, head);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  started.push({
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  });
  return state;
}

function open(server: Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((_, count) => resolve(count)));
}

/** Accepts connections and reads requests, and never writes a byte. */
function blackhole() {
  return fakeServer(() => {});
}

/** Some other web server at the address: a 404 page, without our code header. */
function stranger(delayMs = 0) {
  return fakeServer((socket) => {
    const answer = `HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: ${Buffer.byteLength(STRANGER_BODY)}\r\n\r\n${STRANGER_BODY}`;
    setTimeout(() => socket.writable && socket.write(answer), delayMs);
  });
}

/** Reads a call and drops the connection: a replica that dies with the call. */
function breaker() {
  return fakeServer((socket) => socket.destroy());
}

async function goodReplica(id: string) {
  const replica = await startReplica({ replicaId: id, functionName: "add" });
  started.push(replica);
  await replica.agent.whenReady();
  return replica;
}

/** A real agent (add) on the port of `url`, as a replica that restarts there would be. */
async function agentAt(url: string, id: string): Promise<void> {
  const agent = new ReplicaAgent({
    replicaId: id,
    runtime: "python3",
    file: "behaviours.py",
    functionName: "add",
    directory: MODELS_DIR,
    timeoutSeconds: 30,
    restartBackoffMs: 20,
  });
  const server = createReplicaServer(agent);
  await listen(server, "127.0.0.1", Number(new URL(url).port));
  agent.start();
  started.push({
    async stop() {
      const closed = closeServer(server);
      await agent.stop();
      server.closeAllConnections();
      await closed;
    },
  });
  await agent.whenReady();
}

async function gatewayFor(
  replicas: { id: string; url: string }[],
  overrides: Partial<ModelRoute> = {},
): Promise<RunningGateway> {
  const running = await startGateway({
    models: [
      {
        ...route("m", [], { queueTimeoutSeconds: QUEUE_S, timeoutSeconds: TIMEOUT_S }),
        ...overrides,
        replicas,
      },
    ],
    apiKeys: [],
  });
  started.push(running);
  return running;
}

interface Timed extends JsonAnswer {
  ms: number;
}

async function call(base: string, request: unknown = { a: 1, b: 2 }): Promise<Timed> {
  const start = performance.now();
  const answer = await postJson(`${base}/models/m/predict`, request);
  const ms = performance.now() - start;
  expect(JSON.stringify(answer.body)).not.toContain("stranger's page");
  return { ...answer, ms };
}

async function ejected(base: string): Promise<number> {
  const { body } = await getJson(`${base}/models`);
  return body.models[0].ejected;
}

describe("a replica that cannot be reached", () => {
  it("is ejected at once: its caller gets 503 model.unavailable at once, saying why", async () => {
    const url = await refusingUrl();
    const { url: base } = await gatewayFor([{ id: "m-1", url }]);
    for (let attempt = 0; attempt < 3; attempt++) {
      const answer = await call(base);
      expect([answer.status, answer.code]).toEqual([503, "model.unavailable"]);
      expect(answer.body.message).toContain(
        `all 1 replicas of model "m" are unreachable: m-1: connect ECONNREFUSED ${url.slice(7)}`,
      );
      expect(answer.ms).toBeLessThan(MARGIN_MS);
    }
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => call(base)));
    expect(concurrent.map((answer) => answer.code)).toEqual(Array(5).fill("model.unavailable"));
    expect(Math.max(...concurrent.map((answer) => answer.ms))).toBeLessThan(MARGIN_MS);
  });

  it("comes back into rotation when a probe finds an agent at its address", async () => {
    const url = await refusingUrl();
    const { url: base } = await gatewayFor([{ id: "m-1", url }]);
    expect((await call(base)).code).toBe("model.unavailable");
    expect(await ejected(base)).toBe(1);

    await agentAt(url, "m-1");
    await eventually(async () => (await ejected(base)) === 0, 5000);
    const answer = await call(base, { a: 2, b: 3 });
    expect([answer.status, answer.body.response, answer.body.replicaId]).toEqual([200, 5, "m-1"]);
  });
});

describe("a replica that is not our agent", () => {
  it("is ejected, its answer never relayed: the caller gets 503 at once", async () => {
    const other = await stranger();
    const { url: base } = await gatewayFor([{ id: "m-1", url: other.url }]);
    const answer = await call(base);
    expect([answer.status, answer.code]).toEqual([503, "model.unavailable"]);
    expect(answer.body.message).toContain(
      `m-1: answered HTTP 404 without an ${CODE_HEADER} header: not a modelship replica agent`,
    );
    expect(answer.ms).toBeLessThan(MARGIN_MS);
    // Later callers are turned away without another call to it; only probes ask it (GET /readyz).
    expect((await call(base)).code).toBe("model.unavailable");
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(other.requests.filter((line) => line.startsWith("POST"))).toHaveLength(1);
    expect(other.requests.filter((line) => line.startsWith("GET /readyz")).length).toBeGreaterThan(
      0,
    );
    expect(await ejected(base)).toBe(1);
  });

  it("lets callers waiting for it go with 503 as soon as it is found out", async () => {
    // It takes 300 ms to answer its 404; the queue would wait 5 s.
    const other = await stranger(300);
    const { url: base } = await gatewayFor([{ id: "m-1", url: other.url }], {
      queueTimeoutSeconds: 5,
    });
    const first = call(base);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const answers = await Promise.all([first, call(base), call(base)]);
    expect(answers.map((answer) => answer.code)).toEqual(Array(3).fill("model.unavailable"));
    expect(Math.max(...answers.map((answer) => answer.ms))).toBeLessThan(300 + MARGIN_MS);
  });
});

describe("a replica that breaks the connection with the call", () => {
  it("answers 502 (the call may have run: not resent), and is ejected", async () => {
    const broken = await breaker();
    const { url: base } = await gatewayFor([{ id: "m-1", url: broken.url }]);
    const answer = await call(base);
    expect([answer.status, answer.code]).toEqual([502, "model.unexpected_shutdown"]);
    expect(broken.requests.filter((line) => line.startsWith("POST"))).toHaveLength(1);
    const next = await call(base);
    expect([next.status, next.code]).toEqual([503, "model.unavailable"]);
    expect(next.body.message).toContain('all 1 replicas of model "m" are unreachable: m-1: ');
  });
});

describe("a replica that accepts the connection and never answers (blackhole)", () => {
  it("answers the caller sent to it 504 at its deadline; others wait for it as busy; ejected after timeout + grace", {
    timeout: 20_000,
  }, async () => {
    const hole = await blackhole();
    const { url: base, gateway } = await gatewayFor([{ id: "m-1", url: hole.url }]);
    const sentAt = performance.now();
    const sent = call(base);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const waiting = await call(base);
    expect([waiting.status, waiting.code]).toEqual([429, "model.busy"]);
    expect(waiting.ms).toBeGreaterThanOrEqual(QUEUE_S * 1000 - 5);
    expect(waiting.ms).toBeLessThan(QUEUE_S * 1000 + MARGIN_MS);

    const answer = await sent;
    expect([answer.status, answer.code, answer.body.replicaId]).toEqual([
      504,
      "model.timeout",
      "m-1",
    ]);
    expect(answer.body.message).toContain("before the call's deadline");
    expect(answer.ms).toBeGreaterThanOrEqual(BOUND_MS - 5);
    expect(answer.ms).toBeLessThan(BOUND_MS + MARGIN_MS);

    // The agent answers 504 itself at timeoutSeconds: silence for 1 s + 5 s means broken.
    await eventually(async () => (await ejected(base)) === 1, 8000);
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual((TIMEOUT_S + 5) * 1000 - 5);
    const after = await call(base);
    expect([after.status, after.code]).toEqual([503, "model.unavailable"]);
    expect(after.ms).toBeLessThan(MARGIN_MS);
    expect(hole.requests.filter((line) => line.startsWith("POST"))).toHaveLength(1);

    // Its probes get no answer either, and stop with the gateway: no socket is left open.
    await eventually(() => hole.requests.some((line) => line.startsWith("GET /readyz")), 3000);
    const metrics = await fetch(`${base}/metrics`).then((response) => response.text());
    expect(metrics).toContain('modelship_gateway_replicas_ejected{model="m"} 1');
    expect(metrics).toContain('modelship_gateway_ejections_total{model="m"} 1');
    await gateway.close(0);
    await eventually(async () => (await hole.open()) === 0, 1000);
  });
});

describe("all three together, and with one good replica", () => {
  const badOnes = async () => {
    const [hole, other] = await Promise.all([blackhole(), stranger()]);
    return {
      hole,
      other,
      replicas: [
        { id: "refuses", url: await refusingUrl() },
        { id: "blackhole", url: hole.url },
        { id: "stranger", url: other.url },
      ],
    };
  };

  it("answers every caller within the bound: 504 for the call sent to the blackhole, 429 while it counts as busy, then 503", {
    timeout: 20_000,
  }, async () => {
    const { replicas } = await badOnes();
    const { url: base } = await gatewayFor(replicas);
    // None has answered yet, so the first in the list: refuses (ejected) → blackhole, which
    // takes the call.
    const first = call(base);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The stranger is ejected; the blackhole is busy: the caller waits, then 429.
    const second = await call(base);
    expect([second.status, second.code]).toEqual([429, "model.busy"]);
    expect(second.body.message).toContain(
      'all 1 replicas of model "m" stayed busy for 1 s (queueTimeoutSeconds), and 2 more are unreachable',
    );
    expect(second.ms).toBeLessThan(QUEUE_S * 1000 + MARGIN_MS);
    const answer = await first;
    expect([answer.status, answer.code, answer.body.replicaId]).toEqual([
      504,
      "model.timeout",
      "blackhole",
    ]);
    expect(answer.ms).toBeLessThan(BOUND_MS + MARGIN_MS);
    expect(await ejected(base)).toBe(2);

    await eventually(async () => (await ejected(base)) === 3, 8000);
    const last = await call(base);
    expect([last.status, last.code]).toEqual([503, "model.unavailable"]);
    expect(last.ms).toBeLessThan(MARGIN_MS);
    expect(last.body.message).toMatch(
      /^all 3 replicas of model "m" are unreachable: refuses: connect ECONNREFUSED [^;]+; blackhole: [^;]+; stranger: answered GET \/readyz with HTTP 404: not a modelship replica agent; /,
    );
  });

  it("serves every call but the one sent to the blackhole on the good replica, and takes a bad one back when it answers", {
    timeout: 20_000,
  }, async () => {
    const { replicas } = await badOnes();
    const good = await goodReplica("good");
    const { url: base } = await gatewayFor([...replicas, { id: "good", url: good.url }]);

    const answers: Timed[] = [];
    for (let attempt = 0; attempt < 8; attempt++) answers.push(await call(base));
    // The first call: refuses (ejected, not run) → blackhole (sent: 504 at its deadline).
    expect([answers[0]?.code, answers[0]?.body.replicaId]).toEqual(["model.timeout", "blackhole"]);
    expect(answers[0]?.ms).toBeLessThan(BOUND_MS + MARGIN_MS);
    // The second: stranger (ejected, not run) → good. Every later one goes to the good one.
    for (const answer of answers.slice(1)) {
      expect([answer.status, answer.body.response, answer.body.replicaId]).toEqual([
        200,
        3,
        "good",
      ]);
      expect(answer.ms).toBeLessThan(MARGIN_MS);
    }
    const burst = await Promise.all(Array.from({ length: 20 }, () => call(base)));
    expect(new Set(burst.map((answer) => `${answer.status} ${answer.body.replicaId}`))).toEqual(
      new Set(["200 good"]),
    );
    expect(Math.max(...burst.map((answer) => answer.ms))).toBeLessThan(BOUND_MS);

    // An agent starts where connections were refused: a probe puts it back in rotation. Calls
    // one at a time would stay on "good", which answered last: two that overlap take both.
    await agentAt(replicas[0]?.url as string, "refuses");
    const overlapping = () =>
      Promise.all([
        call(base, { a: 1, b: 2, seconds: 0.4 }),
        call(base, { a: 1, b: 2, seconds: 0.4 }),
      ]);
    // Until then the stranger is out and the blackhole still holds its call: only "good" serves.
    await eventually(async () => {
      const answers = await overlapping();
      for (const answer of answers) expect(answer.status).toBe(200);
      return answers.some((answer) => answer.body.replicaId === "refuses");
    }, 5000);
    const both = await overlapping();
    for (const answer of both) expect([answer.status, answer.body.response]).toEqual([200, 3]);
    expect(new Set(both.map((answer) => answer.body.replicaId))).toEqual(
      new Set(["good", "refuses"]),
    );
  });
});

describe("probes", () => {
  it("stop for a replica the registry removes, and for all when the gateway closes", {
    timeout: 20_000,
  }, async () => {
    const [removed, kept] = await Promise.all([stranger(), stranger()]);
    const running = await gatewayFor([
      { id: "removed", url: removed.url },
      { id: "kept", url: kept.url },
    ]);
    expect((await call(running.url)).code).toBe("model.unavailable");
    const probes = (server: { requests: string[] }) =>
      server.requests.filter((line) => line.startsWith("GET /readyz")).length;
    await eventually(() => probes(removed) >= 3 && probes(kept) >= 3, 5000);

    running.gateway.apply({
      models: [
        {
          ...route("m", [], { queueTimeoutSeconds: QUEUE_S, timeoutSeconds: TIMEOUT_S }),
          replicas: [{ id: "kept", url: kept.url }],
        },
      ],
      apiKeys: [],
    });
    const probesOfRemoved = probes(removed);
    const probesOfKept = probes(kept);
    // Longer than the longest wait between probes (2 s).
    await new Promise((resolve) => setTimeout(resolve, 2200));
    expect(probes(removed)).toBe(probesOfRemoved);
    expect(probes(kept)).toBeGreaterThan(probesOfKept);

    await running.gateway.close(0);
    const probesAtClose = probes(kept);
    await new Promise((resolve) => setTimeout(resolve, 2200));
    expect(probes(kept)).toBe(probesAtClose);
    expect([await removed.open(), await kept.open()]).toEqual([0, 0]);
  });
});

describe("isKnownCode: the codes an agent sends", () => {
  it.each<[string, boolean]>([
    ["ok", true],
    ["model.error", true],
    ["model.unavailable", true],
    ["replica.busy", true],
    ["replica.not_ready", true],
    ["", false],
    ["OK", false],
    ["model", false],
    ["toString", false],
    ["__proto__", false],
  ])("%j → %s", (code, known) => {
    expect(isKnownCode(code)).toBe(known);
  });
});

describe("agentHead: an answer's head, or why it is not an agent's", () => {
  it.each<[string, string, string]>([
    ["an agent's result", `HTTP/1.1 200 OK\r\nContent-Length: 12\r\n${CODE_HEADER}: ok`, "200 ok"],
    [
      "an agent's error",
      `HTTP/1.1 500 Internal Server Error\r\n${CODE_HEADER.toUpperCase()}: model.error\r\ncontent-length: 40\r\nConnection: close`,
      "500 model.error close",
    ],
    [
      "a stranger's 404",
      "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9",
      "answered HTTP 404 without an x-modelship-code header: not a modelship replica agent",
    ],
    [
      "an unknown code",
      `HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n${CODE_HEADER}: teapot`,
      'answered HTTP 418 with the unknown code "teapot": not a modelship replica agent',
    ],
    ...[100, 204, 304, 600].map((status): [string, string, string] => [
      `a status without a body, or none at all: ${status}`,
      `HTTP/1.1 ${status} X\r\nContent-Length: 2\r\n${CODE_HEADER}: ok`,
      `answered HTTP ${status}, a status an agent never answers with: not a modelship replica agent`,
    ]),
    [
      "no Content-Length",
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n${CODE_HEADER}: ok`,
      "answered something that is not HTTP with a Content-Length: not a modelship replica agent",
    ],
    [
      "not HTTP",
      "SSH-2.0-OpenSSH_9.6 200",
      "answered something that is not HTTP with a Content-Length: not a modelship replica agent",
    ],
  ])("%s", (_, text, expected) => {
    const head = agentHead(text, text.length + 4);
    const got =
      typeof head === "string" ? head : `${head.status} ${head.code}${head.close ? " close" : ""}`;
    expect(got).toBe(expected);
  });
});

describe("readinessProblem: whether GET /readyz was answered by an agent", () => {
  const wrong = (status: number) =>
    `answered GET /readyz with HTTP ${status}: not a modelship replica agent`;
  it.each<[number, string, string | undefined]>([
    [200, '{"ready":true,"state":"ready"}', undefined],
    [503, '{"ready":false,"state":"loading","reason":"importing"}', undefined],
    [503, '{"ready":false,"state":"failed","reason":"SyntaxError"}', undefined],
    // Another gateway's /readyz has no state.
    [200, '{"ready":true}', wrong(200)],
    [404, '{"ready":true,"state":"ready"}', wrong(404)],
    [200, "<html>ok</html>", wrong(200)],
    [200, "null", wrong(200)],
    [200, '{"ready":"yes","state":"ready"}', wrong(200)],
  ])("HTTP %i %s → %s", (status, body, expected) => {
    expect(readinessProblem(status, body)).toBe(expected);
  });
});
