// Models: every model with its latest build, its deployment's phase and replicas, and who last
// deployed it and when (CDSW's Models list).
import { Badge, Empty, Table } from "../components.tsx";
import { age } from "../format.ts";
import { useTicker, useWatch } from "../hooks.ts";
import type { Model, ModelDeployment } from "../types.ts";

/** The deployments of each model, by model name. */
export function deploymentsByModel(deployments: ModelDeployment[]): Map<string, ModelDeployment[]> {
  const byModel = new Map<string, ModelDeployment[]>();
  for (const deployment of deployments) {
    const list = byModel.get(deployment.spec.model) ?? [];
    list.push(deployment);
    byModel.set(deployment.spec.model, list);
  }
  return byModel;
}

export function ModelsPage() {
  const models = useWatch<Model>("models");
  const deployments = useWatch<ModelDeployment>("modeldeployments");
  const now = useTicker(10_000);
  const byModel = deploymentsByModel(deployments.items);
  return (
    <section aria-labelledby="models-title">
      <h1 id="models-title">Models</h1>
      {models.loaded && models.items.length === 0 ? (
        <Empty>
          No models yet: commit a Model and a ModelDeployment to the branch modelship follows.
        </Empty>
      ) : (
        <Table
          label="Models"
          head={["Name", "Latest build", "Phase", "Replicas ready", "Last deployed by", "When"]}
        >
          {models.items.map((model) => {
            const own = byModel.get(model.metadata.name) ?? [];
            const history = own.flatMap((deployment) => deployment.status?.history ?? []);
            const last = history.sort((a, b) => b.deployedAt.localeCompare(a.deployedAt))[0];
            const ready = own.map((deployment) => deployment.status?.ready ?? "0/0").join(", ");
            return (
              <tr key={model.metadata.name}>
                <th scope="row">
                  <a href={`#/models/${encodeURIComponent(model.metadata.name)}`}>
                    {model.metadata.name}
                  </a>
                </th>
                <td>{model.status?.latestBuild ?? "—"}</td>
                <td>
                  {own.length === 0 ? (
                    <Badge phase="Not deployed" />
                  ) : (
                    own.map((deployment) => (
                      // No status yet: nothing has reported on it, so it is still to come.
                      <Badge
                        key={deployment.metadata.name}
                        phase={deployment.status?.phase ?? "Pending"}
                      />
                    ))
                  )}
                </td>
                <td>{ready || "—"}</td>
                <td>{last?.deployedBy?.replace(/ <.*>$/, "") ?? "—"}</td>
                <td>{last ? `${age(last.deployedAt, now)} ago` : "—"}</td>
              </tr>
            );
          })}
        </Table>
      )}
    </section>
  );
}
