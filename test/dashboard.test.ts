// The dashboard of a running `modelship up`, in a real browser (Debian's chromium, headless,
// driven by playwright-core): signing in (a wrong token refused, a one-time link that works
// once), the Test widget, the log a model prints, a commit's rollout appearing without a reload,
// the admin totals, the access key masked until asked, keyboard use, and screenshots of every
// page at desktop and phone size (test/artifacts/dashboard). The API it reads is checked too.
import { execFileSync } from "node:child_process";
import { mkdtempSync, statSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDeployment } from "../controller/api/types.generated.ts";
import type { ReplicaInfo } from "../controller/core/ports.ts";
import { formatBytes, formatCpu } from "../controller/core/quantity.ts";
import type { AdminFile } from "../controller/platform/local/admin.ts";
import { artifactsDir, CHROMIUM, launchChromium } from "./helpers/browser.ts";
import { type CliProcess, runCliAsync, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";
import { eventually, postJson } from "./helpers/replica.ts";
import { adminFileOf, adminGet, removeUpTestRoot } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-dashboard-"));
const repo = join(root, "repo");
const stateDir = join(root, "state");
const AUTHOR = { name: "Katherine Johnson", email: "katherine@example.com" };
const GIT_ENV = gitEnv(AUTHOR);

const ADD_NUMBERS = (greeting: string) =>
  [
    "def add(args):",
    `    print(f"${greeting} {args['a']} and {args['b']}", flush=True)`,
    '    return args["a"] + args["b"]',
    "",
  ].join("\n");

const MANIFESTS = `# The dashboard's test models.
apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: add-numbers
spec:
  description: Adds two numbers.
  runtime: python3
  file: add_numbers.py
  function: add
  example:
    input: { a: 3, b: 5 }
    output: 8
  authentication:
    enabled: false
---
apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: add-numbers
spec:
  model: add-numbers
  replicas: 2
  resources: { cpu: 250m, memory: 512Mi }
---
apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: echo
spec:
  runtime: python3
  file: echo.py
  function: echo
---
apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: echo
spec:
  model: echo
  replicas: 1
  resources: { cpu: 500m, memory: 1Gi }
`;

let up: CliProcess;
let admin: AdminFile;
let link: string;
let browser: Browser | undefined;
let context: BrowserContext;
let page: Page;

const api = <T>(path: string) => adminGet<T>(admin, path);

/** Fetches now instead of at the next poll (the git webhook). */
const fetchNow = () => fetch(`${admin.url}/hooks/git`, { method: "POST", body: "{}" });

async function show(hash: string): Promise<void> {
  // Strings, not functions: they run in the page, whose globals the tests' types do not know.
  await page.evaluate(`window.location.hash = ${JSON.stringify(hash)}`);
}

beforeAll(async () => {
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "two models", {
    "add_numbers.py": ADD_NUMBERS("adding"),
    "echo.py": "def echo(args):\n    return args\n",
    "models.yaml": MANIFESTS,
  });
  up = await startCli([
    "up",
    "--repo",
    repo,
    "--state-dir",
    stateDir,
    "--port",
    "0",
    "--interval",
    "1h",
  ]);
  admin = adminFileOf(stateDir);
  link = /sign in once with (\S+)\)/.exec(up.stdout())?.[1] as string;
  await eventually(
    async () =>
      (await postJson(`${up.url}/models/add-numbers/predict`, { a: 1, b: 1 })).status === 200 &&
      // echo keeps authentication on: it is ready when its deployment says so.
      (await api<ModelDeployment>("/api/v1/modeldeployments/echo")).status?.phase === "Deployed",
    90_000,
  );
  if (!CHROMIUM) return;
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
}, 150_000);

afterAll(async () => {
  await browser?.close();
  if (up) expect(await up.stop()).toBe(0);
  removeUpTestRoot(root);
}, 60_000);

describe.skipIf(!CHROMIUM)("the dashboard in chromium (skipped without /usr/bin/chromium)", () => {
  it("prints its address and a one-time sign-in link at start", () => {
    expect(up.stdout()).toContain(`dashboard on ${admin.url}/ui/`);
    expect(link).toMatch(new RegExp(`^${admin.url}/ui/#code=[A-Za-z0-9_-]{20,}$`));
  });

  it("refuses a wrong token, and shows nothing behind the sign-in", async () => {
    const stranger = await (browser as Browser).newContext();
    const login = await stranger.newPage();
    await login.goto(`${admin.url}/ui/`);
    // The token with its last digit changed: as long as the right one, and wrong.
    const last = admin.token.slice(-1);
    await login
      .getByLabel("Admin token")
      .fill(`${admin.token.slice(0, -1)}${last === "0" ? "1" : "0"}`);
    await login.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => login.getByRole("alert").textContent()).toContain("wrong admin token");
    expect(await login.getByRole("navigation", { name: "Main" }).count()).toBe(0);
    // And the API it would read says no to a wrong bearer token, whatever the page does.
    const answer = await fetch(`${admin.url}/api/v1/models`, {
      headers: { authorization: "Bearer not-the-token" },
    });
    expect(answer.status).toBe(401);
    await stranger.close();
  });

  it("signs in with the link, once: the code leaves the address bar and cannot be used again", async () => {
    await page.goto(link);
    await page.getByRole("heading", { name: "Models" }).waitFor();
    expect(await page.evaluate("window.location.hash")).toBe("#/models");
    // The session is this tab's only; nothing stays in localStorage.
    expect(await page.evaluate("localStorage.length")).toBe(0);
    expect(await page.evaluate("sessionStorage.length")).toBe(1);
    const second = await (browser as Browser).newContext();
    const again = await second.newPage();
    await again.goto(link);
    await expect.poll(() => again.getByRole("alert").textContent()).toContain("was used");
    await second.close();
  });

  it("lists the models with their latest build, phase and replicas ready", async () => {
    await show("#/models");
    const row = page.getByRole("row", { name: /add-numbers/ });
    await expect.poll(() => row.textContent()).toContain("Deployed");
    const text = (await row.textContent()) ?? "";
    expect(text).toContain("2/2");
    expect(text).toContain(AUTHOR.name);
    expect(await page.getByRole("row", { name: /echo/ }).textContent()).toContain("1/1");
  });

  it("Test on add-numbers answers 8, with the replica that answered", async () => {
    await show("#/models/add-numbers");
    await page.getByRole("button", { name: "Test", exact: true }).click();
    await expect.poll(() => page.getByTestId("test-status").textContent()).toBe("200");
    expect(await page.getByLabel("Response").locator("pre").textContent()).toBe("8");
    const replica = (await page.getByTestId("test-replica").textContent()) ?? "";
    const replicas = await api<{ items: ReplicaInfo[] }>(
      "/api/v1/modeldeployments/add-numbers/replicas",
    );
    expect(replicas.items.map((item) => item.id)).toContain(replica);
  });

  it("can be used from the keyboard: edit the input and send it without a mouse", async () => {
    await page.getByLabel("Input", { exact: true }).focus();
    await page.keyboard.press("ControlOrMeta+A");
    await page.keyboard.type('{"a": 40, "b": 2}');
    // Tab moves on to the Test button; Enter presses it.
    await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement.textContent")).toBe("Test");
    await page.keyboard.press("Enter");
    await expect.poll(() => page.getByLabel("Response").locator("pre").textContent()).toBe("42");
  });

  it("shows a line the model printed in Monitoring, stdout marked, newest first", async () => {
    await show("#/models/add-numbers/monitoring");
    const log = page.getByRole("list", { name: /Log of add-numbers/ });
    await expect.poll(() => log.textContent(), { timeout: 10_000 }).toContain("adding 40 and 2");
    const lines = await log.locator("li").allTextContents();
    const newest = lines.findIndex((line) => line.includes("adding 40 and 2"));
    const older = lines.findIndex((line) => line.includes("adding 3 and 5"));
    expect(older).toBeGreaterThan(newest);
    expect(await log.locator("li.stdout", { hasText: "adding 40 and 2" }).count()).toBe(1);
    // The replicas' counters count the calls.
    const table = page.getByRole("region", { name: "Replicas of add-numbers" });
    await expect.poll(() => table.locator("tbody tr").count()).toBe(2);
  });

  it("shows the calls in the traffic charts", async () => {
    const total = page.getByTestId("traffic-total");
    // A point every 5 s: the calls above land in one of the first.
    await expect
      .poll(async () => Number(/^(\d+)/.exec((await total.textContent()) ?? "")?.[1] ?? 0), {
        timeout: 20_000,
      })
      .toBeGreaterThanOrEqual(2);
    expect(await page.locator(".chart canvas").count()).toBeGreaterThanOrEqual(2);
  }, 30_000);

  it("keeps the access key masked until asked for", async () => {
    await show("#/models/add-numbers");
    const { accessKey } = await api<{ accessKey: string }>("/api/v1/keys/add-numbers");
    const sample = page.getByLabel("Sample call in curl");
    await sample.waitFor();
    expect(await page.content()).not.toContain(accessKey);
    await page.getByRole("button", { name: "Show access key" }).click();
    await expect.poll(() => sample.textContent()).toContain(accessKey);
  });

  it("links an object to its file and line at the synced commit", async () => {
    await page.getByRole("link", { name: /models\.yaml:2/ }).click();
    await page.getByRole("heading", { name: /models\.yaml/ }).waitFor();
    const marked = page.locator(".source-lines li.marked");
    expect(await marked.textContent()).toBe("apiVersion: modelship.dev/v1alpha1");
    expect(await page.locator(".source-lines").textContent()).toContain("name: add-numbers");
  });

  it("shows a commit's new rollout in Deployments, without a reload", async () => {
    await show("#/models/add-numbers/deployments");
    const history = page.getByRole("region", { name: "Rollouts of add-numbers" });
    await history.locator("tbody tr").first().waitFor();
    const before = await history.locator("tbody tr").count();
    await page.evaluate("window.sameDocument = true");
    const commit = commitAll(repo, GIT_ENV, "greet differently", {
      "add_numbers.py": ADD_NUMBERS("summing"),
    });
    expect((await fetchNow()).status).toBe(202);
    await expect
      .poll(() => history.locator("tbody tr").count(), { timeout: 90_000 })
      .toBe(before + 1);
    const newest = (await history.locator("tbody tr").first().textContent()) ?? "";
    expect(newest).toContain(commit.slice(0, 7));
    expect(newest).toContain(AUTHOR.name);
    expect(await page.evaluate("window.sameDocument")).toBe(true);
  }, 120_000);

  it("restarts a deployment only after a confirmation", async () => {
    const restarts: string[] = [];
    const record = (request: { method(): string; url(): string }) => {
      if (request.method() === "POST" && request.url().endsWith("/restart")) {
        restarts.push(request.url());
      }
    };
    page.on("request", record);
    const deployment = () => api<ModelDeployment>("/api/v1/modeldeployments/add-numbers");
    const restartedBefore = (await deployment()).metadata.annotations?.[
      "modelship.dev/restartedAt"
    ];
    await page.getByRole("button", { name: "Restart" }).click();
    // Asked, not done.
    await page.getByText("Restart every replica of add-numbers").waitFor();
    expect(restarts).toStrictEqual([]);
    await page.getByRole("button", { name: "Confirm" }).click();
    await expect.poll(() => page.getByRole("status").first().textContent()).toContain("restarting");
    expect(restarts).toHaveLength(1);
    expect((await deployment()).metadata.annotations?.["modelship.dev/restartedAt"]).not.toBe(
      restartedBefore,
    );
    page.off("request", record);
    // Focus is back on the button that asked, for the keyboard's next step.
    expect(await page.evaluate("document.activeElement.textContent")).toBe("Restart");
  });

  it("follows the new replicas' log after a restart replaces the ones it opened on", async () => {
    type Replicas = { items: ReplicaInfo[] };
    const replicasPath = "/api/v1/modeldeployments/add-numbers/replicas";
    /** The replicas of the rollout that serves, once it alone runs: two, ready. */
    const settled = async () => {
      let ids: string[] = [];
      await eventually(async () => {
        const { items } = await api<Replicas>(replicasPath);
        ids = items.map((item) => item.id);
        return items.length === 2 && items.every((item) => item.ready);
      }, 60_000);
      return ids;
    };
    const before = await settled();
    await show("#/models/add-numbers/monitoring");
    const log = page.getByRole("list", { name: /Log of add-numbers/ });
    await log.waitFor();
    // A restart from the API: every replica the pane's stream opened on is replaced.
    await fetch(`${admin.url}/api/v1/modeldeployments/add-numbers/restart`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin.token}` },
    });
    let after: string[] = [];
    await eventually(async () => {
      after = await settled();
      return after.every((id) => !before.includes(id));
    }, 60_000);
    const shortIds = after.map((id) => id.split("-").pop());
    // A line the model prints on a new replica shows, with that replica's id.
    await expect
      .poll(
        async () => {
          await postJson(`${up.url}/models/add-numbers/predict`, { a: 7, b: 8 });
          const lines = log.locator("li", { hasText: "summing 7 and 8" }).locator(".replica");
          return (await lines.allTextContents()).some((id) => shortIds.includes(id));
        },
        { timeout: 30_000, interval: 1000 },
      )
      .toBe(true);
  }, 150_000);

  it("shows a broken commit's error at its file and line on Repository, and keeps serving", async () => {
    await show("#/repository");
    const synced = await page.getByTestId("synced-commit").textContent();
    const broken = MANIFESTS.replace("replicas: 2", "replicas: many");
    const line = broken.split("\n").findIndex((text) => text.includes("replicas: many")) + 1;
    const commit = commitAll(repo, GIT_ENV, "a typo", { "models.yaml": broken });
    expect((await fetchNow()).status).toBe(202);
    const alert = page.getByRole("alert").first();
    await expect
      .poll(() => alert.textContent(), { timeout: 30_000 })
      .toContain(`models.yaml:${line}:`);
    expect(await alert.textContent()).toContain("/spec/replicas");
    // The last good commit still serves, and the page says which one that is.
    expect(await page.getByTestId("synced-commit").textContent()).toBe(synced);
    expect(await page.getByTestId("attempted-commit").textContent()).toBe(commit.slice(0, 7));
    expect((await postJson(`${up.url}/models/add-numbers/predict`, { a: 1, b: 2 })).status).toBe(
      200,
    );
    commitAll(repo, GIT_ENV, "fix the typo", { "models.yaml": MANIFESTS });
    expect((await fetchNow()).status).toBe(202);
    await expect.poll(() => page.getByRole("alert").count(), { timeout: 30_000 }).toBe(0);
  }, 90_000);

  it("shows the admin totals: active models, replicas, CPU and memory requested", async () => {
    await show("#/admin");
    const total = (id: string) => page.getByTestId(id).textContent();
    await expect.poll(() => total("total-replicas")).toBe("3");
    expect(await total("total-models")).toBe("2");
    // 2 × 250m + 500m, and 2 × 512Mi + 1Gi, as the manifests ask.
    expect(await total("total-cpu")).toBe(formatCpu(1));
    expect(await total("total-memory")).toBe(formatBytes(2 * 1024 ** 3));
  });

  it("creates an API key shown once, and revokes it after a confirmation", async () => {
    await page.getByLabel("User", { exact: true }).fill("grace");
    await page.getByRole("button", { name: "Create API key" }).click();
    await page.getByText("Create an API key for grace, valid 30d?").waitFor();
    await page.getByRole("button", { name: "Confirm" }).click();
    const key = (await page.getByLabel("New API key").textContent()) ?? "";
    expect(key).toMatch(/^msk_/);
    // The key calls nothing here (every model is open), but the gateway knows it.
    const keys = await api<{ items: { id: string; user: string }[] }>("/api/v1/apikeys");
    const created = keys.items.find((item) => item.user === "grace");
    expect(created && key.startsWith(`msk_${created.id}_`)).toBe(true);
    await page.getByRole("button", { name: "Done" }).click();
    expect(await page.content()).not.toContain(key);
    const row = page.getByRole("row", { name: /grace/ });
    await row.getByRole("button", { name: "Revoke" }).click();
    await row.getByRole("button", { name: "Confirm" }).click();
    await expect.poll(() => row.count()).toBe(0);
    const after = await api<{ items: { user: string }[] }>("/api/v1/apikeys");
    expect(after.items.some((item) => item.user === "grace")).toBe(false);
  });

  it("saves a screenshot of every page at 1280×800 and 390×844, none wider than the screen", async () => {
    const dir = artifactsDir("dashboard");
    // Each page, and what shows once its data has arrived.
    const pages: [string, string, string][] = [
      ["models", "#/models", "tbody tr"],
      ["model-overview", "#/models/add-numbers", ".code pre"],
      ["model-deployments", "#/models/add-numbers/deployments", "tbody tr"],
      ["model-builds", "#/models/add-numbers/builds", "pre.log"],
      ["model-monitoring", "#/models/add-numbers/monitoring", ".chart canvas"],
      ["repository", "#/repository", "tbody tr"],
      ["admin", "#/admin", "tbody tr"],
    ];
    for (const [width, height] of [
      [1280, 800],
      [390, 844],
    ] as const) {
      await page.setViewportSize({ width, height });
      for (const [name, hash, loaded] of pages) {
        await show(hash);
        await page.locator("main h1").first().waitFor();
        await page.locator(loaded).first().waitFor();
        // The other parts of the page (polled every second or two) have arrived too.
        await page.waitForTimeout(1500);
        const file = join(dir, `${name}-${width}x${height}.png`);
        await page.screenshot({ path: file, fullPage: true });
        expect(statSync(file).size).toBeGreaterThan(10_000);
        // Usable on a phone: wide tables scroll in their own box, never the page sideways.
        expect(
          await page.evaluate("document.documentElement.scrollWidth"),
          `${name} at ${width} px`,
        ).toBeLessThanOrEqual(width);
      }
    }
    const signIn = await (browser as Browser).newPage({ viewport: { width: 390, height: 844 } });
    await signIn.goto(`${admin.url}/ui/`);
    await signIn.getByLabel("Admin token").waitFor();
    await signIn.screenshot({ path: join(dir, "sign-in-390x844.png") });
    await signIn.close();
    await page.setViewportSize({ width: 1280, height: 800 });
  }, 120_000);
});

/** The bytes a GET sends over the wire with gzip accepted (fetch would decompress them). */
function wireBytes(url: string): Promise<{ bytes: number; encoding: string | undefined }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { headers: { "accept-encoding": "gzip" } }, (response) => {
      let bytes = 0;
      response.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      response.on("end", () =>
        resolve({ bytes, encoding: response.headers["content-encoding"] as string | undefined }),
      );
    })
      .on("error", reject)
      .end();
  });
}

describe("the dashboard's files and API", () => {
  it("loads less than 300 KB of JavaScript (gzip) at first, all of it from itself", async () => {
    const index = await (await fetch(`${admin.url}/ui/`)).text();
    const scripts = [...index.matchAll(/<script[^>]+src="([^"]+)"/g)].map((match) => match[1]);
    expect(scripts.length).toBeGreaterThan(0);
    // Nothing from a CDN: every script is the dashboard's own.
    for (const src of scripts) expect(src).toMatch(/^\/ui\/assets\//);
    let total = 0;
    for (const src of scripts) {
      const { bytes, encoding } = await wireBytes(`${admin.url}${src}`);
      expect(encoding).toBe("gzip");
      total += bytes;
    }
    expect(total).toBeLessThan(300 * 1024);
    // Nothing of the server's was bundled: Vite stands in an empty module for a node: import.
    for (const src of scripts) {
      expect(await (await fetch(`${admin.url}${src}`)).text()).not.toContain(
        "__vite-browser-external",
      );
    }
  });

  it("serves its page with a Content-Security-Policy that allows only its own scripts", async () => {
    const answer = await fetch(`${admin.url}/ui/`);
    expect(answer.status).toBe(200);
    const policy = answer.headers.get("content-security-policy") ?? "";
    expect(policy).toContain("script-src 'self'");
    expect(policy).toContain("frame-ancestors 'none'");
    expect(answer.headers.get("x-content-type-options")).toBe("nosniff");
    expect((await fetch(`${admin.url}/ui/assets/no-such-file.js`)).status).toBe(404);
  });

  it("answers lists in the API server's shape", async () => {
    const list = await api<{
      apiVersion: string;
      kind: string;
      metadata: { resourceVersion: string };
      items: unknown[];
    }>("/api/v1/modeldeployments");
    expect(list.apiVersion).toBe("modelship.dev/v1alpha1");
    expect(list.kind).toBe("ModelDeploymentList");
    expect(Number(list.metadata.resourceVersion)).toBeGreaterThan(0);
    expect(list.items.length).toBe(2);
  });

  it.each<[string, string, RequestInit, number, string]>([
    [
      "a body that is not JSON",
      "/api/v1/models/add-numbers/test",
      { method: "POST", body: "{a" },
      400,
      "not JSON",
    ],
    ["an unknown model", "/api/v1/models/nope/test", { method: "POST", body: "{}" }, 404, "nope"],
    [
      "a commit that is not one",
      "/api/v1/modelrepositories/local/files?commit=HEAD&path=models.yaml",
      {},
      400,
      "40 hex",
    ],
    [
      "a file not in the commit",
      `/api/v1/modelrepositories/local/files?commit=${"0".repeat(40)}&path=x.yaml`,
      {},
      404,
      "no file",
    ],
  ])("refuses %s, saying why", async (_, path, init, status, reason) => {
    const answer = await fetch(`${admin.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${admin.token}` },
    });
    expect(answer.status).toBe(status);
    expect(((await answer.json()) as { error: string }).error).toContain(reason);
  });

  it("ends a session when it signs out", async () => {
    const signIn = await fetch(`${admin.url}/api/v1/login`, {
      method: "POST",
      body: JSON.stringify({ token: admin.token }),
    });
    const { token } = (await signIn.json()) as { token: string };
    const bearer = { authorization: `Bearer ${token}` };
    expect((await fetch(`${admin.url}/api/v1/models`, { headers: bearer })).status).toBe(200);
    // A session cannot make sign-in links: it would renew itself for ever.
    const link = await fetch(`${admin.url}/api/v1/dashboard-links`, {
      method: "POST",
      headers: bearer,
    });
    expect(link.status).toBe(403);
    await fetch(`${admin.url}/api/v1/login`, { method: "DELETE", headers: bearer });
    expect((await fetch(`${admin.url}/api/v1/models`, { headers: bearer })).status).toBe(401);
  });

  it("prints a new one-time link with modelship dashboard", async () => {
    const run = await runCliAsync(["dashboard", "--state-dir", stateDir]);
    expect(run.exitCode).toBe(0);
    const fresh = run.stdout.trim();
    expect(fresh).toMatch(new RegExp(`^${admin.url}/ui/#code=`));
    const code = fresh.split("#code=")[1];
    const answer = await fetch(`${admin.url}/api/v1/login`, {
      method: "POST",
      body: JSON.stringify({ code }),
    });
    expect(answer.status).toBe(200);
  });
});
