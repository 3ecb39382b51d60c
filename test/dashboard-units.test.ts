// The dashboard's parts that need no browser: sign-in sessions and one-time links, the traffic
// points behind the charts, the static files' server, and where each declared object starts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { bucketQuantile, pointBetween, type TrafficTotals } from "../controller/core/traffic.ts";
import {
  DashboardSessions,
  LINK_LIFETIME_MS,
  MAX_CREDENTIALS,
  SESSION_LIFETIME_MS,
} from "../controller/platform/dashboard-sessions.ts";
import { TrafficHistory, totalsByModel } from "../controller/platform/local/traffic.ts";
import { loadUiFiles } from "../controller/platform/ui-files.ts";
import { validateManifests } from "../controller/source/validate.ts";
import { MemoryTree } from "./helpers/memory-tree.ts";

const ADMIN_TOKEN = "a".repeat(48);

describe("DashboardSessions", () => {
  const clock = () => {
    let now = 1_000_000;
    return {
      now: () => now,
      advance: (ms: number) => {
        now += ms;
      },
    };
  };

  it.each<[string, string, (sessions: DashboardSessions) => unknown]>([
    ["the admin token", "session", () => ({ token: ADMIN_TOKEN })],
    ["a wrong token", "wrong-token", () => ({ token: `${ADMIN_TOKEN.slice(1)}b` })],
    ["a token of another length", "wrong-token", () => ({ token: "short" })],
    ["nothing", "wrong-token", () => ({})],
    ["a token that is not a string", "wrong-token", () => ({ token: 42 })],
    ["a fresh link code", "session", (sessions) => ({ code: sessions.newLinkCode() })],
    ["a made-up link code", "used-or-expired-link", () => ({ code: "made-up" })],
  ])("signs in with %s: %s", (_, outcome, credential) => {
    const sessions = new DashboardSessions(ADMIN_TOKEN);
    const result = sessions.signIn(credential(sessions) as { token?: unknown; code?: unknown });
    expect(typeof result === "string" ? result : "session").toBe(outcome);
    if (typeof result !== "string") expect(sessions.accepts(result.token)).toBe(true);
  });

  it("takes a link's code once", () => {
    const sessions = new DashboardSessions(ADMIN_TOKEN);
    const code = sessions.newLinkCode();
    expect(typeof sessions.signIn({ code })).toBe("object");
    expect(sessions.signIn({ code })).toBe("used-or-expired-link");
  });

  it("lets a link expire, and a session end, on time", () => {
    const time = clock();
    const sessions = new DashboardSessions(ADMIN_TOKEN, time.now);
    const late = sessions.newLinkCode();
    const signedIn = sessions.signIn({ token: ADMIN_TOKEN });
    if (typeof signedIn === "string") throw new Error(signedIn);
    expect(signedIn.expiresAt).toBe(new Date(1_000_000 + SESSION_LIFETIME_MS).toISOString());
    time.advance(LINK_LIFETIME_MS);
    expect(sessions.signIn({ code: late })).toBe("used-or-expired-link");
    expect(sessions.accepts(signedIn.token)).toBe(true);
    time.advance(SESSION_LIFETIME_MS);
    expect(sessions.accepts(signedIn.token)).toBe(false);
    // The admin token never ends.
    expect(sessions.accepts(ADMIN_TOKEN)).toBe(true);
  });

  it("signs a session out, but not the admin token", () => {
    const sessions = new DashboardSessions(ADMIN_TOKEN);
    const signedIn = sessions.signIn({ token: ADMIN_TOKEN });
    if (typeof signedIn === "string") throw new Error(signedIn);
    expect(sessions.signOut(signedIn.token)).toBe(true);
    expect(sessions.accepts(signedIn.token)).toBe(false);
    expect(sessions.signOut(ADMIN_TOKEN)).toBe(false);
    expect(sessions.accepts(ADMIN_TOKEN)).toBe(true);
  });

  it("keeps at most MAX_CREDENTIALS sessions, dropping the oldest", () => {
    const sessions = new DashboardSessions(ADMIN_TOKEN);
    const tokens = Array.from({ length: MAX_CREDENTIALS + 1 }, () => {
      const signedIn = sessions.signIn({ token: ADMIN_TOKEN });
      if (typeof signedIn === "string") throw new Error(signedIn);
      return signedIn.token;
    });
    expect(sessions.accepts(tokens[0] as string)).toBe(false);
    expect(tokens.slice(1).every((token) => sessions.accepts(token))).toBe(true);
  });
});

const BUCKETS: [number, number][] = [
  [0.001, 0],
  [0.01, 50],
  [0.1, 90],
  [1, 100],
];

describe("bucketQuantile", () => {
  it.each<[string, [number, number][], number, number, number]>([
    ["the median inside a bucket, interpolated", BUCKETS, 100, 0.5, 0.01],
    ["a quarter, halfway into its bucket", BUCKETS, 100, 0.25, 0.0055],
    ["p99 in the last bucket", BUCKETS, 100, 0.99, 0.1 + 0.9 * 0.9],
    ["past every bound: the last bound", [[0.1, 0]], 10, 0.5, 0.1],
    ["an empty first bucket", [[0.5, 10]], 10, 0.5, 0.25],
  ])("%s", (_, buckets, total, q, expected) => {
    expect(bucketQuantile(buckets, total, q)).toBeCloseTo(expected, 6);
  });
});

const totals = (calls: number, errors: number, latencySeconds: number, buckets = BUCKETS) =>
  ({ calls, errors, busy: 0, latencySeconds, buckets }) satisfies TrafficTotals;

describe("pointBetween", () => {
  const time = new Date("2026-12-01T10:00:05Z");
  it.each<[string, TrafficTotals | undefined, TrafficTotals, object]>([
    [
      "calls and errors a second over the interval, mean latency of its calls",
      totals(
        100,
        10,
        2,
        BUCKETS.map(([bound, count]) => [bound, count / 2]),
      ),
      totals(150, 15, 3),
      { callsPerSecond: 10, errorsPerSecond: 1, latencyMs: { mean: 20 } },
    ],
    [
      "no calls: no latency",
      totals(5, 0, 1),
      totals(5, 0, 1),
      { callsPerSecond: 0, latencyMs: null },
    ],
    [
      "the first reading counts from zero",
      undefined,
      totals(
        50,
        0,
        0.5,
        BUCKETS.map(([bound, count]) => [bound, Math.min(count, 50)]),
      ),
      { callsPerSecond: 10, latencyMs: { mean: 10 } },
    ],
    [
      "a counter that went down was reset: counts from zero",
      totals(500, 0, 9),
      totals(
        50,
        0,
        0.5,
        BUCKETS.map(([bound, count]) => [bound, Math.min(count, 50)]),
      ),
      { callsPerSecond: 10 },
    ],
  ])("%s", (_, before, after, expected) => {
    expect(pointBetween(before, after, 5, time)).toMatchObject({
      time: time.toISOString(),
      ...expected,
    });
  });
});

describe("totalsByModel and TrafficHistory", () => {
  const metrics = (calls: number) => [
    {
      name: "modelship_gateway_requests_total",
      help: "",
      type: "counter" as never,
      aggregator: "sum" as never,
      values: [
        { labels: { model: "iris", code: "ok" }, value: calls },
        { labels: { model: "iris", code: "model.busy" }, value: 2 },
        { labels: { model: "", code: "model.not_found" }, value: 7 },
      ],
    },
    {
      name: "modelship_gateway_request_duration_seconds",
      help: "",
      type: "histogram" as never,
      aggregator: "sum" as never,
      values: [
        { labels: { model: "iris", le: 0.01 }, value: calls, metricName: "x_bucket" },
        { labels: { model: "iris", le: "+Inf" }, value: calls + 2, metricName: "x_bucket" },
        { labels: { model: "iris" }, value: calls / 200, metricName: "x_sum" },
      ],
    },
  ];

  it("reads each model's calls, errors and latency buckets, and leaves calls to no model out", () => {
    const byModel = totalsByModel(metrics(10) as never);
    expect([...byModel.keys()]).toStrictEqual(["iris"]);
    expect(byModel.get("iris")).toStrictEqual({
      calls: 12,
      errors: 2,
      busy: 0,
      latencySeconds: 0.05,
      buckets: [[0.01, 10]],
    });
  });

  it("makes a point per model from the second reading on, and keeps the last `keep`", async () => {
    let calls = 0;
    let now = 0;
    const history = new TrafficHistory({
      read: async () => {
        calls += 10;
        return metrics(calls) as never;
      },
      keep: 2,
      now: () => {
        now += 5000;
        return new Date(now);
      },
    });
    await history.sample();
    expect(history.of("iris")).toStrictEqual([]);
    for (let i = 0; i < 3; i++) await history.sample();
    const points = history.of("iris");
    expect(points).toHaveLength(2);
    expect(points.map((point) => point.callsPerSecond)).toStrictEqual([2, 2]);
  });
});

describe("the dashboard's files", () => {
  const dist = mkdtempSync(join(tmpdir(), "modelship-ui-"));
  mkdirSync(join(dist, "assets"));
  writeFileSync(join(dist, "index.html"), "<!doctype html><title>x</title>");
  writeFileSync(join(dist, "assets", "index-abc.js"), "console.log('x');".repeat(100));
  const serve = (files: ReturnType<typeof loadUiFiles>) =>
    new Promise<{ server: Server; url: string }>((resolve) => {
      const server = createServer((request, response) => {
        const pathname = new URL(request.url ?? "/", "http://x").pathname;
        if (!files.serve(request, response, pathname)) response.writeHead(418).end();
      });
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as { port: number };
        resolve({ server, url: `http://127.0.0.1:${address.port}` });
      });
    });
  const servers: Server[] = [];
  afterAll(() => {
    for (const server of servers) server.close();
    rmSync(dist, { recursive: true, force: true });
  });

  it.each<[string, string, RequestInit, number, Record<string, string | null>]>([
    ["/ui redirects to /ui/", "/ui", { redirect: "manual" }, 308, { location: "/ui/" }],
    [
      "the page",
      "/ui/",
      {},
      200,
      { "cache-control": "no-cache", "content-type": "text/html; charset=utf-8" },
    ],
    [
      "an asset, cached for good",
      "/ui/assets/index-abc.js",
      {},
      200,
      { "cache-control": "public, max-age=31536000, immutable" },
    ],
    ["a missing asset", "/ui/assets/nope.js", {}, 404, {}],
    ["a POST", "/ui/", { method: "POST" }, 405, { allow: "GET, HEAD" }],
    ["a path outside /ui", "/api/v1/models", {}, 418, {}],
    ["a path that only starts like /ui", "/uix", {}, 418, {}],
  ])("answers %s", async (_, path, init, status, headers) => {
    const { server, url } = await serve(loadUiFiles(dist));
    servers.push(server);
    const answer = await fetch(`${url}${path}`, init);
    expect(answer.status).toBe(status);
    for (const [name, value] of Object.entries(headers))
      expect(answer.headers.get(name)).toBe(value);
    if (status !== 418) {
      expect(answer.headers.get("content-security-policy")).toContain("default-src 'none'");
    }
  });

  it("sends gzip to a browser that takes it, and the same bytes", async () => {
    const { server, url } = await serve(loadUiFiles(dist));
    servers.push(server);
    const { request } = await import("node:http");
    const body = await new Promise<{ encoding?: string; bytes: Buffer }>((resolve) => {
      request(
        `${url}/ui/assets/index-abc.js`,
        { headers: { "accept-encoding": "gzip" } },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () =>
            resolve({
              encoding: response.headers["content-encoding"],
              bytes: Buffer.concat(chunks),
            }),
          );
        },
      ).end();
    });
    expect(body.encoding).toBe("gzip");
    expect(gunzipSync(body.bytes).toString()).toBe("console.log('x');".repeat(100));
  });

  it("says how to build it when it is not built", async () => {
    const { server, url } = await serve(loadUiFiles(join(dist, "nowhere")));
    servers.push(server);
    const answer = await fetch(`${url}/ui/`);
    expect(answer.status).toBe(503);
    expect(await answer.text()).toContain("npm run build");
  });
});

describe("where a declared object starts", () => {
  it("is the line of its document's first key, in each document of a file", async () => {
    const text = [
      "# comment",
      "apiVersion: modelship.dev/v1alpha1",
      "kind: Model",
      "metadata: { name: a }",
      "spec: { runtime: python3, file: a.py, function: f }",
      "---",
      "",
      "# the deployment",
      "apiVersion: modelship.dev/v1alpha1",
      "kind: ModelDeployment",
      "metadata: { name: a }",
      "spec: { model: a }",
      "",
    ].join("\n");
    const result = await validateManifests(
      [{ file: "m/models.yaml", repoPath: "m/models.yaml", text }],
      new MemoryTree({ "m/a.py": "def f(args):\n    return 1\n" }),
    );
    expect(result.problems).toStrictEqual([]);
    expect(result.declared.map((item) => [item.kind, item.line])).toStrictEqual([
      ["Model", 2],
      ["ModelDeployment", 9],
    ]);
  });
});
