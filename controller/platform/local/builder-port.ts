// The local platform's Builder port: a ModelBuild's source exported from git at its commit into
// the builds directory, built there by LocalBuilder (local-build.sh) as the model user when there
// is one, and removed with its build.
import { existsSync } from "node:fs";
import { chmod, chown, lchown, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ModelBuild } from "../../api/types.generated.ts";
import type { Builder, BuildProgress, CallOptions } from "../../core/ports.ts";
import type { GitSource } from "../../source/git.ts";
import { LocalBuilder } from "./builder.ts";
import type { ModelUser } from "./sandbox.ts";

const NAMESPACE = "default";

/**
 * Builds in the builds directory, from a source tree exported from git at the build's commit,
 * as the model user when there is one (see sandbox.ts): its files are the model's, apart from
 * the state directory.
 */
export class LocalBuilderPort implements Builder {
  private readonly builder: LocalBuilder;
  private readonly buildsDir: string;
  private readonly user: ModelUser | undefined;
  private readonly sourceOf: (build: ModelBuild) => GitSource;
  private readonly log: (line: string) => void;

  constructor(options: {
    buildsDir: string;
    user: ModelUser | undefined;
    deadlineMs: number | undefined;
    sourceOf: (build: ModelBuild) => GitSource;
    log: (line: string) => void;
  }) {
    this.log = options.log;
    this.buildsDir = options.buildsDir;
    this.user = options.user;
    this.sourceOf = options.sourceOf;
    this.builder = new LocalBuilder(
      options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs },
    );
  }

  private nameOf(build: ModelBuild): string {
    return `${build.metadata.namespace ?? NAMESPACE}/${build.metadata.name}`;
  }

  /** Environments shared by builds with the same build script and requirements (docs/builds.md). */
  get envCacheDir(): string {
    // A name no namespace can have, beside the namespaces' directories.
    return join(this.buildsDir, ".envs");
  }

  outputDir(build: ModelBuild): string {
    return join(this.buildsDir, build.metadata.namespace ?? NAMESPACE, build.metadata.name);
  }

  async start(build: ModelBuild, _options?: CallOptions): Promise<void> {
    const name = this.nameOf(build);
    if (this.builder.status(name)) return;
    const outputDir = this.outputDir(build);
    // What a build interrupted by a restart left behind is not a build: start afresh.
    await removeTree(outputDir);
    const sourceDir = join(
      this.buildsDir,
      ".work",
      `${build.metadata.namespace ?? NAMESPACE}-${build.metadata.name}`,
    );
    await removeTree(sourceDir);
    await this.sourceOf(build).exportTree(
      build.spec.commit,
      build.spec.sourcePath,
      sourceDir,
      build.spec.exclude ?? [],
    );
    // The build runs as the model user: it reads its source and makes its output directory,
    // and its environment in the cache when it is the first of its dependency set.
    await mkdir(dirname(outputDir), { recursive: true });
    await mkdir(this.envCacheDir, { recursive: true });
    if (this.user) {
      await chownTree(sourceDir, this.user);
      await chown(dirname(outputDir), this.user.uid, this.user.gid);
      await chown(this.envCacheDir, this.user.uid, this.user.gid);
    }
    this.builder.start({
      name,
      runtime: build.spec.runtime,
      sourceDir,
      outputDir,
      ...(build.spec.buildScript ? { buildScript: build.spec.buildScript } : {}),
      envCacheDir: this.envCacheDir,
      ...(this.user ? { user: this.user } : {}),
      // The console follows the build as it goes, each line marked with its model and build.
      onLine: (line) => this.log(`${build.spec.model} build ${build.spec.number} | ${line}`),
    });
  }

  async status(build: ModelBuild, _options?: CallOptions): Promise<BuildProgress | undefined> {
    const running = this.builder.status(this.nameOf(build));
    if (running) return running;
    const image = await LocalBuilder.completedImage(this.outputDir(build));
    return image ? { phase: "Succeeded", image } : undefined;
  }

  /** The build's last status, once the build started here has ended. */
  wait(build: ModelBuild): Promise<BuildProgress> {
    return this.builder.wait(this.nameOf(build));
  }

  async logs(build: ModelBuild, _options?: CallOptions): Promise<string> {
    return this.builder.logs(this.nameOf(build));
  }

  /**
   * Ends the build if it still runs (killing its process tree) and frees what it left: its
   * directory (a venv is tens of MB) and its log.
   */
  async remove(build: ModelBuild, _options?: CallOptions): Promise<void> {
    await this.builder.cancel(this.nameOf(build));
    await removeTree(this.outputDir(build));
  }

  stop(): Promise<void> {
    return this.builder.stop();
  }
}

/** Gives a directory and everything in it to `user` (the export was made as this process). */
async function chownTree(path: string, user: ModelUser): Promise<void> {
  await lchown(path, user.uid, user.gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(child, user);
    else await lchown(child, user.uid, user.gid);
  }
}

/** Removes a directory a build made read-only. */
export async function removeTree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  await makeWritable(path);
  await rm(path, { recursive: true, force: true });
}

async function makeWritable(path: string): Promise<void> {
  await chmod(path, 0o755).catch(() => {});
  for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) await makeWritable(join(path, entry.name));
  }
}
