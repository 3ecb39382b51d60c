// npm run bench:dashboard — how fast the dashboard's first load is (docs/benchmarks.md), in
// Debian's chromium, each load in a fresh browser context (nothing cached):
//   empty:     a plain-text page from the same server (the floor: a browser, a connection);
//   sign-in:   /ui/ until its load event (what a new visitor gets first);
//   models:    /ui/#/models signed in, until the first model's row shows (live data, via the watch).
// Also the JavaScript a first load fetches, gzip, as sent. The goal: under 300 KB and under 1 s.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { percentile, ROOT } from "./lib.ts";

const ROUNDS = process.argv.includes("--quick") ? 3 : 9;
const CHROMIUM = process.env.MODELSHIP_CHROMIUM ?? "/usr/bin/chromium";

const root = mkdtempSync(join(tmpdir(), "modelship-bench-dashboard-"));
const repo = join(root, "repo");
const env = {
  ...process.env,
  GIT_AUTHOR_NAME: "bench",
  GIT_AUTHOR_EMAIL: "bench@example.com",
  GIT_COMMITTER_NAME: "bench",
  GIT_COMMITTER_EMAIL: "bench@example.com",
};
execFileSync("git", ["init", "-q", "-b", "main", repo], { env });
writeFileSync(join(repo, "echo.py"), "def echo(args):\n    return args\n");
writeFileSync(
  join(repo, "model.yaml"),
  [
    "apiVersion: modelship.dev/v1alpha1",
    "kind: Model",
    "metadata: { name: echo }",
    "spec: { runtime: python3, file: echo.py, function: echo }",
    "---",
    "apiVersion: modelship.dev/v1alpha1",
    "kind: ModelDeployment",
    "metadata: { name: echo }",
    "spec: { model: echo }",
    "",
  ].join("\n"),
);
execFileSync("git", ["-C", repo, "add", "-A"], { env });
execFileSync("git", ["-C", repo, "commit", "-qm", "echo"], { env });

const stateDir = join(root, "state");
const up = spawn(
  process.execPath,
  [join(ROOT, "bin/modelship.js"), "up", "--repo", repo, "--state-dir", stateDir, "--port", "0"],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const adminUrl = await new Promise<string>((resolve, reject) => {
  let out = "";
  up.stdout.on("data", (chunk) => {
    out += chunk;
    const match = /dashboard on (http:\/\/[^/\s]+)\/ui\//.exec(out);
    if (match) resolve(match[1] as string);
  });
  up.once("exit", (code) => reject(new Error(`modelship up exited with ${code}`)));
});
const { token: adminToken } = JSON.parse(readFileSync(join(stateDir, "admin.json"), "utf8"));

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu"],
});

/** One load in a fresh context: ms from navigation to `ready`, and the JS bytes on the wire. */
async function load(path: string, ready: string | undefined, signedIn: boolean) {
  const context = await browser.newContext();
  if (signedIn) {
    const answer = await fetch(`${adminUrl}/api/v1/login`, {
      method: "POST",
      body: JSON.stringify({ token: adminToken }),
    });
    const { token } = (await answer.json()) as { token: string };
    await context.addInitScript(
      `sessionStorage.setItem("modelship.session", ${JSON.stringify(token)})`,
    );
  }
  const page = await context.newPage();
  let scriptBytes = 0;
  page.on("response", async (response) => {
    if (response.request().resourceType() !== "script") return;
    scriptBytes += Number((await response.allHeaders())["content-length"] ?? 0);
  });
  const started = performance.now();
  await page.goto(`${adminUrl}${path}`, { waitUntil: "load" });
  if (ready) await page.locator(ready).first().waitFor();
  const ms = performance.now() - started;
  await context.close();
  return { ms, scriptBytes };
}

// The model's row needs the model: wait until up has it.
for (;;) {
  const answer = await fetch(`${adminUrl}/api/v1/models`, {
    headers: { authorization: `Bearer ${adminToken}` },
  });
  if (((await answer.json()) as { items: unknown[] }).items.length > 0) break;
  await new Promise((resolve) => setTimeout(resolve, 200));
}

const cases: [string, string, string | undefined, boolean][] = [
  ["empty", "/ui/assets/none.js", undefined, false],
  ["sign-in", "/ui/", "#token", false],
  ["models", "/ui/#/models", "tbody tr", true],
];
const times = new Map<string, number[]>(cases.map(([name]) => [name, []]));
let scriptBytes = 0;
// Interleaved rounds: a busier moment of the machine weighs on every case alike.
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, path, ready, signedIn] of cases) {
    const result = await load(path, ready, signedIn);
    times.get(name)?.push(result.ms);
    if (name === "models") scriptBytes = result.scriptBytes;
  }
}

await browser.close();
up.kill("SIGTERM");
await new Promise((resolve) => up.once("exit", resolve));
rmSync(root, { recursive: true, force: true });

const median = (name: string) => percentile(times.get(name) ?? [], 50);
console.log(
  `dashboard first load, ${ROUNDS} rounds, fresh browser context each (${cpus().length} cores, load average ${loadavg()[0]?.toFixed(2)})`,
);
console.log("case      median ms   p90 ms   × empty");
for (const [name] of cases) {
  const values = times.get(name) ?? [];
  console.log(
    `${name.padEnd(9)} ${median(name).toFixed(0).padStart(9)} ${percentile(values, 90).toFixed(0).padStart(8)} ${(median(name) / median("empty")).toFixed(2).padStart(9)}`,
  );
}
console.log(`JavaScript fetched by a first load: ${(scriptBytes / 1024).toFixed(1)} KB gzip`);
