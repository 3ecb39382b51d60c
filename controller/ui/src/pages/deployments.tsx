// A model's deployments: what serves now, the rollout history (id, build, commit, author,
// deployed and stopped), a restart (an operation, with confirmation), and changes shown as the
// YAML to commit — git stays the source of truth.
import { useState } from "preact/hooks";
import { deploymentSummary } from "../../../core/samples.ts";
import { api } from "../api.ts";
import { Badge, Code, ConfirmButton, Empty, ErrorNote, SourceLink, Table } from "../components.tsx";
import { manifestOf, shortCommit, toYaml, when } from "../format.ts";
import type { ModelDeployment } from "../types.ts";

export function DeploymentsTab({ deployments }: { deployments: ModelDeployment[] }) {
  if (deployments.length === 0) {
    return <Empty>No ModelDeployment runs this model: commit one to serve it.</Empty>;
  }
  return (
    <>
      {deployments.map((deployment) => (
        <Deployment key={deployment.metadata.name} deployment={deployment} />
      ))}
    </>
  );
}

function Deployment({ deployment }: { deployment: ModelDeployment }) {
  const name = deployment.metadata.name;
  const history = [...(deployment.status?.history ?? [])].sort(
    (a, b) => b.deploymentId - a.deploymentId,
  );
  const summary = deploymentSummary(deployment.status, deployment.spec.replicas ?? 1);
  return (
    <section class="card" aria-label={`Deployment ${name}`}>
      <div class="title-row">
        <h2>{name}</h2>
        <Badge phase={deployment.status?.phase} />
      </div>
      <p class="meta">
        declared at <SourceLink object={deployment} />
      </p>
      <pre class="summary">{summary.join("\n")}</pre>
      <h3>History</h3>
      <Table
        label={`Rollouts of ${name}`}
        head={["Deployment", "Build", "Commit", "Author", "Deployed", "Ready", "Stopped"]}
      >
        {history.map((record) => (
          <tr key={record.deploymentId}>
            <th scope="row">{record.deploymentId}</th>
            <td>{record.build}</td>
            <td>
              <code>{shortCommit(record.commit)}</code>
            </td>
            <td>{record.deployedBy?.replace(/ <.*>$/, "") ?? "—"}</td>
            <td>{when(record.deployedAt)}</td>
            <td>{when(record.completedAt)}</td>
            <td>{record.stoppedAt ? when(record.stoppedAt) : <Badge phase="Serving" />}</td>
          </tr>
        ))}
      </Table>
      <div class="actions">
        <ConfirmButton
          label="Restart"
          question={`Restart every replica of ${name}, one at a time?`}
          action={async () => {
            await api(`/api/v1/modeldeployments/${encodeURIComponent(name)}/restart`, {
              method: "POST",
            });
            return "restarting: a new rollout of the same build";
          }}
        />
      </div>
      <ChangeAsYaml deployment={deployment} />
    </section>
  );
}

/**
 * The ModelDeployment as it would be declared with other replicas or stopped, its other fields
 * as they are now (the schema's defaults filled in): what to commit.
 */
export function declaredYaml(
  deployment: ModelDeployment,
  change: { replicas: number; stopped: boolean },
): string {
  const manifest = {
    apiVersion: deployment.apiVersion,
    kind: deployment.kind,
    metadata: { name: deployment.metadata.name },
    spec: { ...deployment.spec, replicas: change.replicas, stopped: change.stopped },
  };
  return toYaml(manifest).trimStart();
}

function ChangeAsYaml({ deployment }: { deployment: ModelDeployment }) {
  const [replicasText, setReplicasText] = useState(String(deployment.spec.replicas ?? 1));
  const replicas = Number(replicasText);
  // The upper bound is the installation's: `modelship validate` checks it before the commit.
  const valid = /^[1-9][0-9]{0,3}$/.test(replicasText);
  const [stopped, setStopped] = useState(deployment.spec.stopped ?? false);
  const manifest = manifestOf(deployment);
  const id = deployment.metadata.name;
  return (
    <details class="change">
      <summary>Change it (in git)</summary>
      <div class="change-form">
        <label for={`replicas-${id}`}>Replicas</label>
        <input
          id={`replicas-${id}`}
          type="number"
          min={1}
          value={replicasText}
          aria-invalid={!valid}
          onInput={(event) => setReplicasText((event.target as HTMLInputElement).value)}
        />
        <label>
          <input
            type="checkbox"
            checked={stopped}
            onChange={(event) => setStopped((event.target as HTMLInputElement).checked)}
          />{" "}
          Stopped
        </label>
      </div>
      <p class="hint">
        Commit this to {manifest ? `${manifest.path} (line ${manifest.line})` : "its manifest"} on
        the branch modelship follows; the rollout starts when the commit is synced.
      </p>
      {valid ? (
        <Code label="YAML to commit" text={declaredYaml(deployment, { replicas, stopped })} />
      ) : (
        <ErrorNote
          message={`Replicas (spec.replicas) must be a whole number of at least 1, not "${replicasText}"`}
        />
      )}
    </details>
  );
}
