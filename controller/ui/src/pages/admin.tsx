// Admin: CDSW's overview of every active model — replicas and the CPU and memory they request,
// with the totals (what `modelship top` prints) — and the model API keys.
import { useState } from "preact/hooks";
import { topRows, topTotals } from "../../../core/overview.ts";
import { formatBytes, formatCpu } from "../../../core/quantity.ts";
import { api } from "../api.ts";
import { Badge, Code, ConfirmButton, Empty, ErrorNote, Table } from "../components.tsx";
import { when } from "../format.ts";
import { usePoll, useWatch } from "../hooks.ts";
import type { ApiKeyRecord, ModelDeployment } from "../types.ts";

export function AdminPage() {
  const deployments = useWatch<ModelDeployment>("modeldeployments");
  const rows = topRows(deployments.items);
  const totals = topTotals(rows);
  return (
    <section aria-labelledby="admin-title">
      <h1 id="admin-title">Admin</h1>
      <section class="totals" aria-label="Totals">
        <Total label="Active models" value={String(totals.models)} id="total-models" />
        <Total label="Replicas" value={String(totals.replicas)} id="total-replicas" />
        <Total label="CPU requested" value={formatCpu(totals.cpu)} id="total-cpu" />
        <Total label="Memory requested" value={formatBytes(totals.memory)} id="total-memory" />
      </section>
      {deployments.loaded && rows.length === 0 ? (
        <Empty>No active deployment.</Empty>
      ) : (
        <Table
          label="Active deployments"
          head={["Deployment", "Model", "Build", "Ready", "CPU", "Memory", "Phase"]}
        >
          {rows.map((row) => (
            <tr key={`${row.namespace}/${row.deployment}`}>
              <th scope="row">{row.deployment}</th>
              <td>
                <a href={`#/models/${encodeURIComponent(row.model)}`}>{row.model}</a>
              </td>
              <td>{row.build ?? "—"}</td>
              <td>{row.ready}</td>
              <td class="number">{formatCpu(row.cpu)}</td>
              <td class="number">{formatBytes(row.memory)}</td>
              <td>
                <Badge phase={row.phase} />
              </td>
            </tr>
          ))}
        </Table>
      )}
      <ApiKeys />
    </section>
  );
}

function Total({ label, value, id }: { label: string; value: string; id: string }) {
  return (
    <div class="total">
      <span class="total-value" data-testid={id}>
        {value}
      </span>
      <span class="total-label">{label}</span>
    </div>
  );
}

/** Model API keys: listed (never the keys), created (shown once), revoked — with confirmation. */
function ApiKeys() {
  const [version, setVersion] = useState(0);
  const keys = usePoll<{ items: ApiKeyRecord[] }>(`/api/v1/apikeys?v=${version}`, 30_000);
  const [user, setUser] = useState("");
  const [expires, setExpires] = useState("30d");
  const [created, setCreated] = useState<{ key: string; user: string } | undefined>();
  // Asked before it is done, as the other operations are; the server says what is wrong.
  const create = async () => {
    const answer = await api<{ key: string; record: { user: string } }>("/api/v1/apikeys", {
      method: "POST",
      body: JSON.stringify({ user, expires }),
    });
    setCreated({ key: answer.key, user: answer.record.user });
    setUser("");
    setVersion((old) => old + 1);
    return "created";
  };
  return (
    <div class="card">
      <h2>Model API keys</h2>
      <ErrorNote message={keys.error} />
      {keys.data && keys.data.items.length === 0 ? (
        <Empty>No API keys.</Empty>
      ) : (
        <Table label="Model API keys" head={["Id", "User", "Created", "Expires", ""]}>
          {(keys.data?.items ?? []).map((key) => (
            <tr key={key.id}>
              <td>
                <code>{key.id}</code>
              </td>
              <td>{key.user}</td>
              <td>{when(key.createdAt)}</td>
              <td>{when(key.expiresAt)}</td>
              <td>
                <ConfirmButton
                  label="Revoke"
                  question={`Revoke ${key.user}'s key ${key.id}?`}
                  action={async () => {
                    await api(`/api/v1/apikeys/${encodeURIComponent(key.id)}`, {
                      method: "DELETE",
                    });
                    setVersion((old) => old + 1);
                    return "revoked";
                  }}
                />
              </td>
            </tr>
          ))}
        </Table>
      )}
      <form class="inline-form" onSubmit={(event) => event.preventDefault()}>
        <label for="apikey-user">User</label>
        <input
          id="apikey-user"
          value={user}
          required
          onInput={(event) => setUser((event.target as HTMLInputElement).value)}
        />
        <label for="apikey-expires">Expires in</label>
        <input
          id="apikey-expires"
          value={expires}
          size={6}
          onInput={(event) => setExpires((event.target as HTMLInputElement).value)}
        />
        <ConfirmButton
          label="Create API key"
          question={`Create an API key for ${user || "(no user)"}, valid ${expires}?`}
          action={create}
        />
      </form>
      {created && (
        <div class="created" role="status">
          <p>
            The key of <strong>{created.user}</strong>, shown this once: copy it now.
          </p>
          <Code label="New API key" text={created.key} />
          <button type="button" onClick={() => setCreated(undefined)}>
            Done
          </button>
        </div>
      )}
    </div>
  );
}
