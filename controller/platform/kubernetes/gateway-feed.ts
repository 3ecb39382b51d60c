// The gateway's registry port on Kubernetes: models and deployments from their informers,
// replicas from EndpointSlices, keys from the Secret `modelship-keys` (`access.<model>` holds a
// model's access key, `apikeys.json` the hashed API key records). Every change feeds the gateway.
import type { GatewayConfig } from "../../gateway/config.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { type ApiKeyRecord, hashKey } from "../../gateway/keys.ts";
import { gatewayConfigFrom } from "../../gateway/routes.ts";
import { isNotFound, type KubeClient } from "./client.ts";
import { KubeRuntime } from "./runtime.ts";
import { KubeStore } from "./store.ts";

export const KEYS_SECRET = "modelship-keys";
const KEY_REFRESH_MS = 5000;

export class KubeGatewayFeed {
  private readonly store: KubeStore;
  private readonly runtime: KubeRuntime;
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly gateway: Gateway;
  private keys: { access: Map<string, string>; apiKeys: ApiKeyRecord[] } = {
    access: new Map(),
    apiKeys: [],
  };
  private scheduled = false;
  private keyTimer: NodeJS.Timeout | undefined;
  private readonly log: (line: string) => void;

  constructor(
    client: KubeClient,
    namespace: string,
    gateway: Gateway,
    log: (line: string) => void,
  ) {
    this.client = client;
    this.namespace = namespace;
    this.gateway = gateway;
    this.log = log;
    this.store = new KubeStore(client, namespace, log);
    this.runtime = new KubeRuntime(client, namespace, () => this.schedule());
  }

  async start(): Promise<void> {
    await this.store.start();
    await this.runtime.start();
    this.store.watch(() => this.schedule());
    await this.loadKeys();
    this.keyTimer = setInterval(
      () =>
        void this.loadKeys().then(
          () => this.schedule(),
          () => {},
        ),
      KEY_REFRESH_MS,
    );
    this.refresh();
  }

  async stop(): Promise<void> {
    clearInterval(this.keyTimer);
    await this.runtime.stopWatching();
    await this.store.stop();
  }

  private async loadKeys(): Promise<void> {
    try {
      const secret = await this.client.request<{ data?: Record<string, string> }>(
        "GET",
        `/api/v1/namespaces/${this.namespace}/secrets/${KEYS_SECRET}`,
      );
      const decoded = Object.entries(secret.data ?? {}).map(
        ([key, value]) => [key, Buffer.from(value, "base64").toString("utf8")] as const,
      );
      this.keys = {
        access: new Map(
          decoded
            .filter(([key]) => key.startsWith("access."))
            .map(([key, value]) => [key.slice(7), value]),
        ),
        apiKeys: JSON.parse(
          decoded.find(([key]) => key === "apikeys.json")?.[1] ?? "[]",
        ) as ApiKeyRecord[],
      };
    } catch (error) {
      if (!isNotFound(error))
        this.log(`gateway: cannot read Secret ${KEYS_SECRET}: ${(error as Error).message}`);
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.refresh();
    });
  }

  config(): GatewayConfig {
    return gatewayConfigFrom({
      store: this.store,
      namespace: this.namespace,
      readyReplicas: (key) =>
        this.runtime
          .replicas(key)
          .filter((replica) => replica.ready)
          .map(({ id, url }) => ({ id, url })),
      accessKeyHash: (modelKey) => {
        const key = this.keys.access.get(modelKey.split("/")[1] ?? modelKey);
        return key ? hashKey(key) : undefined;
      },
      apiKeys: this.keys.apiKeys,
    });
  }

  refresh(): void {
    try {
      this.gateway.apply(this.config());
    } catch (error) {
      this.log(`gateway: kept the previous configuration: ${(error as Error).message}`);
    }
  }
}
