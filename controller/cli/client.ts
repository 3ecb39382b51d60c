// The commands that talk to a running `modelship up` through its admin API: get, describe,
// logs, call, keys and apikeys (docs/cli.md). Tables follow the CRDs' printer columns, so
// `modelship get` and `kubectl get` show the same thing.
import { parseArgs } from "node:util";
import { KIND_NAMES, type Kind, loadKindSchema } from "../api/schemas.ts";
import type {
  Condition,
  DeploymentRecord,
  Model,
  ModelDeploymentStatus,
} from "../api/types.generated.ts";
import { formatAge } from "../core/age.ts";
import type { EventRecord, ReplicaInfo, Resource } from "../core/ports.ts";
import { deploymentSummary, sampleCalls } from "../core/samples.ts";
import { buildCrn, deploymentCrn, modelCrn } from "../metrics/crn.ts";
import type { CommandResult, Output } from "./output.ts";
import { findAdmin } from "./state-dir.ts";

interface PrinterColumn {
  name: string;
  jsonPath: string;
  type: string;
}

export const STATE_DIR_OPTION = { "state-dir": { type: "string" } } as const;

/** Where every client command finds `modelship up` (docs/cli.md). */
export const STATE_DIR_LINE =
  "  --state-dir DIR   the state directory of the `modelship up` to talk to (also MODELSHIP_STATE_DIR;\n" +
  "                    default: the one following this directory's repository, or the only one running)";

export const GET_HELP = `Usage: modelship get KIND [NAME] [-o table|json] [-w]

Lists the objects of a kind, or shows one: KIND is modelrepositories (mrepo), models (mdl),
modelbuilds (mb) or modeldeployments (md), singular or plural.

Options:
  -o, --output FMT  table (the printer columns) or json
  -w, --watch       then a line for each change as it happens (with -o json, the watch's
                    events: {"type": "ADDED" | "MODIFIED" | "DELETED", "object": {...}}),
                    until interrupted
${STATE_DIR_LINE}
`;

export const DESCRIBE_HELP = `Usage: modelship describe KIND NAME [--show-key [--api-key KEY]]

Shows one object: its spec, conditions, history, replicas with their counters, and its events.
A Model's shows sample calls (curl, Python, R) with its example input; a ModelDeployment's says
what serves and what is failing.

Options:
  --show-key        print the model's access key in the sample calls (masked by default), and
                    the model API key of --api-key or MODELSHIP_API_KEY, if one is given
  --api-key KEY     the model API key to fill in with --show-key (also MODELSHIP_API_KEY)
${STATE_DIR_LINE}
`;

export const LOGS_HELP = `Usage: modelship logs MODEL [--replica ID | --build N] [--follow]

Prints the logs of a model's replicas: what the function printed, and the agent's own lines;
with --build, the output of build N (its build script's lines, as the console showed them).

Options:
  --replica ID      one replica only (see describe)
  --build N         the output of the model's build N instead
  -f, --follow      keep printing new lines
${STATE_DIR_LINE}
`;

export const CALL_HELP = `Usage: modelship call MODEL ['JSON'] [--api-key KEY]

Calls a model through the gateway (POST /models/MODEL/predict) and prints the answer; exits 1
when the gateway answers with an error. With no JSON, sends the model's spec.example.input.

Options:
  --api-key KEY     an API key, for a model with authentication (also MODELSHIP_API_KEY)
${STATE_DIR_LINE}
`;

export const KEYS_HELP = `Usage: modelship keys show|rotate MODEL

Shows a model's access key, or replaces it with a new one (the old one stops working at once).

Options:
${STATE_DIR_LINE}
`;

export const APIKEYS_HELP = `Usage: modelship apikeys create --user USER [--expires 30d]
       modelship apikeys list [-o json]
       modelship apikeys delete ID

Creates (and prints once), lists or deletes the API keys that callers send as
\`Authorization: Bearer KEY\`. Keys expire after a year unless --expires says otherwise.

Options:
  --user USER       whom the key is for (create)
  --expires DUR     how long it is valid: 30d, 12h, 1y (create)
  -o, --output FMT  table or json (list)
${STATE_DIR_LINE}
`;

export async function admin(
  stateDirFlag: string | undefined,
  path: string,
  init: RequestInit = {},
) {
  const { url, token } = findAdmin(stateDirFlag);
  let response: Response;
  try {
    response = await fetch(`${url}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        ...init.headers,
      },
    });
  } catch {
    throw new Error(`cannot reach modelship up at ${url}: is it still running?`);
  }
  return response;
}

export async function adminJson<T>(
  stateDirFlag: string | undefined,
  path: string,
  init: RequestInit = {},
): Promise<T> {
  const response = await admin(stateDirFlag, path, init);
  const body = (await response.json()) as T & { error?: string };
  if (!response.ok) throw new Error(body.error ?? `the admin API answered ${response.status}`);
  return body;
}

function kindOf(text: string | undefined): Kind {
  const kind = text === undefined ? undefined : KIND_NAMES[text.toLowerCase()];
  if (!kind) {
    throw new Error(
      `unknown kind "${text ?? ""}": use modelrepositories (mrepo), models (mdl), modelbuilds (mb) or modeldeployments (md)`,
    );
  }
  return kind;
}

/** Evaluates the JSONPath subset our printer columns use: `.a.b` and `.list[?(@.k=="v")].field`. */
export function evaluateJsonPath(object: unknown, path: string): unknown {
  let value: unknown = object;
  const pattern = /\.([A-Za-z0-9_]+)(?:\[\?\(@\.([A-Za-z0-9_]+)=="([^"]*)"\)\])?/g;
  for (const match of path.matchAll(pattern)) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[match[1] as string];
    if (match[2] !== undefined) {
      if (!Array.isArray(value)) return undefined;
      value = value.find(
        (item) => (item as Record<string, unknown>)[match[2] as string] === match[3],
      );
    }
  }
  return value;
}

export function printerColumns(kind: Kind): PrinterColumn[] {
  const schema = loadKindSchema(kind) as { "x-kubernetes": { printerColumns: PrinterColumn[] } };
  return schema["x-kubernetes"].printerColumns;
}

function cell(object: Resource, column: PrinterColumn, now: Date): string {
  const value = evaluateJsonPath(object, column.jsonPath);
  if (value === undefined || value === null) return "<none>";
  if (column.type === "date") return formatAge(String(value), now);
  if (column.name === "Commit" && typeof value === "string") return value.slice(0, 7);
  return String(value);
}

/** Columns padded like kubectl: three spaces between them. */
export function formatTable(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, index) =>
    Math.max(...rows.map((row) => (row[index] ?? "").length)),
  );
  return rows
    .map((row) =>
      row
        .map((text, index) =>
          index === row.length - 1 ? text : text.padEnd((widths[index] ?? 0) + 3),
        )
        .join("")
        .trimEnd(),
    )
    .join("\n");
}

export function resourceTable(kind: Kind, objects: Resource[], now: Date): string {
  const columns = printerColumns(kind);
  const header = ["NAME", ...columns.map((column) => column.name.toUpperCase())];
  const rows = objects.map((object) => [
    object.metadata.name,
    ...columns.map((column) => cell(object, column, now)),
  ]);
  return formatTable([header, ...rows]);
}

export async function runGet(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o", default: "table" },
      watch: { type: "boolean", short: "w", default: false },
      ...STATE_DIR_OPTION,
    },
  });
  const kind = kindOf(positionals[0]);
  const name = positionals[1];
  const plural = `${kind.toLowerCase()}s`.replace("repositorys", "repositories");
  const path = `/api/v1/${plural}${name ? `/${encodeURIComponent(name)}` : ""}`;
  if (values.watch) return watchObjects(values["state-dir"], kind, path, values.output, output);
  const body = await adminJson<Resource | { items: Resource[] }>(values["state-dir"], path);
  if (values.output === "json") {
    output.out(
      `${JSON.stringify(name ? body : { apiVersion: "v1", kind: "List", ...body }, null, 2)}\n`,
    );
    return { exitCode: 0 };
  }
  if (values.output !== "table" && values.output !== "wide") {
    throw new Error(`--output must be json (or omitted for a table), not "${values.output}"`);
  }
  const objects = "items" in body ? body.items : [body];
  if (objects.length === 0) {
    output.err(`No ${plural} found.\n`);
    return { exitCode: 0 };
  }
  output.out(`${resourceTable(kind, objects, new Date())}\n`);
  return { exitCode: 0 };
}

/**
 * The ids read_metrics, track_aggregate_metrics and the metrics API take for the object
 * (model_crn, model_build_crn, model_deployment_crn), as CDSW's overview page shows its CRNs.
 */
export function crnLines(object: Resource): string[] {
  const { name } = object.metadata;
  if (object.kind === "Model") return [`CRN:          ${modelCrn(name)}`];
  if (object.kind === "ModelBuild") {
    const spec = object.spec as { model?: string; number?: number };
    return spec.model && spec.number ? [`CRN:          ${buildCrn(spec.model, spec.number)}`] : [];
  }
  if (object.kind === "ModelDeployment") {
    const model = (object.spec as { model?: string }).model;
    const status = (object.status ?? {}) as { deploymentId?: number; build?: number };
    if (!model) return [];
    return [
      `CRN:          ${deploymentCrn(model, name, status.deploymentId)}`,
      ...(status.deploymentId === undefined ? [] : [`All rollouts: ${deploymentCrn(model, name)}`]),
      `Model CRN:    ${modelCrn(model)}`,
      ...(status.build === undefined ? [] : [`Build CRN:    ${buildCrn(model, status.build)}`]),
    ];
  }
  return [];
}

/**
 * `get --watch`: the admin API's watch (`?watch=1`), printed as it comes — a table row per
 * event, the header once, as `kubectl get -w` prints; with -o json, the events themselves.
 */
async function watchObjects(
  stateDir: string | undefined,
  kind: Kind,
  path: string,
  format: string | undefined,
  output: Output,
): Promise<CommandResult> {
  if (format !== "table" && format !== "json") {
    throw new Error(`--output must be json (or omitted for a table), not "${format}"`);
  }
  const response = await admin(stateDir, `${path}?watch=1`);
  if (!response.ok || !response.body) {
    const body = (await response.json().catch(() => ({}))) as { error?: string };
    throw new Error(body.error ?? `the admin API answered ${response.status}`);
  }
  const decoder = new TextDecoder();
  let pending = "";
  let headerShown = false;
  const print = (line: string) => {
    const event = JSON.parse(line) as { type: string; object: Resource };
    if (format === "json") {
      output.out(`${line}\n`);
      return;
    }
    const [header, row] = resourceTable(kind, [event.object], new Date()).split("\n");
    if (!headerShown) output.out(`${header}\n`);
    headerShown = true;
    output.out(`${row}${event.type === "DELETED" ? "   (deleted)" : ""}\n`);
  };
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    for (let end = pending.indexOf("\n"); end !== -1; end = pending.indexOf("\n")) {
      print(pending.slice(0, end));
      pending = pending.slice(end + 1);
    }
  }
  // The stream ends when `up` stops (or cut off a watcher that fell behind).
  output.err("the watch ended: modelship up stopped, or this watcher fell behind\n");
  return { exitCode: 1 };
}

function describeConditions(conditions: Condition[] | undefined, now: Date): string[] {
  if (!conditions?.length) return ["Conditions:  <none>"];
  return [
    "Conditions:",
    formatTable([
      ["  TYPE", "STATUS", "REASON", "AGE", "MESSAGE"],
      ...conditions.map((condition) => [
        `  ${condition.type}`,
        condition.status,
        condition.reason,
        formatAge(condition.lastTransitionTime, now),
        condition.message.split("\n")[0] ?? "",
      ]),
    ]),
    // A multi-line message (a sync's validation errors) is printed whole below.
    ...conditions
      .filter((condition) => condition.message.includes("\n"))
      .flatMap((condition) => [
        `${condition.type} message:`,
        ...condition.message.split("\n").map((line) => `  ${line}`),
      ]),
  ];
}

function describeHistory(history: DeploymentRecord[] | undefined): string[] {
  if (!history?.length) return [];
  return [
    "History:",
    formatTable([
      ["  DEPLOYMENT", "BUILD", "COMMIT", "BUILT FROM", "DEPLOYED", "STOPPED", "BY"],
      ...[...history]
        .reverse()
        .map((record) => [
          `  ${record.deploymentId}`,
          String(record.build),
          record.commit?.slice(0, 7) ?? "",
          record.buildCommit?.slice(0, 7) ?? "",
          record.deployedAt,
          record.stoppedAt ?? "-",
          record.deployedBy ?? "",
        ]),
    ]),
  ];
}

/** kubectl describe's Events: oldest first, a repeat as "(x3 over 2m)". */
export function describeEvents(events: EventRecord[], now: Date): string[] {
  if (events.length === 0) return ["Events:  <none>"];
  return [
    "Events:",
    formatTable([
      ["  TYPE", "REASON", "AGE", "MESSAGE"],
      ...events.map((event) => [
        `  ${event.type}`,
        event.reason,
        event.count > 1
          ? `${formatAge(event.lastTimestamp, now)} (x${event.count} over ${formatAge(event.firstTimestamp, now)})`
          : formatAge(event.lastTimestamp, now),
        event.message.split("\n")[0] ?? "",
      ]),
    ]),
  ];
}

function describeReplicas(replicas: ReplicaInfo[]): string[] {
  if (replicas.length === 0) return ["Replicas:  <none>"];
  const counters = [
    "received",
    "processed",
    "success",
    "failure",
    "error",
    "busy",
    "notReady",
    "restarts",
  ];
  return [
    "Replicas:",
    formatTable([
      ["  ID", "BUILD", "READY", ...counters.map((counter) => counter.toUpperCase())],
      ...replicas.map((replica) => [
        `  ${replica.id}`,
        String(replica.build),
        replica.ready ? "true" : `false${replica.reason ? ` (${replica.reason})` : ""}`,
        ...counters.map((counter) => String(replica.stats[counter] ?? 0)),
      ]),
    ]),
  ];
}

export async function runDescribe(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      "show-key": { type: "boolean", default: false },
      "api-key": { type: "string" },
      ...STATE_DIR_OPTION,
    },
  });
  const kind = kindOf(positionals[0]);
  const name = positionals[1];
  if (!name) throw new Error("usage: modelship describe KIND NAME [--show-key]");
  const plural = `${kind.toLowerCase()}s`.replace("repositorys", "repositories");
  const object = await adminJson<Resource>(
    values["state-dir"],
    `/api/v1/${plural}/${encodeURIComponent(name)}`,
  );
  const now = new Date();
  const lines = [
    `Name:         ${object.metadata.name}`,
    `Namespace:    ${object.metadata.namespace ?? "default"}`,
    `Kind:         ${object.kind}`,
    ...crnLines(object),
    ...Object.entries(object.metadata.annotations ?? {}).map(
      ([key, value]) => `Annotation:   ${key}=${value}`,
    ),
  ];
  if (kind === "ModelDeployment") {
    const spec = object.spec as { replicas?: number };
    lines.push(...deploymentSummary(object.status as ModelDeploymentStatus, spec.replicas ?? 1));
  }
  lines.push("Spec:", ...JSON.stringify(object.spec, null, 2).split("\n").slice(1, -1));
  const status = (object.status ?? {}) as Record<string, unknown>;
  const { conditions, history, ...rest } = status as {
    conditions?: Condition[];
    history?: DeploymentRecord[];
  } & Record<string, unknown>;
  lines.push(
    "Status:",
    ...Object.entries(rest).map(
      ([key, value]) => `  ${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`,
    ),
  );
  lines.push(...describeConditions(conditions, now), ...describeHistory(history));
  const events = await adminJson<{ items: EventRecord[] }>(
    values["state-dir"],
    `/api/v1/${plural}/${encodeURIComponent(name)}/events`,
  );
  if (kind === "ModelDeployment") {
    const { items } = await adminJson<{ items: ReplicaInfo[] }>(
      values["state-dir"],
      `/api/v1/modeldeployments/${encodeURIComponent(name)}/replicas`,
    );
    lines.push(...describeReplicas(items));
  }
  if (kind === "Model") {
    const spec = object.spec as Model["spec"];
    // The key leaves the admin API only when asked for: a describe pasted into a ticket is safe.
    const accessKey = values["show-key"]
      ? (
          await adminJson<{ accessKey: string }>(
            values["state-dir"],
            `/api/v1/keys/${encodeURIComponent(name)}`,
          )
        ).accessKey
      : undefined;
    lines.push(
      ...sampleCalls({
        gatewayUrl: findAdmin(values["state-dir"]).gatewayUrl,
        accessKey,
        input: spec.example?.input ?? {},
        authenticated: spec.authentication?.enabled ?? true,
        // Filled in only with the access key shown: a describe without --show-key shows no key.
        apiKey: values["show-key"]
          ? (values["api-key"] ?? process.env.MODELSHIP_API_KEY)
          : undefined,
      }),
    );
  }
  if (kind === "ModelBuild" && (status.phase === "Failed" || status.phase === "Building")) {
    const { logs } = await adminJson<{ logs: string }>(
      values["state-dir"],
      `/api/v1/modelbuilds/${encodeURIComponent(name)}/logs`,
    );
    lines.push(
      "Build log (last 20 lines):",
      ...logs
        .trimEnd()
        .split("\n")
        .slice(-20)
        .map((line) => `  ${line}`),
    );
  }
  lines.push(...describeEvents(events.items, now));
  output.out(`${lines.join("\n")}\n`);
  return { exitCode: 0 };
}

export async function runLogs(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      replica: { type: "string" },
      build: { type: "string" },
      follow: { type: "boolean", short: "f", default: false },
      ...STATE_DIR_OPTION,
    },
  });
  const model = positionals[0];
  if (!model) throw new Error("usage: modelship logs MODEL [--replica ID | --build N] [--follow]");
  if (values.build !== undefined) {
    return printBuildLog(values["state-dir"], model, values.build, values.follow, output);
  }
  const query = new URLSearchParams();
  if (values.replica) query.set("replica", values.replica);
  if (values.follow) query.set("follow", "1");
  const response = await admin(
    values["state-dir"],
    `/api/v1/logs/${encodeURIComponent(model)}?${query}`,
  );
  if (!response.ok) throw new Error(((await response.json()) as { error: string }).error);
  let buffered = "";
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    buffered += Buffer.from(chunk).toString("utf8");
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const text of lines) {
      if (!text) continue;
      const line = JSON.parse(text) as {
        replica: string;
        time: string;
        stream: string;
        line: string;
      };
      const mark =
        line.stream === "stderr" ? " [stderr]" : line.stream === "agent" ? " [agent]" : "";
      output.out(`${line.time} ${line.replica}${mark} ${line.line}\n`);
    }
  }
  return { exitCode: 0 };
}

/** The model's spec.example.input as JSON text, for a call with no request of its own. */
async function exampleInput(stateDirFlag: string | undefined, model: string): Promise<string> {
  const object = await adminJson<Model>(
    stateDirFlag,
    `/api/v1/models/${encodeURIComponent(model)}`,
  );
  const example = object.spec.example;
  if (!example || example.input === undefined) {
    throw new Error(
      `no request given, and Model ${model} has no spec.example.input to send: pass one, as in modelship call ${model} '{"a": 1}'`,
    );
  }
  return JSON.stringify(example.input);
}

/** How often `logs --build N --follow` asks for more while the build runs. */
const BUILD_LOG_POLL_MS = 1000;

/** A build's kept lines, and how many before them the builder dropped ("... N earlier lines dropped"). */
export function keptBuildLines(logs: string): { dropped: number; lines: string[] } {
  const lines = logs.split("\n").filter((line) => line !== "");
  const marker = /^\.\.\. (\d+) earlier lines dropped$/.exec(lines[0] ?? "");
  return marker ? { dropped: Number(marker[1]), lines: lines.slice(1) } : { dropped: 0, lines };
}

/** A build's output, each line marked `out | ` or `err | `; with follow, until it ends. */
async function printBuildLog(
  stateDirFlag: string | undefined,
  model: string,
  number: string,
  follow: boolean,
  output: Output,
): Promise<CommandResult> {
  if (!/^[1-9][0-9]*$/.test(number)) {
    throw new Error(`--build must be a build number such as 3, not "${number}"`);
  }
  const name = encodeURIComponent(`${model}-${number}`);
  let printed = 0;
  for (;;) {
    const build = await adminJson<Resource>(stateDirFlag, `/api/v1/modelbuilds/${name}`);
    const { logs } = await adminJson<{ logs: string }>(
      stateDirFlag,
      `/api/v1/modelbuilds/${name}/logs`,
    );
    const { dropped, lines } = keptBuildLines(logs);
    // Counted from the build's first line: past the builder's bound, the oldest go first.
    for (const line of lines.slice(Math.max(0, printed - dropped))) output.out(`${line}\n`);
    printed = Math.max(printed, dropped + lines.length);
    const phase = (build.status as { phase?: string } | undefined)?.phase;
    if (!follow || (phase !== "Building" && phase !== "Pending" && phase !== undefined)) break;
    await new Promise((resolve) => setTimeout(resolve, BUILD_LOG_POLL_MS));
  }
  return { exitCode: 0 };
}

export async function runCall(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { "api-key": { type: "string" }, ...STATE_DIR_OPTION },
  });
  const [model, given] = positionals;
  if (!model) throw new Error(`usage: modelship call MODEL ['JSON']`);
  const request = given ?? (await exampleInput(values["state-dir"], model));
  try {
    JSON.parse(request);
  } catch (error) {
    throw new Error(`the request is not JSON: ${(error as Error).message}`);
  }
  const { gatewayUrl } = findAdmin(values["state-dir"]);
  const apiKey = values["api-key"] ?? process.env.MODELSHIP_API_KEY;
  const response = await fetch(`${gatewayUrl}/models/${encodeURIComponent(model)}/predict`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
    },
    body: request,
  });
  const text = await response.text();
  output.out(`${text}\n`);
  return { exitCode: response.ok ? 0 : 1 };
}

export async function runKeys(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: STATE_DIR_OPTION,
  });
  const [action, model] = positionals;
  if ((action !== "show" && action !== "rotate") || !model) {
    throw new Error("usage: modelship keys show|rotate MODEL");
  }
  const path = `/api/v1/keys/${encodeURIComponent(model)}${action === "rotate" ? "/rotate" : ""}`;
  const { accessKey } = await adminJson<{ accessKey: string }>(values["state-dir"], path, {
    method: action === "rotate" ? "POST" : "GET",
  });
  output.out(`${accessKey}\n`);
  return { exitCode: 0 };
}

export async function runApiKeys(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      user: { type: "string" },
      expires: { type: "string" },
      output: { type: "string", short: "o" },
      ...STATE_DIR_OPTION,
    },
  });
  const [action, id] = positionals;
  const stateDir = values["state-dir"];
  if (action === "create") {
    if (!values.user)
      throw new Error("usage: modelship apikeys create --user USER [--expires 30d]");
    const created = await adminJson<{ key: string }>(stateDir, "/api/v1/apikeys", {
      method: "POST",
      body: JSON.stringify({
        user: values.user,
        ...(values.expires ? { expires: values.expires } : {}),
      }),
    });
    output.out(`${created.key}\n`);
    return { exitCode: 0 };
  }
  if (action === "list") {
    const { items } = await adminJson<{
      items: { id: string; user: string; createdAt: string; expiresAt: string }[];
    }>(stateDir, "/api/v1/apikeys");
    if (values.output === "json") output.out(`${JSON.stringify({ items }, null, 2)}\n`);
    else
      output.out(
        `${formatTable([["ID", "USER", "CREATED", "EXPIRES"], ...items.map((key) => [key.id, key.user, key.createdAt, key.expiresAt])])}\n`,
      );
    return { exitCode: 0 };
  }
  if (action === "delete" && id) {
    await adminJson(stateDir, `/api/v1/apikeys/${encodeURIComponent(id)}`, { method: "DELETE" });
    output.out(`deleted ${id}\n`);
    return { exitCode: 0 };
  }
  throw new Error("usage: modelship apikeys create --user U [--expires 30d] | list | delete ID");
}
