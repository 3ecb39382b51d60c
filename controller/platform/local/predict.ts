// `modelship plan --predict` on this machine: builds the base's and the head's build of each
// changed Model as `modelship up` builds them (kept by build key, so a build made once — or a
// revert's — is not made again), starts one real replica of each, sends every example through
// both, and compares the answers (reconcile/prediction-diff.ts).
import { join, posix } from "node:path";
import type { Model, ModelBuild, ModelDeployment } from "../../api/types.generated.ts";
import { ANNOTATION_SOURCE_PATH } from "../../core/labels.ts";
import type { Resource } from "../../core/ports.ts";
import { newModelBuild } from "../../reconcile/model.ts";
import {
  identityAt,
  type LoadedChange,
  type LoadedCommit,
  type Plan,
} from "../../reconcile/plan.ts";
import {
  comparePredictions,
  DEFAULT_TOLERANCE,
  type ModelPredictions,
  type SideRun,
  skippedPredictions,
  unchangedPredictions,
} from "../../reconcile/prediction-diff.ts";
import { ReplicaAgent } from "../../replica/agent.ts";
import {
  type Example,
  examplesOf,
  MAX_EXAMPLES,
  MAX_EXAMPLES_FILE_BYTES,
  parseExamplesFile,
} from "../../source/examples.ts";
import type { GitSource, Revision } from "../../source/git.ts";
import { LocalBuilderPort } from "./builder-port.ts";
import { buildDirectory, buildEnvironment } from "./runtime.ts";
import type { ModelUser } from "./sandbox.ts";

export interface PredictOptions {
  source: GitSource;
  /** Where builds are kept, by build key, between runs. */
  buildsDir: string;
  /** Who model code runs as (undefined: this process's own user). */
  user: ModelUser | undefined;
  /** Progress lines for people (the builds' output among them). */
  log(line: string): void;
  tolerance?: number;
  /** Seconds one example may run (the deployment's timeoutSeconds otherwise, else 30). */
  timeoutSeconds?: number;
  /** A build running longer fails. */
  buildDeadlineMs?: number;
  /** How long a replica may take to load its function before its side fails (default 2 minutes). */
  loadTimeoutMs?: number;
}

/** How long a replica may take to load its function (scikit-learn alone takes seconds). */
const DEFAULT_LOAD_TIMEOUT_MS = 120_000;

/**
 * Waits for the replica to be ready, at most `ms`: a worker that dies while loading is restarted
 * again and again, and would otherwise be waited for forever.
 */
async function readyWithin(agent: ReplicaAgent, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`not ready after ${Math.round(ms / 1000)} s: ${agent.notReadyReason}`)),
      ms,
    );
  });
  const ready = agent.whenReady();
  // Past the deadline the agent is stopped, and its waiter rejects with no one listening.
  ready.catch(() => {});
  try {
    await Promise.race([ready, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The side of a change one Model is run at: its commit and desired objects there. */
interface Side {
  revision: Revision;
  objects: Resource[];
}

function find(objects: Resource[], kind: string, namespace: string, name: string) {
  return objects.find(
    (object) =>
      object.kind === kind &&
      (object.metadata.namespace ?? "default") === namespace &&
      object.metadata.name === name,
  );
}

/** The first deployment of a model at a side: its env and timeout are the model's there. */
function deploymentOf(objects: Resource[], model: Model): ModelDeployment | undefined {
  return objects.find(
    (object) =>
      object.kind === "ModelDeployment" &&
      (object as ModelDeployment).spec.model === model.metadata.name &&
      object.metadata.namespace === model.metadata.namespace,
  ) as ModelDeployment | undefined;
}

/** A Model's examples at a commit: its spec's, then its examples file's. */
async function examplesAt(source: GitSource, commit: string, model: Model): Promise<Example[]> {
  const file = model.spec.examplesFile;
  if (!file) return examplesOf(model.spec);
  const sourcePath = model.metadata.annotations?.[ANNOTATION_SOURCE_PATH] ?? ".";
  const path = posix.join(sourcePath, file);
  const text = await source.tree(commit).readText(path);
  // Validation has refused a missing, oversized or malformed file at the head.
  if (text === undefined || Buffer.byteLength(text) > MAX_EXAMPLES_FILE_BYTES) {
    return examplesOf(model.spec);
  }
  return examplesOf(model.spec, parseExamplesFile(text, path).examples);
}

class PredictionRunner {
  private readonly options: PredictOptions;
  private readonly builder: LocalBuilderPort;

  constructor(options: PredictOptions) {
    this.options = options;
    this.builder = new LocalBuilderPort({
      buildsDir: options.buildsDir,
      user: options.user,
      deadlineMs: options.buildDeadlineMs,
      log: options.log,
      sourceOf: () => options.source,
    });
  }

  /** Builds (or finds) a Model's build at a side and answers the examples with one replica. */
  async run(
    side: Side,
    model: Model,
    examples: Example[],
    number: number | undefined,
  ): Promise<SideRun> {
    const identity = await identityAt(
      { source: this.options.source, baseImage: (runtime) => `local/${runtime}` },
      side.revision.commit,
      model,
    );
    const sourcePath = model.metadata.annotations?.[ANNOTATION_SOURCE_PATH] ?? ".";
    const build: ModelBuild = newModelBuild(
      model,
      number ?? 0,
      identity.buildKey,
      await this.options.source.treeId(side.revision.commit, sourcePath),
      side.revision.commit,
      sourcePath,
      identity.exclude,
    );
    // Named by its key: the same code and settings are built once, whichever commit asks.
    build.metadata.name = `${model.metadata.name}-${identity.buildKey.slice(0, 16)}`;
    const image = await this.buildOf(build);
    const known = number === undefined ? {} : { build: number };
    if ("failure" in image) return { ...known, failure: image.failure, answers: [] };

    const deployment = deploymentOf(side.objects, model);
    const directory = buildDirectory(image.image);
    const agent = new ReplicaAgent({
      replicaId: `plan-${build.metadata.name}`,
      runtime: model.spec.runtime,
      file: model.spec.file,
      functionName: model.spec.function,
      directory: join(directory, "src"),
      env: buildEnvironment(model.spec.runtime, deployment?.spec.env, directory),
      ...(this.options.user ? { uid: this.options.user.uid, gid: this.options.user.gid } : {}),
      timeoutSeconds: this.options.timeoutSeconds ?? deployment?.spec.timeoutSeconds ?? 30,
    });
    agent.start();
    const loadMs = this.options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
    try {
      await readyWithin(agent, loadMs);
    } catch (error) {
      await agent.stop();
      return { ...known, failure: `does not load: ${(error as Error).message}`, answers: [] };
    }
    const answers: SideRun["answers"] = [];
    try {
      for (const example of examples.slice(0, MAX_EXAMPLES)) {
        const started = performance.now();
        const answer = await agent.predict(JSON.stringify(example.input ?? null));
        const ms = performance.now() - started;
        const body = JSON.parse(answer.body) as {
          response?: unknown;
          error?: string;
          message?: string;
        };
        answers.push(
          answer.status === 200
            ? { ok: true, value: body.response, ms }
            : { ok: false, error: `${body.error}: ${body.message}`, ms },
        );
        // A timeout or a crash restarts the worker: the next example waits for it, so that
        // one bad example does not fail the rest as not ready.
        if (answer.status !== 200) {
          const recovered = await readyWithin(agent, loadMs).then(
            () => true,
            () => false,
          );
          if (!recovered) break;
        }
      }
    } finally {
      await agent.stop();
    }
    return { ...known, answers };
  }

  /** A finished build's image, made now if it is not kept yet. */
  private async buildOf(build: ModelBuild): Promise<{ image: string } | { failure: string }> {
    const kept = await this.builder.status(build);
    if (kept?.phase === "Succeeded" && kept.image) return { image: kept.image };
    this.options.log(`building ${build.spec.model} at ${build.spec.commit.slice(0, 7)}`);
    await this.builder.start(build);
    const status = await this.builder.wait(build);
    if (status.phase === "Succeeded" && status.image) return { image: status.image };
    return { failure: `failed to build: ${status.message ?? "no message"}` };
  }

  stop(): Promise<void> {
    return this.builder.stop();
  }
}

/**
 * The prediction diff of a plan: for each Model at the head, its examples through the base's
 * build and the head's, with one replica each; a Model whose build does not change is reported
 * unchanged, with nothing built or run. An invalid commit has no objects to run.
 */
export async function predictPlan(
  plan: Plan,
  change: LoadedChange,
  predict: PredictOptions,
): Promise<ModelPredictions[]> {
  const sideOf = (commit: LoadedCommit): Side => ({
    revision: commit.revision,
    objects: commit.objects.desired ?? [],
  });
  const base = sideOf(change.base);
  const head = sideOf(change.head);
  const tolerance = predict.tolerance ?? DEFAULT_TOLERANCE;
  const runner = new PredictionRunner(predict);
  const reports: ModelPredictions[] = [];
  try {
    for (const modelPlan of plan.models) {
      if (modelPlan.action === "removed") continue;
      const headModel = find(head.objects, "Model", modelPlan.namespace, modelPlan.name) as
        | Model
        | undefined;
      if (!headModel) continue;
      const examples = await examplesAt(predict.source, head.revision.commit, headModel);
      const build = modelPlan.build;
      if (examples.length === 0) {
        reports.push(
          skippedPredictions(
            modelPlan.name,
            0,
            "no examples (spec.example, spec.examples or spec.examplesFile)",
          ),
        );
        continue;
      }
      if (build?.action === "unchanged") {
        reports.push(unchangedPredictions(modelPlan.name, examples.length));
        continue;
      }
      if (build === undefined || build.action === "unknown") {
        const why = build?.action === "unknown" ? build.reason : "the head's build is not known";
        reports.push(skippedPredictions(modelPlan.name, examples.length, why));
        continue;
      }
      const baseModel = find(base.objects, "Model", modelPlan.namespace, modelPlan.name) as
        | Model
        | undefined;
      predict.log(`predicting ${modelPlan.name}: ${examples.length} examples`);
      const headRun = await runner.run(head, headModel, examples, build.number);
      const baseRun = baseModel
        ? await runner.run(base, baseModel, examples, modelPlan.baseBuild)
        : undefined;
      reports.push(comparePredictions(modelPlan.name, examples, baseRun, headRun, tolerance));
    }
  } finally {
    await runner.stop();
  }
  return reports;
}
