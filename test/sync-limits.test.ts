// The sync against a commit past the limits, on a real git repository: the commit stalls the
// repository like any invalid commit, with a message that names the file and the limit and stays
// small however many problems there are; what runs keeps running, and the next good commit is
// applied as usual.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Condition, Model, ModelRepository } from "../controller/api/types.generated.ts";
import { LocalStore } from "../controller/platform/local/store.ts";
import {
  DEFAULT_RECONCILE_SETTINGS,
  type ReconcileContext,
} from "../controller/reconcile/context.ts";
import { ControllerMetrics } from "../controller/reconcile/metrics.ts";
import { repositoryReconciler } from "../controller/reconcile/repository.ts";
import { GitSource } from "../controller/source/git.ts";
import { commitAll, gitEnv, runGit } from "./helpers/git.ts";

const GIT_ENV = gitEnv({ name: "Katherine Johnson", email: "katherine@example.com" });
const NAMESPACE = "default";
const KEY = { kind: "ModelRepository" as const, namespace: NAMESPACE, name: "models" };

const MODEL = `apiVersion: modelship.dev/v1alpha1
kind: Model
metadata:
  name: scorer
spec:
  runtime: python3
  file: predict.py
  function: predict
`;

/** Each level ten aliases of the one before: 10^9 copies once expanded. */
function billionLaughs(): string {
  const lines = ['lol0: &lol0 "lol"'];
  for (let level = 1; level <= 9; level++) {
    lines.push(
      `lol${level}: &lol${level} [${Array(10)
        .fill(`*lol${level - 1}`)
        .join(", ")}]`,
    );
  }
  return `${lines.join("\n")}\n`;
}

describe("the sync of a commit past the limits", () => {
  const root = mkdtempSync(join(tmpdir(), "modelship-sync-limits-"));
  const repo = join(root, "repo");
  const store = new LocalStore();
  const events: string[] = [];
  const context: ReconcileContext = {
    store,
    builder: {
      start: async () => {},
      status: async () => undefined,
      logs: async () => "",
      remove: async () => {},
    },
    runtime: {
      apply: async () => {},
      status: () => undefined,
      stop: async () => {},
      pause: async () => false,
      replicas: () => [],
    },
    sources: { treeId: async () => "t".repeat(40), contentId: async () => "content" },
    events: {
      record: (_object, type, reason, message) => events.push(`${type} ${reason} ${message}`),
    },
    clock: { now: () => new Date() },
    gitSource: (repository) =>
      new GitSource({ url: repository.spec.url, branch: "main", cacheDir: join(root, "cache") }),
    gatewayUrl: () => "http://gateway",
    baseImage: (runtime) => `local/${runtime}`,
    log: () => {},
    metrics: new ControllerMetrics(new Registry()),
    settings: DEFAULT_RECONCILE_SETTINGS,
  };
  const reconcile = repositoryReconciler(context);
  const sync = () => {
    const controller = new AbortController();
    return reconcile(KEY, { signal: controller.signal, stopped: controller.signal });
  };
  const status = () =>
    (store.get("ModelRepository", NAMESPACE, "models") as ModelRepository).status;
  const condition = (type: string): Condition | undefined =>
    status()?.conditions?.find((item) => item.type === type);
  const commit = (message: string, files: Record<string, string | null>) =>
    commitAll(repo, GIT_ENV, message, files);
  let good: string;

  beforeAll(async () => {
    runGit(root, GIT_ENV, "init", "-q", "-b", "main", repo);
    good = commit("a model", {
      "model.yaml": MODEL,
      "predict.py": "def predict(x):\n    return x\n",
    });
    await store.apply<ModelRepository>({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelRepository",
      metadata: { name: "models", namespace: NAMESPACE },
      spec: { url: repo },
    });
    await sync(); // adds the finalizer
    await sync();
    expect(status()?.lastSyncedCommit).toBe(good);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("stalls on an alias bomb, naming the file and the limit, and applies nothing", async () => {
    const bomb = commit("laughs", { "bomb.yaml": billionLaughs() });
    await sync();
    expect(status()?.lastAttemptedCommit).toBe(bomb);
    expect(status()?.lastSyncedCommit).toBe(good);
    expect(condition("Stalled")).toMatchObject({ status: "True", reason: "ValidationFailed" });
    expect(status()?.lastSyncError).toBe(
      `1 problem at commit ${bomb.slice(0, 7)}; nothing from it is applied:\nbomb.yaml:2:14: ?/? /: YAML aliases here expand past the limit of 100 (maxAliasesPerDocument), as in a "billion laughs" document: the document is not read`,
    );
    expect(store.get("Model", NAMESPACE, "scorer")).toBeDefined();
  });

  it("stalls on thousands of problems with a message that names twenty", async () => {
    const typos = Array.from(
      { length: 5000 },
      (_, index) =>
        `apiVersion: modelship.dev/v1alpha1\nkind: Modle\nmetadata: {name: m${index}}\n`,
    );
    const many = commit("typos", { "bomb.yaml": null, "typos.yaml": typos.join("---\n") });
    await sync();
    expect(status()?.lastAttemptedCommit).toBe(many);
    const message = status()?.lastSyncError ?? "";
    const lines = message.split("\n");
    expect(lines[0]).toBe(
      `5000 problems at commit ${many.slice(0, 7)}; nothing from it is applied:`,
    );
    expect(lines).toHaveLength(22);
    expect(lines.at(-1)).toBe("… and 4980 more problems");
    expect(message.length).toBeLessThan(10_000);
    expect(condition("Ready")?.message.length).toBeLessThan(10_000);
    expect(events.every((event) => event.length < 10_000)).toBe(true);
  });

  it("applies the next good commit as usual", async () => {
    const fixed = commit("fixed", {
      "typos.yaml": null,
      "model.yaml": `${MODEL}  description: v2\n`,
    });
    await sync();
    expect(status()?.lastSyncedCommit).toBe(fixed);
    expect(condition("Ready")).toMatchObject({ status: "True", reason: "Synced" });
    expect(status()?.lastSyncError).toBeUndefined();
    const model = store.get("Model", NAMESPACE, "scorer") as Model | undefined;
    expect(model?.spec.description).toBe("v2");
  });
});
