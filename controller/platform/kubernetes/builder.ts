// The Kubernetes platform's Builder: one Kaniko Job per ModelBuild. The Job's init container
// exports the source at the build's commit and writes the Dockerfile (`modelship
// build-context`); Kaniko builds and pushes, and writes the image digest to its termination
// message. Creating the Job is idempotent (its name is the build's), so a restarted controller
// never starts a second one.
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import type { Builder, BuildProgress } from "../ports.ts";
import { isConflict, isNotFound, type KubeClient } from "./client.ts";
import type { KubernetesSettings } from "./settings.ts";

const WORKSPACE = "/workspace";

interface Job {
  metadata: { name: string; creationTimestamp?: string };
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
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName(build),
      namespace,
      labels: {
        "app.kubernetes.io/managed-by": "modelship",
        "modelship.dev/model": build.spec.model,
        "modelship.dev/build": build.metadata.name,
      },
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
        metadata: { labels: { "modelship.dev/build": build.metadata.name } },
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

  async start(build: ModelBuild): Promise<void> {
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
      );
    } catch (error) {
      // Already there: a restarted controller, or a second pass. One Job per build, never two.
      if (!isConflict(error)) throw error;
    }
  }

  private async pods(build: ModelBuild): Promise<Pod[]> {
    const namespace = build.metadata.namespace ?? this.settings.namespace;
    const selector = encodeURIComponent(`job-name=${jobName(build)}`);
    const list = await this.client.request<{ items: Pod[] }>(
      "GET",
      `/api/v1/namespaces/${namespace}/pods?labelSelector=${selector}`,
    );
    return list.items;
  }

  async status(build: ModelBuild): Promise<BuildProgress | undefined> {
    let job: Job;
    try {
      job = await this.client.request<Job>("GET", `${this.jobsPath(build)}/${jobName(build)}`);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const progress = jobProgress(job, await this.pods(build), imageTag(build, this.settings));
    if (progress.phase === "Failed") {
      const tail = (await this.logs(build)).trimEnd().split("\n").slice(-20).join("\n");
      if (tail) progress.message = `${progress.message}\n${tail}`;
    }
    return progress;
  }

  async logs(build: ModelBuild): Promise<string> {
    const namespace = build.metadata.namespace ?? this.settings.namespace;
    const parts: string[] = [];
    for (const pod of await this.pods(build)) {
      for (const container of ["context", "kaniko"]) {
        try {
          const text = await this.client.request<string>(
            "GET",
            `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}/log?container=${container}`,
          );
          if (typeof text === "string" && text) parts.push(text);
        } catch {
          // No log yet (the pod has not started) or no more (the node is gone).
        }
      }
    }
    return parts.join("\n");
  }
}
