// Reads YAML manifest files into documents that remember where each node came from, so that a
// problem found in the parsed object can be reported at its line and column.
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
    const range = (node as Node).range;
    if (unclosed && range && range[1] === detectedAt && range[0] < detectedAt) {
      opening = Math.max(opening ?? -1, range[0]);
    }
  });
  return opening ?? detectedAt;
}

export function parseManifestFile(file: string, text: string): ParsedFile {
  const lineCounter = new LineCounter();
  const documents: ManifestDocument[] = [];
  const syntaxProblems: SyntaxProblem[] = [];
  const position = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };

  parseAllDocuments(text, { lineCounter, prettyErrors: false }).forEach((document, index) => {
    if (document.errors.length > 0) {
      const salvaged = document.toJS({ maxAliasCount: 100 }) as Record<string, unknown> | null;
      const metadata = salvaged?.metadata as Record<string, unknown> | undefined;
      for (const error of document.errors) {
        syntaxProblems.push({
          file,
          position: position(syntaxErrorOffset(document, error)),
          // The parser's message is one sentence; its first line is the useful part.
          message: `YAML syntax error: ${error.message.split("\n")[0]}`,
          ...(typeof salvaged?.kind === "string" ? { kind: salvaged.kind } : {}),
          ...(typeof metadata?.name === "string" ? { name: metadata.name } : {}),
        });
      }
      return;
    }
    if (document.contents === null) return; // an empty document, e.g. after a trailing ---
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

    documents.push({ file, index, object: document.toJS({ maxAliasCount: 100 }), locate });
  });
  return { documents, syntaxProblems };
}
