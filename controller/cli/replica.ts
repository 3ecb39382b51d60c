// `modelship replica`: the agent that runs one replica of a model (docs/replica.md).
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { closeServer, listen, listenOnSocket } from "../api/http.ts";
import { ReplicaAgent, type ReplicaServes } from "../replica/agent.ts";
import { createReplicaServer } from "../replica/agent-server.ts";
import type { Runtime } from "../replica/worker-process.ts";
import type { CommandResult, Output } from "./output.ts";
import { parsePort, parsePositive, untilStopSignal } from "./serve.ts";

export const REPLICA_HELP = `Usage: modelship replica --file FILE --function NAME --runtime python3|r --port PORT|--socket PATH [options]

Runs one replica of a model: starts a Python or R worker that loads FUNCTION from FILE, and
answers HTTP on 127.0.0.1:PORT (or on a Unix socket), one request at a time.

  POST /predict   the request as the body; a second call while one runs gets 503 replica.busy
  GET  /readyz    200 once the function is loaded
  GET  /stats     received, processed, success, failure, error, busy, notReady, restarts
  GET  /logs      the workers' output and the agent's notes (?after=SEQ&limit=N&follow=1)
  GET  /metrics   Prometheus metrics

Options:
  --file FILE             the model's file, relative to --dir
  --function NAME         the function to call
  --runtime python3|r     the language of FILE
  --port PORT             0 picks a free port (printed on start)
  --socket PATH           listen on this Unix socket (mode 0600) instead of a port
  --host HOST             default 127.0.0.1
  --dir DIR               the model's source directory (default: the current directory)
  --timeout-seconds N     a call running longer is killed: 504 model.timeout (default 30)
  --replica-id ID         the id in every answer (default: the host name)
  --tracebacks            send Python tracebacks with model.error answers
  --serves MODEL/BUILD/DEPLOYMENT/ID
                          what the replica serves: sent to the gateway with the metrics a
                          prediction tracks, and to the model as MODELSHIP_*_CRN variables
  --quiet                 do not copy the log to stdout
  --gateway-secret-file FILE
                          POST /predict (and /stats, /logs over TCP) need the secret in FILE in
                          x-modelship-gateway-secret: 403 replica.forbidden otherwise; or set
                          MODELSHIP_GATEWAY_SECRET
  --body-limit-bytes N    the largest request body: 413 request.too_large (default 5 MiB)
  --response-limit-mb N   the largest answer: 502 model.response_too_large (default 50)
  --log-limit-mb N        the log ring's bound in bytes of text (default 8)
  --uid N --gid N         run the worker as this user and group (the agent must be root)

The worker's environment is this command's, without its MODELSHIP_* variables (the agent's own
settings, such as the gateway secret).
`;

const RUNTIMES: Runtime[] = ["python3", "r"];

export async function runReplica(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: {
      file: { type: "string" },
      function: { type: "string" },
      runtime: { type: "string" },
      port: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      dir: { type: "string", default: "." },
      "timeout-seconds": { type: "string" },
      "body-limit-bytes": { type: "string" },
      "replica-id": { type: "string" },
      serves: { type: "string" },
      tracebacks: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      socket: { type: "string" },
      "gateway-secret-file": { type: "string" },
      "response-limit-mb": { type: "string" },
      "log-limit-mb": { type: "string" },
      uid: { type: "string" },
      gid: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(REPLICA_HELP);
    return { exitCode: 0 };
  }
  for (const flag of ["file", "function", "runtime"] as const) {
    if (values[flag] === undefined) throw new Error(`--${flag} is required (see --help)`);
  }
  if ((values.port === undefined) === (values.socket === undefined)) {
    throw new Error("one of --port and --socket is required (see --help)");
  }
  const runtime = values.runtime as Runtime;
  if (!RUNTIMES.includes(runtime)) {
    throw new Error(`--runtime must be python3 or r, not "${values.runtime}"`);
  }
  const port = parsePort(values.port, "--port", 0);
  const agent = new ReplicaAgent({
    replicaId: values["replica-id"] ?? hostname(),
    ...(values.serves === undefined ? {} : { serves: parseServes(values.serves) }),
    runtime,
    file: values.file as string,
    functionName: values.function as string,
    directory: resolve(values.dir),
    timeoutSeconds: parsePositive(values["timeout-seconds"], "--timeout-seconds", 30),
    tracebacks: values.tracebacks,
    // In a container the command's environment is the model's (the pod spec sets spec.env);
    // the agent's own settings stay with the agent.
    env: Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("MODELSHIP_")),
    ),
    ...(values.uid === undefined ? {} : { uid: parseId(values.uid, "--uid") }),
    ...(values.gid === undefined ? {} : { gid: parseId(values.gid, "--gid") }),
    responseLimitBytes: megabytes(values["response-limit-mb"], "--response-limit-mb", 50),
    logByteCapacity: megabytes(values["log-limit-mb"], "--log-limit-mb", 8),
  });
  if (!values.quiet) {
    // The container's log (kubectl logs) gets every line too, tagged like the ring's.
    agent.log.follow((line) => output.out(`${line.time} ${line.stream} ${line.line}\n`));
  }
  const gatewaySecret = secretOf(values["gateway-secret-file"]);
  const server = createReplicaServer(agent, {
    processMetrics: true,
    ...(values["body-limit-bytes"] === undefined
      ? {}
      : {
          bodyLimitBytes: parsePositive(values["body-limit-bytes"], "--body-limit-bytes", 1),
        }),
    ...(gatewaySecret === undefined ? {} : { gatewaySecret }),
  });
  const url =
    values.socket === undefined
      ? await listen(server, values.host, port)
      : await listenOnSocket(server, resolve(values.socket));
  // Listening for the stop signal before saying "listening": a SIGTERM sent the moment the
  // line appears must stop the replica cleanly, not kill it.
  const stopSignal = untilStopSignal();
  agent.start();
  output.out(`replica ${agent.options.replicaId} listening on ${url}\n`);

  const signal = await stopSignal;
  output.out(`replica ${agent.options.replicaId}: ${signal}, stopping\n`);
  const closed = closeServer(server);
  await agent.stop(agent.options.timeoutSeconds * 1000);
  // Followers of /logs keep their connection open; the answers in flight are done by now.
  server.closeAllConnections();
  await closed;
  return { exitCode: 0 };
}

function parseId(text: string, flag: string): number {
  const id = Number(text);
  if (!Number.isInteger(id) || id < 0)
    throw new Error(`${flag} must be a numeric id, not "${text}"`);
  return id;
}

function megabytes(text: string | undefined, flag: string, fallback: number): number {
  return Math.round(parsePositive(text, flag, fallback) * 1024 * 1024);
}

/** The gateway secret: from a file (a mounted Secret) or MODELSHIP_GATEWAY_SECRET, trimmed. */
function secretOf(file: string | undefined): string | undefined {
  const text =
    file === undefined ? process.env.MODELSHIP_GATEWAY_SECRET : readFileSync(file, "utf8");
  const secret = text?.trim();
  return secret === "" ? undefined : secret;
}

/** `--serves MODEL/BUILD/DEPLOYMENT/ID`. */
export function parseServes(text: string): ReplicaServes {
  const match = /^([a-z0-9][-a-z0-9.]*)\/([1-9][0-9]*)\/([a-z0-9][-a-z0-9.]*)\/([1-9][0-9]*)$/.exec(
    text,
  );
  if (!match) {
    throw new Error(
      `--serves must be MODEL/BUILD/DEPLOYMENT/ID, such as iris/3/iris/4, not "${text}"`,
    );
  }
  const [, model, build, deployment, deploymentId] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
  ];
  return { model, build: Number(build), deployment, deploymentId: Number(deploymentId) };
}
