// `modelship replica`: the agent that runs one replica of a model (docs/replica.md).
import { hostname } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { closeServer, listen } from "../api/http.ts";
import { ReplicaAgent } from "../replica/agent.ts";
import { createReplicaServer } from "../replica/agent-server.ts";
import type { Runtime } from "../replica/worker-process.ts";
import type { CommandResult, Output } from "./output.ts";
import { parsePort, parsePositive, untilStopSignal } from "./serve.ts";

export const REPLICA_HELP = `Usage: modelship replica --file FILE --function NAME --runtime python3|r --port PORT [options]

Runs one replica of a model: starts a Python or R worker that loads FUNCTION from FILE, and
answers HTTP on 127.0.0.1:PORT, one request at a time.

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
  --host HOST             default 127.0.0.1
  --dir DIR               the model's source directory (default: the current directory)
  --timeout-seconds N     a call running longer is killed: 504 model.timeout (default 30)
  --replica-id ID         the id in every answer (default: the host name)
  --tracebacks            send Python tracebacks with model.error answers
  --quiet                 do not copy the log to stdout
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
      "replica-id": { type: "string" },
      tracebacks: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(REPLICA_HELP);
    return { exitCode: 0 };
  }
  for (const flag of ["file", "function", "runtime", "port"] as const) {
    if (values[flag] === undefined) throw new Error(`--${flag} is required (see --help)`);
  }
  const runtime = values.runtime as Runtime;
  if (!RUNTIMES.includes(runtime)) {
    throw new Error(`--runtime must be python3 or r, not "${values.runtime}"`);
  }
  const port = parsePort(values.port, "--port", 0);
  const agent = new ReplicaAgent({
    replicaId: values["replica-id"] ?? hostname(),
    runtime,
    file: values.file as string,
    functionName: values.function as string,
    directory: resolve(values.dir),
    timeoutSeconds: parsePositive(values["timeout-seconds"], "--timeout-seconds", 30),
    tracebacks: values.tracebacks,
  });
  if (!values.quiet) {
    // The container's log (kubectl logs) gets every line too, tagged like the ring's.
    agent.log.follow((line) => output.out(`${line.time} ${line.stream} ${line.line}\n`));
  }
  const server = createReplicaServer(agent, { processMetrics: true });
  const url = await listen(server, values.host, port);
  agent.start();
  output.out(`replica ${agent.options.replicaId} listening on ${url}\n`);

  const signal = await untilStopSignal();
  output.out(`replica ${agent.options.replicaId}: ${signal}, stopping\n`);
  const closed = closeServer(server);
  await agent.stop(agent.options.timeoutSeconds * 1000);
  // Followers of /logs keep their connection open; the answers in flight are done by now.
  server.closeAllConnections();
  await closed;
  return { exitCode: 0 };
}
