// The GitHub integration against a fake GitHub API on 127.0.0.1 (helpers/fake-github.ts): a
// signed pull_request delivery makes one check run with the plan's annotations and one sticky
// comment that later pushes edit; a delivery that is not signed right does nothing at all; a
// repeat is dropped; GitHub's 5xx and rate limits are retried, and what fails for good is one
// log line without the token and one count; the sync's notifications never wait on GitHub.
import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeServer, listen } from "../controller/api/http.ts";
import { DEFAULT_RETRY, GitHubForge, retryDelayMs } from "../controller/forge/github.ts";
import { ForgeMetrics } from "../controller/forge/metrics.ts";
import type {
  PlanAnnotation,
  PullRequestPlan,
  PullRequestPlanner,
  PullRequestRef,
} from "../controller/forge/port.ts";
import { SyncNotifier } from "../controller/forge/sync-status.ts";
import {
  LatestPerKey,
  PLAN_CHECK_NAME,
  PLAN_MARKER,
  pullRequestWork,
  RecentIds,
  WebhookReceiver,
} from "../controller/forge/webhook.ts";
import { FakeGitHub } from "./helpers/fake-github.ts";

const OWNER = "acme";
const REPO = "models";
const TOKEN = "ghp_theTokenThatMustNeverBeLogged1234";
const SECRET = "a-webhook-secret";
const BASE = "a".repeat(40);
const HEAD = "b".repeat(40);
const NEXT_HEAD = "c".repeat(40);
/** Waits of a few milliseconds, so that four tries take no time. */
const FAST = { baseDelayMs: 5, maxDelayMs: 50, timeoutMs: 5_000 };

let github: FakeGitHub;
let registry: Registry;
let metrics: ForgeMetrics;
let logged: string[];

beforeEach(async () => {
  github = await new FakeGitHub({ owner: OWNER, repo: REPO, token: TOKEN }).start();
  registry = new Registry();
  metrics = new ForgeMetrics(registry);
  logged = [];
});

afterEach(async () => {
  await github.close();
});

function newForge(token = TOKEN) {
  return new GitHubForge({
    repository: `${OWNER}/${REPO}`,
    auth: { token },
    baseUrl: github.url,
    retry: FAST,
    metrics,
    log: (line) => logged.push(line),
  });
}

async function failures(operation: string): Promise<number> {
  const metric = await registry.getSingleMetric("modelship_forge_requests_failed_total")?.get();
  return metric?.values.find((value) => value.labels.operation === operation)?.value ?? 0;
}

const sign = (body: string, secret = SECRET) =>
  `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;

function pullRequestPayload(action: string, headSha: string, extra: Record<string, unknown> = {}) {
  return {
    action,
    number: 7,
    pull_request: {
      number: 7,
      base: { sha: BASE, ref: "main" },
      head: { sha: headSha, ref: "feature" },
    },
    repository: { full_name: `${OWNER}/${REPO}` },
    ...extra,
  };
}

/** A delivery as GitHub sends it: its event, id and signature in headers, its JSON body. */
function delivery(
  event: string,
  payload: unknown,
  options: { id?: string; signature?: string | null } = {},
): { headers: IncomingHttpHeaders; body: string } {
  const body = JSON.stringify(payload);
  const signature = options.signature === undefined ? sign(body) : options.signature;
  return {
    headers: {
      "x-github-event": event,
      "x-github-delivery": options.id ?? randomUUID(),
      ...(signature === null ? {} : { "x-hub-signature-256": signature }),
    },
    body,
  };
}

const ANNOTATIONS: PlanAnnotation[] = [
  { path: "iris/model.yaml", line: 12, column: 5, level: "failure", message: "no such file" },
  { path: "iris/predict.py", line: 3, level: "warning", message: "function is slow" },
];

/** A planner that says the head is invalid and records what it was asked. */
function recordingPlanner(annotations = ANNOTATIONS) {
  const calls: PullRequestRef[] = [];
  const planner: PullRequestPlanner = async (pr) => {
    calls.push(pr);
    return {
      valid: false,
      title: "1 problem",
      summary: `plan of ${pr.headSha.slice(0, 7)}`,
      markdown: `## modelship plan\nhead ${pr.headSha}`,
      annotations,
    };
  };
  return { calls, planner };
}

function newReceiver(planner: PullRequestPlanner, extra: Partial<{ secret: string }> = {}) {
  const pushes: number[] = [];
  const closed: PullRequestRef[] = [];
  const receiver = new WebhookReceiver({
    repository: `${OWNER}/${REPO}`,
    secret: SECRET,
    ...extra,
    forge: newForge(),
    planPullRequest: planner,
    onPush: () => pushes.push(Date.now()),
    onPullRequestClosed: (pr) => {
      closed.push(pr);
    },
    log: (line) => logged.push(line),
  });
  return { receiver, pushes, closed };
}

describe("retryDelayMs", () => {
  const policy = { ...DEFAULT_RETRY, baseDelayMs: 1000, maxDelayMs: 10_000 };
  const now = 1_700_000_000_000;
  it.each<[string, number, Record<string, string>, string, number, number | undefined]>([
    ["a 502, first try", 502, {}, "Bad Gateway", 1, 1000],
    ["a 503, third try (doubled twice)", 503, {}, "", 3, 4000],
    ["a 500, tenth try (capped)", 500, {}, "", 10, 10_000],
    ["no answer at all", 0, {}, "connect ECONNREFUSED", 1, 1000],
    [
      "a rate limit that resets in 2 s",
      403,
      { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 2) },
      "API rate limit exceeded",
      1,
      2000,
    ],
    [
      "a rate limit that resets in an hour (capped)",
      403,
      { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 3600) },
      "",
      1,
      10_000,
    ],
    ["a 429 with retry-after", 429, { "retry-after": "3" }, "", 1, 3000],
    ["a 403 with retry-after", 403, { "retry-after": "0" }, "", 1, 0],
    ["a secondary rate limit", 403, {}, "You have exceeded a secondary rate limit", 1, 10_000],
    ["a 429 without headers", 429, {}, "", 2, 2000],
    [
      "a 403 that is a refusal",
      403,
      { "x-ratelimit-remaining": "4999" },
      "Forbidden",
      1,
      undefined,
    ],
    ["a 404", 404, {}, "Not Found", 1, undefined],
    ["a 422", 422, {}, "Validation Failed", 1, undefined],
    ["a 401", 401, {}, "Bad credentials", 1, undefined],
  ])("%s", (_, status, headers, message, attempt, expected) => {
    expect(retryDelayMs({ status, headers, message }, attempt, policy, now)).toBe(expected);
  });
});

describe("which pull_request actions plan", () => {
  it.each<[string, Record<string, unknown>, string | undefined]>([
    ["opened", {}, "plan"],
    ["synchronize", {}, "plan"],
    ["reopened", {}, "plan"],
    ["ready_for_review", {}, "plan"],
    ["edited", { changes: { base: { ref: { from: "dev" } } } }, "plan"],
    ["edited", { changes: { title: { from: "old" } } }, undefined],
    ["closed", {}, "closed"],
    ["labeled", {}, undefined],
    ["review_requested", {}, undefined],
  ])("%s %j → %s", (action, extra, expected) => {
    expect(pullRequestWork({ action, ...extra })).toBe(expected);
  });
});

describe("RecentIds", () => {
  it("says a repeat apart from a first time, and forgets the oldest past its limit", () => {
    const ids = new RecentIds(2);
    expect([ids.firstTime("a"), ids.firstTime("a"), ids.firstTime("b")]).toEqual([
      true,
      false,
      true,
    ]);
    ids.firstTime("c");
    expect([ids.firstTime("a"), ids.firstTime("c")]).toEqual([true, false]);
  });
});

describe("LatestPerKey", () => {
  it("runs one task per key at a time: a newer one aborts the running one; of those waiting, the newest runs", async () => {
    const lanes = new LatestPerKey();
    const events: string[] = [];
    const task =
      (name: string, ms = 20) =>
      async (signal: AbortSignal) => {
        events.push(`start ${name}`);
        await new Promise((resolve) => setTimeout(resolve, ms));
        events.push(`${signal.aborted ? "aborted" : "done"} ${name}`);
      };
    lanes.submit("7", task("first"));
    lanes.submit("8", task("other pull request", 200));
    lanes.submit("7", task("second"));
    lanes.submit("7", task("third"));
    await lanes.idle();
    expect(events).toEqual([
      "start first",
      "start other pull request",
      "aborted first",
      "start third",
      "done third",
      "done other pull request",
    ]);
  });
});

describe("the webhook receiver, with GitHub", () => {
  it("plans a signed pull_request: one check run with the plan's annotations, one sticky comment", async () => {
    const { calls, planner } = recordingPlanner();
    const { receiver } = newReceiver(planner);
    const { headers, body } = delivery("pull_request", pullRequestPayload("opened", HEAD));
    const answer = await receiver.receive(headers, body);
    expect(answer.status).toBe(202);
    await receiver.idle();

    expect(calls).toEqual([
      { number: 7, baseSha: BASE, headSha: HEAD, baseRef: "main", headRef: "feature" },
    ]);
    const [create, ...more] = github.requestsTo("POST", /\/check-runs$/);
    expect(more).toEqual([]);
    expect(create?.headers.authorization).toBe(`token ${TOKEN}`);
    expect(create?.body).toMatchObject({
      name: PLAN_CHECK_NAME,
      head_sha: HEAD,
      status: "completed",
      conclusion: "failure",
      output: {
        title: "1 problem",
        summary: "plan of bbbbbbb",
        annotations: [
          {
            path: "iris/model.yaml",
            start_line: 12,
            end_line: 12,
            start_column: 5,
            end_column: 5,
            annotation_level: "failure",
            message: "no such file",
          },
          {
            path: "iris/predict.py",
            start_line: 3,
            end_line: 3,
            annotation_level: "warning",
            message: "function is slow",
          },
        ],
      },
    });
    expect(github.comments).toHaveLength(1);
    expect(github.comments[0]?.body).toBe(`${PLAN_MARKER}\n## modelship plan\nhead ${HEAD}`);
  });

  it("edits the same comment when a push brings a new head (synchronize), and adds none", async () => {
    const { planner } = recordingPlanner();
    const { receiver } = newReceiver(planner);
    for (const [action, head] of [
      ["opened", HEAD],
      ["synchronize", NEXT_HEAD],
    ] as const) {
      const { headers, body } = delivery("pull_request", pullRequestPayload(action, head));
      await receiver.receive(headers, body);
      await receiver.idle();
    }
    expect(github.requestsTo("POST", /\/issues\/7\/comments$/)).toHaveLength(1);
    const edits = github.requestsTo("PATCH", /\/issues\/comments\/\d+$/);
    expect(edits).toHaveLength(1);
    expect(edits[0]?.path).toBe(
      `/repos/${OWNER}/${REPO}/issues/comments/${github.comments[0]?.id}`,
    );
    expect(github.comments.map((comment) => comment.body)).toEqual([
      `${PLAN_MARKER}\n## modelship plan\nhead ${NEXT_HEAD}`,
    ]);
    expect(github.checkRuns.map((run) => run.head_sha)).toEqual([HEAD, NEXT_HEAD]);
  });

  it("finds its comment among many (the second page), and leaves one that quotes the marker alone", async () => {
    for (let n = 0; n < 120; n++) github.addComment(7, `comment ${n}`);
    github.addComment(7, `> ${PLAN_MARKER}\n> an earlier plan, quoted`);
    const ours = github.addComment(7, `${PLAN_MARKER}\nold plan`, "modelship[bot]");
    const { planner } = recordingPlanner();
    const { receiver } = newReceiver(planner);
    const { headers, body } = delivery("pull_request", pullRequestPayload("reopened", HEAD));
    await receiver.receive(headers, body);
    await receiver.idle();
    expect(github.requestsTo("GET", /\/issues\/7\/comments$/).length).toBeGreaterThan(1);
    expect(github.requestsTo("POST", /\/comments$/)).toEqual([]);
    expect(github.requestsTo("PATCH", /\/issues\/comments\/\d+$/).map((r) => r.path)).toEqual([
      `/repos/${OWNER}/${REPO}/issues/comments/${ours.id}`,
    ]);
  });

  it("sends more than 50 annotations in batches of 50: one check run, then updates", async () => {
    const many: PlanAnnotation[] = Array.from({ length: 120 }, (_, n) => ({
      path: `file${n}.py`,
      line: n + 1,
      level: "notice",
      message: `note ${n}`,
    }));
    const { planner } = recordingPlanner(many);
    const { receiver } = newReceiver(planner);
    const { headers, body } = delivery("pull_request", pullRequestPayload("opened", HEAD));
    await receiver.receive(headers, body);
    await receiver.idle();
    expect(github.requestsTo("POST", /\/check-runs$/)).toHaveLength(1);
    const sizes = github.requests
      .filter((request) => /\/check-runs/.test(request.path))
      .map((request) => `${request.method} ${request.body.output.annotations.length}`);
    expect(sizes).toEqual(["POST 50", "PATCH 50", "PATCH 20"]);
    expect(github.checkRuns[0]?.annotations.map((annotation) => annotation.path)).toEqual(
      many.map((annotation) => annotation.path),
    );
  });

  it.each<[string, string | null]>([
    ["no signature", null],
    ["a wrong secret's signature", "other secret"],
    ["a signature of another body", "other body"],
    ["a signature that is not one", "sha256=nothex"],
  ])("refuses a delivery with %s: 401, no plan, no call to GitHub", async (_, kind) => {
    const { calls, planner } = recordingPlanner();
    const { receiver, pushes } = newReceiver(planner);
    for (const event of ["pull_request", "push"]) {
      const payload = pullRequestPayload("opened", HEAD);
      const signature =
        kind === null
          ? null
          : kind === "other secret"
            ? sign(JSON.stringify(payload), "another secret")
            : kind === "other body"
              ? sign("{}")
              : kind;
      const { headers, body } = delivery(event, payload, { signature });
      const answer = await receiver.receive(headers, body);
      expect(answer.status).toBe(401);
    }
    await receiver.idle();
    expect(calls).toEqual([]);
    expect(pushes).toEqual([]);
    expect(github.requests).toEqual([]);
    expect(logged).toHaveLength(2);
    expect(logged[0]).toContain("refused a pull_request delivery");
  });

  it("without a webhook secret, takes an unsigned push but refuses an unsigned pull_request", async () => {
    const { calls, planner } = recordingPlanner();
    const { receiver, pushes } = newReceiver(planner, { secret: "" });
    const push = delivery(
      "push",
      { repository: { full_name: `${OWNER}/${REPO}` } },
      {
        signature: null,
      },
    );
    expect((await receiver.receive(push.headers, push.body)).status).toBe(202);
    const pr = delivery("pull_request", pullRequestPayload("opened", HEAD), { signature: null });
    const answer = await receiver.receive(pr.headers, pr.body);
    expect(answer.status).toBe(401);
    expect(answer.body.error).toContain("MODELSHIP_WEBHOOK_SECRET");
    await receiver.idle();
    expect([pushes.length, calls.length, github.requests.length]).toEqual([1, 0, 0]);
  });

  it("does the work of a delivery once, however often it comes", async () => {
    const { calls, planner } = recordingPlanner();
    const { receiver } = newReceiver(planner);
    const { headers, body } = delivery("pull_request", pullRequestPayload("opened", HEAD), {
      id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    });
    const answers = [await receiver.receive(headers, body), await receiver.receive(headers, body)];
    await receiver.idle();
    expect(answers.map((answer) => answer.status)).toEqual([202, 200]);
    expect(calls).toHaveLength(1);
    expect(github.checkRuns).toHaveLength(1);
    expect(github.comments).toHaveLength(1);
  });

  it("answers before the plan is done, and a newer head supersedes the plan under way: one comment, the newest", async () => {
    let release: () => void = () => {};
    const planned: string[] = [];
    const planner: PullRequestPlanner = async (pr, { signal }) => {
      if (pr.headSha === HEAD) {
        // The first plan is slow: the second push comes while it runs.
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      }
      planned.push(`${pr.headSha.slice(0, 1)} aborted=${signal?.aborted}`);
      return {
        valid: true,
        title: "ok",
        summary: "ok",
        markdown: `head ${pr.headSha}`,
        annotations: [],
      } satisfies PullRequestPlan;
    };
    const { receiver } = newReceiver(planner);
    const first = delivery("pull_request", pullRequestPayload("opened", HEAD));
    expect((await receiver.receive(first.headers, first.body)).status).toBe(202);
    const second = delivery("pull_request", pullRequestPayload("synchronize", NEXT_HEAD));
    expect((await receiver.receive(second.headers, second.body)).status).toBe(202);
    release();
    await receiver.idle();
    expect(planned).toEqual(["b aborted=true", "c aborted=false"]);
    expect(github.checkRuns.map((run) => [run.head_sha, run.conclusion])).toEqual([
      [NEXT_HEAD, "success"],
    ]);
    expect(github.comments.map((comment) => comment.body)).toEqual([
      `${PLAN_MARKER}\nhead ${NEXT_HEAD}`,
    ]);
  });

  it("publishes a failed check, without the planner's error, when the plan cannot run", async () => {
    const { receiver } = newReceiver(async () => {
      throw new Error("cannot fetch https://x-access-token:secret@example/repo");
    });
    const { headers, body } = delivery("pull_request", pullRequestPayload("opened", HEAD));
    await receiver.receive(headers, body);
    await receiver.idle();
    expect(github.checkRuns.map((run) => [run.conclusion, run.output.title])).toEqual([
      ["failure", "modelship could not plan this pull request"],
    ]);
    expect(JSON.stringify(github.requests.map((request) => request.body))).not.toContain("secret");
    expect(github.comments).toEqual([]);
    expect(logged.join("\n")).toContain("could not plan pull request #7");
  });

  it("hands a closed pull request to its hook, fetches on a push, answers ping, and ignores the rest", async () => {
    const { calls, planner } = recordingPlanner();
    const { receiver, pushes, closed } = newReceiver(planner);
    const ours = { repository: { full_name: `${OWNER}/${REPO}` } };
    const cases: [string, unknown, number][] = [
      ["pull_request", pullRequestPayload("closed", HEAD), 202],
      ["push", { ref: "refs/heads/main", ...ours }, 202],
      ["ping", { zen: "Keep it logically awesome.", hook_id: 1 }, 200],
      ["issues", { action: "opened", ...ours }, 202],
      ["pull_request", pullRequestPayload("labeled", HEAD), 202],
      ["push", { repository: { full_name: "someone/else" } }, 202],
    ];
    const statuses = [];
    for (const [event, payload] of cases) {
      const { headers, body } = delivery(event, payload);
      statuses.push((await receiver.receive(headers, body)).status);
    }
    await receiver.idle();
    expect(statuses).toEqual(cases.map(([, , status]) => status));
    expect(closed.map((pr) => pr.number)).toEqual([7]);
    expect(pushes).toHaveLength(1);
    expect(calls).toEqual([]);
    expect(github.requests).toEqual([]);
  });

  it("over HTTP: 202 at once for a delivery, 413 for a body over 1 MB", async () => {
    const { planner } = recordingPlanner();
    const { receiver } = newReceiver(planner);
    const server = createServer((request, response) => {
      void receiver.handle(request, response);
    });
    const url = await listen(server, "127.0.0.1", 0);
    try {
      const { headers, body } = delivery("pull_request", pullRequestPayload("opened", HEAD));
      const answer = await fetch(url, {
        method: "POST",
        headers: headers as Record<string, string>,
        body,
      });
      expect([answer.status, await answer.json()]).toEqual([202, { planning: 7, head: HEAD }]);
      const huge = JSON.stringify({ padding: "x".repeat(1024 * 1024) });
      const tooLarge = await fetch(url, {
        method: "POST",
        headers: { "x-github-event": "push", "x-hub-signature-256": sign(huge) },
        body: huge,
      });
      expect(tooLarge.status).toBe(413);
      await receiver.idle();
      expect(github.checkRuns).toHaveLength(1);
    } finally {
      await closeServer(server);
    }
  });
});

describe("GitHubForge: retries, failures, credentials", () => {
  const check = {
    name: PLAN_CHECK_NAME,
    headSha: HEAD,
    conclusion: "success" as const,
    title: "ok",
    summary: "ok",
    annotations: [],
  };

  it("lands a check run after GitHub answered 502 twice", async () => {
    github.script("POST", /\/check-runs$/, [{ status: 502 }, { status: 502 }]);
    await newForge().publishCheck(check);
    expect(github.requestsTo("POST", /\/check-runs$/)).toHaveLength(3);
    expect(github.checkRuns).toHaveLength(1);
    expect(await failures("publishCheck")).toBe(0);
  });

  it("waits out a rate limit (403, x-ratelimit-remaining 0) and tries again", async () => {
    const reset = String(Math.ceil(Date.now() / 1000));
    github.script("POST", /\/statuses\//, [
      {
        status: 403,
        headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset },
        body: { message: "API rate limit exceeded for user ID 1." },
      },
    ]);
    await newForge().setCommitStatus({
      sha: HEAD,
      state: "success",
      context: "modelship/sync",
      description: "applied 3 objects",
    });
    expect(github.requestsTo("POST", /\/statuses\//)).toHaveLength(2);
    expect(github.statuses).toEqual([
      { sha: HEAD, state: "success", context: "modelship/sync", description: "applied 3 objects" },
    ]);
  });

  it("after all its tries, counts the failure and logs one line without the token, and does not throw", async () => {
    github.script("POST", /\/check-runs$/, Array(DEFAULT_RETRY.attempts).fill({ status: 502 }));
    await expect(newForge().publishCheck(check)).resolves.toBeUndefined();
    expect(github.requestsTo("POST", /\/check-runs$/)).toHaveLength(DEFAULT_RETRY.attempts);
    expect(await failures("publishCheck")).toBe(1);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/publishCheck on acme\/models failed: .*502.*after 4 tries/);
    expect(logged.join("\n")).not.toContain(TOKEN);
  });

  it("keeps a refused token out of the log too (401 Bad credentials)", async () => {
    await newForge(`${TOKEN}-wrong`).upsertComment(7, PLAN_MARKER, "plan");
    expect(await failures("upsertComment")).toBe(1);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain("401 Bad credentials");
    expect(logged.join("\n")).not.toContain(TOKEN);
  });

  it("posts the verdict as a commit status when the token may not make check runs (not a GitHub App)", async () => {
    github.script("POST", /\/check-runs$/, [
      { status: 403, body: { message: "Resource not accessible by personal access token" } },
    ]);
    await newForge().publishCheck({ ...check, conclusion: "failure", title: "2 problems" });
    expect(github.statuses).toEqual([
      { sha: HEAD, state: "failure", context: PLAN_CHECK_NAME, description: "2 problems" },
    ]);
    expect(await failures("publishCheck")).toBe(0);
    expect(logged.join("\n")).toContain("check runs need a GitHub App");
  });

  it("authenticates as a GitHub App installation: finds it, gets its token, and uses it", async () => {
    await github.close();
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    github = await new FakeGitHub({
      owner: OWNER,
      repo: REPO,
      app: { id: "4242", publicKey, installationId: 99 },
    }).start();
    const forge = new GitHubForge({
      repository: `${OWNER}/${REPO}`,
      auth: {
        appId: "4242",
        privateKey: privateKey.export({ type: "pkcs1", format: "pem" }) as string,
      },
      baseUrl: github.url,
      retry: FAST,
      metrics,
      log: (line) => logged.push(line),
    });
    await forge.publishCheck(check);
    expect(logged).toEqual([]);
    expect(github.requests.map((request) => `${request.method} ${request.path}`)).toEqual([
      `GET /repos/${OWNER}/${REPO}/installation`,
      "POST /app/installations/99/access_tokens",
      `POST /repos/${OWNER}/${REPO}/check-runs`,
    ]);
    expect(github.checkRuns).toHaveLength(1);
  });
});

describe("SyncNotifier", () => {
  const commit = "d".repeat(40);
  const newNotifier = () =>
    new SyncNotifier({
      forge: newForge(),
      metrics,
      log: (line) => logged.push(line),
    });

  it("returns from synced() at once while GitHub is slow and failing, then lands a commit status and a deployment", async () => {
    github.script("POST", /\/statuses\//, [{ status: 502, delayMs: 200 }, { status: 502 }]);
    const notifier = newNotifier();
    const started = performance.now();
    notifier.synced({ repository: "default/local", commit, objects: 3 });
    // GitHub answers its first request only after 200 ms.
    expect(performance.now() - started).toBeLessThan(100);
    expect(github.statuses).toEqual([]);
    await notifier.idle();
    expect(github.requestsTo("POST", /\/statuses\//)).toHaveLength(3);
    expect(github.statuses).toEqual([
      {
        sha: commit,
        state: "success",
        context: "modelship/sync/default/local",
        description: "applied 3 objects",
      },
    ]);
    expect(github.deployments).toMatchObject([
      {
        sha: commit,
        environment: "modelship/default/local",
        statuses: [{ state: "in_progress" }],
      },
    ]);
  });

  it("moves the deployment to success when everything serves, to failure when one stalls", async () => {
    const notifier = newNotifier();
    const other = "e".repeat(40);
    notifier.synced({ repository: "default/local", commit, objects: 2 });
    notifier.rolledOut({
      repository: "default/local",
      commit,
      ok: true,
      message: "serving: iris build 2",
    });
    notifier.synced({ repository: "team/ml", commit: other, objects: 1 });
    notifier.rolledOut({
      repository: "team/ml",
      commit: other,
      ok: false,
      message: "ModelDeployment iris stalled: the rollout of build 3 failed:\nImportError",
    });
    await notifier.idle();
    expect(
      github.deployments.map((deployment) => [deployment.environment, deployment.statuses]),
    ).toEqual([
      [
        "modelship/default/local",
        [
          { state: "in_progress", description: "rolling out" },
          { state: "success", description: "serving: iris build 2" },
        ],
      ],
      [
        "modelship/team/ml",
        [
          { state: "in_progress", description: "rolling out" },
          {
            state: "failure",
            description: "ModelDeployment iris stalled: the rollout of build 3 failed: ImportError",
          },
        ],
      ],
    ]);
  });

  it("marks a deployment still rolling out inactive when a newer commit syncs, and ignores a late outcome of it", async () => {
    const notifier = newNotifier();
    const newer = "f".repeat(40);
    notifier.synced({ repository: "default/local", commit, objects: 1 });
    notifier.synced({ repository: "default/local", commit: newer, objects: 1 });
    notifier.rolledOut({ repository: "default/local", commit, ok: true, message: "late" });
    await notifier.idle();
    expect(github.deployments.map((deployment) => deployment.statuses.map((s) => s.state))).toEqual(
      [["in_progress", "inactive"], ["in_progress"]],
    );
  });

  it("posts a failed sync as a failure status with the reason on one line of at most 140 characters", async () => {
    const notifier = newNotifier();
    const message = `2 problems at commit ddddddd; nothing from it is applied:\n${"model.yaml:3: bad\n".repeat(20)}`;
    notifier.syncFailed({ repository: "default/local", commit, message });
    await notifier.idle();
    expect(github.statuses).toHaveLength(1);
    expect(github.statuses[0]).toMatchObject({
      sha: commit,
      state: "failure",
      context: "modelship/sync/default/local",
    });
    expect(github.statuses[0]?.description).toMatch(
      /^2 problems at commit ddddddd; nothing from it is applied: model\.yaml:3: bad/,
    );
    expect(github.statuses[0]?.description.length).toBeLessThanOrEqual(140);
    expect(github.deployments).toEqual([]);
  });
});
