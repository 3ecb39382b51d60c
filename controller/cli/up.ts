// `modelship up`: the product's main job on one machine — build and serve what a git
// repository declares, and follow its branch (docs/getting-started.md).
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { closeServer, listen } from "../api/http.ts";
import { type AdminFile, createAdminServer, newAdminToken } from "../platform/local/admin.ts";
import { LocalPlatform } from "../platform/local/platform.ts";
import { isRemoteUrl } from "../source/git.ts";
import type { CommandResult, Output } from "./output.ts";
import { parsePort, untilStopSignal } from "./serve.ts";
import { stateDirOf } from "./state-dir.ts";

export const UP_HELP = `Usage: modelship up [--repo PATH|URL] [--branch B] [--path P] [--port 8080] [--state-dir DIR]

Builds and serves the models a git repository declares, on this machine, and follows its branch:
every commit is validated, built and rolled out with no failed request; git revert rolls back.

Options:
  --repo PATH|URL      the git repository (default: the current directory)
  --branch B           the branch to follow (default: main)
  --path P             the directory of the manifests inside the repository (default: .)
  --interval D         how often to look for new commits (default 5s for a path, 30s for a URL)
  --port PORT          the gateway's port (default 8080)
  --host HOST          default 127.0.0.1
  --state-dir DIR      builds, deployments and keys (default .modelship, or MODELSHIP_STATE_DIR)
  --allow-rewrite      follow the branch even when its history was rewritten (force push)

POST /hooks/git on the admin URL (printed on start) fetches at once. For a private http(s)
repository, put a token in MODELSHIP_GIT_TOKEN (sent as GitHub expects; never stored).
`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function runUp(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: "string", default: "." },
      branch: { type: "string", default: "main" },
      path: { type: "string", default: "." },
      interval: { type: "string" },
      port: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      "state-dir": { type: "string" },
      "allow-rewrite": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(UP_HELP);
    return { exitCode: 0 };
  }
  const stateDir = stateDirOf(values["state-dir"]);
  const adminFile = join(stateDir, "admin.json");
  if (existsSync(adminFile)) {
    let running: AdminFile | undefined;
    try {
      running = JSON.parse(readFileSync(adminFile, "utf8")) as AdminFile;
    } catch {
      // A damaged admin.json is from a run that died while writing it; it is replaced below.
    }
    if (running && alive(running.pid)) {
      throw new Error(
        `already running for ${stateDir} (pid ${running.pid}, gateway ${running.gatewayUrl})`,
      );
    }
  }
  await mkdir(stateDir, { recursive: true });
  const url = isRemoteUrl(values.repo) ? values.repo : resolve(values.repo);
  if (isRemoteUrl(url) && new URL(url).password) {
    // It would be printed, stored and listed: a token goes in the environment instead.
    throw new Error(
      "--repo must not carry a password or token; put the token in MODELSHIP_GIT_TOKEN",
    );
  }
  const log = (line: string) => output.out(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
  const platform = new LocalPlatform({
    stateDir,
    repository: {
      url,
      branch: values.branch,
      path: values.path,
      ...(values.interval ? { interval: values.interval } : {}),
      allowRewrite: values["allow-rewrite"],
      ...(process.env.MODELSHIP_GIT_TOKEN ? { token: process.env.MODELSHIP_GIT_TOKEN } : {}),
    },
    host: values.host,
    gatewayPort: parsePort(values.port, "--port", 8080),
    log,
  });
  await platform.start();
  const token = newAdminToken();
  const admin = createAdminServer(platform, token);
  const adminUrl = await listen(admin, "127.0.0.1", 0);
  const file: AdminFile = {
    url: adminUrl,
    token,
    gatewayUrl: platform.gatewayUrl,
    pid: process.pid,
  };
  writeFileSync(adminFile, JSON.stringify(file, null, 2), { mode: 0o600 });
  output.out(
    `modelship up: ${url} (branch ${values.branch}, path ${values.path}), state in ${stateDir}\n` +
      `gateway listening on ${platform.gatewayUrl}\nadmin API on ${adminUrl} (POST /hooks/git to fetch now)\n`,
  );

  const signal = await untilStopSignal();
  output.out(`modelship up: ${signal}, stopping replicas and builds\n`);
  const closed = closeServer(admin);
  await platform.stop();
  admin.closeAllConnections();
  await closed;
  rmSync(adminFile, { force: true });
  output.out("modelship up: stopped\n");
  return { exitCode: 0 };
}
