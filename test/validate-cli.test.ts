// `modelship validate` as a user runs it: the real entry point, real files, real exit codes.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, runCli } from "./helpers/cli.ts";

/** Temporary directories, removed when the tests are done. */
const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

function temporaryDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

describe("modelship validate", () => {
  it("accepts the examples, printing nothing to stderr", () => {
    const run = runCli(["validate", "manifests/examples"]);
    expect(run.stderr).toBe("");
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toBe("8 objects in 4 files: valid\n");
  });

  it("reads a file once when paths overlap", () => {
    const run = runCli(["validate", "manifests/examples", "manifests/examples/iris/model.yaml"]);
    expect(run.stdout).toBe("8 objects in 4 files: valid\n");
  });

  it("gives one precise line per broken manifest, and exit 1", () => {
    const run = runCli(["validate", "test/fixtures/invalid"]);
    expect(run.exitCode).toBe(1);
    const lines = run.stdout.trimEnd().split("\n");
    // Each line: path:line:col: Kind/name /pointer: message — in file order.
    expect(lines.map((line) => line.split(": ").slice(0, 2).join(": "))).toEqual([
      "test/fixtures/invalid/alias-bomb.yaml:3:14: ?/? /",
      "test/fixtures/invalid/duplicate.yaml:11:9: ModelDeployment/scorer /metadata/name",
      "test/fixtures/invalid/missing-file.yaml:7:9: Model/no-file /spec/file",
      "test/fixtures/invalid/missing-model.yaml:6:10: ModelDeployment/orphan /spec/model",
      "test/fixtures/invalid/not-utf8.yaml:6:19: ?/? /",
      "test/fixtures/invalid/nul-byte.yaml:6:18: ?/? /",
      "test/fixtures/invalid/replicas.yaml:7:13: ModelDeployment/too-few /spec/replicas",
      "test/fixtures/invalid/replicas.yaml:15:13: ModelDeployment/too-many /spec/replicas",
      "test/fixtures/invalid/syntax-error.yaml:7:9: Model/broken-yaml /",
      "test/fixtures/invalid/undefined-function.yaml:10:13: Model/wrong-function /spec/function",
      "test/fixtures/invalid/unknown-field.yaml:7:3: ModelDeployment/typo /spec/replica",
      "test/fixtures/invalid/unsafe-file.yaml:7:9: Model/dash-file /spec/file",
      "test/fixtures/invalid/unsafe-file.yaml:7:9: Model/dash-file /spec/file",
      "test/fixtures/invalid/wrong-api-version.yaml:1:13: ModelDeployment/old-version /apiVersion",
    ]);
    expect(lines[0]).toContain(
      'YAML aliases here expand past the limit of 100 (maxAliasesPerDocument), as in a "billion laughs" document',
    );
    expect(lines[1]).toContain("already defined at test/fixtures/invalid/duplicate.yaml:4:9");
    expect(lines[2]).toContain('file "scorer/missing.py" not found');
    expect(lines[3]).toContain(
      'Model "scorre" is not defined in namespace default (did you mean "scorer"?)',
    );
    expect(lines[4]).toContain("not UTF-8: the bytes at byte offset 97 (0xe9 0x20 0x61 0x75)");
    expect(lines[5]).toContain("a NUL byte (U+0000) is not allowed in YAML");
    expect(lines[6]).toContain("must be between 1 and 9, not 0");
    expect(lines[7]).toContain("must be between 1 and 9, not 12");
    expect(lines[8]).toContain("YAML syntax error");
    expect(lines[9]).toContain(
      'function "predcit" is not defined at the top level of score.py (did you mean "predict"?)',
    );
    expect(lines[10]).toContain('unknown field "replica" (did you mean "replicas"?)');
    expect(lines[11]).toContain('file "--help.py" not found');
    expect(lines[12]).toContain(
      "that is safe to pass as an argument: not starting with '-', and with no control character (such as a newline), '$' or backtick, not \"--help.py\"",
    );
    expect(lines[13]).toContain("ModelDeployment is served as modelship.dev/v1alpha1");
    expect(run.stderr).toBe("14 problems (11 objects in 13 files)\n");
  });

  it("prints the same problems as a JSON array with --output json", () => {
    const text = runCli(["validate", "test/fixtures/invalid"]);
    const json = runCli(["validate", "--output", "json", "test/fixtures/invalid"]);
    expect(json.exitCode).toBe(1);
    const problems = JSON.parse(json.stdout) as {
      file: string;
      line: number;
      column: number;
      rule: string;
    }[];
    expect(problems).toHaveLength(14);
    expect(problems.map((problem) => `${problem.file}:${problem.line}:${problem.column}`)).toEqual(
      text.stdout
        .trimEnd()
        .split("\n")
        .map((line) => line.split(": ")[0]),
    );
    expect(new Set(problems.map((problem) => problem.rule))).toEqual(
      new Set([
        "duplicate",
        "model-file",
        "model-reference",
        "schema",
        "yaml-syntax",
        "function",
        "unknown-field",
        "api-version",
        "limit",
        "encoding",
      ]),
    );
  });

  it("honours an installation's higher replica limit", () => {
    const dir = temporaryDir("modelship-validate-");
    writeFileSync(join(dir, "predict.py"), "def predict(args):\n    return args\n");
    writeFileSync(
      join(dir, "model.yaml"),
      [
        "apiVersion: modelship.dev/v1alpha1\nkind: Model\nmetadata: {name: echo}\nspec: {runtime: python3, file: predict.py, function: predict}",
        "apiVersion: modelship.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: echo}\nspec: {model: echo, replicas: 12}",
      ].join("\n---\n"),
    );
    expect(runCli(["validate", dir]).stdout).toContain("must be between 1 and 9, not 12");
    expect(runCli(["validate", "--max-replicas", "16", dir]).exitCode).toBe(0);
    expect(runCli(["validate", dir], { env: { MODELSHIP_MAX_REPLICAS: "12" } }).exitCode).toBe(0);
    const bad = runCli(["validate", "--max-replicas", "many", dir]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('--max-replicas must be a positive integer, not "many"');
  });

  it("holds a directory to the limits of a commit, with the sync's messages", () => {
    const dir = temporaryDir("modelship-validate-");
    for (let index = 0; index <= 1000; index++) {
      writeFileSync(join(dir, `m${String(index).padStart(4, "0")}.yaml`), "a: 1\n");
    }
    const many = runCli(["validate", dir]);
    expect(many.exitCode).toBe(1);
    expect(many.stdout).toBe(
      `${relative(PROJECT_ROOT, join(dir, "m1000.yaml"))}:1:1: ?/? /: 1001 manifest files, more than the 1000 a commit may have (maxFilesPerCommit), the first over it here: none of them is validated\n`,
    );
    expect(many.stderr).toBe("1 problem (0 objects in 1001 files)\n");

    const large = temporaryDir("modelship-validate-");
    writeFileSync(join(large, "big.yaml"), `a: "${"x".repeat(1024 * 1024)}"\n`);
    expect(runCli(["validate", large]).stdout).toContain(
      "big.yaml:1:1: ?/? /: the file is 1 MiB (1048582 bytes), more than the 1 MiB a manifest file may be (maxFileBytes): it is not read",
    );
  });

  it("reads a model file behind a symlink that leaves the repository as absent, as the sync does", () => {
    const outside = temporaryDir("modelship-outside-");
    const repo = temporaryDir("modelship-validate-");
    writeFileSync(join(outside, "predict.py"), "def predict(args):\n    return args\n");
    symlinkSync(join(outside, "predict.py"), join(repo, "predict.py"));
    symlinkSync("../../../../../../../..", join(repo, "up"));
    writeFileSync(
      join(repo, "model.yaml"),
      "apiVersion: modelship.dev/v1alpha1\nkind: Model\nmetadata: {name: echo}\nspec: {runtime: python3, file: predict.py, function: predict, source: {path: up}}\n",
    );
    const run = runCli(["validate", repo]);
    expect(run.stdout).toContain('source path "up" is not a directory in the repository');
    writeFileSync(
      join(repo, "model.yaml"),
      "apiVersion: modelship.dev/v1alpha1\nkind: Model\nmetadata: {name: echo}\nspec: {runtime: python3, file: predict.py, function: predict}\n",
    );
    expect(runCli(["validate", repo]).stdout).toContain('file "predict.py" not found');
  });

  it("says which path does not exist", () => {
    const run = runCli(["validate", "no/such/dir"]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toBe("modelship validate: no/such/dir: no such file or directory\n");
  });

  it("lists its commands with --help", () => {
    const run = runCli(["--help"]);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/^ {2}validate {2}/m);
    expect(runCli(["validate", "--help"]).stdout).toContain("Usage: modelship validate [PATH...]");
    expect(runCli(["frobnicate"]).stderr).toContain('unknown command "frobnicate"');
  });
});

describe("modelship validate on an examples file", () => {
  it("names the file and line of each line that is not an example", () => {
    const repo = temporaryDir("modelship-examples-");
    writeFileSync(join(repo, "echo.py"), "def echo(args):\n    return args\n");
    writeFileSync(
      join(repo, "examples.jsonl"),
      '{"input": {"a": 1}, "output": {"a": 1}}\n\n{"input": 2,}\n{"inputs": 3}\n',
    );
    writeFileSync(
      join(repo, "model.yaml"),
      "apiVersion: modelship.dev/v1alpha1\nkind: Model\nmetadata: {name: echo}\nspec: {runtime: python3, file: echo.py, function: echo, examplesFile: examples.jsonl}\n",
    );
    const run = runCli(["validate", repo]);
    expect(run.exitCode).toBe(1);
    const shown = relative(PROJECT_ROOT, join(repo, "examples.jsonl"));
    expect(run.stdout).toContain(`${shown}:3:1: Model/echo /spec/examplesFile: not JSON`);
    expect(run.stdout).toContain(
      `${shown}:4:1: Model/echo /spec/examplesFile: each line must be an object with an "input"`,
    );
    writeFileSync(
      join(repo, "model.yaml"),
      "apiVersion: modelship.dev/v1alpha1\nkind: Model\nmetadata: {name: echo}\nspec: {runtime: python3, file: echo.py, function: echo, examplesFile: missing.jsonl}\n",
    );
    expect(runCli(["validate", repo]).stdout).toContain(
      'examples file "missing.jsonl" not found in .',
    );
  });
});
