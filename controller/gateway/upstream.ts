// The gateway's connection to one replica agent. A replica takes one call at a time, so each
// gateway needs exactly one keep-alive connection per replica, used strictly in turn: no pool,
// no pipelining. That lets this be a small HTTP/1.1 client over a socket instead of node:http's
// general one, whose per-call machinery was most of the gateway's cost (docs/benchmarks.md).
// It speaks only to our agent, which always answers with a Content-Length and its code header;
// anything else at the address is a stranger, and its answer is never passed on. The agent may
// listen on TCP or on a Unix socket; the replica's secret, if any, goes with every request.
import { connect, type NetConnectOpts, type Socket } from "node:net";
import {
  CODE_HEADER,
  GATEWAY_SECRET_HEADER,
  isKnownCode,
  METRICS_HEADER,
  SERVES_HEADER,
  UUID_HEADER,
} from "../api/errors.ts";

/** What became of a call on a replica. */
export type UpstreamOutcome =
  | {
      kind: "answer";
      status: number;
      code: string;
      /** The agent's body, passed on as it is (a string from an agent in this process). */
      body: Buffer | string;
      /** The metrics the prediction tracked (JSON text), from the agent's metrics header. */
      metricsJson: string | undefined;
      /** What the replica serves (its serves header), when it tracked metrics. */
      serves: string | undefined;
    }
  /** The agent answered more than the gateway's response limit: it was not read. */
  | { kind: "too_large"; bytes: number }
  /** The call never reached a replica agent (no connection, or not an agent): send it elsewhere. */
  | { kind: "unreachable"; reason: string }
  /** The connection broke after the call was sent: it may have run. */
  | { kind: "lost"; reason: string }
  /** No answer within the replica's time: the agent answers by then, so it is broken. */
  | { kind: "silent" };

export type UpstreamResult =
  | UpstreamOutcome
  /**
   * The caller's deadline came first. The replica may still be running the call: `rest` settles
   * with what it does in the end (an answer nobody reads, or a failure).
   */
  | { kind: "late"; rest: Promise<UpstreamOutcome> };

const HEADER_END = Buffer.from("\r\n\r\n");
/**
 * An agent's head is a few hundred bytes, and a prediction's metrics at most 64 KB
 * (MAX_METRICS_BYTES); more without its end is not an agent's.
 */
const MAX_HEAD_BYTES = 128 * 1024;
/** How long a connection to a replica may take to open. */
const CONNECT_TIMEOUT_MS = 3000;
/** How long a probe waits for the answer to its GET /readyz, which an agent gives at once. */
export const PROBE_TIMEOUT_MS = 1000;

interface Pending {
  resolve: (result: UpstreamResult) => void;
  timer: NodeJS.Timeout;
  /** What was written, sent again once if a stale keep-alive connection drops it. */
  request: string;
  /** How long the replica has after the caller's deadline (0: the deadlines are the same). */
  graceAfterCallerMs: number;
  /** Set once the caller's deadline has passed (it was told): the timer is the replica's now. */
  settleLate: ((outcome: UpstreamOutcome) => void) | undefined;
  /** Bytes of the answer received so far. */
  receivedLength: number;
  /** The head's bytes, until its end has come. */
  headBytes: Buffer;
  /** Set once the head is parsed. */
  head?: Head;
  /** The body, allocated at its full length once the head is parsed, and how much is in. */
  body?: Buffer;
  bodyFilled: number;
}

/** Where a replica agent listens: a TCP address, or a Unix socket's path. */
export type ReplicaTarget = { host: string; port: number } | { socketPath: string };

/**
 * The target of a replica's URL: `http://host:port`, or `unix:/absolute/path.sock` for an agent
 * on a Unix socket (docs/gateway.md).
 */
export function targetOf(url: string): ReplicaTarget {
  if (url.startsWith("unix:")) return { socketPath: url.slice("unix:".length) };
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || 80) };
}

export interface ConnectionSettings {
  /** Sent as x-modelship-gateway-secret: the replica's secret (ReplicaAddress.secret). */
  secret?: string;
  /** An answer with a longer body is not read: `too_large`. */
  responseLimitBytes: number;
}

/** What a replica's 403 replica.forbidden means: it has a secret, and not ours. */
export const SECRET_REFUSED = "refused the gateway's secret";

export interface Head {
  status: number;
  /** The agent's code header; "" when there is none. */
  code: string;
  bodyStart: number;
  bodyLength: number;
  close: boolean;
  /** The agent's metrics and serves headers, when the prediction tracked metrics. */
  metricsJson: string | undefined;
  serves: string | undefined;
}

/**
 * How the gateway reaches one replica, one call at a time: a connection (ReplicaConnection), or
 * an agent in its own process (InProcessChannel, in-process.ts).
 */
export interface ReplicaChannel {
  /** Takes new settings (a rotated secret, the response limit) for the next call and probe. */
  configure(settings: ConnectionSettings): void;
  send(body: string, uuid: string, callerMs: number, replicaMs: number): Promise<UpstreamResult>;
  /** The caller has been answered; the call waits only to learn whether the replica is alive. */
  readonly late: boolean;
  close(): void;
  /** Whether an agent is there: what is wrong, or undefined. */
  probe(timeoutMs: number): Promise<string | undefined>;
}

export class ReplicaConnection implements ReplicaChannel {
  private readonly target: ReplicaTarget;
  /** The Host header's value. */
  private readonly authority: string;
  /** A call's head up to its Content-Length (the secret is in it), and a probe's request. */
  private requestLine = "";
  private probeRequest = "";
  private responseLimitBytes = 0;
  private socket: Socket | undefined;
  /** The socket has carried a call before: a reset before any answer means it went stale. */
  private reused = false;
  /** The socket has connected (before that, a failure means the call never left). */
  private connected = false;
  private pending: Pending | undefined;
  /** A probe's own connection, while one runs. */
  private probeSocket: Socket | undefined;
  /** One function for every call's timer, rather than a closure per call. */
  private readonly onTimer = () => this.timerFired();

  constructor(target: ReplicaTarget, settings: ConnectionSettings) {
    this.target = target;
    this.authority = "socketPath" in target ? "localhost" : `${target.host}:${target.port}`;
    this.configure(settings);
  }

  /** Takes new settings (a rotated secret) for the next call and probe. */
  configure(settings: ConnectionSettings): void {
    // A header value cannot carry a line break: that would let the secret add headers.
    if (settings.secret !== undefined && !/^[\x21-\x7e]+$/.test(settings.secret)) {
      throw new Error("a replica secret is printable ASCII without spaces");
    }
    const secretLine =
      settings.secret === undefined ? "" : `${GATEWAY_SECRET_HEADER}: ${settings.secret}\r\n`;
    this.requestLine = `POST /predict HTTP/1.1\r\nHost: ${this.authority}\r\nContent-Type: application/json\r\n${secretLine}`;
    this.probeRequest = `GET /readyz HTTP/1.1\r\nHost: ${this.authority}\r\n${secretLine}\r\n`;
    this.responseLimitBytes = settings.responseLimitBytes;
  }

  /**
   * Sends one call; the caller guarantees there is no other call on this connection. The
   * answer is awaited for `callerMs` (the caller's deadline; a connection not made by then
   * never carried the call) and the replica is given `replicaMs` ≥ `callerMs` in all before
   * it counts as silent.
   */
  send(body: string, uuid: string, callerMs: number, replicaMs: number): Promise<UpstreamResult> {
    return new Promise((resolve) => {
      // Head and body in one write: one packet for a small call.
      const request = `${this.requestLine}Content-Length: ${Buffer.byteLength(body)}\r\n${UUID_HEADER}: ${uuid}\r\n\r\n${body}`;
      this.pending = {
        resolve,
        timer: setTimeout(this.onTimer, callerMs),
        request,
        graceAfterCallerMs: replicaMs - callerMs,
        settleLate: undefined,
        receivedLength: 0,
        headBytes: EMPTY,
        bodyFilled: 0,
      };
      (this.socket ?? this.open()).write(request);
    });
  }

  /** The caller has been answered; the call waits only to learn whether the replica is alive. */
  get late(): boolean {
    return this.pending?.settleLate !== undefined;
  }

  /**
   * Closes the connection and any probe; a call on it ends as `lost` at once rather than at its
   * timeout.
   */
  close(): void {
    this.closeSocket();
    this.probeSocket?.destroy();
    if (this.pending)
      this.finish({ kind: "lost", reason: "the gateway closed the connection" }, false);
  }

  /**
   * Asks whether an agent is at the address, on a connection of its own: GET /readyz. Resolves
   * with what is wrong, or undefined when an agent answered (ready or not: a replica that is
   * not ready says so to calls, and is held back like a busy one).
   */
  probe(timeoutMs: number): Promise<string | undefined> {
    return new Promise((resolve) => {
      const socket = connect(this.connectOptions());
      this.probeSocket = socket;
      let received = Buffer.alloc(0);
      const end = (problem: string | undefined) => {
        clearTimeout(timer);
        socket.destroy();
        if (this.probeSocket === socket) this.probeSocket = undefined;
        resolve(problem);
      };
      const timer = setTimeout(
        () => end(`no answer to GET /readyz within ${timeoutMs} ms`),
        timeoutMs,
      );
      socket.once("connect", () => socket.write(this.probeRequest));
      socket.on("data", (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const headEnd = received.indexOf(HEADER_END);
        if (headEnd === -1) {
          if (received.length > MAX_HEAD_BYTES)
            end(`answered GET /readyz with no HTTP head${NOT_AN_AGENT}`);
          return;
        }
        const head = parseHead(
          received.toString("latin1", 0, headEnd),
          headEnd + HEADER_END.length,
        );
        if (!head) {
          end(
            `answered GET /readyz with something that is not HTTP with a Content-Length${NOT_AN_AGENT}`,
          );
          return;
        }
        const bodyEnd = head.bodyStart + head.bodyLength;
        if (head.bodyLength > MAX_HEAD_BYTES) {
          end(`answered GET /readyz with ${head.bodyLength} bytes${NOT_AN_AGENT}`);
          return;
        }
        if (received.length < bodyEnd) return;
        const body = received.toString("utf8", head.bodyStart, bodyEnd);
        end(readinessProblem(head.status, body, head.code));
      });
      // The first of these settles the promise; later calls of `end` change nothing.
      socket.on("error", (error) => end(error.message));
      socket.on("close", () => end("the connection closed before an answer to GET /readyz"));
    });
  }

  private connectOptions(): NetConnectOpts {
    const { target } = this;
    if ("socketPath" in target) return { path: target.socketPath };
    // URL hostnames keep IPv6 brackets ("[::1]"); sockets want the bare address.
    const host = target.host.startsWith("[") ? target.host.slice(1, -1) : target.host;
    return { host, port: target.port, noDelay: true };
  }

  /** The caller's deadline, then (if the replica has longer) the replica's. */
  private timerFired(): void {
    const pending = this.pending;
    if (!pending) return;
    if (!this.connected) {
      // The call is still in the socket's buffer: it never left, and must not leave later.
      this.socket?.destroy(new Error("no connection before the call's deadline"));
      return;
    }
    if (pending.settleLate || pending.graceAfterCallerMs === 0) {
      this.finish({ kind: "silent" }, true);
      return;
    }
    const rest = new Promise<UpstreamOutcome>((resolve) => {
      pending.settleLate = resolve;
    });
    pending.timer = setTimeout(this.onTimer, pending.graceAfterCallerMs);
    pending.resolve({ kind: "late", rest });
  }

  private open(): Socket {
    const socket = connect(this.connectOptions());
    this.socket = socket;
    this.reused = false;
    this.connected = false;
    // A replica at an address that does not answer must not hold a call for its whole timeout.
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => {
      if (!this.connected)
        socket.destroy(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`));
    });
    socket.once("connect", () => {
      this.connected = true;
      socket.setTimeout(0);
    });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (error: NodeJS.ErrnoException) =>
      this.onBroken(socket, error.message, error.code),
    );
    socket.on("close", () => this.onBroken(socket, "the connection closed"));
    return socket;
  }

  private closeSocket(): void {
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
  }

  private onBroken(socket: Socket, reason: string, code?: string): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    const pending = this.pending;
    if (!pending) return;
    if (pending.receivedLength === 0 && this.reused && code === "ECONNRESET") {
      // The agent closed this idle keep-alive connection as we wrote: the call never arrived,
      // and the replica is not broken. Once on a fresh connection (which is not `reused`).
      this.open().write(pending.request);
      return;
    }
    // A connection never made never carried the call (refused, unknown host, no route, no
    // answer). Anything else may have run it.
    const neverArrived = pending.receivedLength === 0 && !this.connected;
    this.finish({ kind: neverArrived ? "unreachable" : "lost", reason }, false);
  }

  private onData(received: Buffer): void {
    let chunk = received;
    const pending = this.pending;
    if (!pending) {
      // Bytes nobody asked for: the connection is out of step; start afresh next time.
      this.closeSocket();
      return;
    }
    pending.receivedLength += chunk.length;
    if (pending.body === undefined) {
      const rest = this.readHead(pending, chunk);
      if (rest === undefined) return;
      chunk = rest;
    }
    const body = pending.body as Buffer;
    // Each byte is copied once, into a body of its final size: a 40 MB answer in 64 KB chunks
    // must not be concatenated again with every chunk.
    pending.bodyFilled += chunk.copy(body, pending.bodyFilled);
    if (pending.bodyFilled < body.length) return;
    const head = pending.head as Head;
    this.finish(
      {
        kind: "answer",
        status: head.status,
        code: head.code,
        body,
        metricsJson: head.metricsJson,
        serves: head.serves,
      },
      head.close,
    );
  }

  /**
   * Gathers the head; once it is complete, allocates the body and returns the bytes of it that
   * came with the head (undefined while the head is incomplete, or when the call is finished:
   * not an agent, or an answer over the limit).
   */
  private readHead(pending: Pending, chunk: Buffer): Buffer | undefined {
    const data = pending.headBytes.length === 0 ? chunk : Buffer.concat([pending.headBytes, chunk]);
    const end = data.indexOf(HEADER_END);
    if (end === -1) {
      pending.headBytes = data;
      if (data.length > MAX_HEAD_BYTES) {
        this.finish({ kind: "unreachable", reason: `sent no HTTP head${NOT_AN_AGENT}` }, true);
      }
      return undefined;
    }
    const head = agentHead(data.toString("latin1", 0, end), end + HEADER_END.length);
    if (typeof head === "string") {
      // Not our agent: it did not run the model, so the call may go to another replica.
      this.finish({ kind: "unreachable", reason: head }, true);
      return undefined;
    }
    if (head.bodyLength > this.responseLimitBytes) {
      // Not read: the connection cannot carry another call after an unread body.
      this.finish({ kind: "too_large", bytes: head.bodyLength }, true);
      return undefined;
    }
    pending.head = head;
    pending.headBytes = EMPTY;
    pending.body = Buffer.allocUnsafe(head.bodyLength);
    return data.subarray(head.bodyStart, head.bodyStart + head.bodyLength);
  }

  private finish(outcome: UpstreamOutcome, closeSocket: boolean): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    clearTimeout(pending.timer);
    if (closeSocket) this.closeSocket();
    else this.reused = true;
    (pending.settleLate ?? pending.resolve)(outcome);
  }
}

const NOT_AN_AGENT = ": not a modelship replica agent";
const EMPTY = Buffer.alloc(0);

/** What an agent's answer code means for the call and the replica. */
export type AnswerVerdict =
  /** The model's answer (a result or its error): the caller gets it. */
  | { kind: "relay" }
  /** The replica turned the call away and is fine: another replica may take it. */
  | { kind: "refused"; notReady: boolean }
  /** The call did not run, and the replica will refuse every call: eject it, relay nothing. */
  | { kind: "eject"; reason: string };

/** The agent's own codes (replica.*) are for the gateway; a caller never gets one. */
export function answerVerdict(code: string): AnswerVerdict {
  if (code === "replica.busy") return { kind: "refused", notReady: false };
  if (code === "replica.not_ready") return { kind: "refused", notReady: true };
  if (code === "replica.forbidden") return { kind: "eject", reason: SECRET_REFUSED };
  if (code.startsWith("replica.")) {
    return {
      kind: "eject",
      reason: `answered ${code}, a replica's code this gateway does not know`,
    };
  }
  return { kind: "relay" };
}

/**
 * The head of an answer to a call (`text`, up to the blank line), or why it is not an agent's:
 * the agent always sends a Content-Length and a code of the registry in its code header.
 */
export function agentHead(text: string, bodyStart: number): Head | string {
  const head = parseHead(text, bodyStart);
  if (!head) return `answered something that is not HTTP with a Content-Length${NOT_AN_AGENT}`;
  // An agent's answers all have a body: a 1xx, 204 or 304 passed on would be a head without
  // one, and leave the caller's connection out of step.
  if (head.status < 200 || head.status > 599 || head.status === 204 || head.status === 304) {
    return `answered HTTP ${head.status}, a status an agent never answers with${NOT_AN_AGENT}`;
  }
  if (head.code === "") {
    return `answered HTTP ${head.status} without an ${CODE_HEADER} header${NOT_AN_AGENT}`;
  }
  if (!isKnownCode(head.code)) {
    return `answered HTTP ${head.status} with the unknown code "${head.code}"${NOT_AN_AGENT}`;
  }
  return head;
}

/**
 * What is wrong with an answer to GET /readyz (undefined when it is an agent's): the agent
 * answers 200 when ready and 503 when not, with `ready` and `state` in a JSON body.
 */
export function readinessProblem(status: number, body: string, code = ""): string | undefined {
  // An agent with another secret: it would refuse every call.
  if (status === 403 && code === "replica.forbidden") return SECRET_REFUSED;
  const wrong = `answered GET /readyz with HTTP ${status}${NOT_AN_AGENT}`;
  if (status !== 200 && status !== 503) return wrong;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return wrong;
  }
  const { ready, state } = (parsed ?? {}) as { ready?: unknown; state?: unknown };
  return typeof ready === "boolean" && typeof state === "string" ? undefined : wrong;
}

/** Status, our code header, Content-Length and Connection from an answer's head. */
function parseHead(text: string, bodyStart: number): Head | undefined {
  const lines = text.split("\r\n");
  const status = Number((lines[0] ?? "").split(" ")[1]);
  if (!(lines[0] ?? "").startsWith("HTTP/") || !Number.isInteger(status)) return undefined;
  let code = "";
  let bodyLength = -1;
  let close = false;
  let metricsJson: string | undefined;
  let serves: string | undefined;
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index] as string;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") bodyLength = Number(value);
    else if (name === CODE_HEADER) code = value;
    else if (name === "connection") close = value.toLowerCase() === "close";
    else if (name === METRICS_HEADER) metricsJson = value;
    else if (name === SERVES_HEADER) serves = value;
  }
  if (!(bodyLength >= 0)) return undefined;
  return { status, code, bodyStart, bodyLength, close, metricsJson, serves };
}
