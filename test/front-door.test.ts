// The gateway's front door (controller/gateway/front-door.ts): which heads it takes itself, and
// that everything else reaches node:http whole, over real sockets on 127.0.0.1.
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { closeServer, listen } from "../controller/api/http.ts";
import {
  type CallAnswer,
  type FrontDoorCall,
  FrontDoorServer,
  readCallHead,
} from "../controller/gateway/front-door.ts";
import { generateAccessKey, hashKey } from "../controller/gateway/keys.ts";
import { route, startGateway } from "./helpers/gateway.ts";
import { startReplica } from "./helpers/replica.ts";

const HOST = "Host: 127.0.0.1\r\n";

describe("readCallHead", () => {
  const head = (lines: string[]) => lines.join("\r\n");
  const taken: [string, string[], object][] = [
    [
      "a predict call",
      ["POST /models/iris/predict HTTP/1.1", "Host: x", "Content-Length: 12"],
      { name: "iris", contentLength: 12, authorization: undefined, close: false },
    ],
    [
      "POST /model, names in any case, spaces around values",
      ["POST /model HTTP/1.1", "hOsT:x", "content-LENGTH:   7  ", "Authorization: Bearer k.s"],
      { name: undefined, contentLength: 7, authorization: "Bearer k.s", close: false },
    ],
    [
      "a query string, which is not part of the path",
      ["POST /models/a%20b/predict?x=1 HTTP/1.1", "Host: x", "Content-Length: 0"],
      { name: "a b", contentLength: 0 },
    ],
    [
      "Connection: close among other options",
      ["POST /model HTTP/1.1", "Host: x", "Content-Length: 2", "Connection: TE, Close"],
      { close: true },
    ],
    [
      "a value with a long run of spaces inside it",
      ["POST /model HTTP/1.1", "Host: x", "Content-Length: 2", `X-A: a${" ".repeat(15_000)}b`],
      { contentLength: 2 },
    ],
    [
      "headers it does not know, with obs-text in a value",
      ["POST /model HTTP/1.1", "Host: x", "Content-Length: 2", "X-Note: caf\xe9", "Accept: */*"],
      { contentLength: 2 },
    ],
  ];
  it.each(taken)("takes %s", (_, lines, expected) => {
    expect(readCallHead(head(lines))).toMatchObject(expected);
  });

  const call = ["POST /model HTTP/1.1", "Host: x", "Content-Length: 2"];
  const refused: [string, string[]][] = [
    ["another method", ["GET /model HTTP/1.1", "Host: x", "Content-Length: 2"]],
    ["HTTP/1.0", ["POST /model HTTP/1.0", "Host: x", "Content-Length: 2"]],
    ["another path", ["POST /healthz HTTP/1.1", "Host: x", "Content-Length: 2"]],
    ["a longer path", ["POST /models/a/predict/x HTTP/1.1", "Host: x", "Content-Length: 2"]],
    ["an empty model name", ["POST /models//predict HTTP/1.1", "Host: x", "Content-Length: 2"]],
    ["a fragment", ["POST /model#x HTTP/1.1", "Host: x", "Content-Length: 2"]],
    ["an absolute target", ["POST http://x/model HTTP/1.1", "Host: x", "Content-Length: 2"]],
    ["two spaces in the request line", ["POST  /model HTTP/1.1", "Host: x", "Content-Length: 2"]],
    ["no Content-Length", ["POST /model HTTP/1.1", "Host: x"]],
    ["two Content-Lengths", [...call, "Content-Length: 2"]],
    ["a Content-Length list", ["POST /model HTTP/1.1", "Host: x", "Content-Length: 2, 2"]],
    ["a signed Content-Length", ["POST /model HTTP/1.1", "Host: x", "Content-Length: +2"]],
    [
      "a Content-Length of 16 digits",
      ["POST /model HTTP/1.1", "Host: x", `Content-Length: ${"9".repeat(16)}`],
    ],
    ["Transfer-Encoding with a Content-Length", [...call, "Transfer-Encoding: chunked"]],
    ["Expect: 100-continue", [...call, "Expect: 100-continue"]],
    ["Upgrade", [...call, "Upgrade: websocket", "Connection: Upgrade"]],
    ["Connection: upgrade alone", [...call, "Connection: upgrade"]],
    ["no Host", ["POST /model HTTP/1.1", "Content-Length: 2"]],
    ["two Hosts", [...call, "Host: y"]],
    ["two Authorizations", [...call, "Authorization: a", "Authorization: b"]],
    ["a folded line", [...call, "X-A: 1", " continued"]],
    ["a space before the colon", ["POST /model HTTP/1.1", "Host: x", "Content-Length : 2"]],
    ["a name that is not a token", [...call, "X(A): 1"]],
    ["a line without a colon", [...call, "X-A"]],
    ["a lone LF in a value", [...call, "X-A: 1\nContent-Length: 9"]],
    ["a lone CR in a value", [...call, "X-A: 1\rX"]],
    ["a NUL in a value", [...call, "X-A: 1\0"]],
    ["a head over 16 KB", [...call, `X-A: ${"a".repeat(16 * 1024)}`]],
    [
      "a value with a long run of spaces and a control character",
      [...call, `X-A: a${" ".repeat(15_000)}\x01`],
    ],
    [
      "more than 100 header lines",
      [...call, ...Array.from({ length: 100 }, (_, i) => `X-${i}: 1`)],
    ],
  ];
  it.each(refused)("leaves %s to node:http", (_, lines) => {
    expect(readCallHead(head(lines))).toBeUndefined();
  });
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Answers in `text`, one after another: each head and the Content-Length of body after it. */
function answersIn(text: string): Answer[] {
  const answers: Answer[] = [];
  let rest = text;
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    if (end === -1) return answers;
    const [statusLine, ...lines] = rest.slice(0, end).split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers["content-length"] ?? 0);
    if (rest.length < end + 4 + length) return answers;
    answers.push({
      status: Number(statusLine?.split(" ")[1]),
      headers,
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
}

/** A raw connection: writes bytes as they are, and reads the answers that come back. */
class RawClient {
  readonly socket: Socket;
  received = "";
  readonly closed: Promise<void>;
  /** `allowHalfOpen`: the connection stays open after the server's end until the server closes it. */
  constructor(port: number, allowHalfOpen = false) {
    this.socket = connect({ host: "127.0.0.1", port, noDelay: true, allowHalfOpen });
    this.socket.setEncoding("latin1");
    this.socket.on("data", (chunk: string) => {
      this.received += chunk;
    });
    this.closed = new Promise((resolve) => this.socket.on("close", () => resolve()));
  }
  send(text: string): void {
    this.socket.write(text, "latin1");
  }
  async answers(count: number): Promise<Answer[]> {
    const deadline = Date.now() + 5000;
    while (answersIn(this.received).length < count) {
      if (Date.now() > deadline) throw new Error(`no ${count} answers in: ${this.received}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return answersIn(this.received);
  }
}

function post(path: string, body: string, extra = ""): string {
  return `POST ${path} HTTP/1.1\r\n${HOST}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the server holds no connection: it has closed its side of every one. */
async function noConnections(server: FrontDoorServer): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const count = await new Promise<number>((resolve, reject) =>
      server.getConnections((error, value) => (error ? reject(error) : resolve(value))),
    );
    if (count === 0) return;
    if (Date.now() > deadline) throw new Error(`the server still holds ${count} connections`);
    await pause(5);
  }
}

const running: { server: FrontDoorServer; clients: RawClient[] }[] = [];
const stoppers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stoppers.splice(0)) await stop();
  for (const { server, clients } of running.splice(0)) {
    const closed = closeServer(server);
    server.closeAllConnections();
    await closed;
    for (const client of clients) client.socket.destroy();
  }
});

/**
 * A front door whose calls answer what they got, after the body's `wait` ms, and whose node:http
 * side answers what it got; it records which side took each request.
 */
async function frontDoor(bodyLimit = 1024) {
  const doorCalls: FrontDoorCall[] = [];
  const nodeRequests: string[] = [];
  const server = new FrontDoorServer(
    { noDelay: true, keepAliveTimeout: 65_000 },
    (request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        const body = Buffer.concat(chunks).toString();
        nodeRequests.push(`${request.method} ${request.url} ${body}`);
        const text = JSON.stringify({ via: "node", url: request.url, body });
        response.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(text),
          "x-modelship-code": "ok",
        });
        response.end(text);
      });
    },
    {
      bodyLimitOf: () => bodyLimit,
      call(call: FrontDoorCall, answer: CallAnswer) {
        doorCalls.push(call);
        const wait = (JSON.parse(call.body || "{}") as { wait?: number }).wait ?? 0;
        const text = JSON.stringify({ via: "door", name: call.name ?? null, body: call.body });
        setTimeout(() => answer(200, "ok", wait % 2 ? Buffer.from(text) : text), wait);
      },
    },
  );
  const url = await listen(server, "127.0.0.1", 0);
  const entry = { server, clients: [] as RawClient[] };
  running.push(entry);
  const client = (allowHalfOpen = false) => {
    const made = new RawClient(Number(new URL(url).port), allowHalfOpen);
    entry.clients.push(made);
    return made;
  };
  return { server, url, doorCalls, nodeRequests, client };
}

const via = (answer: Answer | undefined) =>
  (JSON.parse(answer?.body ?? "{}") as { via: string }).via;

describe("the front door", () => {
  it("answers calls itself on a kept-alive connection, with the head node:http would send", async () => {
    const door = await frontDoor();
    const client = door.client();
    client.send(post("/models/iris/predict", '{"a":1}'));
    const [first] = await client.answers(1);
    client.send(post("/model", '{"wait":1}', "Authorization: Bearer k\r\n"));
    const [, second] = await client.answers(2);
    expect([via(first), via(second)]).toEqual(["door", "door"]);
    expect(door.nodeRequests).toEqual([]);
    expect(door.doorCalls.map((call) => [call.name, call.authorization])).toEqual([
      ["iris", undefined],
      [undefined, "Bearer k"],
    ]);
    expect(first?.headers).toMatchObject({
      "content-type": "application/json",
      "x-modelship-code": "ok",
      connection: "keep-alive",
      "keep-alive": "timeout=65",
    });
    expect(Date.parse(first?.headers.date ?? "")).toBeGreaterThan(Date.now() - 60_000);
  });

  it("waits for a body that comes after its head, in pieces", async () => {
    const door = await frontDoor();
    const client = door.client();
    const body = JSON.stringify({ text: "é".repeat(300) });
    const whole = post("/models/m/predict", body);
    const bytes = Buffer.from(whole);
    const headEnd = bytes.indexOf("\r\n\r\n") + 4;
    client.socket.write(bytes.subarray(0, headEnd));
    for (let at = headEnd; at < bytes.length; at += 101) {
      await pause(5);
      client.socket.write(bytes.subarray(at, Math.min(at + 101, bytes.length)));
    }
    const [answer] = await client.answers(1);
    expect(via(answer)).toBe("door");
    expect(door.doorCalls[0]?.body).toBe(body);
  });

  it("hands a connection whose head comes in pieces to node:http, which gets it whole", async () => {
    const door = await frontDoor();
    const client = door.client();
    const request = post("/models/m/predict", '{"x":1}');
    client.send(request.slice(0, 20));
    await pause(20);
    client.send(request.slice(20));
    const [answer] = await client.answers(1);
    expect(JSON.parse(answer?.body ?? "")).toEqual({
      via: "node",
      url: "/models/m/predict",
      body: '{"x":1}',
    });
    // It stays node:http's.
    client.send(post("/models/m/predict", '{"x":2}'));
    const [, next] = await client.answers(2);
    expect(via(next)).toBe("node");
    expect(door.doorCalls).toEqual([]);
  });

  it("answers pipelined requests in order, handing on at the first it does not take", async () => {
    const door = await frontDoor();
    const client = door.client();
    const chunked = `POST /models/m/predict HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n3\r\n{"c\r\n4\r\n":3}\r\n0\r\n\r\n`;
    client.send(
      post("/models/m/predict", '{"wait":40}') +
        post("/models/m/predict", '{"wait":1}') +
        chunked +
        `GET /healthz HTTP/1.1\r\n${HOST}\r\n`,
    );
    const answers = await client.answers(4);
    expect(answers.map(via)).toEqual(["door", "door", "node", "node"]);
    expect(JSON.parse(answers[0]?.body ?? "").body).toBe('{"wait":40}');
    expect(door.nodeRequests).toEqual(['POST /models/m/predict {"c":3}', "GET /healthz "]);
  });

  it("counts a pipelined call's time from when its bytes came, not from when its turn came", async () => {
    const door = await frontDoor();
    const client = door.client();
    client.send(post("/model", '{"wait":200}') + post("/model", '{"wait":2}'));
    await client.answers(2);
    const [first, second] = door.doorCalls.map((call) => call.arrived) as [number, number];
    // The second waited 200 ms for its turn; it came with the first.
    expect(second - first).toBeLessThan(100);
  });

  it("never reads a smuggled request: a head it does not take is node:http's to refuse", async () => {
    const door = await frontDoor();
    const client = door.client();
    // Content-Length says the body is the "GET ..." request; Transfer-Encoding says it is empty.
    const hidden = `POST /model HTTP/1.1\r\n${HOST}Content-Length: 5\r\n\r\n{"s":1}`;
    client.send(
      `POST /models/m/predict HTTP/1.1\r\n${HOST}Content-Length: ${4 + hidden.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`,
    );
    const [answer] = await client.answers(1);
    expect(answer?.status).toBe(400);
    await client.closed;
    expect(door.doorCalls).toEqual([]);
    expect(door.nodeRequests).toEqual([]);
  });

  it("leaves a body over the limit to node:http, and takes the next call itself on a new connection", async () => {
    const door = await frontDoor(10);
    const client = door.client();
    client.send(post("/models/m/predict", '{"x":"0123456789"}'));
    const [answer] = await client.answers(1);
    expect(via(answer)).toBe("node");
    const other = door.client();
    other.send(post("/models/m/predict", '{"x":1}'));
    expect(via((await other.answers(1))[0])).toBe("door");
  });

  it("closes after the answer when the caller says Connection: close, or has ended its side", async () => {
    const door = await frontDoor();
    // A caller that keeps its side open: the server closes the connection, not the caller.
    const closing = door.client(true);
    closing.send(post("/model", '{"wait":30}', "Connection: close\r\n"));
    const [answer] = await closing.answers(1);
    expect(answer?.headers.connection).toBe("close");
    await noConnections(door.server);

    const halfClosed = door.client();
    halfClosed.send(post("/model", '{"wait":30}'));
    halfClosed.socket.end();
    await halfClosed.closed;
    expect(via(answersIn(halfClosed.received)[0])).toBe("door");
  });

  it("answers 400 to a body its caller cut short, and makes no call of it", async () => {
    const door = await frontDoor();
    const client = door.client();
    client.send(post("/model", '{"x":1}').slice(0, -3));
    await pause(20);
    client.socket.end();
    await client.closed;
    expect(answersIn(client.received).map((answer) => answer.status)).toEqual([400]);
    expect(door.doorCalls).toEqual([]);
  });

  it("answers pipelined calls of 200 KB in all in order, then hands on the request after them", async () => {
    const door = await frontDoor(100_000);
    const client = door.client();
    // Odd waits answer with a buffer: the second answer, over 64 KB, goes out in two writes.
    const calls = [60, 1, 2, 3].map((wait, index) =>
      JSON.stringify({ wait, pad: String(index).repeat(index === 1 ? 70_000 : 40_000) }),
    );
    client.send(
      calls.map((body) => post("/models/m/predict", body)).join("") +
        `GET /healthz HTTP/1.1\r\n${HOST}\r\n`,
    );
    const answers = await client.answers(5);
    expect(answers.slice(0, 4).map((answer) => JSON.parse(answer.body).body)).toEqual(calls);
    expect(answers.map(via)).toEqual(["door", "door", "door", "door", "node"]);
    expect(door.nodeRequests).toEqual(["GET /healthz "]);
  });

  it("answers 408 to a body that does not come within the server's requestTimeout, and reads no more", async () => {
    const door = await frontDoor();
    door.server.requestTimeout = 200;
    const client = door.client(true);
    const request = post("/model", '{"x":1}');
    client.send(request.slice(0, -3));
    const [answer] = await client.answers(1);
    expect(answer?.status).toBe(408);
    // The rest of the body, late: it makes no call.
    client.send(request.slice(-3));
    await noConnections(door.server);
    await pause(20);
    expect(door.doorCalls).toEqual([]);
  });

  it("closes a connection idle for keepAliveTimeout, and its idle ones when the server closes", async () => {
    const door = await frontDoor();
    door.server.keepAliveTimeout = 150;
    const idle = door.client();
    idle.send(post("/model", "{}"));
    await idle.answers(1);
    await idle.closed;

    door.server.keepAliveTimeout = 65_000;
    const kept = door.client();
    kept.send(post("/model", "{}"));
    await kept.answers(1);
    const busy = door.client();
    busy.send(post("/model", '{"wait":200}'));
    await pause(50);
    door.server.closeIdleConnections();
    await kept.closed;
    // The call in flight is answered, then its connection is idle and closes with the server.
    const closed = closeServer(door.server);
    const [answer] = await busy.answers(1);
    expect(via(answer)).toBe("door");
    await closed;
  });
});

describe("the gateway behind its front door", () => {
  it("answers a call the same whichever door it came through", async () => {
    const replica = await startReplica({ functionName: "add" });
    stoppers.push(() => replica.stop());
    await replica.agent.whenReady();
    const accessKey = generateAccessKey();
    const gateway = await startGateway({
      models: [route("add", [replica], { accessKeySha256: hashKey(accessKey) })],
      apiKeys: [],
    });
    stoppers.push(() => gateway.stop());
    const nodeRequests: string[] = [];
    gateway.gateway.server.on("request", (request) => nodeRequests.push(request.url ?? ""));
    const port = Number(new URL(gateway.url).port);
    const body = JSON.stringify({ accessKey, request: { a: 2, b: 3 } });
    const ways = {
      "the front door": post("/model", body),
      "node:http, for a chunked body": `POST /model HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    };
    const answers: Record<string, unknown> = {};
    for (const [way, request] of Object.entries(ways)) {
      const client = new RawClient(port);
      client.send(request);
      const [answer] = await client.answers(1);
      client.socket.destroy();
      const parsed = JSON.parse(answer?.body ?? "") as { uuid?: string };
      expect(parsed.uuid).toMatch(/^[0-9a-f-]{36}$/);
      delete parsed.uuid;
      answers[way] = { status: answer?.status, code: answer?.headers["x-modelship-code"], parsed };
    }
    expect(answers["the front door"]).toEqual({
      status: 200,
      code: "ok",
      parsed: { success: true, response: 5, replicaId: replica.agent.options.replicaId },
    });
    expect(answers["node:http, for a chunked body"]).toEqual(answers["the front door"]);
    expect(nodeRequests).toEqual(["/model"]);
  });
});
