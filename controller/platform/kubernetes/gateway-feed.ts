// The gateway's registry port on Kubernetes: models and deployments from their informers,
// replicas from EndpointSlices, keys from the Secret `modelship-keys` (`access.<model>` holds a
// model's access key, `apikeys.json` the hashed API key records, `replicas.key` the key each
// deployment's gateway secret derives from). Every change feeds the gateway.
// stop() ends the watches and any key read in flight: nothing is left running or connected.
import { GatewayChangeTracker, type GatewayConfig } from "../../gateway/config.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { type ApiKeyRecord, hashKey } from "../../gateway/keys.ts";
import { gatewayConfigFrom } from "../routes.ts";
import { isNotFound, type KubeClient } from "./client.ts";
import type { InformerTimings, WatchedNamespaces } from "./informer.ts";
import { REPLICA_KEY_FIELD, replicaSecretOf } from "./replica-secret.ts";
import { KubeRuntime } from "./runtime.ts";
import { KubeStore } from "./store.ts";

export const KEYS_SECRET = "modelship-keys";
const KEY_REFRESH_MS = 5000;

export interface GatewayFeedOptions {
  timings?: Partial<InformerTimings>;
  /** Where models are followed (the controller's MODELSHIP_WATCH_NAMESPACES); `namespace` alone by default. */
  watched?: WatchedNamespaces;
  /**
   * Where the gateway reaches a replica, from the address its EndpointSlice gives (the pod's
   * IP). The identity on a cluster. The test control plane's pods have addresses no TCP
   * connection can reach; its harness runs each pod's agent on a loopback address instead and
   * maps it here (test/k8s/pod-agents.ts).
   */
  replicaUrl?: (podUrl: string) => string;
}

export class KubeGatewayFeed {
  private readonly store: KubeStore;
  private readonly runtime: KubeRuntime;
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly gateway: Gateway;
  private keys: {
    access: Map<string, string>;
    apiKeys: ApiKeyRecord[];
    replicaKey: string | undefined;
  } = { access: new Map(), apiKeys: [], replicaKey: undefined };
  private scheduled = false;
  /** What the gateway was last given: each refresh sends only what changed since. */
  private readonly tracker = new GatewayChangeTracker();
  private keyTimer: NodeJS.Timeout | undefined;
  /** A key read asked for out of turn (see refresh()), while it runs. */
  private keysLoading: Promise<void> | undefined;
  /** Aborts a key read in flight when the feed stops. */
  private readonly stopping = new AbortController();
  private readonly log: (line: string) => void;
  private readonly replicaUrl: (podUrl: string) => string;

  constructor(
    client: KubeClient,
    namespace: string,
    gateway: Gateway,
    log: (line: string) => void,
    options: GatewayFeedOptions = {},
  ) {
    const timings = options.timings ?? {};
    this.client = client;
    this.namespace = namespace;
    this.gateway = gateway;
    this.log = log;
    this.replicaUrl = options.replicaUrl ?? ((podUrl) => podUrl);
    const watched = options.watched ?? [namespace];
    this.store = new KubeStore(client, namespace, log, timings, watched);
    this.runtime = new KubeRuntime(client, namespace, () => this.schedule(), {
      log,
      timings,
      watched,
    });
  }

  async start(): Promise<void> {
    await Promise.all([this.store.start(), this.runtime.start()]);
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
    this.stopping.abort();
    await Promise.all([this.runtime.stopWatching(), this.store.stop()]);
  }

  private async loadKeys(): Promise<void> {
    try {
      const secret = await this.client.request<{ data?: Record<string, string> }>(
        "GET",
        `/api/v1/namespaces/${this.namespace}/secrets/${KEYS_SECRET}`,
        undefined,
        undefined,
        { signal: this.stopping.signal },
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
        replicaKey: decoded.find(([key]) => key === REPLICA_KEY_FIELD)?.[1],
      };
    } catch (error) {
      if (!isNotFound(error) && !this.stopping.signal.aborted)
        this.log(`gateway: cannot read Secret ${KEYS_SECRET}: ${(error as Error).message}`);
    }
  }

  private schedule(): void {
    // A stopped feed no longer feeds: the gateway may be closing.
    if (this.scheduled || this.stopping.signal.aborted) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.refresh();
    });
  }

  config(): GatewayConfig {
    // Every namespace the caches follow (the store holds no other).
    return gatewayConfigFrom({
      store: this.store,
      readyReplicas: (deployment) => {
        const { replicaKey } = this.keys;
        // Without the key yet (a first start), no secret: the replicas refuse, and are
        // ejected until the next key read brings it.
        const secret = replicaKey ? { secret: replicaSecretOf(replicaKey, deployment) } : {};
        return this.runtime
          .replicas(deployment)
          .filter((replica) => replica.ready)
          .map(({ id, url }) => ({ id, url: this.replicaUrl(url), ...secret }));
      },
      // The Secret holds `access.<model>`: a model's name is one namespace's (rule `route`).
      accessKeyHash: (model) => {
        const key = this.keys.access.get(model.name);
        return key ? hashKey(key) : undefined;
      },
      apiKeys: this.keys.apiKeys,
    });
  }

  refresh(): void {
    let config: GatewayConfig;
    try {
      config = this.config();
      // Refreshes come with every event and every key read (5 s): most change nothing.
      const next = this.tracker.changesTo(config);
      if (next) {
        this.gateway.applyChanges(next.changes);
        next.commit();
      }
    } catch (error) {
      this.log(`gateway: kept the previous configuration: ${(error as Error).message}`);
      return;
    }
    // Replicas, and no replica key to reach them with: on a new installation the controller
    // makes the key just before the first rollout, after this feed's last read. Reading it now,
    // rather than at the next refresh, spares the first calls a 503.
    const unreachable = config.models.some((model) =>
      model.replicas.some((replica) => replica.secret === undefined),
    );
    if (unreachable && !this.keysLoading && !this.stopping.signal.aborted) {
      this.keysLoading = this.loadKeys().finally(() => {
        this.keysLoading = undefined;
        if (this.keys.replicaKey) this.schedule();
      });
    }
  }
}
