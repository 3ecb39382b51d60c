// A model's pages, as CDSW's model page has them: Overview (description, example, the Test
// widget, sample calls), Deployments, Builds and Monitoring.
import { useState } from "preact/hooks";
import { sampleCallSnippets } from "../../../core/samples.ts";
import { api } from "../api.ts";
import { Badge, Code, ConfirmButton, Empty, ErrorNote, SourceLink, Tabs } from "../components.tsx";
import { readyCondition } from "../format.ts";
import { useWatch } from "../hooks.ts";
import type { Model, ModelDeployment } from "../types.ts";
import { BuildsTab } from "./builds.tsx";
import { DeploymentsTab } from "./deployments.tsx";
import { MonitoringTab } from "./monitoring.tsx";

export function ModelPage({ name, tab }: { name: string; tab: string }) {
  const models = useWatch<Model>("models");
  const deployments = useWatch<ModelDeployment>("modeldeployments");
  const model = models.items.find((item) => item.metadata.name === name);
  if (!models.loaded) return <Empty>Loading…</Empty>;
  if (!model) return <Empty>No model named “{name}”: it is not (or no longer) in git.</Empty>;
  const own = deployments.items.filter((deployment) => deployment.spec.model === name);
  const base = `#/models/${encodeURIComponent(name)}`;
  const tabs: [string, string][] = [
    ["Overview", base],
    ["Deployments", `${base}/deployments`],
    ["Builds", `${base}/builds`],
    ["Monitoring", `${base}/monitoring`],
  ];
  const current = { deployments: "Deployments", builds: "Builds", monitoring: "Monitoring" }[
    tab as "deployments" | "builds" | "monitoring"
  ];
  const ready = readyCondition(model);
  return (
    <section aria-labelledby="model-title">
      <div class="title-row">
        <h1 id="model-title">{name}</h1>
        <Badge phase={ready?.status === "True" ? "Ready" : (ready?.reason ?? "Pending")} />
      </div>
      <p class="meta">
        {model.spec.runtime} · {model.spec.file}:{model.spec.function} · declared at{" "}
        <SourceLink object={model} />
      </p>
      <Tabs tabs={tabs} current={current ?? "Overview"} />
      {tab === "deployments" ? (
        <DeploymentsTab deployments={own} />
      ) : tab === "builds" ? (
        <BuildsTab model={name} />
      ) : tab === "monitoring" ? (
        <MonitoringTab model={model} deployments={own} />
      ) : (
        <Overview model={model} deployments={own} />
      )}
    </section>
  );
}

/** The gateway's URL, from a deployment's status.url (…/models/NAME/predict). */
function gatewayUrlOf(deployments: ModelDeployment[]): string | undefined {
  const url = deployments.find((deployment) => deployment.status?.url)?.status?.url;
  return url?.replace(/\/models\/[^/]+\/predict$/, "");
}

function Overview({ model, deployments }: { model: Model; deployments: ModelDeployment[] }) {
  const example = model.spec.example;
  return (
    <>
      {model.spec.description && <p class="description">{model.spec.description}</p>}
      {ready(model)}
      <div class="columns">
        <div>
          <h2>Example input</h2>
          <Code label="Example input" text={JSON.stringify(example?.input ?? {}, null, 2)} />
        </div>
        <div>
          <h2>Example output</h2>
          <Code
            label="Example output"
            text={example && "output" in example ? JSON.stringify(example.output, null, 2) : "—"}
          />
        </div>
      </div>
      <TestWidget model={model} />
      <SampleCalls model={model} gatewayUrl={gatewayUrlOf(deployments)} />
    </>
  );
}

function ready(model: Model) {
  const condition = readyCondition(model);
  if (!condition || condition.status === "True") return null;
  return <ErrorNote message={`${condition.reason}: ${condition.message}`} />;
}

interface TestAnswer {
  status: number;
  latencyMs: number;
  body: string;
  truncated: boolean;
}

/** CDSW's Test: edit the example input, send it through the gateway, see what came back. */
function TestWidget({ model }: { model: Model }) {
  const name = model.metadata.name;
  const [input, setInput] = useState(JSON.stringify(model.spec.example?.input ?? {}, null, 2));
  const [apiKey, setApiKey] = useState("");
  const [answer, setAnswer] = useState<TestAnswer | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [working, setWorking] = useState(false);
  const authenticated = model.spec.authentication?.enabled !== false;
  const send = async (event: Event) => {
    event.preventDefault();
    setWorking(true);
    setError(undefined);
    try {
      setAnswer(
        await api<TestAnswer>(`/api/v1/models/${encodeURIComponent(name)}/test`, {
          method: "POST",
          body: input,
          headers: apiKey ? { "x-modelship-api-key": apiKey } : {},
        }),
      );
    } catch (failure) {
      setAnswer(undefined);
      setError((failure as Error).message);
    }
    setWorking(false);
  };
  let parsed: { success?: boolean; response?: unknown; replicaId?: string; error?: unknown } = {};
  try {
    parsed = answer ? JSON.parse(answer.body) : {};
  } catch {
    // Not JSON (a proxy's page, a cut answer): shown as text below.
  }
  return (
    <form class="card" onSubmit={send} aria-labelledby="test-title">
      <h2 id="test-title">Test</h2>
      <label for="test-input">Input</label>
      <textarea
        id="test-input"
        rows={4}
        spellcheck={false}
        value={input}
        onInput={(event) => setInput((event.target as HTMLTextAreaElement).value)}
      />
      {authenticated && (
        <>
          <label for="test-api-key">
            Model API key (authentication is on; kept in this page only)
          </label>
          <input
            id="test-api-key"
            type="password"
            autocomplete="off"
            value={apiKey}
            onInput={(event) => setApiKey((event.target as HTMLInputElement).value)}
          />
        </>
      )}
      <button type="submit" disabled={working}>
        {working ? "Testing…" : "Test"}
      </button>
      <ErrorNote message={error} />
      {answer && (
        <div class="test-answer" aria-live="polite">
          <dl class="facts">
            <dt>Status</dt>
            <dd>
              <span
                class={`badge ${answer.status === 200 ? "good" : "bad"}`}
                data-testid="test-status"
              >
                {answer.status}
              </span>
            </dd>
            <dt>Replica</dt>
            <dd data-testid="test-replica">{parsed.replicaId ?? "—"}</dd>
            <dt>Latency</dt>
            <dd>{answer.latencyMs.toFixed(1)} ms</dd>
          </dl>
          <h3>Response</h3>
          <Code
            label="Response"
            text={
              "response" in parsed
                ? JSON.stringify(parsed.response, null, 2)
                : answer.body + (answer.truncated ? "\n… (cut at 1 MB)" : "")
            }
          />
        </div>
      )}
    </form>
  );
}

/** Sample calls in curl, Python and R, with the access key masked until asked for. */
function SampleCalls({ model, gatewayUrl }: { model: Model; gatewayUrl: string | undefined }) {
  const name = model.metadata.name;
  const [accessKey, setAccessKey] = useState<string | undefined>();
  const [language, setLanguage] = useState<"curl" | "python" | "r">("curl");
  const [error, setError] = useState<string | undefined>();
  const keyPath = `/api/v1/keys/${encodeURIComponent(name)}`;
  const snippets = sampleCallSnippets({
    gatewayUrl: gatewayUrl ?? "http://127.0.0.1:8080",
    accessKey,
    input: model.spec.example?.input ?? {},
    authenticated: model.spec.authentication?.enabled !== false,
  });
  return (
    <section class="card" aria-labelledby="samples-title">
      <h2 id="samples-title">Sample code</h2>
      <div class="segmented">
        {(
          [
            ["curl", "curl"],
            ["python", "Python"],
            ["r", "R"],
          ] as const
        ).map(([key, label]) => (
          <button
            key={key}
            type="button"
            aria-pressed={language === key}
            onClick={() => setLanguage(key)}
          >
            {label}
          </button>
        ))}
      </div>
      {snippets.notes
        .filter((note) => !note.startsWith("the access key is masked"))
        .map((note) => (
          <p key={note} class="hint">
            {note}
          </p>
        ))}
      <Code label={`Sample call in ${language}`} text={snippets[language]} />
      <div class="actions">
        {accessKey === undefined ? (
          <button
            type="button"
            onClick={async () => {
              try {
                setAccessKey((await api<{ accessKey: string }>(keyPath)).accessKey);
              } catch (failure) {
                setError((failure as Error).message);
              }
            }}
          >
            Show access key
          </button>
        ) : (
          <button type="button" onClick={() => setAccessKey(undefined)}>
            Hide access key
          </button>
        )}
        <ConfirmButton
          label="Rotate access key"
          question="Rotate the access key? Callers using the old one are refused at once."
          action={async () => {
            const rotated = await api<{ accessKey: string }>(`${keyPath}/rotate`, {
              method: "POST",
            });
            // Shown only if it was shown before.
            if (accessKey !== undefined) setAccessKey(rotated.accessKey);
            return "rotated: the old key no longer works";
          }}
        />
      </div>
      <ErrorNote message={error} />
    </section>
  );
}
