// Each example's function, called through the real worker with its example input, gives its
// example output — so the examples in manifests/examples and the docs say true things.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { Model } from "../controller/api/types.generated.ts";
import { WorkerProcess } from "../controller/replica/worker-process.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";

function exampleModel(example: string): { model: Model; dir: string } {
  const dir = join(PROJECT_ROOT, "manifests/examples", example);
  const documents = parseAllDocuments(readFileSync(join(dir, "model.yaml"), "utf8"));
  const model = documents
    .map((document) => document.toJS())
    .find((object) => object.kind === "Model") as Model;
  return { model, dir };
}

/** Calls the model's function with its example input through the real worker. */
async function call(model: Model, dir: string): Promise<unknown> {
  const worker = new WorkerProcess({
    runtime: model.spec.runtime,
    file: model.spec.file,
    functionName: model.spec.function,
    cwd: dir,
  });
  try {
    expect(await worker.started).toMatchObject({ type: "ready" });
    const answer = await worker.call(model.spec.example?.input);
    expect(answer).toMatchObject({ ok: true });
    return answer?.ok ? answer.response : undefined;
  } finally {
    await worker.stop();
  }
}

describe("examples", () => {
  it.each(["add-numbers", "add-numbers-r"])("%s answers its example output", async (example) => {
    const { model, dir } = exampleModel(example);
    expect(model.spec.example?.output).toBe(8);
    expect(await call(model, dir)).toEqual(model.spec.example?.output);
  });

  it("iris trains at build time and answers its example output", async () => {
    const { model, dir } = exampleModel("iris");
    // Build in a copy, as a build does: model.pkl must never land in the repository.
    const build = mkdtempSync(join(tmpdir(), "modelship-iris-"));
    afterAll(() => rmSync(build, { recursive: true, force: true }));
    cpSync(dir, build, { recursive: true });
    // As a build runs it: modelship's Python package (the SDK fit.py tracks with) importable.
    const fit = spawnSync("python3", ["fit.py"], {
      cwd: build,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, PYTHONPATH: join(PROJECT_ROOT, "runtime/python") },
    });
    expect(fit.stderr).toBe("");
    expect(fit.stdout).toMatch(/^trained: width = 0\.41\d+ \* length \+ -0\.36\d+/);
    const answer = (await call(model, build)) as { petal_width: number };
    expect(answer.petal_width).toBeCloseTo(1.88, 2);
    expect(answer).toEqual(model.spec.example?.output);
    // scikit-learn takes seconds to import, twice (fit, then the worker), on a busy CI machine.
  }, 60_000);
});
