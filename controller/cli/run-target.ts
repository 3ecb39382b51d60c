// What a `modelship run` runs (docs/metrics.md#experiments): the Model among the manifests of
// the work tree whose source directory holds the script, what a build of it leaves out, and
// where the run's state goes. Everything here is checked before anything is built or run.
import { existsSync } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, posix, relative, resolve, sep } from "node:path";
import { isRecord } from "../api/canonical-json.ts";
import { MANIFEST_LIMITS } from "../source/limits.ts";
import { parseManifestFile } from "../source/manifests.ts";
import {
  buildFilter,
  type DeclaredModel,
  excludePatterns,
  literalPattern,
  MAX_MODELSHIPIGNORE_BYTES,
  MODELSHIPIGNORE,
  nestedSourcesOf,
  type SourceFilter,
} from "../source/source-filter.ts";
import { identify, modelLayout } from "../source/validate.ts";
import { runsStateDir } from "./run-store.ts";
import { realPath, workTreeOf } from "./state-dir.ts";
import { yamlFilesBelow } from "./validate.ts";

/** A Model declared in the work tree, with what a run needs of it. */
export interface DeclaredWorkTreeModel {
  name: string;
  /** Its manifest, relative to the work tree. */
  manifest: string;
  layout: DeclaredModel;
  spec: Record<string, unknown>;
}

/** Every Model the manifests of the work tree declare (files a sync would not read are skipped). */
async function modelsOf(workTree: string): Promise<DeclaredWorkTreeModel[]> {
  const models: DeclaredWorkTreeModel[] = [];
  for (const file of await yamlFilesBelow(workTree)) {
    if ((await stat(file)).size > MANIFEST_LIMITS.maxFileBytes) continue;
    const repoPath = relative(workTree, file).split(sep).join("/");
    const parsed = parseManifestFile(repoPath, await readFile(file, "utf8"));
    for (const document of parsed.documents) {
      const { candidate } = identify(document, repoPath);
      if (candidate?.kind !== "Model" || candidate.name === undefined) continue;
      const spec = isRecord(candidate.object.spec) ? candidate.object.spec : {};
      models.push({
        name: candidate.name,
        manifest: repoPath,
        layout: modelLayout(candidate),
        spec,
      });
    }
  }
  return models;
}

/** Whether repo path `path` is inside directory `directory` ("." is the top). */
function inside(path: string, directory: string): boolean {
  return directory === "." || path.startsWith(`${directory}/`);
}

/** The Model a script belongs to: --model's, else the one with the deepest source path holding it. */
function chooseModel(
  models: DeclaredWorkTreeModel[],
  script: string,
  wanted: string | undefined,
): DeclaredWorkTreeModel {
  const names = () => models.map((model) => model.name).join(", ") || "none";
  if (wanted !== undefined) {
    const model = models.find((candidate) => candidate.name === wanted);
    if (!model) throw new Error(`no Model "${wanted}" in the work tree's manifests (${names()})`);
    if (!inside(script, model.layout.sourcePath)) {
      throw new Error(
        `${script} is not in the source directory of Model ${wanted} (${model.layout.sourcePath}): a run copies that directory and runs the script in the copy`,
      );
    }
    return model;
  }
  const holders = models.filter((model) => inside(script, model.layout.sourcePath));
  const depth = (model: DeclaredWorkTreeModel) =>
    model.layout.sourcePath === "." ? 0 : model.layout.sourcePath.split("/").length;
  const deepest = Math.max(...holders.map(depth));
  const chosen = holders.filter((model) => depth(model) === deepest);
  if (chosen.length === 0) {
    throw new Error(
      `no Model's source directory holds ${script} (the work tree's Models: ${names()}): put the script in one, or name one with --model`,
    );
  }
  if (chosen.length > 1) {
    throw new Error(
      `the source directory ${chosen[0]?.layout.sourcePath} is that of several Models (${chosen.map((model) => model.name).join(", ")}): name one with --model`,
    );
  }
  return chosen[0] as DeclaredWorkTreeModel;
}

/** What a build of `model` leaves out of its source directory (source-filter.ts, reconcile/model.ts). */
async function buildLeftOut(
  models: DeclaredWorkTreeModel[],
  model: DeclaredWorkTreeModel,
  sourceDir: string,
): Promise<SourceFilter> {
  const nested = nestedSourcesOf(models.map((declared) => declared.layout))[models.indexOf(model)];
  const source = isRecord(model.spec.source) ? model.spec.source : {};
  const declared = Array.isArray(source.exclude)
    ? source.exclude.filter((pattern): pattern is string => typeof pattern === "string")
    : [];
  const patterns = excludePatterns(model.layout.sourcePath, nested ?? [], declared);
  // As a build's: the examples are for comparing builds, not part of one.
  if (typeof model.spec.examplesFile === "string") {
    patterns.push(`/${literalPattern(posix.normalize(model.spec.examplesFile))}`);
  }
  const ignoreFile = join(sourceDir, MODELSHIPIGNORE);
  let ignoreText: string | undefined;
  if (existsSync(ignoreFile)) {
    if ((await stat(ignoreFile)).size > MAX_MODELSHIPIGNORE_BYTES) {
      throw new Error(`${ignoreFile} is larger than ${MAX_MODELSHIPIGNORE_BYTES / 1024} KB`);
    }
    ignoreText = await readFile(ignoreFile, "utf8");
  }
  return buildFilter(patterns, ignoreText);
}

/**
 * What no copy of the source takes: git's own files, and the state directory when it is inside
 * (runs and environments are kept there: a copy would hold copies of them).
 */
function neverCopied(sourceDir: string, stateDir: string): SourceFilter {
  const state = relative(sourceDir, stateDir).split(sep).join("/");
  const stateInside = state !== "" && !state.startsWith("..") && !isAbsolute(state);
  return (path) =>
    path.split("/").includes(".git") ||
    (stateInside && (path === `${state}/` || path.startsWith(`${state}/`)));
}

/** What a run runs, resolved from the command line before anything is made. */
export interface RunTarget {
  workTree: string;
  model: DeclaredWorkTreeModel;
  runtime: "python3" | "r";
  sourceDir: string;
  /** The script, relative to the source directory. */
  script: string;
  stateDir: string;
  /** What no copy of the source takes (git's files, the state directory). */
  notCopied: SourceFilter;
  /** What a build of the Model leaves out besides. */
  buildLeftOut: SourceFilter;
}

/** The Model and the paths of a run, or an error naming what is wrong. */
export async function targetOf(
  script: string,
  wantedModel: string | undefined,
  stateDirFlag: string | undefined,
): Promise<RunTarget> {
  const scriptFile = await realpath(resolve(script)).catch(() => undefined);
  if (scriptFile === undefined || !(await stat(scriptFile)).isFile()) {
    throw new Error(`${script}: no such file`);
  }
  const found = workTreeOf(dirname(scriptFile));
  if (found === undefined) {
    throw new Error(
      `${script} is not in a git work tree: a run records the commit it ran, and finds its Model among the work tree's manifests`,
    );
  }
  const workTree = realPath(found);
  const models = await modelsOf(workTree);
  const scriptInTree = relative(workTree, scriptFile).split(sep).join("/");
  const model = chooseModel(models, scriptInTree, wantedModel);
  const runtime = model.spec.runtime;
  if (runtime !== "python3" && runtime !== "r") {
    throw new Error(
      `Model ${model.name} (${model.manifest}) has runtime ${JSON.stringify(runtime)}: runs need python3 or r`,
    );
  }
  const extension = runtime === "python3" ? /\.py$/ : /\.[Rr]$/;
  if (!extension.test(scriptFile)) {
    throw new Error(
      `Model ${model.name}'s runtime is ${runtime}, which runs ${runtime === "python3" ? ".py" : ".R"} scripts, not ${script}`,
    );
  }
  const sourceDir = join(workTree, model.layout.sourcePath);
  const stateDir = realPath(runsStateDir(stateDirFlag, workTree));
  return {
    workTree,
    model,
    runtime,
    sourceDir,
    script: relative(sourceDir, scriptFile).split(sep).join("/"),
    stateDir,
    notCopied: neverCopied(sourceDir, stateDir),
    buildLeftOut: await buildLeftOut(models, model, sourceDir),
  };
}
