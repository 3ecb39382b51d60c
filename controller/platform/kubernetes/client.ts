// A small client for the Kubernetes API: requests with the kubeconfig's credentials (through
// @kubernetes/client-node), server-side apply with our field manager, and errors that carry the
// API server's own message (a CRD's schema message reaches the user as the server wrote it).
import { request as httpsRequest } from "node:https";
import { KubeConfig } from "@kubernetes/client-node";

export const FIELD_MANAGER = "modelship";

export class KubeError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof KubeError && error.status === 404;
}

export function isConflict(error: unknown): boolean {
  return error instanceof KubeError && error.status === 409;
}

/** kubeconfig from a file, or the in-cluster service account (`modelship controller`). */
export function loadKubeConfig(file?: string): KubeConfig {
  const config = new KubeConfig();
  if (file) config.loadFromFile(file);
  else config.loadFromDefault();
  return config;
}

export class KubeClient {
  readonly config: KubeConfig;
  private readonly server: URL;

  constructor(config: KubeConfig) {
    this.config = config;
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig names no current cluster");
    this.server = new URL(cluster.server);
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<T> {
    const options: import("node:https").RequestOptions = {
      method,
      hostname: this.server.hostname,
      port: this.server.port || 443,
      path,
      headers: { accept: "application/json" },
    };
    await this.config.applyToHTTPSOptions(options);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) {
      options.headers = {
        ...options.headers,
        "content-type": contentType,
        "content-length": Buffer.byteLength(payload),
      };
    }
    return new Promise<T>((resolve, reject) => {
      const outgoing = httpsRequest(options, (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
        incoming.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = incoming.statusCode ?? 0;
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          if (status >= 200 && status < 300) {
            // Logs come back as text, everything else as JSON.
            resolve((parsed ?? text) as T);
            return;
          }
          const failure = (parsed ?? {}) as { reason?: string; message?: string };
          reject(
            new KubeError(
              status,
              failure.reason ?? "Unknown",
              failure.message ?? `${method} ${path}: HTTP ${status} ${text.slice(0, 200)}`,
            ),
          );
        });
      });
      outgoing.on("error", reject);
      outgoing.end(payload);
    });
  }

  /** Server-side apply: the fields in `object` become ours; others' fields are left alone. */
  apply<T>(path: string, object: unknown): Promise<T> {
    return this.request<T>(
      "PATCH",
      `${path}?fieldManager=${FIELD_MANAGER}&force=true`,
      object,
      "application/apply-patch+yaml",
    );
  }
}

export const GROUP = "modelship.dev";
export const VERSION = "v1alpha1";

export const PLURALS: Record<string, string> = {
  ModelRepository: "modelrepositories",
  Model: "models",
  ModelBuild: "modelbuilds",
  ModelDeployment: "modeldeployments",
};

export function customPath(kind: string, namespace: string, name?: string): string {
  const base = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURALS[kind]}`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}
