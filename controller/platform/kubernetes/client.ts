// A small client for the Kubernetes API: requests with the kubeconfig's credentials (through
// @kubernetes/client-node), server-side apply with our field manager, and errors that carry the
// API server's own message (a CRD's schema message reaches the user as the server wrote it).
// Every request has a deadline and takes an AbortSignal; a watch is a stream of lines that ends
// when the server ends it or the signal aborts, and an abort destroys its socket at once.
import type { IncomingMessage } from "node:http";
import { Agent, type RequestOptions as HttpsRequestOptions, request } from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { isNotFound } from "../../core/errors.ts";

export { isNotFound };

export const FIELD_MANAGER = "modelship";

/** How long a request that is not a watch may take, unless its caller says otherwise. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Idle keep-alive sockets are closed after this long: well below the API server's own idle
 * timeout (90 s), so that a request never picks a socket the server is closing.
 */
const IDLE_SOCKET_MS = 15_000;
/** A request the server turned away (429) is sent at most this many times in all. */
const MAX_ATTEMPTS = 5;
const MAX_RETRY_AFTER_MS = 5000;

export class KubeError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = "KubeError";
    this.status = status;
    this.reason = reason;
  }
}

export function isConflict(error: unknown): boolean {
  return error instanceof KubeError && error.status === 409;
}

/** A JSON Patch whose `test` failed: the API server answers 422 Invalid. */
export function isInvalid(error: unknown): boolean {
  return error instanceof KubeError && error.status === 422;
}

/**
 * A DELETE's options: Background (the garbage collector removes the dependents after the
 * object), and with `uid` that very object only — a namesake made since is left alone.
 */
export function deleteOptions(uid: string | undefined): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "DeleteOptions",
    propagationPolicy: "Background",
    ...(uid ? { preconditions: { uid } } : {}),
  };
}

/**
 * Deletes the object at `path` with this uid; false when it is gone already or has been
 * replaced by a namesake (the precondition failed).
 */
export async function deleteExactly(
  client: Pick<KubeClient, "request">,
  path: string,
  uid: string | undefined,
  options: RequestOptions = {},
): Promise<boolean> {
  try {
    await client.request("DELETE", path, deleteOptions(uid), undefined, options);
    return true;
  } catch (error) {
    if (isNotFound(error) || isConflict(error)) return false;
    throw error;
  }
}

/** `410 Gone`: a watch's resourceVersion is older than the server keeps. */
export function isGone(error: unknown): boolean {
  return error instanceof KubeError && error.status === 410;
}

export interface RequestOptions {
  /** Aborts the request (and destroys its socket). */
  signal?: AbortSignal;
  /** The whole request, body included, must end within this (default DEFAULT_TIMEOUT_MS). */
  timeoutMs?: number;
}

export interface StreamOptions {
  signal?: AbortSignal;
  /**
   * Aborts the stream when it has not ended by then. A watch asks the server to end it after
   * `timeoutSeconds`; this catches a connection that died without a word (no FIN, no RST).
   */
  deadlineMs: number;
  /** Called with each line of the body, as it arrives. */
  onLine(line: string): void;
}

/** kubeconfig from a file, or the in-cluster service account (`modelship controller`). */
export function loadKubeConfig(file?: string): KubeConfig {
  const config = new KubeConfig();
  if (file) config.loadFromFile(file);
  else config.loadFromDefault();
  return config;
}

/** Why a request was aborted: our deadline, or the caller's signal. */
class Deadline extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${ms} ms`);
    this.name = "TimeoutError";
  }
}

function abortedError(what: string, reason: unknown): Error {
  if (reason instanceof Deadline) return reason;
  const error = new Error(`${what}: aborted`, { cause: reason });
  error.name = "AbortError";
  return error;
}

export class KubeClient {
  readonly config: KubeConfig;
  private readonly server: URL;
  /**
   * One pool of keep-alive connections for every request (client-node would make a new agent,
   * so a new TLS connection, per request). Not used through a proxy, whose agent client-node
   * makes.
   */
  private readonly agent = new Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS });
  private readonly viaProxy: boolean;

  constructor(config: KubeConfig) {
    this.config = config;
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig names no current cluster");
    this.server = new URL(cluster.server);
    this.viaProxy = Boolean(cluster.proxyUrl);
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
    options: RequestOptions = {},
  ): Promise<T> {
    const what = `${method} ${path}`;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return this.withDeadline(what, timeoutMs, options.signal, async (signal) => {
      for (let attempt = 1; ; attempt++) {
        const response = await this.open(method, path, payload, contentType, signal);
        const text = await readBody(response);
        const status = response.statusCode ?? 0;
        const retryAfter = retryAfterMs(response);
        // 429 with Retry-After: the server did not run the request (a cache still filling,
        // priority and fairness): client-go's rest client waits and sends it again too.
        if (status === 429 && retryAfter !== undefined && attempt < MAX_ATTEMPTS) {
          await sleep(retryAfter, undefined, { signal });
          continue;
        }
        if (status < 200 || status >= 300) throw errorOf(what, status, text);
        // Logs come back as text, everything else as JSON.
        return (parseJson(text) ?? text) as T;
      }
    });
  }

  /**
   * A long GET (a watch): each line of the body goes to `onLine` as it arrives. Resolves when
   * the server ends the response; rejects on an HTTP error (a KubeError), a broken connection,
   * the deadline, or the signal.
   */
  async stream(path: string, options: StreamOptions): Promise<void> {
    const what = `GET ${path}`;
    await this.withDeadline(what, options.deadlineMs, options.signal, async (signal) => {
      const response = await this.open("GET", path, undefined, undefined, signal);
      const status = response.statusCode ?? 0;
      if (status !== 200) throw errorOf(what, status, await readBody(response));
      let pending = "";
      try {
        for await (const chunk of response) {
          const lines = (pending + (chunk as Buffer).toString("utf8")).split("\n");
          pending = lines.pop() ?? "";
          for (const line of lines) if (line.trim()) options.onLine(line);
        }
      } catch (error) {
        // Node's word for it is "aborted" (ECONNRESET): say what happened.
        if ((error as NodeJS.ErrnoException).code === "ECONNRESET" && !signal.aborted) {
          throw new Error("the server closed the connection mid-response", { cause: error });
        }
        throw error;
      }
      if (!response.complete) throw new Error("the server closed the connection mid-response");
      if (pending.trim()) options.onLine(pending);
    });
  }

  /** Server-side apply: the fields in `object` become ours; others' fields are left alone. */
  apply<T>(path: string, object: unknown, options: RequestOptions = {}): Promise<T> {
    const separator = path.includes("?") ? "&" : "?";
    return this.request<T>(
      "PATCH",
      `${path}${separator}fieldManager=${FIELD_MANAGER}&force=true`,
      object,
      "application/apply-patch+yaml",
      options,
    );
  }

  /** Closes the idle keep-alive connections (at shutdown; later requests open new ones). */
  close(): void {
    this.agent.destroy();
  }

  /**
   * Runs `work` with a signal that aborts on the caller's signal or after `ms`; an abort
   * destroys the request and its socket, and becomes a TimeoutError or an AbortError.
   */
  private async withDeadline<T>(
    what: string,
    ms: number,
    outer: AbortSignal | undefined,
    work: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    if (outer?.aborted) throw abortedError(what, outer.reason);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Deadline(what, ms)), ms);
    const forward = () => controller.abort(outer?.reason);
    outer?.addEventListener("abort", forward, { once: true });
    try {
      return await work(controller.signal);
    } catch (error) {
      if (controller.signal.aborted) throw abortedError(what, controller.signal.reason);
      throw error;
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", forward);
    }
  }

  /** Sends the request; resolves with the response once its headers are in. */
  private async open(
    method: string,
    path: string,
    payload: string | undefined,
    contentType: string | undefined,
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    const options: HttpsRequestOptions = {
      method,
      hostname: this.server.hostname,
      port: this.server.port || 443,
      path,
      headers: { accept: "application/json" },
    };
    // Credentials per request: a token file or an exec plugin may hand out a new token.
    await this.config.applyToHTTPSOptions(options);
    if (!this.viaProxy) options.agent = this.agent;
    // Node destroys the request, and the response being read, when the signal aborts.
    options.signal = signal;
    if (payload !== undefined) {
      options.headers = {
        ...options.headers,
        "content-type": contentType ?? "application/json",
        "content-length": Buffer.byteLength(payload),
      };
    }
    return new Promise<IncomingMessage>((resolve, reject) => {
      const outgoing = request(options, resolve);
      outgoing.on("error", reject);
      outgoing.end(payload);
    });
  }
}

/** The Retry-After header (seconds), capped: the deadline still bounds the whole request. */
function retryAfterMs(response: IncomingMessage): number | undefined {
  const seconds = Number(response.headers["retry-after"]);
  return Number.isFinite(seconds) && seconds >= 0
    ? Math.min(seconds * 1000, MAX_RETRY_AFTER_MS)
    : undefined;
}

async function readBody(response: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The API server's Status as a KubeError: its reason and message, as it wrote them. */
function errorOf(what: string, status: number, text: string): KubeError {
  const failure = (parseJson(text) ?? {}) as { reason?: string; message?: string };
  return new KubeError(
    status,
    failure.reason ?? "Unknown",
    failure.message ?? `${what}: HTTP ${status} ${text.slice(0, 200)}`,
  );
}

export const GROUP = "modelship.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

export const PLURALS: Record<string, string> = {
  ModelRepository: "modelrepositories",
  Model: "models",
  ModelBuild: "modelbuilds",
  ModelDeployment: "modeldeployments",
};

/** A kind's collection in one namespace, or in all of them (`namespace` undefined). */
export function customCollectionPath(kind: string, namespace: string | undefined): string {
  return namespace === undefined
    ? `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}`
    : customPath(kind, namespace);
}

export function customPath(kind: string, namespace: string, name?: string): string {
  const base = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURALS[kind]}`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}
