// The replica's log: the newest lines its workers printed, and the agent's own notes (started,
// exited, restarted), each with a time, a stream and a sequence number. It belongs to the agent,
// not to a worker, so a worker restart loses nothing (CDSW loses the log on restart).
//
// It is bounded in lines and in bytes, and keeps its lines in one circular byte buffer with
// their details in typed arrays, not as a JavaScript object per line: a model that prints
// without end would otherwise fill the garbage collector's old generation with lines that lived
// just long enough to be promoted (200 MB of it for 300 MB printed). Objects are made only for
// the readers. The readers of the worker's output bound each line (bounded-lines.ts).

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
/** The text of the lines kept, in UTF-8 bytes. */
export const DEFAULT_LOG_BYTES = 8 * 1024 * 1024;
/** The longest line kept whole; a longer one keeps its start and says how much was cut. */
export const DEFAULT_LOG_LINE_BYTES = 64 * 1024;

const STREAMS: LogStream[] = ["stdout", "stderr", "agent"];

export class LogRing {
  readonly capacity: number;
  readonly byteCapacity: number;
  private readonly now: () => Date;
  private readonly listeners = new Set<(line: LogLine) => void>();
  private nextSeq = 1;

  /**
   * The lines' text, written one after another; a line that does not fit before the end starts
   * a new lap at 0. The lines of the previous lap still kept are all ahead of `writeAt`.
   */
  private readonly text: Buffer;
  /** Where the next line's text goes, and in which lap. */
  private writeAt = 0;
  private lap = 0;
  /** Per line, in slots of a circle of `capacity`: the oldest is at `first`. */
  private readonly seqs: Float64Array;
  private readonly times: Float64Array;
  private readonly laps: Float64Array;
  private readonly starts: Int32Array;
  private readonly lengths: Int32Array;
  private readonly workers: Int32Array;
  private readonly streams: Uint8Array;
  private first = 0;
  private count = 0;
  private bytes = 0;

  constructor(
    capacity = DEFAULT_LOG_CAPACITY,
    now: () => Date = () => new Date(),
    byteCapacity = DEFAULT_LOG_BYTES,
  ) {
    this.capacity = capacity;
    this.now = now;
    this.byteCapacity = byteCapacity;
    // Not zero-filled: pages become resident only as lines are written.
    this.text = Buffer.allocUnsafeSlow(byteCapacity);
    this.seqs = new Float64Array(capacity);
    this.times = new Float64Array(capacity);
    this.laps = new Float64Array(capacity);
    this.starts = new Int32Array(capacity);
    this.lengths = new Int32Array(capacity);
    this.workers = new Int32Array(capacity);
    this.streams = new Uint8Array(capacity);
  }

  /** Lines kept now, and the UTF-8 bytes of their text (never more than byteCapacity). */
  get size(): { lines: number; bytes: number } {
    return { lines: this.count, bytes: this.bytes };
  }

  /**
   * Adds a line, dropping the oldest ones to make room. A line longer than the whole ring keeps
   * its first byteCapacity bytes (at a character boundary).
   */
  append(stream: LogStream, worker: number, line: string): void {
    const length = Math.min(Buffer.byteLength(line), this.byteCapacity);
    const start = this.makeRoom(length);
    const written = this.text.write(line, start, length, "utf8");
    const slot = (this.first + this.count) % this.capacity;
    this.seqs[slot] = this.nextSeq++;
    this.times[slot] = this.now().getTime();
    this.laps[slot] = this.lap;
    this.starts[slot] = start;
    this.lengths[slot] = written;
    this.workers[slot] = worker;
    this.streams[slot] = STREAMS.indexOf(stream);
    this.count += 1;
    this.bytes += written;
    this.writeAt = start + written;
    if (this.listeners.size === 0) return;
    const entry = this.entryAt(slot);
    for (const listener of this.listeners) listener(entry);
  }

  /**
   * Where a line of `length` bytes goes: at the write position, or at 0 (a new lap) when it
   * does not fit before the end. Drops the oldest lines until there is a free slot and those
   * bytes are free: the previous lap's lines are the oldest, in order, and lie ahead.
   */
  private makeRoom(length: number): number {
    if (this.count === this.capacity) this.dropOldest();
    let start = this.writeAt;
    if (start + length > this.byteCapacity) {
      // The rest of the buffer is skipped, and with it what is left of the previous lap.
      while (this.count > 0 && this.oldestIsFromAnEarlierLap()) this.dropOldest();
      this.lap += 1;
      start = 0;
    }
    while (
      this.count > 0 &&
      this.oldestIsFromAnEarlierLap() &&
      (this.starts[this.first] as number) < start + length
    ) {
      this.dropOldest();
    }
    return start;
  }

  private oldestIsFromAnEarlierLap(): boolean {
    return (this.laps[this.first] as number) < this.lap;
  }

  private dropOldest(): void {
    this.bytes -= this.lengths[this.first] as number;
    this.first = (this.first + 1) % this.capacity;
    this.count -= 1;
  }

  private entryAt(slot: number): LogLine {
    const start = this.starts[slot] as number;
    return {
      seq: this.seqs[slot] as number,
      time: new Date(this.times[slot] as number).toISOString(),
      stream: STREAMS[this.streams[slot] as number] as LogStream,
      worker: this.workers[slot] as number,
      line: this.text.toString("utf8", start, start + (this.lengths[slot] as number)),
    };
  }

  /** Lines with a sequence number above `after`, oldest first, at most `limit` of the newest. */
  since(after = 0, limit = this.capacity): LogLine[] {
    const lines: LogLine[] = [];
    for (let index = Math.max(0, this.count - limit); index < this.count; index++) {
      const slot = (this.first + index) % this.capacity;
      if ((this.seqs[slot] as number) > after) lines.push(this.entryAt(slot));
    }
    return lines;
  }

  /** Calls `listener` with each new line until the returned function is called. */
  follow(listener: (line: LogLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
