// Where the local platform draws the line between the control plane and model code
// (docs/security.md): a model's build script and its function get an environment of their own —
// the essentials of this process's (PATH, locale, time zone, temporary directory) and what the
// model declares, never this process's credentials — and, when this process runs as root, they
// run as an unprivileged user that cannot read the state directory at all.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** What of this process's environment a model's processes get: nothing that can be a secret. */
const PASSED_ON = ["PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/**
 * The whole environment of a model's build or worker: the essentials above, HOME (a directory
 * the model may use), then `extra` (the runtime's own variables and the model's `spec.env`).
 */
export function modelEnvironment(
  extra: Record<string, string>,
  home: string,
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const base: Record<string, string> = { HOME: home };
  for (const name of PASSED_ON) {
    const value = from[name];
    if (value !== undefined) base[name] = value;
  }
  return { ...base, ...extra };
}

export interface ModelUser {
  name: string;
  uid: number;
  gid: number;
}

/** A user's uid and gid from an /etc/passwd text, by name or number. */
export function findUser(passwd: string, wanted: string): ModelUser | undefined {
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === wanted || uid === wanted) {
      return { name, uid: Number(uid), gid: Number(gid) };
    }
  }
  return undefined;
}

/**
 * The user model code runs as: when this process is root, MODELSHIP_MODEL_USER (a name or a
 * uid) or `nobody` — never root itself; otherwise undefined (this process's own user: the OS
 * offers no other, see docs/security.md). An unknown user is an error that names it.
 */
export function modelUser(
  env: NodeJS.ProcessEnv = process.env,
  uid: number = process.getuid?.() ?? -1,
  passwd: () => string = () => readFileSync("/etc/passwd", "utf8"),
): ModelUser | undefined {
  if (uid !== 0) return undefined;
  const wanted = env.MODELSHIP_MODEL_USER || "nobody";
  const user = findUser(passwd(), wanted);
  if (!user) {
    throw new Error(
      `MODELSHIP_MODEL_USER: no user "${wanted}" in /etc/passwd; model code must not run as root`,
    );
  }
  if (user.uid === 0) {
    throw new Error(`MODELSHIP_MODEL_USER: "${wanted}" is root; model code must not run as root`);
  }
  return user;
}

/** Where builds go when model code runs as a user of its own: a place any user can reach. */
const SHARED_BUILDS_ROOT = "/var/tmp/modelship";

/**
 * The builds directory of a state directory: inside it when model code runs as this process's
 * user; otherwise under /var/tmp/modelship (its own subdirectory per state directory), since the
 * model user may not even traverse the directories above the state directory (a home directory,
 * a 0700 temporary one) and must not enter the state directory itself.
 */
export function defaultBuildsDir(stateDir: string, user: ModelUser | undefined): string {
  if (!user) return join(stateDir, "builds");
  return join(SHARED_BUILDS_ROOT, createHash("sha256").update(stateDir).digest("hex").slice(0, 16));
}

/**
 * Refuses to start when the model user cannot read what model code needs of this installation
 * (the workers, the build script): better a clear error now than every build failing later.
 */
export function checkModelUserReads(user: ModelUser, paths: string[]): void {
  for (const path of paths) {
    const result = spawnSync("test", ["-r", path], { uid: user.uid, gid: user.gid });
    if (result.status !== 0) {
      throw new Error(
        `model code runs as ${user.name} (this process is root), who cannot read ${path}: install modelship where every user can read it, or set MODELSHIP_MODEL_USER to a user who can`,
      );
    }
  }
}
