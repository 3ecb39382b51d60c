// Table tests of the GitOps sync's pure parts: interval, author, desired objects, the inventory
// and what to prune from it, ownership, drift.
import { describe, expect, it } from "vitest";
import type { Kind } from "../controller/api/schemas.ts";
import type { Model, ModelRepository } from "../controller/api/types.generated.ts";
import type { Resource } from "../controller/core/ports.ts";
import { syncIntervalMs } from "../controller/reconcile/repository.ts";
import {
  authorOf,
  desiredObjects,
  driftOf,
  holds,
  inventoryOf,
  inventoryToPrune,
  ownedBy,
  ownershipConflicts,
} from "../controller/source/desired.ts";
import type { Revision } from "../controller/source/git.ts";
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
    line: 3,
    object: { apiVersion: "modelship.dev/v1alpha1", kind, metadata: { name, ...metadata }, spec },
  };
}

const SYNC_LABELS = {
  "app.kubernetes.io/managed-by": "modelship",
  "modelship.dev/repository": "models",
};
const MODELS = { namespace: "default", name: "models" };
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
        "modelship.dev/manifest": "models/iris/model.yaml:3",
        "modelship.dev/source-path": "models/iris",
        "modelship.dev/manifest-files": '["models/iris/model.yaml"]',
      }),
    ],
    [
      "a Model at the root: source path .",
      declared("Model", "iris", "model.yaml"),
      syncedModel({
        ...SYNC_ANNOTATIONS,
        "modelship.dev/manifest": "model.yaml:3",
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
          "modelship.dev/manifest": "deploy/iris.yaml:3",
          "modelship.dev/source-path": "src/iris",
          "modelship.dev/manifest-files": '["deploy/iris.yaml"]',
        },
        { ...MODEL_SPEC, source: { path: "./src/iris/" } },
      ),
    ],
    [
      "a Model with user labels and annotations: kept, the sync's win",
      declared("Model", "iris", "iris/model.yaml", {
        labels: { team: "ml", "modelship.dev/repository": "spoofed" },
        annotations: { owner: "ada", "modelship.dev/commit": "spoofed" },
      }),
      syncedModel(
        {
          owner: "ada",
          ...SYNC_ANNOTATIONS,
          "modelship.dev/manifest": "iris/model.yaml:3",
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
          annotations: { ...SYNC_ANNOTATIONS, "modelship.dev/manifest": "deploy/iris.yaml:3" },
        },
        // The schema's defaults filled in, as the API server will store it.
        spec: {
          model: "iris",
          replicas: 2,
          build: "latest",
          timeoutSeconds: 30,
          queueTimeoutSeconds: 30,
          stopped: false,
        },
      },
    ],
  ])("%s", (_, item, expected) => {
    expect(desiredObjects([item], MODELS, revision())).toStrictEqual([expected]);
  });

  it("puts every object in the repository's namespace (validation refused any other)", () => {
    const item = declared("ModelDeployment", "iris", "d.yaml");
    const [object] = desiredObjects([item], { namespace: "models-ns", name: "models" }, revision());
    expect(object?.metadata.namespace).toBe("models-ns");
  });

  it("applies only Models and ModelDeployments, in declared order", () => {
    const items = [
      declared("ModelRepository", "other", "r.yaml"),
      declared("ModelDeployment", "d", "d.yaml"),
      declared("ModelBuild", "iris-1", "b.yaml"),
      declared("Model", "m", "m.yaml"),
    ];
    expect(
      desiredObjects(items, MODELS, revision()).map(
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
    const files = desiredObjects(items, MODELS, revision()).map(
      (object) => object.metadata.annotations?.["modelship.dev/manifest-files"],
    );
    const all = '["deploy/all.yaml","repo.yaml","src/b/model.yaml"]';
    expect(files).toStrictEqual([all, undefined, all]);
  });

  it("tells a Model which other Models' directories lie inside its source, and no Model when none do", () => {
    const items = [
      declared("Model", "root", "model.yaml"),
      declared("Model", "r", "r/model.yaml"),
      declared("Model", "deep", "a/b/c/model.yaml"),
    ];
    const nested = desiredObjects(items, MODELS, revision()).map(
      (object) => object.metadata.annotations?.["modelship.dev/nested-sources"],
    );
    expect(nested).toStrictEqual(['["a/b/c","r"]', undefined, undefined]);
  });

  it("writes the author without an email when there is none", () => {
    const [object] = desiredObjects([declared("Model", "m", "m.yaml")], MODELS, revision(""));
    expect(object?.metadata.annotations?.["modelship.dev/commit-author"]).toBe("Ada Lovelace");
  });
});

const object = (
  kind: "Model" | "ModelDeployment",
  name: string,
  labels: Record<string, string> | undefined,
  namespace = "default",
  spec: object = {},
): Resource =>
  ({
    apiVersion: "modelship.dev/v1alpha1",
    kind,
    metadata: { name, namespace, ...(labels ? { labels } : {}) },
    spec,
  }) as Resource;
const ours = (repository = "models") => ({
  "app.kubernetes.io/managed-by": "modelship",
  "modelship.dev/repository": repository,
});
const entry = (kind: string, name: string, namespace = "default") => ({ kind, namespace, name });

describe("the inventory", () => {
  it("lists kind, namespace and name, sorted", () => {
    expect(
      inventoryOf([
        object("ModelDeployment", "b", ours()),
        object("Model", "b", ours()),
        object("Model", "a", ours(), "team-a"),
      ]),
    ).toStrictEqual([
      entry("Model", "b"),
      entry("Model", "a", "team-a"),
      entry("ModelDeployment", "b"),
    ]);
  });

  it.each<[string, ReturnType<typeof entry>[] | undefined, Resource[], string[]]>([
    ["no inventory yet: nothing", undefined, [object("Model", "a", ours())], []],
    ["still declared: kept", [entry("Model", "a")], [object("Model", "a", ours())], []],
    [
      "no longer declared: pruned",
      [entry("Model", "a"), entry("ModelDeployment", "b")],
      [object("Model", "a", ours())],
      ["ModelDeployment/b"],
    ],
    [
      "same name, other kind: pruned",
      [entry("Model", "a")],
      [object("ModelDeployment", "a", ours())],
      ["Model/a"],
    ],
    [
      "same name, other namespace: pruned",
      [entry("Model", "a", "team-a")],
      [object("Model", "a", ours())],
      ["Model/a"],
    ],
    [
      "nothing declared: the whole inventory",
      [entry("Model", "a"), entry("ModelDeployment", "a")],
      [],
      ["Model/a", "ModelDeployment/a"],
    ],
  ])("inventoryToPrune: %s", (_, previous, desired, expected) => {
    expect(
      inventoryToPrune(previous, desired).map((item) => `${item.kind}/${item.name}`),
    ).toStrictEqual(expected);
  });
});

describe("ownership", () => {
  it.each<[string, Resource, boolean]>([
    ["ours, this repository", object("Model", "a", ours()), true],
    ["another repository's", object("Model", "a", ours("other")), false],
    ["this repository's name in another namespace", object("Model", "a", ours(), "team-a"), false],
    ["made by hand (no labels)", object("Model", "a", undefined), false],
    [
      "a spoofed repository label without managed-by",
      object("Model", "a", { "modelship.dev/repository": "models" }),
      false,
    ],
  ])("ownedBy: %s → %s", (_, existing, expected) => {
    expect(ownedBy(existing, MODELS)).toBe(expected);
  });

  it("ownershipConflicts names each existing object that is someone else's, and why", () => {
    const existing = new Map<string, Resource>([
      ["Model/a", object("Model", "a", ours())],
      ["Model/b", object("Model", "b", ours("other"))],
      ["ModelDeployment/c", object("ModelDeployment", "c", undefined)],
    ]);
    const desired = ["a", "b", "d"]
      .map((name) => object("Model", name, ours()))
      .concat([object("ModelDeployment", "c", ours())]);
    expect(
      ownershipConflicts(
        desired,
        (item) => existing.get(`${item.kind}/${item.metadata.name}`),
        MODELS,
      ),
    ).toStrictEqual([
      'Model "b" already exists in namespace default and it belongs to ModelRepository "other"; rename it in git or delete the existing one',
      'ModelDeployment "c" already exists in namespace default and it was not made by a ModelRepository (created by hand?); rename it in git or delete the existing one',
    ]);
  });
});

describe("holds", () => {
  it.each<[string, unknown, unknown, boolean]>([
    ["equal scalars", 3, 3, true],
    ["different scalars", 3, 1, false],
    ["a field only the live object has", { a: 1, b: 2 }, { a: 1 }, true],
    ["a field the live object lacks", { a: 1 }, { a: 1, b: 2 }, false],
    ["nested, a default filled in", { env: { A: "1" }, x: { y: 1, z: 0 } }, { x: { y: 1 } }, true],
    ["nested, a changed value", { x: { y: 2 } }, { x: { y: 1 } }, false],
    ["lists whole: an extra item is a difference", [1, 2], [1], false],
    ["lists whole: the same", [{ a: 1 }], [{ a: 1 }], true],
    ["an object where a scalar is wanted", { a: {} }, { a: 1 }, false],
    ["a scalar where an object is wanted", { a: 1 }, { a: {} }, false],
  ])("%s", (_, live, wanted, expected) => {
    expect(holds(live, wanted)).toBe(expected);
  });
});

describe("driftOf", () => {
  // As desiredObjects makes it: with the schema's defaults.
  const desired = object("ModelDeployment", "d", { ...ours(), tier: "prod" }, "default", {
    model: "iris",
    replicas: 3,
    build: "latest",
    timeoutSeconds: 30,
    queueTimeoutSeconds: 30,
    stopped: false,
  });
  desired.metadata.annotations = { "modelship.dev/commit": COMMIT };
  const live = (change: (copy: Resource) => void): Resource => {
    const copy = structuredClone(desired);
    change(copy);
    return copy;
  };
  it.each<[string, Resource | undefined, string | undefined]>([
    ["missing", undefined, "it does not exist"],
    ["the same", live(() => {}), undefined],
    [
      "scaled by hand",
      live((copy) => {
        (copy.spec as { replicas: number }).replicas = 1;
      }),
      "its spec was changed",
    ],
    [
      "a label of ours changed",
      live((copy) => {
        (copy.metadata.labels as Record<string, string>).tier = "dev";
      }),
      "its label tier was changed",
    ],
    [
      "a field with no default that git does not set, added by another manager: not drift",
      live((copy) => {
        Object.assign(copy.spec, { env: { DEBUG: "1" } });
      }),
      undefined,
    ],
    [
      "a field git leaves at its default, set by hand",
      live((copy) => {
        Object.assign(copy.spec, { stopped: true });
      }),
      "its spec was changed",
    ],
    [
      "another's label added: not drift (server-side apply leaves it)",
      live((copy) => {
        (copy.metadata.labels as Record<string, string>).team = "ml";
      }),
      undefined,
    ],
    [
      "an annotation of ours removed",
      live((copy) => {
        copy.metadata.annotations = {};
      }),
      "its annotation modelship.dev/commit was changed",
    ],
  ])("%s → %s", (_, current, expected) => {
    expect(driftOf(current, desired)).toBe(expected);
  });
});
