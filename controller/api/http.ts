// Small HTTP helpers shared by the replica agent and the gateway: a bounded body reader, the
// JSON answers both send, Unix-socket listening, and a scanner that finds members in JSON text
// without parsing it (so that numbers pass through exactly as they were written).
import { chmod, lstat, unlink } from "node:fs/promises";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { CODE_HEADER, ERROR_STATUS, type ErrorBody, type ErrorCode } from "./errors.ts";

/**
 * Options for every modelship HTTP server. Idle keep-alive connections stay open longer than any
 * client keeps them (Node's default is 5 s; a client that reuses a connection the server has
 * just closed sees "other side closed"), and small answers are not held back by Nagle.
 */
export const SERVER_OPTIONS = { noDelay: true, keepAliveTimeout: 65_000 } as const;

/** CDSW's request limit: JSON is a poor carrier for large payloads; pass a URL instead. */
export const DEFAULT_BODY_LIMIT_BYTES = 5 * 1024 * 1024;
/** The largest answer the agent and the gateway pass on: `502 model.response_too_large`. */
export const DEFAULT_RESPONSE_LIMIT_BYTES = 50 * 1024 * 1024;

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

/**
 * Listens on a Unix socket at `path` (absolute) and returns its URL, `unix:<path>`. Only the
 * socket's owner may connect (mode 0600): the file's permissions are who may call. A socket file
 * left by a process that died is replaced; one that a live server answers on is not.
 */
export async function listenOnSocket(server: Server, path: string): Promise<string> {
  if (await socketIsStale(path)) await unlink(path);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => {
      server.off("listening", onListening);
      reject(new Error(`cannot listen on ${path}: ${error.message}`));
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(path);
  });
  // The umask usually denies others already (connecting needs write permission); this does not
  // depend on it.
  await chmod(path, 0o600);
  return `unix:${path}`;
}

/** A socket file at `path` that nobody answers on: what a killed server leaves behind. */
async function socketIsStale(path: string): Promise<boolean> {
  const stats = await lstat(path).catch(() => undefined);
  if (!stats?.isSocket()) return false;
  return new Promise((resolve) => {
    const probe = connect({ path });
    probe.once("connect", () => {
      probe.destroy();
      resolve(false);
    });
    probe.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

/** Where a member's value lies in a JSON text: `text.slice(start, end)` is its source. */
export interface JsonSpan {
  start: number;
  end: number;
}

const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;

/**
 * Checks that `text` is exactly one JSON value (RFC 8259) and, when it is an object, returns
 * where each of its top-level members' values lies, by name; undefined for any other value. A
 * name given twice maps to its last value, as JSON.parse keeps the last. Throws a SyntaxError
 * that names the offset of the first character that is not JSON.
 *
 * This lets a JSON text be forwarded or spliced as the bytes it is: parsing into JavaScript
 * values would round integers beyond 2^53 and turn 1e400 into Infinity. It keeps a stack of the
 * containers it is in rather than recursing, so nesting depth costs no call stack.
 */
export function jsonTopLevelMembers(text: string): Map<string, JsonSpan> | undefined {
  const members = new Map<string, JsonSpan>();
  /** true for an object, false for an array, outermost first. */
  const open: boolean[] = [];
  let index = skipWhitespace(text, 0);
  const isObject = text.charCodeAt(index) === OPEN_OBJECT;
  /** The top-level member being read: its name and where its value starts. */
  let name = "";
  let valueStart = 0;
  /** Reads `"name":` at `index` and moves to the value; remembers it at the top level. */
  const enterMember = () => {
    const member = scanMemberName(text, index);
    if (open.length === 1) {
      name = JSON.parse(text.slice(index, member.nameEnd)) as string;
      valueStart = member.valueStart;
    }
    index = member.valueStart;
  };
  for (;;) {
    // A value starts at `index`.
    const first = text.charCodeAt(index);
    if (first === OPEN_OBJECT || first === OPEN_ARRAY) {
      const object = first === OPEN_OBJECT;
      open.push(object);
      index = skipWhitespace(text, index + 1);
      if (text.charCodeAt(index) !== (object ? CLOSE_OBJECT : CLOSE_ARRAY)) {
        if (object) enterMember();
        continue;
      }
      open.pop();
      index += 1;
    } else {
      index = scanScalar(text, index);
    }
    // A value ended at `index`: record it if it is a top-level member's, and close every
    // container that ends with it.
    for (;;) {
      if (open.length === 1 && open[0] === true)
        members.set(name, { start: valueStart, end: index });
      index = skipWhitespace(text, index);
      if (open.length === 0) {
        if (index !== text.length) throw notJson(text, index, "more after the value");
        return isObject ? members : undefined;
      }
      const object = open[open.length - 1] as boolean;
      const next = text.charCodeAt(index);
      if (next === (object ? CLOSE_OBJECT : CLOSE_ARRAY)) {
        open.pop();
        index += 1;
        continue;
      }
      if (next !== COMMA) throw notJson(text, index, `"," or "${object ? "}" : "]"}" expected`);
      index = skipWhitespace(text, index + 1);
      if (object) enterMember();
      break;
    }
  }
}

/** `"name":` at `index`: where the name ends and where the value after the colon starts. */
function scanMemberName(text: string, index: number): { nameEnd: number; valueStart: number } {
  if (text.charCodeAt(index) !== QUOTE) throw notJson(text, index, "a member name expected");
  const nameEnd = scanString(text, index);
  const colon = skipWhitespace(text, nameEnd);
  if (text.charCodeAt(colon) !== COLON) throw notJson(text, colon, '":" expected');
  return { nameEnd, valueStart: skipWhitespace(text, colon + 1) };
}

/** A string, number, true, false or null at `index`; returns the index after it. */
function scanScalar(text: string, index: number): number {
  const first = text.charCodeAt(index);
  if (first === QUOTE) return scanString(text, index);
  if (first === MINUS || isDigit(first)) return scanNumber(text, index);
  for (const word of ["true", "false", "null"]) {
    if (text.startsWith(word, index)) return index + word.length;
  }
  throw notJson(text, index, "a value expected");
}

function scanString(text: string, index: number): number {
  let at = index + 1;
  for (;;) {
    const code = text.charCodeAt(at);
    if (code === QUOTE) return at + 1;
    if (code === BACKSLASH) {
      at += escapeLength(text, at);
    } else if (code < 0x20 || Number.isNaN(code)) {
      // NaN: the text ended inside the string.
      throw notJson(text, at, Number.isNaN(code) ? "unterminated string" : "control character");
    } else {
      at += 1;
    }
  }
}

/** The length of the escape sequence at `index` (a backslash): \" \\ \/ \b \f \n \r \t \uXXXX. */
function escapeLength(text: string, index: number): number {
  const kind = text[index + 1] ?? "";
  if ('"\\/bfnrt'.includes(kind) && kind !== "") return 2;
  if (kind === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(index + 2, index + 6))) return 6;
  throw notJson(text, index, "invalid escape");
}

/** -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
function scanNumber(text: string, index: number): number {
  let at = index;
  if (text.charCodeAt(at) === MINUS) at += 1;
  if (text.charCodeAt(at) === 0x30) at += 1;
  else at = scanDigits(text, at);
  if (text.charCodeAt(at) === 0x2e) at = scanDigits(text, at + 1);
  const exponent = text.charCodeAt(at);
  if (exponent === 0x65 || exponent === 0x45) {
    at += 1;
    const sign = text.charCodeAt(at);
    if (sign === 0x2b || sign === MINUS) at += 1;
    at = scanDigits(text, at);
  }
  return at;
}

/** One digit or more at `index`. */
function scanDigits(text: string, index: number): number {
  if (!isDigit(text.charCodeAt(index))) throw notJson(text, index, "a digit expected");
  let at = index + 1;
  while (isDigit(text.charCodeAt(at))) at += 1;
  return at;
}

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

function skipWhitespace(text: string, index: number): number {
  let at = index;
  for (;;) {
    const code = text.charCodeAt(at);
    if (code !== 0x20 && code !== 0x0a && code !== 0x0d && code !== 0x09) return at;
    at += 1;
  }
}

function notJson(text: string, index: number, what: string): SyntaxError {
  const found = index >= text.length ? "the end" : JSON.stringify(text.slice(index, index + 10));
  return new SyntaxError(`not JSON at offset ${index}: ${what}, found ${found}`);
}
