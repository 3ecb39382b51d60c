// The git source on real repositories made with the git CLI: local working clones, a bare
// repository, and a repository served over git's smart HTTP protocol by `git http-backend`.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cachePathOf,
  GitSource,
  GitSourceError,
  isValidBranchName,
  MAX_EXPORTED_FILE_BYTES,
  MAX_SYMLINK_HOPS,
} from "../controller/source/git.ts";
import { blobSize } from "../controller/source/git-objects.ts";
import { formatProblem } from "../controller/source/validate.ts";
import { commitAll, gitEnv, runGit, writeFiles } from "./helpers/git.ts";
import { type GitServer, serveGit } from "./helpers/git-http.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-git-source-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const GIT_ENV = gitEnv(
  { name: "Ada Lovelace", email: "ada@example.com" },
  { name: "Charles Babbage", email: "charles@example.com" },
);

function git(dir: string, ...args: string[]): string {
  return runGit(dir, GIT_ENV, ...args);
}

let counter = 0;
function freshDir(name: string): string {
  const dir = join(root, `${name}-${++counter}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const write = writeFiles;

function commit(dir: string, message: string, files: Record<string, string | null> = {}): string {
  return commitAll(dir, GIT_ENV, message, files);
}

function makeRepo(files: Record<string, string>): { dir: string; head: string } {
  const dir = freshDir("repo");
  git(dir, "init", "-q", "-b", "main");
  return { dir, head: commit(dir, "first commit", files) };
}

function local(dir: string, branch = "main"): GitSource {
  return new GitSource({ url: dir, branch, cacheDir: join(root, "unused-cache") });
}

async function failure(promise: Promise<unknown>): Promise<GitSourceError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(GitSourceError);
    return error as GitSourceError;
  }
  throw new Error("expected a GitSourceError, but it succeeded");
}

describe("GitSource on a local working clone", () => {
  it("returns the branch head with its author, message and time", async () => {
    const dir = freshDir("dated");
    git(dir, "init", "-q", "-b", "main");
    write(dir, { "README.md": "hello\n" });
    git(dir, "add", "-A");
    execFileSync("git", ["commit", "-q", "-m", "Add the readme\n\nWith a body."], {
      cwd: dir,
      env: { ...GIT_ENV, GIT_AUTHOR_DATE: "2024-05-01T12:34:56+02:00" },
    });
    const revision = await local(dir).fetch();
    expect(revision).toEqual({
      commit: git(dir, "rev-parse", "HEAD"),
      authorName: "Ada Lovelace",
      authorEmail: "ada@example.com",
      message: "Add the readme\n\nWith a body.",
      time: "2024-05-01T10:34:56.000Z",
    });
  });

  it("sees a new commit on the next fetch, and reads the local branch, not HEAD", async () => {
    const { dir, head } = makeRepo({ "a.txt": "1\n" });
    const source = local(dir);
    expect((await source.fetch()).commit).toBe(head);
    const second = commit(dir, "second", { "a.txt": "2\n" });
    expect((await source.fetch()).commit).toBe(second);
    // Checking out another branch in the working clone does not change what main is.
    git(dir, "checkout", "-q", "-b", "dev");
    commit(dir, "on dev", { "a.txt": "dev\n" });
    expect((await source.fetch()).commit).toBe(second);
    expect((await local(dir, "dev").fetch()).commit).toBe(git(dir, "rev-parse", "dev"));
  });

  it("tells an ancestor from a rewritten history", async () => {
    const { dir, head: first } = makeRepo({ "a.txt": "1\n" });
    const second = commit(dir, "second", { "a.txt": "2\n" });
    const source = local(dir);
    await source.fetch();
    expect(await source.isAncestor(first, second)).toBe(true);
    expect(await source.isAncestor(second, second)).toBe(true);
    expect(await source.isAncestor(second, first)).toBe(false);

    git(dir, "reset", "-q", "--hard", first);
    const rewritten = commit(dir, "rewritten", { "a.txt": "other\n" });
    expect((await source.fetch()).commit).toBe(rewritten);
    expect(await source.isAncestor(second, rewritten)).toBe(false);
    expect(await source.isAncestor(first, rewritten)).toBe(true);
  });

  it("names the branches when the branch does not exist", async () => {
    const { dir } = makeRepo({ "a.txt": "1\n" });
    git(dir, "branch", "dev");
    const error = await failure(local(dir, "production").fetch());
    expect(error.reason).toBe("MissingBranch");
    expect(error.message).toBe(`branch "production" does not exist in ${dir}; branches: dev, main`);
    const invalid = await failure(local(dir, "../../config").fetch());
    expect(invalid.reason).toBe("MissingBranch");
    expect(invalid.message).toBe('"../../config" is not a valid branch name');
    expect(isValidBranchName("feature/x-1.2")).toBe(true);
    for (const name of ["a..b", "a b", "-x", "x/", "x.lock", ".x", "a//b", "a@{1}", "a:b"]) {
      expect(isValidBranchName(name), name).toBe(false);
    }
  });

  it("says when a path is not a git repository", async () => {
    const plain = freshDir("plain");
    write(plain, { "model.yaml": "kind: Model\n" });
    const notRepo = await failure(local(plain).fetch());
    expect(notRepo.reason).toBe("NotARepository");
    expect(notRepo.message).toContain(`${plain} is not a git repository`);

    const missing = await failure(local(join(root, "does-not-exist")).fetch());
    expect(missing.reason).toBe("NotARepository");
    expect(missing.message).toContain("no such directory");
  });

  it("gives a tree id that changes only when files under the path change, and comes back on revert", async () => {
    const { dir, head: c1 } = makeRepo({
      "src/a/model.py": "def predict(x):\n    return 1\n",
      "src/b/other.py": "x = 1\n",
      "README.md": "readme\n",
    });
    const source = local(dir);
    await source.fetch();
    const a1 = await source.treeId(c1, "src/a");
    expect(a1).toBe(git(dir, "rev-parse", `${c1}:src/a`));
    expect(await source.treeId(c1, ".")).toBe(git(dir, "rev-parse", `${c1}^{tree}`));
    expect(await source.treeId(c1, "src/a/")).toBe(a1);

    const c2 = commit(dir, "change b and the readme", {
      "src/b/other.py": "x = 2\n",
      "README.md": "new readme\n",
    });
    expect(await source.treeId(c2, "src/a")).toBe(a1);
    expect(await source.treeId(c2, "src/b")).not.toBe(await source.treeId(c1, "src/b"));

    const c3 = commit(dir, "change a", { "src/a/model.py": "def predict(x):\n    return 2\n" });
    const a3 = await source.treeId(c3, "src/a");
    expect(a3).not.toBe(a1);

    git(dir, "revert", "--no-edit", "HEAD");
    const c4 = git(dir, "rev-parse", "HEAD");
    expect(c4).not.toBe(c1);
    expect(await source.treeId(c4, "src/a")).toBe(a1);
  });

  it("fails with MissingPath for an absent path or a file", async () => {
    const { dir, head } = makeRepo({ "src/model.py": "x = 1\n" });
    const source = local(dir);
    await source.fetch();
    const absent = await failure(source.treeId(head, "deploy"));
    expect(absent.reason).toBe("MissingPath");
    expect(absent.message).toContain('path "deploy" does not exist at commit');
    const file = await failure(source.treeId(head, "src/model.py"));
    expect(file.reason).toBe("MissingPath");
    expect(file.message).toContain('path "src/model.py" is not a directory');
    expect((await failure(source.treeId(head, "../outside"))).reason).toBe("MissingPath");
    expect((await failure(source.manifests(head, "deploy"))).reason).toBe("MissingPath");
    expect((await failure(source.exportTree(head, "deploy", freshDir("out")))).reason).toBe(
      "MissingPath",
    );
  });

  it("lists the yaml files below a path, nested and sorted, skipping hidden and tool directories", async () => {
    const { dir, head } = makeRepo({
      "deploy/model.yaml": "kind: Model\n",
      "deploy/nested/deeper/deployment.yml": "kind: ModelDeployment\n",
      "deploy/a-first.yaml": "kind: A\n",
      "deploy/.github/workflow.yaml": "on: push\n",
      "deploy/.hidden.yaml": "hidden: true\n",
      "deploy/node_modules/pkg/x.yaml": "x: 1\n",
      "deploy/__pycache__/y.yaml": "y: 1\n",
      "deploy/venv/z.yaml": "z: 1\n",
      "deploy/renv/r.yaml": "r: 1\n",
      "deploy/notes.md": "# notes\n",
      "elsewhere/other.yaml": "kind: Other\n",
    });
    const source = local(dir);
    await source.fetch();
    const manifests = await source.manifests(head, "deploy");
    expect(manifests).toEqual([
      { file: "deploy/a-first.yaml", repoPath: "deploy/a-first.yaml", text: "kind: A\n" },
      { file: "deploy/model.yaml", repoPath: "deploy/model.yaml", text: "kind: Model\n" },
      {
        file: "deploy/nested/deeper/deployment.yml",
        repoPath: "deploy/nested/deeper/deployment.yml",
        text: "kind: ModelDeployment\n",
      },
    ]);
    const all = await source.manifests(head, ".");
    expect(all.map((manifest) => manifest.repoPath)).toEqual([
      "deploy/a-first.yaml",
      "deploy/model.yaml",
      "deploy/nested/deeper/deployment.yml",
      "elsewhere/other.yaml",
    ]);
  });

  it("reads files and directories at an old commit as they were then", async () => {
    const { dir, head: old } = makeRepo({ "src/model.py": "old\n" });
    const current = commit(dir, "new", { "src/model.py": "new\n", "src/extra/data.csv": "1,2\n" });
    const source = local(dir);
    await source.fetch();
    const then = source.tree(old);
    const now = source.tree(current);
    expect(await then.readText("src/model.py")).toBe("old\n");
    expect(await now.readText("src/model.py")).toBe("new\n");
    expect(await then.isDirectory("src/extra")).toBe(false);
    expect(await now.isDirectory("src/extra")).toBe(true);
    expect(await then.readText("src/extra/data.csv")).toBeUndefined();
    expect(await now.readText("./src/extra/data.csv")).toBe("1,2\n");
    expect(await now.isDirectory("src")).toBe(true);
    expect(await now.isDirectory(".")).toBe(true);
    expect(await now.isDirectory("src/model.py")).toBe(false);
    expect(await now.readText("src")).toBeUndefined();
    expect(await now.readText("src/model.py/x")).toBeUndefined();
  });

  it("follows symlinks inside the repository when reading, like the file system", async () => {
    const { dir } = makeRepo({ "shared/model.py": "shared\n" });
    symlinkSync("../shared/model.py", join(dir, "linked.py"));
    mkdirSync(join(dir, "app"));
    symlinkSync("../shared", join(dir, "app", "lib"));
    symlinkSync("/etc/passwd", join(dir, "absolute"));
    const head = commit(dir, "links");
    const source = local(dir);
    await source.fetch();
    const tree = source.tree(head);
    expect(await tree.readText("linked.py")).toBeUndefined(); // ../shared leaves the repository
    expect(await tree.readText("app/lib/model.py")).toBe("shared\n");
    expect(await tree.isDirectory("app/lib")).toBe(true);
    expect(await tree.readText("absolute")).toBeUndefined();
  });

  it("exports a path with the executable bit, skipping files over 50 MB and escaping symlinks", async () => {
    const { dir } = makeRepo({
      "models/iris/score.py": "def predict(x):\n    return x\n",
      "models/iris/data/weights.txt": "0.1 0.2\n",
      "models/iris/build.sh": "#!/bin/sh\necho build\n",
      "models/other.py": "x = 1\n",
    });
    chmodSync(join(dir, "models/iris/build.sh"), 0o755);
    execFileSync("truncate", ["-s", "51M", join(dir, "models/iris/big.bin")]);
    execFileSync("truncate", ["-s", "1M", join(dir, "models/iris/small.bin")]);
    symlinkSync("data/weights.txt", join(dir, "models/iris/weights.txt"));
    symlinkSync("../other.py", join(dir, "models/iris/other.py"));
    symlinkSync("/etc/passwd", join(dir, "models/iris/passwd"));
    const head = commit(dir, "model");
    const source = local(dir);
    await source.fetch();

    const target = join(freshDir("export"), "context");
    const result = await source.exportTree(head, "models/iris", target);
    expect(result.skipped).toEqual(["models/iris/big.bin"]);
    expect(result.skippedSymlinks.sort()).toEqual(["models/iris/other.py", "models/iris/passwd"]);
    expect(statSync(join(dir, "models/iris/big.bin")).size).toBeGreaterThan(
      MAX_EXPORTED_FILE_BYTES,
    );

    expect(readFileSync(join(target, "score.py"), "utf8")).toBe("def predict(x):\n    return x\n");
    expect(readFileSync(join(target, "data/weights.txt"), "utf8")).toBe("0.1 0.2\n");
    expect(statSync(join(target, "small.bin")).size).toBe(1024 * 1024);
    expect(statSync(join(target, "build.sh")).mode & 0o777).toBe(0o755);
    expect(statSync(join(target, "score.py")).mode & 0o777).toBe(0o644);
    expect(existsSync(join(target, "big.bin"))).toBe(false);
    expect(lstatSync(join(target, "weights.txt")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(target, "weights.txt"))).toBe("data/weights.txt");
    expect(readFileSync(join(target, "weights.txt"), "utf8")).toBe("0.1 0.2\n");
    expect(existsSync(join(target, "other.py"))).toBe(false);
    expect(existsSync(join(target, "passwd"))).toBe(false);
    expect(existsSync(join(target, "..", "other.py"))).toBe(false);

    // Exporting again over an earlier export whose symlink now points outside: replaced, not followed.
    const outside = join(freshDir("outside"), "victim.py");
    writeFileSync(outside, "untouched\n");
    rmSync(join(target, "score.py"));
    symlinkSync(outside, join(target, "score.py"));
    await source.exportTree(head, "models/iris", target);
    expect(readFileSync(outside, "utf8")).toBe("untouched\n");
    expect(lstatSync(join(target, "score.py")).isSymbolicLink()).toBe(false);
    expect(readlinkSync(join(target, "weights.txt"))).toBe("data/weights.txt");
  });
});

/** Replaces a loose object by one whose header says `size` but whose content is cut short. */
function truncateLooseObject(dir: string, oid: string, size: number): void {
  const path = join(dir, ".git", "objects", oid.slice(0, 2), oid.slice(2));
  chmodSync(path, 0o644);
  writeFileSync(path, deflateSync(Buffer.from(`blob ${size}\0only the start`)));
}

describe("GitSource reading manifests within the limits", () => {
  it.each<[string, Record<string, string | Buffer>, object, string[]]>([
    [
      "more files than a commit may have: none read, the first over named",
      Object.fromEntries(
        ["a", "b", "c", "d", "e"].map((name) => [`deploy/${name}.yaml`, `${name}: 1\n`]),
      ),
      { maxFilesPerCommit: 3 },
      [
        "deploy/d.yaml:1:1: ?/? /: 5 manifest files, more than the 3 a commit may have (maxFilesPerCommit), the first over it here: none of them is validated",
      ],
    ],
    [
      "a file over its limit: refused, the others read",
      { "deploy/a.yaml": "a: 1\n", "deploy/big.yaml": `big: ${"x".repeat(100)}\n` },
      { maxFileBytes: 50 },
      [
        "deploy/a.yaml text",
        "deploy/big.yaml:1:1: ?/? /: the file is 106 bytes, more than the 50 bytes a manifest file may be (maxFileBytes): it is not read",
      ],
    ],
    [
      "a commit's bytes spent: only that",
      {
        "deploy/a.yaml": "a: 12345678\n",
        "deploy/b.yaml": "b: 12345678\n",
        "deploy/c.yaml": "c: 1\n",
      },
      { maxCommitBytes: 20 },
      [
        "deploy/b.yaml:1:1: ?/? /: the manifest files pass the 20 bytes a commit may have (maxCommitBytes) at this file: none of them is validated",
      ],
    ],
    [
      "Latin-1, at its byte offset",
      { "deploy/a.yaml": Buffer.from("name: caf\xe9\n", "latin1") },
      {},
      [
        "deploy/a.yaml:1:10: ?/? /: not UTF-8: the bytes at byte offset 9 (0xe9 0x0a) are not a UTF-8 character; save the file as UTF-8",
      ],
    ],
    [
      "a NUL byte, at its line and column",
      { "deploy/a.yaml": "a: 1\nb: \u0000\n" },
      {},
      [
        "deploy/a.yaml:2:4: ?/? /: a NUL byte (U+0000) is not allowed in YAML (of the control characters, only tab, line feed and carriage return are); is this a binary or UTF-16 file?",
      ],
    ],
    [
      "a manifest over the default 1 MiB",
      { "deploy/a.yaml": `a: "${"x".repeat(2 * 1024 * 1024)}"\n` },
      {},
      [
        "deploy/a.yaml:1:1: ?/? /: the file is 2 MiB (2097158 bytes), more than the 1 MiB a manifest file may be (maxFileBytes): it is not read",
      ],
    ],
  ])("%s", async (_case, files, limits, expected) => {
    const dir = freshDir("limits");
    git(dir, "init", "-q", "-b", "main");
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(dir, path, ".."), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
    const head = commit(dir, "manifests");
    const sources = await local(dir).manifests(head, "deploy", limits);
    expect(
      sources.map((source) =>
        source.refused ? formatProblem(source.refused) : `${source.file} text`,
      ),
    ).toEqual(expected);
  });

  it("refuses a blob over the limit from its object header, without inflating it", async () => {
    const { dir } = makeRepo({ "deploy/a.yaml": "a: 1\n" });
    const head = commit(dir, "a large manifest", { "deploy/big.yaml": "x".repeat(5000) });
    const oid = git(dir, "rev-parse", `${head}:deploy/big.yaml`);
    // Its header claims 5 GB and the rest is missing: reading it would fail, measuring it does not.
    truncateLooseObject(dir, oid, 5 * 1024 ** 3);
    const sources = await local(dir).manifests(head, "deploy");
    expect(sources.map((source) => source.refused?.message ?? source.text)).toEqual([
      "a: 1\n",
      "the file is 5 GiB (5368709120 bytes), more than the 1 MiB a manifest file may be (maxFileBytes): it is not read",
    ]);
  });
});

describe("blobSize", () => {
  const files = ["base.txt", "near.txt", "small.txt", "empty.txt"];
  let dir: string;
  let oids: string[];

  beforeAll(() => {
    // Text that compresses poorly, and a near copy of it that a repack stores as a delta.
    const base = Array.from({ length: 200_000 }, (_, index) => "abcdefgh\n"[(index * 7919) % 9]);
    const repo = makeRepo({
      "base.txt": base.join(""),
      "near.txt": `${base.join("")}tail`,
      "small.txt": "hi",
      "empty.txt": "",
    });
    dir = repo.dir;
    oids = files.map((file) => git(dir, "rev-parse", `${repo.head}:${file}`));
  });

  const sizes = () => Promise.all(oids.map((oid) => blobSize(join(dir, ".git"), oid)));
  const gitSizes = () => oids.map((oid) => Number(git(dir, "cat-file", "-s", oid)));

  it("reads a loose object's size from its zlib header", async () => {
    expect(await sizes()).toEqual(gitSizes());
  });

  it("reads a packed object's size from its entry, and a delta's from the delta", async () => {
    git(dir, "repack", "-a", "-d", "-f", "-q", "--window=50", "--depth=50");
    expect(git(dir, "count-objects", "-v")).toContain("count: 0");
    const packs = join(dir, ".git", "objects", "pack");
    const index = readdirSync(packs).find((name) => name.endsWith(".idx")) as string;
    // verify-pack lists a delta with its depth and base: proof that one is there.
    expect(git(dir, "verify-pack", "-v", join(packs, index))).toMatch(
      / blob +\d+ \d+ \d+ 1 [0-9a-f]{40}/,
    );
    expect(await sizes()).toEqual(gitSizes());
  });

  it.each([
    ["an object the repository does not have", "0".repeat(40)],
    ["something that is not an object id", "../../etc/passwd"],
  ])("is undefined for %s", async (_case, oid) => {
    expect(await blobSize(join(dir, ".git"), oid)).toBeUndefined();
  });
});

describe("GitSource and symlink chains", () => {
  const chain = (prefix: string, length: number, target: string): Record<string, string> => {
    const links: Record<string, string> = {};
    for (let index = 1; index <= length; index++) {
      links[`${prefix}${index}`] = index === length ? target : `${prefix}${index + 1}`;
    }
    return links;
  };
  // Every link below models/iris: name → target.
  const links: Record<string, string> = {
    "inside-chain": "hop-inside",
    "hop-inside": "data/weights.txt",
    "link-to-link": "hop-out",
    "hop-out": "../../../../etc/passwd",
    "via-out-dir": "out-dir/passwd",
    "out-dir": "../../../../etc",
    "to-absolute": "absolute",
    absolute: "/etc/passwd",
    "loop-a": "loop-b",
    "loop-b": "loop-a",
    "up-and-back": "up/../score.py",
    up: "../..",
    "at-limit": "d1",
    ...chain("d", MAX_SYMLINK_HOPS - 1, "data/weights.txt"),
    "past-limit": "e1",
    ...chain("e", MAX_SYMLINK_HOPS, "data/weights.txt"),
    sibling: "../other.py",
    "dangling-inside": "later/model.pkl",
    "dangling-climbing": "missing/../../../x",
  };
  let source: GitSource;
  let head: string;
  let exported: { skipped: string[]; skippedSymlinks: string[] };
  let target: string;

  beforeAll(async () => {
    const repo = makeRepo({
      "models/iris/score.py": "def predict(x):\n    return x\n",
      "models/iris/data/weights.txt": "0.1 0.2\n",
      "models/other.py": "x = 1\n",
    });
    for (const [name, linkTarget] of Object.entries(links)) {
      symlinkSync(linkTarget, join(repo.dir, "models/iris", name));
    }
    head = commit(repo.dir, "links");
    source = local(repo.dir);
    target = join(freshDir("chains"), "context");
    exported = await source.exportTree(head, "models/iris", target);
  });

  it.each<[string, string, string | undefined, boolean]>([
    ["a chain that stays inside", "inside-chain", "0.1 0.2\n", true],
    ["a link to a link to ../../etc", "link-to-link", undefined, false],
    ["a link into a directory that is a link pointing out", "via-out-dir", undefined, false],
    ["a link to a link that is absolute", "to-absolute", undefined, false],
    ["a loop", "loop-a", undefined, false],
    ["a .. taken from where a link leads, not lexically", "up-and-back", undefined, false],
    [`a chain of ${MAX_SYMLINK_HOPS} links`, "at-limit", "0.1 0.2\n", true],
    [`a chain of ${MAX_SYMLINK_HOPS + 1} links`, "past-limit", undefined, false],
    ["a link inside the repository but outside the exported path", "sibling", "x = 1\n", false],
    ["a dangling link that would stay inside", "dangling-inside", undefined, true],
    ["a dangling link that would climb out", "dangling-climbing", undefined, false],
  ])("%s (%s): read %j, exported %s", async (_case, name, text, isExported) => {
    expect(await source.tree(head).readText(`models/iris/${name}`)).toBe(text);
    expect(exported.skippedSymlinks.includes(`models/iris/${name}`)).toBe(!isExported);
    const written = lstatSync(join(target, name), { throwIfNoEntry: false });
    expect(written?.isSymbolicLink() ?? false).toBe(isExported);
    if (isExported) expect(readlinkSync(join(target, name))).toBe(links[name]);
  });

  it("never reads through a link that leaves, whatever asks", async () => {
    const tree = source.tree(head);
    expect(await tree.isDirectory("models/iris/out-dir")).toBe(false);
    expect(await tree.readText("models/iris/via-out-dir")).toBeUndefined();
    expect((await failure(source.treeId(head, "models/iris/out-dir"))).reason).toBe("MissingPath");
    expect((await failure(source.manifests(head, "models/iris/up/.."))).reason).toBe("MissingPath");
  });
});

describe("GitSource on a bare repository", () => {
  it("fetches, reads and exports like a working clone", async () => {
    const { dir, head } = makeRepo({
      "deploy/model.yaml": "kind: Model\n",
      "src/score.py": "def predict(x):\n    return x\n",
    });
    git(dir, "branch", "dev");
    const bare = join(freshDir("bare"), "models.git");
    git(root, "clone", "-q", "--bare", dir, bare);
    const source = local(bare);
    const revision = await source.fetch();
    expect(revision.commit).toBe(head);
    expect(revision.authorName).toBe("Ada Lovelace");
    expect((await source.manifests(head, "deploy")).map((m) => m.text)).toEqual(["kind: Model\n"]);
    expect(await source.treeId(head, "src")).toBe(git(bare, "rev-parse", `${head}:src`));
    const target = freshDir("bare-export");
    await source.exportTree(head, "src", target);
    expect(readFileSync(join(target, "score.py"), "utf8")).toContain("def predict");

    const error = await failure(local(bare, "nope").fetch());
    expect(error.message).toBe(`branch "nope" does not exist in ${bare}; branches: dev, main`);
  });
});

describe("GitSource over smart HTTP (git http-backend)", () => {
  let server: GitServer;
  let projectRoot: string;
  let served: string;
  let url: string;

  beforeAll(async () => {
    projectRoot = freshDir("http-root");
    served = join(projectRoot, "models");
    mkdirSync(served);
    git(served, "init", "-q", "-b", "main");
    commit(served, "first", { "deploy/model.yaml": "kind: Model\n", "src/a.py": "a = 1\n" });
    git(served, "branch", "dev");
    server = await serveGit(projectRoot);
    url = `${server.url}/models`;
  });
  afterAll(async () => {
    await server.close();
  });

  it("fetches a pull request's head into the cache by its ref, and leaves the branch be", async () => {
    const cacheDir = freshDir("cache");
    const source = new GitSource({ url, branch: "main", cacheDir });
    const main = (await source.fetch()).commit;
    // A pull request's head, as GitHub keeps it: on no branch, under refs/pull/N/head.
    git(served, "checkout", "-q", "-b", "proposal");
    const proposed = commit(served, "proposal", { "src/a.py": "a = 42\n" });
    git(served, "checkout", "-q", "main");
    git(served, "update-ref", "refs/pull/7/head", proposed);
    git(served, "branch", "-q", "-D", "proposal");
    await expect(source.revision(proposed)).rejects.toThrow(/names no commit/);
    await source.fetchRef("refs/pull/7/head");
    expect((await source.revision(proposed)).message).toBe("proposal");
    expect(await source.tree(proposed).readText("src/a.py")).toBe("a = 42\n");
    expect((await source.revision("main")).commit).toBe(main);
  });

  it("clones into the cache, then fetches new and force-pushed commits", async () => {
    const cacheDir = join(freshDir("cache"), "nested", "cache");
    const source = new GitSource({ url, branch: "main", cacheDir });
    const first = await source.fetch();
    expect(first.commit).toBe(git(served, "rev-parse", "main"));
    expect(first.authorEmail).toBe("ada@example.com");
    expect(existsSync(join(cachePathOf(cacheDir, url), "HEAD"))).toBe(true);
    expect(cachePathOf(cacheDir, url)).toMatch(/\/[0-9a-f]{16}$/);
    expect(await source.manifests(first.commit, "deploy")).toEqual([
      { file: "deploy/model.yaml", repoPath: "deploy/model.yaml", text: "kind: Model\n" },
    ]);

    const second = commit(served, "second", { "src/a.py": "a = 2\n" });
    expect((await source.fetch()).commit).toBe(second);
    expect(await source.tree(second).readText("src/a.py")).toBe("a = 2\n");
    expect(await source.tree(first.commit).readText("src/a.py")).toBe("a = 1\n");
    expect(await source.isAncestor(first.commit, second)).toBe(true);

    // A force push: the branch is rewritten to a commit that does not descend from `second`.
    git(served, "reset", "-q", "--hard", first.commit);
    const rewritten = commit(served, "rewritten", { "src/a.py": "a = 3\n" });
    expect((await source.fetch()).commit).toBe(rewritten);
    expect(await source.isAncestor(second, rewritten)).toBe(false);
    expect(await source.tree(rewritten).readText("src/a.py")).toBe("a = 3\n");

    // A second source (another process after a restart) reuses the cache and sees the same head.
    const again = new GitSource({ url, branch: "main", cacheDir });
    expect((await again.fetch()).commit).toBe(rewritten);
    // The same cache serves another branch.
    const dev = new GitSource({ url, branch: "dev", cacheDir });
    expect((await dev.fetch()).commit).toBe(git(served, "rev-parse", "dev"));
  });

  it("names the server's branches when the branch does not exist", async () => {
    const source = new GitSource({ url, branch: "nope", cacheDir: freshDir("cache") });
    const error = await failure(source.fetch());
    expect(error.reason).toBe("MissingBranch");
    expect(error.message).toBe(`branch "nope" does not exist in ${url}; branches: dev, main`);
  });

  it("fails with FetchFailed for a repository the server does not have", async () => {
    const cacheDir = freshDir("cache");
    const source = new GitSource({ url: `${server.url}/absent`, branch: "main", cacheDir });
    const error = await failure(source.fetch());
    expect(error.reason).toBe("FetchFailed");
    expect(error.message).toContain(`fetching ${server.url}/absent failed`);
    expect(error.message).toContain("404");
    // A failed first clone leaves nothing behind to be mistaken for a cache.
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it("sends the token as basic auth, and never puts it in an error message", async () => {
    const token = "ghs_s3cretT0ken";
    const expected = `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
    server.requireAuthorization = expected;
    try {
      server.authorizations.length = 0;
      const source = new GitSource({ url, branch: "main", cacheDir: freshDir("cache"), token });
      expect((await source.fetch()).commit).toBe(git(served, "rev-parse", "main"));
      expect(server.authorizations).toContain(expected);

      const wrongToken = "ghs_wr0ngT0ken";
      const wrong = new GitSource({
        url,
        branch: "main",
        cacheDir: freshDir("cache"),
        token: wrongToken,
      });
      const error = await failure(wrong.fetch());
      expect(error.reason).toBe("FetchFailed");
      expect(error.message).toContain("401");
      // The server echoed the credentials; the message keeps its words but not the secret.
      expect(error.message).toContain("bad credentials");
      const everything = `${error.message}\n${error.stack}\n${JSON.stringify(error)}`;
      expect(everything).not.toContain(wrongToken);
      expect(everything).not.toContain(
        Buffer.from(`x-access-token:${wrongToken}`).toString("base64"),
      );

      const anonymous = new GitSource({ url, branch: "main", cacheDir: freshDir("cache") });
      expect((await failure(anonymous.fetch())).reason).toBe("FetchFailed");
    } finally {
      server.requireAuthorization = undefined;
    }
  });

  it("asks for its credentials before each fetch: a rotated token is used at once, and redacted", async () => {
    const basic = (token: string) =>
      `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
    let current = "ghs_firstT0ken";
    let asked = 0;
    const source = new GitSource({
      url,
      branch: "main",
      cacheDir: freshDir("cache"),
      credentials: async () => {
        asked++;
        return { token: current };
      },
    });
    try {
      server.requireAuthorization = basic("ghs_firstT0ken");
      await source.fetch();
      // The server rotates: the old token is refused, and the source has not heard yet.
      server.requireAuthorization = basic("ghs_secondT0ken");
      const error = await failure(source.fetch());
      expect(error.message).toContain("401");
      expect(error.message).not.toContain("ghs_firstT0ken");
      // The new token is in place (a Secret edited): the next fetch uses it, no new source.
      current = "ghs_secondT0ken";
      server.authorizations.length = 0;
      expect((await source.fetch()).commit).toBe(git(served, "rev-parse", "main"));
      expect(server.authorizations).toContain(basic("ghs_secondT0ken"));
      expect(asked).toBe(3);
    } finally {
      server.requireAuthorization = undefined;
    }
  });

  it("sends the token with every request, under a username of choice", async () => {
    server.authorizations.length = 0;
    const source = new GitSource({
      url,
      branch: "main",
      cacheDir: freshDir("cache"),
      token: "glpat-token",
      username: "oauth2",
    });
    await source.fetch();
    const expected = `Basic ${Buffer.from("oauth2:glpat-token").toString("base64")}`;
    expect(server.authorizations.length).toBeGreaterThan(1);
    expect(server.authorizations.every((header) => header === expected)).toBe(true);

    server.authorizations.length = 0;
    await new GitSource({ url, branch: "main", cacheDir: freshDir("cache") }).fetch();
    expect(server.authorizations.every((header) => header === undefined)).toBe(true);
  });
});
