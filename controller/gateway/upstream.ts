// Sends one call to a replica agent over its keep-alive connection, and says what happened in the
// terms the gateway needs: an answer (whose body is passed to the caller untouched), a replica
// that could not be reached (safe to try another: the call never ran), or a call lost on the way.
import { request as httpRequest } from "node:http";
import { CODE_HEADER, UUID_HEADER } from "../api/errors.ts";
import type { ReplicaSlot } from "./dispatcher.ts";

export type UpstreamResult =
  | { kind: "answer"; status: number; code: string; body: Buffer }
  | { kind: "unreachable"; reason: string }
  | { kind: "lost"; reason: string }
  | { kind: "timeout" };

/** Error codes that mean the connection never carried the call. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"]);

export function forward(
  slot: ReplicaSlot,
  body: string,
  uuid: string,
  timeoutMs: number,
): Promise<UpstreamResult> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (result: UpstreamResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const outgoing = httpRequest(
      {
        agent: slot.agent,
        host: slot.host,
        port: slot.port,
        method: "POST",
        path: "/predict",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          [UUID_HEADER]: uuid,
        },
      },
      (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
        incoming.on("end", () => {
          const code = incoming.headers[CODE_HEADER];
          settle({
            kind: "answer",
            status: incoming.statusCode ?? 502,
            code: typeof code === "string" ? code : "unknown",
            body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
          });
        });
        incoming.on("error", (error) => settle({ kind: "lost", reason: error.message }));
      },
    );
    // TCP_NODELAY: a small call must not wait for Nagle's algorithm.
    outgoing.setNoDelay(true);
    outgoing.on("error", (error: NodeJS.ErrnoException) => {
      // A reset on a reused keep-alive socket before any answer is the agent closing an idle
      // connection as we wrote to it: the call never reached it. A reset on a fresh connection
      // means the agent died with the call.
      const neverArrived =
        NOT_CONNECTED.has(error.code ?? "") ||
        (outgoing.reusedSocket && error.code === "ECONNRESET");
      settle({ kind: neverArrived ? "unreachable" : "lost", reason: error.message });
    });
    // The agent enforces the model's timeout itself; this one only catches an agent that hangs.
    const timer = setTimeout(() => {
      settle({ kind: "timeout" });
      outgoing.destroy();
    }, timeoutMs);
    outgoing.end(body);
  });
}
