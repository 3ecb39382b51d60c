// Reads YAML manifest files into documents that remember where each node came from, so that a
// problem found in the parsed object can be reported at its line and column. Parsing is bounded
// (yaml-bounds.ts): a document nested too deeply or with too many aliases is refused, not parsed
// into data.
import {
  type Document,
  isCollection,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseAllDocuments,
  visit,
  type YAMLError,
} from "yaml";
import { MANIFEST_LIMITS, type ManifestLimits } from "./limits.ts";
import { inspectDocument, lexedNestingOffset } from "./yaml-bounds.ts";

/** A place in a manifest file, 1-based as editors show it. */
export interface Position {
  line: number;
  column: number;
}

export interface ManifestDocument {
  /** Path of the file as shown to the user. */
  file: string;
  /** 0-based index of the document in its file. */
  index: number;
  /** The document as plain data (no YAML nodes). */
  object: unknown;
  /**
   * Where the node at a JSON pointer is; `key: true` asks for the key of the last segment
   * (e.g. an unknown field's name) rather than its value. A pointer that leads nowhere gives
   * the position of the deepest node that exists on its way.
   */
  locate(pointer: string, options?: { key?: boolean }): Position;
}

export interface SyntaxProblem {
  file: string;
  position: Position;
  /** "limit": the document is past a limit on what parsing may cost, so it was not read. */
  rule: "yaml-syntax" | "limit";
  message: string;
  /** Kind and name, when they could still be read from the broken document. */
  kind?: string;
  name?: string;
}

export interface ParsedFile {
  documents: ManifestDocument[];
  syntaxProblems: SyntaxProblem[];
}

/** Splits an RFC 6901 JSON pointer into its unescaped tokens. */
export function pointerTokens(pointer: string): string[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((token) => token.replaceAll("~1", "/").replaceAll("~0", "~"));
}

export function pointerOf(tokens: (string | number)[]): string {
  return tokens
    .map((token) => `/${String(token).replaceAll("~", "~0").replaceAll("/", "~1")}`)
    .join("");
}

function nodeStart(node: Node | Pair | null | undefined): number | undefined {
  if (!node) return undefined;
  if (isPair(node)) return nodeStart(node.key as Node);
  return node.range?.[0];
}

/**
 * Where a syntax error really is. The parser notices an unclosed `[`, `{` or quote only where the
 * text stops making sense, often lines later; the mistake is the node that opened there, which
 * ends exactly at the error.
 */
export function syntaxErrorOffset(document: Document.Parsed, error: YAMLError): number {
  const detectedAt = error.pos[0];
  if (!/end with a|Missing closing/.test(error.message)) return detectedAt;
  let opening: number | undefined;
  visit(document, (_key, node) => {
    const unclosed =
      (isCollection(node) && node.flow) ||
      (isScalar(node) && (node.type === "QUOTE_DOUBLE" || node.type === "QUOTE_SINGLE"));
    // A pair may have no key or value: a null node, with no range.
    const range = (node as Node | null)?.range;
    if (unclosed && range && range[1] === detectedAt && range[0] < detectedAt) {
      opening = Math.max(opening ?? -1, range[0]);
    }
  });
  return opening ?? detectedAt;
}

/** A place in a text, 1-based; columns count UTF-16 code units, as the YAML parser's do. */
export function positionIn(text: string, offset: number): Position {
  let line = 1;
  let lineStart = 0;
  let newline = text.indexOf("\n");
  while (newline !== -1 && newline < offset) {
    line++;
    lineStart = newline + 1;
    newline = text.indexOf("\n", lineStart);
  }
  return { line, column: offset - lineStart + 1 };
}

type ParseLimits = Pick<ManifestLimits, "maxDepth" | "maxAliasesPerDocument">;

function tooDeepMessage(limits: ParseLimits): string {
  return `nested more than ${limits.maxDepth} levels deep (maxDepth): the document is not read`;
}

/**
 * The document as data, or undefined when its aliases expand past the limit: the yaml package
 * counts each alias's expansion against maxAliasCount and throws a ReferenceError (unknown
 * anchors, its other ReferenceError, were reported before this is called). It counts the
 * anchored node as a copy too, hence one more: 100 aliases of one anchor are 101 copies.
 */
function toData(document: Document.Parsed, limits: ParseLimits): { value: unknown } | undefined {
  try {
    return { value: document.toJS({ maxAliasCount: limits.maxAliasesPerDocument + 1 }) };
  } catch (error) {
    if (error instanceof ReferenceError) return undefined;
    throw error;
  }
}

export function parseManifestFile(
  file: string,
  text: string,
  limits: ParseLimits = MANIFEST_LIMITS,
): ParsedFile {
  const lineCounter = new LineCounter();
  const documents: ManifestDocument[] = [];
  const syntaxProblems: SyntaxProblem[] = [];
  const position = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  const refuse = (at: Position, message: string) =>
    syntaxProblems.push({ file, position: at, rule: "limit", message });

  // Deep flow nesting costs the parser memory before it can be measured in the tree.
  const deepAt = lexedNestingOffset(text, limits.maxDepth);
  if (deepAt !== undefined) {
    refuse(positionIn(text, deepAt), tooDeepMessage(limits));
    return { documents, syntaxProblems };
  }

  // uniqueKeys: the parser's own check compares every key with every other; inspectDocument
  // reports duplicates in linear time instead.
  const options = { lineCounter, prettyErrors: false, uniqueKeys: false };
  parseAllDocuments(text, options).forEach((document, index) => {
    const inspection = inspectDocument(document, limits);
    if (inspection.tooDeepAt !== undefined) {
      refuse(position(inspection.tooDeepAt), tooDeepMessage(limits));
      return;
    }
    if (inspection.tooManyAliasesAt !== undefined) {
      refuse(
        position(inspection.tooManyAliasesAt),
        `more than ${limits.maxAliasesPerDocument} YAML aliases in one document (maxAliasesPerDocument): the document is not read`,
      );
      return;
    }
    document.errors.push(...inspection.errors);
    if (document.errors.length > 0) {
      const salvaged = toData(document, limits)?.value as Record<string, unknown> | null;
      const metadata = salvaged?.metadata as Record<string, unknown> | undefined;
      for (const error of document.errors) {
        syntaxProblems.push({
          file,
          position: position(syntaxErrorOffset(document, error)),
          rule: "yaml-syntax",
          // The parser's message is one sentence; its first line is the useful part.
          message: `YAML syntax error: ${error.message.split("\n")[0]}`,
          ...(typeof salvaged?.kind === "string" ? { kind: salvaged.kind } : {}),
          ...(typeof metadata?.name === "string" ? { name: metadata.name } : {}),
        });
      }
      return;
    }
    if (document.contents === null) return; // an empty document, e.g. after a trailing ---
    const data = toData(document, limits);
    if (data === undefined) {
      refuse(
        position(inspection.firstAliasAt ?? 0),
        `YAML aliases here expand past the limit of ${limits.maxAliasesPerDocument} (maxAliasesPerDocument), as in a "billion laughs" document: the document is not read`,
      );
      return;
    }
    const root = document.contents;
    const documentStart = root.range?.[0] ?? 0;

    const locate = (pointer: string, options: { key?: boolean } = {}): Position => {
      let node: Node | null = root;
      let best = documentStart;
      const tokens = pointerTokens(pointer);
      for (const [depth, token] of tokens.entries()) {
        const last = depth === tokens.length - 1;
        if (isMap(node)) {
          const pair: Pair | undefined = node.items.find(
            (item) => isScalar(item.key) && String(item.key.value) === token,
          );
          if (!pair) break;
          best = nodeStart(pair) ?? best;
          if (last && options.key) break;
          const value = pair.value as Node | null;
          // `field:` with nothing after it has no value node worth pointing at: keep the key.
          if (
            value &&
            !(isScalar(value) && value.value === null && value.range?.[0] === value.range?.[1])
          ) {
            best = nodeStart(value) ?? best;
          }
          node = value;
        } else if (isSeq(node)) {
          const item = node.items[Number(token)] as Node | undefined;
          if (!item) break;
          best = nodeStart(item) ?? best;
          node = item;
        } else {
          break;
        }
      }
      return position(best);
    };

    documents.push({ file, index, object: data.value, locate });
  });
  return { documents, syntaxProblems };
}
