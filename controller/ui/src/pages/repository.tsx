// The repository modelship follows: what it last synced, the last error (with its file and
// line), whether it is suspended, and what it applied.
import { api } from "../api.ts";
import { Badge, ConfirmButton, Empty, ErrorNote, Table } from "../components.tsx";
import { age, readyCondition, shortCommit, when } from "../format.ts";
import { useTicker, useWatch } from "../hooks.ts";
import type { ModelRepository } from "../types.ts";

export function RepositoryPage() {
  const repositories = useWatch<ModelRepository>("modelrepositories");
  const now = useTicker(5000);
  if (repositories.loaded && repositories.items.length === 0) {
    return <Empty>No ModelRepository yet.</Empty>;
  }
  return (
    <section aria-labelledby="repository-title">
      <h1 id="repository-title">Repository</h1>
      {repositories.items.map((repository) => {
        const { spec, status } = repository;
        const ready = readyCondition(repository);
        const failing = ready?.status === "False";
        return (
          <div class="card" key={repository.metadata.name}>
            <div class="title-row">
              <h2>{repository.metadata.name}</h2>
              <Badge
                phase={
                  spec.suspend
                    ? "Suspended"
                    : ready?.status === "True"
                      ? "Ready"
                      : (ready?.reason ?? "Pending")
                }
              />
            </div>
            <dl class="facts">
              <dt>URL</dt>
              <dd>
                <code>{spec.url}</code>
              </dd>
              <dt>Branch</dt>
              <dd>{spec.branch ?? "main"}</dd>
              <dt>Path</dt>
              <dd>{spec.path ?? "."}</dd>
              <dt>Last synced commit</dt>
              <dd>
                <code data-testid="synced-commit">{shortCommit(status?.lastSyncedCommit)}</code>
              </dd>
              <dt>Last attempted commit</dt>
              <dd>
                <code data-testid="attempted-commit">
                  {shortCommit(status?.lastAttemptedCommit)}
                </code>
              </dd>
              <dt>Last sync</dt>
              <dd>
                {when(status?.lastSyncTime)} ({age(status?.lastSyncTime, now)} ago)
              </dd>
              <dt>Suspended</dt>
              <dd>{spec.suspend ? "yes: spec.suspend is true, nothing is synced" : "no"}</dd>
            </dl>
            {failing && ready && (
              <>
                <h3>Last error</h3>
                <ErrorNote message={`${ready.reason}: ${ready.message}`} />
              </>
            )}
            <div class="actions">
              <ConfirmButton
                label="Sync now"
                question="Fetch the branch now?"
                action={async () => {
                  await api("/api/v1/sync", { method: "POST" });
                  return "fetching";
                }}
              />
            </div>
            <h3>Applied</h3>
            <Table label="Objects applied" head={["Kind", "Name"]}>
              {(status?.inventory ?? []).map((entry) => (
                <tr key={`${entry.kind}/${entry.name}`}>
                  <td>{entry.kind}</td>
                  <td>
                    {entry.kind === "Model" ? (
                      <a href={`#/models/${encodeURIComponent(entry.name)}`}>{entry.name}</a>
                    ) : (
                      entry.name
                    )}
                  </td>
                </tr>
              ))}
            </Table>
          </div>
        );
      })}
    </section>
  );
}
