// The gateway's connection to one replica agent. A replica takes one call at a time, so each
// gateway needs exactly one keep-alive connection per replica, used strictly in turn: no pool,
// no pipelining. That lets this be a small HTTP/1.1 client over a socket instead of node:http's
// general one, whose per-call machinery was most of the gateway's cost (docs/benchmarks.md).
// It speaks only to our agent, which always answers with a Content-Length.
import { connect, type Socket } from "node:net";
import { CODE_HEADER, UUID_HEADER } from "../api/errors.ts";

export type UpstreamResult =
  | { kind: "answer"; status: number; code: string; body: Buffer }
  /** The call never reached the replica: it is safe to send it to another one. */
  | { kind: "unreachable"; reason: string }
  /** The connection broke after the call was sent: it may have run. */
  | { kind: "lost"; reason: string }
  | { kind: "timeout" };

const HEADER_END = Buffer.from("\r\n\r\n");
/** How long a connection to a replica may take to open. */
const CONNECT_TIMEOUT_MS = 3000;

interface Pending {
  resolve: (result: UpstreamResult) => void;
  timer: NodeJS.Timeout;
  /** Bytes of the answer so far. */
  received: Buffer[];
  receivedLength: number;
  /** Set once the head is parsed. */
  head?: { status: number; code: string; bodyStart: number; bodyLength: number; close: boolean };
}

export class ReplicaConnection {
  private readonly host: string;
  private readonly port: number;
  private readonly requestLine: string;
  private socket: Socket | undefined;
  /** The socket has carried a call before: a reset before any answer means it went stale. */
  private reused = false;
  /** The socket has connected (before that, a failure means the call never left). */
  private connected = false;
  private pending: Pending | undefined;

  constructor(host: string, port: number) {
    this.host = host;
    this.port = port;
    this.requestLine = `POST /predict HTTP/1.1\r\nHost: ${host}:${port}\r\nContent-Type: application/json\r\n`;
  }

  /** Sends one call; the caller guarantees there is no other call on this connection. */
  send(body: string, uuid: string, timeoutMs: number): Promise<UpstreamResult> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.finish({ kind: "timeout" }, true), timeoutMs);
      this.pending = { resolve, timer, received: [], receivedLength: 0 };
      const socket = this.socket ?? this.open();
      // Head and body in one write: one packet for a small call.
      socket.write(
        `${this.requestLine}Content-Length: ${Buffer.byteLength(body)}\r\n${UUID_HEADER}: ${uuid}\r\n\r\n${body}`,
      );
    });
  }

  /** Closes the connection; a call on it ends as `lost` at once rather than at its timeout. */
  close(): void {
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
    if (this.pending)
      this.finish({ kind: "lost", reason: "the gateway closed the connection" }, false);
  }

  private open(): Socket {
    // URL hostnames keep IPv6 brackets ("[::1]"); sockets want the bare address.
    const host = this.host.startsWith("[") ? this.host.slice(1, -1) : this.host;
    const socket = connect({ host, port: this.port, noDelay: true });
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

  private onBroken(socket: Socket, reason: string, code?: string): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    const pending = this.pending;
    if (!pending) return;
    // Nothing came back: a connection never made never carried the call (refused, unknown
    // host, no route, no answer), and a reset of a reused idle connection is the agent closing
    // it as we wrote. Anything else may have run the call.
    const neverArrived =
      pending.receivedLength === 0 && (!this.connected || (this.reused && code === "ECONNRESET"));
    this.finish({ kind: neverArrived ? "unreachable" : "lost", reason }, false);
  }

  private onData(chunk: Buffer): void {
    const pending = this.pending;
    if (!pending) {
      // Bytes nobody asked for: the connection is out of step; start afresh next time.
      this.close();
      return;
    }
    pending.received.push(chunk);
    pending.receivedLength += chunk.length;
    const data =
      pending.received.length === 1
        ? chunk
        : Buffer.concat(pending.received, pending.receivedLength);
    if (pending.received.length > 1) pending.received = [data];
    if (!pending.head) {
      const end = data.indexOf(HEADER_END);
      if (end === -1) return;
      pending.head = parseHead(data.toString("latin1", 0, end), end + HEADER_END.length);
      if (!pending.head) {
        this.finish({ kind: "lost", reason: "the replica's answer is not HTTP" }, true);
        return;
      }
    }
    const { head } = pending;
    if (data.length < head.bodyStart + head.bodyLength) return;
    const body = data.subarray(head.bodyStart, head.bodyStart + head.bodyLength);
    this.finish({ kind: "answer", status: head.status, code: head.code, body }, head.close);
  }

  private finish(result: UpstreamResult, closeSocket: boolean): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    clearTimeout(pending.timer);
    if (closeSocket) this.close();
    else this.reused = true;
    pending.resolve(result);
  }
}

/** Status, our code header, Content-Length and Connection from an answer's head. */
function parseHead(
  text: string,
  bodyStart: number,
):
  | { status: number; code: string; bodyStart: number; bodyLength: number; close: boolean }
  | undefined {
  const lines = text.split("\r\n");
  const status = Number((lines[0] ?? "").split(" ")[1]);
  if (!Number.isInteger(status)) return undefined;
  let code = "unknown";
  let bodyLength = -1;
  let close = false;
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index] as string;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") bodyLength = Number(value);
    else if (name === CODE_HEADER) code = value;
    else if (name === "connection") close = value.toLowerCase() === "close";
  }
  if (!(bodyLength >= 0)) return undefined;
  return { status, code, bodyStart, bodyLength, close };
}
