// watchBranch: a local repository's branch moving is seen at once — a commit, a commit on a
// branch in a folder, a worktree's commit, a push into a bare repository, refs packed — and
// nothing else is: a commit on another branch, a file in the work tree.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { gitDirectoryOf, watchBranch } from "../controller/source/ref-watch.ts";
import { gitEnv, runGit } from "./helpers/git.ts";
import { eventually } from "./helpers/replica.ts";

const env = gitEnv({ name: "Katherine Johnson", email: "katherine@example.com" });
const roots: string[] = [];
const stops: (() => void)[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/** A repository with one commit on main (and a branch `other`), in a directory of its own. */
function repository(): string {
  const root = mkdtempSync(join(tmpdir(), "modelship-ref-watch-"));
  roots.push(root);
  const dir = join(root, "repo");
  runGit(root, env, "init", "-q", "-b", "main", dir);
  commit(dir, "first");
  runGit(dir, env, "branch", "other");
  return dir;
}

let counter = 0;
function commit(dir: string, message: string): void {
  counter += 1;
  writeFileSync(join(dir, `file-${counter}.txt`), message);
  runGit(dir, env, "add", ".");
  runGit(dir, env, "commit", "-q", "-m", message);
}

/** Watches `branch` (stopped after the test); how many times the watch has fired so far. */
function watched(dir: string, branch: string): () => number {
  let calls = 0;
  const stop = watchBranch(dir, branch, () => {
    calls += 1;
  });
  expect(stop).toBeDefined();
  stops.push(stop as () => void);
  return () => calls;
}

/** How many times the watch fired while `change` ran, counted after a settle. */
async function callsDuring(dir: string, branch: string, change: () => void): Promise<number> {
  const calls = watched(dir, branch);
  change();
  // fs events and the watch's own settle: well within this, on a loaded machine too.
  await new Promise((resolve) => setTimeout(resolve, 400));
  return calls();
}

describe("watchBranch", () => {
  it.each([
    {
      what: "a commit on the branch",
      branch: "main",
      change: (dir: string) => commit(dir, "second"),
      seen: true,
    },
    {
      what: "a git revert",
      branch: "main",
      change: (dir: string) => runGit(dir, env, "revert", "--no-edit", "HEAD"),
      seen: true,
    },
    {
      what: "the branch moved in packed-refs alone (its loose ref left as it was)",
      branch: "main",
      change: (dir: string) => runGit(dir, env, "pack-refs", "--all", "--no-prune"),
      seen: true,
    },
    {
      what: "a commit on another branch",
      branch: "main",
      change: (dir: string) => {
        runGit(dir, env, "checkout", "-q", "other");
        commit(dir, "elsewhere");
      },
      seen: false,
    },
    {
      what: "a file written in the work tree",
      branch: "main",
      change: (dir: string) => writeFileSync(join(dir, "draft.txt"), "not committed"),
      seen: false,
    },
  ])("$what: seen $seen", async ({ branch, change, seen }) => {
    const dir = repository();
    const calls = await callsDuring(dir, branch, () => change(dir));
    if (seen) expect(calls).toBeGreaterThanOrEqual(1);
    else expect(calls).toBe(0);
  });

  it("sees a branch in a folder (team/iris), made after the watch began, and after a pack-refs removed its folder", async () => {
    const dir = repository();
    const calls = watched(dir, "team/iris");
    runGit(dir, env, "checkout", "-q", "-b", "team/iris");
    commit(dir, "in a folder");
    await eventually(() => calls() >= 1);
    runGit(dir, env, "pack-refs", "--all", "--prune");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const before = calls();
    commit(dir, "in a folder again");
    await eventually(() => calls() > before);
  });

  it("sees a branch two folders deep (team/ml/iris) after its inner folder alone was removed and made again", async () => {
    const dir = repository();
    // A branch beside it keeps refs/heads/team, so only team/ml goes and comes back.
    runGit(dir, env, "branch", "team/keep");
    const calls = watched(dir, "team/ml/iris");
    runGit(dir, env, "checkout", "-q", "-b", "team/ml/iris");
    commit(dir, "two folders deep");
    await eventually(() => calls() >= 1);
    runGit(dir, env, "checkout", "-q", "main");
    runGit(dir, env, "branch", "-q", "-D", "team/ml/iris");
    expect(existsSync(join(dir, ".git/refs/heads/team/ml"))).toBe(false);
    expect(existsSync(join(dir, ".git/refs/heads/team/keep"))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    runGit(dir, env, "branch", "team/ml/iris");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const before = calls();
    runGit(dir, env, "checkout", "-q", "team/ml/iris");
    commit(dir, "in the folder made again");
    await eventually(() => calls() > before);
  });

  it("sees every commit, one after another (the ref's file is replaced each time)", async () => {
    const dir = repository();
    const calls = watched(dir, "main");
    for (let round = 1; round <= 3; round++) {
      const before = calls();
      commit(dir, `commit ${round}`);
      await eventually(() => calls() > before);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const before = calls();
    runGit(dir, env, "revert", "--no-edit", "HEAD");
    await eventually(() => calls() > before);
  });

  it("sees a commit made in a worktree of the repository", async () => {
    const dir = repository();
    const worktree = join(dir, "..", "worktree");
    runGit(dir, env, "worktree", "add", "-q", worktree, "other");
    expect(gitDirectoryOf(worktree)).toContain(join(".git", "worktrees"));
    const calls = await callsDuring(worktree, "other", () => commit(worktree, "from the worktree"));
    expect(calls).toBeGreaterThanOrEqual(1);
  });

  it("sees a push into a bare repository", async () => {
    const dir = repository();
    const bare = join(dir, "..", "bare.git");
    runGit(dir, env, "clone", "-q", "--bare", dir, bare);
    const calls = await callsDuring(bare, "main", () => {
      commit(dir, "to push");
      runGit(dir, env, "push", "-q", bare, "main");
    });
    expect(calls).toBeGreaterThanOrEqual(1);
  });

  it("has nothing to watch where there is no repository", () => {
    const root = mkdtempSync(join(tmpdir(), "modelship-ref-watch-"));
    roots.push(root);
    expect(gitDirectoryOf(root)).toBeUndefined();
    expect(watchBranch(root, "main", () => {})).toBeUndefined();
  });
});
