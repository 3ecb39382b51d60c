// The SourceTree port: read access to a repository's files at one revision, by path relative to
// the repository root ('/'-separated). The validator reads model files through it, so the same
// checks run on a working directory (`modelship validate`) and on a git commit (the sync).
import { readFile, realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";

export interface SourceTree {
  /** The file's text, or undefined when there is no such file. */
  readText(path: string): Promise<string | undefined>;
  isDirectory(path: string): Promise<boolean>;
}

/**
 * A SourceTree over a directory on disk. A path whose symlinks lead out of the directory reads as
 * absent, as it does in the git source: what the validator accepts here, the sync accepts too.
 */
export class DirectoryTree implements SourceTree {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  async readText(path: string): Promise<string | undefined> {
    try {
      const real = await this.realPathInside(path);
      return real === undefined ? undefined : await readFile(real, "utf8");
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async isDirectory(path: string): Promise<boolean> {
    try {
      const real = await this.realPathInside(path);
      return real !== undefined && (await stat(real)).isDirectory();
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  /** Where the path really is, every symlink resolved, or undefined when that is outside. */
  private async realPathInside(path: string): Promise<string | undefined> {
    const root = await realpath(this.root);
    const real = await realpath(join(this.root, path));
    return real === root || real.startsWith(`${root}${sep}`) ? real : undefined;
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  // ELOOP: a symlink loop, which leads nowhere.
  return code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR" || code === "ELOOP";
}
