// What parsing one YAML file may cost. The yaml package builds a syntax tree whose size follows
// the text, with three exceptions this module closes: nesting (the parser's memory grows fast
// with each open `[`, and everything after it recurses), aliases (resolving each one scans the
// document, and expanding them multiplies), and mapping keys (its uniqueness check compares each
// key with every earlier one). The lexer pass runs before the parser builds anything; the tree
// pass runs before a document is turned into data.
import {
  CST,
  type Document,
  isAlias,
  isCollection,
  isMap,
  isPair,
  isScalar,
  Lexer,
  type Node,
  type Pair,
  YAMLParseError,
} from "yaml";

/**
 * Where the text certainly nests past twice `maxDepth`, as far as the lexer can tell: flow
 * collections (`[`, `{`) open at once, or block indicators (`-`, `?`, `:`) on one line, of which
 * every level has at most two (`? key : value`). It guards the parser's cost, so it only needs to
 * be sure and early; below twice the limit the tree pass finds the exact place. Nesting by
 * indentation needs a longer line per level, so it stays cheap to parse and is left to the tree.
 */
export function lexedNestingOffset(text: string, maxDepth: number): number | undefined {
  let offset = 0;
  let flowDepth = 0;
  let indicatorsOnLine = 0;
  let scalarFollows = false;
  for (const token of new Lexer().lex(text)) {
    // The lexer marks a plain scalar with a control token; its source comes next, and only
    // real source advances the offset (as in the yaml parser).
    if (scalarFollows) {
      scalarFollows = false;
      offset += token.length;
      continue;
    }
    const type = CST.tokenType(token);
    switch (type) {
      case "scalar":
        scalarFollows = true;
        continue;
      case "doc-mode":
      case "flow-error-end":
        // A broken flow collection ends where the lexer gave up on it.
        flowDepth = 0;
        continue;
      case "flow-seq-start":
      case "flow-map-start":
        if (++flowDepth > 2 * maxDepth) return offset;
        break;
      case "flow-seq-end":
      case "flow-map-end":
        flowDepth = Math.max(0, flowDepth - 1);
        break;
      case "newline":
        indicatorsOnLine = 0;
        break;
      case "seq-item-ind":
      case "explicit-key-ind":
      case "map-value-ind":
        if (flowDepth === 0 && ++indicatorsOnLine > 4 * maxDepth) return offset;
        break;
    }
    offset += token.length;
  }
  return undefined;
}

/** What the tree pass found in one document. */
export interface DocumentInspection {
  /** The first collection nested deeper than allowed. */
  tooDeepAt?: number;
  /** The first alias past the count allowed. */
  tooManyAliasesAt?: number;
  /** The first alias, where an expansion past the limit is reported. */
  firstAliasAt?: number;
  /** Errors the parser was not asked for (too costly there): duplicate keys, unknown anchors. */
  errors: YAMLParseError[];
}

function startOf(node: Node | null | undefined): number {
  return node?.range?.[0] ?? 0;
}

/**
 * One walk over a document's nodes, in document order and without recursion (the depth is what
 * it measures): how deep collections nest, how many aliases there are and whether each names an
 * anchor set before it, and which mapping keys repeat an earlier key of the same mapping — the
 * yaml package's own rule (equal scalar values), checked with a set instead of by pairs.
 */
export function inspectDocument(
  document: Document.Parsed,
  limits: { maxDepth: number; maxAliasesPerDocument: number },
): DocumentInspection {
  const inspection: DocumentInspection = { errors: [] };
  const anchors = new Set<string>();
  let aliases = 0;
  const pending: { node: Node | null; depth: number }[] = [
    { node: document.contents as Node | null, depth: 0 },
  ];
  while (pending.length > 0) {
    const { node, depth } = pending.pop() as { node: Node | null; depth: number };
    if (node === null || node === undefined) continue;
    if (node.anchor) anchors.add(node.anchor);
    if (isAlias(node)) {
      aliases++;
      inspection.firstAliasAt ??= startOf(node);
      if (aliases > limits.maxAliasesPerDocument) {
        inspection.tooManyAliasesAt = startOf(node);
        return inspection;
      }
      if (!anchors.has(node.source)) {
        const message = `Unresolved alias (the anchor must be set before the alias): ${node.source}`;
        inspection.errors.push(errorAt(node, "BAD_ALIAS", message));
      }
      continue;
    }
    if (!isCollection(node)) continue;
    if (depth + 1 > limits.maxDepth) {
      inspection.tooDeepAt = startOf(node);
      return inspection;
    }
    if (isMap(node)) inspection.errors.push(...duplicateKeyErrors(node.items));
    // Pushed in reverse, popped in document order: key before value, first item first.
    const children: (Node | null)[] = [];
    for (const item of node.items as (Node | Pair)[]) {
      if (isPair(item)) children.push(item.key as Node | null, item.value as Node | null);
      else children.push(item);
    }
    for (const child of children.reverse()) pending.push({ node: child, depth: depth + 1 });
  }
  return inspection;
}

function errorAt(node: Node, code: "DUPLICATE_KEY" | "BAD_ALIAS", message: string) {
  const start = startOf(node);
  return new YAMLParseError([start, start + 1], code, message);
}

/** A key equal to an earlier scalar key of the mapping, as the yaml parser would report it. */
function duplicateKeyErrors(pairs: Pair[]): YAMLParseError[] {
  const seen = new Set<unknown>();
  const errors: YAMLParseError[] = [];
  for (const { key } of pairs) {
    // The parser compares scalar values with ===, under which NaN equals nothing.
    if (!isScalar(key) || Number.isNaN(key.value)) continue;
    if (seen.has(key.value)) errors.push(errorAt(key, "DUPLICATE_KEY", "Map keys must be unique"));
    else seen.add(key.value);
  }
  return errors;
}
