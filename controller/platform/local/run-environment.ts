// The environment an experiment runs in (`modelship run`, docs/metrics.md#experiments): made by
// local-build.sh exactly as a build of its Model is — the same script, the Model's runtime and
// build script, from the files a build of the Model gets — but from the work tree rather than a
// commit, and kept in the state directory under a key of what makes it, so that runs with the
// same dependencies reuse one environment instead of building their own.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, lstat, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { SourceFilter } from "../../source/source-filter.ts";
import { DEFAULT_BUILD_SCRIPT, LocalBuilder } from "./builder.ts";
import { removeTree } from "./builder-port.ts";
import { buildEnvironment } from "./runtime.ts";
import { LockHeld, lockFile } from "./state-files.ts";

/** modelship's Python package (the SDK), which a run's script imports as a worker's model does. */
const PYTHON_SDK_DIR = fileURLToPath(new URL("../../../runtime/python/", import.meta.url));

/**
 * The files at the top of a source directory that say which packages a build installs. Only they
 * (with the build script) enter the key: a change to the training code reuses the environment.
 */
const DEPENDENCY_FILE =
  /^(requirements.*\.txt|constraints.*\.txt|pyproject\.toml|setup\.(py|cfg)|Pipfile(\.lock)?|poetry\.lock|uv\.lock|environment\.ya?ml|DESCRIPTION|renv\.lock|install\.R)$/;

const execFileAsync = promisify(execFile);

/** How often a run waiting for another's build of the same environment looks again. */
const LOCK_POLL_MS = 500;

export interface EnvironmentSpec {
  runtime: "python3" | "r";
  /** The Model's source directory in the work tree. */
  sourceDir: string;
  /** spec.buildScript; without one, local-build.sh runs build.sh, else cdsw-build.sh, if there. */
  buildScript?: string;
  /** What the build leaves out of the source (relative paths, a directory's ending in "/"). */
  leftOut: SourceFilter;
}

export interface Environment {
  /** What it was made from, hashed: its directory's name. */
  key: string;
  /** The finished build: build.json, src/, and venv/ or rlib/. */
  directory: string;
  /** The build's output, each line marked `out | ` or `err | `. */
  log: string;
  /** Made now (else found made). */
  built: boolean;
}

export interface EnsureOptions {
  /** Build it again even when it is made. */
  rebuild?: boolean;
  /** Each line of the build's output as it comes. */
  onLine?: (line: string, stream: "out" | "err") => void;
  /** Called once when another process is building the same environment and this one waits. */
  onWait?: (holder: number) => void;
  /** Aborting stops the build (its whole process group). */
  signal?: AbortSignal;
}

/** The build script local-build.sh will run, as it picks it; undefined when there is none. */
async function chosenBuildScript(spec: EnvironmentSpec): Promise<string | undefined> {
  if (spec.buildScript !== undefined) return spec.buildScript;
  for (const name of ["build.sh", "cdsw-build.sh"]) {
    if (await isFile(join(spec.sourceDir, name))) return name;
  }
  return undefined;
}

async function isFile(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isFile() ?? false;
}

/**
 * Which interpreter a build starts from, as the build finds it on PATH: a virtualenv is made
 * from one Python and breaks when that one is replaced, so another one is another environment.
 * "none" when it does not run (the build's preflight then says what to install).
 */
async function interpreterOf(runtime: "python3" | "r"): Promise<string> {
  const [file, args] =
    runtime === "python3"
      ? ["python3", ["-c", "import sys; print(sys.executable, sys.version)"]]
      : ["Rscript", ["-e", "cat(R.home(), R.version.string)"]];
  try {
    // With the PATH a build has (modelEnvironment passes this process's on).
    return (await execFileAsync(file, args, { env: { PATH: process.env.PATH ?? "" } })).stdout;
  } catch {
    return "none";
  }
}

/**
 * The key of the environment `spec` makes: a hash of the runtime, the interpreter it starts
 * from, local-build.sh, the build script, and the dependency files at the top of the source.
 */
async function environmentKey(spec: EnvironmentSpec): Promise<string> {
  const hash = createHash("sha256");
  // Each part with its name and length, so that no two lists of parts hash alike.
  const part = (name: string, content: string | Buffer) => {
    hash.update(`${name}\0${Buffer.byteLength(content)}\0`);
    hash.update(content);
  };
  part("key format", "1");
  part("runtime", spec.runtime);
  part("interpreter", await interpreterOf(spec.runtime));
  part("local-build.sh", await readFile(DEFAULT_BUILD_SCRIPT));
  const script = await chosenBuildScript(spec);
  // A named script that is missing makes no key part: local-build.sh then fails, naming it.
  if (script !== undefined && (await isFile(join(spec.sourceDir, script)))) {
    part(`build script ${script}`, await readFile(join(spec.sourceDir, script)));
  }
  const entries = await readdir(spec.sourceDir, { withFileTypes: true });
  const dependencies = entries
    .filter((entry) => entry.isFile() && DEPENDENCY_FILE.test(entry.name))
    .map((entry) => entry.name)
    .filter((name) => !spec.leftOut(name))
    .sort();
  for (const name of dependencies) part(`file ${name}`, await readFile(join(spec.sourceDir, name)));
  return hash.digest("hex").slice(0, 16);
}

/** Copies a directory but what `leftOut` names; links are copied as links. */
export async function copyTree(from: string, to: string, leftOut: SourceFilter): Promise<void> {
  await cp(from, to, {
    recursive: true,
    verbatimSymlinks: true,
    filter: async (source) => {
      const path = relative(from, source).split(sep).join("/");
      if (path === "") return true;
      const info = await lstat(source);
      return !leftOut(info.isDirectory() ? `${path}/` : path);
    },
  });
}

/** Takes a lock file, waiting while another process holds it. */
async function lockWaiting(
  file: string,
  onWait: ((holder: number) => void) | undefined,
  signal: AbortSignal | undefined,
): Promise<() => void> {
  let told = false;
  for (;;) {
    signal?.throwIfAborted();
    try {
      return lockFile(file, (holder) => `${file} is held by process ${holder}`);
    } catch (error) {
      if (!(error instanceof LockHeld)) throw error;
      if (!told) onWait?.(error.pid);
      told = true;
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

/**
 * The environment of `spec` in `envsDir`: the one made before, or made now by local-build.sh (its
 * output in `<key>.log` beside it). Two runs that need the same one at once build it once: the
 * second waits for the first.
 */
export async function ensureEnvironment(
  spec: EnvironmentSpec,
  envsDir: string,
  options: EnsureOptions = {},
): Promise<Environment> {
  const key = await environmentKey(spec);
  const directory = join(envsDir, key);
  const log = join(envsDir, `${key}.log`);
  await mkdir(envsDir, { recursive: true, mode: 0o700 });
  const unlock = await lockWaiting(join(envsDir, `${key}.lock`), options.onWait, options.signal);
  try {
    if (!options.rebuild && (await LocalBuilder.completedImage(directory))) {
      return { key, directory, log, built: false };
    }
    // A build that failed or was interrupted is no environment (it has no build.json): start afresh.
    await removeTree(directory);
    const source = join(envsDir, `${key}.source`);
    await removeTree(source);
    await copyTree(spec.sourceDir, source, spec.leftOut);
    const builder = new LocalBuilder();
    const stop = () => void builder.stop();
    options.signal?.addEventListener("abort", stop, { once: true });
    try {
      builder.start({
        name: key,
        runtime: spec.runtime,
        sourceDir: source,
        outputDir: directory,
        ...(spec.buildScript === undefined ? {} : { buildScript: spec.buildScript }),
        ...(options.onLine ? { onLine: options.onLine } : {}),
      });
      const status = await builder.wait(key);
      await writeFile(log, builder.logs(key));
      if (status.phase !== "Succeeded") {
        throw new Error(`the environment did not build (its log: ${log}): ${status.message}`);
      }
    } finally {
      options.signal?.removeEventListener("abort", stop);
      await removeTree(source);
    }
    return { key, directory, log, built: true };
  } finally {
    unlock();
  }
}

export interface ScriptInvocation {
  file: string;
  args: string[];
  /** The script's whole environment. */
  env: Record<string, string>;
}

/**
 * How a script runs in the environment: with its interpreter (the virtualenv's python, or
 * Rscript with the build's library), the SDK importable, `variables` added, and `home` as HOME
 * (the build's own directory is read-only).
 */
export async function scriptInvocation(
  environment: Environment,
  runtime: "python3" | "r",
  script: string,
  args: string[],
  variables: Record<string, string>,
  home: string,
): Promise<ScriptInvocation> {
  const extra = { ...variables, HOME: home };
  if (runtime === "r") {
    return {
      file: "Rscript",
      args: ["--vanilla", script, ...args],
      env: buildEnvironment("r", extra, environment.directory),
    };
  }
  const build = JSON.parse(await readFile(join(environment.directory, "build.json"), "utf8")) as {
    python: string;
  };
  return {
    file: build.python,
    args: [script, ...args],
    env: buildEnvironment(
      "python3",
      // Unbuffered: the script's lines reach the terminal as it prints them, not at its end.
      // No bytecode: __pycache__ would count among the files the run left (and land in the SDK).
      { PYTHONPATH: PYTHON_SDK_DIR, PYTHONUNBUFFERED: "1", PYTHONDONTWRITEBYTECODE: "1", ...extra },
      environment.directory,
    ),
  };
}
