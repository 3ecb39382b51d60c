// Small HTTP helpers shared by the replica agent and the gateway: a bounded body reader and the
// JSON answers both send.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { CODE_HEADER, ERROR_STATUS, type ErrorBody, type ErrorCode } from "./errors.ts";

/**
 * Options for every modelship HTTP server. Idle keep-alive connections stay open longer than any
 * client keeps them (Node's default is 5 s; a client that reuses a connection the server has
 * just closed sees "other side closed"), and small answers are not held back by Nagle.
 */
export const SERVER_OPTIONS = { noDelay: true, keepAliveTimeout: 65_000 } as const;

/** CDSW's request limit: JSON is a poor carrier for large payloads; pass a URL instead. */
export const DEFAULT_BODY_LIMIT_BYTES = 5 * 1024 * 1024;

export class BodyTooLarge extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(
      `the request body is larger than ${formatBytes(limit)}; send a URL to large data instead`,
    );
    this.limit = limit;
  }
}

export function formatBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MB` : `${bytes} bytes`;
}

/** Reads the whole body as UTF-8, or rejects with BodyTooLarge as soon as it passes `limit`. */
export function readBody(request: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(request.headers["content-length"]);
  if (declared > limit) {
    // Say no before reading megabytes we will not use.
    request.resume();
    return Promise.reject(new BodyTooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        request.removeAllListeners("data");
        request.resume();
        reject(new BodyTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => {
      resolve(
        chunks.length === 1
          ? (chunks[0] as Buffer).toString("utf8")
          : Buffer.concat(chunks).toString("utf8"),
      );
    });
    request.on("error", reject);
  });
}

/** Sends a JSON body that is already encoded, with its code in a header for proxies and logs. */
export function sendJson(
  response: ServerResponse,
  status: number,
  body: string,
  code?: string,
): void {
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  };
  if (code) headers[CODE_HEADER] = code;
  response.writeHead(status, headers);
  response.end(body);
}

export function errorBody(code: ErrorCode, message: string, extra?: Partial<ErrorBody>): string {
  return JSON.stringify({ success: false, error: code, message, ...extra });
}

export function sendError(
  response: ServerResponse,
  code: ErrorCode,
  message: string,
  extra?: Partial<ErrorBody>,
): void {
  sendJson(response, ERROR_STATUS[code], errorBody(code, message, extra), code);
}

/** Listens and returns the URL; port 0 picks a free port, which the URL then names. */
export async function listen(server: Server, host: string, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    // Each outcome removes the other's listener: a stray `error` listener would hide the
    // server's later errors.
    const onError = (error: Error) => {
      server.off("listening", onListening);
      reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`));
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(port, host);
  });
  const address = server.address() as AddressInfo;
  return `http://${host}:${address.port}`;
}

/** Stops taking connections, lets answers in flight finish, then closes idle keep-alives. */
export async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  await closed;
}
