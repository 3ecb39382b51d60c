// The syncs' outcomes, read off the store for the forge (forge/sync-status.ts): a ModelRepository
// that synced a new commit or refused one, and later whether the ModelDeployments that commit
// declares serve it or stalled. Both platforms use it; it only watches, and tells a notifier
// whose calls return at once, so it adds nothing to a sync's work.
import { conditionOf } from "../api/conditions.ts";
import type {
  Model,
  ModelBuild,
  ModelDeployment,
  ModelRepository,
} from "../api/types.generated.ts";
import { formatName, type NamespacedName } from "../core/keys.ts";
import { ANNOTATION_COMMIT } from "../core/labels.ts";
import { type Store, storedMetadata, type WatchEvent } from "../core/ports.ts";
import type { SyncNotifications } from "../forge/sync-status.ts";
import { modelIsBehind, resolveBuildNumber } from "../reconcile/deployment.ts";
import { buildName } from "../reconcile/model.ts";

/** What a repository's status says of its syncs: the commit applied, the one refused and why. */
export function syncOutcome(repository: ModelRepository): {
  synced?: string;
  failed?: { commit: string; message: string };
} {
  const status = repository.status ?? {};
  const stalled = conditionOf(status.conditions, "Stalled")?.status === "True";
  return {
    ...(status.lastSyncedCommit ? { synced: status.lastSyncedCommit } : {}),
    // A fetch that failed has no commit to tell about: only a commit that could not apply.
    ...(stalled && status.lastAttemptedCommit && status.lastSyncError
      ? { failed: { commit: status.lastAttemptedCommit, message: status.lastSyncError } }
      : {}),
  };
}

export type RolloutVerdict =
  | { state: "pending" }
  | { state: "serving"; build: number | undefined }
  | { state: "failed"; message: string };

const PENDING: RolloutVerdict = { state: "pending" };

/**
 * Whether `deployment` serves what `commit` declares, stalled on it, or is not there yet. Right
 * after a sync, the status still says what the previous commit did: nothing counts until the
 * deployment carries the commit, its Model has worked out the build for it, and the status
 * describes the current spec and the wanted build.
 */
export function rolloutVerdict(
  commit: string,
  deployment: ModelDeployment | undefined,
  model: Model | undefined,
  build: ModelBuild | undefined,
): RolloutVerdict {
  if (deployment?.metadata.annotations?.[ANNOTATION_COMMIT] !== commit) return PENDING;
  const status = deployment.status ?? {};
  const current = status.observedGeneration === storedMetadata(deployment).generation;
  if (deployment.spec.stopped) {
    return current && status.phase === "Stopped" ? { state: "serving", build: undefined } : PENDING;
  }
  if (!model || modelIsBehind(model)) return PENDING;
  const wanted = resolveBuildNumber(deployment.spec.build, model.status?.latestBuild);
  if (build && build.spec.number === wanted && build.status?.phase === "Failed") {
    return {
      state: "failed",
      message: `build ${wanted} of model ${model.metadata.name} failed: ${build.status.message ?? "see its logs"}`,
    };
  }
  const stalled = conditionOf(status.conditions, "Stalled");
  // A build's failure is judged by the build itself (above): the deployment's BuildFailed may be
  // the previous commit's. A failed rollout counts when it is the wanted build's.
  const stallCounts =
    stalled?.reason === "RolloutFailed"
      ? status.build === wanted
      : stalled?.reason !== "BuildFailed";
  if (current && stalled?.status === "True" && stallCounts) {
    return { state: "failed", message: stalled.message };
  }
  const ready = conditionOf(status.conditions, "Ready")?.status === "True";
  const reconciling = conditionOf(status.conditions, "Reconciling")?.status === "True";
  if (current && ready && !reconciling && status.servingBuild === wanted) {
    return { state: "serving", build: wanted };
  }
  return PENDING;
}

/** A synced commit's deployments, until they all serve or one stalls. */
interface Rollout {
  commit: string;
  deployments: NamespacedName[];
}

/** What was last told of a repository. */
interface Told {
  synced?: string;
  /** The refused commit and its reason, as one string. */
  failed?: string;
  rollout?: Rollout;
}

const failureKey = (outcome: ReturnType<typeof syncOutcome>) =>
  outcome.failed ? `${outcome.failed.commit}\n${outcome.failed.message}` : undefined;

/** The outcome of a rollout once it has one: every deployment serves, or one stalled. */
function judgeRollout(
  store: Store,
  rollout: Rollout,
): { ok: boolean; message: string } | undefined {
  const serving: string[] = [];
  for (const { namespace, name } of rollout.deployments) {
    const deployment = store.get("ModelDeployment", namespace, name);
    const model = deployment && store.get("Model", namespace, deployment.spec.model);
    const wanted = resolveBuildNumber(deployment?.spec.build, model?.status?.latestBuild);
    const build =
      deployment && wanted !== undefined
        ? store.get("ModelBuild", namespace, buildName(deployment.spec.model, wanted))
        : undefined;
    const verdict = rolloutVerdict(rollout.commit, deployment, model, build);
    if (verdict.state === "failed") {
      return { ok: false, message: `ModelDeployment ${name} stalled: ${verdict.message}` };
    }
    if (verdict.state === "pending") return undefined;
    serving.push(
      verdict.build === undefined ? `${name} stopped` : `${name} build ${verdict.build}`,
    );
  }
  return {
    ok: true,
    message: serving.length === 0 ? "no deployment to roll out" : `serving: ${serving.join(", ")}`,
  };
}

/**
 * Tells `notifications` what the syncs of the repositories `follows` picks do, from now on; what
 * the store already holds counts as told (a restart repeats nothing). Returns the function that
 * stops it.
 */
export function notifySyncs(
  store: Store,
  notifications: SyncNotifications,
  follows: (repository: ModelRepository) => boolean = () => true,
): () => void {
  const told = new Map<string, Told>();
  for (const repository of store.list("ModelRepository").filter(follows)) {
    const outcome = syncOutcome(repository);
    told.set(formatName(keyOf(repository)), {
      ...(outcome.synced ? { synced: outcome.synced } : {}),
      ...(outcome.failed ? { failed: failureKey(outcome) } : {}),
    });
  }

  const onRepository = (event: WatchEvent & { object: ModelRepository }) => {
    const repository = event.object;
    const key = formatName(keyOf(repository));
    if (event.type === "DELETED" || !follows(repository)) {
      told.delete(key);
      return;
    }
    const state = told.get(key) ?? {};
    told.set(key, state);
    const outcome = syncOutcome(repository);
    if (outcome.synced && outcome.synced !== state.synced) {
      state.synced = outcome.synced;
      const inventory = repository.status?.inventory ?? [];
      notifications.synced({ repository: key, commit: outcome.synced, objects: inventory.length });
      state.rollout = {
        commit: outcome.synced,
        deployments: inventory.filter((entry) => entry.kind === "ModelDeployment"),
      };
    }
    const failure = failureKey(outcome);
    if (failure !== state.failed) {
      state.failed = failure;
      if (outcome.failed) notifications.syncFailed({ repository: key, ...outcome.failed });
    }
  };

  return store.watch((event) => {
    if (event.object.kind === "ModelRepository") {
      onRepository(event as WatchEvent & { object: ModelRepository });
    }
    // Any change (a build, a replica ready, a status) may settle a rollout.
    for (const [repository, state] of told) {
      if (!state.rollout) continue;
      const outcome = judgeRollout(store, state.rollout);
      if (!outcome) continue;
      notifications.rolledOut({ repository, commit: state.rollout.commit, ...outcome });
      delete state.rollout;
    }
  });
}

function keyOf(repository: ModelRepository): NamespacedName {
  return { namespace: repository.metadata.namespace ?? "default", name: repository.metadata.name };
}
