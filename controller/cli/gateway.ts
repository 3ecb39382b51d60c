// `modelship gateway --config FILE`: the gateway on its own, fed by a file (docs/gateway.md).
// The platforms run the same Gateway in process and feed it themselves.
import { unwatchFile, watchFile } from "node:fs";
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { listen } from "../api/http.ts";
import { parseGatewayConfig } from "../gateway/config.ts";
import { Gateway } from "../gateway/gateway.ts";
import { metricsUrlFlag, openConfiguredMetricsStore, startRetention } from "../metrics/open.ts";
import { KubeClient, loadKubeConfig } from "../platform/kubernetes/client.ts";
import { KubeGatewayFeed } from "../platform/kubernetes/gateway-feed.ts";
import { watchedNamespacesFromEnv } from "../platform/kubernetes/settings.ts";
import type { CommandResult, Output } from "./output.ts";
import { parseDuration, parsePort, parsePositive, untilStopSignal } from "./serve.ts";

export const GATEWAY_HELP = `Usage: modelship gateway --config FILE | --kubernetes [--namespace NS] [--port PORT] [--host HOST]

Answers calls to models and sends each to a free replica, one call per replica at a time:

  POST /model                   {"accessKey": "...", "request": {...}}  (as CDSW)
  POST /models/{name}/predict   the request as the body
  GET  /models, /healthz, /readyz, /metrics

FILE (YAML or JSON, schemas/gateway-config.schema.json) lists the models, their replicas, the
sha256 of their access keys and the model API keys. The gateway reloads it when it changes or on
SIGHUP; a file with errors is reported and the previous configuration keeps serving.

With --kubernetes it follows the cluster instead (in a pod, or with --kubeconfig): models and
deployments from the API server, replicas from EndpointSlices, keys from the Secret
modelship-keys.

Options:
  --config FILE          the models, replicas and keys, from a file
  --port PORT            default 8080; 0 picks a free port (printed on start)
  --host HOST            default 127.0.0.1
  --body-limit-mb N      the largest request body (default 5)
  --response-limit-mb N  the largest answer passed on from a replica: 502
                         model.response_too_large (default 50)
  --metrics-url URL      keep the metrics predictions track in this PostgreSQL server
                         (postgres://…; or MODELSHIP_METRICS_URL), and serve /model-metrics
  --metrics-dir DIR      or in an embedded store (PGlite) in DIR
  --metrics-retention D  predictions' metrics older than this are rolled up hourly (720h)
`;

export async function runGateway(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      kubernetes: { type: "boolean", default: false },
      kubeconfig: { type: "string" },
      namespace: { type: "string" },
      port: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      "body-limit-mb": { type: "string" },
      "response-limit-mb": { type: "string" },
      "metrics-url": { type: "string" },
      "metrics-dir": { type: "string" },
      "metrics-retention": { type: "string", default: "720h" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(GATEWAY_HELP);
    return { exitCode: 0 };
  }
  const file = values.config;
  if (file === undefined && !values.kubernetes) {
    throw new Error("--config FILE or --kubernetes is required (see --help)");
  }
  const port = parsePort(values.port, "--port", 8080);
  const bodyLimitMb = parsePositive(values["body-limit-mb"], "--body-limit-mb", 5);
  const responseLimitMb = parsePositive(values["response-limit-mb"], "--response-limit-mb", 50);

  const log = (line: string) => output.err(`${line}\n`);
  const retentionMs = parseDuration(values["metrics-retention"], "--metrics-retention");
  const metricsUrl = metricsUrlFlag(values["metrics-url"]) ?? process.env.MODELSHIP_METRICS_URL;
  const metricsDir = values["metrics-dir"];
  // Unlike `up`, a gateway told to keep metrics and unable to does not start: its pod restarts
  // until the store is there, and says why.
  const metricsStore =
    metricsUrl || metricsDir
      ? await openConfiguredMetricsStore(
          metricsUrl ? { url: metricsUrl } : { directory: metricsDir },
        )
      : undefined;
  const stopRetention = metricsStore && startRetention(metricsStore, retentionMs, log);
  const gateway = new Gateway({
    bodyLimitBytes: Math.round(bodyLimitMb * 1024 * 1024),
    responseLimitBytes: Math.round(responseLimitMb * 1024 * 1024),
    processMetrics: true,
    log,
    ...(metricsStore ? { metricsStore } : {}),
  });
  const close = async () => {
    await gateway.close();
    stopRetention?.();
    await metricsStore?.close();
  };
  // Listening for the stop signal before saying "listening": a SIGTERM sent the moment the
  // line appears must stop the gateway cleanly, not kill it.
  const stopSignal = untilStopSignal();
  if (file === undefined) {
    const namespace = values.namespace ?? process.env.MODELSHIP_NAMESPACE ?? "modelship";
    const watched = watchedNamespacesFromEnv(process.env);
    const feed = new KubeGatewayFeed(
      new KubeClient(loadKubeConfig(values.kubeconfig)),
      namespace,
      gateway,
      (line) => output.err(`${line}\n`),
      watched ? { watched } : {},
    );
    await feed.start();
    const url = await listen(gateway.server, values.host, port);
    output.out(`gateway listening on ${url} (namespace ${namespace})\n`);
    await stopSignal;
    await feed.stop();
    await close();
    return { exitCode: 0 };
  }
  const load = async () => gateway.apply(parseGatewayConfig(await readFile(file, "utf8"), file));
  // The first load must succeed: a gateway that serves nothing because of a typo is worse than
  // one that does not start.
  await load();
  const url = await listen(gateway.server, values.host, port);
  output.out(`gateway listening on ${url} (${file})\n`);

  const reload = () =>
    load().then(
      () => output.out(`gateway: reloaded ${file}\n`),
      (error: Error) => output.err(`gateway: kept the previous configuration:\n${error.message}\n`),
    );
  watchFile(file, { interval: 200 }, (now, before) => {
    if (now.mtimeMs !== before.mtimeMs || now.size !== before.size) void reload();
  });
  process.on("SIGHUP", reload);

  const signal = await stopSignal;
  output.out(`gateway: ${signal}, stopping\n`);
  unwatchFile(file);
  process.off("SIGHUP", reload);
  await close();
  return { exitCode: 0 };
}
