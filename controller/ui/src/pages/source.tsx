// A manifest as it was at a commit, its object's line marked: where "declared at" links lead.
// To change the object, change this file in git.
import { useEffect, useRef } from "preact/hooks";
import { Empty, ErrorNote } from "../components.tsx";
import { shortCommit } from "../format.ts";
import { routeQuery, usePoll } from "../hooks.ts";

export function SourcePage() {
  const query = routeQuery();
  const commit = query.get("commit") ?? "";
  const path = query.get("path") ?? "";
  const line = Number(query.get("line") ?? "0");
  const file = usePoll<{ text: string }>(
    commit && path
      ? `/api/v1/modelrepositories/local/files?${new URLSearchParams({ commit, path })}`
      : undefined,
    3_600_000,
  );
  const marked = useRef<HTMLLIElement>(null);
  useEffect(() => marked.current?.scrollIntoView({ block: "center" }), [file.data]);
  if (!commit || !path) return <Empty>No file named.</Empty>;
  return (
    <section aria-labelledby="source-title">
      <h1 id="source-title">
        {path} <span class="muted">@ {shortCommit(commit)}</span>
      </h1>
      <p class="hint">
        Git is the source of truth: to change this object, edit this file and commit it to the
        branch modelship follows.
      </p>
      <ErrorNote message={file.error} />
      {file.data && (
        <ol class="source-lines" aria-label={path}>
          {file.data.text.split("\n").map((text, index) => (
            <li
              key={index}
              ref={index + 1 === line ? marked : undefined}
              class={index + 1 === line ? "marked" : undefined}
            >
              {text || " "}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
