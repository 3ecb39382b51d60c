// How a reconcile pass ends, in one place. A step returns nothing (go on), `finished()` (nothing
// left to do), or `waitFor()` (in progress: look again later); or it throws. A thrown error is
// one of three kinds, after Flux's internal/error: a StallingError (terminal: the object cannot
// reach its desired state until something changes), a WaitingError (in progress: requeue after
// T), or any other error (generic: retry with exponential backoff). `outcomeOf` maps all of them
// to an Outcome, and the queue's result follows from it.

/** A reason (PascalCase) for the conditions, and a message for people. */
export interface Because {
  reason: string;
  message: string;
}

/** Terminal: retrying will not help until the object, its source or its inputs change. */
export class StallingError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = "StallingError";
    this.reason = reason;
  }
}

/** In progress: not an error, look again after `afterMs` (undefined: when an event comes). */
export class WaitingError extends Error {
  readonly reason: string;
  readonly afterMs: number | undefined;
  constructor(reason: string, message: string, afterMs?: number) {
    super(message);
    this.name = "WaitingError";
    this.reason = reason;
    this.afterMs = afterMs;
  }
}

/** What a step returns when it ends the pass without an error. */
export type StepResult =
  | { type: "finished" }
  | { type: "waiting"; because: Because; afterMs: number | undefined };

export const finished = (): StepResult => ({ type: "finished" });

/** In progress: Reconciling=True with this reason; looked at again after `afterMs` or an event. */
export function waitFor(reason: string, message: string, afterMs?: number): StepResult {
  return { type: "waiting", because: { reason, message }, afterMs };
}

export type Outcome =
  | { type: "done" }
  | { type: "waiting"; because: Because; afterMs: number | undefined }
  | { type: "stalled"; because: Because }
  | { type: "error"; because: Because; error: Error };

/** The reason a generic error carries (a port's `reason`, such as FetchFailed), or a default. */
function reasonOf(error: Error, fallback: string): string {
  const reason = (error as { reason?: unknown }).reason;
  // PascalCase only (FetchFailed): an errno such as ECONNRESET is not a condition reason.
  return typeof reason === "string" && /^(?:[A-Z][a-z0-9]+)+$/.test(reason) ? reason : fallback;
}

/** The one mapping from what a pass produced to how it ended. */
export function outcomeOf(result: StepResult | undefined, thrown?: unknown): Outcome {
  if (thrown !== undefined) {
    if (thrown instanceof StallingError) {
      return { type: "stalled", because: { reason: thrown.reason, message: thrown.message } };
    }
    if (thrown instanceof WaitingError) {
      return {
        type: "waiting",
        because: { reason: thrown.reason, message: thrown.message },
        afterMs: thrown.afterMs,
      };
    }
    const error = thrown instanceof Error ? thrown : new Error(String(thrown));
    return {
      type: "error",
      because: { reason: reasonOf(error, "ReconcileError"), message: error.message },
      error,
    };
  }
  if (result?.type === "waiting") return result;
  return { type: "done" };
}
