// The SourceTree port: read access to a repository's files at one revision, by path relative to
// the repository root ('/'-separated). The validator reads model files through it, so the same
// checks run on a working directory (`modelship validate`) and on a git commit (the sync).
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";

export interface SourceTree {
  /** The file's text, or undefined when there is no such file. */
  readText(path: string): Promise<string | undefined>;
  isDirectory(path: string): Promise<boolean>;
}

/** A SourceTree over a directory on disk. */
export class DirectoryTree implements SourceTree {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  async readText(path: string): Promise<string | undefined> {
    try {
      return await readFile(join(this.root, path), "utf8");
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async isDirectory(path: string): Promise<boolean> {
    try {
      return (await stat(join(this.root, path))).isDirectory();
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR";
}
