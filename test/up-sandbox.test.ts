// Model code is not the control plane (docs/security.md): under `modelship up`, a model's build
// script and its function look for every secret the control plane holds — the git token, the
// webhook secret and the admin API's token — in their environment, in every process's environ
// and command line they can read, and in the state directory; and try to reach a replica's socket
// around the gateway. They find nothing and reach nothing. The real command, real git, a real
// build and a real Python worker.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdminFile } from "../controller/platform/local/admin.ts";
import { type CliProcess, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminFileOf, removeUpTestRoot } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-sandbox-"));
const repo = join(root, "repo");
const stateDir = join(root, "state");
const GIT_ENV = gitEnv({ name: "Katherine Johnson", email: "katherine@example.com" });
const GIT_TOKEN = "ghp_canaryGitToken0123456789abcdefABCDEF";
const WEBHOOK_SECRET = "whsec-canary-5f2c9e";

/**
 * What model code can find out: run by the build script (its report lands in the build) and by
 * the function (which returns both). `needles` are the secrets to look for.
 */
const spy = (needles: string[], stateFiles: string[]) => `import json, os, socket

NEEDLES = ${JSON.stringify(needles)}
STATE_FILES = ${JSON.stringify(stateFiles)}
# The model's own identity, which the metrics SDK reports (docs/metrics.md): not a setting of
# the control plane's. Their values are searched for the secrets like every other.
IDENTITY = {"MODELSHIP_MODEL_CRN", "MODELSHIP_BUILD_CRN", "MODELSHIP_DEPLOYMENT_CRN"}

def report(sockets):
    found = []
    for name, value in os.environ.items():
        if (name.startswith("MODELSHIP_") and name not in IDENTITY) or any(n in value for n in NEEDLES):
            found.append("env " + name)
    readable_procs = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for part in ("environ", "cmdline"):
            try:
                with open("/proc/%s/%s" % (pid, part), "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            readable_procs += 1
            for needle in NEEDLES:
                if needle in text:
                    found.append("/proc/%s/%s" % (pid, part))
    readable_files = []
    for path in STATE_FILES:
        try:
            with open(path, "rb") as f:
                f.read(1)
            readable_files.append(path)
        except OSError:
            pass
    reached = []
    for path in sockets:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            reached.append(path)
        except OSError:
            pass
        finally:
            s.close()
    return {"uid": os.getuid(), "found": found, "readableFiles": readable_files,
            "readableProcs": readable_procs, "reachedSockets": reached}

def predict(args):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "build-report.json")) as f:
        built = json.load(f)
    return {"build": built, "run": report(args.get("sockets", []))}

if __name__ == "__main__":
    with open("build-report.json", "w") as f:
        json.dump(report([]), f)
`;

const MANIFEST = openModelManifest({
  name: "spy",
  file: "spy.py",
  function: "predict",
  sourcePath: "spy",
  buildScript: "build.sh",
  replicas: 1,
});

interface Report {
  uid: number;
  found: string[];
  readableFiles: string[];
  readableProcs: number;
  reachedSockets: string[];
}

let up: CliProcess;
let admin: AdminFile;

beforeAll(async () => {
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "nothing yet", { "README.md": "models to come\n" });
  up = await startCli(
    ["up", "--repo", repo, "--state-dir", stateDir, "--port", "0", "--interval", "1s"],
    { env: { MODELSHIP_GIT_TOKEN: GIT_TOKEN, MODELSHIP_WEBHOOK_SECRET: WEBHOOK_SECRET } },
  );
  admin = adminFileOf(stateDir);
  // The admin token exists only now: the spy that looks for it comes in the next commit.
  const stateFiles = ["admin.json", "secrets/keys.json", "store.json"].map((file) =>
    join(stateDir, file),
  );
  commitAll(repo, GIT_ENV, "a model that looks for secrets", {
    "spy/spy.py": spy([GIT_TOKEN, WEBHOOK_SECRET, admin.token], stateFiles),
    "spy/build.sh": "python3 spy.py\n",
    "spy.yaml": MANIFEST,
  });
}, 60_000);

afterAll(async () => {
  await up?.stop();
  removeUpTestRoot(root);
});

describe("model code under modelship up", () => {
  let build: Report;
  let run: Report;
  let sockets: string[];

  beforeAll(async () => {
    const socketDir = join(stateDir, "sockets");
    await eventually(async () => {
      const answer = await postJson(`${admin.gatewayUrl}/models/spy/predict`, {}).catch(
        () => undefined,
      );
      return answer?.status === 200;
    }, 120_000);
    sockets = readdirSync(socketDir).map((name) => join(socketDir, name));
    const answer = await postJson(`${admin.gatewayUrl}/models/spy/predict`, { sockets });
    const body = answer.body as { response: { build: Report; run: Report } };
    ({ build, run } = body.response);
  }, 150_000);

  it("runs as an unprivileged user of its own when modelship runs as root", () => {
    if (process.getuid?.() !== 0) return;
    expect(build.uid).not.toBe(0);
    expect(run.uid).not.toBe(0);
    expect(run.uid).toBe(build.uid);
  });

  it.each([
    ["the build script", () => build],
    ["the function", () => run],
  ])(
    "%s finds none of the control plane's secrets, in any environment or command line",
    (_, report) => {
      // It did look: its own processes at least are readable.
      expect(report().readableProcs).toBeGreaterThan(0);
      expect(report().found).toStrictEqual([]);
    },
  );

  it.each([
    ["the build script", () => build],
    ["the function", () => run],
  ])("%s cannot read the state directory's files", (_, report) => {
    expect(report().readableFiles).toStrictEqual([]);
  });

  it("cannot reach a replica's socket: the only way in is the gateway", () => {
    expect(sockets.length).toBeGreaterThan(0);
    expect(run.reachedSockets).toStrictEqual([]);
    expect(statSync(join(stateDir, "sockets")).mode & 0o777).toBe(0o700);
    for (const socket of sockets) expect(statSync(socket).mode & 0o777).toBe(0o600);
  });
});
