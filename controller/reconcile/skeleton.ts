// The one shape of every reconciler, after Flux's controllers: read the object from the cache,
// run an ordered list of small steps with one signature, and in a `finally` always summarise the
// conditions by the kstatus rules (summary.ts) and patch the status once. A step returns
// nothing (go on), finished() or waitFor(), or throws a typed error (outcome.ts); the first that
// does not go on ends the chain. So no throw can skip the status, and no step decides on its own
// whether to requeue or stall.
import { canonicalJson } from "../api/canonical-json.ts";
import { setCondition } from "../api/conditions.ts";
import type { Kind } from "../api/schemas.ts";
import type { Condition } from "../api/types.generated.ts";
import { isNotFound } from "../core/errors.ts";
import { formatKey, type ObjectKey } from "../core/keys.ts";
import {
  type EventRecorder,
  type EventType,
  type ResourceOf,
  type Store,
  storedMetadata,
} from "../core/ports.ts";
import { type Outcome, outcomeOf, StallingError, type StepResult } from "./outcome.ts";
import type { PassSignals, ReconcileResult } from "./queue.ts";
import { summarize } from "./summary.ts";

export type StatusOf<K extends Kind> = NonNullable<ResourceOf[K]["status"]>;

/** How long the final status write may take, even when the pass itself ran out of time. */
const STATUS_WRITE_TIMEOUT_MS = 10_000;

/**
 * What a step gets: the object as the pass read it, the status it builds, what earlier steps
 * found out (`data`, the reconciler's own shape), and helpers.
 */
export interface Pass<K extends Kind, D = Record<string, never>> {
  readonly key: ObjectKey;
  /** The object at the start of the pass (a copy from the cache). */
  readonly object: ResourceOf[K];
  /** The status this pass writes; steps change it. */
  status: StatusOf<K>;
  readonly generation: number | undefined;
  readonly now: Date;
  /** Aborts when the pass's deadline passes or the controller stops: hand it to every port. */
  readonly signal: AbortSignal;
  /** What the steps of this pass hand on to the later ones. */
  readonly data: D;
  /** Sets the Ready condition (the summary keeps it unless the pass errs or stalls). */
  markReady(status: Condition["status"], reason: string, message: string): void;
  /** Sets any other condition. */
  mark(type: string, status: Condition["status"], reason: string, message: string): void;
  /** Records an event (a transition), written after the status. */
  event(type: EventType, reason: string, message: string): void;
}

export type Step<K extends Kind, D = Record<string, never>> = (
  pass: Pass<K, D>,
) => Promise<StepResult | undefined>;

export interface ReconcilerSpec<K extends Kind, D = Record<string, never>> {
  kind: K;
  /** The empty `data` a pass starts with. */
  newData(): D;
  /** Run in order; the first that does not go on ends the pass. */
  steps: Step<K, D>[];
  /**
   * When an object whose pass is done (or stalled) is looked at again: polling a source,
   * correcting drift. Undefined: only when an event wakes it.
   */
  resyncAfterMs?(object: ResourceOf[K]): number | undefined;
  /** The object is gone (deleted or pruned): what it ran goes too. */
  whenMissing?(key: ObjectKey, signal: AbortSignal): Promise<void>;
}

export interface SkeletonPorts {
  store: Store;
  events: EventRecorder;
  now(): Date;
}

interface Mutable<K extends Kind, D> extends Pass<K, D> {
  readyMarked: boolean;
  events: { type: EventType; reason: string; message: string }[];
}

function newPass<K extends Kind, D>(
  key: ObjectKey,
  object: ResourceOf[K],
  now: Date,
  signal: AbortSignal,
  data: D,
): Mutable<K, D> {
  const generation = storedMetadata(object).generation;
  const pass: Mutable<K, D> = {
    key,
    object,
    status: structuredClone(object.status ?? {}) as StatusOf<K>,
    generation,
    now,
    signal,
    data,
    readyMarked: false,
    events: [],
    markReady(status, reason, message) {
      pass.mark("Ready", status, reason, message);
      pass.readyMarked = true;
    },
    mark(type, status, reason, message) {
      const current = (pass.status as { conditions?: Condition[] }).conditions;
      (pass.status as { conditions?: Condition[] }).conditions = setCondition(
        current,
        { type, status, reason, message },
        now,
        generation,
      );
    },
    event(type, reason, message) {
      pass.events.push({ type, reason, message });
    },
  };
  return pass;
}

/** Runs the steps in order until one ends the pass; a throw is caught and becomes the outcome. */
async function runSteps<K extends Kind, D>(
  steps: Step<K, D>[],
  pass: Pass<K, D>,
): Promise<Outcome> {
  try {
    for (const step of steps) {
      const result = await step(pass);
      if (result) return outcomeOf(result);
    }
    return outcomeOf(undefined);
  } catch (error) {
    if (pass.signal.aborted && !(error instanceof StallingError)) {
      return outcomeOf(undefined, abortedError(pass.signal, error));
    }
    return outcomeOf(undefined, error);
  }
}

/** Says why a pass's I/O was cut short: its deadline, or the controller stopping. */
function abortedError(signal: AbortSignal, error: unknown): Error {
  const reason = signal.reason as Error | undefined;
  const cause = (error as Error)?.message ?? String(error);
  if (reason?.name === "TimeoutError") {
    return Object.assign(new Error(`the reconcile ran past its deadline (${cause})`), {
      reason: "DeadlineExceeded",
    });
  }
  return Object.assign(new Error(`the controller is stopping (${cause})`), { reason: "Stopping" });
}

/** The status to write: the steps' status with the summary's conditions and generation. */
function finalStatus<K extends Kind>(
  pass: Pick<Mutable<K, unknown>, "status" | "readyMarked" | "generation" | "now">,
  previousObserved: number | undefined,
  outcome: Outcome,
): StatusOf<K> {
  const summary = summarize({
    conditions: (pass.status as { conditions?: Condition[] }).conditions,
    readyMarked: pass.readyMarked,
    outcome,
    generation: pass.generation,
    observedGeneration: previousObserved,
    now: pass.now,
  });
  const status = { ...pass.status, conditions: summary.conditions } as StatusOf<K> & {
    observedGeneration?: number;
  };
  if (summary.observedGeneration === undefined) delete status.observedGeneration;
  else status.observedGeneration = summary.observedGeneration;
  return status;
}

/** What the queue does next, from the outcome. */
export function resultOf(outcome: Outcome, resyncMs: number | undefined): ReconcileResult {
  switch (outcome.type) {
    case "done":
      return resyncMs === undefined ? { type: "done" } : { type: "requeue", afterMs: resyncMs };
    case "waiting":
      return outcome.afterMs === undefined
        ? { type: "done" }
        : { type: "requeue", afterMs: outcome.afterMs };
    case "error":
      return { type: "error", error: outcome.error };
    case "stalled":
      return {
        type: "terminal",
        error: new Error(`${outcome.because.reason}: ${outcome.because.message}`),
        ...(resyncMs === undefined ? {} : { afterMs: resyncMs }),
      };
  }
}

/** The reason and message of a condition in `status`, when it has `status`. */
function because(
  conditions: Condition[] | undefined,
  type: string,
  status: Condition["status"],
): string | undefined {
  const found = conditions?.find((condition) => condition.type === type);
  return found?.status === status ? `${found.reason}\n${found.message}` : undefined;
}

/**
 * The Warning event a failure makes: one when an object stalls or fails for a new reason, not
 * one per retry of the same failure.
 */
export function failureEvent(
  outcome: Outcome,
  before: Condition[] | undefined,
  after: Condition[] | undefined,
): { reason: string; message: string } | undefined {
  if (outcome.type === "stalled") {
    const now = because(after, "Stalled", "True");
    return now !== because(before, "Stalled", "True") ? outcome.because : undefined;
  }
  if (outcome.type === "error") {
    const now = because(after, "Ready", "False");
    return now !== because(before, "Ready", "False") ? outcome.because : undefined;
  }
  return undefined;
}

/** A reconciler for the work queue, made of `spec`'s steps under the skeleton. */
export function reconcileWith<K extends Kind, D>(spec: ReconcilerSpec<K, D>, ports: SkeletonPorts) {
  return async (key: ObjectKey, signals: PassSignals): Promise<ReconcileResult> => {
    const object = ports.store.get(spec.kind, key.namespace, key.name);
    if (!object) {
      await spec.whenMissing?.(key, signals.signal);
      return { type: "done" };
    }
    const pass = newPass<K, D>(key, object, ports.now(), signals.signal, spec.newData());
    let outcome: Outcome = { type: "done" };
    try {
      outcome = await runSteps(spec.steps, pass);
    } finally {
      const previous = object.status as { observedGeneration?: number; conditions?: Condition[] };
      const status = finalStatus(pass, previous?.observedGeneration, outcome);
      const written = await writeStatus(ports.store, key, object.status, status, signals);
      if (written instanceof Error && outcome.type !== "error") {
        outcome = outcomeOf(undefined, written);
      }
      const failure = failureEvent(
        outcome,
        previous?.conditions,
        (status as { conditions?: Condition[] }).conditions,
      );
      if (failure) pass.event("Warning", failure.reason, failure.message);
      for (const event of pass.events) {
        ports.events.record(object, event.type, event.reason, event.message);
      }
    }
    return resultOf(outcome, spec.resyncAfterMs?.(object));
  };
}

/** Patches the status when it changed; an object deleted meanwhile is not an error. */
async function writeStatus<K extends Kind>(
  store: Store,
  key: ObjectKey,
  before: unknown,
  status: StatusOf<K>,
  signals: PassSignals,
): Promise<Error | undefined> {
  if (canonicalJson(before ?? {}) === canonicalJson(status)) return undefined;
  try {
    await store.patchStatus(key.kind as K, key.namespace, key.name, status, {
      signal: AbortSignal.any([signals.stopped, AbortSignal.timeout(STATUS_WRITE_TIMEOUT_MS)]),
    });
    return undefined;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    return new Error(`cannot write the status of ${formatKey(key)}: ${(error as Error).message}`);
  }
}
