// Parsing manifests with positions, finding top-level functions, and suggestions.
import { describe, expect, it } from "vitest";
import { topLevelNames } from "../controller/source/functions.ts";
import { parseManifestFile } from "../controller/source/manifests.ts";
import { didYouMean, editDistance } from "../controller/source/suggest.ts";

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
