// `modelship controller`: the reconcilers on a Kubernetes cluster (docs/kubernetes.md). In a
// pod it uses the service account; elsewhere --kubeconfig. With leader election (the default),
// of several replicas only the Lease holder reconciles.
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { collectDefaultMetrics, Registry } from "prom-client";
import { SERVER_OPTIONS } from "../api/http.ts";
import { KubeClient, loadKubeConfig } from "../platform/kubernetes/client.ts";
import { LeaderElector } from "../platform/kubernetes/leader.ts";
import { KubernetesPlatform } from "../platform/kubernetes/platform.ts";
import { settingsFromEnv } from "../platform/kubernetes/settings.ts";
import type { CommandResult, Output } from "./output.ts";
import { closeServer, listen, parsePort, untilStopSignal } from "./serve.ts";

export const CONTROLLER_HELP = `Usage: modelship controller [--kubeconfig FILE] [--namespace NS] [--port 8081] [--no-leader-elect]

Runs the reconcilers against a Kubernetes API server: syncs ModelRepositories, builds with Kaniko
Jobs, rolls out Deployments and writes status. /healthz, /readyz and /metrics on --port;
POST /hooks/git fetches every repository at once.

Settings come from the environment (kustomize/base/config.yaml): MODELSHIP_NAMESPACE,
MODELSHIP_REGISTRY, MODELSHIP_PUSH_SECRET, MODELSHIP_INSECURE_REGISTRY, MODELSHIP_EXECUTOR_IMAGE,
MODELSHIP_IMAGE, MODELSHIP_PYTHON_BASE_IMAGE, MODELSHIP_R_BASE_IMAGE, MODELSHIP_GATEWAY_URL.
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
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(CONTROLLER_HELP);
    return { exitCode: 0 };
  }
  const settings = settingsFromEnv(process.env);
  if (values.namespace) settings.namespace = values.namespace;
  const client = new KubeClient(loadKubeConfig(values.kubeconfig));
  const log = (line: string) => output.out(`${new Date().toISOString()} ${line}\n`);
  const platform = new KubernetesPlatform({
    client,
    settings,
    cacheDir: values["cache-dir"] ?? join(tmpdir(), "modelship-controller"),
    log,
  });

  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  let ready = false;
  const server = createServer(SERVER_OPTIONS, (request, response) => {
    const path = request.url ?? "/";
    if (request.method === "POST" && path === "/hooks/git") {
      platform.syncNow();
      response.writeHead(202).end();
    } else if (path === "/healthz") {
      response.writeHead(200).end("ok");
    } else if (path === "/readyz") {
      response
        .writeHead(ready ? 200 : 503)
        .end(ready ? "ok" : "waiting for the lease or the caches");
    } else if (path === "/metrics") {
      metrics
        .metrics()
        .then((text) => response.writeHead(200, { "content-type": metrics.contentType }).end(text));
    } else {
      response.writeHead(404).end();
    }
  });
  const url = await listen(server, values.host, parsePort(values.port, "--port", 8081));
  output.out(`controller listening on ${url} (namespace ${settings.namespace})\n`);

  let lost = false;
  const elector = values["no-leader-elect"]
    ? undefined
    : new LeaderElector(client, { namespace: settings.namespace });
  const signal = untilStopSignal();
  const leading = elector
    ? elector.lead(() => {
        lost = true;
        log("lost the leader lease; stopping so that another replica takes over");
        process.kill(process.pid, "SIGTERM");
      })
    : Promise.resolve();
  const first = await Promise.race([leading.then(() => "lead" as const), signal]);
  if (first === "lead") {
    if (elector) log(`leading as ${elector.identity}`);
    await platform.start();
    ready = true;
    await signal;
  }
  log("stopping");
  elector?.stop();
  await platform.stop();
  await closeServer(server);
  const exitCode = lost ? 1 : 0;
  exitSoon(exitCode);
  return { exitCode };
}

/**
 * Exits a second after a clean stop even if a socket lingers: @kubernetes/client-node's
 * informer can leave a watch connection open when it is stopped while re-establishing the watch
 * (it stores the request's AbortController only after the request has started).
 */
export function exitSoon(code: number): void {
  setTimeout(() => process.exit(code), 1000).unref();
}
