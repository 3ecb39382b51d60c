// A gateway in this process on a real port, fed a configuration the way a platform feeds it.
import { createServer } from "node:net";
import { closeServer, listen } from "../../controller/api/http.ts";
import type { GatewayConfig, ModelRoute } from "../../controller/gateway/config.ts";
import { Gateway, type GatewayOptions } from "../../controller/gateway/gateway.ts";
import type { RunningReplica } from "./replica.ts";

export interface RunningGateway {
  gateway: Gateway;
  url: string;
  stop(): Promise<void>;
}

export async function startGateway(
  config: GatewayConfig,
  options: GatewayOptions = {},
): Promise<RunningGateway> {
  const gateway = new Gateway(options);
  gateway.apply(config);
  const url = await listen(gateway.server, "127.0.0.1", 0);
  return {
    gateway,
    url,
    async stop() {
      const closed = closeServer(gateway.server);
      await gateway.close();
      gateway.server.closeAllConnections();
      await closed;
    },
  };
}

/** A route with the defaults the config schema fills in, for the given replicas. */
export function route(
  name: string,
  replicas: RunningReplica[],
  overrides: Partial<ModelRoute> = {},
): ModelRoute {
  return {
    name,
    authentication: { enabled: false },
    queueTimeoutSeconds: 30,
    timeoutSeconds: 30,
    stopped: false,
    replicas: replicas.map((replica) => ({
      id: replica.agent.options.replicaId,
      url: replica.url,
    })),
    ...overrides,
  };
}

/** The URL of a port on 127.0.0.1 that nobody listens on (it was free a moment ago). */
export async function refusingUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}
