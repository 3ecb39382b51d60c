// What modelship needs from a forge (docs/pull-requests.md): a verdict on a pull request's head
// (a check run), one sticky comment with the plan, a commit status for every sync, and a
// deployment per synced commit whose statuses say whether it serves. GitHub implements it first
// (github.ts); GitLab or Gitea would implement the same.

export interface PullRequestRef {
  number: number;
  baseSha: string;
  headSha: string;
  baseRef: string;
  headRef: string;
}

export interface PlanAnnotation {
  path: string;
  line: number;
  column?: number;
  level: "failure" | "warning" | "notice";
  message: string;
}

/** What modelship says about a pull request: computed by a planner the caller injects. */
export interface PullRequestPlan {
  valid: boolean;
  title: string;
  summary: string;
  markdown: string;
  annotations: PlanAnnotation[];
}

export type PullRequestPlanner = (
  pr: PullRequestRef,
  options: { signal?: AbortSignal },
) => Promise<PullRequestPlan>;

export interface CheckRun {
  /** The check's name, one per commit: a second publish under it updates the first. */
  name: string;
  headSha: string;
  conclusion: "success" | "failure";
  title: string;
  summary: string;
  /** Markdown below the summary. */
  text?: string;
  annotations: PlanAnnotation[];
}

export type CommitState = "pending" | "success" | "failure" | "error";

export interface CommitStatus {
  sha: string;
  state: CommitState;
  /** What the status is about ("modelship/sync/default/local"): a new status of it replaces its last. */
  context: string;
  /** At most 140 characters; longer ones are cut. */
  description: string;
}

export type DeploymentState = "in_progress" | "success" | "failure" | "inactive";

/**
 * A forge, as modelship uses it. No method rejects: an implementation retries what can be
 * retried, then logs the failure in one line and counts it (modelship_forge_requests_failed_total),
 * so that no caller — and no sync — ever fails or waits on a forge that is down.
 */
export interface Forge {
  /**
   * Creates or updates the check run named `check.name` on `check.headSha`: completed, with its
   * conclusion, output and annotations (however many: GitHub takes 50 a request).
   */
  publishCheck(check: CheckRun): Promise<void>;
  /**
   * Creates the one comment on pull request `number` that carries `marker` (a hidden HTML
   * comment, `<!-- modelship:plan -->`), or edits it in place: never a second one.
   */
  upsertComment(number: number, marker: string, markdown: string): Promise<void>;
  setCommitStatus(status: CommitStatus): Promise<void>;
  /**
   * A deployment of commit `sha` to `environment` ("modelship/<namespace>/<repository>"), so the
   * commit's page shows what is live; undefined when it could not be made.
   */
  startDeployment(deployment: {
    sha: string;
    environment: string;
    description: string;
  }): Promise<{ id: number } | undefined>;
  setDeploymentStatus(id: number, state: DeploymentState, description: string): Promise<void>;
}
