// The replica agent's HTTP side (docs/replica.md): POST /predict, GET /readyz, /healthz, /stats,
// /logs and /metrics, on one port.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { UUID_HEADER } from "../api/errors.ts";
import {
  BodyTooLarge,
  DEFAULT_BODY_LIMIT_BYTES,
  readBody,
  SERVER_OPTIONS,
  sendError,
  sendJson,
} from "../api/http.ts";
import type { ReplicaAgent } from "./agent.ts";
import type { LogLine } from "./log-ring.ts";

export interface ReplicaServerOptions {
  bodyLimitBytes?: number;
  /** Adds Node's process metrics (CPU, memory, event loop) to /metrics; once per process. */
  processMetrics?: boolean;
}

/** Seconds a call may take, for the latency histogram: from 1 ms to a minute. */
const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

function replicaMetrics(agent: ReplicaAgent, options: ReplicaServerOptions) {
  const register = new Registry();
  register.setDefaultLabels({ replica: agent.options.replicaId });
  if (options.processMetrics) collectDefaultMetrics({ register });
  const answers = new Counter({
    name: "modelship_replica_requests_total",
    help: "Predict calls answered by this replica, by code (ok or an error code).",
    labelNames: ["code"],
    registers: [register],
  });
  const duration = new Histogram({
    name: "modelship_replica_call_duration_seconds",
    help: "Time the worker took per call it was handed.",
    buckets: DURATION_BUCKETS,
    registers: [register],
  });
  new Counter({
    name: "modelship_replica_restarts_total",
    help: "Workers started after the first one (crashes and timeouts).",
    registers: [register],
    collect() {
      this.reset();
      this.inc(agent.stats.restarts);
    },
  });
  new Gauge({
    name: "modelship_replica_ready",
    help: "1 when the worker has loaded the function and takes calls.",
    registers: [register],
    collect() {
      this.set(agent.ready ? 1 : 0);
    },
  });
  return { register, answers, duration };
}

export function createReplicaServer(
  agent: ReplicaAgent,
  options: ReplicaServerOptions = {},
): Server {
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const metrics = replicaMetrics(agent, options);

  async function predict(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let text: string;
    try {
      text = await readBody(request, bodyLimit);
    } catch (error) {
      if (error instanceof BodyTooLarge) {
        agent.stats.received += 1;
        agent.stats.error += 1;
        metrics.answers.inc({ code: "request.too_large" });
        response.setHeader("connection", "close");
        sendError(response, "request.too_large", error.message);
      }
      return;
    }
    const uuid = request.headers[UUID_HEADER];
    const answer = await agent.predict(text, typeof uuid === "string" ? uuid : undefined);
    metrics.answers.inc({ code: answer.code });
    if (answer.workerSeconds !== undefined) metrics.duration.observe(answer.workerSeconds);
    sendJson(response, answer.status, answer.body, answer.code);
  }

  function logs(url: URL, response: ServerResponse): void {
    const after = Number(url.searchParams.get("after") ?? 0) || 0;
    const limit = Number(url.searchParams.get("limit") ?? agent.log.capacity) || agent.log.capacity;
    // Newline-delimited JSON, one line per log line, oldest first; `follow=1` keeps the
    // answer open and adds lines as the worker prints them.
    response.writeHead(200, { "content-type": "application/x-ndjson" });
    const write = (line: LogLine) => response.write(`${JSON.stringify(line)}\n`);
    for (const line of agent.log.since(after, limit)) write(line);
    if (url.searchParams.get("follow") !== "1") {
      response.end();
      return;
    }
    const stop = agent.log.follow(write);
    response.on("close", stop);
  }

  function route(request: IncomingMessage, response: ServerResponse): void {
    let url: URL;
    try {
      url = new URL(request.url ?? "/", "http://replica");
    } catch {
      sendJson(response, 400, JSON.stringify({ error: `not a path: ${request.url}` }));
      return;
    }
    const key = `${request.method} ${url.pathname}`;
    switch (key) {
      case "POST /predict":
        predict(request, response).catch((error: Error) => {
          // A bug of ours, still answered with a code of the registry: a gateway takes an
          // answer without one for a stranger's and would try the call on another replica.
          if (!response.headersSent) {
            sendError(
              response,
              "model.unexpected_shutdown",
              `the replica failed to handle the call: ${error.message}`,
            );
          }
        });
        return;
      case "GET /readyz":
        sendJson(
          response,
          agent.ready ? 200 : 503,
          JSON.stringify({ ready: agent.ready, state: agent.state, reason: agent.notReadyReason }),
        );
        return;
      case "GET /healthz":
        sendJson(response, 200, '{"ok":true}');
        return;
      case "GET /stats":
        sendJson(
          response,
          200,
          JSON.stringify({
            replicaId: agent.options.replicaId,
            state: agent.state,
            ready: agent.ready,
            reason: agent.notReadyReason,
            workerPid: agent.workerPid,
            ...agent.stats,
          }),
        );
        return;
      case "GET /logs":
        logs(url, response);
        return;
      case "GET /metrics":
        metrics.register.metrics().then((text) => {
          response.writeHead(200, { "content-type": metrics.register.contentType });
          response.end(text);
        });
        return;
      default:
        sendJson(
          response,
          404,
          JSON.stringify({
            error: `no route for ${key}; the agent serves POST /predict, GET /readyz, /healthz, /stats, /logs and /metrics`,
          }),
        );
    }
  }

  const server = createServer(SERVER_OPTIONS, route);
  return server;
}
