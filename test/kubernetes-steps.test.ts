// The Kubernetes platform's pure pieces, table-driven: the build Job, the Dockerfile, a Job's
// progress, a Deployment's rollout status, the workload objects and their drift, the guarded
// finalizer patch, what an apply sends, the Event object and the Lease rule.
// biome-ignore-all lint/suspicious/noExplicitAny: the Kubernetes objects under test are read field by field
import { describe, expect, it } from "vitest";
import type { ModelBuild, ModelRepository } from "../controller/api/types.generated.ts";
import type { RolloutSpec } from "../controller/core/ports.ts";
import { dockerfile } from "../controller/platform/kubernetes/build-context.ts";
import {
  buildJob,
  buildOfJob,
  gitSecret,
  imageTag,
  isOwnJob,
  jobName,
  jobProgress,
} from "../controller/platform/kubernetes/builder.ts";
import { eventObject } from "../controller/platform/kubernetes/events.ts";
import { mayAcquire } from "../controller/platform/kubernetes/leader.ts";
import {
  type DeploymentObject,
  driftOf,
  isOurs,
  rolloutStatusOf,
  workloadObjects,
} from "../controller/platform/kubernetes/runtime.ts";
import {
  DEFAULT_SETTINGS,
  watchedNamespacesFromEnv,
} from "../controller/platform/kubernetes/settings.ts";
import { appliedFields, finalizerPatch } from "../controller/platform/kubernetes/store.ts";

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
  const settings = {
    ...DEFAULT_SETTINGS,
    insecureRegistry: true,
    pushSecret: "push",
  };
  const job = buildJob(build(), repository, settings, true) as any;
  const pod = job.spec.template.spec;

  it("labels the Job and its pods as ours, for their Model, build and build's namespace", () => {
    const labels = {
      "app.kubernetes.io/managed-by": "modelship",
      "modelship.dev/model": "iris",
      "modelship.dev/build": "iris-3",
      "modelship.dev/build-namespace": "models",
    };
    expect(job.metadata.labels).toStrictEqual(labels);
    expect(job.spec.template.metadata.labels).toStrictEqual(labels);
  });

  it.each<[string, Record<string, string> | undefined, boolean]>([
    ["ours, for this build", job.metadata.labels, true],
    ["ours, for another build", { ...job.metadata.labels, "modelship.dev/build": "iris-4" }, false],
    [
      "ours, for a namesake build of another namespace",
      { ...job.metadata.labels, "modelship.dev/build-namespace": "team-b" },
      false,
    ],
    ["someone else's, with our build label", { "modelship.dev/build": "iris-3" }, false],
    ["no labels", undefined, false],
  ])("isOwnJob: %s → %s", (_, labels, expected) => {
    expect(
      isOwnJob({ metadata: { name: "build-iris-3", ...(labels ? { labels } : {}) } }, build()),
    ).toBe(expected);
  });

  it("is named after the build and its namespace, runs in the build namespace, and is bounded in time", () => {
    expect(job.metadata).toMatchObject({
      name: jobName(build()),
      namespace: DEFAULT_SETTINGS.buildNamespace,
    });
    // An owner reference cannot point to another namespace: labels tie it to its build.
    expect(job.metadata.ownerReferences).toBeUndefined();
    expect(buildOfJob(job)).toStrictEqual({ namespace: "models", name: "iris-3" });
    expect(job.spec).toMatchObject({
      backoffLimit: 1,
      activeDeadlineSeconds: 3600,
      ttlSecondsAfterFinished: 86_400,
    });
  });

  it("makes the context in an init container, with the token from the build's own Secret", () => {
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
      ["MODELSHIP_GIT_TOKEN", `${jobName(build())}-git`],
      ["MODELSHIP_GIT_USERNAME", `${jobName(build())}-git`],
    ]);
    // Without credentials, no Secret is read at all.
    const open = buildJob(build(), repository, settings, false) as any;
    expect(open.spec.template.spec.initContainers[0].env).toBeUndefined();
  });

  it("copies the credentials into a Secret of the build's, in the build namespace", () => {
    const secret = gitSecret(build(), { token: "t0ken", username: "bot" }, settings) as any;
    expect(secret.metadata).toStrictEqual({
      name: `${jobName(build())}-git`,
      namespace: DEFAULT_SETTINGS.buildNamespace,
      labels: job.metadata.labels,
    });
    expect(secret.data).toStrictEqual({
      token: Buffer.from("t0ken").toString("base64"),
      username: Buffer.from("bot").toString("base64"),
    });
  });

  it("passes Pod Security: no service-account token, restricted init container, baseline executor, resources", () => {
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext.seccompProfile).toStrictEqual({ type: "RuntimeDefault" });
    const [init] = pod.initContainers;
    expect(init.securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    const [kaniko] = pod.containers;
    expect(kaniko.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(kaniko.securityContext.capabilities.drop).toStrictEqual(["ALL"]);
    // Within what `baseline` allows: no NET_RAW, no SYS_ADMIN, nothing privileged.
    expect(kaniko.securityContext.capabilities.add).not.toContain("NET_RAW");
    expect(kaniko.securityContext.privileged).toBeUndefined();
    for (const container of [init, kaniko]) {
      expect(container.resources).toStrictEqual({
        requests: { cpu: "1", memory: "2Gi" },
        limits: { memory: "2Gi" },
      });
    }
  });

  it("runs Kaniko with the destination, the digest file and the push secret", () => {
    const [kaniko] = pod.containers;
    expect(kaniko.image).toBe(DEFAULT_SETTINGS.executorImage);
    expect(kaniko.args).toEqual([
      "--context=dir:///workspace",
      "--dockerfile=/workspace/Dockerfile",
      `--destination=${DEFAULT_SETTINGS.registry}/models/iris:build-3`,
      "--digest-file=/dev/termination-log",
      "--snapshot-mode=redo",
      "--insecure",
      "--skip-tls-verify",
    ]);
    expect(kaniko.volumeMounts).toContainEqual({
      name: "push-secret",
      mountPath: "/kaniko/.docker",
    });
    const cached = buildJob(
      build(),
      repository,
      { ...settings, buildCacheRepo: "registry.example.com/cache" },
      false,
    ) as any;
    expect(cached.spec.template.spec.containers[0].args).toEqual(
      expect.arrayContaining(["--cache=true", "--cache-repo=registry.example.com/cache"]),
    );
  });

  it.each([
    ["a short name", "iris-3", expect.stringMatching(/^build-models-iris-3-[0-9a-f]{8}$/)],
    [
      "a name too long for a label",
      `${"m".repeat(70)}-12`,
      expect.stringMatching(new RegExp(`^build-models-${"m".repeat(41)}-[0-9a-f]{8}$`)),
    ],
  ])("%s → %s", (_, name, expected) => {
    const named = build();
    named.metadata.name = name;
    expect(jobName(named)).toEqual(expected);
    expect(jobName(named).length).toBeLessThanOrEqual(63);
  });

  it.each([
    ["two long names", ["models", `${"m".repeat(70)}-12`], ["models", `${"m".repeat(70)}-13`]],
    ["names that read the same across namespaces", ["a-b", "c-1"], ["a", "b-c-1"]],
  ])("never gives %s one Job", (_, [namespaceA, nameA], [namespaceB, nameB]) => {
    const named = (namespace = "", name = "") => jobName({ metadata: { namespace, name } });
    expect(named(namespaceA, nameA)).not.toBe(named(namespaceB, nameB));
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
        image: `${DEFAULT_SETTINGS.registry}/models/iris@${DIGEST}`,
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
    deployment: { namespace: "models", name: "iris" },
    model: "iris",
    deploymentId: 7,
    build: built,
    replicas: 3,
    env: { B: "2", A: "1" },
    timeoutSeconds: 30,
    resources: { cpu: "500m", memory: "2Gi", gpu: 1 },
    ownerUid: "uid-9",
  };
  const { deployment, service, secret, networkPolicy } = workloadObjects(spec, "s3cret", {
    gatewayNamespace: "modelship",
  }) as any;
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
    expect(container.env.map((variable: any) => variable.name)).toEqual([
      "POD_NAME",
      "MODELSHIP_GATEWAY_SECRET",
      "A",
      "B",
    ]);
    // What it serves, which the agent tells the gateway with the metrics a prediction tracks.
    expect(container.args).toEqual([
      ...["--replica-id", "$(POD_NAME)", "--serves", "iris/3/iris/7", "--timeout-seconds", "30"],
    ]);
  });

  it("gives the replica the deployment's maxRequestBytes as its body limit, when it sets one", () => {
    const limited = workloadObjects({ ...spec, maxRequestBytes: 20_971_520 }, "s3cret", {
      gatewayNamespace: "modelship",
    }) as any;
    expect(limited.deployment.spec.template.spec.containers[0].args).toEqual([
      ...["--replica-id", "$(POD_NAME)", "--serves", "iris/3/iris/7", "--timeout-seconds", "30"],
      ...["--body-limit-bytes", "20971520"],
    ]);
  });

  it("passes Pod Security `restricted`: a non-root user, no privileges, no token, a read-only root", () => {
    const pod = deployment.spec.template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      readOnlyRootFilesystem: true,
    });
    expect(container.volumeMounts).toEqual([{ name: "tmp", mountPath: "/tmp" }]);
    expect(pod.imagePullSecrets).toBeUndefined();
    const pulled = workloadObjects(spec, "s3cret", {
      gatewayNamespace: "modelship",
      imagePullSecrets: ["registry-a", "registry-b"],
    }) as any;
    expect(pulled.deployment.spec.template.spec.imagePullSecrets).toEqual([
      { name: "registry-a" },
      { name: "registry-b" },
    ]);
  });

  it("puts a Service in front of the replicas", () => {
    expect(service.spec.selector).toEqual({ "modelship.dev/deployment": "iris" });
    expect(service.spec.ports).toEqual([{ name: "http", port: 80, targetPort: "http" }]);
  });

  it("gives the agent the deployment's gateway secret from a Secret, never in the pod spec", () => {
    expect(secret.metadata.name).toBe("modelship-replica-iris");
    expect(Buffer.from(secret.data["gateway-secret"], "base64").toString()).toBe("s3cret");
    expect(container.env[1]).toEqual({
      name: "MODELSHIP_GATEWAY_SECRET",
      valueFrom: { secretKeyRef: { name: "modelship-replica-iris", key: "gateway-secret" } },
    });
    expect(JSON.stringify(deployment)).not.toContain("s3cret");
  });

  it("lets only the gateway's pods, in the installation's namespace, reach the replicas' port", () => {
    expect(networkPolicy.spec).toEqual({
      podSelector: { matchLabels: { "modelship.dev/deployment": "iris" } },
      policyTypes: ["Ingress"],
      ingress: [
        {
          // Both in one peer: the gateway's pods there, not every pod there nor lookalikes here.
          from: [
            {
              namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "modelship" } },
              podSelector: { matchLabels: { "app.kubernetes.io/name": "modelship-gateway" } },
            },
          ],
          ports: [{ protocol: "TCP", port: 8080 }],
        },
      ],
    });
  });

  it.each([
    ["the Deployment", deployment],
    ["the Service", service],
    ["the Secret", secret],
    ["the NetworkPolicy", networkPolicy],
    ["the pod template", deployment.spec.template],
  ])("labels %s as ours, for its ModelDeployment and Model", (_, object) => {
    expect(object.metadata.labels).toMatchObject({
      "app.kubernetes.io/managed-by": "modelship",
      "modelship.dev/deployment": "iris",
      "modelship.dev/model": "iris",
    });
  });

  it.each([
    ["the Deployment", deployment, "iris"],
    ["the Service", service, "iris"],
    ["the Secret", secret, "modelship-replica-iris"],
    ["the NetworkPolicy", networkPolicy, "iris"],
  ])("makes the ModelDeployment the controller of %s", (_, object, name) => {
    expect(object.metadata).toMatchObject({ name, namespace: "models" });
    expect(object.metadata.ownerReferences).toEqual([
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelDeployment",
        name: "iris",
        uid: "uid-9",
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
  });

  it("names no owner without the ModelDeployment's uid", () => {
    const { ownerUid: _, ...unowned } = spec;
    const alone = workloadObjects(unowned, "s3cret", { gatewayNamespace: "modelship" }) as any;
    expect(alone.deployment.metadata.ownerReferences).toBeUndefined();
    expect(alone.secret.metadata.ownerReferences).toBeUndefined();
  });
});

describe("isOurs (what stop() may delete)", () => {
  const object = (labels?: Record<string, string>) => ({
    metadata: { name: "iris", ...(labels ? { labels } : {}) },
  });
  it.each<[string, Record<string, string> | undefined, boolean]>([
    [
      "our labels, this deployment",
      { "app.kubernetes.io/managed-by": "modelship", "modelship.dev/deployment": "iris" },
      true,
    ],
    [
      "our labels, another deployment",
      { "app.kubernetes.io/managed-by": "modelship", "modelship.dev/deployment": "other" },
      false,
    ],
    ["the deployment label without managed-by", { "modelship.dev/deployment": "iris" }, false],
    [
      "part of the installation, not made by us",
      { "app.kubernetes.io/part-of": "modelship" },
      false,
    ],
    ["no labels", undefined, false],
  ])("%s → %s", (_, labels, expected) => {
    expect(isOurs(object(labels), "iris")).toBe(expected);
  });
});

describe("driftOf (the live workload against the last apply)", () => {
  const built = build();
  built.status = { phase: "Succeeded", image: "registry/iris@sha256:1" };
  const wanted = workloadObjects(
    {
      deployment: { namespace: "models", name: "iris" },
      model: "iris",
      deploymentId: 7,
      build: built,
      replicas: 3,
      env: {},
      timeoutSeconds: 30,
    },
    "s3cret",
    { gatewayNamespace: "modelship" },
  );
  const { deployment, service, secret, networkPolicy } = wanted;
  const guarded = { service, secret, networkPolicy };
  /** The wanted Deployment as the API server returns it, changed by `edit`. */
  const live = (edit: (object: any) => void = () => {}): DeploymentObject => {
    const object = structuredClone(deployment) as any;
    // Fields the server defaults or adds are not drift.
    object.metadata.uid = "u";
    object.metadata.resourceVersion = "12";
    object.spec.revisionHistoryLimit = 10;
    object.spec.template.spec.containers[0].imagePullPolicy = "IfNotPresent";
    object.status = { observedGeneration: 1, replicas: 3 };
    edit(object);
    return object;
  };
  it.each<[string, Record<string, object | undefined>, string | undefined]>([
    ["as applied, with server defaults", { deployment: live(), ...guarded }, undefined],
    ["the Deployment deleted", { ...guarded }, "Deployment iris is missing"],
    [
      "the Service deleted",
      { deployment: live(), ...guarded, service: undefined },
      "Service iris is missing",
    ],
    [
      "the Secret deleted",
      { deployment: live(), ...guarded, secret: undefined },
      "Secret modelship-replica-iris is missing",
    ],
    [
      "the Secret edited",
      { deployment: live(), ...guarded, secret: { ...secret, data: { "gateway-secret": "eA==" } } },
      "Secret modelship-replica-iris holds another gateway secret",
    ],
    [
      "the NetworkPolicy deleted",
      { deployment: live(), ...guarded, networkPolicy: undefined },
      "NetworkPolicy iris is missing",
    ],
    [
      "the NetworkPolicy opened to every pod",
      {
        deployment: live(),
        ...guarded,
        networkPolicy: { ...networkPolicy, spec: { ...networkPolicy.spec, ingress: [{}] } },
      },
      "NetworkPolicy iris lets in other callers than the gateway",
    ],
    [
      "scaled by hand",
      { deployment: live((object) => (object.spec.replicas = 1)), ...guarded },
      "Deployment iris has 1 replicas, not 3",
    ],
    [
      "another rollout's template",
      {
        deployment: live(
          (object) =>
            (object.spec.template.metadata.annotations["modelship.dev/deployment-id"] = "6"),
        ),
        ...guarded,
      },
      "Deployment iris runs deployment id 6, not 7",
    ],
    [
      "another image",
      {
        deployment: live((object) => (object.spec.template.spec.containers[0].image = "x:1")),
        ...guarded,
      },
      "Deployment iris runs image x:1, not registry/iris@sha256:1",
    ],
  ])("%s → %s", (_, workload, expected) => {
    expect(driftOf(workload as never, wanted)).toBe(expected);
  });
});

describe("finalizerPatch (a JSON Patch guarded by the list it changes)", () => {
  const object = (finalizers?: string[]) => ({
    metadata: { name: "repo", resourceVersion: "41", ...(finalizers ? { finalizers } : {}) },
  });
  const F = "modelship.dev/finalizer";
  it.each<[string, string[] | undefined, boolean, object[] | undefined]>([
    [
      "the first finalizer: no list to test, so the resourceVersion",
      undefined,
      true,
      [
        { op: "test", path: "/metadata/resourceVersion", value: "41" },
        { op: "add", path: "/metadata/finalizers", value: [F] },
      ],
    ],
    [
      "one more finalizer",
      ["other"],
      true,
      [
        { op: "test", path: "/metadata/finalizers", value: ["other"] },
        { op: "replace", path: "/metadata/finalizers", value: ["other", F] },
      ],
    ],
    [
      "removing ours, keeping another's",
      [F, "other"],
      false,
      [
        { op: "test", path: "/metadata/finalizers", value: [F, "other"] },
        { op: "replace", path: "/metadata/finalizers", value: ["other"] },
      ],
    ],
    ["already there", [F], true, undefined],
    ["already gone", ["other"], false, undefined],
    ["no list, nothing to remove", undefined, false, undefined],
  ])("%s", (_, finalizers, present, expected) => {
    expect(finalizerPatch(object(finalizers), F, present)).toEqual(expected);
  });
});

describe("appliedFields (what a server-side apply sends)", () => {
  it("sends spec, labels, annotations and owner references; never status, finalizers or server fields", () => {
    const stored = {
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelRepository",
      metadata: {
        name: "repo",
        labels: { a: "1" },
        annotations: { b: "2" },
        ownerReferences: [{ apiVersion: "v1", kind: "X", name: "x", uid: "u" }],
        uid: "uid-1",
        resourceVersion: "9",
        generation: 3,
        finalizers: ["modelship.dev/finalizer"],
      },
      spec: { url: "https://git.example.com/m.git" },
      status: { observedGeneration: 3 },
    } as unknown as ModelRepository;
    expect(appliedFields(stored, "models")).toEqual({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelRepository",
      metadata: {
        name: "repo",
        namespace: "models",
        labels: { a: "1" },
        annotations: { b: "2" },
        ownerReferences: [{ apiVersion: "v1", kind: "X", name: "x", uid: "u" }],
      },
      spec: { url: "https://git.example.com/m.git" },
    });
  });
});

describe("eventObject (a core/v1 Event)", () => {
  it("names the object, the reason and the reporter, labelled as ours", () => {
    const at = new Date("2026-11-24T12:00:00.123Z");
    expect(
      eventObject(
        {
          type: "Warning",
          reason: "BuildFailed",
          message: "x".repeat(2000),
          involved: { kind: "ModelBuild", namespace: "models", name: "iris-3", uid: "uid-3" },
          at,
        },
        "iris-3.1",
        "host-1",
      ),
    ).toEqual({
      apiVersion: "v1",
      kind: "Event",
      metadata: {
        name: "iris-3.1",
        namespace: "models",
        labels: { "app.kubernetes.io/managed-by": "modelship" },
      },
      involvedObject: {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelBuild",
        namespace: "models",
        name: "iris-3",
        uid: "uid-3",
      },
      type: "Warning",
      reason: "BuildFailed",
      message: "x".repeat(1024),
      source: { component: "modelship-controller", host: "host-1" },
      reportingComponent: "modelship-controller",
      reportingInstance: "host-1",
      firstTimestamp: "2026-11-24T12:00:00Z",
      lastTimestamp: "2026-11-24T12:00:00Z",
      count: 1,
    });
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
    const lines = text.split("\n");
    expect(lines).toEqual(
      expect.arrayContaining([
        "FROM base:1",
        "COPY --chown=10001:10001 src /model/src",
        run,
        'ENTRYPOINT ["modelship", "replica", "--dir", "/model/src", "--file", "predict.py", "--function", "predict", "--runtime", "python3", "--port", "8080", "--host", "0.0.0.0"]',
      ]),
    );
    // The script runs as the model's user in a copy it owns; then the code is root's and
    // read-only, and the image runs as the model's user.
    const at = (line: string) => lines.indexOf(line);
    expect(at("USER 10001")).toBeLessThan(at(run));
    expect(at(run)).toBeLessThan(at("RUN chown -R 0:0 /model && chmod -R a+rX,go-w /model"));
    expect(lines.filter((line) => line.startsWith("USER ")).at(-1)).toBe("USER 10001");
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

describe("watchedNamespacesFromEnv (MODELSHIP_WATCH_NAMESPACES)", () => {
  it.each<[string, string | undefined, unknown]>([
    ["unset: the installation's own (undefined)", undefined, undefined],
    ["empty: the same", " ", undefined],
    ["a list", "team-a, team-b,", ["team-a", "team-b"]],
    ["every namespace", "*", "all"],
  ])("%s", (_, text, expected) => {
    expect(
      watchedNamespacesFromEnv(text === undefined ? {} : { MODELSHIP_WATCH_NAMESPACES: text }),
    ).toEqual(expected);
  });

  it("names a value that is not a namespace", () => {
    expect(() => watchedNamespacesFromEnv({ MODELSHIP_WATCH_NAMESPACES: "team-a,Team_B" })).toThrow(
      'MODELSHIP_WATCH_NAMESPACES: "Team_B" is not a namespace name',
    );
  });
});
