// Splits a byte stream into lines without ever holding more than a bound of one line: what a
// worker writes may be hostile (300 MB without a newline), and readline would buffer all of it.
// Bytes past the bound are counted, not kept.

const NEWLINE = 0x0a;

export interface BoundedLinesOptions {
  /** The most bytes of one line that are kept; the rest of the line is dropped and counted. */
  maxLineBytes: number;
  /** Each line without its "\n": its first `maxLineBytes` bytes, and how many were dropped. */
  onLine: (line: Buffer, droppedBytes: number) => void;
  /** Called as soon as the current line passes the bound (once per line), before it ends. */
  onOverflow?: () => void;
}

export class BoundedLines {
  private readonly options: BoundedLinesOptions;
  /** The kept pieces of the current line: slices of the chunks that carried it. */
  private parts: Buffer[] = [];
  private keptBytes = 0;
  private droppedBytes = 0;

  constructor(options: BoundedLinesOptions) {
    this.options = options;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      // Only the new chunk is searched: a line that spans chunks costs no rescanning.
      const newline = chunk.indexOf(NEWLINE, start);
      if (newline === -1) {
        this.keep(chunk.subarray(start));
        return;
      }
      this.keep(chunk.subarray(start, newline));
      this.emit();
      start = newline + 1;
    }
  }

  /** The stream ended: a last line without a newline is still a line. */
  end(): void {
    if (this.keptBytes > 0 || this.droppedBytes > 0) this.emit();
  }

  private keep(piece: Buffer): void {
    if (piece.length === 0) return;
    const room = this.options.maxLineBytes - this.keptBytes;
    if (piece.length <= room) {
      this.parts.push(piece);
      this.keptBytes += piece.length;
      return;
    }
    if (this.droppedBytes === 0) this.options.onOverflow?.();
    if (room > 0) {
      this.parts.push(piece.subarray(0, room));
      this.keptBytes += room;
    }
    this.droppedBytes += piece.length - Math.max(room, 0);
    this.keepCollectorInStep(piece);
  }

  /**
   * V8 frees the read buffers of a pipe (memory outside its heap) only when it collects
   * garbage, which JavaScript's own allocations set off. A reader that drops everything
   * allocates nothing, so 300 MB dropped would pile up to V8's 64 MB threshold for outside
   * memory before anything is freed. A short-lived copy of each dropped piece as a string,
   * cheap next to the read itself, makes the young-generation collections that free them.
   * (It is a call into the runtime, which the compiler cannot leave out.)
   */
  private keepCollectorInStep(piece: Buffer): void {
    piece.toString("latin1");
  }

  private emit(): void {
    const line =
      this.parts.length === 1
        ? (this.parts[0] as Buffer)
        : Buffer.concat(this.parts, this.keptBytes);
    const dropped = this.droppedBytes;
    this.parts = [];
    this.keptBytes = 0;
    this.droppedBytes = 0;
    this.options.onLine(line, dropped);
  }
}

/**
 * A log line's text: UTF-8, without a trailing "\r" (a "\r\n" line end), and with a marker that
 * says how much was cut. A cut inside a multi-byte character drops the partial character.
 */
export function logLineText(line: Buffer, droppedBytes: number): string {
  if (droppedBytes === 0) {
    const end = line.at(-1) === 0x0d ? line.length - 1 : line.length;
    return line.toString("utf8", 0, end);
  }
  const kept = utf8Boundary(line);
  const cut = droppedBytes + line.length - kept;
  return `${line.toString("utf8", 0, kept)}… [truncated ${cut} bytes]`;
}

/** The largest length ≤ line.length that does not end inside a multi-byte UTF-8 character. */
function utf8Boundary(line: Buffer): number {
  let start = line.length;
  // Back up over continuation bytes (10xxxxxx) to the lead byte of the last character.
  while (start > 0 && start > line.length - 4 && ((line[start - 1] as number) & 0xc0) === 0x80) {
    start -= 1;
  }
  if (start === 0) return line.length;
  const lead = line[start - 1] as number;
  const expected = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return line.length - (start - 1) >= expected ? line.length : start - 1;
}
