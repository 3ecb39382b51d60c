// The local platform, wired: `modelship up` in one process — the git source, the embedded
// store, the builder, the runtime, the gateway, the reconcilers and the admin API. Everything it
// keeps lives in the state directory.
import { existsSync } from "node:fs";
import { chmod, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Registry } from "prom-client";
import { listen } from "../../api/http.ts";
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import { formatName } from "../../core/keys.ts";
import { ANNOTATION_ALLOW_REWRITE } from "../../core/labels.ts";
import type { Builder, BuildProgress, CallOptions } from "../../core/ports.ts";
import type { GatewayConfig } from "../../gateway/config.ts";
import { Gateway } from "../../gateway/gateway.ts";
import { DEFAULT_RECONCILE_SETTINGS, type ReconcileContext } from "../../reconcile/context.ts";
import { Controller } from "../../reconcile/controller.ts";
import { ControllerMetrics } from "../../reconcile/metrics.ts";
import type { GitSource } from "../../source/git.ts";
import { GitSources } from "../../source/git-sources.ts";
import { gatewayConfigFrom } from "../routes.ts";
import { LocalBuilder } from "./builder.ts";
import { LocalEventRecorder } from "./events.ts";
import { KeyStore } from "./key-store.ts";
import { LocalRuntime } from "./runtime.ts";
import { LocalStore } from "./store.ts";

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
}

/** The name of the ModelRepository that `modelship up` creates. */
export const UP_REPOSITORY = "local";
const NAMESPACE = "default";

/** Builds in the state directory, from a source tree exported from git at the build's commit. */
class LocalBuilderPort implements Builder {
  private readonly builder = new LocalBuilder();
  private readonly stateDir: string;
  private readonly sourceOf: (build: ModelBuild) => GitSource;

  constructor(stateDir: string, sourceOf: (build: ModelBuild) => GitSource) {
    this.stateDir = stateDir;
    this.sourceOf = sourceOf;
  }

  private nameOf(build: ModelBuild): string {
    return `${build.metadata.namespace ?? NAMESPACE}/${build.metadata.name}`;
  }

  outputDir(build: ModelBuild): string {
    return join(
      this.stateDir,
      "builds",
      build.metadata.namespace ?? NAMESPACE,
      build.metadata.name,
    );
  }

  async start(build: ModelBuild, _options?: CallOptions): Promise<void> {
    const name = this.nameOf(build);
    if (this.builder.status(name)) return;
    const outputDir = this.outputDir(build);
    // What a build interrupted by a restart left behind is not a build: start afresh.
    await removeTree(outputDir);
    const sourceDir = join(
      this.stateDir,
      "work",
      `${build.metadata.namespace ?? NAMESPACE}-${build.metadata.name}`,
    );
    await removeTree(sourceDir);
    await this.sourceOf(build).exportTree(build.spec.commit, build.spec.sourcePath, sourceDir);
    this.builder.start({
      name,
      runtime: build.spec.runtime,
      sourceDir,
      outputDir,
      ...(build.spec.buildScript ? { buildScript: build.spec.buildScript } : {}),
    });
  }

  async status(build: ModelBuild, _options?: CallOptions): Promise<BuildProgress | undefined> {
    const running = this.builder.status(this.nameOf(build));
    if (running) return running;
    const image = await LocalBuilder.completedImage(this.outputDir(build));
    return image ? { phase: "Succeeded", image } : undefined;
  }

  async logs(build: ModelBuild, _options?: CallOptions): Promise<string> {
    return this.builder.logs(this.nameOf(build));
  }

  /** Frees a collected build: its directory (a venv is tens of MB) and its log. */
  async remove(build: ModelBuild, _options?: CallOptions): Promise<void> {
    this.builder.forget(this.nameOf(build));
    await removeTree(this.outputDir(build));
  }

  stop(): Promise<void> {
    return this.builder.stop();
  }
}

/** Removes a directory a build made read-only. */
async function removeTree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  await makeWritable(path);
  await rm(path, { recursive: true, force: true });
}

async function makeWritable(path: string): Promise<void> {
  await chmod(path, 0o755).catch(() => {});
  for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) await makeWritable(join(path, entry.name));
  }
}

export class LocalPlatform {
  readonly store: LocalStore;
  readonly runtime: LocalRuntime;
  readonly keys: KeyStore;
  readonly gateway: Gateway;
  readonly controller: Controller;
  readonly builder: LocalBuilderPort;
  /** The controller's metrics (served on the admin API's /metrics). */
  readonly metrics = new Registry();
  gatewayUrl = "";
  private readonly options: LocalPlatformOptions;
  private readonly sources: GitSources;
  private refreshScheduled = false;
  private stopWatching: (() => void) | undefined;

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
    this.gateway = new Gateway({ processMetrics: true });
    this.runtime = new LocalRuntime({
      onChange: (deployment) => {
        this.scheduleGatewayRefresh();
        this.controller.add({ kind: "ModelDeployment", ...deployment });
      },
      log,
    });
    this.builder = new LocalBuilderPort(stateDir, (build) =>
      this.sources.named({
        namespace: build.metadata.namespace ?? NAMESPACE,
        name: build.spec.repository ?? UP_REPOSITORY,
      }),
    );
    const context: ReconcileContext = {
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
    this.controller = new Controller(context, NAMESPACE);
  }

  async start(): Promise<void> {
    const { options } = this;
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
    // A restart picks up where the last run was: every object gets a pass.
    this.controller.enqueueAll();
    this.refreshGateway();
    this.controller.start();
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
    await this.controller.stop();
    await this.builder.stop();
    await this.runtime.stopAll();
    await this.gateway.close();
  }
}
