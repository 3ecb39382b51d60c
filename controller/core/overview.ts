// The admin overview (CDSW's "all active models"): every deployment that is not stopped, what it
// runs and what it requests, and the totals. `modelship top` prints it and the dashboard's Admin
// page shows it, from the same objects.
import type { ModelDeployment } from "../api/types.generated.ts";
import { parseQuantity } from "./quantity.ts";

export interface TopRow {
  namespace: string;
  deployment: string;
  model: string;
  build: number | undefined;
  ready: string;
  replicas: number;
  /** Cores requested: per replica times spec.replicas. */
  cpu: number;
  /** Bytes requested: per replica times spec.replicas. */
  memory: number;
  phase: string;
}

/** The overview's rows: deployments not stopped, with what they request. */
export function topRows(deployments: ModelDeployment[]): TopRow[] {
  return deployments
    .filter((deployment) => !deployment.spec.stopped && deployment.status?.phase !== "Stopped")
    .map((deployment) => {
      const replicas = deployment.spec.replicas ?? 1;
      const resources = deployment.spec.resources ?? {};
      return {
        namespace: deployment.metadata.namespace ?? "default",
        deployment: deployment.metadata.name,
        model: deployment.spec.model,
        build: deployment.status?.servingBuild,
        ready: deployment.status?.ready ?? `0/${replicas}`,
        replicas,
        // The schema's defaults, for an object stored without them.
        cpu: parseQuantity(resources.cpu ?? "1") * replicas,
        memory: parseQuantity(resources.memory ?? "2Gi") * replicas,
        phase: deployment.status?.phase ?? "Pending",
      };
    });
}

export interface TopTotals {
  models: number;
  deployments: number;
  replicas: number;
  cpu: number;
  memory: number;
}

export function topTotals(rows: TopRow[]): TopTotals {
  return {
    models: new Set(rows.map((row) => `${row.namespace}/${row.model}`)).size,
    deployments: rows.length,
    replicas: rows.reduce((sum, row) => sum + row.replicas, 0),
    cpu: rows.reduce((sum, row) => sum + row.cpu, 0),
    memory: rows.reduce((sum, row) => sum + row.memory, 0),
  };
}
