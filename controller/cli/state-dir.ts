// Where a `modelship up` keeps its state, for `up` and for the commands that talk to it.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { AdminFile } from "../platform/local/admin.ts";

export const DEFAULT_STATE_DIR = ".modelship";

/** --state-dir, else MODELSHIP_STATE_DIR, else .modelship in the current directory. */
export function stateDirOf(flag: string | undefined): string {
  return resolve(flag ?? process.env.MODELSHIP_STATE_DIR ?? DEFAULT_STATE_DIR);
}

/** How to reach the running `modelship up` of a state directory. */
export function adminOf(stateDir: string): AdminFile {
  const file = join(stateDir, "admin.json");
  if (!existsSync(file)) {
    throw new Error(
      `no modelship up is running for ${stateDir} (no admin.json); start one, or pass --state-dir`,
    );
  }
  return JSON.parse(readFileSync(file, "utf8")) as AdminFile;
}
