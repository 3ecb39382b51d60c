// What the forge hears of the syncs, as Flux's notification-controller tells it: a commit status
// `modelship/sync/<namespace>/<name>` on every commit the sync applied or refused, and a deployment per synced
// commit whose statuses go in_progress → success (everything it declares serves) or failure
// (a deployment stalled). The calls return at once; what they send is queued and sent one
// request after another, so a slow or failing forge never delays or fails a sync.
import type { ForgeMetrics } from "./metrics.ts";
import type { Forge } from "./port.ts";

export interface SyncedCommit {
  /** The ModelRepository, "namespace/name". */
  repository: string;
  commit: string;
  /** How many objects the commit declares (and the sync applied). */
  objects: number;
}

export interface FailedSync {
  repository: string;
  commit: string;
  /** Why nothing from the commit was applied (lastSyncError). */
  message: string;
}

export interface RolloutOutcome {
  repository: string;
  commit: string;
  /** Whether every ModelDeployment the commit declares serves it. */
  ok: boolean;
  /** Which deployments serve, or which one stalled and why. */
  message: string;
}

/** What a platform tells about its syncs; every call returns at once. */
export interface SyncNotifications {
  synced(sync: SyncedCommit): void;
  syncFailed(failure: FailedSync): void;
  rolledOut(outcome: RolloutOutcome): void;
}

/**
 * The commit status's context for a ModelRepository ("namespace/name"): each new status of it
 * replaces the last on the commit, and two repositories that follow one GitHub repository (two
 * branches, two paths) each keep their own.
 */
export function syncContextOf(repository: string): string {
  return `modelship/sync/${repository}`;
}
/** Past this many notifications waiting, the oldest is dropped (the forge is slow or down). */
const MAX_WAITING = 100;

/** The GitHub environment of a ModelRepository ("namespace/name"). */
export function environmentOf(repository: string): string {
  return `modelship/${repository}`;
}

/** A message on one line, as a status's short description shows it. */
function oneLine(message: string): string {
  return message.replace(/\s+/g, " ").trim();
}

const shortSha = (sha: string) => sha.slice(0, 7);

interface Notification {
  operation: string;
  send(): Promise<void>;
}

/** The deployment of a repository's last synced commit. */
interface LiveDeployment {
  commit: string;
  /** GitHub's id, once it answered. */
  id?: number;
  /** Whether its outcome (or its replacement by a newer commit) was sent. */
  settled: boolean;
}

export class SyncNotifier implements SyncNotifications {
  private readonly forge: Forge;
  private readonly metrics: ForgeMetrics;
  private readonly log: (line: string) => void;
  private readonly waiting: Notification[] = [];
  private sending: Promise<void> | undefined;
  private readonly live = new Map<string, LiveDeployment>();

  constructor(options: { forge: Forge; metrics: ForgeMetrics; log(line: string): void }) {
    this.forge = options.forge;
    this.metrics = options.metrics;
    this.log = options.log;
  }

  synced(sync: SyncedCommit): void {
    const description = `applied ${sync.objects} objects`;
    this.enqueue("setCommitStatus", () =>
      this.forge.setCommitStatus({
        sha: sync.commit,
        state: "success",
        context: syncContextOf(sync.repository),
        description,
      }),
    );
    const previous = this.live.get(sync.repository);
    const deployment: LiveDeployment = { commit: sync.commit, settled: false };
    this.live.set(sync.repository, deployment);
    if (previous && !previous.settled) {
      previous.settled = true;
      // Its rollout never finished: it is not what is live any more.
      this.enqueue("setDeploymentStatus", async () => {
        if (previous.id === undefined) return;
        await this.forge.setDeploymentStatus(
          previous.id,
          "inactive",
          `superseded by ${shortSha(sync.commit)}`,
        );
      });
    }
    this.enqueue("startDeployment", async () => {
      const started = await this.forge.startDeployment({
        sha: sync.commit,
        environment: environmentOf(sync.repository),
        description,
      });
      if (!started) return;
      deployment.id = started.id;
      // Even when its outcome is already known (queued behind this): the commit's page shows
      // the rollout began, then how it ended.
      await this.forge.setDeploymentStatus(started.id, "in_progress", "rolling out");
    });
  }

  syncFailed(failure: FailedSync): void {
    this.enqueue("setCommitStatus", () =>
      this.forge.setCommitStatus({
        sha: failure.commit,
        state: "failure",
        context: syncContextOf(failure.repository),
        description: oneLine(failure.message),
      }),
    );
  }

  rolledOut(outcome: RolloutOutcome): void {
    const deployment = this.live.get(outcome.repository);
    if (deployment?.commit !== outcome.commit || deployment.settled) return;
    deployment.settled = true;
    this.enqueue("setDeploymentStatus", async () => {
      if (deployment.id === undefined) return;
      await this.forge.setDeploymentStatus(
        deployment.id,
        outcome.ok ? "success" : "failure",
        oneLine(outcome.message),
      );
    });
  }

  /** Resolves once everything queued was sent (or given up). */
  async idle(): Promise<void> {
    while (this.sending) await this.sending;
  }

  /** Drops what waits; what is being sent ends as the forge's stop makes it. */
  stop(): void {
    this.waiting.length = 0;
  }

  private enqueue(operation: string, send: () => Promise<void>): void {
    this.waiting.push({ operation, send });
    if (this.waiting.length > MAX_WAITING) {
      const dropped = this.waiting.shift() as Notification;
      this.metrics.failed(dropped.operation);
      this.log(
        `github: dropped a ${dropped.operation}: ${MAX_WAITING} notifications are waiting for GitHub`,
      );
    }
    this.sending ??= this.drain().finally(() => {
      this.sending = undefined;
    });
  }

  private async drain(): Promise<void> {
    for (let next = this.waiting.shift(); next; next = this.waiting.shift()) {
      // A forge reports its own failures; this one's queue must go on whatever happens.
      await next.send().catch(() => {});
    }
  }
}
