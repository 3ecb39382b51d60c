// The prediction diff: a Model's examples answered by the build serving now (the base) and by
// the build a change makes (the head), compared answer by answer — numbers within a tolerance —
// into what a reviewer needs: how many answers change, which fail now, which no longer match
// their expected output, by how much, and how fast each side answers.
import { canonicalJson, isRecord } from "../api/canonical-json.ts";
import type { Example } from "../source/examples.ts";

/** Differences a report shows per model; the counts cover all of them. */
export const MAX_DIFFERENCES_SHOWN = 5;
/** Two numbers a and b are the same answer when |a − b| ≤ tolerance × max(1, |a|, |b|). */
export const DEFAULT_TOLERANCE = 1e-9;

/** One example's answer from one build. */
export interface Answer {
  ok: boolean;
  /** The function's result, when ok. */
  value?: unknown;
  /** Why there is none: the error code and message. */
  error?: string;
  ms: number;
}

/** What one side gave: its answers, or why it could not answer at all. */
export interface SideRun {
  build?: number;
  /** The build failed, or the function did not load: no answers. */
  failure?: string;
  answers: Answer[];
}

export interface ExampleDifference {
  example: string;
  input: unknown;
  base?: unknown;
  head?: unknown;
  /** The largest difference between two numbers that moved, when numbers did. */
  maxDelta?: number;
  /** For an expected output that the head misses. */
  expected?: unknown;
}

export interface ModelPredictions {
  model: string;
  /**
   * unchanged: same build key, nothing run; compared: both sides ran; new: only the head has the
   * model; failed: a side could not run (its failure says why); skipped: nothing to run.
   */
  outcome: "unchanged" | "compared" | "new" | "failed" | "skipped";
  note?: string;
  examples: number;
  changed: number;
  unchanged: number;
  /** Answered at the base, an error at the head. */
  nowFailing: number;
  /** An error at the base, answered at the head. */
  nowAnswering: number;
  differences: ExampleDifference[];
  /** Examples whose declared output the head's answer does not match. */
  expectedMismatches: ExampleDifference[];
  expectedMismatchCount: number;
  medianMs: { base?: number; head?: number };
  failure?: { side: "base" | "head"; message: string };
}

/**
 * Whether two answers are the same, numbers compared within the tolerance, and the largest
 * difference between numbers found in the same place (undefined when no number moved).
 */
export function compareAnswers(
  base: unknown,
  head: unknown,
  tolerance = DEFAULT_TOLERANCE,
): { same: boolean; maxDelta?: number } {
  let same = true;
  let maxDelta: number | undefined;
  const walk = (a: unknown, b: unknown) => {
    if (typeof a === "number" && typeof b === "number") {
      const delta = Math.abs(a - b);
      if (delta > tolerance * Math.max(1, Math.abs(a), Math.abs(b))) {
        same = false;
        maxDelta = Math.max(maxDelta ?? 0, delta);
      }
      return;
    }
    if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
      for (const [index, item] of a.entries()) walk(item, b[index]);
      return;
    }
    if (isRecord(a) && isRecord(b)) {
      const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
      for (const key of keys) {
        if (!(key in a) || !(key in b)) same = false;
        else walk(a[key], b[key]);
      }
      return;
    }
    if (canonicalJson(a) !== canonicalJson(b)) same = false;
  };
  walk(base, head);
  return maxDelta === undefined ? { same } : { same, maxDelta };
}

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function shown(answer: Answer | undefined): unknown {
  if (!answer) return undefined;
  return answer.ok ? answer.value : { error: answer.error };
}

function empty(
  model: string,
  outcome: ModelPredictions["outcome"],
  examples: number,
): ModelPredictions {
  return {
    model,
    outcome,
    examples,
    changed: 0,
    unchanged: 0,
    nowFailing: 0,
    nowAnswering: 0,
    differences: [],
    expectedMismatches: [],
    expectedMismatchCount: 0,
    medianMs: {},
  };
}

/** A model whose build does not change: nothing is built or run. */
export function unchangedPredictions(model: string, examples: number): ModelPredictions {
  return { ...empty(model, "unchanged", examples), note: "same build: answers cannot change" };
}

/** A model whose examples are not run, and why. */
export function skippedPredictions(
  model: string,
  examples: number,
  note: string,
): ModelPredictions {
  return { ...empty(model, "skipped", examples), note };
}

/**
 * Compares the head's answers with the base's (undefined for a model the base does not have),
 * and each with its example's expected output.
 */
export function comparePredictions(
  model: string,
  examples: Example[],
  base: SideRun | undefined,
  head: SideRun,
  tolerance = DEFAULT_TOLERANCE,
): ModelPredictions {
  const report = empty(model, base ? "compared" : "new", examples.length);
  for (const [side, run] of [
    ["base", base],
    ["head", head],
  ] as const) {
    if (run?.failure !== undefined) {
      return { ...report, outcome: "failed", failure: { side, message: run.failure } };
    }
  }
  const baseMs = median(base?.answers.map((answer) => answer.ms) ?? []);
  const headMs = median(head.answers.map((answer) => answer.ms));
  report.medianMs = {
    ...(baseMs === undefined ? {} : { base: baseMs }),
    ...(headMs === undefined ? {} : { head: headMs }),
  };
  examples.forEach((example, index) => {
    const after = head.answers[index];
    if (!after) return;
    const before = base?.answers[index];
    if (before) {
      if (before.ok && !after.ok) report.nowFailing++;
      if (!before.ok && after.ok) report.nowAnswering++;
      const comparison =
        before.ok && after.ok
          ? compareAnswers(before.value, after.value, tolerance)
          : { same: before.ok === after.ok && before.error === after.error };
      if (comparison.same) report.unchanged++;
      else {
        report.changed++;
        if (report.differences.length < MAX_DIFFERENCES_SHOWN) {
          report.differences.push({
            example: example.label,
            input: example.input,
            base: shown(before),
            head: shown(after),
            ...("maxDelta" in comparison && comparison.maxDelta !== undefined
              ? { maxDelta: comparison.maxDelta }
              : {}),
          });
        }
      }
    }
    if (example.hasOutput) {
      const matches = after.ok && compareAnswers(example.output, after.value, tolerance).same;
      if (!matches) {
        report.expectedMismatchCount++;
        if (report.expectedMismatches.length < MAX_DIFFERENCES_SHOWN) {
          report.expectedMismatches.push({
            example: example.label,
            input: example.input,
            expected: example.output,
            head: shown(after),
          });
        }
      }
    }
  });
  return report;
}
