// A pull request's plan for a forge: the plan of each ModelRepository the pull request changes
// (reconcile/plan.ts), as one verdict, one markdown comment and the head's problems as
// annotations on their files and lines.
import type { PlanAnnotation, PullRequestPlan } from "../forge/port.ts";
import type { Plan } from "../reconcile/plan.ts";
import { formatPlanMarkdown, summarizePredictions } from "../reconcile/plan-report.ts";

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** A plan in one line: what it builds, rolls out and prunes, or how many problems it has. */
export function planTitle(plan: Plan): string {
  if (!plan.valid)
    return `${plural(plan.head.problems.length, "problem")}: the sync would apply nothing`;
  const builds = plan.models.filter((model) => model.build?.action === "build").length;
  const reused = plan.models.filter((model) => model.build?.action === "reuse").length;
  const rollouts = plan.deployments.filter((deployment) =>
    ["rollout", "create", "start"].includes(deployment.effect),
  ).length;
  const removed = plan.objects.filter((object) => object.action === "removed").length;
  const parts = [
    ...(builds > 0 ? [plural(builds, "new build")] : []),
    ...(reused > 0 ? [`${plural(reused, "build")} brought back`] : []),
    ...(rollouts > 0 ? [plural(rollouts, "rollout")] : []),
    ...(removed > 0 ? [`${plural(removed, "object")} pruned`] : []),
  ];
  return parts.length > 0 ? parts.join(", ") : "no change to what runs";
}

/** The head's problems where GitHub shows them: on the file and line, as failures. */
export function problemAnnotations(plan: Plan): PlanAnnotation[] {
  // A problem of no object (a path that is not there) names a directory: GitHub refuses an
  // annotation on one, and with it the whole check run.
  return plan.head.problems
    .filter((problem) => problem.kind !== undefined)
    .map((problem) => ({
      path: problem.file,
      line: problem.line,
      column: problem.column,
      level: "failure",
      message: `${problem.kind ?? "?"}/${problem.name ?? "?"} ${problem.pointer || "/"}: ${problem.message}`,
    }));
}

/** What a forge shows of the plans of one pull request (one per ModelRepository it changes). */
export function pullRequestPlanOf(plans: Plan[]): PullRequestPlan {
  if (plans.length === 0) {
    return {
      valid: true,
      title: "no ModelRepository follows the base branch",
      summary:
        "modelship syncs no ModelRepository from this pull request's base branch: merging it changes nothing that modelship runs.",
      markdown:
        "### modelship plan\n\nNo ModelRepository follows this pull request's base branch: merging it changes nothing modelship runs.\n",
      annotations: [],
    };
  }
  const titled = (plan: Plan) =>
    plans.length === 1 ? planTitle(plan) : `${plan.repository.name}: ${planTitle(plan)}`;
  const summary = plans.flatMap((plan) => [
    titled(plan),
    ...(plan.predictions ?? [])
      .filter((report) => report.outcome !== "unchanged" && report.outcome !== "skipped")
      .map((report) => `${report.model}: ${summarizePredictions(report)}`),
  ]);
  return {
    valid: plans.every((plan) => plan.valid),
    title: plans.map(titled).join("; "),
    summary: summary.join("\n"),
    markdown: plans
      .map((plan) =>
        plans.length === 1
          ? formatPlanMarkdown(plan)
          : `**ModelRepository ${plan.repository.namespace}/${plan.repository.name}**\n\n${formatPlanMarkdown(plan)}`,
      )
      .join("\n"),
    annotations: plans.flatMap(problemAnnotations),
  };
}
