// What `modelship describe` says in plain words on top of the object: for a Model, sample
// calls in curl, Python and R, filled in as CDSW's model overview fills them in; for a
// ModelDeployment, what serves and what is failing.
import { conditionOf } from "../api/conditions.ts";
import type { Condition, ModelDeploymentStatus } from "../api/types.generated.ts";

export interface SampleCallInputs {
  gatewayUrl: string;
  /** The model's access key, or undefined to print it masked. */
  accessKey: string | undefined;
  /** The example request: spec.example.input, else {}. */
  input: unknown;
  /** authentication.enabled: the call needs a model API key too. */
  authenticated: boolean;
  /** A model API key to fill in (given with --show-key); else the calls read MODELSHIP_API_KEY. */
  apiKey?: string | undefined;
}

const MASKED_KEY = "********************************";

/** Single quotes for a POSIX shell: 'it'\''s'. */
function shellQuoted(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** A string literal for Python and for R: JSON's escapes are valid in both. */
function literal(text: string): string {
  return JSON.stringify(text);
}

/** The sample calls, one snippet per language, and what to know before running them. */
export interface SampleCallSnippets {
  notes: string[];
  curl: string;
  python: string;
  r: string;
}

export function sampleCallSnippets(inputs: SampleCallInputs): SampleCallSnippets {
  const url = `${inputs.gatewayUrl}/model`;
  const key = inputs.accessKey ?? MASKED_KEY;
  const body = JSON.stringify({ accessKey: key, request: inputs.input });
  const apiKey = inputs.apiKey;
  // The model API key itself when given, else the variable the caller exports.
  const bearer = apiKey
    ? {
        curl: ` -H ${shellQuoted(`Authorization: Bearer ${apiKey}`)}`,
        python: literal(`Bearer ${apiKey}`),
        r: literal(`Bearer ${apiKey}`),
      }
    : {
        curl: ' -H "Authorization: Bearer $MODELSHIP_API_KEY"',
        python: "f\"Bearer {os.environ['MODELSHIP_API_KEY']}\"",
        r: 'paste("Bearer", Sys.getenv("MODELSHIP_API_KEY"))',
      };
  const authenticated = inputs.authenticated;
  const notes: string[] = [];
  if (authenticated && !apiKey) {
    notes.push(
      "authentication is on: create an API key once (modelship apikeys create --user YOU)",
      "and export MODELSHIP_API_KEY=<it> before calling",
    );
  }
  if (inputs.accessKey === undefined) {
    notes.push("the access key is masked: describe --show-key prints it");
  }
  return {
    notes,
    curl: `curl -s -H 'Content-Type: application/json'${authenticated ? bearer.curl : ""} -d ${shellQuoted(body)} ${url}`,
    python: [
      "import json, os, requests",
      `answer = requests.post(${literal(url)}, data=${literal(body)},`,
      `    headers={"Content-Type": "application/json"${authenticated ? `, "Authorization": ${bearer.python}` : ""}})`,
      "print(answer.json())",
    ].join("\n"),
    r: [
      "library(httr)",
      `answer <- POST(${literal(url)}, body = ${literal(body)},`,
      `    add_headers("Content-Type" = "application/json"${authenticated ? `, "Authorization" = ${bearer.r}` : ""}))`,
      "print(content(answer))",
    ].join("\n"),
  };
}

/** The lines of the sample calls, each language under its own heading (describe's). */
export function sampleCalls(inputs: SampleCallInputs): string[] {
  const snippets = sampleCallSnippets(inputs);
  const indented = (text: string) => text.split("\n").map((line) => `    ${line}`);
  return [
    "Sample calls:",
    ...snippets.notes.map((note) => `  # ${note}`),
    "  curl:",
    ...indented(snippets.curl),
    "  Python:",
    ...indented(snippets.python),
    "  R:",
    ...indented(snippets.r),
  ];
}

/** An abnormal-true condition (kstatus) that is set. */
function trueCondition(status: ModelDeploymentStatus, type: string): Condition | undefined {
  const found = conditionOf(status.conditions, type);
  return found?.status === "True" ? found : undefined;
}

/** "Serving:" and, when something is wrong or under way, what: the first lines of describe. */
export function deploymentSummary(
  status: ModelDeploymentStatus | undefined,
  wantedReplicas: number,
): string[] {
  const serving =
    status?.servingBuild === undefined
      ? "nothing (no replica is ready)"
      : `build ${status.servingBuild} on ${status.readyReplicas ?? 0}/${wantedReplicas} replicas`;
  const lines = [`Serving:      ${serving}`];
  const stalled = status && trueCondition(status, "Stalled");
  const reconciling = status && trueCondition(status, "Reconciling");
  if (stalled) lines.push(`Failing:      ${stalled.reason}: ${firstLine(stalled.message)}`);
  else if (reconciling) {
    lines.push(`In progress:  ${reconciling.reason}: ${firstLine(reconciling.message)}`);
  }
  return lines;
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? "";
}
