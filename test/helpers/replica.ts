// Starts replica agents in this process, each with a real worker process and a real HTTP port
// (or a Unix socket).
import { request } from "node:http";
import { join } from "node:path";
import { closeServer, listen, listenOnSocket } from "../../controller/api/http.ts";
import { ReplicaAgent, type ReplicaOptions } from "../../controller/replica/agent.ts";
import {
  createReplicaServer,
  type ReplicaServerOptions,
} from "../../controller/replica/agent-server.ts";
import { PROJECT_ROOT } from "./cli.ts";

export const MODELS_DIR = join(PROJECT_ROOT, "test/fixtures/models");

export interface RunningReplica {
  agent: ReplicaAgent;
  /** http://127.0.0.1:PORT, or unix:PATH for an agent on a Unix socket. */
  url: string;
  stop(): Promise<void>;
}

/** Starts an agent on 127.0.0.1 with a free port, or on the Unix socket `socketPath`. */
export async function startReplica(
  options: Partial<ReplicaOptions> & { functionName: string },
  serverOptions: ReplicaServerOptions = {},
  socketPath?: string,
): Promise<RunningReplica> {
  const agent = new ReplicaAgent({
    replicaId: `test-${options.functionName}-${Math.random().toString(36).slice(2, 7)}`,
    runtime: "python3",
    file: "behaviours.py",
    directory: MODELS_DIR,
    timeoutSeconds: 30,
    restartBackoffMs: 20,
    ...options,
  });
  const server = createReplicaServer(agent, serverOptions);
  const url =
    socketPath === undefined
      ? await listen(server, "127.0.0.1", 0)
      : await listenOnSocket(server, socketPath);
  agent.start();
  return {
    agent,
    url,
    async stop() {
      const closed = closeServer(server);
      await agent.stop();
      server.closeAllConnections();
      await closed;
    },
  };
}

export interface JsonAnswer {
  status: number;
  code: string | null;
  // biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field in tests
  body: any;
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<JsonAnswer> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return {
    status: response.status,
    code: response.headers.get("x-modelship-code"),
    body: await response.json(),
  };
}

/** One HTTP request over a Unix socket (fetch cannot use one); the body is JSON. */
export function requestOverSocket(
  socketPath: string,
  method: "GET" | "POST",
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<JsonAnswer> {
  return new Promise((resolve, reject) => {
    const outgoing = request({ socketPath, method, path, headers }, (incoming) => {
      let text = "";
      incoming.setEncoding("utf8");
      incoming.on("data", (chunk: string) => {
        text += chunk;
      });
      incoming.on("end", () => {
        const code = incoming.headers["x-modelship-code"];
        resolve({
          status: incoming.statusCode ?? 0,
          code: typeof code === "string" ? code : null,
          body: JSON.parse(text),
        });
      });
    });
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}

export async function getJson(url: string): Promise<JsonAnswer> {
  const response = await fetch(url);
  return { status: response.status, code: null, body: await response.json() };
}

/** Polls until `check` returns true (real processes take their time), or fails after `ms`. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still not true after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
