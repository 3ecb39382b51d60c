// Real git repositories for tests, made with the git CLI: a fixed author, no user or system
// configuration, commits of whatever the test wrote.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export interface Person {
  name: string;
  email: string;
}

export function gitEnv(author: Person, committer: Person = author): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GIT_AUTHOR_NAME: author.name,
    GIT_AUTHOR_EMAIL: author.email,
    GIT_COMMITTER_NAME: committer.name,
    GIT_COMMITTER_EMAIL: committer.email,
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_CONFIG_NOSYSTEM: "1",
  };
}

export function runGit(dir: string, env: NodeJS.ProcessEnv, ...args: string[]): string {
  return execFileSync("git", args, { cwd: dir, env, encoding: "utf8" }).trim();
}

/** Writes files (path → text; null removes the file), making directories as needed. */
export function writeFiles(dir: string, files: Record<string, string | null>): void {
  for (const [path, text] of Object.entries(files)) {
    const file = join(dir, path);
    if (text === null) {
      rmSync(file, { force: true });
      continue;
    }
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
}

/** Writes the files, commits everything, and returns the new head. */
export function commitAll(
  dir: string,
  env: NodeJS.ProcessEnv,
  message: string,
  files: Record<string, string | null> = {},
): string {
  writeFiles(dir, files);
  runGit(dir, env, "add", "-A");
  runGit(dir, env, "commit", "--allow-empty", "-q", "-m", message);
  return runGit(dir, env, "rev-parse", "HEAD");
}
