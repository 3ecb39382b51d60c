// Sees a local repository's branch move the moment it does, instead of at the next poll: a
// commit, a merge, a reset or a `git revert` rewrites `refs/heads/<branch>` (by renaming a
// lock file over it), and `git pack-refs` or a fetch may move it into `packed-refs`. Both are
// watched; anything else in the git directory is not a change of the branch. The watch only
// says "look now": the sync reads the branch itself, so a missed or extra event costs nothing
// but a poll's wait or a sync that finds nothing new (docs/source.md).
import { type FSWatcher, readFileSync, statSync, watch } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/** Events closer together than this make one call: a commit writes the ref more than once. */
const SETTLE_MS = 10;

/**
 * The git directory of the repository at `path`: its `.git` (a directory, or a file naming it,
 * as in a worktree), or `path` itself when it is bare. Undefined when it is none of these.
 */
export function gitDirectoryOf(path: string): string | undefined {
  const dotGit = join(path, ".git");
  try {
    if (statSync(dotGit).isDirectory()) return dotGit;
    const named = /^gitdir:\s*(.+)$/m.exec(readFileSync(dotGit, "utf8"))?.[1]?.trim();
    return named === undefined ? undefined : resolve(path, named);
  } catch {}
  try {
    if (statSync(join(path, "HEAD")).isFile() && statSync(join(path, "refs")).isDirectory()) {
      return path;
    }
  } catch {}
  return undefined;
}

/**
 * The common git directory, where refs live: a worktree's git directory names it in `commondir`.
 */
function commonDirectoryOf(gitDirectory: string): string {
  try {
    const common = readFileSync(join(gitDirectory, "commondir"), "utf8").trim();
    return resolve(gitDirectory, common);
  } catch {
    return gitDirectory;
  }
}

/**
 * Calls `onMove` soon after `branch` of the repository at `path` may have moved. Returns what
 * stops the watch; undefined when `path` is not a local repository whose refs can be watched
 * (the caller then relies on its poll).
 */
export function watchBranch(
  path: string,
  branch: string,
  onMove: () => void,
): (() => void) | undefined {
  const gitDirectory = gitDirectoryOf(path);
  if (gitDirectory === undefined) return undefined;
  const common = commonDirectoryOf(gitDirectory);
  let timer: NodeJS.Timeout | undefined;
  const moved = () => {
    if (timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      onMove();
    }, SETTLE_MS);
  };
  const watchers: FSWatcher[] = [];
  // Directories only, never files: git replaces a ref's file (a lock file renamed over it),
  // and a watch on the file would follow the old one. A branch "team/x" lives in
  // refs/heads/team, a directory git makes with the first such branch and removes when
  // pack-refs empties it: its watch is made again whenever refs/heads changes. (A branch two
  // folders deep whose inner folder alone is made again is left to the poll.)
  const heads = join(common, "refs", "heads");
  const folder = dirname(branch) === "." ? undefined : dirname(branch);
  let folderWatcher: FSWatcher | undefined;
  const watchFolder = () => {
    if (folder === undefined || folderWatcher !== undefined) return;
    try {
      const watcher = watch(join(heads, folder), (_event, name) => {
        if (name === basename(branch)) moved();
      });
      watcher.on("error", () => {
        watcher.close();
        if (folderWatcher === watcher) folderWatcher = undefined;
      });
      folderWatcher = watcher;
    } catch {
      // Not there yet: made again when refs/heads changes.
    }
  };
  const topLevel = folder === undefined ? branch : (folder.split("/")[0] as string);
  try {
    watchers.push(
      watch(heads, (_event, name) => {
        if (name !== topLevel) return;
        moved();
        // The folder may have been removed and made again: a watch on the old one hears
        // nothing, so it is made afresh.
        folderWatcher?.close();
        folderWatcher = undefined;
        watchFolder();
      }),
    );
    watchFolder();
  } catch {
    // No refs/heads (a repository with refs only packed): packed-refs and the poll remain.
  }
  try {
    watchers.push(
      watch(common, (_event, name) => {
        if (name === "packed-refs") moved();
      }),
    );
  } catch {
    for (const watcher of watchers) watcher.close();
    folderWatcher?.close();
    return undefined;
  }
  // A watcher that fails later (its directory removed) is closed; the poll remains.
  for (const watcher of watchers) watcher.on("error", () => watcher.close());
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
    folderWatcher?.close();
  };
}
