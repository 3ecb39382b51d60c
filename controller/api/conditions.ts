// kstatus conditions: Ready, plus the abnormal-true Reconciling and Stalled. A
// condition's lastTransitionTime changes only when its status does.
import type { Condition } from "./types.generated.ts";

export type ConditionStatus = Condition["status"];

export interface ConditionUpdate {
  type: "Ready" | "Reconciling" | "Stalled" | (string & {});
  status: ConditionStatus;
  /** PascalCase, for machines: BuildFailed, RolloutInProgress. */
  reason: string;
  /** For people: what is going on, and what to do. */
  message: string;
}

/** Returns the conditions with `update` set; the others are kept as they are. */
export function setCondition(
  conditions: Condition[] | undefined,
  update: ConditionUpdate,
  now: Date,
  observedGeneration?: number,
): Condition[] {
  const list = conditions ?? [];
  const previous = list.find((condition) => condition.type === update.type);
  const next: Condition = {
    ...update,
    ...(observedGeneration === undefined ? {} : { observedGeneration }),
    lastTransitionTime:
      previous && previous.status === update.status
        ? previous.lastTransitionTime
        : now.toISOString(),
  };
  return [...list.filter((condition) => condition.type !== update.type), next];
}

/** Drops a condition (an abnormal-true one that no longer applies). */
export function removeCondition(conditions: Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((condition) => condition.type !== type);
}

export function conditionOf(
  conditions: Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((condition) => condition.type === type);
}
