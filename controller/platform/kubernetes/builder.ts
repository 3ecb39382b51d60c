// The Kubernetes platform's Builder: one Kaniko Job per ModelBuild. The Job's init container
// exports the source at the build's commit and writes the Dockerfile (`modelship
// build-context`); Kaniko builds and pushes, and writes the image digest to its termination
// message. Creating the Job is idempotent (its name is the build's), so a restarted controller
// never starts a second one.
//
// Jobs run in a namespace of their own (settings.buildNamespace), never beside the keys
// Secret: the executor is root in its container, so that namespace is at the Pod Security
// `baseline` level while the models' stays `restricted`. A build pod gets no service-account
// token. A repository's git credentials reach it through a Secret made for that build alone,
// owned by its Job and deleted once the build ends. An owner reference cannot cross
// namespaces, so a Job is tied to its ModelBuild by labels: ours, the build's and its
// namespace's. A watch on those Jobs wakes the build's reconciler (no polling).

import { createHash } from "node:crypto";
import type { ModelBuild, ModelRepository } from "../../api/types.generated.ts";
import type { NamespacedName } from "../../core/keys.ts";
import {
  isManaged,
  LABEL_BUILD,
  LABEL_MODEL,
  MANAGED_SELECTOR,
  ownedLabels,
} from "../../core/labels.ts";
import type { Builder, BuildProgress, CallOptions } from "../../core/ports.ts";
import type { GitCredentials } from "../../source/git-sources.ts";
import { deleteExactly, isConflict, isNotFound, type KubeClient } from "./client.ts";
import { Informer, type InformerTimings } from "./informer.ts";
import { podSecurity, resourcesOf } from "./pod-security.ts";
import type { KubernetesSettings } from "./settings.ts";

const WORKSPACE = "/workspace";
/** On Jobs, build pods and their git Secrets: the namespace of the ModelBuild they make. */
export const LABEL_BUILD_NAMESPACE = "modelship.dev/build-namespace";
/** The uid the init container runs as: the modelship image's user. */
const MODELSHIP_UID = 10001;
/**
 * What the executor may do as root: the container runtime's default capabilities (all that the
 * `baseline` level allows) without NET_RAW, MKNOD and AUDIT_WRITE, which a build never needs.
 */
const EXECUTOR_CAPABILITIES = [
  "CHOWN",
  "DAC_OVERRIDE",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "SETFCAP",
  "NET_BIND_SERVICE",
  "SYS_CHROOT",
];

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

/**
 * The build's Job: `build-<namespace>-<name>-<hash>`, as builds of every namespace share one
 * build namespace. The hash (of namespace/name) keeps two builds apart whose names would read
 * the same (namespace `a-b`, build `c-1`; namespace `a`, build `b-c-1`). Job names become pod
 * label values, at most 63 characters: a longer readable part is cut.
 */
export function jobName(build: Pick<ModelBuild, "metadata">): string {
  const namespace = build.metadata.namespace ?? "default";
  const hash = createHash("sha256")
    .update(`${namespace}/${build.metadata.name}`)
    .digest("hex")
    .slice(0, 8);
  const readable = `build-${namespace}-${build.metadata.name}`.slice(0, 63 - 9).replace(/-+$/, "");
  return `${readable}-${hash}`;
}

/** The Secret that carries a build's git credentials to its init container. */
export function gitSecretName(build: Pick<ModelBuild, "metadata">): string {
  return `${jobName(build)}-git`;
}

/** The labels of everything a build makes: ours, its model's, its build's and namespace's. */
function buildLabels(build: ModelBuild): Record<string, string> {
  return ownedLabels({
    [LABEL_MODEL]: build.spec.model,
    [LABEL_BUILD]: build.metadata.name,
    [LABEL_BUILD_NAMESPACE]: build.metadata.namespace ?? "default",
  });
}

/** The Secret for a build's git credentials (username and token), in the build namespace. */
export function gitSecret(
  build: ModelBuild,
  credentials: GitCredentials,
  settings: KubernetesSettings,
): Record<string, unknown> {
  const data: Record<string, string> = {};
  if (credentials.token) data.token = Buffer.from(credentials.token).toString("base64");
  if (credentials.username) data.username = Buffer.from(credentials.username).toString("base64");
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: gitSecretName(build),
      namespace: settings.buildNamespace,
      labels: buildLabels(build),
    },
    type: "Opaque",
    data,
  };
}

/**
 * Where a build's image goes, by tag (`<registry>/<namespace>/<model>:build-<n>`: a path
 * segment per name, so no two namespaces' models share a repository); the digest pins it
 * once Kaniko reports one.
 */
export function imageTag(build: ModelBuild, settings: KubernetesSettings): string {
  const namespace = build.metadata.namespace ?? settings.namespace;
  return `${settings.registry}/${namespace}/${build.spec.model}:build-${build.spec.number}`;
}

/**
 * The Job for a build: an init container that makes the context, then Kaniko. `withGitSecret`:
 * the repository has credentials, which the init container reads from gitSecret().
 */
export function buildJob(
  build: ModelBuild,
  repository: ModelRepository,
  settings: KubernetesSettings,
  withGitSecret: boolean,
): Record<string, unknown> {
  const destination = imageTag(build, settings);
  const labels = buildLabels(build);
  const resources = resourcesOf(settings.buildResources);
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: jobName(build), namespace: settings.buildNamespace, labels },
    spec: {
      backoffLimit: 1,
      activeDeadlineSeconds: settings.buildDeadlineSeconds,
      ttlSecondsAfterFinished: settings.buildTtlSeconds,
      template: {
        // The build pod carries the same labels: ours, its model's and its build's.
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          // The build talks to git and the registry, never to the API server.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { seccompProfile: { type: "RuntimeDefault" } },
          initContainers: [
            {
              name: "context",
              image: settings.modelshipImage,
              // `restricted` for this one: it only reads git and writes the workspace.
              securityContext: podSecurity.restrictedContainer(MODELSHIP_UID),
              resources,
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
              // The repository's credentials, copied for this build (gitSecret()).
              ...(withGitSecret
                ? {
                    env: (
                      [
                        ["MODELSHIP_GIT_TOKEN", "token"],
                        ["MODELSHIP_GIT_USERNAME", "username"],
                      ] as const
                    ).map(([name, key]) => ({
                      name,
                      valueFrom: {
                        secretKeyRef: { name: gitSecretName(build), key, optional: true },
                      },
                    })),
                  }
                : {}),
              volumeMounts: [
                { name: "workspace", mountPath: WORKSPACE },
                { name: "tmp", mountPath: "/tmp" },
              ],
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
                ...(settings.buildCacheRepo
                  ? ["--cache=true", `--cache-repo=${settings.buildCacheRepo}`]
                  : []),
                ...(settings.insecureRegistry ? ["--insecure", "--skip-tls-verify"] : []),
              ],
              // Kaniko unpacks the base image and runs the build as root inside its container:
              // `baseline`, not `restricted` (docs/kubernetes.md#builds).
              securityContext: {
                runAsUser: 0,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ["ALL"], add: EXECUTOR_CAPABILITIES },
              },
              resources,
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
            { name: "tmp", emptyDir: {} },
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

/** The Job (or git Secret) was made by modelship for this build, of this namespace. */
export function isOwnJob(job: Pick<Job, "metadata">, build: ModelBuild): boolean {
  const labels = job.metadata.labels;
  return (
    isManaged(labels) &&
    labels?.[LABEL_BUILD] === build.metadata.name &&
    labels?.[LABEL_BUILD_NAMESPACE] === (build.metadata.namespace ?? "default")
  );
}

/** The ModelBuild a Job of ours makes, from its labels; undefined for any other Job. */
export function buildOfJob(job: Pick<Job, "metadata">): NamespacedName | undefined {
  const labels = job.metadata.labels;
  const name = labels?.[LABEL_BUILD];
  const namespace = labels?.[LABEL_BUILD_NAMESPACE];
  return isManaged(labels) && name && namespace ? { namespace, name } : undefined;
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

export interface KanikoBuilderOptions {
  /** The ModelRepository a build comes from. */
  repositoryOf(build: ModelBuild): ModelRepository | undefined;
  /** The repository's git credentials, read now (a rotated token is used at once). */
  credentialsOf(repository: ModelRepository, options: CallOptions): Promise<GitCredentials>;
  /** Hears of every change to a build's Job: its reconciler runs then, instead of polling. */
  onChange?(build: NamespacedName): void;
  log?: (line: string) => void;
  timings?: Partial<InformerTimings>;
}

export class KanikoBuilder implements Builder {
  private readonly client: KubeClient;
  private readonly settings: KubernetesSettings;
  private readonly options: KanikoBuilderOptions;
  private readonly jobs: Informer<Job & { metadata: { namespace?: string } }>;

  constructor(client: KubeClient, settings: KubernetesSettings, options: KanikoBuilderOptions) {
    this.client = client;
    this.settings = settings;
    this.options = options;
    this.jobs = new Informer({
      client,
      path: `/apis/batch/v1/namespaces/${settings.buildNamespace}/jobs`,
      resource: `jobs in ${settings.buildNamespace}`,
      labelSelector: MANAGED_SELECTOR,
      ...(options.log ? { log: options.log } : {}),
      ...(options.timings ? { timings: options.timings } : {}),
    });
    this.jobs.onChange(({ object }) => {
      const build = buildOfJob(object);
      if (build) options.onChange?.(build);
    });
  }

  /** Starts the watch on build Jobs. */
  async startWatching(): Promise<void> {
    await this.jobs.start();
  }

  async stopWatching(): Promise<void> {
    await this.jobs.stop();
  }

  private get jobsPath(): string {
    return `/apis/batch/v1/namespaces/${this.settings.buildNamespace}/jobs`;
  }

  private get secretsPath(): string {
    return `/api/v1/namespaces/${this.settings.buildNamespace}/secrets`;
  }

  async start(build: ModelBuild, options: CallOptions = {}): Promise<void> {
    const repository = this.options.repositoryOf(build);
    if (!repository) {
      throw new Error(
        `build ${build.metadata.name}: ModelRepository "${build.spec.repository}" does not exist`,
      );
    }
    const credentials = repository.spec.secretRef
      ? await this.options.credentialsOf(repository, options)
      : {};
    const withGitSecret = Boolean(credentials.token);
    // The Secret first, so that the init container finds it when it starts.
    if (withGitSecret) await this.writeGitSecret(build, credentials, options);
    let job: Job;
    try {
      job = await this.client.request<Job>(
        "POST",
        this.jobsPath,
        buildJob(build, repository, this.settings, withGitSecret),
        undefined,
        options,
      );
    } catch (error) {
      // Already there: a restarted controller, or a second pass. One Job per build, never two.
      if (!isConflict(error)) {
        // No Job will read the credentials written for it: they go again, best effort (the
        // next attempt writes them anew).
        if (withGitSecret) await this.removeGitSecret(build, options).catch(() => {});
        throw error;
      }
      job = await this.getJob(build, options);
      if (!isOwnJob(job, build)) {
        // Not this build's Job (status() says so): the credentials written for it go again.
        if (withGitSecret) await this.removeGitSecret(build, options);
        return;
      }
    }
    // Owned by its Job, the Secret goes with it (its TTL, or a removal) at the latest.
    if (withGitSecret && job.metadata.uid) {
      await this.client.request(
        "PATCH",
        `${this.secretsPath}/${gitSecretName(build)}`,
        {
          metadata: {
            ownerReferences: [
              {
                apiVersion: "batch/v1",
                kind: "Job",
                name: job.metadata.name,
                uid: job.metadata.uid,
              },
            ],
          },
        },
        "application/merge-patch+json",
        options,
      );
    }
  }

  private getJob(build: ModelBuild, options: CallOptions): Promise<Job> {
    return this.client.request<Job>(
      "GET",
      `${this.jobsPath}/${jobName(build)}`,
      undefined,
      undefined,
      options,
    );
  }

  /** Creates the build's git Secret, or brings the one it made up to date. */
  private async writeGitSecret(
    build: ModelBuild,
    credentials: GitCredentials,
    options: CallOptions,
  ): Promise<void> {
    const secret = gitSecret(build, credentials, this.settings);
    try {
      await this.client.request("POST", this.secretsPath, secret, undefined, options);
    } catch (error) {
      if (!isConflict(error)) throw error;
      const path = `${this.secretsPath}/${gitSecretName(build)}`;
      const existing = await this.client.request<Job>("GET", path, undefined, undefined, options);
      // A namesake someone else made is never written to, nor read from.
      if (!isOwnJob(existing, build)) {
        throw new Error(
          `a Secret named ${gitSecretName(build)} exists in ${this.settings.buildNamespace} and was not made by modelship for build ${build.metadata.name}`,
        );
      }
      await this.client.request(
        "PATCH",
        path,
        { data: secret.data },
        "application/merge-patch+json",
        options,
      );
    }
  }

  /** Deletes the build's git Secret if it made one: once the build has ended, none is needed. */
  private async removeGitSecret(build: ModelBuild, options: CallOptions): Promise<void> {
    const path = `${this.secretsPath}/${gitSecretName(build)}`;
    try {
      const secret = await this.client.request<Job>("GET", path, undefined, undefined, options);
      if (!isOwnJob(secret, build)) return;
      await deleteExactly(this.client, path, secret.metadata.uid, options);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  private async pods(build: ModelBuild, options: CallOptions): Promise<Pod[]> {
    const selector = encodeURIComponent(`job-name=${jobName(build)},${MANAGED_SELECTOR}`);
    const list = await this.client.request<{ items: Pod[] }>(
      "GET",
      `/api/v1/namespaces/${this.settings.buildNamespace}/pods?labelSelector=${selector}`,
      undefined,
      undefined,
      options,
    );
    return list.items;
  }

  async status(build: ModelBuild, options: CallOptions = {}): Promise<BuildProgress | undefined> {
    let job: Job;
    try {
      job = await this.getJob(build, options);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    if (!isOwnJob(job, build)) {
      // Someone else's Job has the name this build's would have: never taken for the build.
      return {
        phase: "Failed",
        message: `a Job named ${jobName(build)} exists in ${this.settings.buildNamespace} and was not made by modelship for build ${build.metadata.name}; delete it and rebuild`,
      };
    }
    const pods = await this.pods(build, options);
    const progress = jobProgress(job, pods, imageTag(build, this.settings));
    if (progress.phase !== "Building") await this.removeGitSecret(build, options);
    if (progress.phase === "Failed") {
      const tail = (await this.logs(build, options)).trimEnd().split("\n").slice(-20).join("\n");
      if (tail) progress.message = `${progress.message}\n${tail}`;
    }
    return progress;
  }

  async logs(build: ModelBuild, options: CallOptions = {}): Promise<string> {
    const parts: string[] = [];
    for (const pod of await this.pods(build, options)) {
      for (const container of ["context", "kaniko"]) {
        try {
          const text = await this.client.request<string>(
            "GET",
            `/api/v1/namespaces/${this.settings.buildNamespace}/pods/${pod.metadata.name}/log?container=${container}`,
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
   * Deletes the build's Job, if it is still there, with its pods and its git Secret. The image
   * stays in the registry: deleting a tag or a manifest needs the registry's own API and
   * rights (docs/kubernetes.md).
   */
  async remove(build: ModelBuild, options: CallOptions = {}): Promise<void> {
    const path = `${this.jobsPath}/${jobName(build)}`;
    try {
      const job = await this.client.request<Job>("GET", path, undefined, undefined, options);
      // Only the Job this build made: ours, for this build, and that very object.
      if (isOwnJob(job, build)) await deleteExactly(this.client, path, job.metadata.uid, options);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    await this.removeGitSecret(build, options);
  }
}
