// The limits on reading manifest files, table-driven: what is read and what is not, the UTF-8 and
// control character checks, and the limits' defaults.
import { describe, expect, it } from "vitest";
import { formatBytes, MANIFEST_LIMITS, manifestLimits } from "../controller/source/limits.ts";
import {
  decodeManifest,
  firstInvalidUtf8Offset,
  type ManifestFile,
  readManifestFiles,
} from "../controller/source/manifest-files.ts";
import { formatProblem } from "../controller/source/validate.ts";

describe("the limits", () => {
  it("default to what the documentation says", () => {
    expect(MANIFEST_LIMITS).toEqual({
      maxAliasesPerDocument: 100,
      maxFileBytes: 1024 * 1024,
      maxCommitBytes: 10 * 1024 * 1024,
      maxFilesPerCommit: 1000,
      maxDepth: 64,
    });
    expect(Object.isFrozen(MANIFEST_LIMITS)).toBe(true);
    expect(manifestLimits({ maxDepth: 8 })).toEqual({ ...MANIFEST_LIMITS, maxDepth: 8 });
  });

  it.each<[number, string]>([
    [0, "0 bytes"],
    [1, "1 byte"],
    [1023, "1023 bytes"],
    [1024, "1 KiB"],
    [1536, "1.5 KiB"],
    [1024 * 1024, "1 MiB"],
    [10 * 1024 * 1024, "10 MiB"],
    [3 * 1024 ** 3 + 1, "3 GiB"],
  ])("formatBytes(%i) = %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

const bytes = (...values: number[]) => new Uint8Array(values);
const utf8 = (text: string) => new TextEncoder().encode(text);

describe("firstInvalidUtf8Offset", () => {
  it.each<[string, Uint8Array, number | undefined]>([
    ["ASCII", utf8("kind: Model\n"), undefined],
    ["two, three and four bytes", utf8("é € 😀"), undefined],
    ["the largest code point", bytes(0xf4, 0x8f, 0xbf, 0xbf), undefined],
    ["a lone continuation byte", bytes(0x61, 0x80), 1],
    ["a Latin-1 é", bytes(0x63, 0x61, 0x66, 0xe9, 0x0a), 3],
    ["an overlong two-byte form", bytes(0xc0, 0xaf), 0],
    ["an overlong three-byte form", bytes(0xe0, 0x80, 0xaf), 0],
    ["a surrogate", bytes(0x61, 0xed, 0xa0, 0x80), 1],
    ["past U+10FFFF", bytes(0xf4, 0x90, 0x80, 0x80), 0],
    ["a sequence cut short by a new character", bytes(0xe2, 0x82, 0x41), 0],
    ["a sequence cut short by the end", bytes(0x61, 0x62, 0xf0, 0x9f, 0x98), 2],
    ["0xff", bytes(0xff, 0xfe, 0x61, 0x00), 0],
  ])("%s", (_case, input, offset) => {
    expect(firstInvalidUtf8Offset(input)).toBe(offset);
    // It agrees with the decoder that refuses to guess.
    const decodes = (() => {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(input);
        return true;
      } catch {
        return false;
      }
    })();
    expect(decodes).toBe(offset === undefined);
  });
});

describe("decodeManifest", () => {
  it.each<[string, Uint8Array, string]>([
    ["text", utf8("a: é\n"), "text a: é\n"],
    [
      "Latin-1, at the bad byte's line and column",
      bytes(...utf8("a: 1\nb: caf"), 0xe9, 0x0a),
      "m.yaml:2:7: ?/? /: not UTF-8: the bytes at byte offset 11 (0xe9 0x0a) are not a UTF-8 character; save the file as UTF-8",
    ],
    [
      "UTF-16",
      bytes(0xff, 0xfe, 0x61, 0x00),
      "m.yaml:1:1: ?/? /: not UTF-8: the bytes at byte offset 0 (0xff 0xfe 0x61 0x00) are not a UTF-8 character; save the file as UTF-8",
    ],
    [
      "a NUL byte",
      utf8("a: 1\nbb: \u0000\n"),
      "m.yaml:2:5: ?/? /: a NUL byte (U+0000) is not allowed in YAML (of the control characters, only tab, line feed and carriage return are); is this a binary or UTF-16 file?",
    ],
    ["tabs and CRLF are text", utf8("a:\t1\r\nb: 2\r\n"), "text a:\t1\r\nb: 2\r\n"],
  ])("%s", (_case, input, expected) => {
    const decoded = decodeManifest("m.yaml", input);
    expect("text" in decoded ? `text ${decoded.text}` : formatProblem(decoded)).toBe(expected);
  });
});

/** Manifest files in memory that record which were measured and which were read. */
function files(
  contents: Record<string, string>,
  options: { sizeKnown?: boolean } = {},
): { files: ManifestFile[]; read: string[] } {
  const read: string[] = [];
  const list = Object.entries(contents).map(
    ([file, text]): ManifestFile => ({
      file,
      repoPath: file,
      size: async () => (options.sizeKnown === false ? undefined : utf8(text).byteLength),
      read: async () => {
        read.push(file);
        return utf8(text);
      },
    }),
  );
  return { files: list, read };
}

describe("readManifestFiles", () => {
  const small = { maxFileBytes: 10, maxCommitBytes: 25, maxFilesPerCommit: 3 };
  it.each<[string, Record<string, string>, boolean, string[], string[]]>([
    [
      "within the limits: all read",
      { "a.yaml": "a: 1\n", "b.yaml": "b: 2\n" },
      true,
      ["a.yaml", "b.yaml"],
      ["a.yaml text", "b.yaml text"],
    ],
    [
      "too many files: none read",
      { "a.yaml": "", "b.yaml": "", "c.yaml": "", "d.yaml": "", "e.yaml": "" },
      true,
      [],
      ["d.yaml 5 manifest files, more than the 3 a commit may have"],
    ],
    [
      "a file over its limit, known beforehand: never read",
      { "a.yaml": "a: 1\n", "big.yaml": "x".repeat(11) },
      true,
      ["a.yaml"],
      ["a.yaml text", "big.yaml the file is 11 bytes, more than the 10 bytes"],
    ],
    [
      "a file over its limit, known once read: not decoded",
      { "big.yaml": "\u00ff".repeat(6) },
      false,
      ["big.yaml"],
      ["big.yaml the file is 12 bytes, more than the 10 bytes"],
    ],
    [
      "the commit's bytes spent: reading stops, only that is said",
      { "a.yaml": "a: 123456\n", "b.yaml": "b: 123456\n", "c.yaml": "c: 123456\n" },
      true,
      ["a.yaml", "b.yaml"],
      ["c.yaml the manifest files pass the 25 bytes a commit may have"],
    ],
    [
      "the commit's bytes spent, sizes unknown: stops after the file that spent them",
      { "a.yaml": "a: 123456\n", "b.yaml": "b: 123456\n", "c.yaml": "c: 123456\n" },
      false,
      ["a.yaml", "b.yaml", "c.yaml"],
      ["c.yaml the manifest files pass the 25 bytes a commit may have"],
    ],
    [
      "files over their own limit do not spend the commit's",
      { "a.yaml": "a: 123456\n", "big.yaml": "x".repeat(20), "c.yaml": "c: 123456\n" },
      true,
      ["a.yaml", "c.yaml"],
      ["a.yaml text", "big.yaml the file is 20 bytes", "c.yaml text"],
    ],
    [
      "bytes that are not text: refused, the rest read",
      { "a.yaml": "a: \u0000\n", "b.yaml": "b: 1\n" },
      true,
      ["a.yaml", "b.yaml"],
      ["a.yaml a NUL byte (U+0000) is not allowed", "b.yaml text"],
    ],
  ])("%s", async (_case, contents, sizeKnown, expectedReads, expected) => {
    const found = files(contents, { sizeKnown });
    const sources = await readManifestFiles(found.files, manifestLimits(small));
    expect(found.read).toEqual(expectedReads);
    const shown = sources.map((source) =>
      source.refused ? `${source.file} ${source.refused.message}` : `${source.file} text`,
    );
    expect(shown).toHaveLength(expected.length);
    shown.forEach((line, index) => {
      expect(line.startsWith(expected[index] as string), line).toBe(true);
    });
  });
});
