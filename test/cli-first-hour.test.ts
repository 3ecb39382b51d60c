// The pure parts of what a newcomer meets: where state goes, describe's sample calls and plain
// words, the admin overview's sums, quantities, and what `up` says of resources it cannot
// enforce. The end-to-end story is in up-first-hour.test.ts.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ModelDeployment, ModelDeploymentStatus } from "../controller/api/types.generated.ts";
import { keptBuildLines } from "../controller/cli/client.ts";
import { topTable } from "../controller/cli/operations.ts";
import {
  defaultStateDir,
  repositoryUrl,
  stateDirRefusal,
  workTreeOf,
} from "../controller/cli/state-dir.ts";
import { topRows, topTotals } from "../controller/core/overview.ts";
import { formatBytes, formatCpu, parseQuantity } from "../controller/core/quantity.ts";
import { deploymentSummary, sampleCalls } from "../controller/core/samples.ts";
import { resourcesNote } from "../controller/platform/local/runtime.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-first-hour-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("the state directory", () => {
  const repo = join(root, "repo");
  execFileSync("git", ["init", "-q", "-b", "main", repo]);
  mkdirSync(join(repo, "sub", "deeper"), { recursive: true });

  it("is keyed by the work tree's top, so any subdirectory finds the same one", () => {
    expect(workTreeOf(join(repo, "sub", "deeper"))).toBe(repo);
    expect(repositoryUrl(join(repo, "sub"))).toBe(repo);
    expect(repositoryUrl("https://example.com/team/models.git")).toBe(
      "https://example.com/team/models.git",
    );
  });

  it.each<[string, { url: string; branch: string; path: string }, RegExp]>([
    [
      "a local repository",
      { url: "/home/ada/models", branch: "main", path: "." },
      /\/models-[0-9a-f]{12}$/,
    ],
    [
      "a URL, .git dropped",
      { url: "https://h/team/iris.git", branch: "main", path: "." },
      /\/iris-[0-9a-f]{12}$/,
    ],
    [
      "odd characters made safe",
      { url: "/x/my models!", branch: "main", path: "." },
      /\/my_models_-[0-9a-f]{12}$/,
    ],
  ])("is named after %s", (_, followed, pattern) => {
    expect(defaultStateDir(followed)).toMatch(pattern);
  });

  it("differs by branch and by path, and lives under XDG_STATE_HOME", () => {
    const base = { url: "/r", branch: "main", path: "." };
    const dirs = new Set([
      defaultStateDir(base),
      defaultStateDir({ ...base, branch: "dev" }),
      defaultStateDir({ ...base, path: "models" }),
    ]);
    expect(dirs.size).toBe(3);
    const saved = process.env.XDG_STATE_HOME;
    process.env.XDG_STATE_HOME = "/somewhere/state";
    try {
      expect(defaultStateDir(base).startsWith("/somewhere/state/modelship/")).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.XDG_STATE_HOME;
      else process.env.XDG_STATE_HOME = saved;
    }
  });

  it("is refused inside the tracked tree unless git ignores it", async () => {
    expect(await stateDirRefusal(join(root, "elsewhere"), repo)).toBeUndefined();
    expect(await stateDirRefusal(join(repo, ".git", "modelship"), repo)).toBeUndefined();
    const refusal = await stateDirRefusal(join(repo, ".modelship"), repo);
    expect(refusal).toMatch(/inside the work tree .* git does not ignore it/);
    expect(refusal).toContain('add ".modelship/" to .gitignore');
    expect(await stateDirRefusal(repo, repo)).toMatch(/is the repository's work tree itself/);
    writeFileSync(join(repo, ".gitignore"), ".modelship/\nsub/state/\n");
    expect(await stateDirRefusal(join(repo, ".modelship"), repo)).toBeUndefined();
    expect(await stateDirRefusal(join(repo, "sub", "state"), repo)).toBeUndefined();
    expect(await stateDirRefusal(join(repo, "sub", "other"), repo)).toBeDefined();
    // Through a link to the repository, the same tree: refused by its real path too.
    const link = join(root, "linked-repo");
    symlinkSync(repo, link);
    expect(await stateDirRefusal(join(repo, "sub", "other"), link)).toBeDefined();
    expect(await stateDirRefusal(join(link, "sub", "other"), repo)).toBeDefined();
    expect(repositoryUrl(join(link, "sub"))).toBe(realpathSync(repo));
    // A URL has no work tree here to protect.
    expect(await stateDirRefusal(join(repo, "x"), "https://h/r.git")).toBeUndefined();
  });
});

describe("sample calls", () => {
  const inputs = {
    gatewayUrl: "http://127.0.0.1:8080",
    accessKey: "mukd9sit7tacnfq2phhn3whc4unq1f38",
    input: { petal_length: 4.2, note: "it's" },
    authenticated: false,
  };

  it("fill the access key and the example into curl, Python and R", () => {
    const text = sampleCalls(inputs).join("\n");
    expect(text).toContain(
      `curl -s -H 'Content-Type: application/json' -d '{"accessKey":"mukd9sit7tacnfq2phhn3whc4unq1f38","request":{"petal_length":4.2,"note":"it'\\''s"}}' http://127.0.0.1:8080/model`,
    );
    expect(text).toContain('requests.post("http://127.0.0.1:8080/model"');
    expect(text).toContain('POST("http://127.0.0.1:8080/model"');
    expect(text).not.toContain("Authorization");
  });

  it("mask the key unless it is given, and ask for an API key when authentication is on", () => {
    const text = sampleCalls({ ...inputs, accessKey: undefined, authenticated: true }).join("\n");
    expect(text).not.toContain("mukd9sit");
    expect(text).toContain("--show-key");
    expect(text).toContain('-H "Authorization: Bearer $MODELSHIP_API_KEY"');
    expect(text).toContain("os.environ['MODELSHIP_API_KEY']");
    expect(text).toContain('Sys.getenv("MODELSHIP_API_KEY")');
  });

  it("fill in a model API key when one is given", () => {
    const apiKey = "msk_abc_defghijklmnopqrstuvwxyz234567";
    const text = sampleCalls({ ...inputs, authenticated: true, apiKey }).join("\n");
    expect(text).toContain(`-H 'Authorization: Bearer ${apiKey}'`);
    expect(text).toContain(`"Authorization": "Bearer ${apiKey}"`);
    expect(text).not.toContain("MODELSHIP_API_KEY");
  });
});

describe("deploymentSummary", () => {
  const stalled = {
    type: "Stalled",
    status: "True" as const,
    reason: "RolloutFailed",
    message: "build 3 keeps serving; the rollout of build 4 failed: SyntaxError\nmore",
    lastTransitionTime: "2026-01-01T00:00:00Z",
  };
  it.each<[string, ModelDeploymentStatus | undefined, number, string[]]>([
    ["nothing yet", undefined, 1, ["Serving:      nothing (no replica is ready)"]],
    [
      "an old build serving while a new rollout failed",
      { servingBuild: 3, readyReplicas: 3, build: 4, conditions: [stalled] },
      3,
      [
        "Serving:      build 3 on 3/3 replicas",
        "Failing:      RolloutFailed: build 3 keeps serving; the rollout of build 4 failed: SyntaxError",
      ],
    ],
    [
      "a rollout under way",
      {
        servingBuild: 2,
        readyReplicas: 2,
        conditions: [
          {
            ...stalled,
            type: "Reconciling",
            reason: "RolloutInProgress",
            message: "rolling out build 3",
          },
        ],
      },
      2,
      [
        "Serving:      build 2 on 2/2 replicas",
        "In progress:  RolloutInProgress: rolling out build 3",
      ],
    ],
  ])("%s", (_, status, replicas, expected) => {
    expect(deploymentSummary(status, replicas)).toStrictEqual(expected);
  });
});

describe("quantities", () => {
  it.each<[string | number, number]>([
    ["500m", 0.5],
    ["1", 1],
    [2, 2],
    ["1.5", 1.5],
    ["2Gi", 2 * 2 ** 30],
    ["512Mi", 512 * 2 ** 20],
    ["1G", 1e9],
    ["1e3", 1000],
  ])("%s is %s", (text, value) => {
    expect(parseQuantity(text)).toBe(value);
  });

  it("refuses what is not one", () => {
    expect(() => parseQuantity("lots")).toThrow(/not a Kubernetes quantity/);
  });

  it.each<[number, string]>([
    [3, "3"],
    [1.5, "1500m"],
    [0.25, "250m"],
  ])("%s cores print as %s", (cores, text) => {
    expect(formatCpu(cores)).toBe(text);
  });

  it.each<[number, string]>([
    [6 * 2 ** 30, "6Gi"],
    [1.5 * 2 ** 30, "1.5Gi"],
    [512 * 2 ** 20, "512Mi"],
    [100, "100"],
  ])("%s bytes print as %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe("resourcesNote", () => {
  it.each<[string, Parameters<typeof resourcesNote>[0], RegExp | undefined]>([
    ["none asked", undefined, undefined],
    ["memory only", { memory: "1Gi" }, /^under modelship up, memory 1Gi is enforced per replica/],
    ["cpu: said not enforced", { cpu: "2", memory: "2Gi" }, /cpu 2 is not enforced/],
    ["gpu: said not available", { gpu: 1 }, /gpu 1 is not available/],
  ])("%s", (_, resources, expected) => {
    const note = resourcesNote(resources);
    if (expected === undefined) expect(note).toBeUndefined();
    else expect(note).toMatch(expected);
  });
});

describe("modelship top", () => {
  const deployment = (
    name: string,
    spec: Partial<ModelDeployment["spec"]>,
    status: ModelDeploymentStatus = {},
  ): ModelDeployment => ({
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelDeployment",
    metadata: { name, namespace: "default" },
    spec: { model: name, ...spec },
    status,
  });

  it("sums what active deployments request; stopped ones are not active", () => {
    const rows = topRows([
      deployment(
        "iris",
        { replicas: 3, resources: { cpu: "500m", memory: "1Gi" } },
        {
          servingBuild: 2,
          ready: "3/3",
          phase: "Deployed",
        },
      ),
      deployment("iris-canary", { model: "iris", replicas: 1 }),
      deployment("wine", { replicas: 2, stopped: true }),
    ]);
    expect(rows.map((row) => [row.deployment, row.cpu, row.memory])).toStrictEqual([
      ["iris", 1.5, 3 * 2 ** 30],
      ["iris-canary", 1, 2 * 2 ** 30],
    ]);
    const totals = topTotals(rows);
    expect(totals).toStrictEqual({
      models: 1,
      deployments: 2,
      replicas: 4,
      cpu: 2.5,
      memory: 5 * 2 ** 30,
    });
    const table = topTable(rows, totals);
    expect(table).toMatch(/^iris\s+iris\s+2\s+3\/3\s+1500m\s+3Gi\s+Deployed$/m);
    expect(table).toContain("Total: 1 active model, 4 replicas, CPU 2500m, memory 5Gi requested");
  });
});

describe("keptBuildLines", () => {
  it.each<[string, string, number, string[]]>([
    ["nothing yet", "", 0, []],
    ["every line kept", "out | a\nerr | b\n", 0, ["out | a", "err | b"]],
    [
      "the oldest dropped past the bound",
      "... 12000 earlier lines dropped\nout | z\n",
      12000,
      ["out | z"],
    ],
  ])("%s", (_, logs, dropped, lines) => {
    expect(keptBuildLines(logs)).toStrictEqual({ dropped, lines });
  });
});
