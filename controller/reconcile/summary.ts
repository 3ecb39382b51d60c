// The kstatus rules, in one place: how a pass's outcome shapes the conditions and
// observedGeneration that it writes. Every reconciler's status goes through `summarize`, in the
// skeleton's `finally`, so no step can forget one of them and no throw can skip them.
//
//   done     Reconciling and Stalled removed; Ready as the steps marked it (True if they did not);
//            observedGeneration = generation
//   waiting  Reconciling=True with the reason; Stalled removed; Ready as marked, else Unknown
//   error    Reconciling=True (ProgressingWithRetry); Ready=False with the error; Stalled removed
//   stalled  Stalled=True and Ready=False with the reason; Reconciling removed;
//            observedGeneration = generation
//
// Conditions come out sorted (Stalled, Reconciling, Ready, then the rest by type), each with the
// generation it describes; lastTransitionTime moves only when a condition's status changes.
import { removeCondition, setCondition } from "../api/conditions.ts";
import type { Condition } from "../api/types.generated.ts";
import type { Outcome } from "./outcome.ts";

const ORDER = ["Stalled", "Reconciling", "Ready"];

export function sortConditions(conditions: Condition[]): Condition[] {
  const rank = (type: string) => {
    const index = ORDER.indexOf(type);
    return index === -1 ? ORDER.length : index;
  };
  return [...conditions].sort(
    (a, b) => rank(a.type) - rank(b.type) || a.type.localeCompare(b.type),
  );
}

export interface SummaryInput {
  /** The conditions after the steps ran (what they marked is already in). */
  conditions: Condition[] | undefined;
  /** Whether a step marked Ready during this pass. */
  readyMarked: boolean;
  outcome: Outcome;
  /** metadata.generation of the object the pass read. */
  generation: number | undefined;
  /** status.observedGeneration before the pass. */
  observedGeneration: number | undefined;
  now: Date;
}

export interface Summary {
  conditions: Condition[];
  observedGeneration: number | undefined;
}

export function summarize(input: SummaryInput): Summary {
  const { outcome, generation, now } = input;
  let conditions = input.conditions ?? [];
  const set = (type: string, status: Condition["status"], reason: string, message: string) => {
    conditions = setCondition(conditions, { type, status, reason, message }, now, generation);
  };
  let observedGeneration = input.observedGeneration;
  switch (outcome.type) {
    case "done":
      conditions = removeCondition(removeCondition(conditions, "Reconciling"), "Stalled");
      if (!input.readyMarked) set("Ready", "True", "Succeeded", "reconciled");
      observedGeneration = generation;
      break;
    case "waiting":
      conditions = removeCondition(conditions, "Stalled");
      set("Reconciling", "True", outcome.because.reason, outcome.because.message);
      if (!input.readyMarked) {
        set("Ready", "Unknown", outcome.because.reason, outcome.because.message);
      }
      break;
    case "error":
      conditions = removeCondition(conditions, "Stalled");
      set(
        "Reconciling",
        "True",
        "ProgressingWithRetry",
        `retrying after an error: ${outcome.because.message}`,
      );
      set("Ready", "False", outcome.because.reason, outcome.because.message);
      break;
    case "stalled":
      conditions = removeCondition(conditions, "Reconciling");
      set("Stalled", "True", outcome.because.reason, outcome.because.message);
      set("Ready", "False", outcome.because.reason, outcome.because.message);
      observedGeneration = generation;
      break;
  }
  return { conditions: sortConditions(conditions), observedGeneration };
}
