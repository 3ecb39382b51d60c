// A GitHub REST API on 127.0.0.1 for the forge's tests: the endpoints modelship calls, answered
// with GitHub's status codes and response shapes, and checked as GitHub checks them — the
// credentials, the accept header, the body's fields and limits (50 annotations a request) — with
// every request recorded. A route can be told to answer its next requests otherwise first
// (502, 502, then as usual), or late.
import { type KeyObject, verify } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  // biome-ignore lint/suspicious/noExplicitAny: a test reads whatever JSON was sent.
  body: any;
}

/** An answer given instead of the usual one; without a status, the usual one, `delayMs` late. */
export interface ScriptedAnswer {
  status?: number;
  headers?: Record<string, string>;
  body?: unknown;
  delayMs?: number;
}

export interface FakeCheckRun {
  id: number;
  name: string;
  head_sha: string;
  status: string;
  conclusion: string;
  output: { title: string; summary: string; text?: string };
  annotations: Record<string, unknown>[];
}

export interface FakeComment {
  id: number;
  issue: number;
  body: string;
  user: { login: string; id: number; type: string };
}

export interface FakeDeployment {
  id: number;
  sha: string;
  environment: string;
  description: string;
  statuses: { state: string; description: string }[];
}

export interface FakeGitHubOptions {
  owner: string;
  repo: string;
  /** The personal token it takes (`authorization: token …`). */
  token?: string;
  /** A GitHub App it knows: its JWTs (`bearer …`) are checked with this public key. */
  app?: { id: string; publicKey: KeyObject; installationId: number };
}

const INSTALLATION_TOKEN = "ghs_fakeinstallationtoken";
const SHA = /^[0-9a-f]{40}$/;
const LEVELS = ["notice", "warning", "failure"];
const CONCLUSIONS = [
  "action_required",
  "cancelled",
  "failure",
  "neutral",
  "success",
  "skipped",
  "stale",
  "timed_out",
];

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

const validationFailed = (message: string): Answer => ({
  status: 422,
  body: {
    message: "Validation Failed",
    errors: [{ resource: "Request", code: "invalid", message }],
    documentation_url: "https://docs.github.com/rest",
    status: "422",
  },
});

export class FakeGitHub {
  readonly requests: RecordedRequest[] = [];
  readonly checkRuns: FakeCheckRun[] = [];
  readonly comments: FakeComment[] = [];
  readonly statuses: { sha: string; state: string; context: string; description: string }[] = [];
  readonly deployments: FakeDeployment[] = [];
  url = "";
  private readonly options: FakeGitHubOptions;
  private readonly server: Server;
  private readonly scripts: { method: string; path: RegExp; answers: ScriptedAnswer[] }[] = [];
  private nextId = 1000;

  constructor(options: FakeGitHubOptions) {
    this.options = options;
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", async () => {
        const url = new URL(request.url ?? "/", "http://github");
        const text = Buffer.concat(chunks).toString("utf8");
        const recorded: RecordedRequest = {
          method: request.method ?? "GET",
          path: url.pathname,
          query: url.searchParams,
          headers: request.headers,
          body: text ? JSON.parse(text) : undefined,
        };
        this.requests.push(recorded);
        const answer = await this.answer(recorded);
        const body = JSON.stringify(answer.body);
        response.writeHead(answer.status, {
          "content-type": "application/json; charset=utf-8",
          "content-length": Buffer.byteLength(body),
          ...answer.headers,
        });
        response.end(body);
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The next requests to `method path` get `answers`, one each, before the usual answer. */
  script(method: string, path: RegExp, answers: ScriptedAnswer[]): void {
    this.scripts.push({ method, path, answers: [...answers] });
  }

  /** A comment already on pull request `issue` (someone else's, unless `login` says). */
  addComment(issue: number, body: string, login = "mary"): FakeComment {
    const comment = {
      id: this.nextId++,
      issue,
      body,
      user: { login, id: 7, type: login.endsWith("[bot]") ? "Bot" : "User" },
    };
    this.comments.push(comment);
    return comment;
  }

  /** The requests made to `method` and a path matching `path`. */
  requestsTo(method: string, path: RegExp): RecordedRequest[] {
    return this.requests.filter((request) => request.method === method && path.test(request.path));
  }

  private async answer(request: RecordedRequest): Promise<Answer> {
    const script = this.scripts.find(
      (entry) =>
        entry.method === request.method && entry.path.test(request.path) && entry.answers.length,
    );
    const scripted = script?.answers.shift();
    if (scripted?.delayMs) await new Promise((resolve) => setTimeout(resolve, scripted.delayMs));
    if (scripted?.status !== undefined) {
      return {
        status: scripted.status,
        body: scripted.body ?? { message: `scripted ${scripted.status}` },
        ...(scripted.headers ? { headers: scripted.headers } : {}),
      };
    }
    if (!String(request.headers.accept).includes("application/vnd.github")) {
      return { status: 415, body: { message: "Unsupported 'Accept' header" } };
    }
    return this.route(request);
  }

  /** The routes: method, path pattern (a group per parameter), and whether the App's JWT signs it. */
  private routes(): [
    string,
    string,
    "app" | "token",
    (id: string, request: RecordedRequest) => Answer,
  ][] {
    const { owner, repo } = this.options;
    const at = `/repos/${owner}/${repo}`;
    const notFound: Answer = { status: 404, body: { message: "Not Found" } };
    return [
      [
        "POST",
        "/app/installations/([^/]+)/access_tokens",
        "app",
        (id) =>
          Number(id) === this.options.app?.installationId
            ? {
                status: 201,
                body: {
                  token: INSTALLATION_TOKEN,
                  expires_at: new Date(Date.now() + 3_600_000).toISOString(),
                  permissions: { checks: "write", pull_requests: "write" },
                  repository_selection: "selected",
                },
              }
            : notFound,
      ],
      [
        "GET",
        `${at}/installation`,
        "app",
        () => ({
          status: 200,
          body: {
            id: this.options.app?.installationId,
            app_id: Number(this.options.app?.id),
            account: { login: owner },
          },
        }),
      ],
      ["POST", `${at}/check-runs`, "token", (_, request) => this.createCheckRun(request.body)],
      [
        "PATCH",
        `${at}/check-runs/(\\d+)`,
        "token",
        (id, request) => this.updateCheckRun(Number(id), request.body),
      ],
      [
        "GET",
        `${at}/issues/(\\d+)/comments`,
        "token",
        (issue, request) => this.listComments(Number(issue), request.query),
      ],
      [
        "POST",
        `${at}/issues/(\\d+)/comments`,
        "token",
        (issue, request) =>
          typeof request.body?.body === "string"
            ? {
                status: 201,
                body: this.addComment(Number(issue), request.body.body, "modelship[bot]"),
              }
            : validationFailed("body is required"),
      ],
      [
        "PATCH",
        `${at}/issues/comments/(\\d+)`,
        "token",
        (id, request) => {
          const comment = this.comments.find((entry) => entry.id === Number(id));
          if (!comment) return notFound;
          if (typeof request.body?.body !== "string") return validationFailed("body is required");
          comment.body = request.body.body;
          return { status: 200, body: comment };
        },
      ],
      [
        "POST",
        `${at}/statuses/([^/]+)`,
        "token",
        (sha, request) => this.createStatus(sha, request.body),
      ],
      ["POST", `${at}/deployments`, "token", (_, request) => this.createDeployment(request.body)],
      [
        "POST",
        `${at}/deployments/(\\d+)/statuses`,
        "token",
        (id, request) => this.createDeploymentStatus(Number(id), request.body),
      ],
    ];
  }

  private route(request: RecordedRequest): Answer {
    for (const [method, pattern, credentials, handle] of this.routes()) {
      const found = request.method === method && new RegExp(`^${pattern}$`).exec(request.path);
      if (!found) continue;
      const parameter = found[1] ?? "";
      if (credentials === "app") return this.asApp(request, () => handle(parameter, request));
      return this.refuseCredentials(request) ?? handle(parameter, request);
    }
    return { status: 404, body: { message: "Not Found" } };
  }

  /** GitHub's 401 for a request without the token or the installation's token. */
  private refuseCredentials(request: RecordedRequest): Answer | undefined {
    const accepted = [this.options.token, this.options.app ? INSTALLATION_TOKEN : undefined]
      .filter(Boolean)
      .map((token) => `token ${token}`);
    const presented = String(request.headers.authorization ?? "");
    if (accepted.includes(presented) || accepted.includes(presented.replace(/^bearer /i, "token ")))
      return undefined;
    return { status: 401, body: { message: "Bad credentials" } };
  }

  /** Answers an App route for a JWT signed with the App's key and naming it as issuer. */
  private asApp(request: RecordedRequest, answer: () => Answer): Answer {
    const app = this.options.app;
    const [scheme, jwt = ""] = String(request.headers.authorization ?? "").split(" ");
    const [header = "", payload = "", signature = ""] = jwt.split(".");
    const signed =
      app !== undefined &&
      scheme?.toLowerCase() === "bearer" &&
      verify(
        "RSA-SHA256",
        Buffer.from(`${header}.${payload}`),
        app.publicKey,
        Buffer.from(signature, "base64url"),
      );
    const claims = signed ? JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) : {};
    if (!signed || String(claims.iss) !== app?.id) {
      return { status: 401, body: { message: "A JSON web token could not be decoded" } };
    }
    return answer();
  }

  private createCheckRun(body: Record<string, unknown> | undefined): Answer {
    if (typeof body?.name !== "string" || !SHA.test(String(body.head_sha))) {
      return validationFailed("name and a 40-character head_sha are required");
    }
    if (body.status === "completed" && !CONCLUSIONS.includes(String(body.conclusion))) {
      return validationFailed("a completed check run needs a conclusion");
    }
    const output = body.output as FakeCheckRun["output"] & { annotations?: unknown[] };
    const problem = this.outputProblem(output);
    if (problem) return validationFailed(problem);
    const run: FakeCheckRun = {
      id: this.nextId++,
      name: body.name,
      head_sha: String(body.head_sha),
      status: String(body.status),
      conclusion: String(body.conclusion),
      output: { title: output.title, summary: output.summary, text: output.text },
      // A copy: the recorded request keeps what was sent, whatever later updates add.
      annotations: [...((output.annotations ?? []) as Record<string, unknown>[])],
    };
    this.checkRuns.push(run);
    return { status: 201, body: this.checkRunBody(run) };
  }

  private updateCheckRun(id: number, body: Record<string, unknown> | undefined): Answer {
    const run = this.checkRuns.find((entry) => entry.id === id);
    if (!run) return { status: 404, body: { message: "Not Found" } };
    const output = body?.output as FakeCheckRun["output"] & { annotations?: unknown[] };
    const problem = output ? this.outputProblem(output) : undefined;
    if (problem) return validationFailed(problem);
    // As GitHub does: an update's annotations are added to the run's.
    run.annotations.push(...((output?.annotations ?? []) as Record<string, unknown>[]));
    return { status: 200, body: this.checkRunBody(run) };
  }

  /** What GitHub refuses in a check run's output, or undefined. */
  private outputProblem(
    output: (FakeCheckRun["output"] & { annotations?: unknown[] }) | undefined,
  ): string | undefined {
    if (typeof output?.title !== "string" || typeof output.summary !== "string") {
      return "output needs a title and a summary";
    }
    const annotations = (output.annotations ?? []) as Record<string, unknown>[];
    if (annotations.length > 50) return "at most 50 annotations in one request";
    for (const annotation of annotations) {
      const lines = typeof annotation.start_line === "number" && annotation.start_line >= 1;
      if (
        typeof annotation.path !== "string" ||
        !lines ||
        typeof annotation.end_line !== "number" ||
        !LEVELS.includes(String(annotation.annotation_level)) ||
        typeof annotation.message !== "string"
      ) {
        return "an annotation needs path, start_line, end_line, annotation_level and message";
      }
      if (annotation.start_column !== undefined && annotation.start_line !== annotation.end_line) {
        return "columns are only for an annotation on one line";
      }
    }
    return undefined;
  }

  private checkRunBody(run: FakeCheckRun) {
    const { owner, repo } = this.options;
    return {
      id: run.id,
      node_id: `CR_${run.id}`,
      head_sha: run.head_sha,
      name: run.name,
      status: run.status,
      conclusion: run.conclusion,
      url: `${this.url}/repos/${owner}/${repo}/check-runs/${run.id}`,
      html_url: `https://github.com/${owner}/${repo}/runs/${run.id}`,
      started_at: new Date().toISOString(),
      completed_at: new Date().toISOString(),
      output: {
        ...run.output,
        annotations_count: run.annotations.length,
        annotations_url: `${this.url}/repos/${owner}/${repo}/check-runs/${run.id}/annotations`,
      },
    };
  }

  private listComments(issue: number, query: URLSearchParams): Answer {
    const perPage = Number(query.get("per_page") ?? 30);
    const page = Number(query.get("page") ?? 1);
    const all = this.comments.filter((comment) => comment.issue === issue);
    const pages = Math.ceil(all.length / perPage);
    const { owner, repo } = this.options;
    const next = `${this.url}/repos/${owner}/${repo}/issues/${issue}/comments?per_page=${perPage}&page=${page + 1}`;
    return {
      status: 200,
      body: all.slice((page - 1) * perPage, page * perPage),
      ...(page < pages ? { headers: { link: `<${next}>; rel="next"` } } : {}),
    };
  }

  private createStatus(sha: string, body: Record<string, unknown> | undefined): Answer {
    const state = String(body?.state);
    if (!SHA.test(sha) || !["error", "failure", "pending", "success"].includes(state)) {
      return validationFailed("a 40-character sha and a state are required");
    }
    const description = String(body?.description ?? "");
    if (description.length > 140) return validationFailed("description is too long (140)");
    const status = { sha, state, context: String(body?.context ?? "default"), description };
    this.statuses.push(status);
    return {
      status: 201,
      body: {
        id: this.nextId++,
        ...status,
        target_url: null,
        created_at: new Date().toISOString(),
      },
    };
  }

  private createDeployment(body: Record<string, unknown> | undefined): Answer {
    if (!SHA.test(String(body?.ref)) || typeof body?.environment !== "string") {
      return validationFailed("ref and environment are required");
    }
    // GitHub waits for the commit's other statuses unless told not to: 409 when they fail.
    if (!Array.isArray(body.required_contexts) || body.auto_merge !== false) {
      return validationFailed("the test expects required_contexts [] and auto_merge false");
    }
    const deployment: FakeDeployment = {
      id: this.nextId++,
      sha: String(body.ref),
      environment: body.environment,
      description: String(body.description ?? ""),
      statuses: [],
    };
    this.deployments.push(deployment);
    const { owner, repo } = this.options;
    return {
      status: 201,
      body: {
        id: deployment.id,
        sha: deployment.sha,
        ref: deployment.sha,
        environment: deployment.environment,
        description: deployment.description,
        url: `${this.url}/repos/${owner}/${repo}/deployments/${deployment.id}`,
        statuses_url: `${this.url}/repos/${owner}/${repo}/deployments/${deployment.id}/statuses`,
        created_at: new Date().toISOString(),
      },
    };
  }

  private createDeploymentStatus(id: number, body: Record<string, unknown> | undefined): Answer {
    const deployment = this.deployments.find((entry) => entry.id === id);
    if (!deployment) return { status: 404, body: { message: "Not Found" } };
    const state = String(body?.state);
    const states = ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"];
    if (!states.includes(state)) return validationFailed(`state ${state} is not one of ${states}`);
    const description = String(body?.description ?? "");
    if (description.length > 140) return validationFailed("description is too long (140)");
    deployment.statuses.push({ state, description });
    return {
      status: 201,
      body: {
        id: this.nextId++,
        state,
        description,
        environment: deployment.environment,
        deployment_url: `${this.url}/repos/${this.options.owner}/${this.options.repo}/deployments/${id}`,
        created_at: new Date().toISOString(),
      },
    };
  }
}
