// The Kubernetes platform's pure pieces, table-driven: the build Job, the Dockerfile, a Job's
// progress, a Deployment's rollout status, the workload objects and the Lease rule.
// biome-ignore-all lint/suspicious/noExplicitAny: the Kubernetes objects under test are read field by field
import { describe, expect, it } from "vitest";
import type { ModelBuild, ModelRepository } from "../controller/api/types.generated.ts";
import { dockerfile } from "../controller/platform/kubernetes/build-context.ts";
import {
  buildJob,
  imageTag,
  jobName,
  jobProgress,
} from "../controller/platform/kubernetes/builder.ts";
import { mayAcquire } from "../controller/platform/kubernetes/leader.ts";
import {
  type DeploymentObject,
  rolloutStatusOf,
  workloadObjects,
} from "../controller/platform/kubernetes/runtime.ts";
import { DEFAULT_SETTINGS } from "../controller/platform/kubernetes/settings.ts";
import type { RolloutSpec } from "../controller/platform/ports.ts";

const COMMIT = "a".repeat(40);
const DIGEST = `sha256:${"b".repeat(64)}`;

function build(
  overrides: Partial<ModelBuild["spec"]> = {},
): ModelBuild & { metadata: { uid: string } } {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelBuild",
    metadata: { name: "iris-3", namespace: "models", uid: "uid-1" },
    spec: {
      model: "iris",
      number: 3,
      commit: COMMIT,
      tree: "c".repeat(40),
      buildKey: "d".repeat(64),
      repository: "repo",
      sourcePath: "models/iris",
      runtime: "python3",
      file: "predict.py",
      function: "predict",
      ...overrides,
    },
  };
}

const repository: ModelRepository = {
  apiVersion: "modelship.dev/v1alpha1",
  kind: "ModelRepository",
  metadata: { name: "repo", namespace: "models" },
  spec: { url: "https://git.example.com/models.git", secretRef: { name: "git-token" } },
};

describe("the build Job", () => {
  const job = buildJob(build(), repository, {
    ...DEFAULT_SETTINGS,
    insecureRegistry: true,
    pushSecret: "push",
  }) as any;
  const pod = job.spec.template.spec;

  it("is named after the build, owned by it, and bounded in time", () => {
    expect(job.metadata).toMatchObject({ name: "build-iris-3", namespace: "models" });
    expect(job.metadata.ownerReferences[0]).toMatchObject({
      kind: "ModelBuild",
      name: "iris-3",
      uid: "uid-1",
      controller: true,
    });
    expect(job.spec).toMatchObject({
      backoffLimit: 1,
      activeDeadlineSeconds: 3600,
      ttlSecondsAfterFinished: 86_400,
    });
  });

  it("makes the context in an init container, with the token from the repository's Secret", () => {
    const [init] = pod.initContainers;
    expect(init.image).toBe(DEFAULT_SETTINGS.modelshipImage);
    expect(init.args.slice(0, 7)).toEqual([
      "build-context",
      "--repo",
      repository.spec.url,
      "--commit",
      COMMIT,
      "--path",
      "models/iris",
    ]);
    expect(init.args).toContain(DEFAULT_SETTINGS.baseImages.python3);
    expect(
      init.env.map((variable: any) => [variable.name, variable.valueFrom.secretKeyRef.name]),
    ).toEqual([
      ["MODELSHIP_GIT_TOKEN", "git-token"],
      ["MODELSHIP_GIT_USERNAME", "git-token"],
      ["MODELSHIP_GIT_PASSWORD", "git-token"],
    ]);
  });

  it("runs Kaniko with the destination, the digest file and the push secret", () => {
    const [kaniko] = pod.containers;
    expect(kaniko.image).toBe(DEFAULT_SETTINGS.executorImage);
    expect(kaniko.args).toEqual([
      "--context=dir:///workspace",
      "--dockerfile=/workspace/Dockerfile",
      `--destination=${DEFAULT_SETTINGS.registry}/models-iris:build-3`,
      "--digest-file=/dev/termination-log",
      "--snapshot-mode=redo",
      "--insecure",
      "--skip-tls-verify",
    ]);
    expect(kaniko.volumeMounts).toContainEqual({
      name: "push-secret",
      mountPath: "/kaniko/.docker",
    });
  });

  it.each([
    ["a short name", "iris-3", "build-iris-3"],
    ["a name too long for a label", `${"m".repeat(70)}-12`, `build-${"m".repeat(57)}`],
  ])("%s → %s", (_, name, expected) => {
    const named = build();
    named.metadata.name = name;
    expect(jobName(named)).toBe(expected);
    expect(jobName(named).length).toBeLessThanOrEqual(63);
  });
});

describe("jobProgress", () => {
  const tag = imageTag(build(), DEFAULT_SETTINGS);
  const kanikoPod = (message?: string) => ({
    metadata: { name: "p" },
    status: {
      containerStatuses: [
        { name: "kaniko", state: { terminated: { exitCode: 0, ...(message ? { message } : {}) } } },
      ],
    },
  });
  it.each<[string, object, object[], object]>([
    ["running", { status: { startTime: "T1" } }, [], { phase: "Building", startedAt: "T1" }],
    [
      "succeeded with a digest",
      { status: { startTime: "T1", completionTime: "T2", succeeded: 1 } },
      [kanikoPod(`${DIGEST}\n`)],
      {
        phase: "Succeeded",
        startedAt: "T1",
        completedAt: "T2",
        image: `${DEFAULT_SETTINGS.registry}/models-iris@${DIGEST}`,
      },
    ],
    [
      "succeeded with no digest (kwok, some registries): the tag",
      { status: { succeeded: 1 } },
      [kanikoPod()],
      { phase: "Succeeded", image: tag },
    ],
    [
      "failed",
      {
        status: {
          failed: 2,
          conditions: [
            {
              type: "Failed",
              status: "True",
              reason: "BackoffLimitExceeded",
              message: "Job has reached the specified backoff limit",
              lastTransitionTime: "T3",
            },
          ],
        },
      },
      [],
      {
        phase: "Failed",
        completedAt: "T3",
        message:
          "build Job build-iris-3 failed (BackoffLimitExceeded): Job has reached the specified backoff limit",
      },
    ],
  ])("%s", (_, job, pods, expected) => {
    expect(jobProgress({ metadata: { name: "build-iris-3" }, ...job }, pods as never, tag)).toEqual(
      expected,
    );
  });
});

describe("rolloutStatusOf (as kubectl rollout status reads it)", () => {
  const deployment = (
    status: DeploymentObject["status"],
    id = "7",
    generation = 2,
  ): DeploymentObject => ({
    metadata: { name: "iris", generation },
    spec: {
      replicas: 3,
      template: { metadata: { annotations: { "modelship.dev/deployment-id": id } } },
    },
    status,
  });
  it.each<
    [string, DeploymentObject, { complete: boolean; readyReplicas: number; failure?: boolean }]
  >([
    [
      "not observed yet",
      deployment({ observedGeneration: 1, replicas: 3, updatedReplicas: 3, availableReplicas: 3 }),
      { complete: false, readyReplicas: 0 },
    ],
    [
      "half way",
      deployment({ observedGeneration: 2, replicas: 4, updatedReplicas: 2, availableReplicas: 3 }),
      { complete: false, readyReplicas: 2 },
    ],
    [
      "old replicas still terminating",
      deployment({ observedGeneration: 2, replicas: 4, updatedReplicas: 3, availableReplicas: 3 }),
      { complete: false, readyReplicas: 3 },
    ],
    [
      "done",
      deployment({ observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 3 }),
      { complete: true, readyReplicas: 3 },
    ],
    [
      "another rollout's template",
      deployment(
        { observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 3 },
        "6",
      ),
      { complete: false, readyReplicas: 0 },
    ],
    [
      "stuck",
      deployment({
        observedGeneration: 2,
        replicas: 4,
        updatedReplicas: 1,
        availableReplicas: 3,
        conditions: [
          {
            type: "Progressing",
            status: "False",
            reason: "ProgressDeadlineExceeded",
            message: "ReplicaSet has timed out progressing.",
          },
        ],
      }),
      { complete: false, readyReplicas: 1, failure: true },
    ],
  ])("%s", (_, object, expected) => {
    const status = rolloutStatusOf(object, 7);
    expect({
      complete: status.complete,
      readyReplicas: status.readyReplicas,
      ...(status.failure ? { failure: true } : {}),
    }).toEqual(expected);
  });
});

describe("workloadObjects", () => {
  const built = build();
  built.status = { phase: "Succeeded", image: `registry/iris@${DIGEST}` };
  const spec: RolloutSpec = {
    key: "models/iris",
    model: "iris",
    deploymentId: 7,
    build: built,
    replicas: 3,
    env: { B: "2", A: "1" },
    timeoutSeconds: 30,
    resources: { cpu: "500m", memory: "2Gi", gpu: 1 },
    owner: { name: "iris", uid: "uid-9" },
  };
  const [deployment, service] = workloadObjects(spec, "models") as any[];
  const container = deployment.spec.template.spec.containers[0];

  it("rolls out without lowering capacity, and marks the rollout in the template", () => {
    expect(deployment.spec.strategy).toEqual({
      type: "RollingUpdate",
      rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
    });
    expect(deployment.spec.template.metadata.annotations).toEqual({
      "modelship.dev/deployment-id": "7",
    });
    expect(deployment.metadata.ownerReferences[0]).toMatchObject({
      kind: "ModelDeployment",
      uid: "uid-9",
    });
  });

  it("runs the build's image, ready on the agent's /readyz, with resources and env", () => {
    expect(container.image).toBe(`registry/iris@${DIGEST}`);
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" });
    expect(container.resources).toEqual({
      requests: { cpu: "500m", memory: "2Gi" },
      limits: { memory: "2Gi", "nvidia.com/gpu": "1" },
    });
    expect(container.env.map((variable: any) => variable.name)).toEqual(["POD_NAME", "A", "B"]);
    expect(container.args).toEqual(["--replica-id", "$(POD_NAME)", "--timeout-seconds", "30"]);
  });

  it("puts a Service in front of the replicas", () => {
    expect(service.spec.selector).toEqual({ "modelship.dev/deployment": "iris" });
    expect(service.spec.ports).toEqual([{ name: "http", port: 80, targetPort: "http" }]);
  });
});

describe("dockerfile", () => {
  it.each([
    [
      "the default script",
      undefined,
      "RUN if [ -f build.sh ]; then bash build.sh; elif [ -f cdsw-build.sh ]; then bash cdsw-build.sh; fi",
    ],
    ["a named script", "scripts/train.sh", 'RUN bash "scripts/train.sh"'],
  ])("builds on the runtime's base image with %s", (_, buildScript, run) => {
    const text = dockerfile(build(buildScript ? { buildScript } : {}), "base:1");
    expect(text.split("\n")).toEqual(
      expect.arrayContaining([
        "FROM base:1",
        "COPY src /model/src",
        run,
        'ENTRYPOINT ["modelship", "replica", "--dir", "/model/src", "--file", "predict.py", "--function", "predict", "--runtime", "python3", "--port", "8080", "--host", "0.0.0.0"]',
      ]),
    );
  });
});

describe("mayAcquire (the Lease rule)", () => {
  const now = new Date("2026-11-24T12:00:00Z");
  it.each<[string, object, boolean]>([
    ["nobody holds it", {}, true],
    [
      "we hold it",
      { holderIdentity: "me", renewTime: "2026-11-24T11:59:59Z", leaseDurationSeconds: 15 },
      true,
    ],
    [
      "another holds it, renewed 5 s ago",
      { holderIdentity: "other", renewTime: "2026-11-24T11:59:55Z", leaseDurationSeconds: 15 },
      false,
    ],
    [
      "another held it, expired",
      { holderIdentity: "other", renewTime: "2026-11-24T11:59:40Z", leaseDurationSeconds: 15 },
      true,
    ],
  ])("%s → %s", (_, lease, expected) => {
    expect(mayAcquire(lease, "me", now)).toBe(expected);
  });
});
