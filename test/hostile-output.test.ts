// Bounded memory under hostile output: a model that prints 300 MB — as many lines, or as one
// line without a newline — leaves the agent's memory where it was, and the log keeps the
// newest lines within its byte bound, a long line cut with a marker.
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BoundedLines, logLineText } from "../controller/replica/bounded-lines.ts";
import { type LogLine, LogRing } from "../controller/replica/log-ring.ts";
import { type CliProcess, startCli } from "./helpers/cli.ts";
import { eventually, MODELS_DIR, postJson } from "./helpers/replica.ts";

const MB = 1024 * 1024;
const processes: CliProcess[] = [];
afterEach(async () => {
  await Promise.all(processes.splice(0).map((running) => running.stop()));
});

/** `modelship replica` in a child process, so that its memory is its own. */
async function replicaProcess(functionName: string): Promise<CliProcess> {
  const replica = await startCli([
    "replica",
    ...["--dir", MODELS_DIR, "--file", "sizes.py", "--function", functionName],
    ...["--runtime", "python3", "--port", "0", "--timeout-seconds", "120", "--quiet"],
  ]);
  processes.push(replica);
  await eventually(async () => (await fetch(`${replica.url}/readyz`)).ok);
  return replica;
}

function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

/** Calls the replica and returns the most its resident memory grew meanwhile. */
async function growthDuring(replica: CliProcess, request: unknown): Promise<number> {
  const pid = replica.child.pid as number;
  const before = residentBytes(pid);
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, residentBytes(pid));
  }, 10);
  try {
    const answer = await postJson(`${replica.url}/predict`, request);
    expect(answer.status).toBe(200);
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, residentBytes(pid)) - before;
}

async function logOf(replica: CliProcess): Promise<LogLine[]> {
  const text = await fetch(`${replica.url}/logs`).then((response) => response.text());
  return text
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as LogLine);
}

/** A follower of the log that never reads what it is sent, once the agent has it. */
async function stalledFollower(replica: CliProcess): Promise<Socket> {
  const { hostname, port } = new URL(replica.url);
  const socket = connect(Number(port), hostname, () => {
    socket.write(`GET /logs?follow=1 HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  });
  socket.pause();
  socket.on("error", () => {});
  // The agent has sent it what the log held (the warm-up's 8 MB) by then.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return socket;
}

const textBytes = (lines: LogLine[]) =>
  lines.reduce((sum, line) => sum + Buffer.byteLength(line.line), 0);

describe("a model that prints 300 MB", () => {
  it("as lines of 1000 bytes, with a follower of the log that does not read: the agent's memory stays within 50 MB, the log within 8 MB", {
    timeout: 120_000,
  }, async () => {
    const replica = await replicaProcess("prints_lines");
    // A first call warms the agent up (code paths compiled, buffers allocated).
    await postJson(`${replica.url}/predict`, { megabytes: 8, line_bytes: 1000 });
    const follower = await stalledFollower(replica);
    try {
      const growth = await growthDuring(replica, { megabytes: 300, line_bytes: 1000 });
      expect(growth).toBeLessThan(50 * MB);
    } finally {
      follower.destroy();
    }

    const lines = await logOf(replica);
    expect(textBytes(lines)).toBeLessThanOrEqual(8 * MB);
    // The byte bound, not the 10 000-line one, decided: it keeps the newest lines.
    expect(lines.length).toBeLessThan(10_000);
    const printed = lines.filter((line) => line.stream === "stdout");
    expect(printed.at(-1)?.line).toBe("y".repeat(999));
    expect(printed.length).toBeGreaterThan(8000);
  });

  it("as one line without a newline: the memory stays within 50 MB, the line is cut and marked", {
    timeout: 120_000,
  }, async () => {
    const replica = await replicaProcess("prints_one_line");
    await postJson(`${replica.url}/predict`, { megabytes: 8 });
    const growth = await growthDuring(replica, { megabytes: 300 });
    expect(growth).toBeLessThan(50 * MB);

    const last = (await logOf(replica)).filter((line) => line.stream === "stdout").at(-1);
    expect(last?.line).toBe(`${"z".repeat(64 * 1024)}… [truncated ${300 * MB - 64 * 1024} bytes]`);
  });
});

describe("BoundedLines: lines from chunks, each kept to a bound", () => {
  it.each<[string, string[], number, [string, number][], number]>([
    [
      "lines in one chunk",
      ["a\nbb\n"],
      10,
      [
        ["a", 0],
        ["bb", 0],
      ],
      0,
    ],
    [
      "a line across chunks",
      ["ab", "cd", "e\nf"],
      10,
      [
        ["abcde", 0],
        ["f", 0],
      ],
      0,
    ],
    [
      "a last line without a newline",
      ["a\nb"],
      10,
      [
        ["a", 0],
        ["b", 0],
      ],
      0,
    ],
    ["a long line cut at the bound", ["abcdefgh\n"], 3, [["abc", 5]], 1],
    [
      "a long line across chunks",
      ["ab", "cdef", "gh\nij\n"],
      3,
      [
        ["abc", 5],
        ["ij", 0],
      ],
      1,
    ],
    [
      "two long lines: overflow once each",
      ["abcd\nefgh\n"],
      2,
      [
        ["ab", 2],
        ["ef", 2],
      ],
      2,
    ],
    [
      "empty lines",
      ["\n\n"],
      3,
      [
        ["", 0],
        ["", 0],
      ],
      0,
    ],
    ["exactly the bound", ["abc\n"], 3, [["abc", 0]], 0],
  ])("%s", (_, chunks, maxLineBytes, expected, overflows) => {
    const lines: [string, number][] = [];
    let overflowed = 0;
    const reader = new BoundedLines({
      maxLineBytes,
      onLine: (line, dropped) => lines.push([line.toString(), dropped]),
      onOverflow: () => {
        overflowed += 1;
      },
    });
    for (const chunk of chunks) reader.push(Buffer.from(chunk));
    reader.end();
    expect(lines).toEqual(expected);
    expect(overflowed).toBe(overflows);
  });
});

describe("logLineText: a log line's text", () => {
  it.each<[string, Buffer, number, string]>([
    ["a whole line", Buffer.from("hello"), 0, "hello"],
    ["a CRLF line end", Buffer.from("hello\r"), 0, "hello"],
    ["a cut line, marked", Buffer.from("hel"), 2, "hel… [truncated 2 bytes]"],
    // "é" is two bytes: a cut after its first byte drops it, and counts it as cut.
    ["a cut inside a character", Buffer.from([0x61, 0xc3]), 5, "a… [truncated 6 bytes]"],
    ["a cut after a whole character", Buffer.from("aé"), 1, "aé… [truncated 1 bytes]"],
    [
      "a cut inside a 4-byte character",
      Buffer.from([0x61, 0xf0, 0x9f, 0x98]),
      1,
      "a… [truncated 4 bytes]",
    ],
  ])("%s", (_, line, dropped, text) => {
    expect(logLineText(line, dropped)).toBe(text);
  });
});

describe("LogRing: bounded in lines and in bytes", () => {
  it.each([
    { lines: 10, bytes: 100, append: ["aaaa", "bbbb", "cccc"], kept: ["aaaa", "bbbb", "cccc"] },
    { lines: 2, bytes: 100, append: ["aaaa", "bbbb", "cccc"], kept: ["bbbb", "cccc"] },
    { lines: 10, bytes: 8, append: ["aaaa", "bbbb", "cccc"], kept: ["bbbb", "cccc"] },
    { lines: 10, bytes: 9, append: ["aaaa", "bbbb", "c"], kept: ["aaaa", "bbbb", "c"] },
    // A line longer than the whole ring keeps its start, at a character boundary.
    { lines: 10, bytes: 3, append: ["aa", "bbbbbb"], kept: ["bbb"] },
    { lines: 10, bytes: 3, append: ["aéé"], kept: ["aé"] },
    // Bytes, not characters: "é" is two.
    { lines: 10, bytes: 4, append: ["éé", "é"], kept: ["é"] },
    // Empty lines take no bytes and are kept by the line bound only.
    { lines: 3, bytes: 4, append: ["", "", "abcd", ""], kept: ["", "abcd", ""] },
    // A line that does not fit before the end starts again at 0, where the oldest were; the
    // next one takes the bytes after it ("bbbb" was at 4 to 8, "dd" goes at 3 to 5).
    { lines: 10, bytes: 10, append: ["aaaa", "bbbb", "ccc"], kept: ["bbbb", "ccc"] },
    { lines: 10, bytes: 10, append: ["aaaa", "bbbb", "ccc", "dd"], kept: ["ccc", "dd"] },
  ])("$lines lines, $bytes bytes: $append → $kept", ({ lines, bytes, append, kept }) => {
    const ring = new LogRing(lines, () => new Date(0), bytes);
    for (const line of append) ring.append("stdout", 1, line);
    expect(ring.since().map((entry) => entry.line)).toEqual(kept);
    expect(ring.size.bytes).toBe(kept.reduce((sum, line) => sum + Buffer.byteLength(line), 0));
  });
});
