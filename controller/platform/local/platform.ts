// The local platform, wired: `modelship up` in one process — the git source, the embedded
// store, the builder, the runtime, the gateway, the reconcilers and the admin API. Everything it
// keeps lives in the state directory.
import { createHash } from "node:crypto";
import { chmod, lstat, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { listen } from "../../api/http.ts";
import type { ModelRepository } from "../../api/types.generated.ts";
import { formatName, type NamespacedName } from "../../core/keys.ts";
import { ANNOTATION_ALLOW_REWRITE, ANNOTATION_RESTARTED_AT } from "../../core/labels.ts";
import type { GatewayConfig } from "../../gateway/config.ts";
import { Gateway } from "../../gateway/gateway.ts";
import type { MetricsStore } from "../../metrics/port.ts";
import { DEFAULT_RECONCILE_SETTINGS, type ReconcileContext } from "../../reconcile/context.ts";
import { Controller } from "../../reconcile/controller.ts";
import { ControllerMetrics } from "../../reconcile/metrics.ts";
import { loadChange, type Plan, planChange, repositoryPlanOptions } from "../../reconcile/plan.ts";
import { isRemoteUrl } from "../../source/git.ts";
import { GitSources } from "../../source/git-sources.ts";
import { watchBranch } from "../../source/ref-watch.ts";
import { gatewayConfigFrom } from "../routes.ts";
import { LocalBuilderPort } from "./builder-port.ts";
import { LocalEventRecorder } from "./events.ts";
import { KeyStore } from "./key-store.ts";
import { predictPlan } from "./predict.ts";
import { LocalRuntime } from "./runtime.ts";
import { checkModelUserReads, defaultBuildsDir, type ModelUser, modelUser } from "./sandbox.ts";
import { LocalStore } from "./store.ts";
import { TrafficHistory } from "./traffic.ts";

export interface LocalPlatformOptions {
  stateDir: string;
  repository: {
    url: string;
    branch: string;
    path: string;
    /** For an http(s) URL; kept in memory only. */
    token?: string;
    interval?: string;
    allowRewrite?: boolean;
  };
  host: string;
  gatewayPort: number;
  /** Progress lines for people. */
  log(line: string): void;
  /** The reconcilers' settings (tests shorten them). */
  settings?: Partial<ReconcileContext["settings"]>;
  /** A build still running after this long fails (default 30 minutes). */
  buildDeadlineMs?: number;
  /**
   * Where builds go: `STATE/builds`, or a directory of its own under /var/tmp/modelship when
   * model code runs as a user of its own (this process is root).
   */
  buildsDir?: string;
  /** The metrics store the gateway writes tracked metrics to; none: they are not kept. */
  metricsStore?: MetricsStore;
}

/** What of this installation model code reads: the workers and the build script. */
const MODEL_RUNTIME_FILES = [
  "../../../runtime/python/modelship/worker.py",
  "../../../runtime/r/worker.R",
  "../../../runtime/scripts/local-build.sh",
].map((path) => fileURLToPath(new URL(path, import.meta.url)));

/** The longest path of a Unix socket Linux takes (sun_path is 108 bytes, with its NUL). */
const MAX_SOCKET_PATH = 107;
/** A socket's name in the directory: 12 hex digits and ".sock". */
const SOCKET_NAME_LENGTH = 17;

/**
 * The replicas' socket directory: STATE/sockets, or — when a state directory's path is too long
 * for a socket's — one under the system's temporary directory, named after the state directory.
 * Either way it is made 0700 by start(): the gateway (this process) can connect, no other user.
 */
export function replicaSocketDir(stateDir: string, temporary: string = tmpdir()): string {
  const inState = join(resolve(stateDir), "sockets");
  if (inState.length + 1 + SOCKET_NAME_LENGTH <= MAX_SOCKET_PATH) return inState;
  const id = createHash("sha256").update(resolve(stateDir)).digest("hex").slice(0, 16);
  return join(temporary, `modelship-sockets-${id}`);
}

/**
 * Makes `path` a directory only this process's user may enter, or refuses: one that is a link,
 * or is someone else's (made in /tmp before us, say), could let them reach the replicas.
 */
export async function privateDirectory(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  const stats = await lstat(path);
  const uid = process.getuid?.();
  if (!stats.isDirectory() || (uid !== undefined && stats.uid !== uid)) {
    throw new Error(
      `${path} is not a directory of this user's (uid ${uid}): remove it; modelship makes it, mode 0700`,
    );
  }
  // mkdir leaves an existing directory's mode as it was.
  await chmod(path, 0o700);
}

/** The name of the ModelRepository that `modelship up` creates. */
export const UP_REPOSITORY = "local";
const NAMESPACE = "default";

export class LocalPlatform {
  readonly store: LocalStore;
  readonly runtime: LocalRuntime;
  readonly keys: KeyStore;
  readonly gateway: Gateway;
  readonly controller: Controller;
  readonly builder: LocalBuilderPort;
  /** Who model code runs as (undefined: this process's own user). */
  readonly modelUser: ModelUser | undefined;
  readonly buildsDir: string;
  /** Where the replicas' sockets are: a directory only this process's user may enter. */
  readonly socketDir: string;
  /** Where the gateway keeps tracked metrics (docs/metrics.md); the caller opens and closes it. */
  readonly metricsStore: MetricsStore | undefined;
  /** The controller's metrics (served on the admin API's /metrics). */
  readonly metrics = new Registry();
  /** The last hour of each model's calls and latency, for the dashboard. */
  readonly traffic: TrafficHistory;
  gatewayUrl = "";
  private readonly options: LocalPlatformOptions;
  private readonly sources: GitSources;
  private readonly context: ReconcileContext;
  private refreshScheduled = false;
  private stopWatching: (() => void) | undefined;
  /** Stops watching a local repository's branch (ref-watch.ts). */
  private stopWatchingBranch: (() => void) | undefined;

  constructor(options: LocalPlatformOptions) {
    this.options = options;
    const { stateDir, log } = options;
    this.store = new LocalStore(join(stateDir, "store.json"));
    // The token (MODELSHIP_GIT_TOKEN) is for the repository `up` follows, and kept in memory.
    this.sources = new GitSources(this.store, stateDir, (repository) =>
      options.repository.token && repository.spec.url === options.repository.url
        ? { token: options.repository.token }
        : {},
    );
    this.keys = new KeyStore(join(stateDir, "secrets", "keys.json"));
    this.metricsStore = options.metricsStore;
    this.gateway = new Gateway({
      processMetrics: true,
      log,
      // The replicas' agents run in this process: the gateway calls them without HTTP.
      inProcessReplicas: (url) => this.runtime.inProcessReplica(url),
      ...(options.metricsStore ? { metricsStore: options.metricsStore } : {}),
    });
    this.traffic = new TrafficHistory({ read: () => this.gateway.metricsSnapshot() });
    this.modelUser = modelUser();
    this.socketDir = replicaSocketDir(stateDir);
    this.runtime = new LocalRuntime({
      onChange: (deployment) => {
        this.scheduleGatewayRefresh();
        this.controller.add({ kind: "ModelDeployment", ...deployment });
      },
      socketDir: this.socketDir,
      user: this.modelUser,
      log,
    });
    // With a user of its own, model code cannot even look into the state directory: its builds
    // live elsewhere (sandbox.ts).
    this.buildsDir = options.buildsDir ?? defaultBuildsDir(stateDir, this.modelUser);
    if (this.modelUser) checkModelUserReads(this.modelUser, MODEL_RUNTIME_FILES);
    this.builder = new LocalBuilderPort({
      buildsDir: this.buildsDir,
      user: this.modelUser,
      deadlineMs: options.buildDeadlineMs,
      log,
      sourceOf: (build) =>
        this.sources.named({
          namespace: build.metadata.namespace ?? NAMESPACE,
          name: build.spec.repository ?? UP_REPOSITORY,
        }),
    });
    this.context = {
      store: this.store,
      builder: this.builder,
      runtime: this.runtime,
      sources: this.sources.reader,
      events: new LocalEventRecorder(this.store, log),
      clock: { now: () => new Date() },
      gitSource: (repository) => this.sources.of(repository),
      gatewayUrl: () => this.gatewayUrl,
      baseImage: (runtime) => `local/${runtime}`,
      log,
      metrics: new ControllerMetrics(this.metrics),
      settings: { ...DEFAULT_RECONCILE_SETTINGS, ...options.settings },
    };
    this.controller = new Controller(this.context, NAMESPACE);
  }

  async start(): Promise<void> {
    const { options } = this;
    await privateDirectory(this.socketDir);
    this.gatewayUrl = await listen(this.gateway.server, options.host, options.gatewayPort);
    this.stopWatching = this.store.watch((event) => {
      this.controller.onEvent(event);
      const kind = event.object.kind;
      if (kind === "Model" || kind === "ModelDeployment") this.scheduleGatewayRefresh();
    });
    const { repository } = options;
    await this.store.apply<ModelRepository>({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelRepository",
      metadata: {
        name: UP_REPOSITORY,
        namespace: NAMESPACE,
        ...(repository.allowRewrite ? { annotations: { [ANNOTATION_ALLOW_REWRITE]: "true" } } : {}),
      },
      spec: {
        url: repository.url,
        branch: repository.branch,
        path: repository.path,
        ...(repository.interval ? { interval: repository.interval } : {}),
      },
    });
    // A repository on this machine: a commit is seen when its ref moves, not at the next poll.
    if (!isRemoteUrl(repository.url)) {
      this.stopWatchingBranch = watchBranch(resolve(repository.url), repository.branch, () =>
        this.syncNow(),
      );
    }
    // A restart picks up where the last run was: every object gets a pass.
    this.controller.enqueueAll();
    this.refreshGateway();
    this.controller.start();
    this.traffic.start();
  }

  /**
   * `modelship rollout restart`: a new restartedAt on the deployment, so a new rollout of the
   * same build replaces every replica one by one. Undefined when there is no such deployment.
   */
  async restart(deployment: NamespacedName): Promise<string | undefined> {
    if (!this.store.get("ModelDeployment", deployment.namespace, deployment.name)) return undefined;
    const restartedAt = new Date().toISOString();
    await this.store.annotate("ModelDeployment", deployment.namespace, deployment.name, {
      [ANNOTATION_RESTARTED_AT]: restartedAt,
    });
    return restartedAt;
  }

  /**
   * What the sync will do when the followed branch moves from `base` to `head` (commits, refs):
   * `modelship plan` with this store's builds, so a revert names the build the controller has.
   * `fetch` names refs to fetch first from a URL repository (a pull request's head); `predict`
   * runs each changed Model's examples through both builds (plan --predict), builds kept below
   * the builds directory by build key.
   */
  async plan(
    base: string,
    head: string,
    options: { signal?: AbortSignal; fetch?: string[]; predict?: boolean } = {},
  ): Promise<Plan> {
    const repository = this.store.get("ModelRepository", NAMESPACE, UP_REPOSITORY);
    if (!repository) throw new Error("modelship up has not made its ModelRepository yet");
    const refs = { base, head, ...(options.fetch ? { fetch: options.fetch } : {}) };
    const planOptions = await repositoryPlanOptions(this.context, repository, refs, options);
    const change = await loadChange(planOptions);
    const plan = await planChange(planOptions, change);
    if (options.predict) {
      plan.predictions = await predictPlan(plan, change, {
        source: planOptions.source,
        buildsDir: join(this.buildsDir, "plan"),
        user: this.modelUser,
        log: (line) => this.options.log(`plan: ${line}`),
      });
    }
    return plan;
  }

  /**
   * A file of a repository at a commit already fetched (the dashboard's view of a manifest);
   * undefined when there is no such file or commit.
   */
  async fileAt(repository: string, commit: string, path: string): Promise<string | undefined> {
    try {
      return await this.sources
        .named({ namespace: NAMESPACE, name: repository })
        .tree(commit)
        .readText(path);
    } catch {
      // An unknown repository or commit: the same answer as a missing file.
      return undefined;
    }
  }

  /** Fetches the repositories now (the webhook, `POST /hooks/git`). */
  syncNow(): void {
    for (const repository of this.store.list("ModelRepository")) {
      this.controller.add({
        kind: "ModelRepository",
        namespace: repository.metadata.namespace ?? NAMESPACE,
        name: repository.metadata.name,
      });
    }
  }

  private scheduleGatewayRefresh(): void {
    if (this.refreshScheduled) return;
    this.refreshScheduled = true;
    // Several changes in one tick make one new gateway configuration.
    queueMicrotask(() => {
      this.refreshScheduled = false;
      this.refreshGateway();
    });
  }

  /** Feeds the gateway (its registry port) from the store, the runtime and the keys. */
  refreshGateway(): void {
    try {
      this.gateway.apply(this.gatewayConfig());
    } catch (error) {
      // The gateway keeps its previous configuration; the next change tries again.
      this.options.log(`gateway: kept the previous configuration: ${(error as Error).message}`);
    }
  }

  gatewayConfig(): GatewayConfig {
    return gatewayConfigFrom({
      store: this.store,
      readyReplicas: (deployment) =>
        this.runtime
          .replicas(deployment)
          .filter((replica) => replica.ready)
          .map(({ id, url }) => ({ id, url })),
      // The key file keeps "namespace/model" keys.
      accessKeyHash: (model) => this.keys.accessKeyHash(formatName(model)),
      apiKeys: this.keys.apiKeys(),
    });
  }

  async stop(): Promise<void> {
    this.stopWatching?.();
    this.stopWatchingBranch?.();
    this.traffic.stop();
    await this.controller.stop();
    await this.builder.stop();
    await this.runtime.stopAll();
    await this.gateway.close();
  }
}
