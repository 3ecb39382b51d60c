// The admin API of a running `modelship up`, on 127.0.0.1 with a bearer token that only the
// state directory holds (admin.json, mode 0600). The CLI's get, describe, logs, keys, apikeys,
// metrics, run and runs commands are its clients (docs/cli.md).
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import {
  BodyTooLarge,
  DEFAULT_BODY_LIMIT_BYTES,
  readBody,
  SERVER_OPTIONS,
} from "../../api/http.ts";
import { KIND_NAMES } from "../../api/schemas.ts";
import { isGitHubDelivery, WEBHOOK_BODY_LIMIT, type WebhookReceiver } from "../../forge/webhook.ts";
import { parseLifetime } from "../../gateway/keys.ts";
import { metricsPageJson, metricsQueryOf } from "../../gateway/metrics-api.ts";
import { parseExactJson } from "../../metrics/exact-json.ts";
import type { MetricsQuery, MetricsStore, RunRecord } from "../../metrics/port.ts";
import { runRecordOf } from "../../metrics/run-record.ts";
import type { LogLine } from "../../replica/log-ring.ts";
import { apiCallOf, rateLimit, send, serveSharedRoutes } from "../dashboard-api.ts";
import type { DashboardSessions } from "../dashboard-sessions.ts";
import type { UiFiles } from "../ui-files.ts";
import type { LocalPlatform } from "./platform.ts";

/** STATE/admin.json: how the CLI's client commands reach a running `modelship up`. */
export interface AdminFile {
  url: string;
  token: string;
  gatewayUrl: string;
  pid: number;
  /** What it follows, so a client in that repository's work tree finds it. */
  repository?: { url: string; branch: string; path: string };
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

/** GitHub's webhook signature of `body`: `sha256=` and the HMAC-SHA256 in hex. */
export function webhookSignature(secret: string, body: Buffer): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Whether the request carries the right signature of its body (X-Hub-Signature-256). */
function signedBy(secret: string, body: Buffer, header: string | string[] | undefined): boolean {
  const presented = Buffer.from(typeof header === "string" ? header : "");
  const expected = Buffer.from(webhookSignature(secret, body));
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/**
 * Asks for a fetch at most once per `intervalMs`: a flood of webhook calls becomes one fetch now
 * and one at the end of the interval, and costs the data plane next to nothing.
 */
export function coalesced(action: () => void, intervalMs: number): () => void {
  let last = Number.NEGATIVE_INFINITY;
  let trailing: NodeJS.Timeout | undefined;
  return () => {
    const wait = last + intervalMs - performance.now();
    if (wait <= 0) {
      last = performance.now();
      action();
      return;
    }
    trailing ??= setTimeout(() => {
      trailing = undefined;
      last = performance.now();
      action();
    }, wait);
    trailing.unref();
  };
}

export interface AdminOptions {
  /** Who may call: the admin token, and the dashboard's sessions made with it. */
  sessions: DashboardSessions;
  /** The dashboard's files, served at /ui. */
  ui: UiFiles;
  /** When set, POST /hooks/git needs GitHub's X-Hub-Signature-256 made with it. */
  webhookSecret?: string;
  /** With --github-repo: takes GitHub's deliveries to /hooks/git (a push still fetches now). */
  github?: WebhookReceiver;
}

export function createAdminServer(platform: LocalPlatform, options: AdminOptions): Server {
  const { sessions, ui, webhookSecret, github } = options;
  const syncSoon = coalesced(() => platform.syncNow(), 1000);
  // A forge sends a handful of calls a minute; a flood is turned away, and its connection closed
  // so that it cannot keep a cheap keep-alive stream of them going at the data plane's cost.
  const webhookAllowed = rateLimit(10, 20);
  const gate = {
    sessions,
    // Guessing a 192-bit token is hopeless anyway; this keeps a guesser from costing anything.
    // Only refusals count, so that a guesser cannot lock out the one who has the token.
    failedSignIns: rateLimit(5, 20),
    tokenHint: "it is the token in admin.json in the state directory",
    refusal: "missing or wrong admin token (see admin.json in the state directory)",
  };
  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://admin");
    const method = request.method ?? "GET";
    // The webhook: any caller on this machine may ask for a fetch (it reveals nothing); with a
    // secret, only one who signs the body with it.
    if (method === "POST" && url.pathname === "/hooks/git") {
      if (!webhookAllowed()) {
        response.setHeader("connection", "close");
        send(response, 429, { error: "too many webhook calls: at most 10 a second" });
        request.destroy();
        return;
      }
      // A delivery that names its GitHub event: the receiver checks it and does what it asks.
      if (github && isGitHubDelivery(request.headers)) {
        await github.handle(request, response);
        return;
      }
      if (webhookSecret) {
        let body: Buffer;
        try {
          body = Buffer.from(await readBody(request, WEBHOOK_BODY_LIMIT), "utf8");
        } catch {
          send(response, 413, { error: "the webhook's body is larger than 1 MB" });
          return;
        }
        if (!signedBy(webhookSecret, body, request.headers["x-hub-signature-256"])) {
          send(response, 401, {
            error: "missing or wrong X-Hub-Signature-256 (the webhook secret signs the body)",
          });
          return;
        }
      } else {
        request.resume();
      }
      syncSoon();
      send(response, 202, { fetching: true });
      return;
    }
    // The controller's metrics, for a Prometheus on this machine: counts and timings only.
    if (method === "GET" && url.pathname === "/metrics") {
      const text = await platform.metrics.metrics();
      response.writeHead(200, { "content-type": platform.metrics.contentType }).end(text);
      return;
    }
    // The dashboard's page and scripts: public, as a login page is; they hold no secret.
    if (ui.serve(request, response, url.pathname)) return;
    const call = await apiCallOf(
      request,
      response,
      url,
      gate,
      url.searchParams.get("namespace") ?? "default",
    );
    if (!call) return;
    const { resource, name, sub, namespace } = call;
    const kind = KIND_NAMES[resource];
    const store = platform.store;
    if (serveSharedRoutes(call, request, response, store, sessions, store.currentVersion)) {
      return;
    }
    if (kind === "ModelRepository" && name && sub === "files" && method === "GET") {
      await fileAt(platform, name, url, response);
      return;
    }
    if (kind && name && sub === "events") {
      send(response, 200, { items: platform.store.listEvents({ kind, namespace, name }) });
      return;
    }
    if (kind === "ModelDeployment" && name && sub === "restart" && method === "POST") {
      const restartedAt = await platform.restart({ namespace, name });
      if (restartedAt) send(response, 200, { restartedAt });
      else
        send(response, 404, {
          error: `ModelDeployment "${name}" not found in namespace ${namespace}`,
        });
      return;
    }
    if (kind === "ModelDeployment" && name && sub === "replicas") {
      send(response, 200, { items: platform.runtime.replicas({ namespace, name }) });
      return;
    }
    if (kind === "Model" && name && sub === "test" && method === "POST") {
      await testCall(platform, namespace, name, request, response);
      return;
    }
    if (kind === "Model" && name && sub === "traffic" && method === "GET") {
      send(response, 200, {
        intervalSeconds: platform.traffic.intervalMs / 1000,
        items: platform.traffic.of(name),
      });
      return;
    }
    if (kind === "ModelBuild" && name && sub === "logs") {
      const build = platform.store.get("ModelBuild", namespace, name);
      if (!build) send(response, 404, { error: `ModelBuild "${name}" not found` });
      else send(response, 200, { logs: await platform.builder.logs(build) });
      return;
    }
    if (resource === "logs" && name) {
      streamLogs(platform, namespace, name, url, response);
      return;
    }
    if (resource === "keys" && name) {
      const model = platform.store.get("Model", namespace, name);
      if (!model) {
        send(response, 404, { error: `Model "${name}" not found in namespace ${namespace}` });
        return;
      }
      const modelKey = `${namespace}/${name}`;
      if (method === "POST" && sub === "rotate") {
        const accessKey = platform.keys.rotateAccessKey(modelKey);
        platform.refreshGateway();
        send(response, 200, { accessKey });
      } else {
        send(response, 200, { accessKey: platform.keys.accessKey(modelKey) });
      }
      return;
    }
    if (resource === "apikeys") {
      if (method === "POST") {
        const body = await readJson(request);
        const user = body.user;
        if (typeof user !== "string" || user === "") {
          send(response, 400, { error: '"user" is required' });
          return;
        }
        let lifetimeMs: number | undefined;
        try {
          lifetimeMs = typeof body.expires === "string" ? parseLifetime(body.expires) : undefined;
        } catch (error) {
          send(response, 400, { error: (error as Error).message });
          return;
        }
        const created = platform.keys.createApiKey(user, new Date(), lifetimeMs);
        platform.refreshGateway();
        send(response, 201, created);
        return;
      }
      if (method === "DELETE" && name) {
        const deleted = platform.keys.deleteApiKey(name);
        platform.refreshGateway();
        send(
          response,
          deleted ? 200 : 404,
          deleted ? { deleted: name } : { error: `no API key with id ${name}` },
        );
        return;
      }
      send(response, 200, {
        items: platform.keys.apiKeys().map(({ sha256: _, ...record }) => record),
      });
      return;
    }
    if (resource === "model-metrics" && method === "GET" && name === undefined) {
      await readMetrics(platform, url, response);
      return;
    }
    if (resource === "runs" && sub === undefined) {
      await runs(platform.metricsStore, method, name, url, request, response);
      return;
    }
    if (resource === "sync" && method === "POST") {
      platform.syncNow();
      send(response, 202, { fetching: true });
      return;
    }
    send(response, 404, { error: `no route for ${method} ${url.pathname}` });
  };
  return createServer(SERVER_OPTIONS, (request, response) => {
    handle(request, response).catch((error: Error) => {
      if (!response.headersSent) send(response, 500, { error: error.message });
    });
  });
}

/** The largest file the dashboard's manifest view shows. */
const FILE_VIEW_LIMIT = 1024 * 1024;

/**
 * GET /api/v1/modelrepositories/NAME/files?commit=C&path=P: a file at a commit, where the
 * dashboard's "declared at" links lead (git is the source of truth; this shows it, read-only).
 */
async function fileAt(
  platform: LocalPlatform,
  repository: string,
  url: URL,
  response: ServerResponse,
) {
  const commit = url.searchParams.get("commit") ?? "";
  const path = url.searchParams.get("path") ?? "";
  if (!/^[0-9a-f]{40}$/.test(commit) || path === "" || path.startsWith("/")) {
    send(response, 400, {
      error: "commit (40 hex digits) and path (relative to the repository root) are required",
    });
    return;
  }
  const text = await platform.fileAt(repository, commit, path);
  if (text === undefined) {
    send(response, 404, { error: `no file ${path} at commit ${commit.slice(0, 7)}` });
  } else if (Buffer.byteLength(text) > FILE_VIEW_LIMIT) {
    send(response, 413, { error: `${path} is larger than 1 MB` });
  } else {
    send(response, 200, { commit, path, text });
  }
}

/** The most of a model's answer the Test widget shows. */
const TEST_ANSWER_LIMIT = 1024 * 1024;

/**
 * POST /api/v1/models/NAME/test: the dashboard's Test widget. The body is the model's input; it
 * is sent through the gateway as any caller's would be (with the caller's model API key from
 * `x-modelship-api-key`, when the model wants one), and the answer comes back with its status
 * and how long it took.
 */
async function testCall(
  platform: LocalPlatform,
  namespace: string,
  name: string,
  request: IncomingMessage,
  response: ServerResponse,
) {
  if (!platform.store.get("Model", namespace, name)) {
    request.resume();
    send(response, 404, { error: `Model "${name}" not found in namespace ${namespace}` });
    return;
  }
  let input: string;
  try {
    input = await readBody(request, DEFAULT_BODY_LIMIT_BYTES);
    JSON.parse(input);
  } catch (error) {
    const tooLarge = error instanceof BodyTooLarge;
    send(response, tooLarge ? 413 : 400, {
      error: tooLarge ? error.message : `the input is not JSON: ${(error as Error).message}`,
    });
    return;
  }
  const apiKey = request.headers["x-modelship-api-key"];
  const started = performance.now();
  const answer = await fetch(`${platform.gatewayUrl}/models/${encodeURIComponent(name)}/predict`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(typeof apiKey === "string" && apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
    },
    body: input,
  });
  const text = await answer.text();
  const latencyMs = Math.round((performance.now() - started) * 1000) / 1000;
  send(response, 200, {
    status: answer.status,
    latencyMs,
    body: text.length > TEST_ANSWER_LIMIT ? text.slice(0, TEST_ANSWER_LIMIT) : text,
    truncated: text.length > TEST_ANSWER_LIMIT,
  });
}

/** `modelship metrics`: the store's rows, with the gateway's /model-metrics parameters. */
async function readMetrics(platform: LocalPlatform, url: URL, response: ServerResponse) {
  const store = platform.metricsStore;
  if (!store) {
    send(response, 503, { error: "this modelship up runs without a metrics store" });
    return;
  }
  let query: MetricsQuery;
  try {
    query = metricsQueryOf(url.searchParams);
  } catch (error) {
    send(response, 400, { error: (error as Error).message });
    return;
  }
  const text = metricsPageJson(await store.read(query));
  response.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  response.end(text);
}

/** The most a run's record may take: its metrics and its list of files are the large parts. */
const RUN_RECORD_LIMIT = 8 * 1024 * 1024;

/**
 * `modelship run` records, and `modelship runs` reads, experiment runs here while `up` holds the
 * store open (PGlite takes one process): POST /api/v1/runs, GET /api/v1/runs[?model=M&limit=N],
 * GET /api/v1/runs/ID.
 */
async function runs(
  store: MetricsStore | undefined,
  method: string,
  id: string | undefined,
  url: URL,
  request: IncomingMessage,
  response: ServerResponse,
) {
  if (!store) {
    request.resume();
    send(response, 503, { error: "this modelship up runs without a metrics store" });
    return;
  }
  if (method === "POST" && id === undefined) {
    let record: RunRecord;
    try {
      // Exactly: a metric such as 9007199254740993 is stored with every digit.
      record = runRecordOf(parseExactJson(await readBody(request, RUN_RECORD_LIMIT)));
    } catch (error) {
      const tooLarge = error instanceof BodyTooLarge;
      send(response, tooLarge ? 413 : 400, {
        error: tooLarge
          ? "a run's record is larger than 8 MB"
          : `not a run's record: ${(error as Error).message}`,
      });
      return;
    }
    send(response, 201, { id: await store.recordRun(record) });
    return;
  }
  if (method !== "GET") {
    send(response, 405, { error: `no route for ${method} ${url.pathname}` });
    return;
  }
  if (id === undefined) {
    const model = url.searchParams.get("model");
    const limit = url.searchParams.get("limit");
    if (limit !== null && !/^[1-9][0-9]{0,5}$/.test(limit)) {
      send(response, 400, { error: `limit must be a positive integer, not "${limit}"` });
      return;
    }
    const items = await store.listRuns({
      ...(model ? { model } : {}),
      ...(limit ? { limit: Number(limit) } : {}),
    });
    send(response, 200, { items });
    return;
  }
  const run = /^[1-9][0-9]{0,15}$/.test(id) ? await store.getRun(Number(id)) : undefined;
  if (run) send(response, 200, run);
  else send(response, 404, { error: `no run ${id}` });
}

/** A model's replicas' logs as NDJSON, each line with its replica; `follow=1` keeps it open. */
function streamLogs(
  platform: LocalPlatform,
  namespace: string,
  model: string,
  url: URL,
  response: ServerResponse,
): void {
  const wanted = url.searchParams.get("replica");
  const agents = platform.store
    .list("ModelDeployment", namespace)
    .filter((deployment) => deployment.spec.model === model)
    .flatMap((deployment) => platform.runtime.agents({ namespace, name: deployment.metadata.name }))
    .filter((replica) => !wanted || replica.id === wanted);
  if (agents.length === 0) {
    send(response, 404, {
      error: wanted
        ? `no replica ${wanted} of model ${model}`
        : `model ${model} has no replicas running`,
    });
    return;
  }
  response.writeHead(200, { "content-type": "application/x-ndjson" });
  const write = (replica: string, line: LogLine) =>
    response.write(`${JSON.stringify({ replica, ...line })}\n`);
  const lines = agents
    .flatMap((replica) => replica.agent.log.since().map((line) => ({ replica: replica.id, line })))
    .sort((a, b) => a.line.time.localeCompare(b.line.time));
  for (const { replica, line } of lines) write(replica, line);
  if (url.searchParams.get("follow") !== "1") {
    response.end();
    return;
  }
  const stops = agents.map((replica) =>
    replica.agent.log.follow((line) => write(replica.id, line)),
  );
  response.on("close", () => {
    for (const stop of stops) stop();
  });
}
