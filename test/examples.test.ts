// Each example's function, called by the real interpreter with its example input, gives its
// example output — so the examples in manifests/examples and the docs say true things.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { Model } from "../controller/api/types.generated.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";

const PYTHON_CALL = `
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("model", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(getattr(module, sys.argv[2])(json.loads(sys.argv[3]))))
`;

const R_CALL = `
args <- commandArgs(trailingOnly = TRUE)
source(args[[1]])
cat(jsonlite::toJSON(get(args[[2]])(jsonlite::fromJSON(args[[3]])), auto_unbox = TRUE))
`;

function exampleModel(example: string): { model: Model; dir: string } {
  const dir = join(PROJECT_ROOT, "manifests/examples", example);
  const documents = parseAllDocuments(readFileSync(join(dir, "model.yaml"), "utf8"));
  const model = documents
    .map((document) => document.toJS())
    .find((object) => object.kind === "Model") as Model;
  return { model, dir };
}

function call(model: Model, dir: string): unknown {
  const input = JSON.stringify(model.spec.example?.input);
  const file = join(dir, model.spec.file);
  const [command, args] =
    model.spec.runtime === "python3"
      ? ["python3", ["-c", PYTHON_CALL, file, model.spec.function, input]]
      : ["Rscript", ["-e", R_CALL, file, model.spec.function, input]];
  const result = spawnSync(command, args, { cwd: dir, encoding: "utf8", timeout: 60_000 });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout);
}

describe("examples", () => {
  it.each(["add-numbers", "add-numbers-r"])("%s answers its example output", (example) => {
    const { model, dir } = exampleModel(example);
    expect(model.spec.example?.output).toBe(8);
    expect(call(model, dir)).toEqual(model.spec.example?.output);
  });

  it("iris trains at build time and answers its example output", () => {
    const { model, dir } = exampleModel("iris");
    // Build in a copy, as a build does: model.pkl must never land in the repository.
    const build = mkdtempSync(join(tmpdir(), "modelship-iris-"));
    afterAll(() => rmSync(build, { recursive: true, force: true }));
    cpSync(dir, build, { recursive: true });
    const fit = spawnSync("python3", ["fit.py"], {
      cwd: build,
      encoding: "utf8",
      timeout: 120_000,
    });
    expect(fit.stderr).toBe("");
    expect(fit.stdout).toMatch(/^trained: width = 0\.41\d+ \* length \+ -0\.36\d+/);
    const answer = call(model, build) as { petal_width: number };
    expect(answer.petal_width).toBeCloseTo(1.88, 2);
    expect(answer).toEqual(model.spec.example?.output);
  });
});
