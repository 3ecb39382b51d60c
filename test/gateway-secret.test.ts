// No way around the gateway: an agent started with a gateway secret serves the model only to
// callers that send it (the gateway, with each replica's `secret`), and an agent may listen on
// a Unix socket, which the gateway reaches and probes like a TCP one.
import { spawnSync } from "node:child_process";
import { lstatSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { GATEWAY_SECRET_HEADER } from "../controller/api/errors.ts";
import { answerVerdict, targetOf } from "../controller/gateway/upstream.ts";
import { route, startGateway } from "./helpers/gateway.ts";
import {
  eventually,
  getJson,
  postJson,
  type RunningReplica,
  requestOverSocket,
  startReplica,
} from "./helpers/replica.ts";

const started: { stop(): Promise<void> }[] = [];
const directories: string[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((running) => running.stop()));
  for (const directory of directories.splice(0))
    rmSync(directory, { recursive: true, force: true });
});

const SECRET = "s3cret-for-the-gateway";

async function readyReplica(
  gatewaySecret: string | undefined,
  socketPath?: string,
  replicaId = "add-1",
): Promise<RunningReplica> {
  const replica = await startReplica(
    { replicaId, functionName: "add" },
    gatewaySecret === undefined ? {} : { gatewaySecret },
    socketPath,
  );
  started.push(replica);
  await replica.agent.whenReady();
  return replica;
}

async function gatewayFor(replicas: RunningReplica[], replicaSecret?: string) {
  const served = route("add", replicas, { queueTimeoutSeconds: 1 });
  const running = await startGateway({
    models: [
      {
        ...served,
        replicas: served.replicas.map((address) =>
          replicaSecret === undefined ? address : { ...address, secret: replicaSecret },
        ),
      },
    ],
    apiKeys: [],
  });
  started.push(running);
  return running;
}

function socketPath(): string {
  const directory = mkdtempSync(join(tmpdir(), "modelship-socket-"));
  directories.push(directory);
  return join(directory, "agent.sock");
}

describe("an agent with a gateway secret", () => {
  it("refuses a direct call without the secret: 403 replica.forbidden", async () => {
    const replica = await readyReplica(SECRET);
    const direct = await postJson(`${replica.url}/predict`, { a: 1, b: 2 });
    expect([direct.status, direct.code, direct.body.error]).toEqual([
      403,
      "replica.forbidden",
      "replica.forbidden",
    ]);
    const wrong = await postJson(
      `${replica.url}/predict`,
      { a: 1, b: 2 },
      { [GATEWAY_SECRET_HEADER]: "guess" },
    );
    expect([wrong.status, wrong.code]).toEqual([403, "replica.forbidden"]);
    const right = await postJson(
      `${replica.url}/predict`,
      { a: 1, b: 2 },
      { [GATEWAY_SECRET_HEADER]: SECRET },
    );
    expect([right.status, right.body.response]).toEqual([200, 3]);
  });

  it("keeps probes open and the model's output closed over TCP", async () => {
    const replica = await readyReplica(SECRET);
    expect((await getJson(`${replica.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${replica.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${replica.url}/metrics`)).status).toBe(200);
    for (const path of ["/stats", "/logs"]) {
      const refused = await fetch(`${replica.url}${path}`);
      expect([path, refused.status, refused.headers.get("x-modelship-code")]).toEqual([
        path,
        403,
        "replica.forbidden",
      ]);
      const allowed = await fetch(`${replica.url}${path}`, {
        headers: { [GATEWAY_SECRET_HEADER]: SECRET },
      });
      expect([path, allowed.status]).toEqual([path, 200]);
    }
    // A wrong secret is refused even where none is needed: a gateway's probe learns of it.
    const probe = await fetch(`${replica.url}/readyz`, {
      headers: { [GATEWAY_SECRET_HEADER]: "x" },
    });
    expect(probe.status).toBe(403);
  });

  it("is called through the gateway that has the route's secret: 200", async () => {
    const replica = await readyReplica(SECRET);
    const { url } = await gatewayFor([replica], SECRET);
    const answer = await postJson(`${url}/models/add/predict`, { a: 2, b: 5 });
    expect([answer.status, answer.body.response]).toEqual([200, 7]);
  });

  it("is ejected by a gateway with another secret: the caller gets 503 naming why, and probes keep it out", async () => {
    const replica = await readyReplica(SECRET);
    const { url } = await gatewayFor([replica], "not-the-secret");
    const answer = await postJson(`${url}/models/add/predict`, { a: 2, b: 5 });
    expect([answer.status, answer.code]).toEqual([503, "model.unavailable"]);
    expect(answer.body.message).toContain("add-1: refused the gateway's secret");
    expect(JSON.stringify(answer.body)).not.toContain("replica.forbidden");
    // Probes carry the same secret and are refused: it stays out, and no call reaches it.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const { body } = await getJson(`${url}/models`);
    expect(body.models[0].ejected).toBe(1);
    expect((await postJson(`${url}/models/add/predict`, { a: 1, b: 1 })).code).toBe(
      "model.unavailable",
    );
    expect(replica.agent.stats.received).toBe(1);
  });

  it("is ejected by a gateway that sends no secret at all", async () => {
    const replica = await readyReplica(SECRET);
    const { url } = await gatewayFor([replica]);
    const answer = await postJson(`${url}/models/add/predict`, { a: 2, b: 5 });
    expect([answer.status, answer.code]).toEqual([503, "model.unavailable"]);
    expect(answer.body.message).toContain("refused the gateway's secret");
  });
});

describe("an agent on a Unix socket", () => {
  it("answers calls end to end through the gateway, and its output is open on the socket", async () => {
    const path = socketPath();
    const replica = await readyReplica(SECRET, path);
    expect(replica.url).toBe(`unix:${path}`);
    const { url } = await gatewayFor([replica], SECRET);
    const answer = await postJson(`${url}/models/add/predict`, { a: 20, b: 22 });
    expect([answer.status, answer.body.response, answer.body.replicaId]).toEqual([
      200,
      42,
      "add-1",
    ]);

    // On the socket the file's mode decides who may read the output; calls still need the secret.
    expect((await requestOverSocket(path, "GET", "/stats")).body).toMatchObject({ success: 1 });
    const direct = await requestOverSocket(path, "POST", "/predict", '{"a":1,"b":1}');
    expect([direct.status, direct.code]).toEqual([403, "replica.forbidden"]);
  });

  it("is ejected while it is gone, and found again by the probe when it comes back", async () => {
    const path = socketPath();
    const first = await readyReplica(undefined, path, "sock-1");
    const { url } = await gatewayFor([first]);
    expect((await postJson(`${url}/models/add/predict`, { a: 1, b: 2 })).status).toBe(200);

    await first.stop();
    started.splice(started.indexOf(first), 1);
    const gone = await postJson(`${url}/models/add/predict`, { a: 1, b: 2 });
    expect([gone.status, gone.code]).toEqual([503, "model.unavailable"]);
    expect(gone.body.message).toContain(`sock-1: connect ENOENT ${path}`);

    // The same replica again, at the same path: the probes find it and put it back.
    await readyReplica(undefined, path, "sock-1");
    await eventually(
      async () => (await getJson(`${url}/models`)).body.models[0].ejected === 0,
      5000,
    );
    const back = await postJson(`${url}/models/add/predict`, { a: 1, b: 2 });
    expect([back.status, back.body.response]).toEqual([200, 3]);
  });

  it("replaces a socket file a dead agent left behind", async () => {
    const path = socketPath();
    // A process killed while listening leaves its socket file, with nobody answering on it.
    const killed = spawnSync(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`,
    ]);
    expect(killed.signal).toBe("SIGKILL");
    expect(lstatSync(path).isSocket()).toBe(true);
    const replica = await readyReplica(undefined, path);
    expect(replica.url).toBe(`unix:${path}`);
    expect((await requestOverSocket(path, "GET", "/readyz")).status).toBe(200);
    expect(lstatSync(path).mode & 0o777).toBe(0o600);
  });

  it("does not take over a socket another live server answers on", async () => {
    const path = socketPath();
    await readyReplica(undefined, path);
    await expect(startReplica({ functionName: "add" }, {}, path)).rejects.toThrow(
      `cannot listen on ${path}: listen EADDRINUSE`,
    );
  });
});

describe("targetOf: where a replica URL points", () => {
  it.each([
    ["http://127.0.0.1:9001", { host: "127.0.0.1", port: 9001 }],
    ["http://127.0.0.1:9001/", { host: "127.0.0.1", port: 9001 }],
    ["http://[::1]:9001", { host: "[::1]", port: 9001 }],
    ["http://replica.ns.svc", { host: "replica.ns.svc", port: 80 }],
    ["unix:/run/modelship/add-1.sock", { socketPath: "/run/modelship/add-1.sock" }],
  ])("%s → %j", (url, target) => {
    expect(targetOf(url)).toEqual(target);
  });
});

describe("answerVerdict: what an agent's code means for the call", () => {
  it.each([
    ["ok", { kind: "relay" }],
    ["model.error", { kind: "relay" }],
    ["model.response_too_large", { kind: "relay" }],
    ["replica.busy", { kind: "refused", notReady: false }],
    ["replica.not_ready", { kind: "refused", notReady: true }],
    ["replica.forbidden", { kind: "eject", reason: "refused the gateway's secret" }],
    // A replica code a later agent may add is still never passed to a caller.
    [
      "replica.draining",
      {
        kind: "eject",
        reason: "answered replica.draining, a replica's code this gateway does not know",
      },
    ],
  ])("%s → %j", (code, verdict) => {
    expect(answerVerdict(code)).toEqual(verdict);
  });
});
