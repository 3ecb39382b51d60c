// `modelship plan`: what a change to the branch will do, said before it lands. The steps are
// table-tested; the command runs as a user runs it, on real git repositories in temp dirs, and
// a real sync of the same commits checks that the plan said what the sync then did.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ModelBuild, ModelDeployment } from "../controller/api/types.generated.ts";
import { ownedLabels } from "../controller/core/labels.ts";
import { planTitle, pullRequestPlanOf } from "../controller/platform/pull-request-plan.ts";
import {
  type BuildPlan,
  buildPlanOf,
  type DeploymentPlan,
  deploymentEffect,
  fieldChanges,
  type ModelPlan,
  type Plan,
} from "../controller/reconcile/plan.ts";
import { PROJECT_ROOT, runCli } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";

const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

const GIT_ENV = gitEnv({ name: "Katherine Johnson", email: "katherine@example.com" });

describe("fieldChanges", () => {
  it.each([
    { before: { a: 1 }, after: { a: 1 }, changes: [] },
    { before: { a: 1 }, after: { a: 2 }, changes: [{ path: "/a", before: 1, after: 2 }] },
    { before: {}, after: { a: { b: "x" } }, changes: [{ path: "/a", after: { b: "x" } }] },
    {
      before: { a: { b: 1, c: 2 } },
      after: { a: { b: 1 } },
      changes: [{ path: "/a/c", before: 2 }],
    },
    // Lists are replaced whole by an apply, so they are compared whole.
    {
      before: { l: [1, 2] },
      after: { l: [2, 1] },
      changes: [{ path: "/l", before: [1, 2], after: [2, 1] }],
    },
    {
      before: { "a/b": 1 },
      after: { "a/b": 2 },
      changes: [{ path: "/a~1b", before: 1, after: 2 }],
    },
    // Key order is no change.
    { before: { x: { p: 1, q: 2 } }, after: { x: { q: 2, p: 1 } }, changes: [] },
  ])("$before → $after", ({ before, after, changes }) => {
    expect(fieldChanges(before, after)).toStrictEqual(changes);
  });
});

function deployment(
  spec: Partial<ModelDeployment["spec"]>,
  annotations: Record<string, string> = {},
): ModelDeployment {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelDeployment",
    metadata: { name: "d", annotations },
    spec: { model: "m", ...spec },
  };
}

describe("deploymentEffect", () => {
  const side = (
    spec: Partial<ModelDeployment["spec"]>,
    build = 1,
    key = "k1",
    annotations = {},
  ) => ({
    deployment: deployment(spec, annotations),
    build,
    buildKey: key,
  });
  it.each<{
    name: string;
    base?: ReturnType<typeof side>;
    head?: ReturnType<typeof side>;
    effect: DeploymentPlan["effect"];
    reasons: string[];
  }>([
    {
      name: "nothing",
      base: side({ replicas: 2 }),
      head: side({ replicas: 2 }),
      effect: "none",
      reasons: [],
    },
    {
      name: "replicas only",
      base: side({ replicas: 2 }),
      head: side({ replicas: 3 }),
      effect: "scale",
      reasons: ["replicas 2 → 3"],
    },
    {
      name: "a new build",
      base: side({}),
      head: side({}, 2, "k2"),
      effect: "rollout",
      reasons: ["build 1 → 2"],
    },
    {
      name: "a rebuild of the same number",
      base: side({}),
      head: side({}, 1, "k9"),
      effect: "rollout",
      reasons: ["build 1 is rebuilt"],
    },
    {
      name: "env",
      base: side({ env: { A: "1" } }),
      head: side({ env: { A: "2", B: "x" } }),
      effect: "rollout",
      reasons: ["env A, B changed"],
    },
    {
      name: "resources and replicas",
      base: side({ replicas: 1 }),
      head: side({ replicas: 2, resources: { memory: "1Gi" } }),
      effect: "rollout",
      reasons: ['resources {} → {"memory":"1Gi"}', "replicas 1 → 2"],
    },
    {
      name: "timeout",
      base: side({}),
      head: side({ timeoutSeconds: 5 }),
      effect: "rollout",
      reasons: ["timeoutSeconds 30 → 5"],
    },
    {
      name: "a restart",
      base: side({}),
      head: side({}, 1, "k1", { "modelship.dev/restartedAt": "now" }),
      effect: "rollout",
      reasons: ["restartedAt annotation changed"],
    },
    {
      name: "gateway settings only",
      base: side({ queueTimeoutSeconds: 30 }),
      head: side({ queueTimeoutSeconds: 5 }),
      effect: "update",
      reasons: ["spec.queueTimeoutSeconds changed (no new rollout)"],
    },
    {
      name: "stopped",
      base: side({}),
      head: side({ stopped: true }),
      effect: "stop",
      reasons: ["stopped: calls get 503 model.stopped"],
    },
    {
      name: "started",
      base: side({ stopped: true }),
      head: side({}, 2),
      effect: "start",
      reasons: ["started again: rolls out build 2"],
    },
    {
      name: "deleted",
      base: side({}),
      effect: "remove",
      reasons: ["its replicas stop and it is deleted"],
    },
    {
      name: "added",
      head: side({ replicas: 2 }, 3),
      effect: "create",
      reasons: ["rolls out build 3 with 2 replicas"],
    },
  ])("$name", ({ base, head, effect, reasons }) => {
    expect(deploymentEffect(base, head)).toStrictEqual({ effect, reasons });
  });
});

function build(
  number: number,
  buildKey: string,
  commit = `c${number}`,
  managed = true,
): ModelBuild {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: { name: `m-${number}`, labels: managed ? ownedLabels({}) : {} },
    spec: {
      model: "m",
      number,
      commit,
      tree: "t",
      buildKey,
      sourcePath: ".",
      runtime: "python3",
      file: "f.py",
      function: "f",
    },
    status: { phase: "Succeeded" },
  };
}

describe("buildPlanOf", () => {
  const builds = [build(1, "k1"), build(2, "k2"), build(3, "k3", "c3", false)];
  it.each([
    { name: "same key", base: "k2", head: "k2", plan: { action: "unchanged", number: 2 } },
    { name: "a new key", base: "k2", head: "k4", plan: { action: "build", number: 4 } },
    {
      name: "a revert",
      base: "k2",
      head: "k1",
      plan: { action: "reuse", number: 1, commit: "c1", phase: "Succeeded" },
    },
    // A hand-made build counts for numbering, never for reuse.
    {
      name: "a hand-made build's key",
      base: "k2",
      head: "k3",
      plan: { action: "build", number: 4 },
    },
  ])("$name", ({ base, head, plan }) => {
    expect(buildPlanOf(builds, base, head)).toStrictEqual(plan);
  });
});

/** A repository with the add-numbers example and a second model, one commit. */
function exampleRepository(): string {
  const dir = mkdtempSync(join(tmpdir(), "modelship-plan-"));
  temporary.push(dir);
  runGit(dir, GIT_ENV, "init", "-q", "-b", "main");
  const add = readFileSync(
    join(PROJECT_ROOT, "manifests/examples/add-numbers/add_numbers.py"),
    "utf8",
  );
  commitAll(dir, GIT_ENV, "two models", {
    "add/add_numbers.py": add,
    "add/model.yaml": openModelManifest({
      name: "add",
      file: "add_numbers.py",
      function: "add",
      replicas: 2,
    }),
    "echo/echo.py": "def echo(args):\n    return args\n",
    "echo/model.yaml": openModelManifest({ name: "echo", file: "echo.py", function: "echo" }),
  });
  return dir;
}

function plan(dir: string, base: string, head: string, ...extra: string[]) {
  return runCli(["plan", "--repo", dir, "--base", base, "--head", head, ...extra]);
}

function planJson(dir: string, base: string, head: string): Plan {
  const run = plan(dir, base, head, "-o", "json");
  expect(run.stderr).toBe("");
  return JSON.parse(run.stdout) as Plan;
}

describe("modelship plan on a real repository", () => {
  const dir = exampleRepository();
  const first = runGit(dir, GIT_ENV, "rev-parse", "HEAD");
  const code = commitAll(dir, GIT_ENV, "add: a new formula", {
    "add/add_numbers.py": 'def add(args):\n    return args["a"] + args["b"] + 0\n',
  });
  runGit(dir, GIT_ENV, "revert", "--no-edit", "HEAD");
  const revert = runGit(dir, GIT_ENV, "rev-parse", "HEAD");
  const scale = commitAll(dir, GIT_ENV, "add: three replicas", {
    "add/model.yaml": openModelManifest({
      name: "add",
      file: "add_numbers.py",
      function: "add",
      replicas: 3,
    }),
  });
  const removeDeployment = commitAll(dir, GIT_ENV, "echo: no deployment", {
    "echo/model.yaml": openModelManifest({ name: "echo", file: "echo.py", function: "echo" }).split(
      "---",
    )[0] as string,
  });

  it("says a code change makes a new build and rolls it out", () => {
    const result = planJson(dir, first, code);
    expect(result.valid).toBe(true);
    expect(result.models.find((model) => model.name === "add")?.build).toStrictEqual({
      action: "build",
      number: 2,
    });
    expect(result.models.find((model) => model.name === "echo")?.build).toStrictEqual({
      action: "unchanged",
      number: 1,
    });
    const add = result.deployments.find((deployment) => deployment.name === "add");
    expect(add).toMatchObject({
      effect: "rollout",
      build: { base: 1, head: 2 },
      reasons: ["build 1 → 2"],
    });
    expect(result.deployments.find((deployment) => deployment.name === "echo")?.effect).toBe(
      "none",
    );
    // The code is not a manifest: no object changed.
    expect(result.objects.filter((object) => object.action !== "unchanged")).toStrictEqual([]);
  });

  it("names the build a revert brings back, with no build", () => {
    const run = plan(dir, code, revert);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/add\s+build 1 comes back \(first built at [0-9a-f]{7}\); no build/);
    expect(run.stdout).toMatch(/add\s+new rollout: build 2 → 1/);
    const result = planJson(dir, code, revert);
    expect(result.models.find((model) => model.name === "add")?.build).toMatchObject({
      action: "reuse",
      number: 1,
      commit: first,
    });
  });

  it("says a replicas-only change scales without a build or a rollout", () => {
    const result = planJson(dir, revert, scale);
    expect(result.models.find((model) => model.name === "add")?.build).toStrictEqual({
      action: "unchanged",
      number: 1,
    });
    expect(result.deployments.find((deployment) => deployment.name === "add")).toMatchObject({
      effect: "scale",
      replicas: { base: 2, head: 3 },
      reasons: ["replicas 2 → 3"],
    });
    const changed = result.objects.filter((object) => object.action === "changed");
    expect(changed).toStrictEqual([
      {
        kind: "ModelDeployment",
        namespace: "default",
        name: "add",
        action: "changed",
        file: "add/model.yaml",
        changes: [{ path: "/spec/replicas", before: 2, after: 3 }],
      },
    ]);
  });

  it("says a deleted deployment stops and is pruned", () => {
    const result = planJson(dir, scale, removeDeployment);
    expect(result.valid).toBe(true);
    expect(result.objects.filter((object) => object.action === "removed")).toMatchObject([
      { kind: "ModelDeployment", name: "echo", file: "echo/model.yaml" },
    ]);
    expect(result.deployments.find((deployment) => deployment.name === "echo")).toMatchObject({
      action: "removed",
      effect: "remove",
    });
    const text = plan(dir, scale, removeDeployment).stdout;
    expect(text).toContain("- ModelDeployment/echo  (echo/model.yaml)");
  });

  it("exits 1 on an invalid head, naming file and line, and still says what changes", () => {
    const broken = commitAll(dir, GIT_ENV, "add: typo", {
      "add/model.yaml": openModelManifest({
        name: "add",
        file: "add_numbers.py",
        function: "add",
        replicas: 4,
      }).replace("function: add", "function: ad"),
    });
    const run = plan(dir, removeDeployment, broken);
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toMatch(/add\/model\.yaml:\d+:\d+: Model\/add \/spec\/function: /);
    expect(run.stdout).toContain("the head is invalid: 1 problem");
    const result = JSON.parse(plan(dir, removeDeployment, broken, "-o", "json").stdout) as Plan;
    expect(result.valid).toBe(false);
    expect(result.head.problems).toMatchObject([
      { file: "add/model.yaml", rule: "function", kind: "Model", name: "add" },
    ]);
    expect(result.head.problems[0]?.line).toBeGreaterThan(1);
    runGit(dir, GIT_ENV, "reset", "-q", "--hard", removeDeployment);
  });

  it("exits 1, not 2, when the head's objects are not even objects", () => {
    const broken = commitAll(dir, GIT_ENV, "garbage", {
      "junk.yaml":
        "apiVersion: modelship.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: junk}\nspec: 3\n",
      "gone.yaml": "apiVersion: modelship.dev/v1alpha1\nkind: Model\nmetadata: {name: gone}\n",
    });
    const run = plan(dir, removeDeployment, broken);
    expect(run.stderr).toBe("");
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toMatch(/junk\.yaml:4:\d+: ModelDeployment\/junk \/spec: /);
    expect(run.stdout).toMatch(/gone\.yaml:\d+:\d+: Model\/gone /);
    runGit(dir, GIT_ENV, "reset", "-q", "--hard", removeDeployment);
  });

  it("takes refs as git does, and refuses one that names nothing", () => {
    expect(planJson(dir, "HEAD~2", "main").head.commit).toBe(removeDeployment);
    const abbreviated = planJson(dir, code.slice(0, 8), "HEAD~2^");
    expect([abbreviated.base.commit, abbreviated.head.commit]).toStrictEqual([code, code]);
    const missing = plan(dir, "no-such-branch", "HEAD");
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain('"no-such-branch" names no commit');
  });

  it("writes markdown for a pull request", () => {
    const run = plan(dir, revert, scale, "-o", "markdown");
    expect(run.stdout).toContain("| `add` | scale: replicas 2 → 3; the same rollout, no build |");
    expect(run.stdout).toContain("/spec/replicas: 2 → 3");
  });
});

describe("a plan for a pull request", () => {
  const side = { commit: "a".repeat(40), message: "m", author: "x", problems: [] };
  const empty: Plan = {
    repository: { namespace: "default", name: "local" },
    path: ".",
    base: side,
    head: side,
    valid: true,
    buildNumbers: "the controller's builds",
    objects: [],
    models: [],
    deployments: [],
  };
  const problem = {
    file: "m/model.yaml",
    line: 8,
    column: 13,
    kind: "Model",
    name: "m",
    pointer: "/spec/function",
    rule: "function" as const,
    message: 'function "ech" is not defined',
  };
  const modelWith = (build: BuildPlan): ModelPlan => ({
    namespace: "default",
    name: "m",
    action: "unchanged",
    buildKey: {},
    build,
  });
  it.each<[string, Plan, string]>([
    ["nothing", empty, "no change to what runs"],
    [
      "a build and its rollout",
      {
        ...empty,
        models: [modelWith({ action: "build", number: 2 })],
        deployments: [
          {
            namespace: "default",
            name: "m",
            model: "m",
            action: "unchanged",
            effect: "rollout",
            build: {},
            replicas: {},
            reasons: [],
          },
        ],
      },
      "1 new build, 1 rollout",
    ],
    [
      "a revert and a prune",
      {
        ...empty,
        models: [modelWith({ action: "reuse", number: 1, commit: "c" })],
        objects: [
          {
            kind: "ModelDeployment",
            namespace: "default",
            name: "old",
            action: "removed",
            file: "old.yaml",
            changes: [],
          },
        ],
      },
      "1 build brought back, 1 object pruned",
    ],
    [
      "an invalid head",
      { ...empty, valid: false, head: { ...side, problems: [problem, problem] } },
      "2 problems: the sync would apply nothing",
    ],
  ])("%s", (_name, plan, title) => {
    expect(planTitle(plan)).toBe(title);
  });

  it("puts the head's problems on their files and lines", () => {
    const result = pullRequestPlanOf([
      { ...empty, valid: false, head: { ...side, problems: [problem] } },
    ]);
    expect(result.valid).toBe(false);
    expect(result.annotations).toStrictEqual([
      {
        path: "m/model.yaml",
        line: 8,
        column: 13,
        level: "failure",
        message: 'Model/m /spec/function: function "ech" is not defined',
      },
    ]);
    expect(result.markdown).toContain("m/model.yaml:8:13: Model/m /spec/function");
  });

  it("says so when no repository follows the base branch", () => {
    expect(pullRequestPlanOf([])).toMatchObject({
      valid: true,
      title: "no ModelRepository follows the base branch",
      annotations: [],
    });
  });
});
