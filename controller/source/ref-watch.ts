// Sees a local repository's branch move the moment it does, instead of at the next poll: a
// commit, a merge, a reset or a `git revert` rewrites `refs/heads/<branch>` (by renaming a
// lock file over it), and `git pack-refs` or a fetch may move it into `packed-refs`. Both are
// watched; anything else in the git directory is not a change of the branch. The watch only
// says "look now": the sync reads the branch itself, so a missed or extra event costs nothing
// but a poll's wait or a sync that finds nothing new (docs/source.md).
import { type FSWatcher, readFileSync, statSync, watch } from "node:fs";
import { join, resolve } from "node:path";

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
  // Directories only, never files: git replaces a ref's file (a lock file renamed over it),
  // and a watch on the file would follow the old one. A branch "team/ml/iris" lives in
  // refs/heads/team/ml, folders git makes with the first such branch and removes when
  // pack-refs empties them: one watcher per level, each for the next name on the way down, and
  // when a level's name changes the levels below it are watched afresh (a watch on a folder
  // removed and made again hears nothing).
  const names = branch.split("/");
  const heads = join(common, "refs", "heads");
  const levels: (FSWatcher | undefined)[] = [];
  const closeFrom = (level: number) => {
    for (const watcher of levels.splice(level)) watcher?.close();
  };
  const watchFrom = (level: number) => {
    for (let index = level; index < names.length; index++) {
      if (levels[index] !== undefined) continue;
      try {
        const watcher = watch(join(heads, ...names.slice(0, index)), (_event, name) => {
          if (name !== names[index]) return;
          moved();
          closeFrom(index + 1);
          watchFrom(index + 1);
        });
        // Its folder was removed: this level and those below wait for the one above.
        watcher.on("error", () => {
          if (levels[index] === watcher) closeFrom(index);
          else watcher.close();
        });
        levels[index] = watcher;
      } catch {
        // Not there yet: watched when the level above sees it made. No refs/heads at all (a
        // repository with refs only packed): packed-refs and the poll remain.
        return;
      }
    }
  };
  watchFrom(0);
  let packedRefs: FSWatcher;
  try {
    packedRefs = watch(common, (_event, name) => {
      if (name === "packed-refs") moved();
    });
  } catch {
    closeFrom(0);
    return undefined;
  }
  // It fails later only if the git directory goes: closed, and the poll remains.
  packedRefs.on("error", () => packedRefs.close());
  return () => {
    clearTimeout(timer);
    packedRefs.close();
    closeFrom(0);
  };
}
