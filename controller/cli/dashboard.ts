// `modelship dashboard`: a new one-time sign-in link to the dashboard of a running `modelship up`
// (docs/dashboard.md); with --kubernetes, the dashboard of a cluster, served from this machine
// with the kubeconfig's credentials (the cluster's own authentication and RBAC).
import { parseArgs } from "node:util";
import { closeServer, listen } from "../api/http.ts";
import { KINDS } from "../api/kinds.ts";
import { dashboardLink } from "../platform/dashboard-api.ts";
import { DashboardSessions, newAdminToken } from "../platform/dashboard-sessions.ts";
import { loadUiFiles, UI_PREFIX } from "../platform/ui-files.ts";
import { adminJson, STATE_DIR_LINE, STATE_DIR_OPTION } from "./client.ts";
import type { CommandResult, Output } from "./output.ts";
import { parsePort, untilStopSignal } from "./serve.ts";

export const DASHBOARD_HELP = `Usage: modelship dashboard
       modelship dashboard --kubernetes [-n NAMESPACE] [--kubeconfig FILE] [--port 8090]

Prints a link that signs a browser in to the dashboard of the running modelship up: once, within
15 minutes. The dashboard's own sign-in page takes the admin token (admin.json) instead.

With --kubernetes, serves the dashboard of a cluster on 127.0.0.1 of this machine until
interrupted, reading and restarting as the kubeconfig's user (what RBAC allows it), and prints a
one-time link to sign in.

Options:
  --kubernetes      the dashboard of the cluster of the kubeconfig, not of a modelship up
  -n, --namespace NS  the namespace to show (default: the context's, else default)
  --kubeconfig FILE the kubeconfig (default: KUBECONFIG, else ~/.kube/config)
  --port PORT       with --kubernetes, the port on 127.0.0.1 (default 8090; 0: any free one)
${STATE_DIR_LINE}
`;

export async function runDashboard(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: {
      ...STATE_DIR_OPTION,
      kubernetes: { type: "boolean", default: false },
      namespace: { type: "string", short: "n" },
      kubeconfig: { type: "string" },
      port: { type: "string" },
    },
    strict: true,
  });
  if (values.kubernetes) return serveClusterDashboard(values, output);
  const { url } = await adminJson<{ url: string }>(values["state-dir"], "/api/v1/dashboard-links", {
    method: "POST",
  });
  output.out(`${url}\n`);
  return { exitCode: 0 };
}

async function serveClusterDashboard(
  values: { namespace?: string; kubeconfig?: string; port?: string },
  output: Output,
): Promise<CommandResult> {
  const port = parsePort(values.port, "--port", 8090);
  const { KubeClient, customCollectionPath, loadKubeConfig } = await import(
    "../platform/kubernetes/client.ts"
  );
  const { KubeStore } = await import("../platform/kubernetes/store.ts");
  const { createClusterDashboardServer } = await import("../platform/kubernetes/dashboard.ts");
  const config = loadKubeConfig(values.kubeconfig);
  const namespace =
    values.namespace ?? config.getContextObject(config.getCurrentContext())?.namespace ?? "default";
  const client = new KubeClient(config);
  const store = new KubeStore(client, namespace, (line) => output.err(`${line}\n`));
  // The token exists only in this process: a browser gets in through the link printed below.
  const sessions = new DashboardSessions(newAdminToken());
  const ui = loadUiFiles();
  const stopSignal = untilStopSignal();
  try {
    // A kind the user may not list (RBAC), or a cluster without the CRDs, is said now, with the
    // API server's words: the informers would retry it for ever.
    for (const kind of KINDS) {
      try {
        await client.request("GET", `${customCollectionPath(kind, namespace)}?limit=1`);
      } catch (error) {
        output.err(
          `modelship dashboard: cannot list ${kind}s in namespace ${namespace}: ${(error as Error).message}\n`,
        );
        return { exitCode: 1 };
      }
    }
    // Interrupted while the caches fill: stop then, not once they are full.
    if ((await Promise.race([store.start().then(() => "started"), stopSignal])) !== "started") {
      return { exitCode: 0 };
    }
    const server = createClusterDashboardServer({
      store,
      client,
      namespace,
      sessions,
      ui,
      tokenHint: "this dashboard has no token to type in: open the link it printed at start",
    });
    const url = await listen(server, "127.0.0.1", port);
    output.out(
      `dashboard listening on ${url} (namespace ${namespace} of ${config.getCurrentCluster()?.server ?? "the cluster"})\n` +
        (ui.built
          ? `dashboard on ${url}${UI_PREFIX}/ (sign in once with ${dashboardLink(url, sessions.newLinkCode())})\n`
          : "dashboard: not built (run `npm run build` in the modelship checkout)\n"),
    );
    await stopSignal;
    const closed = closeServer(server);
    server.closeAllConnections();
    await closed;
    return { exitCode: 0 };
  } finally {
    await store.stop();
    client.close();
  }
}
