// Operations that are not changes to git (docs/cli.md): `modelship rollout restart`, which
// replaces every replica of a deployment with no downtime and no commit, as `kubectl rollout
// restart` does, on `modelship up` or on a cluster; and `modelship top`, the admin overview
// of what runs and what it asks for.
import { parseArgs } from "node:util";
import type { ModelDeployment } from "../api/types.generated.ts";
import { ANNOTATION_RESTARTED_AT } from "../core/labels.ts";
import { type TopRow, type TopTotals, topRows, topTotals } from "../core/overview.ts";
import { formatBytes, formatCpu } from "../core/quantity.ts";
import { adminJson, formatTable, STATE_DIR_LINE, STATE_DIR_OPTION } from "./client.ts";
import type { CommandResult, Output } from "./output.ts";

export const ROLLOUT_HELP = `Usage: modelship rollout restart DEPLOYMENT [--state-dir DIR]
       modelship rollout restart DEPLOYMENT --kubernetes [-n NAMESPACE] [--kubeconfig FILE]

Restarts every replica of a ModelDeployment, one at a time and with no failed call: a new
rollout of the build it runs, and no commit. It sets the modelship.dev/restartedAt annotation,
which git does not need to declare (a sync keeps it); committing that annotation restarts too.

Options:
  --kubernetes      restart on the cluster of the kubeconfig, not on a modelship up
  -n, --namespace NS  the deployment's namespace on the cluster (default: the context's, else default)
  --kubeconfig FILE the kubeconfig (default: KUBECONFIG, else ~/.kube/config)
${STATE_DIR_LINE}
`;

export const TOP_HELP = `Usage: modelship top [-o table|json]

The admin overview: every active deployment (not stopped) with its model, the build serving,
its replicas ready, and the CPU and memory it requests (per replica times replicas), then the
totals: active models, replicas, CPU and memory.

Options:
  -o, --output FMT  table or json
${STATE_DIR_LINE}
`;

export async function runRollout(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      kubernetes: { type: "boolean", default: false },
      namespace: { type: "string", short: "n" },
      kubeconfig: { type: "string" },
      ...STATE_DIR_OPTION,
    },
  });
  const [action, name] = positionals;
  if (action !== "restart" || !name) {
    throw new Error("usage: modelship rollout restart DEPLOYMENT (see --help)");
  }
  if (values.kubernetes) {
    const namespace = await restartOnCluster(name, values.namespace, values.kubeconfig);
    output.out(`modeldeployment.modelship.dev/${name} restarted (namespace ${namespace})\n`);
    return { exitCode: 0 };
  }
  await adminJson<{ restartedAt: string }>(
    values["state-dir"],
    `/api/v1/modeldeployments/${encodeURIComponent(name)}/restart`,
    { method: "POST" },
  );
  output.out(`modeldeployment.modelship.dev/${name} restarted\n`);
  return { exitCode: 0 };
}

/** A merge patch of the annotation, as its own field manager: the sync's apply leaves it be. */
async function restartOnCluster(
  name: string,
  namespaceFlag: string | undefined,
  kubeconfig: string | undefined,
): Promise<string> {
  const { KubeClient, customPath, loadKubeConfig } = await import(
    "../platform/kubernetes/client.ts"
  );
  const config = loadKubeConfig(kubeconfig);
  const namespace =
    namespaceFlag ?? config.getContextObject(config.getCurrentContext())?.namespace ?? "default";
  const client = new KubeClient(config);
  await client.request(
    "PATCH",
    `${customPath("ModelDeployment", namespace, name)}?fieldManager=modelship-rollout`,
    { metadata: { annotations: { [ANNOTATION_RESTARTED_AT]: new Date().toISOString() } } },
    "application/merge-patch+json",
  );
  return namespace;
}

export function topTable(rows: TopRow[], totals: TopTotals): string {
  const table = formatTable([
    ["DEPLOYMENT", "MODEL", "BUILD", "READY", "CPU", "MEMORY", "PHASE"],
    ...rows.map((row) => [
      row.deployment,
      row.model,
      row.build === undefined ? "<none>" : String(row.build),
      row.ready,
      formatCpu(row.cpu),
      formatBytes(row.memory),
      row.phase,
    ]),
  ]);
  const summary =
    `${totals.models} active model${totals.models === 1 ? "" : "s"}, ` +
    `${totals.replicas} replica${totals.replicas === 1 ? "" : "s"}, ` +
    `CPU ${formatCpu(totals.cpu)}, memory ${formatBytes(totals.memory)} requested`;
  return `${table}\n\nTotal: ${summary}`;
}

export async function runTop(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: { output: { type: "string", short: "o", default: "table" }, ...STATE_DIR_OPTION },
  });
  const { items } = await adminJson<{ items: ModelDeployment[] }>(
    values["state-dir"],
    "/api/v1/modeldeployments",
  );
  const rows = topRows(items);
  const totals = topTotals(rows);
  if (values.output === "json") {
    output.out(`${JSON.stringify({ items: rows, totals }, null, 2)}\n`);
  } else if (values.output === "table") {
    output.out(`${topTable(rows, totals)}\n`);
  } else {
    throw new Error(`--output must be table or json, not "${values.output}"`);
  }
  return { exitCode: 0 };
}
