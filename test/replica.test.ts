// The replica agent with real Python workers and real HTTP on 127.0.0.1.
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { restartDelayMs } from "../controller/replica/agent.ts";
import { LogRing } from "../controller/replica/log-ring.ts";
import { runCli } from "./helpers/cli.ts";
import {
  eventually,
  getJson,
  postJson,
  type RunningReplica,
  startReplica,
} from "./helpers/replica.ts";

const running: RunningReplica[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((replica) => replica.stop()));
});

async function replica(...args: Parameters<typeof startReplica>): Promise<RunningReplica> {
  const started = await startReplica(...args);
  running.push(started);
  return started;
}

async function readyReplica(...args: Parameters<typeof startReplica>): Promise<RunningReplica> {
  const started = await replica(...args);
  await started.agent.whenReady();
  return started;
}

describe("the replica agent", () => {
  it("is not ready until the function has loaded, then answers with its replica id", async () => {
    const { agent, url } = await replica({ functionName: "predict", file: "slow_load.py" });
    const before = await getJson(`${url}/readyz`);
    expect(before.status).toBe(503);
    expect(before.body).toMatchObject({ ready: false, state: "starting" });
    const early = await postJson(`${url}/predict`, {});
    expect([early.status, early.body.error]).toEqual([503, "replica.not_ready"]);

    await agent.whenReady();
    expect((await getJson(`${url}/readyz`)).status).toBe(200);
    const answer = await postJson(`${url}/predict`, {});
    expect(answer).toEqual({
      status: 200,
      code: "ok",
      body: { success: true, response: "loaded", replicaId: agent.options.replicaId },
    });
  });

  it("turns away a second request while one is in flight, at once", async () => {
    const { agent, url } = await readyReplica({ functionName: "sleeps" });
    let slowAnswered = false;
    const slow = postJson(`${url}/predict`, { seconds: 1 }).then((answer) => {
      slowAnswered = true;
      return answer;
    });
    await eventually(() => agent.log.since().some((line) => line.line === "sleeping 1 s"));
    const second = await postJson(`${url}/predict`, { seconds: 0 });
    expect([second.status, second.code, second.body.error]).toEqual([
      503,
      "replica.busy",
      "replica.busy",
    ]);
    // "At once": the answer came while the first call was still running.
    expect(slowAnswered).toBe(false);
    expect((await slow).body.response).toBe("awake");
    const stats = (await getJson(`${url}/stats`)).body;
    expect(stats).toMatchObject({ received: 2, processed: 1, success: 1, busy: 1 });
  });

  it("answers an exception as model.error with its type and keeps the worker", async () => {
    const { agent, url } = await readyReplica({ functionName: "fails" });
    const pid = agent.workerPid;
    const answer = await postJson(`${url}/predict`, { a: 1 });
    expect(answer.status).toBe(500);
    expect(answer.body).toMatchObject({
      success: false,
      error: "model.error",
      exception: { type: "ValueError" },
    });
    expect(answer.body.message).toContain("ValueError: bad input");
    expect(answer.body.exception.traceback).toBeUndefined();
    expect(agent.workerPid).toBe(pid);
    expect(agent.stats).toMatchObject({ failure: 1, restarts: 0 });
  });

  it.each([
    ["python3", "behaviours.py", "fails", /^Traceback|ValueError: bad input/],
    ["r", "behaviours.R", "fails", /^Error \(simpleError\): bad input/],
  ])(
    "writes a %s function's exception to the replica's log, the caller getting none of it",
    async (runtime, file, functionName, logged) => {
      const { url } = await readyReplica({
        runtime: runtime as "python3" | "r",
        file,
        functionName,
      });
      const answer = await postJson(`${url}/predict`, { a: 1 });
      expect(answer.status).toBe(500);
      expect(answer.body.exception.traceback).toBeUndefined();
      await eventually(async () => {
        const logs = await fetch(`${url}/logs`).then((response) => response.text());
        return logs
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line) as { stream: string; line: string })
          .some((line) => line.stream === "stderr" && logged.test(line.line));
      }, 10_000);
    },
  );

  it("sends the traceback only when asked to", async () => {
    const { url } = await readyReplica({ functionName: "fails", tracebacks: true });
    const answer = await postJson(`${url}/predict`, { a: 1 });
    expect(answer.body.exception.traceback).toContain("in fails");
  });

  it("kills a call that runs past timeoutSeconds, answers 504, and serves the next from a fresh worker", async () => {
    const { agent, url } = await readyReplica({ functionName: "in_flight", timeoutSeconds: 0.5 });
    const firstPid = agent.workerPid;
    const late = await postJson(`${url}/predict`, { seconds: 5 });
    expect([late.status, late.code]).toEqual([504, "model.timeout"]);
    expect(late.body.message).toContain("timeoutSeconds (0.5 s)");

    await agent.whenReady();
    const next = await postJson(`${url}/predict`, { seconds: 0 });
    expect(next.status).toBe(200);
    expect(next.body.response.pid).not.toBe(firstPid);
    expect(agent.stats).toMatchObject({ restarts: 1, error: 1, success: 1 });
  });

  it("fails a call whose worker exits as model.unexpected_shutdown, restarts it, and keeps the log", async () => {
    const { agent, url } = await readyReplica({ functionName: "prints" });
    expect((await postJson(`${url}/predict`, {})).status).toBe(200);
    await eventually(() => agent.log.since().some((line) => line.line === "to stderr"));

    // The same file's `exits` calls os._exit(7) mid-request.
    const crashing = await readyReplica({ functionName: "exits" });
    crashing.agent.log.append("stdout", 1, "a line from before the crash");
    const answer = await postJson(`${crashing.url}/predict`, {});
    expect([answer.status, answer.code]).toEqual([502, "model.unexpected_shutdown"]);
    expect(answer.body.message).toContain("exited with code 7");
    await crashing.agent.whenReady();
    expect(crashing.agent.stats.restarts).toBe(1);

    const logs = await fetch(`${crashing.url}/logs`).then((response) => response.text());
    const lines = logs
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines.map((line) => [line.worker, line.stream, line.line])).toEqual(
      expect.arrayContaining([
        [1, "stdout", "a line from before the crash"],
        [1, "agent", "worker 1 exited with code 7"],
        [2, "agent", expect.stringMatching(/^worker 2 is ready/)],
      ]),
    );
    // Stream tags survive for the first replica's prints too.
    expect(agent.log.since().find((line) => line.line === "to stderr")?.stream).toBe("stderr");
  });

  it("stays not ready with the load error as the reason, and does not restart", async () => {
    const { agent, url } = await replica({ functionName: "predcit" });
    await expect(agent.whenReady()).rejects.toThrow(/predcit/);
    const ready = await getJson(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body.reason).toContain("functions found: add");
    const answer = await postJson(`${url}/predict`, {});
    expect([answer.status, answer.body.error]).toEqual([503, "replica.not_ready"]);
    expect(answer.body.message).toContain("predcit");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(agent.stats.restarts).toBe(0);
  });

  it("reports a worker that cannot be started as not ready, and keeps running", async () => {
    const { agent, url } = await replica({ functionName: "add", directory: "/nonexistent/model" });
    await eventually(() => (agent.notReadyReason ?? "").includes("ENOENT"));
    const ready = await getJson(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body.reason).toContain("spawn");
  });

  it("answers a request line that is not a path with 400, and keeps running", async () => {
    const { url } = await readyReplica({ functionName: "add" });
    const { port } = new URL(url);
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), "127.0.0.1", () => {
        socket.end("GET http://[x/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      });
      let text = "";
      socket.on("data", (chunk) => {
        text += chunk;
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect((await postJson(`${url}/predict`, { a: 1, b: 1 })).body.response).toBe(2);
  });

  it("stays stopped when stopped while its worker is still loading", async () => {
    const { agent } = await replica({ functionName: "predict", file: "slow_load.py" });
    const pid = agent.workerPid as number;
    await agent.stop();
    // The worker finished loading after stop(); it must not be taken back, nor restarted.
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(agent.state).toBe("stopped");
    expect(agent.stats.restarts).toBe(0);
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it("refuses a body over the limit with 413 and a body that is not JSON with 400", async () => {
    const { url } = await readyReplica({ functionName: "add" }, { bodyLimitBytes: 1024 });
    const large = await postJson(`${url}/predict`, { a: "x".repeat(2000), b: "" });
    expect([large.status, large.code]).toEqual([413, "request.too_large"]);
    const broken = await postJson(`${url}/predict`, '{"a": 1,');
    expect([broken.status, broken.code]).toEqual([400, "request.invalid_json"]);
    expect((await postJson(`${url}/predict`, { a: 1, b: 2 })).body.response).toBe(3);
  });

  it("streams new log lines to a follower and counts answers in /metrics", async () => {
    const { url } = await readyReplica({ functionName: "prints" });
    const follower = await fetch(`${url}/logs?follow=1`);
    const reader = (follower.body as ReadableStream<Uint8Array>).getReader();
    await postJson(`${url}/predict`, {});
    let text = "";
    while (!text.includes("to stderr")) {
      const { value } = await reader.read();
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    expect(text).toContain('"stream":"stdout","worker":1,"line":"to stdout"');

    const metrics = await fetch(`${url}/metrics`).then((response) => response.text());
    expect(metrics).toMatch(/modelship_replica_requests_total\{code="ok",replica="[^"]+"\} 1/);
    expect(metrics).toMatch(/modelship_replica_ready\{replica="[^"]+"\} 1/);
  });

  it("is the `modelship replica` command, which checks its flags", () => {
    const missing = runCli(["replica", "--file", "x.py", "--runtime", "python3", "--port", "0"]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain("--function is required");
    const runtime = runCli([
      "replica",
      "--file",
      "x.py",
      "--function",
      "f",
      "--runtime",
      "julia",
      "--port",
      "0",
    ]);
    expect(runtime.stderr).toContain('--runtime must be python3 or r, not "julia"');
  });
});

describe("a memory limit", () => {
  it("holds the worker to it: a larger allocation fails in the function, and the worker serves on", async () => {
    const limited = await readyReplica({
      functionName: "allocates",
      memoryLimitBytes: 256 * 1024 * 1024,
    });
    const small = await postJson(`${limited.url}/predict`, { megabytes: 16 });
    expect(small.body.response).toBe(16);
    const large = await postJson(`${limited.url}/predict`, { megabytes: 512 });
    expect([large.status, large.code]).toEqual([500, "model.error"]);
    expect(large.body.exception.type).toBe("MemoryError");
    expect((await postJson(`${limited.url}/predict`, { megabytes: 16 })).body.response).toBe(16);
    // Without a limit, the same allocation succeeds: the limit is what refused it.
    const unlimited = await readyReplica({ functionName: "allocates" });
    expect((await postJson(`${unlimited.url}/predict`, { megabytes: 512 })).body.response).toBe(
      512,
    );
  });
});

describe("restartDelayMs", () => {
  it.each([
    [0, 100, 10_000, 100],
    [1, 100, 10_000, 200],
    [3, 100, 10_000, 800],
    [7, 100, 10_000, 10_000],
    [40, 100, 10_000, 10_000],
  ])(
    "after %i crashes in a row (base %i, ceiling %i) waits %i ms",
    (crashes, base, ceiling, expected) => {
      expect(restartDelayMs(crashes, base, ceiling)).toBe(expected);
    },
  );
});

describe("LogRing", () => {
  it.each([
    { capacity: 3, lines: 5, after: 0, limit: 10, seqs: [3, 4, 5] },
    { capacity: 10, lines: 5, after: 2, limit: 10, seqs: [3, 4, 5] },
    { capacity: 10, lines: 5, after: 0, limit: 2, seqs: [4, 5] },
    { capacity: 10, lines: 5, after: 5, limit: 10, seqs: [] },
    { capacity: 3, lines: 5, after: 1, limit: 10, seqs: [3, 4, 5] },
  ])("keeps the newest $capacity of $lines lines; after $after, limit $limit → $seqs", (row) => {
    const ring = new LogRing(row.capacity, () => new Date(0));
    for (let index = 1; index <= row.lines; index++) ring.append("stdout", 1, `line ${index}`);
    expect(ring.since(row.after, row.limit).map((line) => line.seq)).toEqual(row.seqs);
  });

  it("tells followers about each new line until they stop", () => {
    const ring = new LogRing(10);
    const seen: string[] = [];
    const stop = ring.follow((line) => seen.push(line.line));
    ring.append("stderr", 2, "one");
    stop();
    ring.append("stderr", 2, "two");
    expect(seen).toEqual(["one"]);
  });
});
