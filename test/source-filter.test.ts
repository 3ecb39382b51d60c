// Which files make up a build: the pure rules as tables, then the same rules over a real git
// repository, where the content id (the build key's input) and the exported build context must
// agree file for file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GitSource } from "../controller/source/git.ts";
import {
  type DeclaredModel,
  excludePatterns,
  nestedSourcesOf,
  sourceFilter,
} from "../controller/source/source-filter.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";

describe("nestedSourcesOf", () => {
  it.each<[string, DeclaredModel[], string[][]]>([
    [
      "a root model and one in a subdirectory: the subdirectory is not the root's",
      [
        { repoPath: "model.yaml", sourcePath: "." },
        { repoPath: "r/model.yaml", sourcePath: "r" },
      ],
      [["r"], []],
    ],
    [
      "a model whose source is elsewhere: its manifest's directory and its source",
      [
        { repoPath: "model.yaml", sourcePath: ".", file: "score.py" },
        { repoPath: "deploy/b.yaml", sourcePath: "models/b" },
      ],
      [["deploy", "models/b"], []],
    ],
    [
      "a directory this model's file lives in stays, though another model's source (shared code)",
      [
        { repoPath: "model.yaml", sourcePath: ".", file: "src/a.py" },
        { repoPath: "deploy/b.yaml", sourcePath: "src" },
      ],
      [["deploy"], []],
    ],
    [
      "a directory with this model's manifest too stays; the other's source goes",
      [
        { repoPath: "manifests/a.yaml", sourcePath: "." },
        { repoPath: "manifests/b.yaml", sourcePath: "models/b" },
      ],
      [["models/b"], []],
    ],
    [
      "siblings do not touch each other",
      [
        { repoPath: "models/a/model.yaml", sourcePath: "models/a" },
        { repoPath: "models/b/model.yaml", sourcePath: "models/b" },
      ],
      [[], []],
    ],
    [
      "a prefix of a name is not a parent",
      [
        { repoPath: "models/a/model.yaml", sourcePath: "models/a" },
        { repoPath: "models/ab/model.yaml", sourcePath: "models/ab" },
      ],
      [[], []],
    ],
  ])("%s", (_, models, expected) => {
    expect(nestedSourcesOf(models)).toStrictEqual(expected);
  });
});

describe("excludePatterns", () => {
  it.each<[string, string, string[], string[], string[]]>([
    ["nothing to leave out", ".", [], [], []],
    ["nested directories become anchored patterns", ".", ["r", "a/b"], [], ["/a/b/", "/r/"]],
    [
      "relative to a source path below the root",
      "models",
      ["models/x"],
      ["*.csv"],
      ["/x/", "*.csv"],
    ],
    ["a path outside the source is not its business", "models", ["other"], [], []],
  ])("%s", (_, sourcePath, nested, declared, expected) => {
    expect(excludePatterns(sourcePath, nested, declared)).toStrictEqual(expected);
  });
});

describe("a nested directory with special characters in its name", () => {
  it.each<[string, string]>([
    ["a[1]", "a1"],
    ["x*y", "xzzy"],
    ["!n", "n"],
    ["#h", "h"],
    ["back\\slash", "backslash"],
  ])("%s is left out, and only it (not %s)", (directory, lookalike) => {
    const filter = sourceFilter(excludePatterns(".", [directory]));
    expect(filter(`${directory}/`)).toBe(true);
    expect(filter(`${directory}/model.R`)).toBe(true);
    expect(filter(`${lookalike}/`)).toBe(false);
  });
});

describe("sourceFilter", () => {
  const filter = sourceFilter(["/r/", "*.csv", "!keep.csv", "# a comment", "", "notebooks/"]);
  it.each<[string, boolean]>([
    ["r/", true],
    ["r/model.R", true],
    ["sub/r/", false],
    ["data.csv", true],
    ["deep/data.csv", true],
    ["keep.csv", false],
    ["notebooks/", true],
    ["src/notebooks/", true],
    ["score.py", false],
  ])("%s left out: %s", (path, expected) => {
    expect(filter(path)).toBe(expected);
  });

  it("leaves nothing out with no patterns", () => {
    expect(sourceFilter([])("anything")).toBe(false);
  });
});

describe("a build's files in a real repository", () => {
  const root = mkdtempSync(join(tmpdir(), "modelship-source-filter-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const repo = join(root, "repo");
  const env = gitEnv({ name: "Ada", email: "ada@example.com" });
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env });

  function files(dir: string): string[] {
    const found: string[] = [];
    const walk = (at: string) => {
      for (const name of readdirSync(at)) {
        const path = join(at, name);
        if (statSync(path).isDirectory()) walk(path);
        else found.push(relative(dir, path));
      }
    };
    walk(dir);
    return found.sort();
  }

  it("leaves out nested models, source.exclude and .modelshipignore alike in the key and the export", async () => {
    const first = commitAll(repo, env, "two models", {
      "score.py": "def predict(x):\n    return x\n",
      "model.yaml": "kind: Model\n",
      "r/model.R": "predict <- function(x) x\n",
      "r/model.yaml": "kind: Model\n",
      "data/train.csv": "a,b\n",
      "notes/draft.md": "hello\n",
      ".modelshipignore": "# scratch work\nnotes/\n",
    });
    const source = new GitSource({ url: repo, branch: "main", cacheDir: join(root, "cache") });
    await source.fetch();
    const patterns = excludePatterns(".", ["r"], ["*.csv"]);
    const manifests = new Set(["model.yaml", "r/model.yaml"]);
    const before = await source.contentId(first, ".", manifests, patterns);

    const target = join(root, "export");
    await source.exportTree(first, ".", target, patterns);
    expect(files(target)).toStrictEqual([".modelshipignore", "model.yaml", "score.py"]);

    // Changes only to what is left out: the same content id, so no new build.
    const second = commitAll(repo, env, "other model, data, notes", {
      "r/model.R": "predict <- function(x) x * 2\n",
      "data/train.csv": "a,b\n1,2\n",
      "notes/draft.md": "changed\n",
    });
    await source.fetch();
    expect(await source.contentId(second, ".", manifests, patterns)).toBe(before);

    // A change to the model's own code is a new content id.
    const third = commitAll(repo, env, "own code", {
      "score.py": "def predict(x):\n    return [x]\n",
    });
    await source.fetch();
    expect(await source.contentId(third, ".", manifests, patterns)).not.toBe(before);
    // Without the patterns, the nested model would be part of it: the rules are what keep it out.
    expect(await source.contentId(second, ".", manifests, [])).not.toBe(
      await source.contentId(first, ".", manifests, []),
    );
  });
});
