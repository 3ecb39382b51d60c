// `modelship plan --predict` on the iris example, as a user runs it: real builds (scikit-learn
// trains at build time), real replicas, the examples of examples.jsonl through the base's build
// and the head's. A retrain changes the coefficients: the plan names the answers that moved and
// by how much; an unchanged model is reported unchanged, with nothing built.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { predictPlan } from "../controller/platform/local/predict.ts";
import { defaultBuildsDir, modelUser } from "../controller/platform/local/sandbox.ts";
import { historyCatalog, loadChange, type Plan, planChange } from "../controller/reconcile/plan.ts";
import {
  compareAnswers,
  comparePredictions,
  median,
} from "../controller/reconcile/prediction-diff.ts";
import { parseExamplesFile } from "../controller/source/examples.ts";
import { GitSource } from "../controller/source/git.ts";
import { PROJECT_ROOT, runCli } from "./helpers/cli.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";

const GIT_ENV = gitEnv({ name: "Grace Hopper", email: "grace@example.com" });
const root = mkdtempSync(join(tmpdir(), "modelship-predict-"));
/** Where --predict keeps builds for this cache: below it, or below /var/tmp for a model user. */
const buildsRoot = (cacheDir: string) => defaultBuildsDir(join(cacheDir, "plan"), modelUser());
const buildsDir = (cacheDir: string) => join(buildsRoot(cacheDir), "default");
afterAll(() => {
  rmSync(buildsRoot(join(root, "cache")), { recursive: true, force: true });
  rmSync(root, { recursive: true, force: true });
});

describe("compareAnswers", () => {
  it.each([
    { base: { w: 1.5 }, head: { w: 1.5 }, same: true, maxDelta: undefined },
    { base: { w: 1.5 }, head: { w: 1.5 + 1e-12 }, same: true, maxDelta: undefined },
    { base: { w: 1.5 }, head: { w: 1.6 }, same: false, maxDelta: 0.1 },
    { base: [1, 2, 3], head: [1, 2.5, 2], same: false, maxDelta: 1 },
    { base: { w: 1 }, head: { w: 1, extra: true }, same: false, maxDelta: undefined },
    { base: "a", head: "b", same: false, maxDelta: undefined },
    { base: [1, 2], head: [1, 2, 3], same: false, maxDelta: undefined },
  ])("$base vs $head", ({ base, head, same, maxDelta }) => {
    const result = compareAnswers(base, head);
    expect(result.same).toBe(same);
    if (maxDelta === undefined) expect(result.maxDelta).toBeUndefined();
    else expect(result.maxDelta).toBeCloseTo(maxDelta, 9);
  });

  it("takes a tolerance", () => {
    expect(compareAnswers({ w: 1.5 }, { w: 1.51 }, 0.01).same).toBe(true);
    expect(compareAnswers({ w: 1.5 }, { w: 1.6 }, 0.01).same).toBe(false);
  });
});

describe("comparePredictions", () => {
  const examples = parseExamplesFile(
    [
      '{"input": 1, "output": 2}',
      '{"input": 2}',
      '{"name": "three", "input": 3, "output": 6}',
    ].join("\n"),
    "m/examples.jsonl",
  ).examples;
  const answer = (value: unknown, ms = 1) => ({ ok: true, value, ms });
  it("counts changed, unchanged, now failing and expected mismatches", () => {
    const report = comparePredictions(
      "m",
      examples,
      { answers: [answer(2, 1), answer(4, 3), answer(6, 5)] },
      { answers: [answer(2, 2), { ok: false, error: "model.error: boom", ms: 4 }, answer(7, 6)] },
    );
    expect(report).toMatchObject({
      outcome: "compared",
      examples: 3,
      changed: 2,
      unchanged: 1,
      nowFailing: 1,
      expectedMismatchCount: 1,
      medianMs: { base: 3, head: 4 },
    });
    expect(report.differences.map((difference) => difference.example)).toStrictEqual([
      "examples.jsonl:2",
      "three",
    ]);
    expect(report.differences[1]?.maxDelta).toBe(1);
    expect(report.expectedMismatches).toMatchObject([{ example: "three", expected: 6, head: 7 }]);
  });

  it("says which side could not run", () => {
    const report = comparePredictions(
      "m",
      examples,
      { failure: "failed to build: pip", answers: [] },
      { answers: [] },
    );
    expect(report).toMatchObject({
      outcome: "failed",
      failure: { side: "base", message: "failed to build: pip" },
    });
  });

  it("reports the line of an examples file that is not an example", () => {
    const parsed = parseExamplesFile(
      '{"input": 1}\n\nnot json\n{"inpt": 2}\n{"input": 3, "extra": 1}\n',
      "e.jsonl",
    );
    expect(parsed.examples).toHaveLength(1);
    expect(parsed.problems.map((problem) => problem.line)).toStrictEqual([3, 4, 5]);
  });

  it("takes the median of an even count as the mean of the middle two", () => {
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeUndefined();
  });
});

describe("modelship plan --predict on the iris example", () => {
  const repo = join(root, "repo");
  const cacheDir = join(root, "cache");
  runGit(root, GIT_ENV, "init", "-q", "-b", "main", repo);
  cpSync(join(PROJECT_ROOT, "manifests/examples/iris"), join(repo, "iris"), { recursive: true });
  cpSync(join(PROJECT_ROOT, "manifests/examples/add-numbers"), join(repo, "add-numbers"), {
    recursive: true,
  });
  const base = commitAll(repo, GIT_ENV, "iris and add-numbers");
  // A retrain on the setosa and versicolor flowers only: other coefficients, other answers.
  const retrained = commitAll(repo, GIT_ENV, "iris: retrain on two species", {
    "iris/fit.py": readFit().replace(
      "petal_length = iris.data[:, 2:3]\npetal_width = iris.data[:, 3]",
      "petal_length = iris.data[:100, 2:3]\npetal_width = iris.data[:100, 3]",
    ),
  });
  /** The plan of base → retrained with --predict, in an output format. */
  const predictIn = (format: "json" | "text" | "markdown") =>
    runCli(
      [
        "plan",
        "--repo",
        repo,
        "--base",
        base,
        "--head",
        retrained,
        "--predict",
        "--cache-dir",
        cacheDir,
        "-o",
        format,
      ],
      { env: { MODELSHIP_CACHE_DIR: "" } },
    );

  it("reports which examples changed and by how much, and leaves the unchanged model unbuilt", () => {
    const run = predictIn("json");
    expect(run.exitCode, run.stderr).toBe(0);
    const plan = JSON.parse(run.stdout) as Plan;
    const iris = plan.predictions?.find((report) => report.model === "iris");
    expect(iris).toMatchObject({ outcome: "compared", examples: 7, nowFailing: 0 });
    // The new line's slope differs: every petal length but one crossing point moves.
    expect(iris?.changed).toBeGreaterThanOrEqual(6);
    expect(iris?.differences.length).toBe(5);
    for (const difference of iris?.differences ?? []) {
      expect(difference.maxDelta).toBeGreaterThan(0.001);
      expect((difference.base as { petal_width: number }).petal_width).not.toBe(
        (difference.head as { petal_width: number }).petal_width,
      );
    }
    // The expected outputs were the old model's answers.
    expect(iris?.expectedMismatchCount).toBeGreaterThanOrEqual(6);
    expect(iris?.medianMs.base).toBeGreaterThan(0);
    expect(iris?.medianMs.head).toBeGreaterThan(0);
    const add = plan.predictions?.find((report) => report.model === "add-numbers");
    expect(add).toMatchObject({ outcome: "unchanged", examples: 1 });
    // Nothing of add-numbers was built: only iris's two builds are kept.
    const kept = readdirSync(buildsDir(cacheDir));
    expect(kept.filter((name) => name.startsWith("add-numbers"))).toStrictEqual([]);
    expect(kept.filter((name) => name.startsWith("iris-")).length).toBe(2);
  }, 300_000);

  it("makes no build the second time, and says it in text and markdown", () => {
    const text = predictIn("text");
    expect(text.exitCode).toBe(0);
    expect(text.stderr).not.toContain("building iris");
    expect(text.stdout).toMatch(
      /iris\s+\d of 7 answers changed; \d miss the expected output \(median [\d.]+ ms → [\d.]+ ms\)/,
    );
    expect(text.stdout).toMatch(/add-numbers\s+unchanged: the same build answers/);
    expect(text.stdout).toMatch(
      /setosa: \{"petal_length":1\.4\} → \{"petal_width":0\.219\} became \{"petal_width":[\d.-]+\} \(by [\d.]+\)/,
    );
    const markdown = predictIn("markdown");
    expect(markdown.stdout).toContain("**Predictions**");
    expect(markdown.stdout).toContain("<details><summary>iris: what changed</summary>");
  }, 120_000);
});

function readFit(): string {
  return readFileSync(join(PROJECT_ROOT, "manifests/examples/iris/fit.py"), "utf8");
}

describe("predictions from a model that never loads", () => {
  it("fail that side after the load deadline, naming why, instead of waiting forever", async () => {
    const dir = join(root, "dying");
    runGit(root, GIT_ENV, "init", "-q", "-b", "main", dir);
    const manifest = openModelManifest({ name: "dies", file: "dies.py", function: "f" }).replace(
      "  authentication:",
      "  example:\n    input: 1\n  authentication:",
    );
    const base = commitAll(dir, GIT_ENV, "answers", {
      "dies.py": "def f(args):\n    return args\n",
      "model.yaml": manifest,
    });
    // Exits while it loads: the agent restarts it again and again, and it never gets ready.
    const head = commitAll(dir, GIT_ENV, "dies", {
      "dies.py": "import os\nos._exit(3)\ndef f(args):\n    return args\n",
    });
    const source = new GitSource({ url: dir, branch: "main", cacheDir: join(root, "unused") });
    const options = {
      source,
      repository: { namespace: "default", name: "plan" },
      path: ".",
      base: await source.revision(base),
      head: await source.revision(head),
      validate: { namespace: "default" },
      baseImage: (runtime: string) => `local/${runtime}`,
    };
    const change = await loadChange(options);
    const plan = await planChange(
      { ...options, catalog: await historyCatalog(options, 10) },
      change,
    );
    const cache = buildsRoot(join(root, "dying-cache"));
    try {
      const [report] = await predictPlan(plan, change, {
        source,
        buildsDir: cache,
        user: modelUser(),
        log: () => {},
        loadTimeoutMs: 3000,
      });
      expect(report).toMatchObject({ model: "dies", outcome: "failed", failure: { side: "head" } });
      expect(report?.failure?.message).toMatch(
        /^does not load: not ready after 3 s: worker \d+ exited with code 3/,
      );
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  }, 120_000);
});
