// The metrics data path's pure parts: the CRNs, a worker's metrics member, the serves header,
// the drift figure. The store and the path end to end are tested in metrics-store.test.ts and
// metrics-gateway.test.ts.
import { describe, expect, it } from "vitest";
import { parseServes } from "../controller/cli/replica.ts";
import { CallError } from "../controller/gateway/call-error.ts";
import { predictionRecord } from "../controller/gateway/gateway.ts";
import { subjectOf } from "../controller/gateway/metrics-api.ts";
import { buildCrn, deploymentCrn, modelCrn, parseCrn } from "../controller/metrics/crn.ts";
import {
  driftOf,
  featureValue,
  populationStabilityIndex,
  quantileEdges,
} from "../controller/metrics/drift.ts";
import type { MetricsRow } from "../controller/metrics/port.ts";
import {
  MAX_METRICS_BYTES,
  metricsOf,
  parseWorkerLine,
} from "../controller/replica/worker-process.ts";

describe("CRNs", () => {
  it.each([
    [modelCrn("iris"), { model: "iris" }],
    [buildCrn("iris", 3), { model: "iris", build: 3 }],
    [
      deploymentCrn("iris", "iris-prod", 4),
      { model: "iris", deployment: "iris-prod", deploymentId: 4 },
    ],
    [deploymentCrn("iris", "iris-prod"), { model: "iris", deployment: "iris-prod" }],
    ["iris/builds/12", { model: "iris", build: 12 }],
  ])("%s names %o", (crn, subject) => {
    expect(parseCrn(crn)).toEqual(subject);
  });

  it.each([
    "",
    "crn:cdp:ml:us-west-1:abc/def",
    "Iris",
    "iris/builds/0",
    "iris/builds/x",
    "iris/deployments/",
    "iris/deployments/prod/0",
    "iris/other/3",
  ])("%j is refused with what a CRN looks like", (text) => {
    const parsed = parseCrn(text);
    expect(typeof parsed).toBe("string");
    expect(parsed).toContain("crn:modelship:MODEL");
  });

  it("takes several CRNs of one model, the narrowest first, and refuses two models", () => {
    expect(
      subjectOf({
        modelCrn: modelCrn("iris"),
        modelDeploymentCrn: deploymentCrn("iris", "prod", 2),
      }),
    ).toEqual({ model: "iris", deployment: "prod", deploymentId: 2 });
    expect(() => subjectOf({ modelCrn: "iris", modelBuildCrn: "other/builds/1" })).toThrow(
      /name different models \(other, iris\)|name different models \(iris, other\)/,
    );
    // Together they narrow: what build 2 answered in deployment prod.
    expect(
      subjectOf({ modelBuildCrn: "iris/builds/2", modelDeploymentCrn: "iris/deployments/prod" }),
    ).toEqual({
      model: "iris",
      build: 2,
      deployment: "prod",
    });
    expect(() =>
      subjectOf({
        modelDeploymentCrn: "iris/deployments/a",
        modelCrn: "iris",
        modelBuildCrn: "iris/builds/1",
      }),
    ).not.toThrow();
    expect(() => subjectOf({})).toThrow(CallError);
    expect(() => subjectOf({ modelCrn: 3 })).toThrow(/modelCrn is not a string/);
  });
});

describe("a worker's metrics member", () => {
  it.each([
    ['{"a":1}', { metricsJson: '{"a":1}' }],
    ['{"name":"été"}', { metricsJson: '{"name":"\\u00e9t\\u00e9"}' }],
    ['{"emoji":"😀"}', { metricsJson: '{"emoji":"\\ud83d\\ude00"}' }],
    ['{"a":\t1}', { metricsJson: '{"a": 1}' }],
    ['{"big":9007199254740993}', { metricsJson: '{"big":9007199254740993}' }],
  ])("%s is kept as header-safe JSON with the same value", (json, expected) => {
    const kept = metricsOf(json);
    expect(kept).toEqual(expected);
    expect(JSON.parse(kept.metricsJson as string)).toEqual(JSON.parse(json));
    expect(kept.metricsJson).toMatch(/^[\x20-\x7e]*$/);
  });

  it.each([
    ["[1,2]", /not a JSON object/],
    ["3", /not a JSON object/],
    [`{"x":"${"a".repeat(MAX_METRICS_BYTES)}"}`, /more than 65536/],
    [`{"x":${"[".repeat(20_000)}${"]".repeat(20_000)}}`, /nest 20001 deep, more than 64/],
  ])("%s is dropped, saying why", (json, reason) => {
    const kept = metricsOf(json.slice(0, 200_000));
    expect(kept.metricsJson).toBeUndefined();
    expect(kept.metricsDropped).toMatch(reason);
  });

  it("counts only brackets outside strings toward its depth", () => {
    const deep = `{"a":${"[".repeat(63)}${"]".repeat(63)}}`;
    expect(metricsOf(deep).metricsJson).toBe(deep);
    const quoted = `{"a":"${"[{".repeat(500)}\\"["}`;
    expect(metricsOf(quoted).metricsJson).toBe(quoted);
  });

  it("is read from an answer line beside its response, which stays unparsed", () => {
    const message = parseWorkerLine(
      '{"id":7,"ok":true,"metrics":{"input":{"x":1}},"response":{"prediction":18446744073709551617}}',
    );
    expect(message).toEqual({
      type: "answer",
      answer: {
        id: 7,
        kind: "response",
        responseJson: '{"prediction":18446744073709551617}',
        metricsJson: '{"input":{"x":1}}',
      },
    });
    const without = parseWorkerLine('{"id":8,"ok":true,"response":1}');
    expect(without).toEqual({
      type: "answer",
      answer: { id: 8, kind: "response", responseJson: "1" },
    });
  });
});

describe("what a replica serves", () => {
  it("goes from --serves to the record the gateway stores", () => {
    expect(parseServes("iris/3/iris-prod/4")).toEqual({
      model: "iris",
      build: 3,
      deployment: "iris-prod",
      deploymentId: 4,
    });
    expect(() => parseServes("iris/3/iris-prod")).toThrow(/MODEL\/BUILD\/DEPLOYMENT\/ID/);
    const record = predictionRecord(
      "iris",
      "u-1",
      performance.now(),
      "{}",
      "build=3; deployment=iris-prod; deploymentId=4",
    );
    expect(record).toMatchObject({
      model: "iris",
      build: 3,
      deployment: "iris-prod",
      deploymentId: 4,
    });
    expect(Math.abs(record.startMs - Date.now())).toBeLessThan(1000);
    expect(record.endMs).toBeGreaterThanOrEqual(record.startMs);
    // A replica that says nothing (one run by hand) is recorded by its model alone.
    const bare = predictionRecord("iris", "u-2", performance.now(), "{}", undefined);
    expect(bare.build).toBeUndefined();
    expect(bare.deployment).toBeUndefined();
  });
});

describe("drift (population stability index)", () => {
  /** Deterministic "random" numbers: a linear congruential generator. */
  function uniform(seed: number, count: number, low: number, high: number): number[] {
    let state = seed;
    return Array.from({ length: count }, () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return low + (state / 2 ** 31) * (high - low);
    });
  }

  it("cuts the baseline at its quantiles, without repeating an edge", () => {
    expect(quantileEdges([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 10)).toEqual([
      2, 3, 4, 5, 6, 7, 8, 9, 10,
    ]);
    expect(quantileEdges([5, 5, 5, 5], 10)).toEqual([5]);
  });

  it("is near 0 for the same distribution and large for a shifted one", () => {
    const baseline = uniform(1, 500, 1, 7);
    const same = uniform(2, 500, 1, 7);
    const shifted = uniform(3, 500, 3, 9);
    const unshiftedPsi = populationStabilityIndex(baseline, same);
    const shiftedPsi = populationStabilityIndex(baseline, shifted);
    expect(unshiftedPsi).toBeLessThan(0.1);
    expect(shiftedPsi).toBeGreaterThan(0.25);
    expect(populationStabilityIndex(baseline, baseline)).toBeCloseTo(0, 12);
  });

  it.each([
    [{ petal_length: 4.5 }, 4.5],
    [{ input: { petal_length: 1.2 } }, 1.2],
    [{ input: { petal_length: "3.5" } }, 3.5],
    [{ input: { petal_length: "wide" } }, undefined],
    [{ other: 1 }, undefined],
  ])("reads the feature from %o", (metrics, value) => {
    expect(featureValue(metrics, "petal_length")).toBe(value);
  });

  it("splits a window of predictions in half by time, or at a given time", () => {
    const rows: MetricsRow[] = [...uniform(4, 40, 1, 2), ...uniform(5, 40, 5, 6)].map(
      (value, index) => ({
        type: "prediction",
        predictionUuid: `u-${index}`,
        modelCrn: modelCrn("iris"),
        startTimeStampMs: 1000 + index,
        endTimeStampMs: 1001 + index,
        metrics: { input: { petal_length: value } },
      }),
    );
    rows.push({ ...(rows[0] as MetricsRow), type: "aggregate", metrics: { accuracy: 1 } });
    const report = driftOf(rows, "petal_length");
    expect(report.baseline.count + report.current.count).toBe(80);
    expect(report.psi).toBeGreaterThan(1);
    const early = driftOf(rows, "petal_length", 1020);
    expect(early.baseline.count).toBe(20);
    expect(early.psi).toBeGreaterThan(report.psi / 10);
    expect(() => driftOf(rows, "sepal_width")).toThrow(/0 predictions .* "sepal_width"/);
  });
});
