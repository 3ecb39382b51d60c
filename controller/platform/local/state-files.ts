// The files of a `modelship up` state directory, written and read the way PostgreSQL treats its
// own: one owner at a time (an exclusive lock taken before anything is read), every write atomic
// and durable (write a temporary file, fsync it, rename it over the old one, fsync the
// directory), and a file that cannot be read whole stops the start with its name and what to do —
// never an empty store that would answer every call with 404 while the models are "Deployed".

import {
  closeSync,
  constants,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";

/** Writes `text` to `file` so that a crash leaves either the old file or the new one, whole. */
export function writeFileAtomic(file: string, text: string, mode = 0o600): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  const descriptor = openSync(temporary, "w", mode);
  try {
    writeSync(descriptor, text);
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
  renameSync(temporary, file);
  // The rename itself is only durable once the directory is.
  const directory = openSync(dirname(file), constants.O_RDONLY);
  try {
    fsyncSync(directory);
  } finally {
    closeSync(directory);
  }
}

export class DamagedStateFile extends Error {
  readonly file: string;
  constructor(file: string, why: string, consequence: string) {
    super(
      `${file} is damaged (${why}); modelship up did not start, and changed nothing. Restore the file from a backup, or move it away to start afresh (mv ${file} ${file}.damaged): ${consequence}`,
    );
    this.name = "DamagedStateFile";
    this.file = file;
  }
}

/**
 * Reads a JSON state file whole: an empty file, one that is not JSON, or one whose shape
 * `problemOf` refuses, is a DamagedStateFile naming it and saying what moving it away costs.
 */
export function readStateFile<T>(
  file: string,
  problemOf: (value: unknown) => string | undefined,
  consequence: string,
): T {
  const text = readFileSync(file, "utf8");
  if (text.trim() === "") throw new DamagedStateFile(file, "it is empty", consequence);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new DamagedStateFile(file, `not JSON: ${(error as Error).message}`, consequence);
  }
  const problem = problemOf(value);
  if (problem) throw new DamagedStateFile(file, problem, consequence);
  return value as T;
}

export const LOCK_FILE = "up.lock";

/** Whether a process with this pid is alive (a signal 0 reaches it, or it is someone else's). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A lock another living process holds: its pid, and what the taker says about it. */
export class LockHeld extends Error {
  readonly pid: number;
  constructor(message: string, pid: number) {
    super(message);
    this.name = "LockHeld";
    this.pid = pid;
  }
}

/**
 * Takes the state directory for this process: creates `up.lock` exclusively (O_EXCL, so of two
 * processes racing only one can), with this pid in it. A lock whose process is gone is stale and
 * taken over. Returns the function that lets it go.
 */
export function lockStateDir(stateDir: string): () => void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  return lockFile(
    join(stateDir, LOCK_FILE),
    (holder) => `already running for ${stateDir} (pid ${holder})`,
  );
}

/**
 * Takes `file` as a lock, as lockStateDir does; throws LockHeld, with `heldMessage` of the
 * holder's pid, while a living process holds it.
 */
export function lockFile(file: string, heldMessage: (holder: number) => string): () => void {
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      const descriptor = openSync(file, "wx", 0o600);
      writeSync(descriptor, `${process.pid}\n`);
      fsyncSync(descriptor);
      closeSync(descriptor);
      return () => rmSync(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      // Let go between our attempt and this read: try again.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    if (text === "" && attempt < 20) {
      // Made an instant ago by a process that has not written its pid yet: look again (half a
      // second at most; after that it died before writing it, and the lock is stale).
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
      continue;
    }
    const holder = Number.parseInt(text, 10);
    if (Number.isInteger(holder) && holder > 0 && alive(holder)) {
      throw new LockHeld(heldMessage(holder), holder);
    }
    // The process that held it died without letting go: the lock is stale.
    rmSync(file, { force: true });
  }
  throw new Error(`cannot take the lock ${file}: another process keeps taking it`);
}
