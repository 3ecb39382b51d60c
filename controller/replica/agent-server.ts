// The replica agent's HTTP side (docs/replica.md): POST /predict, GET /readyz, /healthz, /stats,
// /logs and /metrics, on one port or one Unix socket. With a gateway secret, only the gateway
// (which sends it) may call the model, or read its output over TCP.
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import {
  GATEWAY_SECRET_HEADER,
  METRICS_HEADER,
  SERVES_HEADER,
  UUID_HEADER,
} from "../api/errors.ts";
import {
  BodyTooLarge,
  DEFAULT_BODY_LIMIT_BYTES,
  readBody,
  SERVER_OPTIONS,
  sendError,
  sendJson,
} from "../api/http.ts";
import type { ReplicaAgent, ReplicaAnswer, ReplicaServes } from "./agent.ts";
import type { LogLine } from "./log-ring.ts";

export interface ReplicaServerOptions {
  bodyLimitBytes?: number;
  /** Adds Node's process metrics (CPU, memory, event loop) to /metrics; once per process. */
  processMetrics?: boolean;
  /**
   * The secret the gateway sends in x-modelship-gateway-secret. When set, POST /predict needs
   * it, and so do GET /stats and /logs over TCP (they carry the model's output; on a Unix
   * socket the file's permissions decide); anything else stays open for probes. A request that
   * carries another secret is refused everywhere, so that a gateway's probe learns it is wrong.
   * Refusals are `403 replica.forbidden`.
   */
  gatewaySecret?: string;
}

type SecretCheck = "valid" | "absent" | "wrong";

/**
 * Compares the presented secret with the expected one in constant time: both are hashed first,
 * so that neither their contents nor their lengths show in how long the comparison takes.
 */
function checkSecret(presented: string | string[] | undefined, expected: Buffer): SecretCheck {
  if (presented === undefined) return "absent";
  if (Array.isArray(presented)) return "wrong";
  return timingSafeEqual(sha256(presented), expected) ? "valid" : "wrong";
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** How much of the log one write of GET /logs carries. */
const LOGS_BATCH_CHARS = 256 * 1024;
/** How far a follower of /logs may fall behind before it is cut off. */
const FOLLOW_BACKLOG_BYTES = 1024 * 1024;

/** Routes that show the model's output, closed to callers without the secret over TCP. */
const OUTPUT_ROUTES = new Set(["GET /stats", "GET /logs"]);

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

/** What a replica answers to a call, with its headers' values: the HTTP side's and in process. */
export interface EndpointAnswer {
  status: number;
  code: string;
  body: string;
  /** The metrics the prediction tracked, and what the replica serves, when it tracked any. */
  metricsJson?: string;
  serves?: string;
}

/**
 * A replica's HTTP server, and its predict for a caller in the same process (the gateway under
 * `modelship up`): both count the call in the replica's metrics.
 */
export interface ReplicaEndpoint {
  server: Server;
  /** POST /predict for a request the caller has checked is JSON. */
  predict(requestText: string, uuid: string | undefined): Promise<EndpointAnswer>;
}

export function createReplicaServer(
  agent: ReplicaAgent,
  options: ReplicaServerOptions = {},
): Server {
  return createReplicaEndpoint(agent, options).server;
}

export function createReplicaEndpoint(
  agent: ReplicaAgent,
  options: ReplicaServerOptions = {},
): ReplicaEndpoint {
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const metrics = replicaMetrics(agent, options);
  const secret = options.gatewaySecret === undefined ? undefined : sha256(options.gatewaySecret);
  const serves = agent.options.serves && servesHeader(agent.options.serves);

  /** Whether the request may go on; answers 403 replica.forbidden when it may not. */
  function admitted(request: IncomingMessage, response: ServerResponse, key: string): boolean {
    if (secret === undefined) return true;
    const check = checkSecret(request.headers[GATEWAY_SECRET_HEADER], secret);
    // A Unix-socket server's address is its path; there the socket's mode is the gate.
    const overTcp = typeof server.address() !== "string";
    const needed = key === "POST /predict" || (OUTPUT_ROUTES.has(key) && overTcp);
    if (check === "valid" || (check === "absent" && !needed)) return true;
    if (key === "POST /predict") {
      agent.stats.received += 1;
      agent.stats.error += 1;
      metrics.answers.inc({ code: "replica.forbidden" });
    }
    sendError(
      response,
      "replica.forbidden",
      `this replica answers ${key} only to its gateway: the ${GATEWAY_SECRET_HEADER} header is ${check === "absent" ? "missing" : "wrong"}`,
    );
    return false;
  }

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
    const answer = await called(agent.predict(text, typeof uuid === "string" ? uuid : undefined));
    // Tracked metrics go back in a header, beside the caller's body rather than in it: the
    // gateway stores them and passes the body on untouched.
    if (answer.metricsJson !== undefined) {
      response.setHeader(METRICS_HEADER, answer.metricsJson);
      if (answer.serves !== undefined) response.setHeader(SERVES_HEADER, answer.serves);
    }
    sendJson(response, answer.status, answer.body, answer.code);
  }

  /** Counts an answer in the replica's metrics, and adds what the replica serves to it. */
  async function called(pending: Promise<ReplicaAnswer>): Promise<EndpointAnswer> {
    const answer = await pending;
    metrics.answers.inc({ code: answer.code });
    if (answer.workerSeconds !== undefined) metrics.duration.observe(answer.workerSeconds);
    if (answer.metricsJson === undefined || serves === undefined) return answer;
    return { ...answer, serves };
  }

  function logs(url: URL, response: ServerResponse): void {
    const after = Number(url.searchParams.get("after") ?? 0) || 0;
    const limit = Number(url.searchParams.get("limit") ?? agent.log.capacity) || agent.log.capacity;
    // Newline-delimited JSON, one line per log line, oldest first; `follow=1` keeps the
    // answer open and adds lines as the worker prints them.
    response.writeHead(200, { "content-type": "application/x-ndjson" });
    const ndjson = (line: LogLine) => `${JSON.stringify(line)}\n`;
    // Written as bytes, not strings: while a slow follower's lines wait in the socket's queue,
    // strings would survive collections and make V8 grow its young generation by tens of MB.
    // What the log holds goes in writes of about 256 KB, not one per line.
    let batch = "";
    for (const line of agent.log.since(after, limit)) {
      batch += ndjson(line);
      if (batch.length < LOGS_BATCH_CHARS) continue;
      response.write(Buffer.from(batch));
      batch = "";
    }
    if (batch !== "") response.write(Buffer.from(batch));
    if (url.searchParams.get("follow") !== "1") {
      response.end();
      return;
    }
    // A follower that reads slower than the model prints would make this answer buffer
    // without bound: one that falls behind by more than FOLLOW_BACKLOG_BYTES beyond the lines
    // it was sent at first is cut off (its connection closed, which frees the backlog), and
    // resumes with ?after=SEQ.
    const backlogLimit = response.writableLength + FOLLOW_BACKLOG_BYTES;
    const stop = agent.log.follow((line) => {
      if (response.writableLength > backlogLimit) {
        stop();
        response.destroy();
        return;
      }
      response.write(Buffer.from(ndjson(line)));
    });
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
    if (!admitted(request, response, key)) return;
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
  return {
    server,
    predict: (requestText, uuid) => called(agent.predict(requestText, uuid, { checked: true })),
  };
}

/** SERVES_HEADER's value. */
export function servesHeader(serves: ReplicaServes): string {
  return `build=${serves.build}; deployment=${serves.deployment}; deploymentId=${serves.deploymentId}`;
}
