// The dashboard for a cluster (`modelship dashboard --kubernetes`, docs/dashboard.md#on-a-cluster):
// a server on 127.0.0.1 of the user's own machine that serves /ui and answers the dashboard's
// API from the cluster, with the user's kubeconfig — so the cluster's own authentication and
// RBAC decide what the dashboard sees and may do, as with kubectl. The objects come from
// informers (KubeStore) and have the API server's shape already; a browser signs in to this
// server with a one-time link it prints, as with `up`.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { SERVER_OPTIONS } from "../../api/http.ts";
import { KIND_NAMES } from "../../api/schemas.ts";
import { ANNOTATION_RESTARTED_AT, LABEL_BUILD, LABEL_DEPLOYMENT } from "../../core/labels.ts";
import type { ReplicaInfo } from "../../core/ports.ts";
import { apiCallOf, rateLimit, send, serveSharedRoutes } from "../dashboard-api.ts";
import type { DashboardSessions } from "../dashboard-sessions.ts";
import type { UiFiles } from "../ui-files.ts";
import { customPath, type KubeClient, KubeError } from "./client.ts";
import type { KubeStore } from "./store.ts";

export interface ClusterDashboardOptions {
  store: KubeStore;
  client: KubeClient;
  namespace: string;
  sessions: DashboardSessions;
  ui: UiFiles;
  /** What the sign-in page says when the token is wrong: where the right one is. */
  tokenHint: string;
}

interface Pod {
  metadata: { name: string; labels?: Record<string, string> };
  status?: {
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      restartCount?: number;
      state?: { waiting?: { reason?: string } };
    }[];
  };
}

/**
 * A replica as the dashboard shows it, from its pod: ready, its build, its restarts. The
 * agent's call counters are not read on a cluster (its port answers only the gateway), so a
 * pod's stats have `restarts` only and the page shows the rest as unknown.
 */
export function replicaOfPod(pod: Pod): ReplicaInfo {
  const ready = pod.status?.conditions?.some(
    (condition) => condition.type === "Ready" && condition.status === "True",
  );
  const containers = pod.status?.containerStatuses ?? [];
  const waiting = containers.find((container) => container.state?.waiting?.reason)?.state?.waiting
    ?.reason;
  return {
    id: pod.metadata.name,
    deploymentId: 0,
    build: Number(pod.metadata.labels?.[LABEL_BUILD] ?? 0),
    ready: ready === true,
    ...(waiting ? { reason: waiting } : {}),
    url: "",
    stats: {
      restarts: containers.reduce((sum, container) => sum + (container.restartCount ?? 0), 0),
    },
  };
}

/**
 * The dashboard's requests: /ui and /api/v1/…. `modelship dashboard --kubernetes` serves it
 * alone; the controller serves it beside /healthz and /metrics when given a token.
 */
export function clusterDashboardHandler(
  options: ClusterDashboardOptions,
): (request: IncomingMessage, response: ServerResponse) => void {
  const { store, client, namespace, sessions, ui, tokenHint } = options;
  const gate = {
    sessions,
    failedSignIns: rateLimit(5, 20),
    tokenHint,
    refusal: `not signed in: ${tokenHint}`,
  };
  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://dashboard");
    const method = request.method ?? "GET";
    if (ui.serve(request, response, url.pathname)) return;
    const call = await apiCallOf(request, response, url, gate, namespace);
    if (!call) return;
    const { resource, name, sub } = call;
    const kind = KIND_NAMES[resource];
    // The cluster's objects have resourceVersions of their own; a list here is the cache's.
    if (serveSharedRoutes(call, request, response, store, sessions, "")) return;
    if (kind === "ModelDeployment" && name && sub === "restart" && method === "POST") {
      // As `kubectl rollout restart` does it: a merge patch of the annotation, as this user.
      const restartedAt = new Date().toISOString();
      await client.request(
        "PATCH",
        `${customPath("ModelDeployment", namespace, name)}?fieldManager=modelship-dashboard`,
        { metadata: { annotations: { [ANNOTATION_RESTARTED_AT]: restartedAt } } },
        "application/merge-patch+json",
      );
      send(response, 200, { restartedAt });
      return;
    }
    if (kind === "ModelDeployment" && name && sub === "replicas" && method === "GET") {
      const selector = encodeURIComponent(`${LABEL_DEPLOYMENT}=${name}`);
      const pods = await client.request<{ items: Pod[] }>(
        "GET",
        `/api/v1/namespaces/${namespace}/pods?labelSelector=${selector}`,
      );
      send(response, 200, { items: pods.items.map(replicaOfPod) });
      return;
    }
    request.resume();
    send(response, 501, {
      error: `${method} ${url.pathname} is not served on a cluster yet: the dashboard there shows the objects, their status and replicas, and restarts (docs/dashboard.md#on-a-cluster)`,
    });
  };
  return (request, response) => {
    handle(request, response).catch((error: Error) => {
      // The API server's refusal (RBAC, a missing object) is the answer, with its status.
      if (response.headersSent) {
        response.destroy();
        return;
      }
      // A 401 of the API server's is about the kubeconfig's credentials, not the browser's
      // session: passed on as such, the page would sign out for nothing.
      const status = error instanceof KubeError ? error.status : 500;
      send(response, status === 401 ? 502 : status, {
        error:
          status === 401
            ? `the cluster refused this dashboard's credentials: ${error.message}`
            : error.message,
      });
    });
  };
}

export function createClusterDashboardServer(options: ClusterDashboardOptions): Server {
  return createServer(SERVER_OPTIONS, clusterDashboardHandler(options));
}

/** Whether a path is the dashboard's (its page, or its API) rather than the controller's own. */
export function isDashboardPath(path: string): boolean {
  return path === "/ui" || path.startsWith("/ui/") || path.startsWith("/api/v1/");
}
