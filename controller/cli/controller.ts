// `modelship controller`: the reconcilers on a Kubernetes cluster (docs/kubernetes.md). In a
// pod it uses the service account; elsewhere --kubeconfig. With leader election (the default),
// of several replicas only the Lease holder reconciles; one that loses the lease (the API
// server was away) stops reconciling and campaigns again, and never exits for it.
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { closeServer, listen, SERVER_OPTIONS } from "../api/http.ts";
import { urlNamesRepository } from "../forge/github.ts";
import { isGitHubDelivery } from "../forge/webhook.ts";
import { DashboardSessions } from "../platform/dashboard-sessions.ts";
import { notifySyncs } from "../platform/forge-notifications.ts";
import { KubeClient, loadKubeConfig } from "../platform/kubernetes/client.ts";
import { clusterDashboardHandler, isDashboardPath } from "../platform/kubernetes/dashboard.ts";
import { LeaderElector } from "../platform/kubernetes/leader.ts";
import { KubernetesPlatform, requestSync } from "../platform/kubernetes/platform.ts";
import { settingsFromEnv, watchedNamespaces } from "../platform/kubernetes/settings.ts";
import { KubeStore } from "../platform/kubernetes/store.ts";
import { pullRequestPlanOf } from "../platform/pull-request-plan.ts";
import { loadUiFiles } from "../platform/ui-files.ts";
import { ControllerMetrics } from "../reconcile/metrics.ts";
import type { Plan } from "../reconcile/plan.ts";
import { checkGitHubOptions, GITHUB_HELP_LINES, startGitHub } from "./github.ts";
import type { CommandResult, Output } from "./output.ts";
import { parsePort, untilStopSignal } from "./serve.ts";

export const CONTROLLER_HELP = `Usage: modelship controller [--kubeconfig FILE] [--namespace NS] [--port 8081] [--no-leader-elect] [--github-repo OWNER/NAME]

Runs the reconcilers against a Kubernetes API server: syncs ModelRepositories, builds with Kaniko
Jobs, rolls out Deployments and writes status. Of several replicas, the Lease holder reconciles.
On --port: /healthz; /readyz (200 while the API server answers this replica, leader or
standby); /leaderz (200 only on the leader); /metrics (modelship_controller_leader is 1 on the
leader); POST /hooks/git fetches every repository now, on whichever replica it reaches; with
MODELSHIP_DASHBOARD_TOKEN set, the dashboard at /ui, signed in with that token.

Settings come from the environment (kustomize/base/config.yaml): MODELSHIP_NAMESPACE,
MODELSHIP_BUILD_NAMESPACE, MODELSHIP_BUILD_CPU, MODELSHIP_BUILD_MEMORY, MODELSHIP_BUILD_CACHE_REPO,
MODELSHIP_REGISTRY, MODELSHIP_PUSH_SECRET, MODELSHIP_INSECURE_REGISTRY, MODELSHIP_EXECUTOR_IMAGE,
MODELSHIP_IMAGE, MODELSHIP_PYTHON_BASE_IMAGE, MODELSHIP_R_BASE_IMAGE, MODELSHIP_IMAGE_PULL_SECRETS,
MODELSHIP_GATEWAY_URL, MODELSHIP_WATCH_NAMESPACES (a list, or *; the installation's namespace
when unset) (docs/kubernetes.md).

Options:
${GITHUB_HELP_LINES}
                       On a cluster they come from a Secret (env.valueFrom.secretKeyRef). A
                       pull_request delivery to /hooks/git must be signed with
                       MODELSHIP_WEBHOOK_SECRET; the leader reports the syncs of the
                       ModelRepositories whose URL names the repository.
`;

export async function runController(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: {
      kubeconfig: { type: "string" },
      namespace: { type: "string" },
      port: { type: "string" },
      host: { type: "string", default: "0.0.0.0" },
      "no-leader-elect": { type: "boolean", default: false },
      "cache-dir": { type: "string" },
      "github-repo": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(CONTROLLER_HELP);
    return { exitCode: 0 };
  }
  const repository = values["github-repo"];
  if (repository) checkGitHubOptions(repository, process.env);
  const settings = settingsFromEnv(process.env);
  if (values.namespace) settings.namespace = values.namespace;
  // Listening from the start, so that a stop asked for while starting is a clean one.
  const stopping = new AbortController();
  void untilStopSignal().then(() => stopping.abort());
  const client = new KubeClient(loadKubeConfig(values.kubeconfig));
  const log = (line: string) => output.out(`${new Date().toISOString()} ${line}\n`);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = new ControllerMetrics(registry);
  const leaderGauge = new Gauge({
    name: "modelship_controller_leader",
    help: "1 while this replica holds the Lease and reconciles, 0 while it stands by",
    registers: [registry],
  });
  const newPlatform = () =>
    new KubernetesPlatform({
      client,
      settings,
      cacheDir: values["cache-dir"] ?? join(tmpdir(), "modelship-controller"),
      metrics,
      log,
    });

  /** The platform reconciling now: only while this process leads and its caches are filled. */
  let current: KubernetesPlatform | undefined;
  let leading = false;
  const elector = values["no-leader-elect"]
    ? undefined
    : new LeaderElector(client, { namespace: settings.namespace });
  /** Fetches every repository now: here when this replica leads, else by asking the leader. */
  const fetchNow = async (): Promise<string> => {
    if (current && leading) {
      current.syncNow();
      return "fetching";
    }
    // A standby asks the leader, through the API server: the Service reaches either.
    const count = await requestSync(client, watchedNamespaces(settings), new Date());
    return `asked the leader to fetch ${count} repositories`;
  };
  const github = repository
    ? startGitHub({
        repository,
        env: process.env,
        registry,
        log,
        planPullRequest: async (pr, { signal }) => {
          // The leader's caches hold the builds; a standby has none to number them by.
          const platform = leading ? current : undefined;
          if (!platform) throw new Error("this replica stands by: the leader plans pull requests");
          const followed = platform.store
            .list("ModelRepository")
            .filter(
              (item) =>
                urlNamesRepository(item.spec.url, repository) &&
                (item.spec.branch ?? "main") === pr.baseRef,
            );
          const plans: Plan[] = [];
          for (const item of followed) {
            plans.push(
              await platform.plan(
                item,
                {
                  base: pr.baseSha,
                  head: pr.headSha,
                  // The base may have moved since the last poll; the head is on no branch.
                  fetch: [`refs/heads/${pr.baseRef}`, `refs/pull/${pr.number}/head`],
                },
                { signal },
              ),
            );
          }
          return pullRequestPlanOf(plans);
        },
        onPush: () => {
          fetchNow().catch((error: Error) =>
            log(`github webhook: cannot ask the leader to fetch: ${error.message}`),
          );
        },
      })
    : undefined;
  const token = dashboardToken();
  /** The dashboard, once its caches are filled (until then its paths answer 503). */
  let dashboard: Awaited<ReturnType<typeof startDashboard>> | undefined;
  const dashboardStore =
    token && new KubeStore(client, settings.namespace, (line) => log(`dashboard: ${line}`));
  const server = createServer(SERVER_OPTIONS, (request, response) => {
    const path = request.url ?? "/";
    if (
      request.method === "POST" &&
      path === "/hooks/git" &&
      github &&
      isGitHubDelivery(request.headers)
    ) {
      github.receiver.handle(request, response).catch((error: Error) => {
        if (!response.headersSent) response.writeHead(500).end(error.message);
      });
    } else if (request.method === "POST" && path === "/hooks/git") {
      fetchNow().then(
        (said) => response.writeHead(202).end(said),
        (error: Error) => response.writeHead(503).end(`cannot ask the leader: ${error.message}`),
      );
    } else if (path === "/healthz") {
      response.writeHead(200).end("ok");
    } else if (path === "/readyz") {
      // Healthy is ready, leader or standby: otherwise a Deployment of two never becomes
      // Available, and a rollout that keeps capacity (maxUnavailable 0) never completes.
      const healthy = elector ? elector.inContact : leading;
      response
        .writeHead(healthy ? 200 : 503)
        .end(healthy ? "ok" : "the API server has not answered within a lease duration");
    } else if (path === "/leaderz") {
      response
        .writeHead(leading ? 200 : 503)
        .end(
          leading ? "leading" : `standing by${elector?.holder ? `: ${elector.holder} leads` : ""}`,
        );
    } else if (token && isDashboardPath(path.split("?")[0] ?? "")) {
      if (dashboard) dashboard(request, response);
      else response.writeHead(503).end("the dashboard is filling its caches: try again shortly");
    } else if (path === "/metrics") {
      registry
        .metrics()
        .then((text) =>
          response.writeHead(200, { "content-type": registry.contentType }).end(text),
        );
    } else {
      response.writeHead(404).end();
    }
  });
  const url = await listen(server, values.host, parsePort(values.port, "--port", 8081));
  output.out(`controller listening on ${url} (namespace ${settings.namespace})\n`);
  // Beside the reconcilers, leader or not; a failure to start it is logged, and the rest runs.
  if (token && dashboardStore) {
    startDashboard(dashboardStore, client, settings.namespace, token, log).then(
      (started) => {
        dashboard = started;
      },
      (error: Error) => log(`dashboard: could not start: ${error.message}`),
    );
  }

  /** Reconciles while this process leads; a fresh platform each time, so no stale cache. */
  const lead = async (): Promise<"lost" | "stopped"> => {
    const platform = newPlatform();
    current = platform;
    // The caches fill (and wait for the API server if need be) while the lease is renewed.
    let stopped = false;
    let stopNotifying: (() => void) | undefined;
    const started = platform.start().then(
      () => {
        leading = true;
        leaderGauge.set(1);
        log("caches filled; reconciling");
        // The leader alone tells GitHub, from its filled caches: what they hold was told by
        // the leader before, so a new leader repeats nothing.
        stopNotifying =
          github &&
          notifySyncs(platform.store, github.notifier, (followed) =>
            urlNamesRepository(followed.spec.url, github.repository),
          );
      },
      (error: Error) => {
        // A start cut short by stop() (the lease was lost, or the process stops) says nothing.
        if (!stopped) log(`could not start reconciling: ${error.message}`);
      },
    );
    const outcome = elector
      ? await elector.hold(stopping.signal)
      : await new Promise<"stopped">((resolve) =>
          stopping.signal.addEventListener("abort", () => resolve("stopped"), { once: true }),
        );
    leading = false;
    leaderGauge.set(0);
    current = undefined;
    stopped = true;
    await platform.stop();
    await started;
    // After the start has settled: it may have begun watching even as the lease was lost.
    stopNotifying?.();
    return outcome;
  };

  while (!stopping.signal.aborted) {
    if (elector && !(await elector.acquire(stopping.signal))) break;
    if (elector) log(`leading as ${elector.identity}`);
    if ((await lead()) === "lost") {
      log(
        "lost the leader lease (could not renew it in time); stopped reconciling, campaigning again",
      );
    }
  }
  log("stopping");
  github?.stop();
  await elector?.release();
  await closeServer(server);
  // Stopped whether or not it has started: a start still waiting ends with it.
  if (dashboardStore) await dashboardStore.stop();
  client.close();
  return { exitCode: 0 };
}

/** MODELSHIP_DASHBOARD_TOKEN, checked: undefined when unset (no dashboard). */
function dashboardToken(): string | undefined {
  const token = process.env.MODELSHIP_DASHBOARD_TOKEN;
  if (!token) return undefined;
  if (token.length < 32) {
    throw new Error(
      "MODELSHIP_DASHBOARD_TOKEN must be at least 32 characters (openssl rand -hex 24)",
    );
  }
  return token;
}

/**
 * With MODELSHIP_DASHBOARD_TOKEN (a Secret's, kustomize/base), every replica, leader or not,
 * serves the dashboard on --port: informers of its own, sign-in with the token or a link made
 * with it (docs/dashboard.md#on-a-cluster).
 */
async function startDashboard(
  store: KubeStore,
  client: KubeClient,
  namespace: string,
  token: string,
  log: (line: string) => void,
) {
  await store.start();
  const handle = clusterDashboardHandler({
    store,
    client,
    namespace,
    sessions: new DashboardSessions(token),
    ui: loadUiFiles(),
    tokenHint: "it is the token of the Secret modelship-dashboard (MODELSHIP_DASHBOARD_TOKEN)",
  });
  log("dashboard on /ui (sign in with MODELSHIP_DASHBOARD_TOKEN)");
  return handle;
}
