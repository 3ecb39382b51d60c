// CLI table output: printer-column JSONPath, kubectl ages, column padding, `get` tables.
import { describe, expect, it } from "vitest";
import type { Model, ModelBuild, ModelDeployment } from "../controller/api/types.generated.ts";
import { evaluateJsonPath, formatTable, resourceTable } from "../controller/cli/client.ts";
import { formatAge } from "../controller/core/age.ts";

const NOW = new Date("2026-03-10T12:00:00.000Z");
const ago = (seconds: number) => new Date(NOW.getTime() - seconds * 1000).toISOString();

describe("evaluateJsonPath", () => {
  const ready = { type: "Ready", status: "True", reason: "Deployed" };
  const object = {
    spec: { model: "iris", replicas: 0, tags: ["a"] },
    status: {
      build: 3,
      image: null,
      stopped: false,
      conditions: [{ type: "Reconciling", status: "False" }, ready],
    },
  };

  it.each<[string, unknown]>([
    [".spec.model", "iris"],
    [".status.build", 3],
    [".spec.replicas", 0],
    [".status.stopped", false],
    [".status.image", null],
    [".spec", object.spec],
    ['.status.conditions[?(@.type=="Ready")].status', "True"],
    ['.status.conditions[?(@.type=="Reconciling")].status', "False"],
    ['.status.conditions[?(@.type=="Ready")]', ready],
    ['.status.conditions[?(@.type=="Stalled")].status', undefined],
    ['.status.conditions[?(@.reason=="Deployed")].type', "Ready"],
    [".status.missing", undefined],
    [".status.missing.deep", undefined],
    [".missing.status.build", undefined],
    [".status.image.name", undefined],
    [".spec.model.length", undefined],
    ['.spec[?(@.type=="Ready")].status', undefined],
    ['.spec.tags[?(@.type=="Ready")].status', undefined],
  ])("%s → %j", (path, expected) => {
    expect(evaluateJsonPath(object, path)).toStrictEqual(expected);
  });

  it.each<[unknown]>([[undefined], [null], ["text"], [42]])(
    "reading a field of %j gives undefined",
    (value) => {
      expect(evaluateJsonPath(value, ".spec.model")).toBeUndefined();
    },
  );
});

describe("formatAge", () => {
  it.each<[number, string]>([
    [0, "0s"],
    [1, "1s"],
    [59, "59s"],
    [119, "119s"],
    [120, "2m"],
    [179, "2m"],
    [180, "3m"],
    [3_599, "59m"],
    [7_199, "119m"],
    [7_200, "2h"],
    [10_799, "2h"],
    [172_799, "47h"],
    [172_800, "2d"],
    [259_199, "2d"],
    [259_200, "3d"],
    [365 * 86_400, "365d"],
    [-30, "0s"],
  ])("%d seconds ago → %s", (seconds, expected) => {
    expect(formatAge(ago(seconds), NOW)).toBe(expected);
  });

  it("drops milliseconds rather than rounding them up", () => {
    expect(formatAge(new Date(NOW.getTime() - 119_999).toISOString(), NOW)).toBe("119s");
  });
});

describe("formatTable", () => {
  it.each<[string, string[][], string[]]>([
    ["no rows", [], [""]],
    ["one cell", [["NAME"]], ["NAME"]],
    [
      "three spaces after the widest cell of each column, the last not padded",
      [
        ["NAME", "PHASE", "URL"],
        ["iris", "Deployed", "http://gw/m/iris"],
        ["a-long-name", "Failed", "x"],
      ],
      [
        "NAME          PHASE      URL",
        "iris          Deployed   http://gw/m/iris",
        "a-long-name   Failed     x",
      ],
    ],
    [
      "an empty last cell leaves no trailing spaces",
      [
        ["NAME", "URL"],
        ["iris", ""],
      ],
      ["NAME   URL", "iris"],
    ],
    [
      "a cell with trailing spaces is trimmed at the end of a line only",
      [
        ["A ", "B  "],
        ["x", "y"],
      ],
      ["A    B", "x    y"],
    ],
  ])("%s", (_, rows, lines) => {
    expect(formatTable(rows)).toBe(lines.join("\n"));
  });
});

describe("resourceTable", () => {
  const metadata = (name: string, seconds: number) => ({
    name,
    namespace: "default",
    creationTimestamp: ago(seconds),
  });

  it("ModelDeployment: NAME and its printer columns, <none> for what is missing", () => {
    const deployments: ModelDeployment[] = [
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelDeployment",
        metadata: metadata("iris", 3 * 3600 + 5),
        spec: { model: "iris" },
        // Build 4's rollout failed; build 3 still answers: BUILD is what serves.
        status: {
          build: 4,
          servingBuild: 3,
          ready: "2/2",
          phase: "Degraded",
          url: "http://gw/m/iris",
        },
      },
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "ModelDeployment",
        metadata: metadata("new-one", 45),
        spec: { model: "wine" },
      },
    ];
    expect(resourceTable("ModelDeployment", deployments, NOW)).toBe(
      [
        "NAME      MODEL   BUILD    READY    PHASE      URL                AGE",
        "iris      iris    3        2/2      Degraded   http://gw/m/iris   3h",
        "new-one   wine    <none>   <none>   <none>     <none>             45s",
      ].join("\n"),
    );
  });

  it("ModelBuild: the commit shortened to 7 characters", () => {
    const build = (
      name: string,
      number: number,
      commit: string,
      seconds: number,
      phase?: "Succeeded",
    ): ModelBuild => ({
      apiVersion: "modelship.dev/v1alpha1",
      kind: "ModelBuild",
      metadata: metadata(name, seconds),
      spec: {
        model: "iris",
        number,
        commit,
        tree: "t",
        buildKey: "k",
        sourcePath: ".",
        runtime: "r",
        file: "f.R",
        function: "f",
      },
      ...(phase ? { status: { phase } } : {}),
    });
    const builds = [
      build("iris-1", 1, "0123456789abcdef0123456789abcdef01234567", 3 * 86_400, "Succeeded"),
      build("iris-2", 2, "fedcba9876543210fedcba9876543210fedcba98", 90),
    ];
    expect(resourceTable("ModelBuild", builds, NOW)).toBe(
      [
        "NAME     MODEL   NUMBER   COMMIT    PHASE       AGE",
        "iris-1   iris    1        0123456   Succeeded   3d",
        "iris-2   iris    2        fedcba9   <none>      90s",
      ].join("\n"),
    );
  });

  it("Model: READY from the Ready condition", () => {
    const models: Model[] = [
      {
        apiVersion: "modelship.dev/v1alpha1",
        kind: "Model",
        metadata: metadata("iris", 600),
        spec: { runtime: "python3", file: "p.py", function: "predict" },
        status: {
          latestBuild: 2,
          conditions: [
            {
              type: "Reconciling",
              status: "False",
              reason: "Idle",
              message: "",
              lastTransitionTime: ago(60),
            },
            {
              type: "Ready",
              status: "True",
              reason: "BuildSucceeded",
              message: "",
              lastTransitionTime: ago(60),
            },
          ],
        },
      },
    ];
    expect(resourceTable("Model", models, NOW)).toBe(
      [
        "NAME   RUNTIME   FUNCTION   LATEST-BUILD   READY   AGE",
        "iris   python3   predict    2              True    10m",
      ].join("\n"),
    );
  });

  it("no objects: the header alone", () => {
    expect(resourceTable("ModelBuild", [], NOW)).toBe(
      "NAME   MODEL   NUMBER   COMMIT   PHASE   AGE",
    );
  });
});
