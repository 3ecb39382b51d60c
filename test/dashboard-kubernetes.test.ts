// The dashboard of a cluster: `modelship dashboard --kubernetes` against a real control plane,
// as the kubeconfig's user. Its API answers the custom resources in the API server's shape and
// watch; a browser signs in with the printed link, sees a status change without a reload, and
// restarts a deployment (an annotation on the cluster's object) after confirming; what it
// does not serve on a cluster yet says so.
// Needs the binaries from `bash test/k8s/build-binaries.sh`; see docs/k8s-test-cluster.md.
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM, launchChromium } from "./helpers/browser.ts";
import { type CliProcess, PROJECT_ROOT, runCliAsync, startCli } from "./helpers/cli.ts";
import { eventually } from "./helpers/replica.ts";
import { startCluster, type TestCluster } from "./k8s/cluster.ts";

const NAMESPACE = "models";

const OBJECTS = `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: iris
  namespace: ${NAMESPACE}
spec:
  description: Predicts petal width.
  runtime: python3
  file: predict.py
  function: predict
---
apiVersion: modelship.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: iris
  namespace: ${NAMESPACE}
spec:
  model: iris
  replicas: 2
`;

let cluster: TestCluster;
let dashboard: CliProcess;
let link: string;
let browser: Browser | undefined;
/** The session the link signed in (it works once: every test shares it). */
let session: string;
let headers: Record<string, string>;

const signIn = (code: string | undefined) =>
  fetch(`${dashboard.url}/api/v1/login`, { method: "POST", body: JSON.stringify({ code }) });

const annotation = () =>
  cluster.kubectlOk([
    "get",
    "modeldeployment",
    "iris",
    "-n",
    NAMESPACE,
    "-o",
    "jsonpath={.metadata.annotations.modelship\\.dev/restartedAt}",
  ]);

beforeAll(async () => {
  cluster = await startCluster({ nodes: 0 });
  cluster.kubectlOk(["create", "namespace", NAMESPACE]);
  cluster.kubectlOk(["apply", "-f", join(PROJECT_ROOT, "crds")]);
  cluster.kubectlOk(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  cluster.kubectlOk(["apply", "-f", "-"], OBJECTS);
  dashboard = await startCli([
    "dashboard",
    "--kubernetes",
    "--kubeconfig",
    cluster.kubeconfigPath,
    "-n",
    NAMESPACE,
    "--port",
    "0",
  ]);
  await eventually(() => /sign in once with (\S+)\)/.test(dashboard.stdout()), 10_000);
  link = /sign in once with (\S+)\)/.exec(dashboard.stdout())?.[1] as string;
  const answer = await signIn(link.split("#code=")[1]);
  session = ((await answer.json()) as { token: string }).token;
  headers = { authorization: `Bearer ${session}` };
  if (CHROMIUM) browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  await browser?.close();
  if (dashboard) expect(await dashboard.stop()).toBe(0);
  await cluster?.stop();
}, 60_000);

describe("modelship dashboard --kubernetes", () => {
  it("answers nothing but 401 without signing in, and takes its link once", async () => {
    const answer = await fetch(`${dashboard.url}/api/v1/models`);
    expect(answer.status).toBe(401);
    expect((await signIn(link.split("#code=")[1])).status).toBe(401);
    // A session cannot make links: only the process's own token, which it never shows.
    const links = await fetch(`${dashboard.url}/api/v1/dashboard-links`, {
      method: "POST",
      headers,
    });
    expect(links.status).toBe(403);
  });

  it("serves the cluster's objects as the API server does: a list, and a watch", async () => {
    const list = (await (await fetch(`${dashboard.url}/api/v1/models`, { headers })).json()) as {
      kind: string;
      items: { metadata: { name: string; namespace: string } }[];
    };
    expect(list.kind).toBe("ModelList");
    expect(list.items.map((item) => `${item.metadata.namespace}/${item.metadata.name}`)).toEqual([
      `${NAMESPACE}/iris`,
    ]);
    const watch = await fetch(`${dashboard.url}/api/v1/watch`, { headers });
    const reader = (watch.body as ReadableStream<Uint8Array>)
      .pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!text.includes('"BOOKMARK"')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the watch ended before its BOOKMARK: ${text}`);
      text += value;
    }
    const kinds = text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { type: string; object: { kind: string } })
      .map((event) => `${event.type} ${event.object.kind}`);
    expect(kinds).toEqual(["ADDED Model", "ADDED ModelDeployment", "BOOKMARK Bookmark"]);
    await reader.cancel();
  });

  it("lists a deployment's replicas from its pods (none here), and says what it does not serve yet", async () => {
    const replicas = await fetch(`${dashboard.url}/api/v1/modeldeployments/iris/replicas`, {
      headers,
    });
    expect(await replicas.json()).toEqual({ items: [] });
    const test = await fetch(`${dashboard.url}/api/v1/models/iris/test`, {
      method: "POST",
      headers,
      body: "{}",
    });
    expect(test.status).toBe(501);
    expect(((await test.json()) as { error: string }).error).toContain(
      "not served on a cluster yet",
    );
  });

  it.skipIf(!CHROMIUM)(
    "shows a status change without a reload, and restarts after a confirmation, as the kubeconfig's user",
    async () => {
      const context = await (browser as Browser).newContext({
        viewport: { width: 1280, height: 800 },
      });
      // The tab holds the session the link made, as the tab that opened the link would.
      await context.addInitScript(
        `sessionStorage.setItem("modelship.session", ${JSON.stringify(session)})`,
      );
      const page = await context.newPage();
      await page.goto(`${dashboard.url}/ui/#/models`);
      const row = page.getByRole("row", { name: /iris/ });
      await expect.poll(() => row.textContent(), { timeout: 10_000 }).toContain("Pending");
      await page.evaluate("window.sameDocument = true");
      cluster.kubectlOk([
        "patch",
        "modeldeployment",
        "iris",
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({
          status: {
            phase: "Deployed",
            ready: "2/2",
            history: [
              {
                deploymentId: 1,
                build: 1,
                deployedAt: new Date().toISOString(),
                deployedBy: "Ada Lovelace <ada@example.com>",
              },
            ],
          },
        }),
      ]);
      await expect.poll(() => row.textContent(), { timeout: 10_000 }).toContain("Deployed");
      expect(await row.textContent()).toContain("Ada Lovelace");
      expect(await page.evaluate("window.sameDocument")).toBe(true);
      await page.evaluate(`window.location.hash = "#/models/iris/deployments"`);
      expect(annotation()).toBe("");
      await page.getByRole("button", { name: "Restart" }).click();
      await page.getByRole("button", { name: "Confirm" }).click();
      await expect
        .poll(() => page.getByRole("status").first().textContent())
        .toContain("restarting");
      expect(Date.parse(annotation())).toBeGreaterThan(Date.now() - 60_000);
      await context.close();
    },
    60_000,
  );
});

describe("the controller's dashboard (MODELSHIP_DASHBOARD_TOKEN)", () => {
  const TOKEN = "d".repeat(48);
  let controller: CliProcess;

  beforeAll(async () => {
    controller = await startCli(
      [
        "controller",
        "--kubeconfig",
        cluster.kubeconfigPath,
        "--namespace",
        NAMESPACE,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-leader-elect",
      ],
      { env: { MODELSHIP_DASHBOARD_TOKEN: TOKEN } },
    );
  }, 60_000);

  afterAll(async () => {
    if (controller) expect(await controller.stop()).toBe(0);
  }, 60_000);

  it("serves the page, and the API to the token alone, beside its health", async () => {
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    await eventually(
      async () =>
        (await fetch(`${controller.url}/api/v1/models`, { headers: bearer(TOKEN) })).status === 200,
      30_000,
    );
    const list = (await (
      await fetch(`${controller.url}/api/v1/models`, { headers: bearer(TOKEN) })
    ).json()) as { items: { metadata: { name: string } }[] };
    expect(list.items.map((item) => item.metadata.name)).toEqual(["iris"]);
    const wrong = await fetch(`${controller.url}/api/v1/models`, {
      headers: bearer("e".repeat(48)),
    });
    expect(wrong.status).toBe(401);
    expect(await wrong.text()).not.toContain(TOKEN);
    expect((await fetch(`${controller.url}/ui/`)).status).toBe(200);
    expect((await fetch(`${controller.url}/healthz`)).status).toBe(200);
    // A link for a browser, made with the token.
    const link = await fetch(`${controller.url}/api/v1/dashboard-links`, {
      method: "POST",
      headers: bearer(TOKEN),
    });
    expect(((await link.json()) as { url: string }).url).toMatch(/\/ui\/#code=/);
  });

  it("refuses a token too short to be one, naming the setting", async () => {
    const run = await runCliAsync(
      ["controller", "--kubeconfig", cluster.kubeconfigPath, "--host", "127.0.0.1", "--port", "0"],
      { env: { ...process.env, MODELSHIP_DASHBOARD_TOKEN: "short" } },
    );
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toContain("MODELSHIP_DASHBOARD_TOKEN must be at least 32 characters");
  });
});
