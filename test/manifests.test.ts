// Parsing manifests with positions, finding top-level functions, and suggestions.
import { describe, expect, it } from "vitest";
import { topLevelNames } from "../controller/source/functions.ts";
import { MANIFEST_LIMITS } from "../controller/source/limits.ts";
import { parseManifestFile, positionIn } from "../controller/source/manifests.ts";
import { didYouMean, editDistance } from "../controller/source/suggest.ts";
import { lexedNestingOffset } from "../controller/source/yaml-bounds.ts";

describe("parseManifestFile", () => {
  it.each([
    [
      "an unclosed flow sequence, at its [",
      "a: 1\nb: [x, y\nc: 3\n",
      { line: 2, column: 4 },
      "end with a ]",
    ],
    [
      "an unclosed flow mapping, at its {",
      "a: {x: 1\nb: 2\n",
      { line: 1, column: 4 },
      "end with a }",
    ],
    [
      "an unterminated string, at its quote",
      'a: 1\nb: "open\nc: 3\n',
      { line: 2, column: 4 },
      "Missing closing",
    ],
    [
      "a duplicate key, at the second one",
      "a: 1\na: 2\n",
      { line: 2, column: 1 },
      "Map keys must be unique",
    ],
    ["a tab as indentation", "a:\n\t- x\n", { line: 2, column: 1 }, "Tabs are not allowed"],
    // A pair with no key is a null node in the tree: looking for the opening must skip it.
    ["an unclosed [ after a pair with no key", ":\n[", { line: 2, column: 1 }, "end with a ]"],
  ])("reports %s", (_case, text, position, message) => {
    const { syntaxProblems } = parseManifestFile("f.yaml", text);
    expect(syntaxProblems[0]?.position).toEqual(position);
    expect(syntaxProblems[0]?.message).toContain(message);
  });

  it("keeps the good documents of a file that has a broken one", () => {
    const parsed = parseManifestFile(
      "f.yaml",
      "kind: Model\n---\nkind: [\n---\nkind: ModelDeployment\n",
    );
    expect(parsed.documents.map((document) => (document.object as { kind: string }).kind)).toEqual([
      "Model",
      "ModelDeployment",
    ]);
    expect(parsed.syntaxProblems).toHaveLength(1);
  });

  it.each([
    ["", {}, { line: 3, column: 1 }],
    ["/spec", {}, { line: 5, column: 3 }],
    ["/spec/replicas", {}, { line: 5, column: 13 }],
    ["/spec/replicas", { key: true }, { line: 5, column: 3 }],
    ["/spec/env/A~1B", {}, { line: 7, column: 10 }],
    ["/spec/ports/1", {}, { line: 10, column: 7 }],
    // A pointer into nothing lands on the deepest node on its way.
    ["/spec/missing/deeper", {}, { line: 5, column: 3 }],
    // `empty:` has no value to point at: its key it is.
    ["/spec/empty", {}, { line: 11, column: 3 }],
  ])("locates %s (%o)", (pointer, options, position) => {
    const text = [
      "# comment",
      "",
      "kind: ModelDeployment",
      "spec:",
      "  replicas: 3",
      "  env:",
      "    A/B: x",
      "  ports:",
      "    - 1",
      "    - 2",
      "  empty:",
    ].join("\n");
    const [document] = parseManifestFile("f.yaml", text).documents;
    expect(document?.locate(pointer, options)).toEqual(position);
  });
});

describe("parseManifestFile within the limits", () => {
  const limits = { maxDepth: 3, maxAliasesPerDocument: 4 };
  it.each<[string, string, { line: number; column: number }, string]>([
    [
      "flow nesting past the depth",
      "a: [[[1]]]\n",
      { line: 1, column: 6 },
      "nested more than 3 levels",
    ],
    [
      "block nesting past the depth",
      "a:\n  b:\n    c:\n      d: 1\n",
      { line: 4, column: 7 },
      "nested more than 3 levels",
    ],
    [
      "compact nesting past the depth",
      "- - - - x\n",
      { line: 1, column: 7 },
      "nested more than 3 levels",
    ],
    [
      "a mapping key that is too deep",
      "? [[[x]]]\n: 1\n",
      { line: 1, column: 5 },
      "nested more than 3 levels",
    ],
    [
      "more aliases than allowed",
      "a: &a 1\nb: *a\nc: *a\nd: *a\ne: *a\nf: *a\n",
      { line: 6, column: 4 },
      "more than 4 YAML aliases",
    ],
    [
      "aliases that expand too far",
      "a: &a [1]\nb: &b [*a, *a]\nc: [*b, *b]\n",
      { line: 2, column: 8 },
      "expand past the limit of 4",
    ],
  ])("refuses %s, at the place", (_case, text, position, message) => {
    const { documents, syntaxProblems } = parseManifestFile("f.yaml", text, limits);
    expect(documents).toEqual([]);
    expect(syntaxProblems).toEqual([
      { file: "f.yaml", position, rule: "limit", message: expect.stringContaining(message) },
    ]);
  });

  it("keeps the documents of a file that has one refused", () => {
    const text = "kind: Model\n---\na: [[[[1]]]]\n---\nkind: ModelDeployment\n";
    const parsed = parseManifestFile("f.yaml", text, limits);
    expect(parsed.documents.map((document) => (document.object as { kind: string }).kind)).toEqual([
      "Model",
      "ModelDeployment",
    ]);
    expect(parsed.syntaxProblems.map((problem) => problem.rule)).toEqual(["limit"]);
  });

  it("reports an alias to no anchor as a syntax error, instead of throwing", () => {
    const { syntaxProblems } = parseManifestFile(
      "f.yaml",
      "a: 1\nb: *nowhere\nc: &later 2\nd: *later\n",
    );
    expect(syntaxProblems).toEqual([
      {
        file: "f.yaml",
        position: { line: 2, column: 4 },
        rule: "yaml-syntax",
        message:
          "YAML syntax error: Unresolved alias (the anchor must be set before the alias): nowhere",
      },
    ]);
  });

  it("refuses a file of a million [ before the parser builds anything", () => {
    const before = process.memoryUsage().heapUsed;
    const started = performance.now();
    const { syntaxProblems } = parseManifestFile("f.yaml", "[".repeat(1_000_000));
    const milliseconds = performance.now() - started;
    const megabytes = (process.memoryUsage().heapUsed - before) / 1e6;
    console.log(
      `a million [ refused in ${milliseconds.toFixed(0)} ms, heap +${megabytes.toFixed(0)} MB`,
    );
    expect(syntaxProblems).toEqual([
      expect.objectContaining({ rule: "limit", position: { line: 1, column: 129 } }),
    ]);
    expect(megabytes).toBeLessThan(200);
  });

  it("finds duplicate keys of a wide mapping in linear time", () => {
    const keys = Array.from({ length: 60_000 }, (_, index) => `k${index}: ${index}`);
    const text = `${keys.join("\n")}\nk7: again\n`;
    const started = performance.now();
    const { syntaxProblems } = parseManifestFile("f.yaml", text);
    const milliseconds = performance.now() - started;
    console.log(`60000 keys parsed in ${milliseconds.toFixed(0)} ms`);
    expect(syntaxProblems).toEqual([
      expect.objectContaining({ position: { line: 60_001, column: 1 }, rule: "yaml-syntax" }),
    ]);
    expect(syntaxProblems[0]?.message).toContain("Map keys must be unique");
    // The parser's own check, each key against every other, took over 10 s here.
    expect(milliseconds).toBeLessThan(5000);
  });

  it("reads what stays within the limits as before", () => {
    const atTheDepth = `a: ${"[".repeat(MANIFEST_LIMITS.maxDepth - 1)}1${"]".repeat(MANIFEST_LIMITS.maxDepth - 1)}\n`;
    const aliased = `base: &b {x: 1}\n${Array.from({ length: 100 }, (_, index) => `u${index}: *b`).join("\n")}\n`;
    for (const text of [atTheDepth, aliased, "a: 1\n\n# a comment [[[[\nb: '[[[['\n"]) {
      const { documents, syntaxProblems } = parseManifestFile("f.yaml", text);
      expect(syntaxProblems).toEqual([]);
      expect(documents).toHaveLength(1);
    }
  });
});

describe("lexedNestingOffset", () => {
  it.each<[string, string, number | undefined]>([
    ["shallow", "a: [1, {b: 2}]\n", undefined],
    [
      "brackets in strings and comments do not count",
      "a: '[[[[[[[' # [[[[[[[[\nb: \"{{{{{{{\"\n",
      undefined,
    ],
    ["closed flow collections do not add up", "- [[[1]]]\n- [[[2]]]\n", undefined],
    ["flow past twice the depth: the first [ over", "[[[[[[[x", 6],
    ["block indicators on one line past four times the depth", "- ".repeat(13), 24],
    ["indicators on separate lines do not add up", "- a\n".repeat(50), undefined],
  ])("%s", (_case, text, offset) => {
    expect(lexedNestingOffset(text, 3)).toBe(offset);
  });
});

describe("positionIn", () => {
  it.each<[string, number, { line: number; column: number }]>([
    ["abc", 0, { line: 1, column: 1 }],
    ["abc", 2, { line: 1, column: 3 }],
    ["a\nbc", 2, { line: 2, column: 1 }],
    ["a\nbc\nd", 5, { line: 3, column: 1 }],
    ["a\r\nb", 3, { line: 2, column: 1 }],
  ])("%j at %i", (text, offset, position) => {
    expect(positionIn(text, offset)).toEqual(position);
  });
});

describe("topLevelNames", () => {
  it.each([
    ["def", "def predict(args):\n    pass\n", ["predict"], []],
    ["async def and decorators", "@wrap\nasync def predict(args):\n    pass\n", ["predict"], []],
    [
      "methods and nested functions are not top level",
      "class A:\n    def m(self): pass\ndef f():\n    def inner(): pass\n",
      ["f"],
      [],
    ],
    [
      "assignments and imports",
      "model = load()\npredict = model.predict\nfrom lib import score as s, rank\nx == 1\n",
      [],
      ["model", "predict", "s", "rank"],
    ],
    ["annotated assignment", "threshold: float = 0.5\n", [], ["threshold"]],
  ])("python3: %s", (_case, text, functions, otherNames) => {
    expect(topLevelNames("python3", text)).toEqual({ functions, otherNames });
  });

  it.each([
    ["<-", "predict <- function(args) {\n  1\n}\n", ["predict"]],
    [
      "= and <<-, dots in names",
      "my.fn = function(x) x\nother <<- function(x) x\n",
      ["my.fn", "other"],
    ],
    ["R 4.1 lambdas", "f <- \\(x) x + 1\n", ["f"]],
    [
      "indented (inside a function) is not top level",
      "outer <- function() {\n  inner <- function() 1\n}\n",
      ["outer"],
    ],
    ["a value is not a function", "threshold <- 0.5\n", []],
  ])("r: %s", (_case, text, functions) => {
    expect(topLevelNames("r", text).functions).toEqual(functions);
  });
});

describe("suggestions", () => {
  it.each([
    ["replica", "replicas", 1],
    ["fucntion", "function", 1],
    ["kitten", "sitting", 3],
    ["", "abc", 3],
  ])("editDistance(%s, %s) = %i", (a, b, distance) => {
    expect(editDistance(a, b)).toBe(distance);
  });

  it.each([
    ["replica", ["replicas", "resources"], ' (did you mean "replicas"?)'],
    ["Modle", ["Model", "ModelBuild"], ' (did you mean "Model"?)'],
    ["colour", ["replicas", "resources"], ""],
    ["x", ["y"], ' (did you mean "y"?)'],
  ])("didYouMean(%s)", (word, candidates, text) => {
    expect(didYouMean(word, candidates)).toBe(text);
  });
});
