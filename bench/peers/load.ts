// The one load generator of bench:peers, the same for every server: keep-alive HTTP/1.1 over raw
// sockets on 127.0.0.1 (node:http's client would cost more CPU than some servers it measures, on
// a machine of two cores), one request at a time per connection.
//
//   node bench/peers/load.ts '{"port":8000,"path":"/predict","body":"{...}","mode":"closed",
//     "concurrency":4,"seconds":3}'
//
// Closed loop: `concurrency` connections, each sending again as soon as it is answered (one the
// server closes is replaced by a new one; a call it cut short counts as an error). Open
// loop: `rate` calls a second on schedule, each on an idle connection (a new one when none is),
// so that a server that stalls does not hold back the calls after it; the timer's granularity
// is a millisecond, so each call is sent within about 1 ms of when it is due (`lateP99` says).
// Prints one JSON line: calls answered, 2xx, 429s, other errors, throughput, p50 and p99 in ms.
import { connect, type Socket } from "node:net";

interface Settings {
  port: number;
  path: string;
  body: string;
  mode: "closed" | "open";
  concurrency?: number;
  rate?: number;
  seconds: number;
  /** Not counted: the first calls warm the connections and the server's caches. */
  warmupSeconds?: number;
}

const settings = JSON.parse(process.argv[2] ?? "{}") as Settings;
const request = Buffer.from(
  `POST ${settings.path} HTTP/1.1\r\nHost: 127.0.0.1:${settings.port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(settings.body)}\r\n\r\n${settings.body}`,
);
const HEAD_END = Buffer.from("\r\n\r\n");

const latencies: number[] = [];
/** How late the open loop sent each call (ms after it was due). */
const lateness: number[] = [];
const counts = { ok: 0, busy: 0, errors: 0, statuses: {} as Record<string, number> };
let measuring = false;
let stopped = false;

/** One keep-alive connection, carrying one call at a time. */
class Connection {
  private readonly socket: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private sentAt = 0;
  busy = false;
  /** The socket closed or failed: this connection carries no more calls. */
  closed = false;
  private onDone: (() => void) | undefined;
  private onFailed: (() => void) | undefined;

  constructor() {
    this.socket = connect({ host: "127.0.0.1", port: settings.port, noDelay: true });
    this.socket.on("data", (chunk) => this.received(chunk));
    this.socket.on("error", () => this.failed());
    this.socket.on("close", () => this.failed());
  }

  /** Sends a call: `onDone` once answered, `onFailed` if the connection ends first. */
  send(dueAt: number, onDone: () => void, onFailed?: () => void): void {
    this.busy = true;
    this.sentAt = dueAt;
    this.onDone = onDone;
    this.onFailed = onFailed;
    this.socket.write(request);
  }

  close(): void {
    this.socket.destroy();
  }

  private failed(): void {
    this.closed = true;
    if (!this.busy) return;
    this.busy = false;
    if (measuring) counts.errors += 1;
    const failed = this.onFailed;
    this.onDone = undefined;
    this.onFailed = undefined;
    failed?.();
  }

  private received(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const end = this.buffer.indexOf(HEAD_END);
    if (end < 0) return;
    const head = this.buffer.subarray(0, end).toString("latin1");
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let total: number;
    if (length) {
      total = end + 4 + Number(length[1]);
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      // Chunked: complete once the last, empty chunk has come.
      const last = this.buffer.indexOf("\r\n0\r\n\r\n", end);
      if (last < 0) return;
      total = last + 7;
    } else {
      total = end + 4;
    }
    if (this.buffer.length < total) return;
    this.buffer = this.buffer.subarray(total);
    // The server ends the connection after this answer: the next call goes on another.
    if (/\r\nconnection:\s*close/i.test(head)) this.closed = true;
    const ms = performance.now() - this.sentAt;
    if (measuring) {
      counts.statuses[status] = (counts.statuses[status] ?? 0) + 1;
      if (status >= 200 && status < 300) {
        counts.ok += 1;
        latencies.push(ms);
      } else if (status === 429) counts.busy += 1;
      else counts.errors += 1;
    }
    this.busy = false;
    const done = this.onDone;
    this.onDone = undefined;
    this.onFailed = undefined;
    done?.();
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/**
 * `concurrency` callers, each on a connection of its own; one whose connection the server
 * closed (a keep-alive timeout, `Connection: close`, a failure: its call counted as an error)
 * goes on on a new one, so the concurrency holds for the whole run.
 */
async function closedLoop(concurrency: number): Promise<Connection[]> {
  const connections: Connection[] = [];
  const caller = (connection: Connection) => {
    connections.push(connection);
    const next = () => {
      if (stopped) return;
      // A millisecond before a new connection: a server that refuses them is not flooded.
      if (connection.closed) {
        setTimeout(() => {
          if (!stopped) caller(new Connection());
        }, 1);
      } else connection.send(performance.now(), next, next);
    };
    next();
  };
  for (let index = 0; index < concurrency; index++) caller(new Connection());
  return connections;
}

function openLoop(rate: number): Connection[] {
  const connections: Connection[] = [];
  const started = performance.now();
  let sent = 0;
  const tick = () => {
    if (stopped) return;
    const now = performance.now();
    // Call number `sent` is due at started + sent / rate: every call due by now goes.
    for (; started + (sent * 1000) / rate <= now; sent++) {
      // A connection the server closed is not used again (its place taken by a new one).
      let idle = connections.find((connection) => !connection.busy && !connection.closed);
      if (!idle) {
        idle = new Connection();
        connections.push(idle);
      }
      if (measuring) lateness.push(now - (started + (sent * 1000) / rate));
      idle.send(now, () => {});
    }
    setTimeout(tick, Math.max(0, started + (sent * 1000) / rate - performance.now()));
  };
  tick();
  return connections;
}

const warmupMs = (settings.warmupSeconds ?? 0.5) * 1000;
const connections =
  settings.mode === "closed"
    ? await closedLoop(settings.concurrency ?? 1)
    : openLoop(settings.rate ?? 100);
await new Promise((resolve) => setTimeout(resolve, warmupMs));
measuring = true;
const from = performance.now();
await new Promise((resolve) => setTimeout(resolve, settings.seconds * 1000));
measuring = false;
const elapsed = (performance.now() - from) / 1000;
stopped = true;
for (const connection of connections) connection.close();
latencies.sort((a, b) => a - b);
lateness.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    answered: counts.ok + counts.busy + counts.errors,
    ok: counts.ok,
    busy: counts.busy,
    errors: counts.errors,
    statuses: counts.statuses,
    throughput: counts.ok / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    connections: connections.length,
    ...(settings.mode === "open" ? { lateP99: percentile(lateness, 99) } : {}),
  }),
);
