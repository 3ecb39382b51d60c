// `--github-repo OWNER/NAME`, for `up` and `controller` alike: GitHub's credentials from the
// environment, and the forge, the sync notifier and the webhook receiver made from them
// (docs/pull-requests.md). The credentials are read here and kept in memory only.
import type { Registry } from "prom-client";
import { type GitHubAuth, GitHubForge, parseRepository } from "../forge/github.ts";
import { ForgeMetrics } from "../forge/metrics.ts";
import type { PullRequestPlanner, PullRequestRef } from "../forge/port.ts";
import { SyncNotifier } from "../forge/sync-status.ts";
import { WebhookReceiver } from "../forge/webhook.ts";

/** What the commands' --help says of the flag and its environment. */
export const GITHUB_HELP_LINES = `  --github-repo OWNER/NAME
                       report to this GitHub repository: a check run and one sticky comment with
                       the plan on each pull request, a commit status and a deployment for each
                       sync (docs/pull-requests.md). Credentials: GITHUB_TOKEN, or a GitHub App's
                       GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (PEM; GITHUB_APP_INSTALLATION_ID
                       optional); the API at GITHUB_API_URL (default https://api.github.com)`;

/**
 * GitHub's credentials from the environment: GITHUB_TOKEN, else a GitHub App's id and private
 * key; an error that names them when there are none.
 */
export function gitHubAuthFromEnv(env: NodeJS.ProcessEnv): GitHubAuth {
  if (env.GITHUB_TOKEN) return { token: env.GITHUB_TOKEN };
  if (env.GITHUB_APP_ID && env.GITHUB_APP_PRIVATE_KEY) {
    const installationId = Number(env.GITHUB_APP_INSTALLATION_ID);
    if (env.GITHUB_APP_INSTALLATION_ID && !Number.isInteger(installationId)) {
      throw new Error("GITHUB_APP_INSTALLATION_ID must be a number (the installation's id)");
    }
    return {
      appId: env.GITHUB_APP_ID,
      // A Secret or a shell may carry the key's line breaks as "\n".
      privateKey: env.GITHUB_APP_PRIVATE_KEY.replaceAll("\\n", "\n"),
      ...(env.GITHUB_APP_INSTALLATION_ID ? { installationId } : {}),
    };
  }
  throw new Error(
    "--github-repo needs GitHub credentials: set GITHUB_TOKEN (or a GitHub App's GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY)",
  );
}

export interface GitHubIntegration {
  repository: string;
  notifier: SyncNotifier;
  receiver: WebhookReceiver;
  /** Gives up what waits and what is in flight. */
  stop(): void;
}

export interface GitHubIntegrationOptions {
  /** --github-repo's value. */
  repository: string;
  env: NodeJS.ProcessEnv;
  /** Where modelship_forge_requests_failed_total goes (the command's /metrics). */
  registry: Registry;
  log(line: string): void;
  planPullRequest: PullRequestPlanner;
  /** A push delivery: fetch now. */
  onPush(): void;
  onPullRequestClosed?(pr: PullRequestRef): Promise<void> | void;
}

/** Checks --github-repo and the credentials, so that a command refuses before it starts. */
export function checkGitHubOptions(repository: string, env: NodeJS.ProcessEnv): void {
  parseRepository(repository);
  gitHubAuthFromEnv(env);
}

export function startGitHub(options: GitHubIntegrationOptions): GitHubIntegration {
  const { repository, env, log } = options;
  const metrics = new ForgeMetrics(options.registry);
  const forge = new GitHubForge({
    repository,
    auth: gitHubAuthFromEnv(env),
    ...(env.GITHUB_API_URL ? { baseUrl: env.GITHUB_API_URL } : {}),
    metrics,
    log,
  });
  const notifier = new SyncNotifier({ forge, metrics, log });
  const secret = env.MODELSHIP_WEBHOOK_SECRET;
  const receiver = new WebhookReceiver({
    repository,
    ...(secret ? { secret } : {}),
    forge,
    planPullRequest: options.planPullRequest,
    onPush: options.onPush,
    ...(options.onPullRequestClosed ? { onPullRequestClosed: options.onPullRequestClosed } : {}),
    log,
  });
  log(
    `github: reporting to ${repository}${secret ? "" : "; pull requests are not planned: the webhook needs MODELSHIP_WEBHOOK_SECRET"}`,
  );
  return {
    repository,
    notifier,
    receiver,
    stop: () => {
      receiver.stop();
      notifier.stop();
      forge.stop();
    },
  };
}
