// The Kubernetes platform, wired for `modelship controller`: the same reconcilers as `modelship
// up`, over the API server (DESIGN §4). The git source runs in the controller, from each
// ModelRepository's URL and token Secret.
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import { generateAccessKey } from "../../gateway/keys.ts";
import type { ReconcileContext } from "../../reconcile/context.ts";
import { createControllerQueue, keysToWake } from "../../reconcile/controller.ts";
import { formatKey, type WorkQueue } from "../../reconcile/queue.ts";
import { type GitCredentials, GitSources } from "../../source/git-sources.ts";
import type { WatchEvent } from "../ports.ts";
import { KanikoBuilder } from "./builder.ts";
import { isNotFound, type KubeClient } from "./client.ts";
import { KEYS_SECRET } from "./gateway-feed.ts";
import { KubeRuntime } from "./runtime.ts";
import type { KubernetesSettings } from "./settings.ts";
import { KubeStore } from "./store.ts";

export interface KubernetesPlatformOptions {
  client: KubeClient;
  settings: KubernetesSettings;
  /** Where URL repositories are cloned. */
  cacheDir: string;
  log(line: string): void;
}

export class KubernetesPlatform {
  readonly store: KubeStore;
  readonly runtime: KubeRuntime;
  readonly builder: KanikoBuilder;
  readonly queue: WorkQueue;
  private readonly options: KubernetesPlatformOptions;
  private readonly sources: GitSources;
  private readonly tokens = new Map<string, GitCredentials>();
  private stopWatching: (() => void) | undefined;
  /** Access keys are written one at a time: two Models must not race on one Secret. */
  private keyWrites: Promise<void> = Promise.resolve();

  constructor(options: KubernetesPlatformOptions) {
    this.options = options;
    const { client, settings, log } = options;
    const namespace = settings.namespace;
    this.store = new KubeStore(client, namespace, log);
    // Credentials come from the Secret a repository names, read by loadCredentials().
    this.sources = new GitSources(
      this.store,
      options.cacheDir,
      (repository) =>
        this.tokens.get(`${repository.metadata.namespace}/${repository.spec.secretRef?.name}`) ??
        {},
    );
    this.runtime = new KubeRuntime(client, namespace, (key) => {
      const name = key.split("/")[1] ?? key;
      this.queue.add(formatKey({ kind: "ModelDeployment", namespace, name }));
    });
    this.builder = new KanikoBuilder(client, settings, (build) => this.repositoryOfBuild(build));
    const context: ReconcileContext = {
      store: this.store,
      builder: this.builder,
      runtime: this.runtime,
      sources: this.sources.reader,
      clock: { now: () => new Date() },
      gatewayUrl: () => settings.gatewayUrl,
      baseImage: (runtime) => settings.baseImages[runtime],
      log,
    };
    this.queue = createControllerQueue(context, (repository) => this.sources.of(repository));
  }

  private repositoryOfBuild(build: ModelBuild): ModelRepository | undefined {
    return this.store.get(
      "ModelRepository",
      build.metadata.namespace ?? this.options.settings.namespace,
      build.spec.repository ?? "",
    );
  }

  /** Reads the token Secrets the repositories name (before their first sync). */
  private async loadCredentials(): Promise<void> {
    const namespace = this.options.settings.namespace;
    for (const repository of this.store.list("ModelRepository", namespace)) {
      const name = repository.spec.secretRef?.name;
      if (!name || this.tokens.has(`${namespace}/${name}`)) continue;
      try {
        const secret = await this.options.client.request<{ data?: Record<string, string> }>(
          "GET",
          `/api/v1/namespaces/${namespace}/secrets/${name}`,
        );
        const decode = (key: string) =>
          secret.data?.[key] ? Buffer.from(secret.data[key], "base64").toString("utf8") : undefined;
        const token = decode("token") ?? decode("password");
        const username = decode("username");
        this.tokens.set(`${namespace}/${name}`, {
          ...(token ? { token } : {}),
          ...(username ? { username } : {}),
        });
      } catch (error) {
        if (!isNotFound(error)) throw error;
        this.options.log(
          `ModelRepository ${repository.metadata.name}: Secret ${name} does not exist`,
        );
      }
    }
  }

  async start(): Promise<void> {
    await this.store.start();
    await this.runtime.start();
    await this.loadCredentials();
    this.stopWatching = this.store.watch((event) => this.onEvent(event));
    for (const kind of ["ModelRepository", "Model", "ModelBuild", "ModelDeployment"] as const) {
      for (const object of this.store.list(kind)) this.enqueue(object.kind, object.metadata);
    }
    this.queue.start();
  }

  private enqueue(kind: string, metadata: { namespace?: string; name: string }): void {
    this.queue.add(
      formatKey({
        kind,
        namespace: metadata.namespace ?? this.options.settings.namespace,
        name: metadata.name,
      }),
    );
  }

  private onEvent(event: WatchEvent): void {
    for (const key of keysToWake(event, this.store, this.options.settings.namespace))
      this.queue.add(key);
    const object = event.object;
    if (object.kind === "ModelRepository") void this.loadCredentials().catch(() => {});
    if (object.kind === "Model" && event.type !== "DELETED")
      this.ensureAccessKey(object.metadata.name);
  }

  /**
   * Gives a Model an access key in the Secret `modelship-keys` (`access.<model>`) unless it has
   * one; the gateway reads them from there. Existing keys are never replaced here.
   */
  private ensureAccessKey(model: string): void {
    const { client, settings, log } = this.options;
    const path = `/api/v1/namespaces/${settings.namespace}/secrets`;
    this.keyWrites = this.keyWrites.then(async () => {
      const field = `access.${model}`;
      try {
        let secret: { data?: Record<string, string> } | undefined;
        try {
          secret = await client.request("GET", `${path}/${KEYS_SECRET}`);
        } catch (error) {
          if (!isNotFound(error)) throw error;
        }
        if (secret?.data?.[field]) return;
        const data = { [field]: Buffer.from(generateAccessKey()).toString("base64") };
        if (secret) {
          await client.request(
            "PATCH",
            `${path}/${KEYS_SECRET}`,
            { data },
            "application/merge-patch+json",
          );
        } else {
          await client.request("POST", path, {
            apiVersion: "v1",
            kind: "Secret",
            metadata: {
              name: KEYS_SECRET,
              namespace: settings.namespace,
              labels: { "app.kubernetes.io/managed-by": "modelship" },
            },
            type: "Opaque",
            data,
          });
        }
        log(`model ${model}: access key created in Secret ${KEYS_SECRET}`);
      } catch (error) {
        log(`model ${model}: cannot write its access key: ${(error as Error).message}`);
      }
    });
  }

  /** Fetches every repository now (the webhook). */
  syncNow(): void {
    for (const repository of this.store.list("ModelRepository"))
      this.enqueue("ModelRepository", repository.metadata);
  }

  async stop(): Promise<void> {
    this.stopWatching?.();
    await this.queue.stop();
    await this.runtime.stopWatching();
    await this.store.stop();
  }
}
