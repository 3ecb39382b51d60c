// What tests of `modelship up` share: reading its admin API, stopping it, and cleaning up.
// As root, `up` (and its LocalPlatform) keeps builds outside the state directory
// (/var/tmp/modelship/<hash>, see sandbox.ts), so removing a test's temporary directory alone
// would leave every build behind, gigabytes over a few runs.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import type { AdminFile } from "../../controller/platform/local/admin.ts";
import { defaultBuildsDir, modelUser } from "../../controller/platform/local/sandbox.ts";
import type { CliProcess } from "./cli.ts";

/** STATE/admin.json of a running `up`: its admin API's URL and token. */
export function adminFileOf(stateDir: string): AdminFile {
  return JSON.parse(readFileSync(join(stateDir, "admin.json"), "utf8")) as AdminFile;
}

/** GET on a running `up`'s admin API, with its token; the answer's JSON. */
export async function adminGet<T>(admin: AdminFile, path: string): Promise<T> {
  const response = await fetch(`${admin.url}${path}`, {
    headers: { authorization: `Bearer ${admin.token}` },
  });
  return (await response.json()) as T;
}

/**
 * Stops `up` and expects a clean exit: it exits only when nothing of it is left running, so a
 * leaked worker hangs here. On another exit its output is printed, for the reason.
 */
export async function stopUp(up: CliProcess | undefined): Promise<void> {
  const code = await up?.stop();
  if (code !== 0) console.log(`modelship up exited ${code}:\n${up?.stdout()}\n${up?.stderr()}`);
  expect(code).toBe(0);
}

/** The state directories below `root` (those with a store.json), a few levels deep. */
function stateDirsBelow(root: string, depth = 4): string[] {
  if (depth < 0 || !existsSync(root)) return [];
  const found = existsSync(join(root, "store.json")) ? [root] : [];
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    if (entry.isDirectory() && !entry.isSymbolicLink()) {
      found.push(...stateDirsBelow(join(root, entry.name), depth - 1));
    }
  }
  return found;
}

/** Removes a test's temporary directory and the builds of every `up` state directory in it. */
export function removeUpTestRoot(root: string): void {
  const user = modelUser();
  for (const stateDir of stateDirsBelow(root)) {
    const builds = defaultBuildsDir(stateDir, user);
    // Inside the state directory (no model user), it goes with the root below.
    if (!builds.startsWith(stateDir)) rmSync(builds, { recursive: true, force: true });
  }
  rmSync(root, { recursive: true, force: true });
}
