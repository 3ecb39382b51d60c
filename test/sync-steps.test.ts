// Table tests of the GitOps sync's pure steps: interval, author, desired objects, pruning.
import { describe, expect, it } from "vitest";
import type { Kind } from "../controller/api/schemas.ts";
import type { Model, ModelRepository } from "../controller/api/types.generated.ts";
import type { Resource } from "../controller/platform/ports.ts";
import type { Revision } from "../controller/source/git.ts";
import {
  authorOf,
  desiredObjects,
  objectsToPrune,
  syncIntervalMs,
} from "../controller/source/sync.ts";
import type { DeclaredObject } from "../controller/source/validate.ts";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

function repository(url: string, interval?: string): ModelRepository {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelRepository",
    metadata: { name: "models" },
    spec: { url, ...(interval === undefined ? {} : { interval }) },
  };
}

function revision(authorEmail = "ada@example.com"): Revision {
  return {
    commit: COMMIT,
    authorName: "Ada Lovelace",
    authorEmail,
    message: "train v2",
    time: "2026-03-01T12:00:00Z",
  };
}

describe("syncIntervalMs", () => {
  it.each<[string, string, string | undefined, number]>([
    ["default for a local path", "/home/ada/models", undefined, 5_000],
    ["default for a relative path", "./models", undefined, 5_000],
    ["default for a file: URL", "file:///home/ada/models", undefined, 5_000],
    ["default for https", "https://github.com/ada/models.git", undefined, 30_000],
    ["default for http", "http://git.local/models.git", undefined, 30_000],
    ["empty interval: the default", "https://example.com/m.git", "", 30_000],
    ["seconds", "/models", "10s", 10_000],
    ["minutes", "https://example.com/m.git", "2m", 120_000],
    ["hours", "/models", "1h", 3_600_000],
    ["unparsable: the local default", "/models", "soon", 5_000],
    ["unparsable: the URL default", "https://example.com/m.git", "5 minutes", 30_000],
    ["a unit it does not know: the default", "/models", "1d", 5_000],
  ])("%s (%s, %s) → %d ms", (_, url, interval, expected) => {
    expect(syncIntervalMs(repository(url, interval))).toBe(expected);
  });

  // The schema's duration (common.schema.json, "such as 30s, 5m or 1h30m") is compound and
  // may be decimal; below a second the poll would be a busy loop.
  it.each<[string, number]>([
    ["1h30m", 5_400_000],
    ["1.5s", 1_500],
    ["0s", 1_000],
    ["250ms", 1_000],
  ])("a schema-valid interval %s → %d ms (compound, decimal, at least 1 s)", (text, expected) => {
    expect(syncIntervalMs(repository("/models", text))).toBe(expected);
  });
});

describe("authorOf", () => {
  it.each<[string, string]>([
    ["ada@example.com", "Ada Lovelace <ada@example.com>"],
    ["", "Ada Lovelace"],
  ])("email %j → %j", (email, expected) => {
    expect(authorOf(revision(email))).toBe(expected);
  });
});

const MODEL_SPEC: Model["spec"] = { runtime: "r", file: "predict.R", function: "predict" };

function declared(
  kind: Kind,
  name: string,
  repoPath: string,
  metadata: Record<string, unknown> = {},
  spec: object = kind === "Model" ? MODEL_SPEC : { model: name },
): DeclaredObject {
  return {
    kind,
    namespace: "default",
    name,
    repoPath,
    object: { apiVersion: "modelship.dev/v1alpha1", kind, metadata: { name, ...metadata }, spec },
  };
}

const SYNC_LABELS = { "modelship.dev/managed-by": "modelship", "modelship.dev/source": "models" };
const SYNC_ANNOTATIONS = {
  "modelship.dev/commit": COMMIT,
  "modelship.dev/commit-author": "Ada Lovelace <ada@example.com>",
};

function syncedModel(
  annotations: Record<string, string>,
  spec: Model["spec"] = MODEL_SPEC,
  labels: Record<string, string> = SYNC_LABELS,
): Model {
  return {
    apiVersion: "modelship.dev/v1alpha1",
    kind: "Model",
    metadata: { name: "iris", namespace: "default", labels, annotations },
    spec,
  };
}

describe("desiredObjects", () => {
  it.each<[string, DeclaredObject, Resource]>([
    [
      "a Model: sync labels, commit, author, the manifest's directory and file",
      declared("Model", "iris", "models/iris/model.yaml"),
      syncedModel({
        ...SYNC_ANNOTATIONS,
        "modelship.dev/source-path": "models/iris",
        "modelship.dev/manifest-files": '["models/iris/model.yaml"]',
      }),
    ],
    [
      "a Model at the root: source path .",
      declared("Model", "iris", "model.yaml"),
      syncedModel({
        ...SYNC_ANNOTATIONS,
        "modelship.dev/source-path": ".",
        "modelship.dev/manifest-files": '["model.yaml"]',
      }),
    ],
    [
      "a Model with spec.source.path: that path, normalized",
      declared(
        "Model",
        "iris",
        "deploy/iris.yaml",
        {},
        {
          ...MODEL_SPEC,
          source: { path: "./src/iris/" },
        },
      ),
      syncedModel(
        {
          ...SYNC_ANNOTATIONS,
          "modelship.dev/source-path": "src/iris",
          "modelship.dev/manifest-files": '["deploy/iris.yaml"]',
        },
        { ...MODEL_SPEC, source: { path: "./src/iris/" } },
      ),
    ],
    [
      "a Model with user labels and annotations: kept, the sync's win",
      declared("Model", "iris", "iris/model.yaml", {
        labels: { team: "ml", "modelship.dev/source": "spoofed" },
        annotations: { owner: "ada", "modelship.dev/commit": "spoofed" },
      }),
      syncedModel(
        {
          owner: "ada",
          ...SYNC_ANNOTATIONS,
          "modelship.dev/source-path": "iris",
          "modelship.dev/manifest-files": '["iris/model.yaml"]',
        },
        MODEL_SPEC,
        { team: "ml", ...SYNC_LABELS },
      ),
    ],
    [
      "a ModelDeployment: commit and author only",
      declared(
        "ModelDeployment",
        "iris",
        "deploy/iris.yaml",
        { labels: { tier: "prod" } },
        {
          model: "iris",
          replicas: 2,
        },
      ),
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelDeployment",
        metadata: {
          name: "iris",
          namespace: "default",
          labels: { tier: "prod", ...SYNC_LABELS },
          annotations: SYNC_ANNOTATIONS,
        },
        spec: { model: "iris", replicas: 2 },
      },
    ],
  ])("%s", (_, item, expected) => {
    expect(desiredObjects([item], "models", revision())).toStrictEqual([expected]);
  });

  it.each([
    ["a declared namespace is kept", { namespace: "team-a" }, "team-a"],
    ["no namespace: the repository's", {}, "models-ns"],
  ])("%s", (_, metadata, expected) => {
    const item = declared("ModelDeployment", "iris", "d.yaml", metadata);
    const [object] = desiredObjects([item], "models", revision(), "models-ns");
    expect(object?.metadata.namespace).toBe(expected);
  });

  it("applies only Models and ModelDeployments, in declared order", () => {
    const items = [
      declared("ModelRepository", "other", "r.yaml"),
      declared("ModelDeployment", "d", "d.yaml"),
      declared("ModelBuild", "iris-1", "b.yaml"),
      declared("Model", "m", "m.yaml"),
    ];
    expect(
      desiredObjects(items, "models", revision()).map(
        (object) => `${object.kind}/${object.metadata.name}`,
      ),
    ).toStrictEqual(["ModelDeployment/d", "Model/m"]);
  });

  it("gives every Model the sorted, distinct list of all manifest files of the commit", () => {
    const items = [
      declared("Model", "b", "src/b/model.yaml"),
      declared("ModelDeployment", "b", "deploy/all.yaml"),
      declared("Model", "a", "deploy/all.yaml"),
      declared("ModelRepository", "r", "repo.yaml"),
    ];
    const files = desiredObjects(items, "models", revision()).map(
      (object) => object.metadata.annotations?.["modelship.dev/manifest-files"],
    );
    const all = '["deploy/all.yaml","repo.yaml","src/b/model.yaml"]';
    expect(files).toStrictEqual([all, undefined, all]);
  });

  it("writes the author without an email when there is none", () => {
    const [object] = desiredObjects([declared("Model", "m", "m.yaml")], "models", revision(""));
    expect(object?.metadata.annotations?.["modelship.dev/commit-author"]).toBe("Ada Lovelace");
  });
});

describe("objectsToPrune", () => {
  const object = (
    kind: "Model" | "ModelDeployment",
    name: string,
    source: string | undefined,
    namespace?: string,
  ): Resource =>
    ({
      apiVersion: "modelship.dev/v1alpha1",
      kind,
      metadata: {
        name,
        ...(namespace ? { namespace } : {}),
        ...(source ? { labels: { "modelship.dev/source": source } } : {}),
      },
      spec: {},
    }) as Resource;
  const ids = (objects: Resource[]) =>
    objects.map((item) => `${item.kind}/${item.metadata.namespace ?? "-"}/${item.metadata.name}`);

  it.each<[string, Resource[], Resource[], string[]]>([
    ["nothing exists", [], [object("Model", "a", "models")], []],
    [
      "ours, still declared: kept",
      [object("Model", "a", "models", "default")],
      [object("Model", "a", "models", "default")],
      [],
    ],
    [
      "ours, no longer declared: pruned",
      [object("Model", "a", "models", "default"), object("ModelDeployment", "b", "models")],
      [object("Model", "a", "models", "default")],
      ["ModelDeployment/-/b"],
    ],
    [
      "a missing namespace is default on either side",
      [object("Model", "a", "models")],
      [object("Model", "a", "models", "default")],
      [],
    ],
    [
      "same name, other kind: pruned",
      [object("Model", "a", "models")],
      [object("ModelDeployment", "a", "models")],
      ["Model/-/a"],
    ],
    [
      "same name, other namespace: pruned",
      [object("Model", "a", "models", "team-a")],
      [object("Model", "a", "models", "default")],
      ["Model/team-a/a"],
    ],
    ["another repository's: kept", [object("Model", "a", "other-repo")], [], []],
    ["made by hand (no source label): kept", [object("Model", "a", undefined)], [], []],
    [
      "everything ours when nothing is declared",
      [object("Model", "a", "models"), object("ModelDeployment", "a", "models")],
      [],
      ["Model/-/a", "ModelDeployment/-/a"],
    ],
  ])("%s", (_, existing, desired, expected) => {
    expect(ids(objectsToPrune(existing, desired, "models"))).toStrictEqual(expected);
  });
});
