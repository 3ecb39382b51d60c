// `modelship up`: the product's main job on one machine — build and serve what a git
// repository declares, and follow its branch (docs/getting-started.md).
import { chmodSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { closeServer, listen } from "../api/http.ts";
import { metricsUrlFlag, openConfiguredMetricsStore, startRetention } from "../metrics/open.ts";
import type { MetricsStore } from "../metrics/port.ts";
import { dashboardLink } from "../platform/dashboard-api.ts";
import { DashboardSessions, newAdminToken } from "../platform/dashboard-sessions.ts";
import { notifySyncs } from "../platform/forge-notifications.ts";
import { type AdminFile, coalesced, createAdminServer } from "../platform/local/admin.ts";
import { LocalPlatform } from "../platform/local/platform.ts";
import { lockStateDir, writeFileAtomic } from "../platform/local/state-files.ts";
import { pullRequestPlanOf } from "../platform/pull-request-plan.ts";
import { loadUiFiles, UI_PREFIX } from "../platform/ui-files.ts";
import { isRemoteUrl } from "../source/git.ts";
import { checkGitHubOptions, GITHUB_HELP_LINES, startGitHub } from "./github.ts";
import type { CommandResult, Output } from "./output.ts";
import { parseDuration, parsePort, parsePositive, untilStopSignal } from "./serve.ts";
import { chosenStateDir, defaultStateDir, repositoryUrl, stateDirRefusal } from "./state-dir.ts";

export const UP_HELP = `Usage: modelship up [--repo PATH|URL] [--branch B] [--path P] [--port 8080] [--state-dir DIR]

Builds and serves the models a git repository declares, on this machine, and follows its branch:
every commit is validated, built and rolled out with no failed request; git revert rolls back.

Options:
  --repo PATH|URL      the git repository (default: the current directory)
  --branch B           the branch to follow (default: main)
  --path P             the directory of the manifests inside the repository (default: .)
  --interval D         how often to look for new commits (default 5s for a path, 30s for a URL);
                       a path's branch is also watched, so its commits are seen at once
  --port PORT          the gateway's port (default 8080)
  --host HOST          default 127.0.0.1
  --admin-port PORT    the admin API's port, and so the webhook URL's (default: --port + 1, so
                       8081; with --port 0, any free port)
  --state-dir DIR      builds, deployments and keys (default: a directory of its own under
                       $XDG_STATE_HOME/modelship or ~/.local/state/modelship, or MODELSHIP_STATE_DIR);
                       inside the repository's work tree only where git ignores it
  --allow-rewrite      follow the branch even when its history was rewritten (force push)
  --build-deadline D   a build still running after this long fails (default 30m)
  --max-builds N       how many builds run at once; the others wait (default 2)
  --metrics-url URL    keep tracked metrics in this PostgreSQL server (postgres://…; or
                       MODELSHIP_METRICS_URL) instead of the embedded one in STATE/metrics
  --metrics-retention D
                       predictions' metrics older than this are rolled up into hourly
                       aggregates (default 720h)
${GITHUB_HELP_LINES}
  --github-predict     with --github-repo: the plan of each pull request also runs the examples of
                       each changed Model through its base's and head's builds (plan --predict).
                       That runs the pull request's code here (as the model user when root): only
                       for repositories whose pull requests you would run

POST /hooks/git on the admin URL (printed on start) fetches at once (at most once a second); with
MODELSHIP_WEBHOOK_SECRET set, only calls signed with it as GitHub signs them (X-Hub-Signature-256).
With --github-repo it is also the URL of the repository's GitHub webhook (push, pull_request).
For a private http(s) repository, put a token in MODELSHIP_GIT_TOKEN (sent as GitHub expects;
never stored). Model code never sees either, nor the admin token; run as root, models and their
builds run as MODELSHIP_MODEL_USER (default nobody). See docs/security.md.
`;

/**
 * The metrics store `up` writes to. One that cannot be opened (a damaged directory, a server
 * that refuses) does not stop the models from being served: it is logged, and metrics are not
 * kept until a restart that opens it.
 */
async function openUpMetricsStore(
  url: string | undefined,
  directory: string,
  log: (line: string) => void,
): Promise<MetricsStore | undefined> {
  try {
    return await openConfiguredMetricsStore(url ? { url } : { directory });
  } catch (error) {
    const where = url ? "the server of --metrics-url" : directory;
    log(
      `metrics: cannot open the metrics store in ${where} (${(error as Error).message}): models are served, but the metrics they track are not kept${url ? "" : `; move ${directory} away to start a new store`}`,
    );
    return undefined;
  }
}

interface UpValues {
  repo: string;
  branch: string;
  path: string;
  interval?: string | undefined;
  port?: string | undefined;
  "admin-port"?: string | undefined;
  host: string;
  "allow-rewrite": boolean;
  "build-deadline": string;
  "max-builds": string;
  "github-repo"?: string | undefined;
  "github-predict": boolean;
  "metrics-url"?: string | undefined;
  "metrics-retention": string;
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
      "admin-port": { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      "state-dir": { type: "string" },
      "allow-rewrite": { type: "boolean", default: false },
      "build-deadline": { type: "string", default: "30m" },
      "max-builds": { type: "string", default: "2" },
      "github-repo": { type: "string" },
      "github-predict": { type: "boolean", default: false },
      "metrics-url": { type: "string" },
      "metrics-retention": { type: "string", default: "720h" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(UP_HELP);
    return { exitCode: 0 };
  }
  if (isRemoteUrl(values.repo) && new URL(values.repo).password) {
    // It would be printed, stored and listed: a token goes in the environment instead.
    throw new Error(
      "--repo must not carry a password or token; put the token in MODELSHIP_GIT_TOKEN",
    );
  }
  // Before anything starts: without its credentials, --github-repo would report nothing.
  if (values["github-repo"]) checkGitHubOptions(values["github-repo"], process.env);
  const url = repositoryUrl(values.repo);
  const stateDir =
    chosenStateDir(values["state-dir"]) ??
    defaultStateDir({ url, branch: values.branch, path: values.path });
  const refusal = await stateDirRefusal(stateDir, url);
  if (refusal) throw new Error(refusal);
  // Listening from the start: a stop asked for while starting (or while the first build runs)
  // is a clean stop once started, never a kill.
  const stopSignal = untilStopSignal();
  // One owner per state directory, before anything in it is read.
  const unlock = lockStateDir(stateDir);
  try {
    return await serve(values, url, stateDir, output, stopSignal);
  } finally {
    unlock();
  }
}

async function serve(
  values: UpValues,
  url: string,
  stateDir: string,
  output: Output,
  stopSignal: Promise<NodeJS.Signals>,
): Promise<CommandResult> {
  // Only this user may look inside: the store holds every spec.env, secrets/ the keys.
  chmodSync(stateDir, 0o700);
  const adminFile = join(stateDir, "admin.json");
  const gatewayPort = parsePort(values.port, "--port", 8080);
  // A stable default, so a webhook URL written into a forge survives restarts.
  const adminPort = parsePort(
    values["admin-port"],
    "--admin-port",
    // The next port up, when there is one.
    gatewayPort === 0 || gatewayPort === 65_535 ? 0 : gatewayPort + 1,
  );
  const log = (line: string) => output.out(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
  // Every option is read before the store opens: a bad one must not leave it open (its thread
  // would keep the process from exiting).
  const retentionMs = parseDuration(values["metrics-retention"], "--metrics-retention");
  const buildDeadlineMs = parseDuration(values["build-deadline"], "--build-deadline");
  const maxConcurrentBuilds = parsePositive(values["max-builds"], "--max-builds", 2);
  const metricsStore = await openUpMetricsStore(
    metricsUrlFlag(values["metrics-url"]) ?? process.env.MODELSHIP_METRICS_URL,
    join(stateDir, "metrics"),
    log,
  );
  const stopRetention = metricsStore && startRetention(metricsStore, retentionMs, log);
  const closeMetrics = async () => {
    stopRetention?.();
    await metricsStore?.close();
  };
  // Whatever ends this run — a stop, or a failure while starting — closes the store last.
  try {
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
      gatewayPort,
      log,
      buildDeadlineMs,
      settings: { maxConcurrentBuilds },
      ...(metricsStore ? { metricsStore } : {}),
    });
    const repository = values["github-repo"];
    const github = repository
      ? startGitHub({
          repository,
          env: process.env,
          registry: platform.metrics,
          log,
          planPullRequest: async (pr, { signal }) => {
            // A pull request into another branch changes nothing up serves.
            if (pr.baseRef !== values.branch) return pullRequestPlanOf([]);
            const plan = await platform.plan(pr.baseSha, pr.headSha, {
              signal,
              // A URL repository: the base branch may have moved since the last poll, and the
              // pull request's head is under refs/pull/N/head only.
              fetch: [`refs/heads/${pr.baseRef}`, `refs/pull/${pr.number}/head`],
              predict: values["github-predict"],
            });
            return pullRequestPlanOf([plan]);
          },
          onPush: coalesced(() => platform.syncNow(), 1000),
        })
      : undefined;
    // Watching before the platform starts: the first sync of this run is told too; what the
    // store kept from the last run was told then.
    const stopNotifying = github && notifySyncs(platform.store, github.notifier);
    const token = newAdminToken();
    const webhookSecret = process.env.MODELSHIP_WEBHOOK_SECRET;
    const sessions = new DashboardSessions(token);
    const ui = loadUiFiles();
    const admin = createAdminServer(platform, {
      sessions,
      ui,
      ...(webhookSecret ? { webhookSecret } : {}),
      ...(github ? { github: github.receiver } : {}),
    });
    // Before anything starts: a taken admin port fails the start with nothing left running.
    // Nobody calls it before admin.json (its token) is written below.
    const adminUrl = await listen(admin, "127.0.0.1", adminPort);
    const stopGitHub = () => {
      stopNotifying?.();
      github?.stop();
    };
    try {
      await platform.start();
    } catch (error) {
      stopGitHub();
      await closeServer(admin);
      throw error;
    }
    const file: AdminFile = {
      url: adminUrl,
      token,
      gatewayUrl: platform.gatewayUrl,
      pid: process.pid,
      repository: { url, branch: values.branch, path: values.path },
    };
    writeFileAtomic(adminFile, JSON.stringify(file, null, 2), 0o600);
    output.out(
      `modelship up: ${url} (branch ${values.branch}, path ${values.path}), state in ${stateDir}\n` +
        `gateway listening on ${platform.gatewayUrl}\nadmin API on ${adminUrl} (POST /hooks/git to fetch now)\n` +
        (ui.built
          ? // The link signs one browser in, once, within 15 minutes; `modelship dashboard` makes another.
            `dashboard on ${adminUrl}${UI_PREFIX}/ (sign in once with ${dashboardLink(adminUrl, sessions.newLinkCode())})\n`
          : "dashboard: not built (run `npm run build` in the modelship checkout)\n"),
    );

    const signal = await stopSignal;
    output.out(`modelship up: ${signal}, stopping replicas and builds\n`);
    const closed = closeServer(admin);
    stopGitHub();
    await platform.stop();
    admin.closeAllConnections();
    await closed;
    rmSync(adminFile, { force: true });
    output.out("modelship up: stopped\n");
    return { exitCode: 0 };
  } finally {
    await closeMetrics();
  }
}
