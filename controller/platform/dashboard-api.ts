// What every server of the dashboard and its API shares — `modelship up`'s admin API and the
// cluster's `modelship dashboard --kubernetes`: JSON answers, the bearer token, sign-in with a
// limit on refusals, one-time links, and the objects in the Kubernetes resource shape (lists
// with items, a watch of one kind or of all of them, as the API server sends them).
import type { IncomingMessage, ServerResponse } from "node:http";
import { readBody } from "../api/http.ts";
import { GROUP_VERSION, KIND_NAMES, KINDS, type Kind } from "../api/schemas.ts";
import type { Resource, WatchEvent } from "../core/ports.ts";
import type { DashboardSessions } from "./dashboard-sessions.ts";
import { UI_PREFIX } from "./ui-files.ts";

/** Where the objects come from: `up`'s store, or a cluster's informers (KubeStore). */
export interface ObjectReader {
  list(kind: Kind, namespace?: string): Resource[];
  get(kind: Kind, namespace: string, name: string): Resource | undefined;
  watch(listener: (event: WatchEvent) => void): () => void;
}

export function send(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  response.end(text);
}

/** The bearer token a request presents ("" without one). */
function bearerOf(request: IncomingMessage): string {
  const header = request.headers.authorization ?? "";
  return header.startsWith("Bearer ") ? header.slice(7) : "";
}

/**
 * A token bucket: `ratePerSecond` on average, `burst` at once. What goes past it is turned away
 * before any work is done for it.
 */
export function rateLimit(ratePerSecond: number, burst: number, now = () => performance.now()) {
  let tokens = burst;
  let last = now();
  return (): boolean => {
    const time = now();
    tokens = Math.min(burst, tokens + ((time - last) / 1000) * ratePerSecond);
    last = time;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };
}

/** A list in the API server's shape: `{apiVersion, kind: "ModelList", metadata, items}`. */
export function listOf(kind: Kind, items: Resource[], resourceVersion: string) {
  return {
    apiVersion: GROUP_VERSION,
    kind: `${kind}List`,
    metadata: { resourceVersion },
    items,
  };
}

/** The URL this server answered on, from the socket (a Host header could say anything). */
export function serverUrlOf(request: IncomingMessage): string {
  return `http://${request.socket.localAddress}:${request.socket.localPort}`;
}

/** A one-time sign-in link: the code is in the fragment, which no browser sends to a server. */
export function dashboardLink(serverUrl: string, code: string): string {
  return `${serverUrl}${UI_PREFIX}/#code=${code}`;
}

/**
 * POST /api/v1/login: `{"token": ADMIN_TOKEN}` or `{"code": LINK_CODE}` → a session token. A
 * refusal takes one of `refusals`' tokens; when there is none left, the next refusal is a 429.
 */
async function signIn(
  sessions: DashboardSessions,
  refusals: () => boolean,
  request: IncomingMessage,
  response: ServerResponse,
  tokenHint: string,
) {
  let credential: Record<string, unknown>;
  try {
    const parsed = JSON.parse(await readBody(request, 4096)) as unknown;
    credential = typeof parsed === "object" && parsed !== null ? (parsed as typeof credential) : {};
  } catch {
    send(response, 400, { error: 'the body must be {"token": "..."} or {"code": "..."}' });
    return;
  }
  const outcome = sessions.signIn(credential);
  if (typeof outcome === "string" && !refusals()) {
    send(response, 429, { error: "too many failed sign-ins: at most 5 a second" });
  } else if (outcome === "wrong-token") {
    send(response, 401, {
      error: `wrong admin token: ${tokenHint}`,
    });
  } else if (outcome === "used-or-expired-link") {
    send(response, 401, {
      error: "this sign-in link was used or has expired: run `modelship dashboard` for a new one",
    });
  } else {
    send(response, 200, outcome);
  }
}

/** How far a watcher may fall behind before it is cut off (it lists and watches again). */
const WATCH_BACKLOG_BYTES = 1024 * 1024;

/**
 * `GET /api/v1/PLURAL[/NAME]?watch=1`: the objects as a stream of events, as the Kubernetes API
 * server's watch — one JSON object per line, `{"type": "ADDED" | "MODIFIED" | "DELETED",
 * "object": {...}}`, first an ADDED for each object there is now, then each change as it
 * happens, until the caller hangs up. The dashboard and `get --watch` follow it.
 */
export function streamWatch(
  store: ObjectReader,
  kind: Kind,
  namespace: string,
  name: string | undefined,
  response: ServerResponse,
): void {
  const matches = (object: Resource) =>
    object.kind === kind &&
    (object.metadata.namespace ?? "default") === namespace &&
    (name === undefined || object.metadata.name === name);
  const now =
    name === undefined
      ? store.list(kind, namespace)
      : [store.get(kind, namespace, name)].filter((object) => object !== undefined);
  follow(store, matches, now as Resource[], response);
}

/**
 * Sends `now` as ADDED events, then each change of the store that `matches`, until the caller
 * hangs up; with `bookmark` (a resourceVersion), a BOOKMARK between the two.
 */
function follow(
  store: ObjectReader,
  matches: (object: Resource) => boolean,
  now: Resource[],
  response: ServerResponse,
  bookmark?: string,
): void {
  response.writeHead(200, { "content-type": "application/json;stream=watch" });
  const line = (event: WatchEvent | BookmarkEvent) => `${JSON.stringify(event)}\n`;
  /** What may wait unread beyond the list sent first (set once that is written). */
  let backlogLimit = Number.POSITIVE_INFINITY;
  // Watching before listing: a change between the two shows (perhaps twice), never not at all.
  const stop = store.watch((event) => {
    if (!matches(event.object)) return;
    // A watcher that reads slower than the objects change would make this answer buffer
    // without bound: past the limit it is cut off, and starts again with a fresh list.
    if (response.writableLength > backlogLimit) {
      stop();
      response.destroy();
      return;
    }
    response.write(line(event));
  });
  // The list goes whole, however large: the limit is on falling behind, not on its size.
  for (const object of now) response.write(line({ type: "ADDED", object }));
  if (bookmark !== undefined) {
    response.write(
      line({
        type: "BOOKMARK",
        object: {
          kind: "Bookmark",
          metadata: {
            resourceVersion: bookmark,
            annotations: { "k8s.io/initial-events-end": "true" },
          },
        },
      }),
    );
  }
  backlogLimit = response.writableLength + WATCH_BACKLOG_BYTES;
  response.on("close", stop);
}

interface BookmarkEvent {
  type: "BOOKMARK";
  object: {
    kind: "Bookmark";
    metadata: { resourceVersion: string; annotations: Record<string, string> };
  };
}

/**
 * `GET /api/v1/watch`: every kind's objects in one stream, as `?watch=1` sends one kind's, with
 * a BOOKMARK (annotated `k8s.io/initial-events-end`, as the API server's watch-list marks it)
 * once the objects there are have been sent. One connection instead of one per kind: a
 * browser opens at most six to a server, and the dashboard's tabs share them.
 */
export function streamWatchAll(
  store: ObjectReader,
  namespace: string,
  response: ServerResponse,
  resourceVersion: string,
) {
  const matches = (object: Resource) =>
    (KINDS as readonly string[]).includes(object.kind) &&
    (object.metadata.namespace ?? "default") === namespace;
  const now = KINDS.flatMap((kind) => store.list(kind, namespace));
  follow(store, matches, now, response, resourceVersion);
}

/** A call to /api/v1/RESOURCE[/NAME[/SUB]], its caller's bearer token checked. */
export interface ApiCall {
  method: string;
  url: URL;
  resource: string;
  name: string | undefined;
  sub: string | undefined;
  namespace: string;
  bearer: string;
}

/** Who may call a dashboard server's API, and what a caller is told otherwise. */
export interface ApiGate {
  sessions: DashboardSessions;
  /** Takes one token per refused sign-in (rateLimit). */
  failedSignIns: () => boolean;
  /** Where the right token is, for a refused sign-in. */
  tokenHint: string;
  /** The 401 of a call without a token this server accepts. */
  refusal: string;
}

/**
 * How every dashboard server starts on a request that is not a file of /ui: POST
 * /api/v1/login answered; then the bearer token checked; then — only for a caller who has one,
 * so that the rest gets nothing but the 401 — the path decoded and split. Undefined when it
 * has answered.
 */
export async function apiCallOf(
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  gate: ApiGate,
  namespace: string,
): Promise<ApiCall | undefined> {
  const method = request.method ?? "GET";
  if (method === "POST" && url.pathname === "/api/v1/login") {
    await signIn(gate.sessions, gate.failedSignIns, request, response, gate.tokenHint);
    return undefined;
  }
  const bearer = bearerOf(request);
  if (!gate.sessions.accepts(bearer)) {
    send(response, 401, { error: gate.refusal });
    return undefined;
  }
  let parts: string[];
  try {
    parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    send(response, 400, { error: `not a valid path: ${url.pathname}` });
    return undefined;
  }
  const [api, version, resource, name, sub] = parts;
  if (api !== "api" || version !== "v1" || resource === undefined) {
    send(response, 404, { error: `no route for ${method} ${url.pathname}` });
    return undefined;
  }
  return { method, url, resource, name, sub, namespace, bearer };
}

/**
 * The routes every dashboard server answers alike: sign-out, new links (the server's own token
 * only: a session that could make them would renew itself for ever), the watch of every kind,
 * and a kind's list, object and watch. True when it answered.
 */
export function serveSharedRoutes(
  call: ApiCall,
  request: IncomingMessage,
  response: ServerResponse,
  store: ObjectReader,
  sessions: DashboardSessions,
  resourceVersion: string,
): boolean {
  const { method, url, resource, name, sub, namespace, bearer } = call;
  if (resource === "login" && method === "DELETE" && name === undefined) {
    send(response, 200, { signedOut: sessions.signOut(bearer) });
    return true;
  }
  if (resource === "dashboard-links" && method === "POST" && name === undefined) {
    if (sessions.isAdminToken(bearer)) {
      send(response, 201, { url: dashboardLink(serverUrlOf(request), sessions.newLinkCode()) });
    } else {
      send(response, 403, { error: "only the admin token makes sign-in links, not a session" });
    }
    return true;
  }
  if (resource === "watch" && method === "GET" && name === undefined) {
    streamWatchAll(store, namespace, response, resourceVersion);
    return true;
  }
  const kind = KIND_NAMES[resource];
  if (!kind || method !== "GET" || sub !== undefined) return false;
  const watch = url.searchParams.get("watch");
  if (watch === "1" || watch === "true") {
    streamWatch(store, kind, namespace, name, response);
  } else if (name === undefined) {
    send(response, 200, listOf(kind, store.list(kind, namespace), resourceVersion));
  } else {
    const object = store.get(kind, namespace, name);
    if (object) send(response, 200, object);
    else send(response, 404, { error: `${kind} "${name}" not found in namespace ${namespace}` });
  }
  return true;
}
