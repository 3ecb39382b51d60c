// InProcessChannel: a call to an agent in the gateway's own process ends as a call over a
// connection would: an answer, too large for the gateway, lost when the agent throws, late at
// the caller's deadline (and silent after the replica's), silent at once when the two deadlines
// are one, unreachable once closed. And a gateway with such a replica hands it the next queued
// call before it writes the answer of the one before.
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { type InProcessAnswer, InProcessChannel } from "../controller/gateway/in-process.ts";
import type { UpstreamOutcome } from "../controller/gateway/upstream.ts";
import { route, startGateway } from "./helpers/gateway.ts";

const OK: InProcessAnswer = { status: 200, code: "ok", body: '{"success":true,"response":8}' };

/** An agent that answers `answer` after `ms` (or throws it). */
function agent(answer: InProcessAnswer | Error, ms = 0) {
  return {
    predict: () =>
      new Promise<InProcessAnswer>((resolve, reject) =>
        setTimeout(() => (answer instanceof Error ? reject(answer) : resolve(answer)), ms),
      ),
  };
}

describe("InProcessChannel", () => {
  it.each([
    {
      what: "an answer in time",
      answer: OK,
      ms: 0,
      callerMs: 1000,
      replicaMs: 2000,
      kind: "answer",
    },
    {
      what: "an answer over the gateway's response limit",
      answer: { ...OK, body: "x".repeat(2000) },
      ms: 0,
      callerMs: 1000,
      replicaMs: 2000,
      kind: "too_large",
    },
    {
      what: "an agent that throws",
      answer: new Error("boom"),
      ms: 0,
      callerMs: 1000,
      replicaMs: 2000,
      kind: "lost",
    },
    {
      what: "no answer by the caller's deadline, the replica's being the same",
      answer: OK,
      ms: 500,
      callerMs: 20,
      replicaMs: 20,
      kind: "silent",
    },
    {
      what: "no answer by the caller's deadline",
      answer: OK,
      ms: 100,
      callerMs: 20,
      replicaMs: 2000,
      kind: "late",
    },
  ])("$what: $kind", async ({ answer, ms, callerMs, replicaMs, kind }) => {
    const channel = new InProcessChannel(agent(answer, ms), 1000);
    const result = await channel.send("{}", "uuid", callerMs, replicaMs);
    expect(result.kind).toBe(kind);
    if (result.kind === "answer") expect(result.body).toBe(OK.body);
    if (result.kind === "too_large") expect(result.bytes).toBe(2000);
    if (result.kind === "lost") expect(result.reason).toMatch(/boom/);
    if (result.kind === "late") {
      expect(channel.late).toBe(true);
      // The call goes on, and its end is the agent's answer.
      const rest: UpstreamOutcome = await result.rest;
      expect(rest.kind).toBe("answer");
      expect(channel.late).toBe(false);
    }
  });

  it("is silent after the replica's time when the agent never answers past the caller's deadline", async () => {
    const channel = new InProcessChannel(agent(OK, 1000), 1000);
    const result = await channel.send("{}", "uuid", 10, 40);
    expect(result.kind).toBe("late");
    if (result.kind === "late") expect((await result.rest).kind).toBe("silent");
  });

  it("reaches nobody once closed, and its probe says why", async () => {
    const channel = new InProcessChannel(agent(OK), 1000);
    expect(await channel.probe()).toBeUndefined();
    channel.close();
    expect((await channel.send("{}", "uuid", 1000, 2000)).kind).toBe("unreachable");
    expect(await channel.probe()).toMatch(/stopped/);
  });
});

describe("a gateway with a replica in its process", () => {
  it("sends the next queued call to the replica before it writes the answer of the one before", async () => {
    const events: string[] = [];
    let calls = 0;
    const replica = {
      predict: () => {
        const call = ++calls;
        events.push(`call ${call} sent`);
        return new Promise<InProcessAnswer>((resolve) =>
          setTimeout(() => resolve({ ...OK, body: `{"call":${call}}` }), 20),
        );
      },
    };
    const started = await startGateway(
      {
        models: [route("m", [], { replicas: [{ id: "m-1", url: "in-process:m-1" }] })],
        apiKeys: [],
      },
      { inProcessReplicas: (url) => (url === "in-process:m-1" ? replica : undefined) },
    );
    // Each answer written to a caller is logged where it leaves: the socket's write.
    started.gateway.server.prependListener("connection", (socket: Socket) => {
      const write = socket.write.bind(socket) as (chunk: unknown) => boolean;
      socket.write = ((chunk: unknown) => {
        const text = String(chunk);
        events.push(`answer ${/"call":(\d+)/.exec(text)?.[1]} written`);
        return write(chunk);
      }) as Socket["write"];
    });
    try {
      // Two calls at once: the second waits in the queue for the one replica.
      const answers = await Promise.all(
        [1, 2].map(() =>
          fetch(`${started.url}/models/m/predict`, { method: "POST", body: "{}" }).then((answer) =>
            answer.text(),
          ),
        ),
      );
      expect(answers.sort()).toEqual(['{"call":1}', '{"call":2}']);
      expect(events).toEqual([
        "call 1 sent",
        "call 2 sent",
        "answer 1 written",
        "answer 2 written",
      ]);
    } finally {
      await started.stop();
    }
  });
});
