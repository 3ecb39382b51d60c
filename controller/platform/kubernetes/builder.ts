// The Kubernetes platform's Builder: one Kaniko Job per ModelBuild. The Job's init container
// exports the source at the build's commit and writes the Dockerfile (`modelship
// build-context`); Kaniko builds and pushes, and writes the image digest to its termination
// message. Creating the Job is idempotent (its name is the build's), so a restarted controller
// never starts a second one.
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import {
  isManaged,
  LABEL_BUILD,
  LABEL_MODEL,
  MANAGED_SELECTOR,
  ownedLabels,
} from "../../core/labels.ts";
import type { Builder, BuildProgress, CallOptions } from "../../core/ports.ts";
import { isConflict, isNotFound, type KubeClient } from "./client.ts";
import type { KubernetesSettings } from "./settings.ts";

const WORKSPACE = "/workspace";

interface Job {
  metadata: {
    name: string;
    uid?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
  };
  status?: {
    startTime?: string;
    completionTime?: string;
    succeeded?: number;
    failed?: number;
    conditions?: {
      type: string;
      status: string;
      reason?: string;
      message?: string;
      lastTransitionTime?: string;
    }[];
  };
}

interface Pod {
  metadata: { name: string };
  status?: {
    containerStatuses?: {
      name: string;
      state?: { terminated?: { message?: string; exitCode?: number } };
    }[];
  };
}

export function jobName(build: ModelBuild): string {
  // Job names become pod label values: at most 63 characters.
  return `build-${build.metadata.name}`.slice(0, 63).replace(/-+$/, "");
}

/** Where a build's image goes, by tag; the digest pins it once Kaniko reports one. */
export function imageTag(build: ModelBuild, settings: KubernetesSettings): string {
  const namespace = build.metadata.namespace ?? settings.namespace;
  return `${settings.registry}/${namespace}-${build.spec.model}:build-${build.spec.number}`;
}

/** The Job for a build: an init container that makes the context, then Kaniko. */
export function buildJob(
  build: ModelBuild & { metadata: { uid?: string } },
  repository: ModelRepository,
  settings: KubernetesSettings,
): Record<string, unknown> {
  const namespace = build.metadata.namespace ?? settings.namespace;
  const tokenSecret = repository.spec.secretRef?.name;
  const destination = imageTag(build, settings);
  const labels = ownedLabels({
    [LABEL_MODEL]: build.spec.model,
    [LABEL_BUILD]: build.metadata.name,
  });
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName(build),
      namespace,
      labels,
      ...(build.metadata.uid
        ? {
            ownerReferences: [
              {
                apiVersion: "modelship.dev/v1alpha1",
                kind: "ModelBuild",
                name: build.metadata.name,
                uid: build.metadata.uid,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          }
        : {}),
    },
    spec: {
      backoffLimit: 1,
      activeDeadlineSeconds: settings.buildDeadlineSeconds,
      ttlSecondsAfterFinished: settings.buildTtlSeconds,
      template: {
        // The build pod carries the same labels: ours, its model's and its build's.
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          initContainers: [
            {
              name: "context",
              image: settings.modelshipImage,
              args: [
                "build-context",
                "--repo",
                repository.spec.url,
                "--commit",
                build.spec.commit,
                "--path",
                build.spec.sourcePath,
                "--base-image",
                settings.baseImages[build.spec.runtime],
                "--build-json",
                JSON.stringify({ metadata: { name: build.metadata.name }, spec: build.spec }),
                "--out",
                WORKSPACE,
              ],
              // The Secret's `token`, or `username` and `password` (ModelRepository.spec.secretRef).
              ...(tokenSecret
                ? {
                    env: (
                      [
                        ["MODELSHIP_GIT_TOKEN", "token"],
                        ["MODELSHIP_GIT_USERNAME", "username"],
                        ["MODELSHIP_GIT_PASSWORD", "password"],
                      ] as const
                    ).map(([name, key]) => ({
                      name,
                      valueFrom: { secretKeyRef: { name: tokenSecret, key, optional: true } },
                    })),
                  }
                : {}),
              volumeMounts: [{ name: "workspace", mountPath: WORKSPACE }],
            },
          ],
          containers: [
            {
              name: "kaniko",
              image: settings.executorImage,
              args: [
                `--context=dir://${WORKSPACE}`,
                `--dockerfile=${WORKSPACE}/Dockerfile`,
                `--destination=${destination}`,
                "--digest-file=/dev/termination-log",
                "--snapshot-mode=redo",
                ...(settings.insecureRegistry ? ["--insecure", "--skip-tls-verify"] : []),
              ],
              volumeMounts: [
                { name: "workspace", mountPath: WORKSPACE },
                ...(settings.pushSecret
                  ? [{ name: "push-secret", mountPath: "/kaniko/.docker" }]
                  : []),
              ],
            },
          ],
          volumes: [
            { name: "workspace", emptyDir: {} },
            ...(settings.pushSecret
              ? [
                  {
                    name: "push-secret",
                    secret: {
                      secretName: settings.pushSecret,
                      items: [{ key: ".dockerconfigjson", path: "config.json" }],
                    },
                  },
                ]
              : []),
          ],
        },
      },
    },
  };
}

/** The Job was made by modelship for this build. */
export function isOwnJob(job: Pick<Job, "metadata">, build: ModelBuild): boolean {
  const labels = job.metadata.labels;
  return isManaged(labels) && labels?.[LABEL_BUILD] === build.metadata.name;
}

/** The build's progress from its Job (and the digest from Kaniko's termination message). */
export function jobProgress(job: Job, pods: Pod[], tag: string): BuildProgress {
  const started = job.status?.startTime ?? job.metadata.creationTimestamp;
  const failedCondition = job.status?.conditions?.find(
    (condition) => condition.type === "Failed" && condition.status === "True",
  );
  if ((job.status?.succeeded ?? 0) > 0) {
    const digest = pods
      .flatMap((pod) => pod.status?.containerStatuses ?? [])
      .filter((container) => container.name === "kaniko")
      .map((container) => container.state?.terminated?.message?.trim() ?? "")
      .find((message) => /^sha256:[0-9a-f]{64}$/.test(message));
    return {
      phase: "Succeeded",
      ...(started ? { startedAt: started } : {}),
      ...(job.status?.completionTime ? { completedAt: job.status.completionTime } : {}),
      // Pinned by digest when Kaniko reported one; by tag otherwise (a registry that gives none).
      image: digest ? `${tag.replace(/:[^:/]+$/, "")}@${digest}` : tag,
    };
  }
  if (failedCondition) {
    return {
      phase: "Failed",
      ...(started ? { startedAt: started } : {}),
      ...(failedCondition.lastTransitionTime
        ? { completedAt: failedCondition.lastTransitionTime }
        : {}),
      message:
        `build Job ${job.metadata.name} failed (${failedCondition.reason ?? "Failed"}): ${failedCondition.message ?? ""}`.trim(),
    };
  }
  return { phase: "Building", ...(started ? { startedAt: started } : {}) };
}

export class KanikoBuilder implements Builder {
  private readonly client: KubeClient;
  private readonly settings: KubernetesSettings;
  private readonly repositoryOf: (build: ModelBuild) => ModelRepository | undefined;

  constructor(
    client: KubeClient,
    settings: KubernetesSettings,
    repositoryOf: (build: ModelBuild) => ModelRepository | undefined,
  ) {
    this.client = client;
    this.settings = settings;
    this.repositoryOf = repositoryOf;
  }

  private jobsPath(build: ModelBuild): string {
    return `/apis/batch/v1/namespaces/${build.metadata.namespace ?? this.settings.namespace}/jobs`;
  }

  async start(build: ModelBuild, options: CallOptions = {}): Promise<void> {
    const repository = this.repositoryOf(build);
    if (!repository) {
      throw new Error(
        `build ${build.metadata.name}: ModelRepository "${build.spec.repository}" does not exist`,
      );
    }
    try {
      await this.client.request(
        "POST",
        this.jobsPath(build),
        buildJob(build, repository, this.settings),
        undefined,
        options,
      );
    } catch (error) {
      // Already there: a restarted controller, or a second pass. One Job per build, never two.
      if (!isConflict(error)) throw error;
    }
  }

  private async pods(build: ModelBuild, options: CallOptions): Promise<Pod[]> {
    const namespace = build.metadata.namespace ?? this.settings.namespace;
    const selector = encodeURIComponent(`job-name=${jobName(build)},${MANAGED_SELECTOR}`);
    const list = await this.client.request<{ items: Pod[] }>(
      "GET",
      `/api/v1/namespaces/${namespace}/pods?labelSelector=${selector}`,
      undefined,
      undefined,
      options,
    );
    return list.items;
  }

  async status(build: ModelBuild, options: CallOptions = {}): Promise<BuildProgress | undefined> {
    let job: Job;
    try {
      job = await this.client.request<Job>(
        "GET",
        `${this.jobsPath(build)}/${jobName(build)}`,
        undefined,
        undefined,
        options,
      );
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    if (!isOwnJob(job, build)) {
      // Someone else's Job has the name this build's would have: never taken for the build.
      return {
        phase: "Failed",
        message: `a Job named ${jobName(build)} exists and was not made by modelship for build ${build.metadata.name}; delete it and rebuild`,
      };
    }
    const pods = await this.pods(build, options);
    const progress = jobProgress(job, pods, imageTag(build, this.settings));
    if (progress.phase === "Failed") {
      const tail = (await this.logs(build, options)).trimEnd().split("\n").slice(-20).join("\n");
      if (tail) progress.message = `${progress.message}\n${tail}`;
    }
    return progress;
  }

  async logs(build: ModelBuild, options: CallOptions = {}): Promise<string> {
    const namespace = build.metadata.namespace ?? this.settings.namespace;
    const parts: string[] = [];
    for (const pod of await this.pods(build, options)) {
      for (const container of ["context", "kaniko"]) {
        try {
          const text = await this.client.request<string>(
            "GET",
            `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}/log?container=${container}`,
            undefined,
            undefined,
            options,
          );
          if (typeof text === "string" && text) parts.push(text);
        } catch {
          // No log yet (the pod has not started) or no more (the node is gone).
        }
      }
    }
    return parts.join("\n");
  }

  /**
   * Deletes the build's Job, if it is still there, with its pods. The image stays in the
   * registry: deleting a tag or a manifest needs the registry's own API and rights
   * (docs/kubernetes.md).
   */
  async remove(build: ModelBuild, options: CallOptions = {}): Promise<void> {
    const path = `${this.jobsPath(build)}/${jobName(build)}`;
    try {
      const job = await this.client.request<Job>("GET", path, undefined, undefined, options);
      // Only the Job this build made: ours, for this build, and that very object.
      if (!isOwnJob(job, build)) return;
      await this.client.request(
        "DELETE",
        path,
        {
          kind: "DeleteOptions",
          apiVersion: "v1",
          propagationPolicy: "Background",
          preconditions: { uid: job.metadata.uid },
        },
        undefined,
        options,
      );
    } catch (error) {
      // Gone already (its TTL), or replaced since: nothing of this build's to remove.
      if (!isNotFound(error) && !isConflict(error)) throw error;
    }
  }
}
