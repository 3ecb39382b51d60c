// The admin surface of `modelship up`: the git webhook takes GitHub's signature when a secret is
// set, and a flood of it neither floods the sync nor slows the models down; a malformed path gets
// nothing but the 401 from a caller without the token.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelRepository } from "../controller/api/types.generated.ts";
import { type AdminFile, coalesced, webhookSignature } from "../controller/platform/local/admin.ts";
import { type CliProcess, PROJECT_ROOT, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminFileOf, removeUpTestRoot } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-admin-"));
const repo = join(root, "repo");
const stateDir = join(root, "state");
const SECRET = "a-webhook-secret";
const GIT_ENV = gitEnv({ name: "Mary Golda Ross", email: "mary@example.com" });
let up: CliProcess;
let admin: AdminFile;

const manifest = openModelManifest({
  name: "echo",
  file: "echo.py",
  function: "echo",
  replicas: 2,
});

const hook = (body: string, signature?: string) =>
  fetch(`${admin.url}/hooks/git`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(signature ? { "x-hub-signature-256": signature } : {}),
    },
    body,
  });

const repository = async () =>
  (await (
    await fetch(`${admin.url}/api/v1/modelrepositories/local`, {
      headers: { authorization: `Bearer ${admin.token}` },
    })
  ).json()) as ModelRepository;

/** How many ModelRepository passes the controller has made (its metrics). */
async function syncPasses(): Promise<number> {
  const text = await (await fetch(`${admin.url}/metrics`)).text();
  return [
    ...text.matchAll(
      /^modelship_controller_reconcile_total\{kind="ModelRepository",[^}]*\} (\d+)$/gm,
    ),
  ]
    .map((match) => Number(match[1]))
    .reduce((sum, count) => sum + count, 0);
}

/** Calls answered per second by two callers, each one call at a time, over `ms`. */
async function throughput(ms: number): Promise<number> {
  let answered = 0;
  const end = Date.now() + ms;
  const caller = async () => {
    while (Date.now() < end) {
      const answer = await postJson(`${up.url}/models/echo/predict`, { n: answered });
      if (answer.status === 200) answered += 1;
    }
  };
  await Promise.all([caller(), caller()]);
  return answered / (ms / 1000);
}

beforeAll(async () => {
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "echo", {
    "echo.py": "def echo(args):\n    return args\n",
    "model.yaml": manifest,
  });
  up = await startCli(
    ["up", "--repo", repo, "--state-dir", stateDir, "--port", "0", "--interval", "1h"],
    { env: { MODELSHIP_WEBHOOK_SECRET: SECRET } },
  );
  admin = adminFileOf(stateDir);
  await eventually(
    async () => (await postJson(`${up.url}/models/echo/predict`, { a: 1 })).status === 200,
    60_000,
  );
}, 90_000);

afterAll(async () => {
  expect(await up?.stop()).toBe(0);
  removeUpTestRoot(root);
}, 30_000);

describe("the git webhook", () => {
  it.each<[string, string | undefined]>([
    ["no signature", undefined],
    ["a wrong signature", webhookSignature("another secret", Buffer.from("{}"))],
    ["the signature of another body", webhookSignature(SECRET, Buffer.from('{"x":1}'))],
  ])("refuses a call with %s", async (_, signature) => {
    const answer = await hook("{}", signature);
    expect(answer.status).toBe(401);
    expect(await answer.text()).toContain("X-Hub-Signature-256");
  });

  it("fetches at once on a call signed with the secret, as GitHub signs it", async () => {
    const head = commitAll(repo, GIT_ENV, "a new commit", { "notes.txt": "n\n" });
    const body = JSON.stringify({ ref: "refs/heads/main", after: head });
    const answer = await hook(body, webhookSignature(SECRET, Buffer.from(body)));
    expect(answer.status).toBe(202);
    await eventually(async () => (await repository()).status?.lastSyncedCommit === head, 10_000);
    expect(runGit(repo, GIT_ENV, "rev-parse", "HEAD")).toBe(head);
  });

  it("under a flood, fetches at most about once a second and keeps the models' throughput", async () => {
    const normal = await throughput(3000);
    const body = "{}";
    // The flood comes from a process of its own, at the lowest CPU priority: on two cores, the
    // flooder's own work must not be what is measured, only what up spends on its calls.
    const flooder = spawn(
      "nice",
      [
        "-n",
        "19",
        process.execPath,
        "-e",
        `const http = require("node:http");
         const agent = new http.Agent({ keepAlive: true });
         let calls = 0;
         const loop = () => {
           const request = http.request(process.argv[1], { method: "POST", agent, headers: { "x-hub-signature-256": process.argv[2], "content-type": "application/json" } }, (response) => { response.resume(); response.on("end", () => { calls++; loop(); }); });
           request.on("error", () => setTimeout(loop, 10));
           request.end(process.argv[3]);
         };
         for (let i = 0; i < 4; i++) loop();
         process.on("SIGTERM", () => { console.log(calls); process.exit(0); });`,
        `${admin.url}/hooks/git`,
        webhookSignature(SECRET, Buffer.from(body)),
        body,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let output = "";
    flooder.stdout.on("data", (chunk) => {
      output += chunk;
    });
    const exited = new Promise((resolve) => flooder.once("exit", resolve));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = await syncPasses();
    const underFlood = await throughput(3000);
    const during = await syncPasses();
    flooder.kill("SIGTERM");
    await exited;
    const calls = Number(output.trim());
    // A flood: ten times what the rate limit lets through (10 a second), at the least. How many
    // more the flooder manages depends on what else the two cores run; what is measured is the
    // models' throughput beside it.
    expect(calls, "the flood's calls").toBeGreaterThan(300);
    expect(underFlood / normal, `${underFlood} vs ${normal} calls/s`).toBeGreaterThan(0.8);
    // Three seconds of flood made a sync a second or so, not one per call.
    expect(during - before).toBeLessThanOrEqual(5);
  }, 30_000);
});

describe("the admin API", () => {
  it("answers a malformed path with 401 to a caller without the token, 400 with it", async () => {
    const path = `${admin.url}/api/v1/models/%E0%A4%A`;
    expect((await fetch(path)).status).toBe(401);
    const answer = await fetch(path, { headers: { authorization: `Bearer ${admin.token}` } });
    expect(answer.status).toBe(400);
  });
});

describe("watching objects", () => {
  // biome-ignore lint/suspicious/noExplicitAny: objects are checked field by field
  type Watched = { type: string; object: any };
  /** The events of a watch, line by line, as they come. */
  async function* events(path: string, token = admin.token): AsyncGenerator<Watched> {
    const response = await fetch(`${admin.url}${path}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.headers.get("content-type")).toBe("application/json;stream=watch");
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true });
      let end = pending.indexOf("\n");
      while (end !== -1) {
        yield JSON.parse(pending.slice(0, end)) as Watched;
        pending = pending.slice(end + 1);
        end = pending.indexOf("\n");
      }
    }
  }

  it("streams what there is, then each change as it happens, as the API server's watch does", async () => {
    const all = events("/api/v1/modeldeployments?watch=1");
    const named = events("/api/v1/modeldeployments/echo?watch=1");
    const next = async (stream: AsyncGenerator<Watched>) => {
      const result = await stream.next();
      if (result.done) throw new Error("the watch ended");
      return result.value;
    };
    expect(await next(all)).toMatchObject({
      type: "ADDED",
      object: { kind: "ModelDeployment", metadata: { name: "echo" }, spec: { replicas: 2 } },
    });
    expect((await next(named)).object.metadata.name).toBe("echo");
    // A commit that scales it: the change arrives on both streams, without asking again.
    commitAll(repo, GIT_ENV, "three replicas", {
      "model.yaml": manifest.replace("replicas: 2", "replicas: 3"),
    });
    const body = "{}";
    await hook(body, webhookSignature(SECRET, Buffer.from(body)));
    for (const stream of [all, named]) {
      for (;;) {
        const value = await next(stream);
        expect(value.type).toBe("MODIFIED");
        expect(value.object.kind).toBe("ModelDeployment");
        if (value.object.spec.replicas === 3) break;
      }
      await stream.return(undefined);
    }
    const refused = await fetch(`${admin.url}/api/v1/modeldeployments?watch=1`);
    expect(refused.status).toBe(401);
  }, 30_000);

  it("is what modelship get --watch prints: the header once, then a row per event", async () => {
    const child = spawn(
      process.execPath,
      [join(PROJECT_ROOT, "bin/modelship.js"), "get", "md", "-w", "--state-dir", stateDir],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      await eventually(() => /\necho\s/.test(out), 10_000);
      expect(out.split("\n")[0]).toMatch(/^NAME\s+/);
      // Still following: it has not exited.
      expect(child.exitCode).toBeNull();
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  }, 30_000);
});

describe("coalesced", () => {
  it("runs at once, then at most once more per interval, however often it is asked", async () => {
    let runs = 0;
    const run = coalesced(() => {
      runs += 1;
    }, 200);
    for (let index = 0; index < 50; index++) run();
    expect(runs).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(runs).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(runs).toBe(2);
  });
});
