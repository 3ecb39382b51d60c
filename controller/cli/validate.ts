// `modelship validate [PATH...]`: checks every .yaml/.yml below the paths, prints one line per
// problem, and exits 1 when there is any.
import { existsSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_MAX_REPLICAS } from "../api/schemas.ts";
import { formatBytes, MANIFEST_LIMITS } from "../source/limits.ts";
import { type ManifestFile, readManifestFiles } from "../source/manifest-files.ts";
import { DirectoryTree } from "../source/tree.ts";
import { formatProblem, type Problem, validateManifests } from "../source/validate.ts";
import type { CommandResult, Output } from "./output.ts";

export const VALIDATE_HELP = `Usage: modelship validate [PATH...] [--output text|json] [--max-replicas N]

Checks the modelship manifests in every .yaml/.yml file below each PATH (default: the current
directory): apiVersion and kind, the schema, unknown fields, names, duplicates, that each
ModelDeployment's Model exists, and that each Model's file and function exist.

Prints one line per problem, path:line:col: Kind/name /json/pointer: message, and exits 1 when
there is any problem, 0 when there is none. The controller's limits apply to the manifests of
each repository: at most ${MANIFEST_LIMITS.maxFilesPerCommit} files of UTF-8 text, ${formatBytes(MANIFEST_LIMITS.maxFileBytes)} each and
${formatBytes(MANIFEST_LIMITS.maxCommitBytes)} together.

Options:
  -o, --output text|json   json prints the problems as a JSON array
  --max-replicas N         the installation's replica limit (default ${DEFAULT_MAX_REPLICAS}, or MODELSHIP_MAX_REPLICAS)
`;

/** Directories that never hold manifests (and can be huge). */
const SKIPPED_DIRECTORIES = new Set(["node_modules", "__pycache__", "renv", "venv"]);

export async function yamlFilesBelow(path: string): Promise<string[]> {
  const info = await stat(path);
  if (info.isFile()) return [path];
  const files: string[] = [];
  for (const entry of await readdir(path, { withFileTypes: true })) {
    // Hidden directories (.git, .github, .venv) hold CI files and tooling, not manifests.
    if (entry.name.startsWith(".") || SKIPPED_DIRECTORIES.has(entry.name)) continue;
    const child = join(path, entry.name);
    if (entry.isDirectory()) files.push(...(await yamlFilesBelow(child)));
    else if (entry.isFile() && /\.ya?ml$/.test(entry.name)) files.push(child);
  }
  return files.sort();
}

/** The repository a path belongs to: the nearest directory with a .git, else the path itself. */
export function repositoryRootOf(path: string, isFile: boolean): string {
  const start = isFile ? dirname(path) : path;
  for (let directory = start; ; directory = dirname(directory)) {
    if (existsSync(join(directory, ".git"))) return directory;
    if (dirname(directory) === directory) return start;
  }
}

function parseReplicaLimit(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MAX_REPLICAS;
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1) {
    throw new Error(`--max-replicas must be a positive integer, not "${text}"`);
  }
  return limit;
}

export async function runValidate(args: string[], output: Output): Promise<CommandResult> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o", default: "text" },
      "max-replicas": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(VALIDATE_HELP);
    return { exitCode: 0 };
  }
  if (values.output !== "text" && values.output !== "json") {
    throw new Error(`--output must be text or json, not "${values.output}"`);
  }
  const maxReplicas = parseReplicaLimit(
    values["max-replicas"] ?? process.env.MODELSHIP_MAX_REPLICAS,
  );
  const cwd = process.cwd();

  // Paths of one repository are validated together: references between them must resolve.
  const byRoot = new Map<string, ManifestFile[]>();
  // Overlapping paths (`validate . manifests/`) must not count a file twice.
  const seenFiles = new Set<string>();
  for (const path of positionals.length ? positionals : ["."]) {
    const absolute = resolve(cwd, path);
    if (!existsSync(absolute)) throw new Error(`${path}: no such file or directory`);
    const root = repositoryRootOf(absolute, (await stat(absolute)).isFile());
    const files = byRoot.get(root) ?? [];
    for (const file of await yamlFilesBelow(absolute)) {
      if (seenFiles.has(file)) continue;
      seenFiles.add(file);
      files.push({
        file: relative(cwd, file),
        repoPath: relative(root, file).split(sep).join("/"),
        size: async () => (await stat(file)).size,
        read: () => readFile(file),
      });
    }
    byRoot.set(root, files);
  }

  const problems: Problem[] = [];
  let objects = 0;
  for (const [root, files] of byRoot) {
    // A repository on disk is held to the limits of a commit, with the same messages.
    const sources = await readManifestFiles(files, MANIFEST_LIMITS);
    const result = await validateManifests(sources, new DirectoryTree(root), { maxReplicas });
    problems.push(...result.problems);
    objects += result.objects;
  }

  if (values.output === "json") {
    output.out(`${JSON.stringify(problems, null, 2)}\n`);
  } else {
    for (const problem of problems) output.out(`${formatProblem(problem)}\n`);
    const summary = `${objects} object${objects === 1 ? "" : "s"} in ${seenFiles.size} file${seenFiles.size === 1 ? "" : "s"}`;
    if (problems.length)
      output.err(`${problems.length} problem${problems.length === 1 ? "" : "s"} (${summary})\n`);
    else output.out(`${summary}: valid\n`);
  }
  return { exitCode: problems.length ? 1 : 0 };
}
