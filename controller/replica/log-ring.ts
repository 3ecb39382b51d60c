// The replica's log: the last N lines its workers printed, and the agent's own notes (started,
// exited, restarted), each with a time, a stream and a sequence number. It belongs to the agent,
// not to a worker, so a worker restart loses nothing (CDSW loses the log on restart).

export type LogStream = "stdout" | "stderr" | "agent";

export interface LogLine {
  /** 1, 2, 3, ... across the replica's life; a reader resumes after the last one it saw. */
  seq: number;
  time: string;
  stream: LogStream;
  /** Which worker printed it: 1 for the first, 2 after the first restart, ... */
  worker: number;
  line: string;
}

export const DEFAULT_LOG_CAPACITY = 10_000;

export class LogRing {
  private readonly lines: LogLine[] = [];
  private nextSeq = 1;
  private readonly listeners = new Set<(line: LogLine) => void>();

  readonly capacity: number;
  private readonly now: () => Date;

  constructor(capacity = DEFAULT_LOG_CAPACITY, now: () => Date = () => new Date()) {
    this.capacity = capacity;
    this.now = now;
  }

  append(stream: LogStream, worker: number, line: string): LogLine {
    const entry = { seq: this.nextSeq++, time: this.now().toISOString(), stream, worker, line };
    this.lines.push(entry);
    // Dropping one at a time keeps the cost per line constant; shift() on a 10k array is cheap
    // next to the pipe read that produced the line.
    if (this.lines.length > this.capacity) this.lines.shift();
    for (const listener of this.listeners) listener(entry);
    return entry;
  }

  /** Lines with a sequence number above `after`, oldest first, at most `limit` of the newest. */
  since(after = 0, limit = this.capacity): LogLine[] {
    const first = this.lines.findIndex((entry) => entry.seq > after);
    if (first === -1) return [];
    return this.lines.slice(Math.max(first, this.lines.length - limit));
  }

  /** Calls `listener` with each new line until the returned function is called. */
  follow(listener: (line: LogLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
