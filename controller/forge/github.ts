// GitHub behind the forge port (port.ts), with @octokit/rest: check runs, the sticky comment,
// commit statuses and deployments of one repository. Authenticated by a token, or as a GitHub
// App installation (@octokit/auth-app), on github.com or a GitHub Enterprise server (baseUrl).
// Every request is retried on a 5xx, a request that got no answer and a rate limit, a bounded
// number of times with a capped wait; what still fails is logged in one line without any
// credential, counted, and never thrown (docs/pull-requests.md#when-github-fails).
import { setTimeout as sleep } from "node:timers/promises";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import type { ForgeMetrics } from "./metrics.ts";
import type { CheckRun, CommitStatus, DeploymentState, Forge, PlanAnnotation } from "./port.ts";

export type GitHubAuth =
  | { token: string }
  | { appId: string; privateKey: string; installationId?: number };

export interface RetryPolicy {
  /** Tries in all, the first one included. */
  attempts: number;
  /** The wait after the first failure; each further one doubles. */
  baseDelayMs: number;
  /** No wait is longer, whatever GitHub asks for. */
  maxDelayMs: number;
  /** A request unanswered for this long is given up (and tried again, like a 5xx). */
  timeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 4,
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  timeoutMs: 30_000,
};

export interface GitHubForgeOptions {
  /** "OWNER/NAME". */
  repository: string;
  auth: GitHubAuth;
  /** The REST API's root: https://api.github.com, or a GitHub Enterprise's https://HOST/api/v3. */
  baseUrl?: string;
  /** Tests shorten the waits. */
  retry?: Partial<RetryPolicy>;
  metrics: ForgeMetrics;
  log(line: string): void;
}

/** What GitHub answered a request that failed; status 0 when it did not answer at all. */
export interface FailedAnswer {
  status: number;
  headers: Record<string, string | number | undefined>;
  message: string;
}

/**
 * How long to wait before trying `answer`'s request again after try number `attempt`, or
 * undefined when another try cannot help (a 404, a 422, a 403 that is not a rate limit).
 */
export function retryDelayMs(
  answer: FailedAnswer,
  attempt: number,
  policy: RetryPolicy,
  now = Date.now(),
): number | undefined {
  const { status, headers } = answer;
  const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  if (status === 403 || status === 429) {
    const retryAfter = Number(headers["retry-after"]);
    if (headers["retry-after"] !== undefined && Number.isFinite(retryAfter)) {
      return Math.min(policy.maxDelayMs, retryAfter * 1000);
    }
    if (String(headers["x-ratelimit-remaining"]) === "0" && headers["x-ratelimit-reset"]) {
      const resetMs = Number(headers["x-ratelimit-reset"]) * 1000;
      return Math.min(policy.maxDelayMs, Math.max(0, resetMs - now));
    }
    // GitHub's secondary rate limit may come with neither header; its docs ask for a minute.
    if (/secondary rate limit/i.test(answer.message)) return Math.min(policy.maxDelayMs, 60_000);
    return status === 429 ? backoff : undefined;
  }
  return status === 0 || status >= 500 ? backoff : undefined;
}

/** "OWNER/NAME" as GitHub's API wants it, or an error that says what --github-repo takes. */
export function parseRepository(text: string): { owner: string; repo: string } {
  const match = /^([A-Za-z0-9][A-Za-z0-9-]*)\/([A-Za-z0-9._-]+)$/.exec(text);
  if (!match || match[2]?.endsWith(".git")) {
    throw new Error(`--github-repo takes OWNER/NAME (as in github.com/OWNER/NAME), not "${text}"`);
  }
  return { owner: match[1] as string, repo: match[2] as string };
}

/** Whether a git URL (https, ssh or scp-like) names the GitHub repository "OWNER/NAME". */
export function urlNamesRepository(url: string, repository: string): boolean {
  const match = /[/:]([^/:]+)\/([^/]+?)(?:\.git)?\/?$/.exec(url);
  return match !== null && `${match[1]}/${match[2]}`.toLowerCase() === repository.toLowerCase();
}

/** A request that failed for good: what was asked and what GitHub answered, nothing secret. */
class GitHubRequestFailed extends Error {
  readonly status: number;
  constructor(route: string, answer: FailedAnswer, tries: number) {
    const outcome =
      answer.status === 0 ? `no answer (${answer.message})` : `${answer.status} ${answer.message}`;
    super(`${route}: ${outcome}, after ${tries} ${tries === 1 ? "try" : "tries"}`);
    this.status = answer.status;
  }
}

/** Only the parts of an octokit error that say what happened: never its request's headers. */
function failedAnswer(error: unknown): FailedAnswer {
  const { status, response, message } = error as {
    status?: number;
    response?: { headers?: FailedAnswer["headers"] };
    message?: string;
  };
  return {
    // Octokit reports a request that got no answer as a 500 without a response.
    status: response ? (status ?? 0) : 0,
    headers: response?.headers ?? {},
    message: (message ?? String(error)).split("\n")[0] ?? "",
  };
}

/** GitHub's limits on a check run's output fields and on a comment's body. */
const OUTPUT_LIMIT = 65_535;
const TITLE_LIMIT = 255;
const COMMENT_LIMIT = 65_536;
const DESCRIPTION_LIMIT = 140;
/** GitHub takes at most 50 annotations in one request; the rest go in further updates. */
const ANNOTATIONS_PER_REQUEST = 50;

/** `text` cut to `limit` characters, saying so when it was. */
export function cut(text: string, limit: number): string {
  if (text.length <= limit) return text;
  const note = "\n\n… (cut: too long for GitHub)";
  return limit > note.length * 2 ? text.slice(0, limit - note.length) + note : text.slice(0, limit);
}

function githubAnnotation(annotation: PlanAnnotation) {
  // GitHub lines start at 1; a problem that has no line is shown on the file's first.
  const line = Math.max(1, annotation.line);
  return {
    path: annotation.path,
    start_line: line,
    end_line: line,
    // GitHub takes columns only on a one-line annotation, which these are.
    ...(annotation.column
      ? { start_column: annotation.column, end_column: annotation.column }
      : {}),
    annotation_level: annotation.level,
    message: cut(annotation.message, OUTPUT_LIMIT),
  };
}

function batches<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let start = 0; start < items.length; start += size)
    out.push(items.slice(start, start + size));
  return out;
}

export class GitHubForge implements Forge {
  private readonly owner: string;
  private readonly repo: string;
  private readonly options: GitHubForgeOptions;
  private readonly policy: RetryPolicy;
  /** Aborts waits and requests in flight when modelship stops. */
  private readonly stopping = new AbortController();
  private client: Promise<Octokit> | undefined;
  private toldChecksNeedAnApp = false;

  constructor(options: GitHubForgeOptions) {
    this.options = options;
    ({ owner: this.owner, repo: this.repo } = parseRepository(options.repository));
    this.policy = { ...DEFAULT_RETRY, ...options.retry };
  }

  async publishCheck(check: CheckRun): Promise<void> {
    await this.report("publishCheck", async (octokit) => {
      const output = {
        title: cut(check.title, TITLE_LIMIT),
        summary: cut(check.summary, OUTPUT_LIMIT),
      };
      const [first = [], ...rest] = batches(
        check.annotations.map(githubAnnotation),
        ANNOTATIONS_PER_REQUEST,
      );
      // A new check run each time rather than an update of the last: an update adds its
      // annotations to those already there, so a second plan of one commit would show both.
      let created: Awaited<ReturnType<Octokit["rest"]["checks"]["create"]>>;
      try {
        created = await octokit.rest.checks.create({
          owner: this.owner,
          repo: this.repo,
          name: check.name,
          head_sha: check.headSha,
          status: "completed",
          conclusion: check.conclusion,
          completed_at: new Date().toISOString(),
          output: {
            ...output,
            ...(check.text ? { text: cut(check.text, OUTPUT_LIMIT) } : {}),
            annotations: first,
          },
        });
      } catch (error) {
        // Only a GitHub App may make check runs: with a personal token the verdict becomes a
        // commit status of the same name, and the comment carries the details.
        if (!(error instanceof GitHubRequestFailed) || error.status !== 403) throw error;
        this.tellChecksNeedAnApp(error);
        await this.createStatus(octokit, {
          sha: check.headSha,
          state: check.conclusion,
          context: check.name,
          description: check.title,
        });
        return;
      }
      for (const annotations of rest) {
        await octokit.rest.checks.update({
          owner: this.owner,
          repo: this.repo,
          check_run_id: created.data.id,
          output: { ...output, annotations },
        });
      }
    });
  }

  async upsertComment(number: number, marker: string, markdown: string): Promise<void> {
    await this.report("upsertComment", async (octokit) => {
      const body = `${marker}\n${cut(markdown, COMMENT_LIMIT - marker.length - 1)}`;
      const comments = await octokit.paginate(octokit.rest.issues.listComments, {
        owner: this.owner,
        repo: this.repo,
        issue_number: number,
        per_page: 100,
      });
      // Ours begins with the marker; a reply that quotes it begins with "> ".
      const ours = comments.find((comment) => comment.body?.startsWith(marker));
      if (!ours) {
        await octokit.rest.issues.createComment({
          owner: this.owner,
          repo: this.repo,
          issue_number: number,
          body,
        });
      } else if (ours.body !== body) {
        await octokit.rest.issues.updateComment({
          owner: this.owner,
          repo: this.repo,
          comment_id: ours.id,
          body,
        });
      }
    });
  }

  async setCommitStatus(status: CommitStatus): Promise<void> {
    await this.report("setCommitStatus", (octokit) => this.createStatus(octokit, status));
  }

  async startDeployment(deployment: {
    sha: string;
    environment: string;
    description: string;
  }): Promise<{ id: number } | undefined> {
    return this.report("startDeployment", async (octokit) => {
      const created = await octokit.rest.repos.createDeployment({
        owner: this.owner,
        repo: this.repo,
        ref: deployment.sha,
        environment: deployment.environment,
        description: cut(deployment.description, DESCRIPTION_LIMIT),
        // The commit is already live: GitHub must neither merge the default branch into it
        // nor wait for its other statuses.
        auto_merge: false,
        required_contexts: [],
        production_environment: false,
        transient_environment: false,
      });
      if (!("id" in created.data)) {
        throw new Error(`POST /repos/{owner}/{repo}/deployments: ${created.data.message}`);
      }
      return { id: created.data.id };
    });
  }

  async setDeploymentStatus(
    id: number,
    state: DeploymentState,
    description: string,
  ): Promise<void> {
    await this.report("setDeploymentStatus", async (octokit) => {
      await octokit.rest.repos.createDeploymentStatus({
        owner: this.owner,
        repo: this.repo,
        deployment_id: id,
        state,
        description: cut(description, DESCRIPTION_LIMIT),
        // A success makes the environment's earlier deployments inactive: one is live.
        auto_inactive: true,
      });
    });
  }

  /** Gives up every wait and request in flight; the calls resolve without saying more. */
  stop(): void {
    this.stopping.abort();
  }

  private async createStatus(octokit: Octokit, status: CommitStatus): Promise<void> {
    await octokit.rest.repos.createCommitStatus({
      owner: this.owner,
      repo: this.repo,
      sha: status.sha,
      state: status.state,
      context: status.context,
      description: cut(status.description, DESCRIPTION_LIMIT),
    });
  }

  private tellChecksNeedAnApp(error: Error): void {
    if (this.toldChecksNeedAnApp) return;
    this.toldChecksNeedAnApp = true;
    this.options.log(
      `github: ${this.redact(error.message)}: check runs need a GitHub App (GITHUB_APP_ID); posting the verdict as a commit status instead`,
    );
  }

  /** Runs `work`; a failure is one log line and one count, and `work`'s result is undefined. */
  private async report<T>(
    operation: string,
    work: (octokit: Octokit) => Promise<T>,
  ): Promise<T | undefined> {
    try {
      return await work(await this.octokit());
    } catch (error) {
      // Stopping is no failure of GitHub's.
      if (this.stopping.signal.aborted) return undefined;
      this.options.metrics.failed(operation);
      this.options.log(
        `github: ${operation} on ${this.options.repository} failed: ${this.redact((error as Error).message)}`,
      );
      return undefined;
    }
  }

  /** A message with every credential this forge holds taken out, should one have slipped in. */
  private redact(text: string): string {
    const { auth } = this.options;
    const secret = "token" in auth ? auth.token : auth.privateKey;
    return secret ? text.replaceAll(secret, "[redacted]") : text;
  }

  private octokit(): Promise<Octokit> {
    this.client ??= this.connect().catch((error: unknown) => {
      // The next call tries again (the installation may not have been reachable).
      this.client = undefined;
      throw error;
    });
    return this.client;
  }

  private async connect(): Promise<Octokit> {
    const { auth } = this.options;
    if ("token" in auth) return this.newOctokit({ auth: auth.token });
    const app = { appId: auth.appId, privateKey: auth.privateKey };
    let installationId = auth.installationId;
    if (installationId === undefined) {
      // As the App itself (a JWT), ask which of its installations holds the repository.
      const asApp = this.newOctokit({ authStrategy: createAppAuth, auth: app });
      const { data } = await asApp.rest.apps.getRepoInstallation({
        owner: this.owner,
        repo: this.repo,
      });
      installationId = data.id;
    }
    return this.newOctokit({ authStrategy: createAppAuth, auth: { ...app, installationId } });
  }

  private newOctokit(auth: ConstructorParameters<typeof Octokit>[0]): Octokit {
    const log = (message: string) => this.options.log(`github: ${this.redact(message)}`);
    const octokit = new Octokit({
      ...auth,
      ...(this.options.baseUrl ? { baseUrl: this.options.baseUrl.replace(/\/+$/, "") } : {}),
      userAgent: "modelship",
      // Octokit's warnings (a deprecation, say) reach the log; not its debug lines, which hold
      // each request's headers (the token among them), nor its line per request or failed try:
      // what fails for good is said once, by report().
      log: { debug: () => {}, info: () => {}, warn: log, error: () => {} },
    });
    octokit.hook.wrap("request", async (request, options) => {
      // The route's template ("POST /repos/{owner}/{repo}/check-runs"): no id, no query.
      const route = `${options.method} ${options.url}`;
      for (let attempt = 1; ; attempt++) {
        const signal = AbortSignal.any([
          this.stopping.signal,
          AbortSignal.timeout(this.policy.timeoutMs),
        ]);
        try {
          return await request({ ...options, request: { ...options.request, signal } });
        } catch (error) {
          const answer = failedAnswer(error);
          const delay =
            attempt < this.policy.attempts && !this.stopping.signal.aborted
              ? retryDelayMs(answer, attempt, this.policy)
              : undefined;
          if (delay === undefined) throw new GitHubRequestFailed(route, answer, attempt);
          await sleep(delay, undefined, { signal: this.stopping.signal, ref: false });
        }
      }
    });
    return octokit;
  }
}
