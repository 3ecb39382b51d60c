// Cleaning up after tests of `modelship up` or its LocalPlatform: as root, they keep builds
// outside the state directory (/var/tmp/modelship/<hash>, see sandbox.ts), so removing a
// test's temporary directory alone would leave every build behind, gigabytes over a few runs.
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { defaultBuildsDir, modelUser } from "../../controller/platform/local/sandbox.ts";

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
