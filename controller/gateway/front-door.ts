// The gateway's front door (docs/gateway.md#the-front-door): the server callers connect to.
// node:http's request and response machinery (IncomingMessage, ServerResponse, their streams
// and events) costs more per call than everything else the gateway does; so the common call —
// a POST of a predict path with a Content-Length, its whole head in hand — is read and answered
// here, directly on the socket. Anything else — another route, a chunked or oversized body, an
// Expect header, a head in pieces, anything unusual or malformed — hands the connection to
// node:http for the rest of its life, at a request boundary with nothing read of that request,
// and node:http answers it as it always has (a 400 for a malformed head, 413 for a large body).
// The head this file accepts is a strict subset of what node:http accepts, so nothing it reads
// can mean something else to node:http or to a proxy in front.
import { type RequestListener, Server, type ServerOptions, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { CODE_HEADER } from "../api/errors.ts";

/** What a call's path names: POST /model has no name (its body's access key says which model). */
export type CallPath = { name: string | undefined };

/**
 * The call a path names: `/model`, or `/models/{name}/predict` with the name decoded;
 * undefined for any other path (a query string is not part of it).
 */
export function callPath(path: string): CallPath | undefined {
  if (path === "/model") return { name: undefined };
  const segment = /^\/models\/([^/]+)\/predict$/.exec(path)?.[1];
  return segment === undefined ? undefined : { name: decodeName(segment) };
}

/** A path segment, decoded; one that is not valid percent-encoding names no model (and no crash). */
function decodeName(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The head of a call the front door takes itself. */
export interface CallHead extends CallPath {
  contentLength: number;
  authorization: string | undefined;
  /** The caller said `Connection: close`: the connection ends after the answer. */
  close: boolean;
}

/** node:http's default limit for a request's head (its maxHeaderSize): larger is a 431 there. */
const MAX_HEAD_BYTES = 16 * 1024;
/** More header lines than this is unusual enough to leave to node:http. */
const MAX_HEADER_LINES = 100;
const REQUEST_LINE = /^POST (\/[!-~]*) HTTP\/1\.1$/;
/** A field name is an RFC 9110 token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters (HTAB aside) have no place in a field value: a lone CR or LF included. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are what it finds
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * Reads a request's head (`text`: up to, not including, the blank line) if it is a call the
 * front door takes: `POST` of a call path over HTTP/1.1 with one Host, one Content-Length, at
 * most one Authorization, and no Transfer-Encoding, Expect or Upgrade. Undefined otherwise,
 * and node:http decides.
 */
export function readCallHead(text: string): CallHead | undefined {
  if (text.length > MAX_HEAD_BYTES) return undefined;
  const lines = text.split("\r\n");
  if (lines.length > MAX_HEADER_LINES + 1) return undefined;
  const target = REQUEST_LINE.exec(lines[0] as string)?.[1];
  if (target === undefined || target.includes("#")) return undefined;
  const query = target.indexOf("?");
  const path = callPath(query === -1 ? target : target.slice(0, query));
  if (!path) return undefined;
  let contentLength: number | undefined;
  let authorization: string | undefined;
  let hosts = 0;
  let close = false;
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index] as string;
    const colon = line.indexOf(":");
    // A line that starts with a space continues the one before (obs-fold): not a token name.
    const name = line.slice(0, colon);
    if (colon < 1 || !TOKEN.test(name)) return undefined;
    const value = trimWhitespace(line, colon + 1);
    if (CONTROL.test(value)) return undefined;
    switch (name.toLowerCase()) {
      case "content-length":
        if (contentLength !== undefined || !/^[0-9]{1,15}$/.test(value)) return undefined;
        contentLength = Number(value);
        break;
      case "host":
        hosts += 1;
        break;
      case "authorization":
        if (authorization !== undefined) return undefined;
        authorization = value;
        break;
      case "connection":
        for (const option of value.toLowerCase().split(",")) {
          const token = option.trim();
          if (token === "close") close = true;
          else if (token === "upgrade") return undefined;
        }
        break;
      case "transfer-encoding":
      case "expect":
      case "upgrade":
        return undefined;
    }
  }
  if (contentLength === undefined || hosts !== 1) return undefined;
  return { ...path, contentLength, authorization, close };
}

/**
 * `line` from `start`, without the spaces and tabs around it. A loop, not a regular expression:
 * `(.*?)[ \t]*$` takes time in the square of a run of spaces inside a value.
 */
function trimWhitespace(line: string, start: number): string {
  let from = start;
  let to = line.length;
  while (from < to && isWhitespace(line.charCodeAt(from))) from++;
  while (to > from && isWhitespace(line.charCodeAt(to - 1))) to--;
  return line.slice(from, to);
}

const isWhitespace = (code: number) => code === 0x20 || code === 0x09;

/** One call the front door read, for the gateway to answer. */
export interface FrontDoorCall extends CallPath {
  authorization: string | undefined;
  body: string;
  /** performance.now() when the bytes of its head came (as node:http stamps a request). */
  arrived: number;
}

/** Sends a call's answer: a JSON body and the gateway's code header. Once per call. */
export type CallAnswer = (status: number, code: string, body: string | Buffer) => void;

export interface FrontDoorHandlers {
  /** The largest body a call to this path may carry: a larger one goes to node:http (a 413). */
  bodyLimitOf(name: string | undefined): number;
  call(call: FrontDoorCall, answer: CallAnswer): void;
}

/**
 * What node:http waits beyond its advertised keep-alive timeout before it closes, unless the
 * server says otherwise (its keepAliveTimeoutBuffer).
 */
const KEEP_ALIVE_MARGIN_MS = 1000;
/** Bytes of pipelined requests held while a call runs, before the socket is paused. */
const PIPELINE_HOLD_BYTES = 64 * 1024;
/** Answers at most this large go out as one buffer (one write); larger ones as two. */
const ONE_WRITE_BYTES = 64 * 1024;
const HEAD_END = Buffer.from("\r\n\r\n");

/**
 * An HTTP server for the gateway: node:http's, with the front door before it. Every
 * connection starts at the front door; node:http gets the ones it hands over, and serves its
 * request listener as usual.
 */
export class FrontDoorServer extends Server {
  private readonly handlers: FrontDoorHandlers;
  /** node:http's own 'connection' listener: what a handed-over connection gets. */
  private readonly nodeConnectionListeners: ((socket: Socket) => void)[];
  private readonly doors = new Set<FrontDoorConnection>();

  constructor(
    options: ServerOptions,
    requestListener: RequestListener,
    handlers: FrontDoorHandlers,
  ) {
    super(options, requestListener);
    this.handlers = handlers;
    this.nodeConnectionListeners = this.listeners("connection") as ((socket: Socket) => void)[];
    this.removeAllListeners("connection");
    this.on("connection", (socket: Socket) => {
      this.doors.add(new FrontDoorConnection(this, socket));
    });
  }

  /** Calls whose body is still coming in at the front door (not yet calls of the gateway's). */
  get bodiesArriving(): number {
    let count = 0;
    for (const door of this.doors) if (door.receivingBody) count++;
    return count;
  }

  /** Closes the idle connections, the front door's included (server.close() calls it too). */
  override closeIdleConnections(): void {
    super.closeIdleConnections();
    for (const door of this.doors) if (door.idle) door.destroy();
  }

  override closeAllConnections(): void {
    super.closeAllConnections();
    for (const door of this.doors) door.destroy();
  }

  /** @internal For FrontDoorConnection. */
  call(call: FrontDoorCall, answer: CallAnswer): void {
    this.handlers.call(call, answer);
  }

  /** @internal For FrontDoorConnection. */
  bodyLimitOf(name: string | undefined): number {
    return this.handlers.bodyLimitOf(name);
  }

  /** @internal The connection leaves the front door: closed, or handed to node:http. */
  forget(door: FrontDoorConnection): void {
    this.doors.delete(door);
  }

  /** @internal Gives node:http a connection, as if it had just been accepted. */
  handToNode(socket: Socket): void {
    for (const listener of this.nodeConnectionListeners) listener.call(this, socket);
  }
}

/** A call whose head has been read, waiting for the rest of its body. */
interface PendingBody {
  head: CallHead;
  /**
   * What has come of the body. Not a buffer of the length its head claims: a caller could
   * claim the limit on many connections and send nothing.
   */
  chunks: Buffer[];
  received: number;
  /** performance.now() when its head came: a call's time counts from there on either path. */
  arrived: number;
  /** The server's requestTimeout (none when it is 0). */
  timer: NodeJS.Timeout | undefined;
}

/** One connection at the front door: its calls, one at a time, until it closes or is handed on. */
class FrontDoorConnection {
  private readonly server: FrontDoorServer;
  private readonly socket: Socket;
  /** Bytes received and not yet read as a request. */
  private buffered: Buffer | undefined;
  private pending: PendingBody | undefined;
  /** A call is being answered (or its answer is draining): later requests wait. */
  private busy = false;
  /** The caller asked to close, or ended its side: no request after the current one. */
  private closing = false;
  /** The connection's last bytes are written: it closes once they are out. */
  private finished = false;
  /** performance.now() when the first of the buffered bytes came. */
  private bufferedAt = 0;
  private readonly onData = (chunk: Buffer) => this.received(chunk);
  private readonly onEnd = () => this.ended();
  private readonly onTimeout = () => {
    // A caller that has not read its last answer in all this time is not going to.
    if (this.idle || this.finished) this.destroy();
  };
  private readonly onClose = () => this.detach();
  private readonly onError = () => this.socket.destroy();

  constructor(server: FrontDoorServer, socket: Socket) {
    this.server = server;
    this.socket = socket;
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onClose);
    socket.on("error", this.onError);
    // node:http's idle limit for keep-alive connections, here for the front door's, with the
    // second node:http adds to what it advertises (a caller reusing the connection just inside
    // the advertised time must not meet a close). Its event comes after each idle spell, and is
    // ignored while a call runs or a body comes in. 0: no limit, as in node:http.
    if (server.keepAliveTimeout > 0) {
      const margin = (server as { keepAliveTimeoutBuffer?: number }).keepAliveTimeoutBuffer;
      socket.setTimeout(server.keepAliveTimeout + (margin ?? KEEP_ALIVE_MARGIN_MS));
      socket.on("timeout", this.onTimeout);
    }
  }

  /** Waiting for the next request, with none of it received. */
  get idle(): boolean {
    return !this.busy && this.pending === undefined && this.buffered === undefined;
  }

  get receivingBody(): boolean {
    return this.pending !== undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private received(chunk: Buffer): void {
    const pending = this.pending;
    if (pending) {
      this.fill(pending, chunk);
      return;
    }
    if (this.buffered) {
      this.buffered = Buffer.concat([this.buffered, chunk]);
    } else {
      this.buffered = chunk;
      // A pipelined call's time counts from when its bytes came, not from when its turn came.
      this.bufferedAt = performance.now();
    }
    if (!this.busy) this.next();
    else if (this.buffered.length > PIPELINE_HOLD_BYTES) this.socket.pause();
  }

  /** Reads the next request from what is buffered: takes it, waits for its body, or hands on. */
  private next(): void {
    const data = this.buffered;
    if (data === undefined || this.busy) return;
    if (this.closing) {
      this.finish();
      return;
    }
    const arrived = this.bufferedAt;
    const end = data.indexOf(HEAD_END);
    const head = end === -1 ? undefined : readCallHead(data.toString("latin1", 0, end));
    if (!head || head.contentLength > this.server.bodyLimitOf(head.name)) {
      this.handOver();
      return;
    }
    const bodyStart = end + HEAD_END.length;
    const available = data.length - bodyStart;
    if (available >= head.contentLength) {
      const bodyEnd = bodyStart + head.contentLength;
      this.buffered = bodyEnd < data.length ? data.subarray(bodyEnd) : undefined;
      this.start(head, data.toString("utf8", bodyStart, bodyEnd), arrived);
      return;
    }
    // The body is still coming: its chunks are kept, and joined once when it is all in.
    this.buffered = undefined;
    this.pending = {
      head,
      chunks: available > 0 ? [data.subarray(bodyStart)] : [],
      received: available,
      arrived,
      timer:
        this.server.requestTimeout > 0
          ? setTimeout(() => this.refuse("408 Request Timeout"), this.server.requestTimeout)
          : undefined,
    };
  }

  private fill(pending: PendingBody, chunk: Buffer): void {
    const wanted = pending.head.contentLength - pending.received;
    const part = chunk.length > wanted ? chunk.subarray(0, wanted) : chunk;
    pending.chunks.push(part);
    pending.received += part.length;
    if (pending.received < pending.head.contentLength) return;
    clearTimeout(pending.timer);
    this.pending = undefined;
    if (part.length < chunk.length) {
      this.buffered = chunk.subarray(part.length);
      this.bufferedAt = performance.now();
    }
    const body = Buffer.concat(pending.chunks, pending.received).toString("utf8");
    this.start(pending.head, body, pending.arrived);
  }

  /**
   * node:http's answer to a request it cannot take — a body that did not come within the
   * requestTimeout (408), or that the caller cut short (400) — and the connection's end: no
   * more of it is read.
   */
  private refuse(status: string): void {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
    this.buffered = undefined;
    this.socket.off("data", this.onData);
    if (this.socket.writable) this.socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    this.finish();
  }

  /** Ends the connection once what is written has gone (node:http ends its own so). */
  private finish(): void {
    this.busy = true;
    this.finished = true;
    this.socket.destroySoon();
  }

  private start(head: CallHead, body: string, arrived: number): void {
    this.busy = true;
    if (head.close) this.closing = true;
    let answered = false;
    this.server.call(
      {
        name: head.name,
        authorization: head.authorization,
        body,
        arrived,
      },
      (status, code, answerBody) => {
        if (answered) return;
        answered = true;
        this.answer(status, code, answerBody);
      },
    );
  }

  private answer(status: number, code: string, body: string | Buffer): void {
    const { socket } = this;
    if (socket.destroyed) return;
    // A server that has stopped listening is shutting down: this connection's last answer.
    if (!this.server.listening) this.closing = true;
    const length = typeof body === "string" ? Buffer.byteLength(body) : body.length;
    // The head node:http would send for the same answer.
    const head =
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\ncontent-type: application/json\r\n` +
      `content-length: ${length}\r\n${CODE_HEADER}: ${code}\r\nDate: ${httpDate()}\r\n` +
      (this.closing ? "Connection: close\r\n\r\n" : this.keepAliveLines());
    if (typeof body === "string") {
      socket.write(head + body);
    } else if (length <= ONE_WRITE_BYTES) {
      const whole = Buffer.allocUnsafe(head.length + length);
      whole.write(head, 0, "latin1");
      body.copy(whole, head.length);
      socket.write(whole);
    } else {
      socket.cork();
      socket.write(head, "latin1");
      socket.write(body);
      socket.uncork();
    }
    if (this.closing) {
      this.finish();
      return;
    }
    // A caller that does not read its answers gets no more of them until it does.
    if (socket.writableNeedDrain) socket.once("drain", () => this.done());
    else this.done();
  }

  /** node:http's lines for a connection kept alive: the timeout only when there is one. */
  private keepAliveLines(): string {
    const timeout = this.server.keepAliveTimeout;
    return timeout > 0
      ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(timeout / 1000)}\r\n\r\n`
      : "Connection: keep-alive\r\n\r\n";
  }

  private done(): void {
    // The caller ended its side while its answer drained.
    if (this.closing) {
      this.finish();
      return;
    }
    this.busy = false;
    if (this.socket.isPaused()) this.socket.resume();
    // A pipelined request is taken on the next tick, not inside the answer of this one.
    if (this.buffered !== undefined) process.nextTick(() => this.next());
  }

  private ended(): void {
    this.closing = true;
    // A body cut short will never be whole: there is no call to answer.
    if (this.pending) this.refuse("400 Bad Request");
    else if (this.idle) this.finish();
  }

  /**
   * Hands the connection, with the bytes of the request not yet read, to node:http: the
   * front door takes no more of it.
   */
  private handOver(): void {
    const { socket } = this;
    const rest = this.buffered;
    this.detach();
    socket.setTimeout(0);
    this.server.handToNode(socket);
    if (rest) socket.unshift(rest);
    if (socket.isPaused()) socket.resume();
  }

  private detach(): void {
    const { socket } = this;
    socket.off("data", this.onData);
    socket.off("end", this.onEnd);
    socket.off("close", this.onClose);
    socket.off("error", this.onError);
    socket.off("timeout", this.onTimeout);
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
    this.buffered = undefined;
    this.server.forget(this);
  }
}

let dateSecond = -1;
let dateText = "";

/** The Date header's value, made once a second. */
function httpDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}
