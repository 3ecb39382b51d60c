// The git source: reads a branch of a repository — a local path read in place, or an http(s) URL
// cloned once into a cache and fetched after — and gives the sync what it needs at one commit:
// the head revision, ancestry (to notice a force push), the tree id of a path (build identity),
// the manifests below a path, a SourceTree for the validator, and an export of a path's files.
// Everything goes through isomorphic-git: no git binary is needed.
import { createHash } from "node:crypto";
import fs from "node:fs";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join, resolve } from "node:path";
import git, { type CommitObject } from "isomorphic-git";
import http from "isomorphic-git/http/node";
import { blobSize } from "./git-objects.ts";
import { type ManifestLimits, manifestLimits } from "./limits.ts";
import { type ManifestFile, readManifestFiles } from "./manifest-files.ts";
import {
  buildFilter,
  MAX_MODELSHIPIGNORE_BYTES,
  MODELSHIPIGNORE,
  type SourceFilter,
} from "./source-filter.ts";
import type { SourceTree } from "./tree.ts";
import type { ManifestSource } from "./validate.ts";

export interface GitSourceOptions {
  /** http(s) URL, or a path to a local git repository (a working clone or a bare repo). */
  url: string;
  branch: string;
  /** Where clones of URL repositories are kept (created if missing). Unused for local paths. */
  cacheDir: string;
  /**
   * A token for http(s) URLs (GitHub: sent as basic auth username "x-access-token", password
   * token). Never logged or put in an error message.
   */
  token?: string;
  /** The basic auth username sent with `token` (default "x-access-token"). */
  username?: string;
  /**
   * Where the token and username come from instead, asked before each fetch from a URL: a
   * rotated credential is used on the next fetch, with no restart.
   */
  credentials?: (options: { signal?: AbortSignal }) => Promise<GitCredentialValues>;
}

/** A token and the basic auth username sent with it. */
export interface GitCredentialValues {
  token?: string;
  username?: string;
}

export interface Revision {
  commit: string;
  authorName: string;
  authorEmail: string;
  /** The commit message without its trailing newline. */
  message: string;
  /** The author's time, ISO 8601 in UTC. */
  time: string;
}

export type GitSourceErrorReason =
  | "MissingBranch"
  | "NotARepository"
  | "FetchFailed"
  | "MissingPath"
  | "InvalidSource";

export class GitSourceError extends Error {
  readonly reason: GitSourceErrorReason;

  constructor(reason: GitSourceErrorReason, message: string) {
    super(message);
    this.name = "GitSourceError";
    this.reason = reason;
  }
}

/** Files larger than this are not exported (a build context is not a place for data sets). */
export const MAX_EXPORTED_FILE_BYTES = 50 * 1024 * 1024;

/** Directories that never hold manifests (and can be huge), as in `modelship validate`. */
const SKIPPED_DIRECTORIES = new Set(["node_modules", "__pycache__", "renv", "venv"]);

const DEFAULT_USERNAME = "x-access-token";
/** Symlinks followed while resolving one path, as Linux allows; past it, a loop is assumed. */
export const MAX_SYMLINK_HOPS = 40;
/** A symlink's target is a path: longer than PATH_MAX, it is not read (nor followed). */
const MAX_LINK_TARGET_BYTES = 4096;
/** Parsed trees kept in memory; trees are immutable by id, so the cache never goes stale. */
const MAX_CACHED_TREES = 20_000;

const MODE_TREE = "040000";
const MODE_EXECUTABLE = "100755";
const MODE_SYMLINK = "120000";

interface TreeEntry {
  mode: string;
  path: string;
  oid: string;
  type: "commit" | "blob" | "tree";
}

interface ParsedTree {
  entries: TreeEntry[];
  byName: Map<string, TreeEntry>;
}

/**
 * Where resolving a path ended: at an entry (with its real path, '/'-separated below the root the
 * resolution started from, "." for that root itself), at nothing (`missing`: the components left
 * from the first one that does not exist), or outside (`escapes`: a `..` above the root, an
 * absolute or unreadable symlink target, or more than MAX_SYMLINK_HOPS links: a loop).
 */
type Resolution =
  | { kind: "found"; entry: TreeEntry; path: string }
  | { kind: "missing"; depth: number; rest: string[] }
  | { kind: "escapes" };

/** Where isomorphic-git finds the repository: a working directory or a git directory. */
type Location = { dir: string } | { gitdir: string };

/** The cache directory of a URL: `<cacheDir>/<first 16 hex of sha256(url)>`. */
export function cachePathOf(cacheDir: string, url: string): string {
  return join(cacheDir, createHash("sha256").update(url).digest("hex").slice(0, 16));
}

export function isRemoteUrl(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function errorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // Servers explain a refusal in the body ("token lacks the scopes…"); isomorphic-git keeps it apart.
  const response = (error as { data?: { response?: unknown } } | null)?.data?.response;
  if (errorCode(error) !== "HttpError" || typeof response !== "string") return message;
  const body = response.replace(/\s+/g, " ").trim();
  if (body === "") return message;
  return `${message}: ${body.length > 300 ? `${body.slice(0, 300)}…` : body}`;
}

/**
 * isomorphic-git's Node client with an AbortSignal on every request: git.fetch takes none, and a
 * fetch from a server that stopped answering must end when its reconcile's deadline passes.
 */
function httpWith(signal: AbortSignal | undefined): typeof http {
  if (!signal) return http;
  return { request: (request) => http.request({ ...request, signal }) };
}

/** Serializes work on one cache directory within this process (fetches write refs and packs). */
const locks = new Map<string, Promise<unknown>>();

async function withLock<T>(key: string, work: () => Promise<T>): Promise<T> {
  const previous = locks.get(key) ?? Promise.resolve();
  const current = previous.then(work, work);
  const settled = current.then(
    () => undefined,
    () => undefined,
  );
  locks.set(key, settled);
  try {
    return await current;
  } finally {
    if (locks.get(key) === settled) locks.delete(key);
  }
}

function joinPath(base: string, name: string): string {
  return base === "" || base === "." ? name : `${base}/${name}`;
}

/** A branch name git accepts (git check-ref-format --branch); others could name any file. */
export function isValidBranchName(name: string): boolean {
  if (name === "" || name === "@" || name.startsWith("-") || name.endsWith(".")) return false;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: git forbids control characters
  if (/[\x00-\x20\x7f~^:?*[\\]|\.\.|@\{|\/\//.test(name)) return false;
  if (name.startsWith("/") || name.endsWith("/")) return false;
  return name.split("/").every((part) => !part.startsWith(".") && !part.endsWith(".lock"));
}

/** A tree entry's name that is safe to create on disk below a directory. */
function isSafeName(name: string): boolean {
  return (
    name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0")
  );
}

/**
 * Whether a resolution stays below its root: found, or missing with a rest that does not climb
 * out of where it stopped. A missing target may be made later (a build writing its artifacts
 * where a committed link points): its link is as harmless as the rest of the path is.
 */
function staysInside(resolution: Resolution): boolean {
  if (resolution.kind !== "missing") return resolution.kind === "found";
  let depth = resolution.depth;
  for (const name of resolution.rest) {
    if (name === "..") depth--;
    else if (name !== "" && name !== ".") depth++;
    if (depth < 0) return false;
  }
  return true;
}

/** A commit as a Revision: its id, author, message and time. */
function revisionFrom(commit: string, parsed: CommitObject): Revision {
  return {
    commit,
    authorName: parsed.author.name,
    authorEmail: parsed.author.email,
    message: parsed.message.trimEnd(),
    time: new Date(parsed.author.timestamp * 1000).toISOString(),
  };
}

export class GitSource {
  readonly url: string;
  readonly branch: string;
  readonly remote: boolean;
  private readonly options: GitSourceOptions;
  private location: Location | undefined;
  /** isomorphic-git's cache of pack indexes; renewed on each fetch (a gc may replace packs). */
  private gitCache: object = {};
  private readonly trees = new Map<string, ParsedTree>();
  private readonly rootTrees = new Map<string, string>();
  /** The credentials of the fetch in progress (or the last one). */
  private credentials: GitCredentialValues;

  constructor(options: GitSourceOptions) {
    this.options = options;
    this.credentials = {
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(options.username !== undefined ? { username: options.username } : {}),
    };
    this.url = options.url;
    this.branch = options.branch;
    this.remote = isRemoteUrl(options.url);
    if (this.remote) this.location = { gitdir: cachePathOf(options.cacheDir, options.url) };
  }

  /**
   * Fetches (URL: clone once into cacheDir, then fetch the branch; local path: read it in place)
   * and returns the branch head.
   */
  async fetch(options: { signal?: AbortSignal } = {}): Promise<Revision> {
    if (!isValidBranchName(this.branch)) {
      throw new GitSourceError("MissingBranch", `"${this.branch}" is not a valid branch name`);
    }
    this.gitCache = {};
    if (this.remote && this.options.credentials) {
      this.credentials = await this.options.credentials(options);
    }
    const commit = this.remote ? await this.fetchRemote(options.signal) : await this.resolveLocal();
    return this.revisionOf(commit);
  }

  /**
   * The commit a revision names, as `git rev-parse` reads the common forms: a full or
   * abbreviated commit id, a branch, tag or remote branch (`main`, `v1`, `origin/main`; in a
   * URL's cache a branch is found among the fetched ones), `HEAD`, each optionally followed by
   * `~N` and `^` (first parents). Nothing is fetched: a URL's branches are as the last fetch left them.
   */
  async revision(ref: string): Promise<Revision> {
    const location = await this.at();
    const match = /^(.*?)((?:~\d*|\^1?)*)$/.exec(ref.trim());
    const name = match?.[1] ?? "";
    if (name === "") throw new GitSourceError("MissingBranch", `"${ref}" names no commit`);
    let commit = await this.resolveName(location, name, ref);
    for (const step of (match?.[2] ?? "").match(/~\d*|\^1?/g) ?? []) {
      const count = step.startsWith("~") ? Number(step.slice(1) || "1") : 1;
      for (let hop = 0; hop < count; hop++) {
        const parent = (await this.readCommitObject(commit)).parent[0];
        if (parent === undefined) {
          throw new GitSourceError(
            "MissingBranch",
            `"${ref}": ${commit.slice(0, 7)} has no parent`,
          );
        }
        commit = parent;
      }
    }
    return this.revisionOf(commit);
  }

  /** `commit` and its first parents, newest first, at most `limit` of them. */
  async firstParents(commit: string, limit: number): Promise<Revision[]> {
    const revisions: Revision[] = [];
    for (let at: string | undefined = commit; at !== undefined && revisions.length < limit; ) {
      const parsed = await this.readCommitObject(at);
      revisions.push(revisionFrom(at, parsed));
      at = parsed.parent[0];
    }
    return revisions;
  }

  private async resolveName(location: Location, name: string, ref: string): Promise<string> {
    if (/^[0-9a-f]{4,40}$/i.test(name)) {
      const oid = await git
        .expandOid({ fs, ...location, oid: name.toLowerCase(), cache: this.gitCache })
        .catch(() => undefined);
      if (oid !== undefined) return oid;
    }
    // isomorphic-git tries refs/heads, refs/tags and refs/remotes itself; a URL's cache keeps
    // its branches as origin's.
    for (const candidate of [name, `refs/remotes/origin/${name}`]) {
      const oid = await git.resolveRef({ fs, ...location, ref: candidate }).catch(() => undefined);
      // A full id resolves to itself whether or not the object is here: read it to know.
      const found =
        oid === undefined
          ? undefined
          : await git
              .readObject({ fs, ...location, oid, format: "parsed", cache: this.gitCache })
              .catch(() => undefined);
      if (oid !== undefined && found?.type === "commit") return oid;
      if (oid !== undefined && found?.type === "tag") {
        const { tag } = await git.readTag({ fs, ...location, oid, cache: this.gitCache });
        return tag.object;
      }
    }
    throw new GitSourceError(
      "MissingBranch",
      `"${ref}" names no commit, branch or tag in ${this.url}${this.remote ? " (as last fetched)" : ""}`,
    );
  }

  private async readCommitObject(oid: string) {
    const { commit } = await git.readCommit({
      fs,
      ...(await this.at()),
      oid,
      cache: this.gitCache,
    });
    return commit;
  }

  private async revisionOf(commit: string): Promise<Revision> {
    return revisionFrom(commit, await this.readCommitObject(commit));
  }

  /**
   * A URL repository: fetches the commits of another ref into the cache — a pull request's head,
   * `refs/pull/7/head` on GitHub, or another branch — so that they can be read by id. Only a
   * branch gets a ref (the cache's refspec maps branches alone); a pull request's commits stay
   * unnamed. The followed branch is what the server is told the cache has, so only what is new
   * comes down. A local path has every commit already: nothing is fetched.
   */
  async fetchRef(remoteRef: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.remote) return;
    const gitdir = cachePathOf(this.options.cacheDir, this.url);
    await withLock(gitdir, async () => {
      if (!(await isFile(join(gitdir, "HEAD")))) await this.cloneInto(gitdir, options.signal);
      await this.fetchInto(gitdir, options.signal, remoteRef);
    });
  }

  /** True when `ancestor` is `commit` or one of its ancestors. */
  async isAncestor(ancestor: string, commit: string): Promise<boolean> {
    if (ancestor === commit) return true;
    return git.isDescendent({
      fs,
      ...(await this.at()),
      oid: commit,
      ancestor,
      depth: -1,
      cache: this.gitCache,
    });
  }

  /** A SourceTree over the files at `commit`, paths relative to the repository root. */
  tree(commit: string): SourceTree {
    return {
      readText: async (path) => {
        const found = await this.resolvePath(commit, path);
        if (found?.entry.type !== "blob") return undefined;
        return new TextDecoder().decode(await this.readBlob(found.entry.oid));
      },
      isDirectory: async (path) => (await this.resolvePath(commit, path))?.entry.type === "tree",
    };
  }

  /** The git tree id of directory `path` at `commit` ("." is the root). */
  async treeId(commit: string, path: string): Promise<string> {
    return (await this.directory(commit, path)).oid;
  }

  /**
   * An id of the files below directory `path` at `commit` that make up a build: other than
   * `exclude` (repo-relative paths) and than what `patterns` and the directory's own
   * .modelshipignore leave out (source-filter.ts). sha256 over each file's path below `path`,
   * mode and blob id. Unlike the tree id, it does not change when only a file left out does —
   * the manifests that live beside the code, another model's directory.
   */
  async contentId(
    commit: string,
    path: string,
    exclude: ReadonlySet<string>,
    patterns: readonly string[] = [],
  ): Promise<string> {
    const directory = await this.directory(commit, path);
    const leftOut = await this.sourceFilterAt(commit, directory.path, patterns);
    const hash = createHash("sha256");
    const prefix = directory.path === "." ? "" : `${directory.path}/`;
    await this.walk(
      directory.oid,
      directory.path === "." ? "" : directory.path,
      async (entry, entryPath) => {
        const relative = entryPath.slice(prefix.length);
        if (entry.type === "tree") return !leftOut(`${relative}/`);
        if (exclude.has(entryPath) || leftOut(relative)) return false;
        hash.update(`${relative}\0${entry.mode}\0${entry.oid}\n`);
        return false;
      },
    );
    return hash.digest("hex");
  }

  /**
   * Every .yaml/.yml file below `path` at `commit`, skipping hidden entries and the directories
   * `modelship validate` skips, sorted by path, within the limits (MANIFEST_LIMITS unless
   * overridden): with more files than a commit may have, none is read; a blob's size is read from
   * its object header first, so that one over the per-file limit is never inflated, and reading
   * stops where the commit's bytes pass their limit. A file past a limit, or not UTF-8, comes
   * back `refused`, for validateManifests to report.
   */
  async manifests(
    commit: string,
    path: string,
    limits: Partial<ManifestLimits> = {},
  ): Promise<ManifestSource[]> {
    const found = await this.resolvePath(commit, path);
    if (found === undefined) throw this.missingPath(commit, path, "does not exist");
    const files: { path: string; oid: string }[] = [];
    if (found.entry.type === "tree") {
      await this.walk(found.entry.oid, found.path, async (entry, entryPath) => {
        if (entry.path.startsWith(".")) return false;
        if (entry.type === "tree") return !SKIPPED_DIRECTORIES.has(entry.path);
        if (entry.type === "blob" && entry.mode !== MODE_SYMLINK && /\.ya?ml$/.test(entry.path)) {
          files.push({ path: entryPath, oid: entry.oid });
        }
        return false;
      });
    } else if (found.entry.type === "blob" && /\.ya?ml$/.test(found.path)) {
      files.push({ path: found.path, oid: found.entry.oid });
    }
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const manifestFiles = files.map(
      (file): ManifestFile => ({
        file: file.path,
        repoPath: file.path,
        size: () => this.blobSize(file.oid),
        read: () => this.readBlob(file.oid),
      }),
    );
    return readManifestFiles(manifestFiles, manifestLimits(limits));
  }

  /**
   * Writes the files under `path` at `commit` that make up a build (see contentId) into
   * `targetDir` (created), keeping the executable bit. Skips files over 50 MB (`skipped`; the size is read from the object header, so such a
   * blob is not inflated), symlinks whose resolution leaves `path` by any chain of links, loops,
   * or names an unreadable target (`skippedSymlinks`), and submodules; paths are relative to the
   * repository root.
   */
  async exportTree(
    commit: string,
    path: string,
    targetDir: string,
    patterns: readonly string[] = [],
  ): Promise<{ skipped: string[]; skippedSymlinks: string[] }> {
    const top = await this.directory(commit, path);
    const leftOut = await this.sourceFilterAt(commit, top.path, patterns);
    const topEntry: TreeEntry = { mode: MODE_TREE, path: "", oid: top.oid, type: "tree" };
    const skipped: string[] = [];
    const skippedSymlinks: string[] = [];
    await mkdir(targetDir, { recursive: true });
    const exportDirectory = async (treeOid: string, relative: string, repoPath: string) => {
      const { entries } = await this.readTree(treeOid);
      for (const entry of entries) {
        if (!isSafeName(entry.path)) continue;
        const entryRelative = joinPath(relative, entry.path);
        if (leftOut(entry.type === "tree" ? `${entryRelative}/` : entryRelative)) continue;
        const entryRepoPath = joinPath(repoPath, entry.path);
        const target = join(targetDir, ...entryRelative.split("/"));
        // What an earlier export left at this place is replaced, never written through.
        const existing = await lstat(target).catch(() => undefined);
        if (existing !== undefined && !(entry.type === "tree" && existing.isDirectory())) {
          await rm(target, { recursive: true, force: true });
        }
        if (entry.type === "tree") {
          await mkdir(target, { recursive: true });
          await exportDirectory(entry.oid, entryRelative, entryRepoPath);
        } else if (entry.type === "blob" && entry.mode === MODE_SYMLINK) {
          // The link is written as git has it, so it must resolve inside the export as it
          // does inside the exported tree: every hop, from the export's root.
          const link = await this.readLink(entry.oid);
          const inside =
            link !== undefined &&
            staysInside(await this.resolveFrom(topEntry, entryRelative.split("/")));
          if (inside) await symlink(link, target);
          else skippedSymlinks.push(entryRepoPath);
        } else if (entry.type === "blob") {
          if (((await this.blobSize(entry.oid)) ?? 0) > MAX_EXPORTED_FILE_BYTES) {
            skipped.push(entryRepoPath);
            continue;
          }
          const data = await this.readBlob(entry.oid);
          // A size the object header did not tell is known now.
          if (data.byteLength > MAX_EXPORTED_FILE_BYTES) {
            skipped.push(entryRepoPath);
            continue;
          }
          const mode = entry.mode === MODE_EXECUTABLE ? 0o755 : 0o644;
          await writeFile(target, data, { mode });
          await chmod(target, mode); // the umask may have taken bits away
        }
        // entry.type === "commit": a submodule, whose files are not in this repository.
      }
    };
    await exportDirectory(top.oid, "", top.path === "." ? "" : top.path);
    return { skipped, skippedSymlinks };
  }

  /** What a build of directory `path` leaves out: `patterns`, then its .modelshipignore's. */
  private async sourceFilterAt(
    commit: string,
    path: string,
    patterns: readonly string[],
  ): Promise<SourceFilter> {
    const file = await this.resolvePath(commit, joinPath(path, MODELSHIPIGNORE));
    if (file?.entry.type !== "blob") return buildFilter(patterns, undefined);
    const size = (await this.blobSize(file.entry.oid)) ?? 0;
    if (size > MAX_MODELSHIPIGNORE_BYTES) {
      throw new GitSourceError(
        "InvalidSource",
        `${file.path} is ${size} bytes; a ${MODELSHIPIGNORE} may have at most ${MAX_MODELSHIPIGNORE_BYTES}`,
      );
    }
    const text = new TextDecoder().decode(await this.readBlob(file.entry.oid));
    return buildFilter(patterns, text);
  }

  // --- fetching ---

  /** Local path: the branch head, read in place. */
  private async resolveLocal(): Promise<string> {
    this.location = await this.detectLocal(resolve(this.url));
    const ref = `refs/heads/${this.branch}`;
    try {
      return await git.resolveRef({ fs, ...this.location, ref });
    } catch (error) {
      if (errorCode(error) !== "NotFoundError") {
        throw new GitSourceError(
          "FetchFailed",
          `reading ${this.url} failed: ${errorMessage(error)}`,
        );
      }
      const branches = await git.listBranches({ fs, ...this.location }).catch(() => []);
      throw this.missingBranch(branches);
    }
  }

  private async detectLocal(path: string): Promise<Location> {
    const notARepository = (why: string) =>
      new GitSourceError("NotARepository", `${this.url} is not a git repository: ${why}`);
    const info = await stat(path).catch(() => undefined);
    if (info === undefined) throw notARepository("no such directory");
    if (!info.isDirectory()) throw notARepository("not a directory");
    if (await exists(join(path, ".git"))) return { dir: path };
    const bare =
      (await isFile(join(path, "HEAD"))) &&
      (await isDirectory(join(path, "objects"))) &&
      (await isDirectory(join(path, "refs")));
    if (bare) return { gitdir: path };
    throw notARepository("it has no .git and is not a bare repository");
  }

  /** URL: clone into the cache the first time, fetch the branch after; the remote branch head. */
  private async fetchRemote(signal: AbortSignal | undefined): Promise<string> {
    const gitdir = cachePathOf(this.options.cacheDir, this.url);
    return withLock(gitdir, async () => {
      signal?.throwIfAborted();
      if (!(await isFile(join(gitdir, "HEAD")))) await this.cloneInto(gitdir, signal);
      else await this.fetchInto(gitdir, signal);
      return git.resolveRef({ fs, gitdir, ref: `refs/remotes/origin/${this.branch}` });
    });
  }

  /** A bare clone of the branch, made in a temporary directory and renamed into place. */
  private async cloneInto(gitdir: string, signal: AbortSignal | undefined): Promise<void> {
    await mkdir(this.options.cacheDir, { recursive: true });
    const temporary = await mkdtemp(`${gitdir}.tmp-`);
    try {
      await git.init({ fs, dir: temporary, bare: true, defaultBranch: this.branch });
      await git.setConfig({ fs, gitdir: temporary, path: "remote.origin.url", value: this.url });
      // All branches map to origin/*, so that one cache serves sources of any branch.
      await git.setConfig({
        fs,
        gitdir: temporary,
        path: "remote.origin.fetch",
        value: "+refs/heads/*:refs/remotes/origin/*",
      });
      await this.fetchInto(temporary, signal);
      try {
        await rename(temporary, gitdir);
      } catch (error) {
        // Another process cloned it first: use theirs.
        if (!(await isFile(join(gitdir, "HEAD")))) throw error;
        await rm(temporary, { recursive: true, force: true });
      }
    } catch (error) {
      await rm(temporary, { recursive: true, force: true });
      throw error;
    }
  }

  /** Fetches the branch into refs/remotes/origin/<branch>, forced (a force push rewrites it). */
  private async fetchInto(
    gitdir: string,
    signal: AbortSignal | undefined,
    remoteRef = `refs/heads/${this.branch}`,
  ): Promise<void> {
    // isomorphic-git tells the server it has what this ref points at: the followed branch.
    const localRef = `refs/remotes/origin/${this.branch}`;
    let result: Awaited<ReturnType<typeof git.fetch>>;
    try {
      result = await git.fetch({
        fs,
        http: httpWith(signal),
        gitdir,
        url: this.url,
        remote: "origin",
        ref: localRef,
        remoteRef,
        singleBranch: true,
        tags: false,
        cache: this.gitCache,
        ...this.auth(),
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      const branches = await this.serverBranches();
      if (branches !== undefined && !branches.includes(this.branch)) {
        throw this.missingBranch(branches);
      }
      throw new GitSourceError(
        "FetchFailed",
        this.redact(`fetching ${this.url} failed: ${errorMessage(error)}`),
      );
    }
    // An empty repository answers with no refs at all, and no error.
    if (result.fetchHead === null) throw this.missingBranch((await this.serverBranches()) ?? []);
  }

  /** The remote's branch names, or undefined when it cannot be listed. */
  private async serverBranches(): Promise<string[] | undefined> {
    try {
      const refs = await git.listServerRefs({
        http,
        url: this.url,
        prefix: "refs/heads/",
        ...this.auth(),
      });
      return refs
        .map((ref) => ref.ref)
        .filter((ref) => ref.startsWith("refs/heads/"))
        .map((ref) => ref.slice("refs/heads/".length));
    } catch {
      return undefined;
    }
  }

  /**
   * Basic auth sent with every request when there is a token: some servers answer a private
   * repository with 404, not 401, so waiting to be asked would fail. The header is dropped on a
   * redirect to another host (simple-get), so the token goes only to the configured server.
   */
  private auth(): { headers?: Record<string, string> } {
    const { token } = this.credentials;
    if (token === undefined || token === "") return {};
    const username = this.credentials.username ?? DEFAULT_USERNAME;
    const credentials = Buffer.from(`${username}:${token}`).toString("base64");
    return { headers: { Authorization: `Basic ${credentials}` } };
  }

  /** Removes the token (as given, URL-encoded, or inside a basic auth header) from a message. */
  private redact(text: string): string {
    // Credentials written into a URL (https://user:password@host) go too.
    const message = text.replace(/(https?:\/\/)[^/@\s]*@/gi, "$1");
    const { token } = this.credentials;
    if (token === undefined || token === "") return message;
    const username = this.credentials.username ?? DEFAULT_USERNAME;
    const forms = [
      token,
      encodeURIComponent(token),
      Buffer.from(`${username}:${token}`).toString("base64"),
    ];
    let redacted = message;
    for (const form of forms) redacted = redacted.split(form).join("***");
    return redacted;
  }

  private missingBranch(branches: string[]): GitSourceError {
    const list = branches.length > 0 ? [...branches].sort().join(", ") : "(none)";
    return new GitSourceError(
      "MissingBranch",
      this.redact(`branch "${this.branch}" does not exist in ${this.url}; branches: ${list}`),
    );
  }

  private missingPath(commit: string, path: string, what: string): GitSourceError {
    return new GitSourceError(
      "MissingPath",
      this.redact(`path "${path}" ${what} at commit ${commit.slice(0, 12)} of ${this.url}`),
    );
  }

  // --- reading objects ---

  /** The repository; a local path is found on first use, so that reading needs no fetch(). */
  private async at(): Promise<Location> {
    this.location ??= await this.detectLocal(resolve(this.url));
    return this.location;
  }

  private async readTree(oid: string): Promise<ParsedTree> {
    const cached = this.trees.get(oid);
    if (cached !== undefined) return cached;
    const { tree } = await git.readTree({ fs, ...(await this.at()), oid, cache: this.gitCache });
    const parsed: ParsedTree = {
      entries: tree,
      byName: new Map(tree.map((entry) => [entry.path, entry])),
    };
    if (this.trees.size >= MAX_CACHED_TREES) this.trees.clear();
    this.trees.set(oid, parsed);
    return parsed;
  }

  private async readBlob(oid: string): Promise<Uint8Array> {
    const { blob } = await git.readBlob({ fs, ...(await this.at()), oid, cache: this.gitCache });
    return blob;
  }

  /** A blob's size from its object header, without inflating it; undefined when unknown. */
  private async blobSize(oid: string): Promise<number | undefined> {
    const location = await this.at();
    return blobSize("gitdir" in location ? location.gitdir : join(location.dir, ".git"), oid);
  }

  /**
   * A symlink's target, or undefined when it is no path a file system would take: longer than
   * PATH_MAX, not UTF-8 (it would be written back altered), empty, or holding a NUL.
   */
  private async readLink(oid: string): Promise<string | undefined> {
    if (((await this.blobSize(oid)) ?? 0) > MAX_LINK_TARGET_BYTES) return undefined;
    const bytes = await this.readBlob(oid);
    if (bytes.byteLength > MAX_LINK_TARGET_BYTES) return undefined;
    let link: string;
    try {
      link = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return undefined;
    }
    return link === "" || link.includes("\0") ? undefined : link;
  }

  private async rootTree(commit: string): Promise<string> {
    const cached = this.rootTrees.get(commit);
    if (cached !== undefined) return cached;
    const { commit: parsed } = await git.readCommit({
      fs,
      ...(await this.at()),
      oid: commit,
      cache: this.gitCache,
    });
    if (this.rootTrees.size >= MAX_CACHED_TREES) this.rootTrees.clear();
    this.rootTrees.set(commit, parsed.tree);
    return parsed.tree;
  }

  /**
   * The entry at `path` at `commit` and its real path, following symlinks that stay inside the
   * repository at every hop (as the file system would); undefined when there is none, or when
   * getting there leaves the repository.
   */
  private async resolvePath(
    commit: string,
    path: string,
  ): Promise<{ entry: TreeEntry; path: string } | undefined> {
    if (path.startsWith("/")) return undefined;
    const root: TreeEntry = {
      mode: MODE_TREE,
      path: "",
      oid: await this.rootTree(commit),
      type: "tree",
    };
    const resolution = await this.resolveFrom(root, path.split("/"));
    return resolution.kind === "found" ? resolution : undefined;
  }

  /**
   * Resolves path components below `root` one at a time, as the kernel does: `..` goes up from
   * the real directory reached so far (never lexically: `link/..` is the parent of where the link
   * leads), and a symlink's target replaces it, relative to the link's directory, however many
   * links chain. Nothing above `root` is ever reached.
   */
  private async resolveFrom(root: TreeEntry, components: string[]): Promise<Resolution> {
    const reached: TreeEntry[] = [root];
    const names: string[] = [];
    // The components still to resolve, last first: taking the next one and putting a link's
    // target in its place are both at the end, in constant time however long the targets.
    const pending = [...components].reverse();
    const missing = (name: string): Resolution => ({
      kind: "missing",
      depth: names.length,
      rest: [name, ...[...pending].reverse()],
    });
    let hops = 0;
    while (pending.length > 0) {
      const name = pending.pop() as string;
      if (name === "") continue; // `a//b` and a trailing slash
      const current = reached.at(-1) as TreeEntry;
      // Below a file there is nothing, not even `.` or `..` (ENOTDIR).
      if (current.type !== "tree") return missing(name);
      if (name === ".") continue;
      if (name === "..") {
        if (names.length === 0) return { kind: "escapes" };
        reached.pop();
        names.pop();
        continue;
      }
      const entry = (await this.readTree(current.oid)).byName.get(name);
      if (entry === undefined) return missing(name);
      if (entry.mode !== MODE_SYMLINK) {
        reached.push(entry);
        names.push(name);
        continue;
      }
      if (++hops > MAX_SYMLINK_HOPS) return { kind: "escapes" };
      const link = await this.readLink(entry.oid);
      if (link === undefined || link.startsWith("/")) return { kind: "escapes" };
      pending.push(...link.split("/").reverse());
    }
    return { kind: "found", entry: reached.at(-1) as TreeEntry, path: names.join("/") || "." };
  }

  /** The tree at `path`, or a MissingPath error. */
  private async directory(commit: string, path: string): Promise<{ oid: string; path: string }> {
    const found = await this.resolvePath(commit, path);
    if (found === undefined) throw this.missingPath(commit, path, "does not exist");
    if (found.entry.type !== "tree") throw this.missingPath(commit, path, "is not a directory");
    return { oid: found.entry.oid, path: found.path };
  }

  /** Visits the entries below a tree; `visit` returns true to descend into a subtree. */
  private async walk(
    treeOid: string,
    base: string,
    visit: (entry: TreeEntry, path: string) => Promise<boolean>,
  ): Promise<void> {
    const { entries } = await this.readTree(treeOid);
    for (const entry of entries) {
      const entryPath = joinPath(base, entry.path);
      if ((await visit(entry, entryPath)) && entry.type === "tree") {
        await this.walk(entry.oid, entryPath, visit);
      }
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}
