// The local platform, wired: `modelship up` in one process — the git source, the embedded
// store, the builder, the runtime, the gateway, the reconcile queue and the admin API
// (DESIGN §4). Everything it keeps lives in the state directory.
import { existsSync } from "node:fs";
import { chmod, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Kind } from "../../api/schemas.ts";
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import { listen } from "../../cli/serve.ts";
import type { GatewayConfig } from "../../gateway/config.ts";
import { Gateway } from "../../gateway/gateway.ts";
import { gatewayConfigFrom } from "../../gateway/routes.ts";
import type { ReconcileContext } from "../../reconcile/context.ts";
import { createControllerQueue, keysToWake } from "../../reconcile/controller.ts";
import { formatKey, type WorkQueue } from "../../reconcile/queue.ts";
import type { GitSource } from "../../source/git.ts";
import { GitSources } from "../../source/git-sources.ts";
import { ANNOTATION_ALLOW_REWRITE } from "../../source/sync.ts";
import type { Builder, BuildProgress, WatchEvent } from "../ports.ts";
import { LocalBuilder } from "./builder.ts";
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

  async start(build: ModelBuild): Promise<void> {
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

  async status(build: ModelBuild): Promise<BuildProgress | undefined> {
    const running = this.builder.status(this.nameOf(build));
    if (running) return running;
    const image = await LocalBuilder.completedImage(this.outputDir(build));
    return image ? { phase: "Succeeded", image } : undefined;
  }

  async logs(build: ModelBuild): Promise<string> {
    return this.builder.logs(this.nameOf(build));
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
  readonly queue: WorkQueue;
  readonly builder: LocalBuilderPort;
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
      onChange: (key) => {
        this.scheduleGatewayRefresh();
        const [namespace, name] = key.split("/");
        this.queue.add(
          formatKey({
            kind: "ModelDeployment",
            namespace: namespace ?? NAMESPACE,
            name: name ?? key,
          }),
        );
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
      clock: { now: () => new Date() },
      gatewayUrl: () => this.gatewayUrl,
      baseImage: (runtime) => `local/${runtime}`,
      log,
    };
    this.queue = createControllerQueue(context, (repository) => this.sources.of(repository));
  }

  async start(): Promise<void> {
    const { options } = this;
    this.gatewayUrl = await listen(this.gateway.server, options.host, options.gatewayPort);
    this.stopWatching = this.store.watch((event) => this.onEvent(event));
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
    for (const kind of ["ModelRepository", "Model", "ModelBuild", "ModelDeployment"] as Kind[]) {
      for (const object of this.store.list(kind)) this.enqueue(object.kind, object.metadata);
    }
    this.refreshGateway();
    this.queue.start();
  }

  /** Fetches the repositories now (the webhook, `POST /hooks/git`). */
  syncNow(): void {
    for (const repository of this.store.list("ModelRepository"))
      this.enqueue("ModelRepository", repository.metadata);
  }

  private enqueue(kind: string, metadata: { namespace?: string; name: string }): void {
    this.queue.add(
      formatKey({ kind, namespace: metadata.namespace ?? NAMESPACE, name: metadata.name }),
    );
  }

  private onEvent(event: WatchEvent): void {
    for (const key of keysToWake(event, this.store, NAMESPACE)) this.queue.add(key);
    const kind = event.object.kind;
    if (kind === "Model" || kind === "ModelDeployment") this.scheduleGatewayRefresh();
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
      readyReplicas: (key) =>
        this.runtime
          .replicas(key)
          .filter((replica) => replica.ready)
          .map(({ id, url }) => ({ id, url })),
      accessKeyHash: (model) => this.keys.accessKeyHash(model),
      apiKeys: this.keys.apiKeys(),
    });
  }

  async stop(): Promise<void> {
    this.stopWatching?.();
    await this.queue.stop();
    await this.builder.stop();
    await this.runtime.stopAll();
    await this.gateway.close();
  }
}
