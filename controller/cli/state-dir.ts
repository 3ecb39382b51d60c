// Where a `modelship up` keeps its state, for `up` and for the commands that talk to it.
// By default it lives outside the work tree, in the user's state directory, one directory per
// repository, branch and path: nothing `up` writes can be staged by `git add -A`.
import { createHash } from "node:crypto";
import fs, { existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import git from "isomorphic-git";
import type { AdminFile } from "../platform/local/admin.ts";
import { alive } from "../platform/local/state-files.ts";
import { isRemoteUrl } from "../source/git.ts";

/** What a `modelship up` follows; the default state directory is keyed by it. */
export interface Followed {
  url: string;
  branch: string;
  path: string;
}

/** $XDG_STATE_HOME/modelship, else ~/.local/state/modelship (the XDG base directory default). */
export function stateRoot(): string {
  const base = process.env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  return join(base, "modelship");
}

function isBareRepository(path: string): boolean {
  return existsSync(join(path, "HEAD")) && existsSync(join(path, "objects"));
}

/** The top of the git work tree that holds `path`, or undefined when none does (a bare repository). */
export function workTreeOf(path: string): string | undefined {
  if (isBareRepository(resolve(path))) return undefined;
  for (let directory = resolve(path); ; directory = dirname(directory)) {
    if (existsSync(join(directory, ".git"))) return directory;
    if (dirname(directory) === directory) return undefined;
  }
}

/**
 * A path with its symlinks resolved, as far as it exists: the state directory may not exist
 * yet, and a repository reached through a link is the same repository.
 */
export function realPath(path: string): string {
  const absolute = resolve(path);
  let existing = absolute;
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  return join(realpathSync(existing), relative(existing, absolute));
}

/**
 * A local repository is named by its work tree's top, links resolved, so `up` in any of its
 * subdirectories (or through a link to it) finds the same state.
 */
export function repositoryUrl(repo: string): string {
  if (isRemoteUrl(repo)) return repo;
  return realPath(workTreeOf(repo) ?? repo);
}

/** `<repository name>-<12 hex>`: readable in a listing, and distinct per repository, branch and path. */
export function defaultStateDir(followed: Followed): string {
  const name = basename(followed.url.replace(/\/+$/, "")).replace(/\.git$/, "");
  const safe = name.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 40) || "repository";
  const key = createHash("sha256")
    .update(`${followed.url}\n${followed.branch}\n${followed.path}`)
    .digest("hex")
    .slice(0, 12);
  return join(stateRoot(), `${safe}-${key}`);
}

/** --state-dir, else MODELSHIP_STATE_DIR, else undefined (the default is for the caller to pick). */
export function chosenStateDir(flag: string | undefined): string | undefined {
  const chosen = flag ?? process.env.MODELSHIP_STATE_DIR;
  return chosen ? resolve(chosen) : undefined;
}

/**
 * Why `up` must not keep its state in `stateDir`, or undefined when it may: a state directory
 * inside the repository's work tree that git does not ignore would be staged by `git add -A`,
 * keys included, and every file `up` writes there would change the tree it builds from.
 */
export async function stateDirRefusal(stateDir: string, repo: string): Promise<string | undefined> {
  if (isRemoteUrl(repo)) return undefined;
  const tree = workTreeOf(repo);
  if (!tree) return undefined;
  // Compared with links resolved: a state dir named by its real path is inside a linked repo.
  const workTree = realPath(tree);
  const inside = relative(workTree, realPath(stateDir));
  if (inside === "") return `the state directory ${stateDir} is the repository's work tree itself`;
  if (inside.startsWith("..") || isAbsolute(inside)) return undefined;
  // Inside .git is outside the tree git tracks.
  if (inside.split(sep)[0] === ".git") return undefined;
  // A file inside the directory: git ignores it when the directory or any parent is ignored.
  const probe = `${inside.split(sep).join("/")}/state`;
  if (await git.isIgnored({ fs, dir: workTree, filepath: probe })) return undefined;
  return (
    `the state directory ${stateDir} is inside the work tree ${workTree} and git does not ignore it ` +
    `(git add -A would stage its keys): add "${inside.split(sep).join("/")}/" to .gitignore, or choose a state directory outside the work tree`
  );
}

interface Running {
  stateDir: string;
  admin: AdminFile;
}

function readAdmin(stateDir: string): AdminFile | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, "admin.json"), "utf8")) as AdminFile;
  } catch {
    return undefined;
  }
}

/** Every `modelship up` of this user that is running with its state under the default root. */
export function runningUps(root: string = stateRoot()): Running[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const running: Running[] = [];
  for (const name of names) {
    const stateDir = join(root, name);
    const admin = readAdmin(stateDir);
    if (admin && alive(admin.pid)) running.push({ stateDir, admin });
  }
  return running;
}

/**
 * Which `modelship up` a client command talks to: the one of --state-dir or MODELSHIP_STATE_DIR;
 * else the one following the repository the current directory is in; else the only one running.
 */
export function findAdmin(flag: string | undefined, cwd: string = process.cwd()): AdminFile {
  const chosen = chosenStateDir(flag);
  if (chosen) {
    const admin = readAdmin(chosen);
    if (!admin) {
      throw new Error(
        `no modelship up is running for ${chosen} (no admin.json); start one, or pass another --state-dir`,
      );
    }
    return admin;
  }
  const running = runningUps();
  if (running.length === 0) {
    throw new Error(
      "no modelship up is running (start one with modelship up, or pass --state-dir)",
    );
  }
  const tree = workTreeOf(cwd);
  const here = tree === undefined ? undefined : realPath(tree);
  const ofHere = running.filter(
    ({ admin }) => here !== undefined && admin.repository?.url === here,
  );
  const candidates = ofHere.length > 0 ? ofHere : running;
  if (candidates.length === 1) return (candidates[0] as Running).admin;
  const listed = candidates
    .map(({ stateDir, admin }) => `  --state-dir ${stateDir}   (${admin.repository?.url ?? "?"})`)
    .join("\n");
  throw new Error(`${candidates.length} modelship up are running; pick one:\n${listed}`);
}
