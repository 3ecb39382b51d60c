// A plan as people read it, its predictions included: plain text for a terminal, markdown for a
// pull request comment.
import { formatProblem, type Problem } from "../source/validate.ts";
import type {
  BuildPlan,
  DeploymentPlan,
  FieldChange,
  ModelPlan,
  ObjectPlan,
  Plan,
} from "./plan.ts";
import type { ModelPredictions } from "./prediction-diff.ts";

/** Characters of one value in a field diff; the JSON output has it whole. */
const MAX_VALUE_CHARS = 80;

function short(commit: string): string {
  return commit.slice(0, 7);
}

function value(item: unknown): string {
  if (item === undefined) return "(none)";
  const text = JSON.stringify(item);
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text;
}

export function formatChange(change: FieldChange): string {
  return `${change.path}: ${value(change.before)} → ${value(change.after)}`;
}

/** What happens to a Model's build, in a few words. */
export function describeBuild(model: ModelPlan): string {
  if (model.action === "removed") {
    return "removed from git (its builds stay until retention or the repository goes)";
  }
  const build = model.build as BuildPlan;
  switch (build.action) {
    case "unchanged":
      return build.number === undefined
        ? "no new build (its code and build settings are unchanged)"
        : `no new build: build ${build.number} keeps serving`;
    case "build":
      return model.action === "added"
        ? `new Model: build ${build.number} is made`
        : `new build ${build.number} (its code or build settings changed)`;
    case "reuse":
      return `build ${build.number} comes back (first built at ${short(build.commit)}${build.phase && build.phase !== "Succeeded" ? `, ${build.phase}` : ""}); no build`;
    case "unknown":
      return `build not known: ${build.reason}`;
  }
}

/** What happens to a ModelDeployment, in a few words. */
export function describeDeployment(deployment: DeploymentPlan): string {
  const why = deployment.reasons.join("; ");
  switch (deployment.effect) {
    case "none":
      return "no change to what runs";
    case "rollout":
      return `new rollout: ${why}`;
    case "scale":
      return `scale: ${why}; the same rollout, no build`;
    default:
      return `${deployment.effect}: ${why}`;
  }
}

const SIGN: Record<ObjectPlan["action"], string> = {
  added: "+",
  changed: "~",
  removed: "-",
  unchanged: "=",
};

function headline(plan: Plan): string {
  return `${short(plan.base.commit)} → ${short(plan.head.commit)} (${plan.head.message})`;
}

function verdict(plan: Plan): string {
  if (!plan.valid) {
    const count = plan.head.problems.length;
    return `the head is invalid: ${count} problem${count === 1 ? "" : "s"}; the sync would apply nothing from it`;
  }
  const applied = plan.objects.filter((object) => object.action !== "removed").length;
  return `the head is valid: the sync would apply ${applied} object${applied === 1 ? "" : "s"}`;
}

function problemLines(problems: Problem[]): string[] {
  return problems.map(formatProblem);
}

export function formatPlanText(plan: Plan): string {
  const lines = [`Plan ${headline(plan)}`, verdict(plan), ""];
  const width = Math.max(
    8,
    ...plan.models.map((model) => model.name.length),
    ...plan.deployments.map((deployment) => deployment.name.length),
  );
  if (plan.models.length > 0) {
    lines.push("Models:");
    for (const model of plan.models)
      lines.push(`  ${model.name.padEnd(width)}  ${describeBuild(model)}`);
    lines.push("");
  }
  if (plan.deployments.length > 0) {
    lines.push("Deployments:");
    for (const deployment of plan.deployments) {
      lines.push(`  ${deployment.name.padEnd(width)}  ${describeDeployment(deployment)}`);
    }
    lines.push("");
  }
  if (plan.predictions) {
    lines.push("Predictions:");
    for (const report of plan.predictions) {
      lines.push(`  ${report.model.padEnd(width)}  ${summarizePredictions(report)}`);
      for (const detail of predictionDetailLines(report)) lines.push(`      ${detail}`);
    }
    lines.push("");
  }
  const touched = plan.objects.filter((object) => object.action !== "unchanged");
  lines.push(touched.length > 0 ? "Objects:" : "Objects: no manifest changes");
  for (const object of touched) {
    lines.push(`  ${SIGN[object.action]} ${object.kind}/${object.name}  (${object.file})`);
    for (const change of object.changes) lines.push(`      ${formatChange(change)}`);
  }
  if (plan.head.problems.length > 0) {
    lines.push(
      "",
      "Problems at the head:",
      ...problemLines(plan.head.problems).map((line) => `  ${line}`),
    );
  }
  lines.push("", `Build numbers from ${plan.buildNumbers}.`);
  return `${lines.join("\n")}\n`;
}

/** A markdown table cell: no pipes or newlines to break the row. */
function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

export function formatPlanMarkdown(plan: Plan): string {
  const lines = [
    `### modelship plan: ${cell(headline(plan))}`,
    "",
    plan.valid ? `✅ ${verdict(plan)}` : `❌ ${verdict(plan)}`,
    "",
  ];
  if (plan.head.problems.length > 0) {
    lines.push("**Problems**", "", "```", ...problemLines(plan.head.problems), "```", "");
  }
  if (plan.models.length > 0) {
    lines.push("| Model | Build |", "| --- | --- |");
    for (const model of plan.models)
      lines.push(`| \`${model.name}\` | ${cell(describeBuild(model))} |`);
    lines.push("");
  }
  if (plan.deployments.length > 0) {
    lines.push("| Deployment | What runs |", "| --- | --- |");
    for (const deployment of plan.deployments) {
      lines.push(`| \`${deployment.name}\` | ${cell(describeDeployment(deployment))} |`);
    }
    lines.push("");
  }
  if (plan.predictions) {
    lines.push("**Predictions**", "", "| Model | Answers |", "| --- | --- |");
    for (const report of plan.predictions) {
      lines.push(`| \`${report.model}\` | ${cell(summarizePredictions(report))} |`);
    }
    lines.push("");
    for (const report of plan.predictions) {
      const details = predictionDetailLines(report);
      if (details.length === 0) continue;
      lines.push(
        `<details><summary>${report.model}: what changed</summary>`,
        "",
        "```",
        ...details,
        "```",
        "",
        "</details>",
        "",
      );
    }
  }
  const touched = plan.objects.filter((object) => object.action !== "unchanged");
  if (touched.length > 0) {
    lines.push("<details><summary>Manifest changes</summary>", "", "```diff");
    for (const object of touched) {
      lines.push(
        `${SIGN[object.action] === "~" ? "!" : SIGN[object.action]} ${object.kind}/${object.name} (${object.file})`,
      );
      for (const change of object.changes) lines.push(`    ${formatChange(change)}`);
    }
    lines.push("```", "", "</details>", "");
  }
  lines.push(`<sub>Build numbers from ${cell(plan.buildNumbers)}.</sub>`);
  return `${lines.join("\n")}\n`;
}

function ms(value: number | undefined): string {
  return value === undefined ? "?" : `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`;
}

/** One line about a model's predictions. */
export function summarizePredictions(report: ModelPredictions): string {
  switch (report.outcome) {
    case "unchanged":
      return `unchanged: the same build answers (${report.examples} example${report.examples === 1 ? "" : "s"}, nothing built or run)`;
    case "skipped":
      return `not run: ${report.note ?? "no examples"}`;
    case "failed":
      return `cannot compare: the ${report.failure?.side} build ${report.failure?.message}`;
    default: {
      const parts =
        report.outcome === "new"
          ? [
              `${report.examples} example${report.examples === 1 ? "" : "s"} answered by the new model`,
            ]
          : [`${report.changed} of ${report.examples} answers changed`];
      if (report.nowFailing > 0) parts.push(`${report.nowFailing} now failing`);
      if (report.nowAnswering > 0) parts.push(`${report.nowAnswering} now answering`);
      if (report.expectedMismatchCount > 0) {
        parts.push(
          `${report.expectedMismatchCount} miss${report.expectedMismatchCount === 1 ? "es" : ""} the expected output`,
        );
      }
      const latency =
        report.outcome === "new"
          ? `median ${ms(report.medianMs.head)}`
          : `median ${ms(report.medianMs.base)} → ${ms(report.medianMs.head)}`;
      return `${parts.join("; ")} (${latency})`;
    }
  }
}

/** The differences and mismatches, one line each, for a terminal or a code block. */
function predictionDetailLines(report: ModelPredictions): string[] {
  const lines = report.differences.map(
    (difference) =>
      `${difference.example}: ${value(difference.input)} → ${value(difference.base)} became ${value(difference.head)}${difference.maxDelta === undefined ? "" : ` (by ${difference.maxDelta.toPrecision(3)})`}`,
  );
  if (report.changed > report.differences.length) {
    lines.push(`… and ${report.changed - report.differences.length} more changed`);
  }
  for (const mismatch of report.expectedMismatches) {
    lines.push(
      `${mismatch.example}: expected ${value(mismatch.expected)}, the head answers ${value(mismatch.head)}`,
    );
  }
  if (report.expectedMismatchCount > report.expectedMismatches.length) {
    lines.push(
      `… and ${report.expectedMismatchCount - report.expectedMismatches.length} more mismatches`,
    );
  }
  return lines;
}
