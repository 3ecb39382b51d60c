// JSON passes through exactly: numbers that JavaScript's JSON.parse would change (integers
// beyond 2^53, 1e400) reach the function as the caller wrote them, and the function's answer
// reaches the caller byte for byte — through the gateway's two routes, the agent and the worker.
import { afterEach, describe, expect, it } from "vitest";
import { jsonTopLevelMembers } from "../controller/api/http.ts";
import { generateAccessKey, hashKey } from "../controller/gateway/keys.ts";
import { parseWorkerLine, WorkerProcess } from "../controller/replica/worker-process.ts";
import { route, startGateway } from "./helpers/gateway.ts";
import { MODELS_DIR, startReplica } from "./helpers/replica.ts";

const started: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((running) => running.stop()));
});

/** What JSON.parse would round (2^53 + 1, 2^64 + 1) or make Infinity (1e400). */
const EXACT = '{"a":9007199254740993,"b":18446744073709551617,"c":1e400,"d":[-1E-400,0.1]}';

async function post(url: string, body: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { method: "POST", body });
  return { status: response.status, text: await response.text() };
}

/** The `response` member of an agent's answer, as text. */
function responseText(answer: string): string {
  const span = jsonTopLevelMembers(answer)?.get("response");
  if (!span) throw new Error(`no response in ${answer}`);
  return answer.slice(span.start, span.end);
}

describe("numbers JavaScript cannot hold, through the gateway to a Python identity function", () => {
  async function identityGateway(inputSchema?: Record<string, unknown>) {
    const replica = await startReplica({ functionName: "identity", file: "identity.py" });
    started.push(replica);
    await replica.agent.whenReady();
    const accessKey = generateAccessKey();
    const gateway = await startGateway({
      models: [
        route("identity", [replica], {
          accessKeySha256: hashKey(accessKey),
          ...(inputSchema ? { inputSchema } : {}),
        }),
      ],
      apiKeys: [],
    });
    started.push(gateway);
    return { url: gateway.url, replicaUrl: replica.url, accessKey };
  }

  it("POST /models/{name}/predict gives the same digits back", async () => {
    const { url } = await identityGateway();
    const answer = await post(`${url}/models/identity/predict`, EXACT);
    expect(answer.status).toBe(200);
    expect(responseText(answer.text)).toBe(EXACT);
  });

  it("POST /model forwards its request member as written, and checks inputSchema on its value", async () => {
    const inputSchema = { type: "object", required: ["a", "b", "c"] };
    const { url, accessKey } = await identityGateway(inputSchema);
    const body = `{"accessKey": ${JSON.stringify(accessKey)}, "request": ${EXACT}, "extra": [1e999]}`;
    const answer = await post(`${url}/model`, body);
    expect(answer.status).toBe(200);
    expect(responseText(answer.text)).toBe(EXACT);

    const invalid = await post(
      `${url}/model`,
      `{"accessKey": "${accessKey}", "request": {"a": 1}}`,
    );
    expect(invalid.status).toBe(400);
    expect(invalid.text).toContain("must have required property 'b'");
  });

  it("takes a pretty-printed request, with its line breaks, as the same value", async () => {
    const { url, replicaUrl } = await identityGateway();
    const pretty = '{\r\n  "a": 9007199254740993,\n  "s": "line\\nbreak"\n}';
    const answer = await post(`${url}/models/identity/predict`, pretty);
    expect(responseText(answer.text)).toBe('{"a":9007199254740993,"s":"line\\nbreak"}');
    // The agent on its own passes it through the same way.
    const direct = await post(`${replicaUrl}/predict`, EXACT);
    expect(responseText(direct.text)).toBe(EXACT);
  });
});

describe("the Python worker's JSON", () => {
  async function worker(functionName: string) {
    const python = new WorkerProcess({
      runtime: "python3",
      file: "identity.py",
      functionName,
      cwd: MODELS_DIR,
    });
    started.push(python);
    expect(await python.started).toMatchObject({ type: "ready" });
    return python;
  }

  it.each([
    ["2^53 + 1", "9007199254740993"],
    ["2^64 + 1", "18446744073709551617"],
    ["-(2^70)", "-1180591620717411303424"],
    ["1e400 (a float would be inf)", "1e400"],
    ["-1E+400", "-1E+400"],
    ["1e-400 (a float would be 0.0)", "1e-400"],
    ["a float", "0.1"],
    ["zero", "0.0"],
    ["in a list", "[1e400,9007199254740993,2.5]"],
  ])("keeps %s exactly: %s", async (_, text) => {
    const identity = await worker("identity");
    expect(await identity.callJson(text)).toEqual({ id: 1, kind: "response", responseJson: text });
  });

  it("refuses NaN and Infinity, which are not JSON, with an error answer", async () => {
    const identity = await worker("identity");
    expect(await identity.callJson("NaN")).toMatchObject({
      kind: "error",
      error: { type: "ValueError", message: "NaN is not JSON" },
    });
    // The worker goes on.
    expect(await identity.callJson("1")).toMatchObject({ kind: "response", responseJson: "1" });
  });
});

describe("the R worker's JSON (jsonlite)", () => {
  it("gets a 64-bit integer beyond 2^53 as its exact digits in a string; larger ones and 1e400 as doubles", async () => {
    const r = new WorkerProcess({
      runtime: "r",
      file: "identity.R",
      functionName: "identity",
      cwd: MODELS_DIR,
    });
    started.push(r);
    expect(await r.started).toMatchObject({ type: "ready" });
    const answer = await r.callJson(
      '{"a":9007199254740993,"b":18446744073709551617,"c":1e400,"d":9007199254740992,"e":0.1}',
    );
    // docs/workers.md: a character string of the digits (not rounded); beyond 64 bits a double;
    // Inf (1e400) is written as null; doubles are written with 15 significant digits.
    expect(answer).toEqual({
      id: 1,
      kind: "response",
      responseJson:
        '{"a":"9007199254740993","b":1.84467440737096e+19,"c":null,"d":9.00719925474099e+15,"e":0.1}',
    });
  });
});

describe("jsonTopLevelMembers: the members of a JSON object's text, by where they are", () => {
  it.each<[string, string, Record<string, string> | undefined]>([
    [
      "an object",
      '{"a":1,"b":[1,{"c":2}],"d":{"e":"x"}}',
      { a: "1", b: '[1,{"c":2}]', d: '{"e":"x"}' },
    ],
    [
      "spaces and big numbers",
      ' { "request" : {"x": 9007199254740993} , "k":"v" } ',
      {
        request: '{"x": 9007199254740993}',
        k: '"v"',
      },
    ],
    ["an empty object", "{}", {}],
    ["nested empty containers", '{"a":{},"b":[[]]}', { a: "{}", b: "[[]]" }],
    ["a repeated name: the last wins", '{"a":1,"a":2}', { a: "2" }],
    ["escapes in names and strings", '{"\\"k\\u00e9":"\\"}\\\\"}', { '"ké': '"\\"}\\\\"' }],
    ["a number's every part", '{"n":-0.5e+10}', { n: "-0.5e+10" }],
    ["an array", "[1,2]", undefined],
    ["a scalar", "1e400", undefined],
  ])("%s: %s", (_, text, expected) => {
    const members = jsonTopLevelMembers(text);
    const found =
      members &&
      Object.fromEntries(
        [...members].map(([name, span]) => [name, text.slice(span.start, span.end)]),
      );
    expect(found).toEqual(expected);
  });

  it.each([
    ["", "offset 0: a value expected, found the end"],
    ['{"a":1,}', 'offset 7: a member name expected, found "}"'],
    ['{"a" 1}', 'offset 5: ":" expected'],
    ["[1 2]", 'offset 3: "," or "]" expected'],
    ["01", "offset 1: more after the value"],
    ["1.", "offset 2: a digit expected"],
    ["-", "offset 1: a digit expected"],
    ['{"a":tru}', "offset 5: a value expected"],
    ['"\u0001"', "offset 1: control character"],
    ['"abc', "offset 4: unterminated string"],
    ['"\\x"', "offset 1: invalid escape"],
    ['"\\u12"', "offset 1: invalid escape"],
    ["NaN", "offset 0: a value expected"],
    ['{"a":1}}', "offset 7: more after the value"],
  ])("refuses %j: %s", (text, message) => {
    expect(() => jsonTopLevelMembers(text)).toThrow(`not JSON at ${message}`);
  });

  it("agrees with JSON.parse on which texts are JSON, and on the members' values", () => {
    const pieces = [
      "{",
      "}",
      "[",
      "]",
      '"a"',
      '"b"',
      ":",
      ",",
      "1",
      "-",
      "0",
      ".",
      "e",
      "true",
      " ",
    ];
    let state = 7;
    const random = () => {
      // A small deterministic generator: the same texts on every run.
      state = (state * 1103515245 + 12345) % 2147483648;
      return state / 2147483648;
    };
    for (let attempt = 0; attempt < 20_000; attempt++) {
      let text = "";
      const length = 1 + Math.floor(random() * 10);
      for (let index = 0; index < length; index++) {
        text += pieces[Math.floor(random() * pieces.length)];
      }
      let parsed: unknown;
      let valid = true;
      try {
        parsed = JSON.parse(text);
      } catch {
        valid = false;
      }
      if (!valid) {
        expect(() => jsonTopLevelMembers(text), text).toThrow(SyntaxError);
        continue;
      }
      for (const [name, span] of jsonTopLevelMembers(text) ?? []) {
        const value = JSON.parse(text.slice(span.start, span.end));
        expect(value, text).toEqual((parsed as Record<string, unknown>)[name]);
      }
    }
  });

  it("nests to any depth without using the call stack", () => {
    const deep = `{"a":${"[".repeat(200_000)}${"]".repeat(200_000)}}`;
    expect(jsonTopLevelMembers(deep)?.get("a")).toEqual({ start: 5, end: deep.length - 1 });
  });
});

describe("parseWorkerLine: one line of a worker's answer pipe", () => {
  it.each<[string, unknown]>([
    [
      '{"id":3,"ok":true,"response":9007199254740993}',
      { type: "answer", answer: { id: 3, kind: "response", responseJson: "9007199254740993" } },
    ],
    [
      '{"id":1,"ok":false,"error":{"type":"ValueError","message":"m"}}',
      {
        type: "answer",
        answer: { id: 1, kind: "error", error: { type: "ValueError", message: "m" } },
      },
    ],
    [
      '{"type":"ready","protocol":1,"runtime":"python3"}',
      { type: "start", start: { type: "ready", protocol: 1, runtime: "python3" } },
    ],
    [
      "not json",
      { type: "invalid", reason: 'not JSON at offset 0: a value expected, found "not json"' },
    ],
    ["[1]", { type: "invalid", reason: "not a JSON object" }],
    ['{"ok":true,"response":1}', { type: "invalid", reason: 'no numeric "id"' }],
    [
      '{"id":1,"ok":true}',
      {
        type: "invalid",
        reason: 'neither "ok": true with "response" nor "ok": false with "error"',
      },
    ],
  ])("%s", (line, message) => {
    expect(parseWorkerLine(line)).toEqual(message);
  });
});
