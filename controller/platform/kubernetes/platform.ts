// The Kubernetes platform, wired for `modelship controller`: the same reconcilers as `modelship
// up`, over the API server. The git source runs in the controller, from each ModelRepository's
// URL and token Secret.
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../../core/labels.ts";
import type { WatchEvent } from "../../core/ports.ts";
import { generateAccessKey } from "../../gateway/keys.ts";
import { DEFAULT_RECONCILE_SETTINGS, type ReconcileContext } from "../../reconcile/context.ts";
import { Controller } from "../../reconcile/controller.ts";
import type { ControllerMetrics } from "../../reconcile/metrics.ts";
import { type GitCredentials, GitSources } from "../../source/git-sources.ts";
import { KanikoBuilder } from "./builder.ts";
import { isNotFound, type KubeClient } from "./client.ts";
import { KubeEventRecorder } from "./events.ts";
import { KEYS_SECRET } from "./gateway-feed.ts";
import { newReplicaKey, REPLICA_KEY_FIELD } from "./replica-secret.ts";
import { KubeRuntime } from "./runtime.ts";
import type { KubernetesSettings } from "./settings.ts";
import { KubeStore } from "./store.ts";

export interface KubernetesPlatformOptions {
  client: KubeClient;
  settings: KubernetesSettings;
  /** Where URL repositories are cloned. */
  cacheDir: string;
  /**
   * The controller's metrics (`modelship controller` serves them on /metrics); made once per
   * process, as a platform is made anew each time the controller becomes the leader.
   */
  metrics: ControllerMetrics;
  log(line: string): void;
  /** The reconcilers' settings (tests shorten them). */
  reconcile?: Partial<ReconcileContext["settings"]>;
}

export class KubernetesPlatform {
  readonly store: KubeStore;
  readonly runtime: KubeRuntime;
  readonly builder: KanikoBuilder;
  readonly controller: Controller;
  private readonly options: KubernetesPlatformOptions;
  private readonly sources: GitSources;
  private readonly events: KubeEventRecorder;
  private readonly tokens = new Map<string, GitCredentials>();
  private stopWatching: (() => void) | undefined;
  /** Access keys are written one at a time: two Models must not race on one Secret. */
  private keyWrites: Promise<void> = Promise.resolve();
  private replicaKeyValue: Promise<string> | undefined;
  /** Aborts the platform's own requests (credentials, keys) when it stops. */
  private readonly stopping = new AbortController();

  constructor(options: KubernetesPlatformOptions) {
    this.options = options;
    const { client, settings, log } = options;
    const namespace = settings.namespace;
    this.store = new KubeStore(client, namespace, log, settings.informers);
    // Credentials come from the Secret a repository names, read by loadCredentials().
    this.sources = new GitSources(
      this.store,
      options.cacheDir,
      (repository) =>
        this.tokens.get(`${repository.metadata.namespace}/${repository.spec.secretRef?.name}`) ??
        {},
    );
    this.runtime = new KubeRuntime(
      client,
      namespace,
      (deployment) => this.controller.add({ kind: "ModelDeployment", ...deployment }),
      { log, timings: settings.informers, replicaKey: () => this.replicaKey() },
    );
    this.builder = new KanikoBuilder(client, settings, (build) => this.repositoryOfBuild(build));
    this.events = new KubeEventRecorder(client, log, { namespace });
    const context: ReconcileContext = {
      store: this.store,
      builder: this.builder,
      runtime: this.runtime,
      sources: this.sources.reader,
      events: this.events,
      clock: { now: () => new Date() },
      gitSource: (repository) => this.sources.of(repository),
      gatewayUrl: () => settings.gatewayUrl,
      baseImage: (runtime) => settings.baseImages[runtime],
      log,
      metrics: options.metrics,
      settings: { ...DEFAULT_RECONCILE_SETTINGS, ...options.reconcile },
    };
    this.controller = new Controller(context, namespace);
  }

  private repositoryOfBuild(build: ModelBuild): ModelRepository | undefined {
    return this.store.get(
      "ModelRepository",
      build.metadata.namespace ?? this.options.settings.namespace,
      build.spec.repository ?? "",
    );
  }

  /**
   * Reads the token Secrets the repositories name (before their first sync). A Secret that
   * cannot be read is logged: its repository's fetch then fails and says so in its status.
   */
  private async loadCredentials(): Promise<void> {
    const namespace = this.options.settings.namespace;
    for (const repository of this.store.list("ModelRepository", namespace)) {
      const name = repository.spec.secretRef?.name;
      if (!name || this.tokens.has(`${namespace}/${name}`)) continue;
      try {
        const secret = await this.options.client.request<{ data?: Record<string, string> }>(
          "GET",
          `/api/v1/namespaces/${namespace}/secrets/${name}`,
          undefined,
          undefined,
          { signal: this.stopping.signal },
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
        if (this.stopping.signal.aborted) return;
        this.options.log(
          `ModelRepository ${repository.metadata.name}: ${
            isNotFound(error)
              ? `Secret ${name} does not exist`
              : `cannot read Secret ${name}: ${(error as Error).message}`
          }`,
        );
      }
    }
  }

  async start(): Promise<void> {
    await this.store.start();
    await this.runtime.start();
    await this.loadCredentials();
    this.stopWatching = this.store.watch((event) => this.onEvent(event));
    this.controller.enqueueAll();
    this.controller.start();
  }

  private onEvent(event: WatchEvent): void {
    this.controller.onEvent(event);
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
    const { log } = this.options;
    this.keysField(`access.${model}`, generateAccessKey).then(
      ({ created }) => {
        if (created) log(`model ${model}: access key created in Secret ${KEYS_SECRET}`);
      },
      (error: Error) => {
        if (!this.stopping.signal.aborted) {
          log(`model ${model}: cannot write its access key: ${error.message}`);
        }
      },
    );
  }

  /**
   * The installation's replica key (`replicas.key` in modelship-keys), made on first use and
   * then kept in memory: every deployment's gateway secret derives from it (replica-secret.ts).
   */
  private replicaKey(): Promise<string> {
    this.replicaKeyValue ??= this.keysField(REPLICA_KEY_FIELD, newReplicaKey).then(
      ({ value }) => value,
    );
    // A failure (the API server away) is not kept: the next rollout asks again.
    this.replicaKeyValue.catch(() => {
      this.replicaKeyValue = undefined;
    });
    return this.replicaKeyValue;
  }

  /**
   * The value of `field` in the Secret modelship-keys; when it has none, `make()`'s, written
   * there first. One at a time: two writers must not race on one Secret.
   */
  private keysField(
    field: string,
    make: () => string,
  ): Promise<{ value: string; created: boolean }> {
    const { client, settings } = this.options;
    const path = `/api/v1/namespaces/${settings.namespace}/secrets`;
    const options = { signal: this.stopping.signal };
    const work = async () => {
      let secret: { data?: Record<string, string> } | undefined;
      try {
        secret = await client.request(
          "GET",
          `${path}/${KEYS_SECRET}`,
          undefined,
          undefined,
          options,
        );
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
      const stored = secret?.data?.[field];
      if (stored) return { value: Buffer.from(stored, "base64").toString("utf8"), created: false };
      const value = make();
      const data = { [field]: Buffer.from(value).toString("base64") };
      if (secret) {
        await client.request(
          "PATCH",
          `${path}/${KEYS_SECRET}`,
          { data },
          "application/merge-patch+json",
          options,
        );
      } else {
        await client.request(
          "POST",
          path,
          {
            apiVersion: "v1",
            kind: "Secret",
            metadata: {
              name: KEYS_SECRET,
              namespace: settings.namespace,
              labels: { [LABEL_MANAGED_BY]: MANAGED_BY },
            },
            type: "Opaque",
            data,
          },
          undefined,
          options,
        );
      }
      return { value, created: true };
    };
    const result = this.keyWrites.then(work);
    this.keyWrites = result.then(
      () => {},
      () => {},
    );
    return result;
  }

  /** Fetches every repository now (the webhook). */
  syncNow(): void {
    for (const repository of this.store.list("ModelRepository")) {
      this.controller.add({
        kind: "ModelRepository",
        namespace: repository.metadata.namespace ?? this.options.settings.namespace,
        name: repository.metadata.name,
      });
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.stopWatching?.();
    await this.controller.stop();
    await this.keyWrites;
    await this.runtime.stopWatching();
    await this.store.stop();
    await this.events.stop();
  }
}
