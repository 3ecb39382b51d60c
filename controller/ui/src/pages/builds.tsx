// A model's builds: number, commit, phase and times, and the chosen build's log — followed
// while it builds.
import { useState } from "preact/hooks";
import { Badge, Empty, ErrorNote, Table } from "../components.tsx";
import { duration, readyCondition, shortCommit, when } from "../format.ts";
import { usePoll, useTicker, useWatch } from "../hooks.ts";
import type { ModelBuild } from "../types.ts";

const FINISHED = new Set(["Succeeded", "Failed"]);

export function BuildsTab({ model }: { model: string }) {
  const builds = useWatch<ModelBuild>("modelbuilds");
  const now = useTicker(1000);
  const own = builds.items
    .filter((build) => build.spec.model === model)
    .sort((a, b) => b.spec.number - a.spec.number);
  const [chosen, setChosen] = useState<string | undefined>();
  if (builds.loaded && own.length === 0) return <Empty>No builds yet.</Empty>;
  const shown = own.find((build) => build.metadata.name === chosen) ?? own[0];
  return (
    <>
      <Table label="Builds" head={["Build", "Commit", "Phase", "Started", "Took", ""]}>
        {own.map((build) => (
          <tr key={build.metadata.name} aria-selected={build === shown}>
            <th scope="row">{build.spec.number}</th>
            <td>
              <code>{shortCommit(build.spec.commit)}</code>
            </td>
            <td>
              <Badge phase={build.status?.phase ?? "Pending"} />
            </td>
            <td>{when(build.status?.startedAt)}</td>
            <td>{duration(build.status?.startedAt, build.status?.completedAt, now)}</td>
            <td>
              <button
                type="button"
                class="link"
                aria-pressed={build === shown}
                onClick={() => setChosen(build.metadata.name)}
              >
                Log
              </button>
            </td>
          </tr>
        ))}
      </Table>
      {shown && <BuildLog build={shown} />}
    </>
  );
}

function BuildLog({ build }: { build: ModelBuild }) {
  const phase = build.status?.phase ?? "Pending";
  const running = !FINISHED.has(phase);
  // A finished build's log does not change: read it once (a long interval), else every second.
  const log = usePoll<{ logs: string }>(
    `/api/v1/modelbuilds/${encodeURIComponent(build.metadata.name)}/logs`,
    running ? 1000 : 3_600_000,
  );
  const condition = readyCondition(build);
  return (
    <div class="card">
      <h2>
        Build {build.spec.number} log {running && <span class="live">live</span>}
      </h2>
      {phase === "Failed" && condition && <ErrorNote message={condition.message} />}
      <ErrorNote message={log.error} />
      <pre class="log">
        {log.data?.logs ||
          (running
            ? "waiting for output…"
            : "(no log: a build made before this modelship up started keeps none)")}
      </pre>
    </div>
  );
}
