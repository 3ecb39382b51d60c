// `modelship plan --base REF --head REF`: what the sync will do when the branch moves from one
// commit to another — objects added, changed and pruned, builds made or brought back, rollouts —
// worked out with the sync's own code, before the change is merged.
import { existsSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_MAX_REPLICAS } from "../api/schemas.ts";
import { type PredictOptions, predictPlan } from "../platform/local/predict.ts";
import { defaultBuildsDir, modelUser } from "../platform/local/sandbox.ts";
import {
  historyCatalog,
  loadChange,
  type Plan,
  type PlanOptions,
  planChange,
} from "../reconcile/plan.ts";
import { formatPlanMarkdown, formatPlanText } from "../reconcile/plan-report.ts";
import { DEFAULT_TOLERANCE } from "../reconcile/prediction-diff.ts";
import { GitSource, isRemoteUrl } from "../source/git.ts";
import type { CommandResult, Output } from "./output.ts";
import { repositoryRootOf } from "./validate.ts";

/** Commits of the base's history read to number builds, unless --history says otherwise. */
const DEFAULT_HISTORY = 200;

export const PLAN_HELP = `Usage: modelship plan --base REF [--head REF] [--repo PATH|URL] [--path P] [--predict] [-o text|json|markdown]

Says what the sync will do when the branch moves from --base to --head (a pull request's base
and head): the objects it adds, changes (field by field) and prunes; for each Model whether a new
build is made or an existing one comes back (a revert names the build number); for each
ModelDeployment the rollout it causes (build n → m, env, resources), a scale (replicas a → b),
a stop, or that it goes away; and the head's validation problems as path:line:col. It uses the
sync's own code, so what it says is what the sync does.

REF is a commit id (full or abbreviated), a branch, a tag, HEAD, each optionally with ~N or ^.
Build numbers are worked out from the base's history (every commit the sync would have applied);
a controller that missed commits between two polls may have numbered them differently.

Exits 0 when the head is valid, 1 when it is not (the sync would apply nothing from it).

Options:
  --base REF             the commit the branch is at now (required)
  --head REF             the commit it moves to (default HEAD)
  --repo PATH|URL        the repository (default: the one the current directory is in)
  --branch NAME          for a URL: the branch to fetch (default main)
  --path P               the path the ModelRepository syncs (default .)
  --namespace NS         the ModelRepository's namespace (default "default")
  --history N            commits of the base's history read to number builds (default ${DEFAULT_HISTORY})
  --max-replicas N       the installation's replica limit (default ${DEFAULT_MAX_REPLICAS}, or MODELSHIP_MAX_REPLICAS)
  --predict              also run each changed Model's examples (spec.example, spec.examples,
                         spec.examplesFile) through the base's build and the head's, in real
                         replicas on this machine, and report the answers that change; builds
                         are kept by build key in the cache directory, so a build is made once
  --tolerance T          numbers that differ by at most T × max(1, |a|, |b|) are the same answer
                         (default ${DEFAULT_TOLERANCE})
  --cache-dir DIR        where --predict keeps its builds (default $XDG_CACHE_HOME/modelship,
                         else ~/.cache/modelship, or MODELSHIP_CACHE_DIR)
  -o, --output FORMAT    text (default), json (the plan as one JSON object) or markdown

Progress (builds, examples) goes to stderr; stdout has the plan only.
`;

/** Where --predict keeps builds between runs. */
function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MODELSHIP_CACHE_DIR) return env.MODELSHIP_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "modelship");
  return join(homedir(), ".cache", "modelship");
}

function positiveInteger(text: string, flag: string): number {
  const number = Number(text);
  if (!Number.isInteger(number) || number < 1) {
    throw new Error(`${flag} must be a positive integer, not "${text}"`);
  }
  return number;
}

export async function runPlan(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: {
      base: { type: "string" },
      head: { type: "string", default: "HEAD" },
      repo: { type: "string" },
      branch: { type: "string", default: "main" },
      path: { type: "string", default: "." },
      namespace: { type: "string", default: "default" },
      history: { type: "string", default: String(DEFAULT_HISTORY) },
      "max-replicas": { type: "string" },
      output: { type: "string", short: "o", default: "text" },
      predict: { type: "boolean", default: false },
      tolerance: { type: "string" },
      "cache-dir": { type: "string" },
    },
  });
  if (values.base === undefined)
    throw new Error("--base REF is required (the commit the branch is at)");
  const format = values.output;
  if (format !== "text" && format !== "json" && format !== "markdown") {
    throw new Error(`--output must be text, json or markdown, not "${format}"`);
  }
  const maxReplicasText = values["max-replicas"] ?? process.env.MODELSHIP_MAX_REPLICAS;
  const maxReplicas =
    maxReplicasText === undefined
      ? DEFAULT_MAX_REPLICAS
      : positiveInteger(maxReplicasText, "--max-replicas");
  const history = positiveInteger(values.history, "--history");
  const tolerance = values.tolerance === undefined ? DEFAULT_TOLERANCE : Number(values.tolerance);
  if (!Number.isFinite(tolerance) || tolerance < 0) {
    throw new Error(`--tolerance must be a number ≥ 0, not "${values.tolerance}"`);
  }

  const url = values.repo ?? repositoryRootOf(process.cwd(), false);
  if (!isRemoteUrl(url) && !existsSync(resolve(url)))
    throw new Error(`--repo ${url}: no such directory`);
  const source = new GitSource({
    url: isRemoteUrl(url) ? url : resolve(url),
    branch: values.branch,
    cacheDir: join(tmpdir(), "modelship-plan"),
    ...(process.env.MODELSHIP_GIT_TOKEN ? { token: process.env.MODELSHIP_GIT_TOKEN } : {}),
  });
  // A URL is cloned (or fetched) once; its refs are then the fetched branches.
  if (source.remote) await source.fetch();
  const base = await source.revision(values.base);
  const head = await source.revision(values.head);
  const options: Omit<PlanOptions, "catalog"> = {
    source,
    repository: { namespace: values.namespace, name: "plan" },
    path: values.path,
    base,
    head,
    validate: { namespace: values.namespace, maxReplicas },
    // The local platform's base images: a build key is compared with others of the same plan.
    baseImage: (runtime) => `local/${runtime}`,
  };
  const change = await loadChange(options);
  const plan: Plan = await planChange(
    { ...options, catalog: await historyCatalog(options, history) },
    change,
  );
  if (values.predict) {
    const user = modelUser();
    const cacheDir = resolve(values["cache-dir"] ?? defaultCacheDir());
    const predict: PredictOptions = {
      source,
      buildsDir: defaultBuildsDir(join(cacheDir, "plan"), user),
      user,
      log: (line) => output.err(`${line}\n`),
      tolerance,
    };
    plan.predictions = await predictPlan(plan, change, predict);
  }

  if (format === "json") output.out(`${JSON.stringify(plan, null, 2)}\n`);
  else if (format === "markdown") output.out(formatPlanMarkdown(plan));
  else output.out(formatPlanText(plan));
  return { exitCode: plan.valid ? 0 : 1 };
}
