// The admin API of a running `modelship up`, on 127.0.0.1 with a bearer token that only the
// state directory holds (admin.json, mode 0600). The CLI's get, describe, logs, keys and apikeys
// commands are its clients (docs/cli.md).
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { SERVER_OPTIONS } from "../../api/http.ts";
import { KIND_NAMES } from "../../api/schemas.ts";
import { parseLifetime } from "../../gateway/keys.ts";
import type { LogLine } from "../../replica/log-ring.ts";
import type { LocalPlatform } from "./platform.ts";

export interface AdminFile {
  url: string;
  token: string;
  gatewayUrl: string;
  pid: number;
}

export function newAdminToken(): string {
  return randomBytes(24).toString("hex");
}

function send(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  response.end(text);
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

function authorized(request: IncomingMessage, token: string): boolean {
  const header = request.headers.authorization ?? "";
  const presented = Buffer.from(header.startsWith("Bearer ") ? header.slice(7) : "");
  const expected = Buffer.from(token);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

export function createAdminServer(platform: LocalPlatform, token: string): Server {
  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://admin");
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const method = request.method ?? "GET";
    // The webhook: any caller on this machine may ask for a fetch; it reveals nothing.
    if (method === "POST" && url.pathname === "/hooks/git") {
      platform.syncNow();
      send(response, 202, { fetching: true });
      return;
    }
    // The controller's metrics, for a Prometheus on this machine: counts and timings only.
    if (method === "GET" && url.pathname === "/metrics") {
      const text = await platform.metrics.metrics();
      response.writeHead(200, { "content-type": platform.metrics.contentType }).end(text);
      return;
    }
    if (!authorized(request, token)) {
      send(response, 401, {
        error: "missing or wrong admin token (see admin.json in the state directory)",
      });
      return;
    }
    const [api, version, resource, name, sub] = parts;
    if (api !== "api" || version !== "v1" || resource === undefined) {
      send(response, 404, { error: `no route for ${method} ${url.pathname}` });
      return;
    }
    const namespace = url.searchParams.get("namespace") ?? "default";
    const kind = KIND_NAMES[resource];
    if (kind && method === "GET" && sub === undefined) {
      if (name === undefined) {
        send(response, 200, { items: platform.store.list(kind, namespace) });
        return;
      }
      const object = platform.store.get(kind, namespace, name);
      if (object) send(response, 200, object);
      else send(response, 404, { error: `${kind} "${name}" not found in namespace ${namespace}` });
      return;
    }
    if (kind && name && sub === "events") {
      send(response, 200, { items: platform.store.listEvents({ kind, namespace, name }) });
      return;
    }
    if (kind === "ModelDeployment" && name && sub === "replicas") {
      send(response, 200, { items: platform.runtime.replicas({ namespace, name }) });
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
