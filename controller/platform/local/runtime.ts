// The local platform's Runtime: supervises replica agents for each ModelDeployment and
// replaces them one by one on a rollout — start a new replica, wait until it is ready (the
// gateway starts using it), then take one old replica out of the gateway and stop it once its
// call in flight is done. A new build that cannot load stops the rollout; the old replicas keep
// serving. Agents run in this process, each on its own Unix socket in a directory only this
// process's user may enter: the gateway is the only way to a replica (docs/security.md). Their
// workers are processes, run as the model user with the model's environment alone. The gateway
// in this process calls them without the socket (inProcessReplica): the socket serves the
// agents' other endpoints, and anyone else allowed in the directory.
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { join } from "node:path";
import { closeServer, listenOnSocket } from "../../api/http.ts";
import { formatName, type NamespacedName } from "../../core/keys.ts";
import type {
  CallOptions,
  ReplicaInfo,
  RolloutSpec,
  RolloutStatus,
  Runtime,
} from "../../core/ports.ts";
import { parseQuantity } from "../../core/quantity.ts";
import { ReplicaAgent, workerEnvironment } from "../../replica/agent.ts";
import { createReplicaEndpoint, type ReplicaEndpoint } from "../../replica/agent-server.ts";
import { PreloadedParents } from "../../replica/preloaded-parents.ts";
import { servesOf } from "../serves.ts";
import { type ModelUser, modelEnvironment } from "./sandbox.ts";

/** How long a new replica may take to load its function before the rollout is called failed. */
const READY_TIMEOUT_MS = 120_000;

export interface LocalReplica {
  id: string;
  deploymentId: number;
  build: number;
  agent: ReplicaAgent;
  server: Server;
  /** Its predict, for the gateway in this process. */
  predict: ReplicaEndpoint["predict"];
  url: string;
  /** Taken out of the gateway, finishing its last call. */
  stopping: boolean;
  /** Lets go of the preloaded parent its workers are forked from, if any. */
  releaseParent: () => void;
}

interface DeploymentState {
  spec: RolloutSpec;
  replicas: LocalReplica[];
  /**
   * Why a rollout failed, and which: a rollout that fails after a newer one was asked for must
   * not be taken for the newer one's failure.
   */
  failure: { deploymentId: number; message: string } | undefined;
  /** Rollouts of one deployment run one after another. */
  work: Promise<void>;
  /** stop() cuts short a rollout waiting for a replica to load. */
  abort: AbortController;
}

/** Where a local build keeps its code and environment: `local:<dir>`, see docs/builds.md. */
export function buildDirectory(image: string | undefined): string {
  if (!image?.startsWith("local:")) {
    throw new Error(`the local runtime runs local builds only, not "${image ?? "(no image)"}"`);
  }
  return image.slice("local:".length);
}

/**
 * A worker's whole environment: the essentials of this process's (modelEnvironment), the build's
 * venv or R library in front, and the deployment's `env`. HOME is the build's directory, as it
 * was for the build script.
 */
export function replicaEnvironment(
  spec: RolloutSpec,
  directory: string,
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  return buildEnvironment(spec.build.spec.runtime, spec.env, directory, from);
}

/** The environment of a worker of the build in `directory`: its venv or R library, then `env`. */
export function buildEnvironment(
  runtime: "python3" | "r",
  env: Record<string, string> | undefined,
  directory: string,
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const base: Record<string, string> =
    runtime === "python3"
      ? {
          VIRTUAL_ENV: join(directory, "venv"),
          PATH: `${join(directory, "venv/bin")}:${from.PATH ?? ""}`,
        }
      : { R_LIBS_USER: join(directory, "rlib") };
  return modelEnvironment({ ...base, ...env }, directory, from);
}

/** CDSW-like replica ids: `<deployment>-<build>-<deploymentId>-<random>`. */
export function replicaId(spec: RolloutSpec): string {
  const name = spec.deployment.name;
  return `${name}-${spec.build.spec.number}-${spec.deploymentId}-${randomBytes(3).toString("hex")}`;
}

export class LocalRuntime implements Runtime {
  private readonly deployments = new Map<string, DeploymentState>();
  /** Every replica running, by URL: the gateway in this process calls them directly. */
  private readonly byUrl = new Map<string, LocalReplica>();
  /** The resources line each deployment was last told of (resourcesNote). */
  private readonly resourcesSaid = new Map<string, string>();
  private readonly onChange: (deployment: NamespacedName) => void;
  private readonly log: (line: string) => void;

  private readonly socketDir: string;
  private readonly user: ModelUser | undefined;
  /** Python replicas are forked from one preloaded parent per build and environment. */
  private readonly parents: PreloadedParents;

  /**
   * `onChange` is called whenever a deployment's replicas or their readiness change. Replicas
   * listen in `socketDir`, which must be a directory only this process's user may enter; their
   * workers run as `user` (undefined: this process's user).
   */
  constructor(options: {
    onChange: (deployment: NamespacedName) => void;
    socketDir: string;
    user?: ModelUser | undefined;
    log?: (line: string) => void;
  }) {
    this.onChange = options.onChange;
    this.socketDir = options.socketDir;
    this.user = options.user;
    // Not in socketDir: the parents and launchers run as the model user, who may not enter it.
    this.parents = new PreloadedParents();
    this.log = options.log ?? (() => {});
  }

  async apply(spec: RolloutSpec, _options?: CallOptions): Promise<void> {
    const key = formatName(spec.deployment);
    let state = this.deployments.get(key);
    if (
      state &&
      state.spec.deploymentId === spec.deploymentId &&
      state.spec.replicas === spec.replicas
    ) {
      return;
    }
    const said = resourcesNote(spec.resources);
    if (said && this.resourcesSaid.get(key) !== said) {
      // Once per deployment and setting, never silently: what the spec asks and up cannot do.
      this.resourcesSaid.set(key, said);
      this.log(`deployment ${key}: ${said}`);
    }
    if (!state) {
      state = {
        spec,
        replicas: [],
        failure: undefined,
        work: Promise.resolve(),
        abort: new AbortController(),
      };
      this.deployments.set(key, state);
    }
    state.spec = spec;
    const current = state;
    current.work = current.work
      .then(() => this.converge(current))
      .catch((error: Error) => {
        current.failure = { deploymentId: spec.deploymentId, message: error.message };
        this.onChange(spec.deployment);
      });
  }

  status(deployment: NamespacedName): RolloutStatus | undefined {
    const state = this.deployments.get(formatName(deployment));
    if (!state) return undefined;
    const live = state.replicas.filter((replica) => !replica.stopping);
    const current = live.filter((replica) => replica.deploymentId === state.spec.deploymentId);
    const readyReplicas = current.filter((replica) => replica.agent.ready).length;
    return {
      readyReplicas,
      servingReplicas: live.filter((replica) => replica.agent.ready).length,
      replicas: live.length,
      complete:
        live.length === current.length &&
        current.length === state.spec.replicas &&
        readyReplicas === state.spec.replicas,
      ...(state.failure?.deploymentId === state.spec.deploymentId
        ? { failure: state.failure.message }
        : {}),
    };
  }

  replicas(deployment: NamespacedName): ReplicaInfo[] {
    const state = this.deployments.get(formatName(deployment));
    if (!state) return [];
    return state.replicas.map((replica) => ({
      id: replica.id,
      deploymentId: replica.deploymentId,
      build: replica.build,
      ready: replica.agent.ready && !replica.stopping,
      ...(replica.agent.notReadyReason ? { reason: replica.agent.notReadyReason } : {}),
      url: replica.url,
      stats: { ...replica.agent.stats },
    }));
  }

  /** The replica at `url`, to be called in this process; undefined once it stopped. */
  inProcessReplica(url: string): Pick<LocalReplica, "predict"> | undefined {
    return this.byUrl.get(url);
  }

  /** The agents themselves, for logs. */
  agents(deployment: NamespacedName): LocalReplica[] {
    return [...(this.deployments.get(formatName(deployment))?.replicas ?? [])];
  }

  async stop(deployment: NamespacedName, _options?: CallOptions): Promise<void> {
    const key = formatName(deployment);
    const state = this.deployments.get(key);
    // Started again later, it is told of its resources again.
    this.resourcesSaid.delete(key);
    if (!state) return;
    this.deployments.delete(key);
    state.abort.abort();
    await state.work;
    await Promise.all(state.replicas.map((replica) => this.stopReplica(replica, state)));
  }

  /** Locally there is no history to keep: stopped is stopped. */
  async pause(deployment: NamespacedName, options?: CallOptions): Promise<boolean> {
    const running = this.deployments.has(formatName(deployment));
    await this.stop(deployment, options);
    return running;
  }

  async stopAll(): Promise<void> {
    await Promise.all(
      [...this.deployments.values()].map((state) => this.stop(state.spec.deployment)),
    );
    await this.parents.stopAll();
  }

  /** Brings the replicas to the state's spec, one replica at a time. */
  private async converge(state: DeploymentState): Promise<void> {
    const spec = state.spec;
    const key = formatName(spec.deployment);
    const isCurrent = (replica: LocalReplica) =>
      replica.deploymentId === spec.deploymentId && !replica.stopping;
    if (state.replicas.length === 0 && spec.previous) {
      // A restart in the middle of a rollout (or after one failed): bring back what served
      // before, so that the new rollout replaces it as it would have, or leaves it serving.
      await this.restorePrevious(state, spec, spec.previous);
    }
    for (;;) {
      if (state.spec !== spec || !this.deployments.has(key)) return; // a newer spec takes over
      const current = state.replicas.filter(isCurrent);
      const old = state.replicas.filter((replica) => !isCurrent(replica) && !replica.stopping);
      if (current.length < spec.replicas) {
        const replica = await this.startReplica(spec);
        state.replicas.push(replica);
        this.onChange(spec.deployment);
        try {
          await readyWithin(replica.agent, READY_TIMEOUT_MS, state.abort.signal);
        } catch (error) {
          if (state.abort.signal.aborted) {
            await this.stopReplica(replica, state);
            return;
          }
          const message = `replica ${replica.id} of build ${spec.build.spec.number} did not become ready: ${(error as Error).message}`;
          state.failure = { deploymentId: spec.deploymentId, message };
          this.log(`deployment ${key}: ${message}`);
          await this.stopReplica(replica, state);
          return;
        }
        this.onChange(spec.deployment);
        const ready = state.replicas.filter((each) => isCurrent(each) && each.agent.ready).length;
        this.log(
          `deployment ${key}: rollout ${spec.deploymentId} of build ${spec.build.spec.number}: ${ready}/${spec.replicas} ready`,
        );
        const retired = old[0];
        if (retired) await this.stopReplica(retired, state);
        continue;
      }
      const surplus = current.slice(spec.replicas);
      const leftovers = [...surplus, ...old];
      if (leftovers.length === 0) return;
      for (const replica of leftovers) await this.stopReplica(replica, state);
    }
  }

  private async restorePrevious(
    state: DeploymentState,
    spec: RolloutSpec,
    previous: NonNullable<RolloutSpec["previous"]>,
  ): Promise<void> {
    const previousSpec: RolloutSpec = { ...spec, ...previous, previous: undefined };
    const started = await Promise.all(
      Array.from({ length: spec.replicas }, () => this.startReplica(previousSpec)),
    );
    state.replicas.push(...started);
    this.log(
      `deployment ${formatName(spec.deployment)}: restoring rollout ${previous.deploymentId} while ${spec.deploymentId} rolls out`,
    );
    await Promise.allSettled(
      started.map((replica) => readyWithin(replica.agent, READY_TIMEOUT_MS, state.abort.signal)),
    );
    this.onChange(spec.deployment);
  }

  private async startReplica(spec: RolloutSpec): Promise<LocalReplica> {
    const directory = buildDirectory(spec.build.status?.image);
    const env = replicaEnvironment(spec, directory);
    const identity = this.user ? { uid: this.user.uid, gid: this.user.gid } : {};
    const memoryLimitBytes =
      spec.resources?.memory === undefined ? undefined : parseQuantity(spec.resources.memory);
    // The file is loaded once, by the parent, with the deployment's environment (what a
    // replica adds, its ids, its workers get when they are forked).
    const parent =
      spec.build.spec.runtime === "python3"
        ? await this.parents.acquire({
            file: spec.build.spec.file,
            functionName: spec.build.spec.function,
            cwd: join(directory, "src"),
            env: workerEnvironment(process.env, env, false),
            ...identity,
            ...(memoryLimitBytes === undefined ? {} : { memoryLimitBytes }),
          })
        : undefined;
    const agent: ReplicaAgent = new ReplicaAgent({
      replicaId: replicaId(spec),
      serves: servesOf(spec),
      runtime: spec.build.spec.runtime,
      file: spec.build.spec.file,
      functionName: spec.build.spec.function,
      directory: join(directory, "src"),
      env,
      ...identity,
      timeoutSeconds: spec.timeoutSeconds,
      ...(memoryLimitBytes === undefined ? {} : { memoryLimitBytes }),
      ...(parent ? { forkServer: parent.socketPath } : {}),
      onStateChange: () => this.onChange(spec.deployment),
    });
    // As large a body as the gateway lets through for this model.
    const { server, predict } = createReplicaEndpoint(
      agent,
      spec.maxRequestBytes === undefined ? {} : { bodyLimitBytes: spec.maxRequestBytes },
    );
    // A short random name: a socket's path must stay under 108 bytes, whatever the ids.
    const url = await listenOnSocket(
      server,
      join(this.socketDir, `${randomBytes(6).toString("hex")}.sock`),
    );
    agent.start();
    const replica: LocalReplica = {
      id: agent.options.replicaId,
      deploymentId: spec.deploymentId,
      build: spec.build.spec.number,
      agent,
      server,
      predict,
      url,
      stopping: false,
      releaseParent: () => parent?.release(),
    };
    this.byUrl.set(url, replica);
    return replica;
  }

  /** Out of the gateway first, then the call in flight finishes, then the worker stops. */
  private async stopReplica(replica: LocalReplica, state: DeploymentState): Promise<void> {
    replica.stopping = true;
    this.onChange(state.spec.deployment);
    const closed = closeServer(replica.server);
    await replica.agent.stop(replica.agent.options.timeoutSeconds * 1000);
    replica.server.closeAllConnections();
    await closed;
    this.byUrl.delete(replica.url);
    replica.releaseParent();
    state.replicas = state.replicas.filter((other) => other !== replica);
    this.onChange(state.spec.deployment);
  }
}

function readyWithin(agent: ReplicaAgent, ms: number, signal: AbortSignal): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`not ready after ${ms / 1000} s: ${agent.notReadyReason}`)),
      ms,
    );
    onAbort = () => reject(new Error("the deployment is stopping"));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([agent.whenReady(), timeout]).finally(() => {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener("abort", onAbort);
  });
}

/**
 * What `modelship up` makes of a deployment's resources, in a line for the console: memory is
 * enforced per replica (a data-size rlimit: cgroups are not ours to write here), CPU is not,
 * and there are no GPUs. Undefined when nothing is asked for.
 */
export function resourcesNote(resources: RolloutSpec["resources"]): string | undefined {
  if (!resources) return undefined;
  const parts: string[] = [];
  if (resources.memory !== undefined) {
    parts.push(`memory ${resources.memory} is enforced per replica (as an allocation limit)`);
  }
  if (resources.cpu !== undefined) {
    parts.push(`cpu ${resources.cpu} is not enforced (replicas share this machine's CPUs)`);
  }
  if (resources.gpu) {
    parts.push(`gpu ${resources.gpu} is not available (no GPUs are given to local replicas)`);
  }
  return parts.length > 0 ? `under modelship up, ${parts.join("; ")}` : undefined;
}
