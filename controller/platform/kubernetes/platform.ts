// The Kubernetes platform, wired for `modelship controller`: the same reconcilers as `modelship
// up`, over the API server. The git source runs in the controller, from each ModelRepository's
// URL and token Secret.
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import { ANNOTATION_REQUESTED_AT, LABEL_MANAGED_BY, MANAGED_BY } from "../../core/labels.ts";
import type { CallOptions, WatchEvent } from "../../core/ports.ts";
import { generateAccessKey } from "../../gateway/keys.ts";
import { DEFAULT_RECONCILE_SETTINGS, type ReconcileContext } from "../../reconcile/context.ts";
import { Controller } from "../../reconcile/controller.ts";
import type { ControllerMetrics } from "../../reconcile/metrics.ts";
import { type Plan, planForRepository } from "../../reconcile/plan.ts";
import { type GitCredentials, GitSources } from "../../source/git-sources.ts";
import { KanikoBuilder } from "./builder.ts";
import { customCollectionPath, customPath, isNotFound, type KubeClient } from "./client.ts";
import { KubeEventRecorder } from "./events.ts";
import { KEYS_SECRET } from "./gateway-feed.ts";
import type { WatchedNamespaces } from "./informer.ts";
import { newReplicaKey, REPLICA_KEY_FIELD } from "./replica-secret.ts";
import { KubeRuntime } from "./runtime.ts";
import { type KubernetesSettings, watchedNamespaces } from "./settings.ts";
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

/**
 * Asks the leader to fetch every ModelRepository it follows now, through the API server: a
 * new `modelship.dev/requestedAt` on each wakes its reconciler wherever the leader runs. What a
 * standby replica does with the git webhook. Resolves to how many repositories it asked for.
 */
export async function requestSync(
  client: KubeClient,
  watched: WatchedNamespaces,
  now: Date,
  options: CallOptions = {},
): Promise<number> {
  const collections =
    watched === "all"
      ? [customCollectionPath("ModelRepository", undefined)]
      : watched.map((namespace) => customCollectionPath("ModelRepository", namespace));
  const repositories: ModelRepository[] = [];
  for (const collection of collections) {
    const list = await client.request<{ items: ModelRepository[] }>(
      "GET",
      collection,
      undefined,
      undefined,
      options,
    );
    repositories.push(...list.items);
  }
  for (const repository of repositories) {
    await client.request(
      "PATCH",
      customPath(
        "ModelRepository",
        repository.metadata.namespace ?? "default",
        repository.metadata.name,
      ),
      { metadata: { annotations: { [ANNOTATION_REQUESTED_AT]: now.toISOString() } } },
      "application/merge-patch+json",
      options,
    );
  }
  return repositories.length;
}

export class KubernetesPlatform {
  readonly store: KubeStore;
  private readonly context: ReconcileContext;
  readonly runtime: KubeRuntime;
  readonly builder: KanikoBuilder;
  readonly controller: Controller;
  private readonly options: KubernetesPlatformOptions;
  private readonly sources: GitSources;
  private readonly events: KubeEventRecorder;
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
    const watched = watchedNamespaces(settings);
    this.store = new KubeStore(client, namespace, log, settings.informers, watched);
    // Credentials come from the Secret a repository names, read at each fetch.
    this.sources = new GitSources(this.store, options.cacheDir, (repository, callOptions) =>
      this.readCredentials(repository, callOptions),
    );
    this.runtime = new KubeRuntime(
      client,
      namespace,
      (deployment) => this.controller.add({ kind: "ModelDeployment", ...deployment }),
      {
        log,
        timings: settings.informers,
        replicaKey: () => this.replicaKey(),
        imagePullSecrets: settings.imagePullSecrets,
        watched,
      },
    );
    this.builder = new KanikoBuilder(client, settings, {
      repositoryOf: (build) => this.repositoryOfBuild(build),
      credentialsOf: (repository, callOptions) => this.readCredentials(repository, callOptions),
      // A change to a build's Job runs its reconciler: builds are watched, not polled.
      onChange: (build) => this.controller.add({ kind: "ModelBuild", ...build }),
      log,
      timings: settings.informers,
    });
    this.events = new KubeEventRecorder(client, log, { namespace });
    this.context = {
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
      settings: {
        ...DEFAULT_RECONCILE_SETTINGS,
        // The Job watch wakes a build's reconciler; this is the net under it (a missed event).
        buildPollMs: 10_000,
        ...options.reconcile,
      },
    };
    this.controller = new Controller(this.context, namespace);
  }

  /**
   * What the sync of `repository` will do when its branch moves from `base` to `head`, with this
   * cluster's builds and base images; `fetch` names refs to fetch first (a pull request's head).
   */
  plan(
    repository: ModelRepository,
    refs: { base: string; head: string; fetch?: string[] },
    options: { signal?: AbortSignal } = {},
  ): Promise<Plan> {
    return planForRepository(this.context, repository, refs, options);
  }

  private repositoryOfBuild(build: ModelBuild): ModelRepository | undefined {
    return this.store.get(
      "ModelRepository",
      build.metadata.namespace ?? this.options.settings.namespace,
      build.spec.repository ?? "",
    );
  }

  /**
   * The credentials in the Secret a repository names (`token`, or `username` and `password`),
   * read at each use: a rotated token is used on the next fetch, with no restart. A Secret that
   * cannot be read fails the fetch, and the repository's status says why.
   */
  private async readCredentials(
    repository: ModelRepository,
    options: CallOptions = {},
  ): Promise<GitCredentials> {
    const name = repository.spec.secretRef?.name;
    if (!name) return {};
    const namespace = repository.metadata.namespace ?? this.options.settings.namespace;
    const signal = options.signal
      ? AbortSignal.any([options.signal, this.stopping.signal])
      : this.stopping.signal;
    let secret: { data?: Record<string, string> };
    try {
      secret = await this.options.client.request(
        "GET",
        `/api/v1/namespaces/${namespace}/secrets/${encodeURIComponent(name)}`,
        undefined,
        undefined,
        { signal },
      );
    } catch (error) {
      throw new Error(
        isNotFound(error)
          ? `the Secret ${name} (spec.secretRef) does not exist in namespace ${namespace}`
          : `cannot read the Secret ${name} (spec.secretRef): ${(error as Error).message}`,
      );
    }
    const decode = (key: string) =>
      secret.data?.[key] ? Buffer.from(secret.data[key], "base64").toString("utf8") : undefined;
    const token = decode("token") ?? decode("password");
    const username = decode("username");
    return { ...(token ? { token } : {}), ...(username ? { username } : {}) };
  }

  async start(): Promise<void> {
    await this.store.start();
    await this.runtime.start();
    await this.builder.startWatching();
    this.stopWatching = this.store.watch((event) => this.onEvent(event));
    this.controller.enqueueAll();
    this.controller.start();
  }

  private onEvent(event: WatchEvent): void {
    this.controller.onEvent(event);
    const object = event.object;
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
    await this.builder.stopWatching();
    await this.store.stop();
    await this.events.stop();
  }
}
