// Table-driven tests of each validation check, on manifests written inline.
import { describe, expect, it } from "vitest";
import {
  formatProblem,
  formatProblemSummary,
  type ManifestSource,
  type Problem,
  validateManifests,
} from "../controller/source/validate.ts";
import { MemoryTree } from "./helpers/memory-tree.ts";

const MODEL = `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: scorer
spec:
  runtime: python3
  file: score.py
  function: predict
`;

const DEPLOYMENT = `apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: scorer
spec:
  model: scorer
`;

const FILES = {
  "models/score.py": "import math\n\ndef predict(args):\n    return math.tanh(args['x'])\n",
  "models/score.R": "predict <- function(args) {\n  tanh(args$x)\n}\n",
};

/** Validates one manifest file at models/m.yaml beside the model files; returns formatted lines. */
async function problemsOf(text: string, files: Record<string, string> = FILES): Promise<string[]> {
  const source: ManifestSource = { file: "m.yaml", repoPath: "models/m.yaml", text };
  const { problems } = await validateManifests([source], new MemoryTree(files));
  return problems.map(formatProblem);
}

/** A Model (and its deployment) with one spec line replaced or added. */
function modelWith(specLines: string, deploymentLines = ""): string {
  return `${MODEL}${specLines}---\n${DEPLOYMENT}${deploymentLines}`;
}

describe("validateManifests", () => {
  it("accepts a Model with its ModelDeployment", async () => {
    expect(await problemsOf(modelWith(""))).toEqual([]);
  });

  it.each([
    [
      "runtime typo",
      "  runtime: pyhton3\n",
      'm.yaml:6:12: Model/scorer /spec/runtime: must be one of "python3", "r", not "pyhton3" (did you mean "python3"?)',
    ],
    [
      "unknown spec field",
      "  fucntion: x\n",
      'm.yaml:9:3: Model/scorer /spec/fucntion: unknown field "fucntion" (did you mean "function"?)',
    ],
    [
      "unknown field with no near name",
      "  colour: red\n",
      'm.yaml:9:3: Model/scorer /spec/colour: unknown field "colour"; known fields: description, runtime, file, function, source, buildScript, example, examples, examplesFile, inputSchema, authentication',
    ],
    [
      "wrong type",
      "  authentication: { enabled: 'yes' }\n",
      'm.yaml:9:30: Model/scorer /spec/authentication/enabled: must be true or false, not "yes"',
    ],
    [
      "absolute file",
      "  file: /etc/passwd\n",
      "m.yaml:7:9: Model/scorer /spec/file: must be a relative path inside the repository, with no '..' segment, that is safe to pass as an argument: not starting with '-', and with no control character (such as a newline), '$' or backtick, not \"/etc/passwd\"",
    ],
    [
      "escaping source path",
      "  source: { path: ../elsewhere }\n",
      "m.yaml:9:19: Model/scorer /spec/source/path: must be a relative path inside the repository, with no '..' segment, not \"../elsewhere\"",
    ],
    [
      "function name with a space",
      "  function: my predict\n",
      "m.yaml:8:13: Model/scorer /spec/function: must be a function name: letters, digits, '_' and '.', not starting with a digit, not \"my predict\"",
    ],
  ])("reports a Model's %s at the field", async (_case, line, expected) => {
    // A duplicated key would be a YAML error, so the variant line replaces the original one.
    const key = line.trim().split(":")[0] as string;
    const base = MODEL.split("\n")
      .filter((text) => !text.startsWith(`  ${key}:`))
      .join("\n");
    const text = `${base}${line}---\n${DEPLOYMENT}`;
    const problems = await problemsOf(text);
    expect(problems).toContain(expected.replace(/^m\.yaml:\d+:/, `m.yaml:${lineOf(text, line)}:`));
  });

  it.each([
    ["replicas 0", "  replicas: 0\n", "/spec/replicas: must be between 1 and 9, not 0"],
    ["replicas 12", "  replicas: 12\n", "/spec/replicas: must be between 1 and 9, not 12"],
    ["replicas as text", "  replicas: three\n", '/spec/replicas: must be an integer, not "three"'],
    [
      "build 0",
      "  build: 0\n",
      '/spec/build: must be "latest" or a build number (1 or more), not 0',
    ],
    [
      "build 1.5",
      "  build: 1.5\n",
      '/spec/build: must be "latest" or a build number (1 or more), not 1.5',
    ],
    [
      "build misspelt",
      "  build: lastest\n",
      '/spec/build: must be "latest" or a build number (1 or more), not "lastest"',
    ],
    [
      "cpu nonsense",
      "  resources: { cpu: lots }\n",
      '/spec/resources/cpu: must be a Kubernetes quantity such as 1, 500m or "0.5", not "lots"',
    ],
    [
      "negative timeout",
      "  timeoutSeconds: -1\n",
      "/spec/timeoutSeconds: must be between 1 and 3600, not -1",
    ],
    [
      "env name",
      "  env: { 1BAD: x }\n",
      "/spec/env/1BAD: \"1BAD\" must be an environment variable name: letters, digits and '_', not starting with a digit",
    ],
    ["env value", "  env: { GOOD: 3 }\n", "/spec/env/GOOD: must be a string, not 3"],
    ["missing model", "  model: null\n", "/spec/model: must be a string, not null"],
  ])("reports a ModelDeployment's %s", async (_case, line, expected) => {
    const key = line.trim().split(":")[0] as string;
    const base = DEPLOYMENT.split("\n")
      .filter((text) => !text.startsWith(`  ${key}:`))
      .join("\n");
    const problems = await problemsOf(`${MODEL}---\n${base}${line}`);
    expect(problems.filter((problem) => problem.includes("ModelDeployment/"))).toEqual([
      expect.stringContaining(`ModelDeployment/scorer ${expected}`),
    ]);
  });

  it.each([
    [
      "a DNS-1123 name",
      "metadata:\n  name: Scorer_1\n",
      "Model/Scorer_1 /metadata/name: must be a DNS-1123 label",
    ],
    ["a missing name", "metadata: {}\n", 'Model/? /metadata/name: missing required field "name"'],
    ["a missing spec", null, 'Model/scorer /spec: missing required field "spec"'],
  ])("requires %s", async (_case, metadata, expected) => {
    let text = MODEL;
    if (metadata === null) text = MODEL.slice(0, MODEL.indexOf("spec:"));
    else text = MODEL.replace("metadata:\n  name: scorer\n", metadata);
    expect((await problemsOf(text)).join("\n")).toContain(expected);
  });

  it.each([
    [
      "a kind typo",
      "kind: Modle\n",
      'Modle/scorer /kind: kind is "Modle": modelship.dev/v1alpha1 has ModelRepository, Model, ModelBuild, ModelDeployment (did you mean "Model"?)',
    ],
    [
      "an old apiVersion",
      "apiVersion: modelship.dev/v1beta1\n",
      'Model/scorer /apiVersion: apiVersion is "modelship.dev/v1beta1": Model is served as modelship.dev/v1alpha1',
    ],
    [
      "a foreign apiVersion on our kind",
      "apiVersion: apps/v1\n",
      'Model/scorer /apiVersion: apiVersion is "apps/v1"',
    ],
  ])("rejects %s", async (_case, line, expected) => {
    const key = line.split(":")[0] as string;
    const text = MODEL.replace(new RegExp(`^${key}: .*\\n`, "m"), line);
    expect((await problemsOf(text)).join("\n")).toContain(expected);
  });

  it("skips documents that are not modelship's", async () => {
    const foreign = [
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 100}",
      "name: ci\non: [push]\njobs: {}",
      "- just\n- a list",
      "",
    ].join("\n---\n");
    expect(await problemsOf(foreign)).toEqual([]);
  });

  it("rejects a committed ModelBuild, which the controller owns", async () => {
    const build = MODEL.replace("kind: Model", "kind: ModelBuild");
    expect(await problemsOf(build)).toEqual([
      "m.yaml:2:7: ModelBuild/scorer /kind: ModelBuild objects are created by the controller; do not commit them",
    ]);
  });

  it("finds duplicates per kind and namespace, not across them", async () => {
    const inOtherNamespace = MODEL.replace("name: scorer", "name: scorer\n  namespace: team-b");
    // Not a duplicate, but a Model's name is one namespace's (the rule `route`, below).
    expect(await problemsOf(`${MODEL}---\n${DEPLOYMENT}---\n${inOtherNamespace}`)).toEqual([
      'm.yaml:20:9: Model/scorer /metadata/name: Model "scorer" of namespace default is defined at m.yaml:4:9; the gateway serves a model by its name alone (/model/scorer), so a name is one namespace\'s: rename this Model',
    ]);
    expect(await problemsOf(`${MODEL}---\n${MODEL}---\n${DEPLOYMENT}`)).toEqual([
      'm.yaml:13:9: Model/scorer /metadata/name: Model "scorer" in namespace default is already defined at m.yaml:4:9',
    ]);
  });

  it.each<[string, string, string[], string[]]>([
    ["a name no other namespace has", "", [], []],
    ["a name only this namespace has already (its own Model, synced before)", "", ["default"], []],
    [
      "a name another namespace already has",
      "",
      ["team-a"],
      [
        'm.yaml:4:9: Model/scorer /metadata/name: namespace team-a already has a Model "scorer"; the gateway serves a model by its name alone (/model/scorer), so a name is one namespace\'s: rename this Model',
      ],
    ],
    [
      "a name two other namespaces have",
      "  namespace: team-c\n",
      ["team-b", "team-a", "team-c"],
      [
        'm.yaml:4:9: Model/scorer /metadata/name: namespace team-a, team-b already has a Model "scorer"; the gateway serves a model by its name alone (/model/scorer), so a name is one namespace\'s: rename this Model',
      ],
    ],
  ])(
    "refuses a Model whose name is served elsewhere: %s",
    async (_, namespaceLine, existing, expected) => {
      const text = MODEL.replace("name: scorer\n", `name: scorer\n${namespaceLine}`);
      const source: ManifestSource = { file: "m.yaml", repoPath: "models/m.yaml", text };
      const { problems } = await validateManifests([source], new MemoryTree(FILES), {
        modelNamespaces: (name) => (name === "scorer" ? existing : []),
      });
      expect(problems.map(formatProblem)).toEqual(expected);
    },
  );

  it("resolves a ModelDeployment's model in its own namespace", async () => {
    const elsewhere = DEPLOYMENT.replace("name: scorer", "name: scorer\n  namespace: team-b");
    expect(await problemsOf(`${MODEL}---\n${elsewhere}`)).toEqual([
      'm.yaml:16:10: ModelDeployment/scorer /spec/model: Model "scorer" is not defined in namespace team-b; no Model is defined in this namespace',
    ]);
  });

  it.each([
    [
      "missing source directory",
      "  source: { path: lib }\n",
      { "other/score.py": "" },
      'source path "lib" is not a directory',
    ],
    [
      "missing file",
      "",
      { "models/other.py": "" },
      'file "score.py" not found in source path "models"',
    ],
    [
      "missing build script",
      "  buildScript: build.sh\n",
      FILES,
      'build script "build.sh" not found in models',
    ],
    [
      "function only in a comment",
      "",
      { "models/score.py": "# def predict(args):\ndef other(a):\n  pass\n" },
      'function "predict" is not defined at the top level of score.py; functions found: other',
    ],
    [
      "method, not a top-level function",
      "",
      { "models/score.py": "class M:\n    def predict(self, args):\n        pass\n" },
      "the file defines no function",
    ],
    [
      "model file left out by source.exclude",
      '  source: { exclude: ["*.py"] }\n',
      FILES,
      'file "score.py" is left out of the build by source.exclude or .modelshipignore',
    ],
    [
      "model file left out by .modelshipignore",
      "",
      { ...FILES, "models/.modelshipignore": "# generated\nscore.py\n" },
      'file "score.py" is left out of the build by source.exclude or .modelshipignore',
    ],
  ])("checks the Model's source: %s", async (_case, specLines, files, expected) => {
    const problems = await problemsOf(modelWith(specLines), files);
    expect(problems.join("\n")).toContain(expected);
  });

  it("accepts a model file that its exclusions keep", async () => {
    const kept = modelWith('  source: { exclude: ["*.csv", "notebooks/"] }\n');
    expect(await problemsOf(kept, { ...FILES, "models/.modelshipignore": "data/\n" })).toEqual([]);
  });

  it("takes source.path from the repository root and defaults it to the manifest's directory", async () => {
    const moved = modelWith("  source: { path: src/scoring }\n");
    expect(await problemsOf(moved, { "src/scoring/score.py": FILES["models/score.py"] })).toEqual(
      [],
    );
    const elsewhere = { "score.py": FILES["models/score.py"], "models/README.md": "" };
    expect(await problemsOf(modelWith(""), elsewhere)).toEqual([
      'm.yaml:7:9: Model/scorer /spec/file: file "score.py" not found in source path "models"',
    ]);
  });

  it("checks an R model's function", async () => {
    const rModel = MODEL.replace("runtime: python3", "runtime: r").replace("score.py", "score.R");
    expect(await problemsOf(`${rModel}---\n${DEPLOYMENT}`)).toEqual([]);
    const wrongLanguage = MODEL.replace("score.py", "score.R");
    expect((await problemsOf(`${wrongLanguage}---\n${DEPLOYMENT}`)).join("\n")).toContain(
      'runtime python3 loads .py files, not "score.R"',
    );
    const misnamed = rModel.replace("function: predict", "function: Predict");
    expect((await problemsOf(misnamed)).join("\n")).toContain(
      'function "Predict" is not assigned a function at the top level of score.R (did you mean "predict"?)',
    );
  });

  it("checks that inputSchema is a JSON Schema and that the example passes it", async () => {
    const schema = "  inputSchema: { type: object, required: [x] }\n";
    expect(await problemsOf(modelWith(`${schema}  example: { input: { x: 1 } }\n`))).toEqual([]);
    expect(
      (await problemsOf(modelWith(`${schema}  example: { input: { y: 1 } }\n`))).join("\n"),
    ).toContain(
      "/spec/example/input: example input does not match inputSchema: input must have required property 'x'",
    );
    expect((await problemsOf(modelWith("  inputSchema: { type: objekt }\n"))).join("\n")).toContain(
      "/spec/inputSchema: not a valid JSON Schema",
    );
    // Another dialect, by its $schema: draft-07's `definitions` resolve; draft-04 is named.
    const draft7 =
      '  inputSchema: { $schema: "http://json-schema.org/draft-07/schema#", definitions: { n: { type: number } }, properties: { x: { $ref: "#/definitions/n" } } }\n';
    expect(await problemsOf(modelWith(`${draft7}  example: { input: { x: 1 } }\n`))).toEqual([]);
    expect(
      (await problemsOf(modelWith(`${draft7}  example: { input: { x: "one" } }\n`))).join("\n"),
    ).toContain("/spec/example/input: example input does not match inputSchema: /x must be number");
    const draft4 = '  inputSchema: { $schema: "http://json-schema.org/draft-04/schema#" }\n';
    expect((await problemsOf(modelWith(draft4))).join("\n")).toContain(
      '/spec/inputSchema: not a valid JSON Schema: $schema "http://json-schema.org/draft-04/schema#" is not a JSON Schema dialect the gateway checks',
    );
  });
});

describe("names passed to the worker or the build script as arguments", () => {
  const refusal = `must be a relative path inside the repository, with no '..' segment, that is safe to pass as an argument: not starting with '-', and with no control character (such as a newline), '$' or backtick`;
  it.each([
    ["a file that reads as an option", "  file: -x.py\n", "/spec/file", '"-x.py"'],
    ["a file with a newline", '  file: "a\\nscore.py"\n', "/spec/file", '"a\\nscore.py"'],
    ["a file with a NUL", '  file: "score\\0.py"\n', "/spec/file", '"score\\u0000.py"'],
    ["a file with a command substitution", '  file: "x$(id).py"\n', "/spec/file", '"x$(id).py"'],
    [
      "a build script that reads as an option",
      "  buildScript: --rcfile=x\n",
      "/spec/buildScript",
      '"--rcfile=x"',
    ],
    [
      "a build script with a backtick",
      "  buildScript: a`id`.sh\n",
      "/spec/buildScript",
      '"a`id`.sh"',
    ],
    ["a build script with a tab", '  buildScript: "a\\tb.sh"\n', "/spec/buildScript", '"a\\tb.sh"'],
  ])("refuses %s at the field", async (_case, line, pointer, shown) => {
    const key = line.trim().split(":")[0] as string;
    const base = MODEL.split("\n")
      .filter((text) => !text.startsWith(`  ${key}:`))
      .join("\n");
    const text = `${base}${line}---\n${DEPLOYMENT}`;
    const column = line.indexOf(":") + 3;
    expect(await problemsOf(text)).toContain(
      `m.yaml:${lineOf(text, line)}:${column}: Model/scorer ${pointer}: ${refusal}, not ${shown}`,
    );
  });

  it.each([
    ["a name in a subdirectory", "sub/-x.py"],
    ["a hidden file", ".score.py"],
    ["spaces and unicode", "mein modell é.py"],
  ])("accepts %s", async (_case, file) => {
    const text = modelWith(`  source: { path: models }\n`).replace(
      "file: score.py",
      `file: "${file}"`,
    );
    const files = { [`models/${file}`]: FILES["models/score.py"] };
    expect(await problemsOf(text, files)).toEqual([]);
  });
});

describe("validateManifests within the limits", () => {
  const source = (file: string, text: string): ManifestSource => ({ file, repoPath: file, text });
  const validate = async (sources: ManifestSource[], limits = {}) =>
    (await validateManifests(sources, new MemoryTree(FILES), { limits })).problems;

  it.each<[string, ManifestSource[], object, string[]]>([
    [
      "more files than a commit may have: none is validated",
      [source("a.yaml", "a: 1\n"), source("b.yaml", "kind: Modle\n"), source("c.yaml", "c: 1\n")],
      { maxFilesPerCommit: 2 },
      [
        "c.yaml:1:1: ?/? /: 3 manifest files, more than the 2 a commit may have (maxFilesPerCommit), the first over it here: none of them is validated",
      ],
    ],
    [
      "a file over its limit: the others are validated",
      [source("big.yaml", `a: "${"x".repeat(200)}"\n`), source("m.yaml", "a: [\n")],
      { maxFileBytes: 100 },
      [
        "big.yaml:1:1: ?/? /: the file is 206 bytes, more than the 100 bytes a manifest file may be (maxFileBytes): it is not read",
        expect.stringContaining("m.yaml:1:4: ?/? /: YAML syntax error") as unknown as string,
      ],
    ],
    [
      "files that pass the commit's bytes together: none is validated",
      [
        source("a.yaml", "a: 1\n".repeat(20)),
        source("b.yaml", "b: 1\n".repeat(20)),
        source("c.yaml", "kind: Modle\n"),
      ],
      { maxCommitBytes: 150 },
      [
        "b.yaml:1:1: ?/? /: the manifest files pass the 150 bytes a commit may have (maxCommitBytes) at this file: none of them is validated",
      ],
    ],
    [
      "a NUL byte, at its line and column",
      [source("nul.yaml", "a: 1\nb: x\u0000y\n")],
      {},
      [
        "nul.yaml:2:5: ?/? /: a NUL byte (U+0000) is not allowed in YAML (of the control characters, only tab, line feed and carriage return are); is this a binary or UTF-16 file?",
      ],
    ],
    [
      "another control character",
      [source("bell.yaml", "a: \u0007\n")],
      {},
      [
        "bell.yaml:1:4: ?/? /: the control character U+0007 is not allowed in YAML (of the control characters, only tab, line feed and carriage return are); is this a binary or UTF-16 file?",
      ],
    ],
    [
      "a billion laughs",
      [source("lol.yaml", billionLaughs(9))],
      {},
      [
        'lol.yaml:2:14: ?/? /: YAML aliases here expand past the limit of 100 (maxAliasesPerDocument), as in a "billion laughs" document: the document is not read',
      ],
    ],
    [
      "more aliases than a document may have",
      [source("aliases.yaml", `a: &a 1\nb: [${"*a, ".repeat(5)}]\n`)],
      { maxAliasesPerDocument: 4 },
      [
        "aliases.yaml:2:21: ?/? /: more than 4 YAML aliases in one document (maxAliasesPerDocument): the document is not read",
      ],
    ],
    [
      "nesting past the depth",
      [source("deep.yaml", `a: ${"[".repeat(70)}${"]".repeat(70)}\n`)],
      {},
      [
        "deep.yaml:1:67: ?/? /: nested more than 64 levels deep (maxDepth): the document is not read",
      ],
    ],
    [
      "an alias to no anchor, which the parser leaves to be found when the data is made",
      [source("alias.yaml", "a: *nowhere\n")],
      {},
      [
        "alias.yaml:1:4: ?/? /: YAML syntax error: Unresolved alias (the anchor must be set before the alias): nowhere",
      ],
    ],
  ])("reports %s", async (_case, sources, limits, expected) => {
    expect((await validate(sources, limits)).map(formatProblem)).toEqual(expected);
  });

  it("gives each refusal a rule of its own in JSON", async () => {
    const problems = await validate(
      [
        source("big.yaml", "a: 1\n".repeat(100)),
        source("nul.yaml", "a: \u0000\n"),
        source("deep.yaml", "[[[x]]]\n"),
      ],
      { maxFileBytes: 100, maxDepth: 2 },
    );
    expect(problems.map((problem) => [problem.file, problem.rule])).toEqual([
      ["big.yaml", "limit"],
      ["deep.yaml", "limit"],
      ["nul.yaml", "encoding"],
    ]);
  });

  it("refuses a billion laughs in little time and memory", async () => {
    const before = process.memoryUsage().heapUsed;
    const started = performance.now();
    const problems = await validate([source("lol.yaml", billionLaughs(30))]);
    const milliseconds = performance.now() - started;
    const megabytes = (process.memoryUsage().heapUsed - before) / 1e6;
    console.log(
      `billion laughs (10^30 nodes) refused in ${milliseconds.toFixed(1)} ms, heap +${megabytes.toFixed(1)} MB`,
    );
    expect(problems.map((problem) => problem.rule)).toEqual(["limit"]);
    expect(milliseconds).toBeLessThan(2000);
  });
});

describe("formatProblemSummary", () => {
  const problem = (line: number, message = "must be between 1 and 9, not 12"): Problem => ({
    file: "m.yaml",
    line,
    column: 13,
    kind: "ModelDeployment",
    name: "scorer",
    pointer: "/spec/replicas",
    rule: "schema",
    message,
  });
  const many = (count: number) => Array.from({ length: count }, (_, index) => problem(index + 1));

  it.each<[string, Problem[], { shown?: number; lineChars?: number }, string[]]>([
    ["none", [], {}, []],
    [
      "one",
      [problem(7)],
      {},
      ["m.yaml:7:13: ModelDeployment/scorer /spec/replicas: must be between 1 and 9, not 12"],
    ],
    ["exactly as many as are shown", many(3), { shown: 3 }, many(3).map(formatProblem)],
    [
      "one more than are shown",
      many(4),
      { shown: 3 },
      [...many(3).map(formatProblem), "… and 1 more problem"],
    ],
    ["thousands", many(5000), {}, [...many(20).map(formatProblem), "… and 4980 more problems"]],
    [
      "a long line, cut",
      [problem(1, "x".repeat(100))],
      { lineChars: 60 },
      [`${formatProblem(problem(1, "x".repeat(100))).slice(0, 59)}…`],
    ],
  ])("%s", (_case, problems, options, expected) => {
    const summary = formatProblemSummary(problems, options);
    expect(summary === "" ? [] : summary.split("\n")).toEqual(expected);
  });
});

/** The classic alias bomb: each level a list of ten aliases to the level before. */
function billionLaughs(levels: number): string {
  const lines = ['lol0: "lol"'];
  for (let level = 1; level <= levels; level++) {
    lines.push(
      `lol${level}: &lol${level} [${Array(10)
        .fill(`*lol${level - 1}`)
        .join(", ")}]`,
    );
  }
  return `${lines.join("\n").replace('lol0: "lol"', 'lol0: &lol0 "lol"')}\n`;
}

function lineOf(text: string, line: string): number {
  return text.split("\n").indexOf(line.replace(/\n$/, "")) + 1;
}
