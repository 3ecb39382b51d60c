// An in-memory SourceTree for unit tests of the checks; the directory tree is tested through
// the CLI on real files.
import type { SourceTree } from "../../controller/source/tree.ts";

export class MemoryTree implements SourceTree {
  private readonly files: Map<string, string>;

  constructor(files: Record<string, string>) {
    this.files = new Map(Object.entries(files));
  }

  async readText(path: string): Promise<string | undefined> {
    return this.files.get(path);
  }

  async isDirectory(path: string): Promise<boolean> {
    if (path === ".") return true;
    return [...this.files.keys()].some((file) => file.startsWith(`${path}/`));
  }
}
