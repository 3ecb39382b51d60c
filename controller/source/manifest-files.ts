// From manifest files to manifest text, within the limits: how many files a commit may have, how
// large one may be and all of them together, and that each is UTF-8 text with no control
// characters. Both readers — the git source at a commit and `modelship validate` on a directory —
// go through readManifestFiles, which looks at sizes before reading and never decodes a file over
// its limit; validateManifests applies the same checks to text it is given (admitManifests), so
// that the messages are the same wherever a manifest comes from.
import { formatBytes, type ManifestLimits } from "./limits.ts";
import { positionIn } from "./manifests.ts";
import type { ManifestSource, Problem, Rule } from "./validate.ts";

/** A manifest file a reader found and has not read yet. */
export interface ManifestFile {
  /** Path of the file as shown to the user. */
  file: string;
  /** Path of the file relative to the repository root, '/'-separated. */
  repoPath: string;
  /** Its size in bytes when it can be known without reading it; undefined otherwise. */
  size(): Promise<number | undefined>;
  read(): Promise<Uint8Array>;
}

function fileProblem(
  file: string,
  position: { line: number; column: number },
  rule: Rule,
  message: string,
): Problem {
  return { file, ...position, kind: "?", pointer: "", rule, message };
}

const FILE_START = { line: 1, column: 1 };

export function tooManyFilesProblem(files: readonly { file: string }[], limits: ManifestLimits) {
  // The first file over the limit carries it: a problem needs a file, and it is where the
  // count passed.
  const first = files[limits.maxFilesPerCommit] as { file: string };
  return fileProblem(
    first.file,
    FILE_START,
    "limit",
    `${files.length} manifest files, more than the ${limits.maxFilesPerCommit} a commit may have (maxFilesPerCommit), the first over it here: none of them is validated`,
  );
}

/** A size with its exact count when rounding hides it (a file just over 1 MiB is "1 MiB"). */
function exactSize(bytes: number): string {
  return bytes < 1024 ? formatBytes(bytes) : `${formatBytes(bytes)} (${bytes} bytes)`;
}

export function fileTooLargeProblem(file: string, bytes: number, limits: ManifestLimits) {
  return fileProblem(
    file,
    FILE_START,
    "limit",
    `the file is ${exactSize(bytes)}, more than the ${formatBytes(limits.maxFileBytes)} a manifest file may be (maxFileBytes): it is not read`,
  );
}

export function commitTooLargeProblem(file: string, limits: ManifestLimits) {
  return fileProblem(
    file,
    FILE_START,
    "limit",
    `the manifest files pass the ${formatBytes(limits.maxCommitBytes)} a commit may have (maxCommitBytes) at this file: none of them is validated`,
  );
}

/**
 * The offset of the first byte that is not part of well-formed UTF-8 (Unicode table 3-7:
 * no overlong forms, no surrogates, nothing above U+10FFFF, no sequence cut short), or
 * undefined when all of it is.
 */
export function firstInvalidUtf8Offset(bytes: Uint8Array): number | undefined {
  let index = 0;
  while (index < bytes.length) {
    const lead = bytes[index] as number;
    if (lead < 0x80) {
      index++;
      continue;
    }
    // The range the second byte must fall in depends on the lead byte; later ones are 80..BF.
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) low = 0xa0; // below is an overlong form
      if (lead === 0xed) high = 0x9f; // above are the surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) low = 0x90; // below is an overlong form
      if (lead === 0xf4) high = 0x8f; // above is past U+10FFFF
    } else return index;
    for (let next = 1; next < length; next++) {
      const byte = bytes[index + next];
      const [min, max] = next === 1 ? [low, high] : [0x80, 0xbf];
      if (byte === undefined || byte < min || byte > max) return index;
    }
    index += length;
  }
  return undefined;
}

/** Where a byte offset is: lines end at LF bytes, columns count the decoded characters. */
function positionOfByte(bytes: Uint8Array, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let index = 0; index < offset; index++) {
    if (bytes[index] === 0x0a) {
      line++;
      lineStart = index + 1;
    }
  }
  // The bytes before the offset are well-formed UTF-8: they decode exactly.
  const before = new TextDecoder().decode(bytes.subarray(lineStart, offset));
  return { line, column: before.length + 1 };
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

export function invalidUtf8Problem(file: string, bytes: Uint8Array, offset: number): Problem {
  const shown = [...bytes.subarray(offset, offset + 4)].map(hex).join(" ");
  return fileProblem(
    file,
    positionOfByte(bytes, offset),
    "encoding",
    `not UTF-8: the bytes at byte offset ${offset} (${shown}) are not a UTF-8 character; save the file as UTF-8`,
  );
}

/**
 * Control characters YAML does not allow in a file (YAML 1.2 §5.1): all of C0 but tab, line feed
 * and carriage return, and DEL. A NUL byte is the usual sign of a binary or UTF-16 file, and none
 * of them can be typed, seen in a review, or passed on safely.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are what it finds
const FORBIDDEN_CHARACTER = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

function characterName(character: string): string {
  const code = `U+${(character.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, "0")}`;
  return character === "\u0000" ? `a NUL byte (${code})` : `the control character ${code}`;
}

/** A problem at the first control character YAML does not allow, if there is one. */
export function forbiddenCharacterProblem(file: string, text: string): Problem | undefined {
  const found = FORBIDDEN_CHARACTER.exec(text);
  if (found === null) return undefined;
  return fileProblem(
    file,
    positionIn(text, found.index),
    "encoding",
    `${characterName(found[0])} is not allowed in YAML (of the control characters, only tab, line feed and carriage return are); is this a binary or UTF-16 file?`,
  );
}

/** A file's bytes as text, or why they are not: not UTF-8, or a control character. */
export function decodeManifest(file: string, bytes: Uint8Array): { text: string } | Problem {
  let text: string;
  try {
    // fatal: a byte that is not UTF-8 is an error, never a silent U+FFFD.
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return invalidUtf8Problem(file, bytes, firstInvalidUtf8Offset(bytes) ?? 0);
  }
  return forbiddenCharacterProblem(file, text) ?? { text };
}

function refused(file: ManifestFile, problem: Problem): ManifestSource {
  return { file: file.file, repoPath: file.repoPath, text: "", refused: problem };
}

/**
 * Reads manifest files within the limits: with too many files, none is read; a file whose size
 * (known before reading, or else once read) is over the per-file limit is never decoded; reading
 * stops at the file that passes the commit's budget, and only that refusal is returned, since a
 * partial set of manifests would give misleading problems (a Model "not defined" in a file that
 * was not read). Files are read in the order given.
 */
export async function readManifestFiles(
  files: readonly ManifestFile[],
  limits: ManifestLimits,
): Promise<ManifestSource[]> {
  if (files.length > limits.maxFilesPerCommit) {
    return [
      refused(files[limits.maxFilesPerCommit] as ManifestFile, tooManyFilesProblem(files, limits)),
    ];
  }
  const sources: ManifestSource[] = [];
  let spent = 0;
  for (const file of files) {
    const known = await file.size();
    if (known !== undefined && known > limits.maxFileBytes) {
      sources.push(refused(file, fileTooLargeProblem(file.file, known, limits)));
      continue;
    }
    if (known !== undefined && spent + known > limits.maxCommitBytes) {
      return [refused(file, commitTooLargeProblem(file.file, limits))];
    }
    const bytes = await file.read();
    // A size that could not be known beforehand is checked now, before anything is decoded.
    if (bytes.byteLength > limits.maxFileBytes) {
      sources.push(refused(file, fileTooLargeProblem(file.file, bytes.byteLength, limits)));
      continue;
    }
    spent += bytes.byteLength;
    if (spent > limits.maxCommitBytes) {
      return [refused(file, commitTooLargeProblem(file.file, limits))];
    }
    const decoded = decodeManifest(file.file, bytes);
    sources.push(
      "text" in decoded
        ? { file: file.file, repoPath: file.repoPath, text: decoded.text }
        : refused(file, decoded),
    );
  }
  return sources;
}

/**
 * The same limits on manifests given as text (by a caller that read them itself): the sources
 * to parse and the problems of the others. A commit over its file count or its bytes gives only
 * that problem and nothing to parse.
 */
export function admitManifests(
  sources: readonly ManifestSource[],
  limits: ManifestLimits,
): { admitted: ManifestSource[]; problems: Problem[] } {
  if (sources.length > limits.maxFilesPerCommit) {
    return { admitted: [], problems: [tooManyFilesProblem(sources, limits)] };
  }
  const admitted: ManifestSource[] = [];
  const problems: Problem[] = [];
  let spent = 0;
  for (const source of sources) {
    if (source.refused !== undefined) {
      problems.push(source.refused);
      continue;
    }
    const bytes = Buffer.byteLength(source.text);
    if (bytes > limits.maxFileBytes) {
      problems.push(fileTooLargeProblem(source.file, bytes, limits));
      continue;
    }
    spent += bytes;
    if (spent > limits.maxCommitBytes) {
      return { admitted: [], problems: [commitTooLargeProblem(source.file, limits)] };
    }
    const forbidden = forbiddenCharacterProblem(source.file, source.text);
    if (forbidden) problems.push(forbidden);
    else admitted.push(source);
  }
  return { admitted, problems };
}
