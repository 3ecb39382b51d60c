// GitHub's webhook deliveries (docs/pull-requests.md): a push fetches now; a pull request is
// planned, and the plan becomes a check run on its head and the one sticky comment. A delivery
// is checked before anything is done for it — its size, its signature (X-Hub-Signature-256,
// compared in constant time by @octokit/webhooks), whether it was seen before — and answered at
// once: the work runs after the answer (GitHub gives a delivery 10 s), one pull request's plans
// one at a time, so that two quick pushes cannot race into two comments.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { type EmitterWebhookEvent, Webhooks } from "@octokit/webhooks";
import { BodyTooLarge, readBody } from "../api/http.ts";
import type { Forge, PullRequestPlan, PullRequestPlanner, PullRequestRef } from "./port.ts";

/** How much of a delivery is read (GitHub caps its payloads at 25 MB; ours are far smaller). */
export const WEBHOOK_BODY_LIMIT = 1024 * 1024;
/** Marks the sticky comment, so that the next plan edits it rather than adding one. */
export const PLAN_MARKER = "<!-- modelship:plan -->";
/** The check run's name on a pull request's head. */
export const PLAN_CHECK_NAME = "modelship/plan";
/** How many delivery ids are remembered to drop a repeat. */
const REMEMBERED_DELIVERIES = 1000;

type PullRequestEvent = EmitterWebhookEvent<"pull_request">["payload"];

/** Whether a call to the git webhook is a GitHub delivery (GitHub names its event). */
export function isGitHubDelivery(headers: IncomingHttpHeaders): boolean {
  return typeof headers["x-github-event"] === "string";
}

/**
 * What a `pull_request` delivery asks for: a plan of its head (it was opened, pushed to,
 * reopened, made ready, or its base branch changed), the end of it (closed or merged), or
 * nothing (a label, a title, a review request).
 */
export function pullRequestWork(payload: {
  action: string;
  changes?: { base?: unknown };
}): "plan" | "closed" | undefined {
  switch (payload.action) {
    case "opened":
    case "synchronize":
    case "reopened":
    case "ready_for_review":
      return "plan";
    case "edited":
      return payload.changes?.base ? "plan" : undefined;
    case "closed":
      return "closed";
    default:
      return undefined;
  }
}

/** The pull request a delivery is about, or undefined when its payload lacks what is needed. */
export function pullRequestRef(payload: PullRequestEvent): PullRequestRef | undefined {
  const pr = payload.pull_request;
  const ref = {
    number: pr?.number,
    baseSha: pr?.base?.sha,
    headSha: pr?.head?.sha,
    baseRef: pr?.base?.ref,
    headRef: pr?.head?.ref,
  };
  const complete =
    typeof ref.number === "number" &&
    [ref.baseSha, ref.headSha, ref.baseRef, ref.headRef].every(
      (value) => typeof value === "string",
    );
  return complete ? (ref as PullRequestRef) : undefined;
}

/** The ids seen last, at most `limit`; the oldest is forgotten first. */
export class RecentIds {
  private readonly ids = new Set<string>();
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** True the first time `id` comes; false for a repeat. */
  firstTime(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    // A Set iterates in insertion order: the first is the oldest.
    if (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value as string);
    return true;
  }
}

type Task = (signal: AbortSignal) => Promise<void>;

/**
 * Runs one task at a time per key. A task submitted while another runs aborts that one (what it
 * would say is out of date) and waits for it to end; of several waiting, only the newest runs.
 */
export class LatestPerKey {
  private readonly lanes = new Map<string, { running: AbortController; next?: Task }>();
  private readonly busy = new Set<Promise<void>>();

  submit(key: string, task: Task): void {
    const lane = this.lanes.get(key);
    if (lane) {
      lane.next = task;
      lane.running.abort();
      return;
    }
    this.run(key, task);
  }

  /** Resolves when no task runs or waits. */
  async idle(): Promise<void> {
    while (this.busy.size > 0) await Promise.all(this.busy);
  }

  /** Aborts what runs and drops what waits. */
  stop(): void {
    for (const lane of this.lanes.values()) {
      delete lane.next;
      lane.running.abort();
    }
  }

  private run(key: string, task: Task): void {
    const running = new AbortController();
    this.lanes.set(key, { running });
    const done: Promise<void> = task(running.signal)
      // A task reports its own failures; one that throws anyway must not stop its lane.
      .catch(() => {})
      .finally(() => {
        this.busy.delete(done);
        const next = this.lanes.get(key)?.next;
        this.lanes.delete(key);
        if (next) this.run(key, next);
      });
    this.busy.add(done);
  }
}

export interface WebhookReceiverOptions {
  /** "OWNER/NAME": a delivery about another repository is answered and ignored. */
  repository: string;
  /**
   * MODELSHIP_WEBHOOK_SECRET. Every delivery must be signed with it; without one, only push and
   * ping are taken (a fetch reveals nothing), and a pull request is refused.
   */
  secret?: string;
  forge: Forge;
  planPullRequest: PullRequestPlanner;
  /** A push: fetch now. */
  onPush(): void;
  /** A pull request was closed or merged. */
  onPullRequestClosed?(pr: PullRequestRef): Promise<void> | void;
  log(line: string): void;
}

export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
}

function header(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return typeof value === "string" ? value : "";
}

const shortSha = (sha: string) => sha.slice(0, 7);

export class WebhookReceiver {
  private readonly options: WebhookReceiverOptions;
  private readonly webhooks: Webhooks | undefined;
  private readonly seen = new RecentIds(REMEMBERED_DELIVERIES);
  private readonly work = new LatestPerKey();

  constructor(options: WebhookReceiverOptions) {
    this.options = options;
    this.webhooks = options.secret ? new Webhooks({ secret: options.secret }) : undefined;
  }

  /** Reads a delivery (at most 1 MB) and answers it; its work goes on in the background. */
  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let answer: WebhookAnswer;
    try {
      answer = await this.receive(request.headers, await readBody(request, WEBHOOK_BODY_LIMIT));
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error;
      answer = { status: 413, body: { error: "the delivery's body is larger than 1 MB" } };
    }
    const text = JSON.stringify(answer.body);
    response.writeHead(answer.status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    });
    response.end(text);
  }

  /** The answer to one delivery; any work it asks for is started, not awaited. */
  async receive(headers: IncomingHttpHeaders, body: string): Promise<WebhookAnswer> {
    // Bounded: it is said in log lines, and whoever calls may have put anything in it.
    const event = header(headers, "x-github-event").slice(0, 64);
    const refusal = await this.refusal(event, header(headers, "x-hub-signature-256"), body);
    if (refusal) {
      this.options.log(`github webhook: refused a ${event} delivery: ${refusal}`);
      return { status: 401, body: { error: refusal } };
    }
    const delivery = header(headers, "x-github-delivery");
    if (delivery && !this.seen.firstTime(delivery)) {
      return { status: 200, body: { duplicate: delivery } };
    }
    let payload: { repository?: { full_name?: string } };
    try {
      payload = JSON.parse(body);
    } catch {
      return { status: 400, body: { error: "the delivery's body is not JSON" } };
    }
    if (event === "ping") return { status: 200, body: { pong: true } };
    const about = payload.repository?.full_name;
    if (about?.toLowerCase() !== this.options.repository.toLowerCase()) {
      return { status: 202, body: { ignored: `not about ${this.options.repository}` } };
    }
    if (event === "push") {
      this.options.onPush();
      return { status: 202, body: { fetching: true } };
    }
    if (event === "pull_request") return this.pullRequest(payload as PullRequestEvent);
    return { status: 202, body: { ignored: event } };
  }

  /** Waits until no plan runs or waits (tests; a stop). */
  idle(): Promise<void> {
    return this.work.idle();
  }

  /** Aborts the plans that run and drops those that wait. */
  stop(): void {
    this.work.stop();
  }

  /** Why a delivery is refused before anything is done for it, or undefined. */
  private async refusal(
    event: string,
    signature: string,
    body: string,
  ): Promise<string | undefined> {
    if (!this.webhooks) {
      return event === "push" || event === "ping"
        ? undefined
        : `a ${event} delivery must be signed: set MODELSHIP_WEBHOOK_SECRET and the webhook's secret`;
    }
    // verify() compares in constant time; it throws on an empty body or signature instead.
    const signed = signature !== "" && body !== "" && (await this.webhooks.verify(body, signature));
    return signed
      ? undefined
      : "missing or wrong X-Hub-Signature-256 (the webhook secret signs the body)";
  }

  private pullRequest(payload: PullRequestEvent): WebhookAnswer {
    const work = pullRequestWork(payload as { action: string; changes?: { base?: unknown } });
    if (!work) return { status: 202, body: { ignored: `pull_request ${payload.action}` } };
    const pr = pullRequestRef(payload);
    if (!pr)
      return { status: 400, body: { error: "a pull_request delivery without its pull request" } };
    const key = String(pr.number);
    if (work === "closed") {
      this.work.submit(key, () => this.closed(pr));
      return { status: 202, body: { closed: pr.number } };
    }
    this.work.submit(key, (signal) => this.plan(pr, signal));
    return { status: 202, body: { planning: pr.number, head: pr.headSha } };
  }

  private async plan(pr: PullRequestRef, signal: AbortSignal): Promise<void> {
    const { forge, log } = this.options;
    let plan: PullRequestPlan;
    try {
      plan = await this.options.planPullRequest(pr, { signal });
    } catch (error) {
      // A newer head came: its own plan follows.
      if (signal.aborted) return;
      log(
        `github webhook: could not plan pull request #${pr.number} at ${shortSha(pr.headSha)}: ${(error as Error).message}`,
      );
      // The reason stays in modelship's log: what a planner fails on is no business of GitHub's.
      await forge.publishCheck({
        name: PLAN_CHECK_NAME,
        headSha: pr.headSha,
        conclusion: "failure",
        title: "modelship could not plan this pull request",
        summary: "The plan failed to run; modelship's log says why. A new push plans again.",
        annotations: [],
      });
      return;
    }
    if (signal.aborted) return;
    await forge.publishCheck({
      name: PLAN_CHECK_NAME,
      headSha: pr.headSha,
      conclusion: plan.valid ? "success" : "failure",
      title: plan.title,
      summary: plan.summary,
      // The Checks tab shows the plan too, beside the annotations on the files.
      text: plan.markdown,
      annotations: plan.annotations,
    });
    if (signal.aborted) return;
    await forge.upsertComment(pr.number, PLAN_MARKER, plan.markdown);
  }

  private async closed(pr: PullRequestRef): Promise<void> {
    try {
      await this.options.onPullRequestClosed?.(pr);
    } catch (error) {
      this.options.log(
        `github webhook: after pull request #${pr.number} closed: ${(error as Error).message}`,
      );
    }
  }
}
