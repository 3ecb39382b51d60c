// The gateway's metrics API (docs/metrics.md#http-api), which the SDK's read_metrics,
// track_delayed_metrics and track_aggregate_metrics call; model API keys authenticate it.
//   GET  /model-metrics?modelCrn=&modelBuildCrn=&modelDeploymentCrn=&startTimestampMs=&endTimestampMs=&limit=&cursor=
//   POST /model-metrics/delayed    {"predictionUuid": "...", "metrics": {...}}
//   POST /model-metrics/aggregate  {"metrics": {...}, "startTimestampMs": n, "endTimestampMs": n, "modelDeploymentCrn": "..."}
import type { IncomingMessage, ServerResponse } from "node:http";
import { isRecord } from "../api/canonical-json.ts";
import { ERROR_STATUS } from "../api/errors.ts";
import { errorBody, jsonTopLevelMembers, readBody, sendJson } from "../api/http.ts";
import { parseCrn } from "../metrics/crn.ts";
import type { MetricsPage, MetricsQuery, MetricsStore, MetricsSubject } from "../metrics/port.ts";
import { CallError } from "./call-error.ts";
import type { MetricsRecorder } from "./metrics-recorder.ts";

export const METRICS_API_PREFIX = "/model-metrics";
/** A delayed or aggregate metric's body: metrics, not payloads. */
const METRICS_BODY_LIMIT_BYTES = 1024 * 1024;
/** How long a ground truth waits for its prediction to be written by any gateway's buffer. */
const PREDICTION_WAIT_MS = 2000;

export interface MetricsApiContext {
  store: MetricsStore;
  recorder: MetricsRecorder;
  /** The user of the request's model API key; throws a CallError (401) without one. */
  authenticate(authorization: string | undefined): string;
  /**
   * Throws a CallError unless `user` may use `model`'s metrics: a model served here, whose
   * spec.authentication.users (when it has them) lists the user.
   */
  authorize(user: string, model: string): void;
  now(): number;
}

/** Answers one request under /model-metrics; resolves with the code answered. */
export async function serveMetricsApi(
  context: MetricsApiContext,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
): Promise<string> {
  try {
    const route = `${request.method} ${url.pathname}`;
    if (route === `GET ${METRICS_API_PREFIX}`) return await read(context, request, response, url);
    if (route === `POST ${METRICS_API_PREFIX}/delayed`) {
      return await trackDelayed(context, request, response);
    }
    if (route === `POST ${METRICS_API_PREFIX}/aggregate`) {
      return await trackAggregate(context, request, response);
    }
    throw new CallError(
      "request.invalid_input",
      `no route for ${route}: the metrics API has GET ${METRICS_API_PREFIX}, POST ${METRICS_API_PREFIX}/delayed and POST ${METRICS_API_PREFIX}/aggregate`,
    );
  } catch (error) {
    const failure = error instanceof CallError ? error : storeFailure(error);
    if (!response.headersSent) {
      sendJson(
        response,
        ERROR_STATUS[failure.code],
        errorBody(failure.code, failure.message),
        failure.code,
      );
    }
    return failure.code;
  }
}

/**
 * What a store's error means for the caller: the request's fault (a bad cursor, a value the
 * database cannot hold: PostgreSQL's data exceptions, class 22) is a 400 naming it; anything
 * else is the store failing.
 */
function storeFailure(error: unknown): CallError {
  const message = (error as Error).message ?? String(error);
  const code = (error as { code?: unknown }).code;
  if (error instanceof RangeError || (typeof code === "string" && code.startsWith("22"))) {
    return new CallError("request.invalid_input", `the metrics store refused it: ${message}`);
  }
  return new CallError("metrics.unavailable", `the metrics store failed: ${message}`);
}

async function read(
  context: MetricsApiContext,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
): Promise<string> {
  const user = context.authenticate(request.headers.authorization);
  const query = metricsQueryOf(url.searchParams);
  context.authorize(user, query.model);
  // What this gateway still holds is written first: CDSW's scripts read right after calling.
  if (context.recorder.pending > 0) await context.recorder.flush().catch(() => {});
  const page = await context.store.read(query);
  sendJson(response, 200, metricsPageJson(page), "ok");
  return "ok";
}

/** A read's answer: CDSW's `{"metrics": [...]}`, and `next` when there is more. */
export function metricsPageJson(page: MetricsPage): string {
  return JSON.stringify({ metrics: page.rows, ...(page.next ? { next: page.next } : {}) });
}

/**
 * A read's query from its parameters: modelCrn, modelBuildCrn, modelDeploymentCrn,
 * startTimestampMs, endTimestampMs, limit and cursor. Throws a CallError naming the one
 * that is wrong.
 */
export function metricsQueryOf(parameters: URLSearchParams): MetricsQuery {
  const subject = subjectOf({
    modelCrn: parameters.get("modelCrn"),
    modelBuildCrn: parameters.get("modelBuildCrn"),
    modelDeploymentCrn: parameters.get("modelDeploymentCrn"),
  });
  const since = millisecondsParameter(parameters, "startTimestampMs");
  const until = millisecondsParameter(parameters, "endTimestampMs");
  const limit = parameters.get("limit");
  if (limit !== null && !/^[1-9][0-9]{0,4}$/.test(limit)) {
    throw new CallError(
      "request.invalid_input",
      `limit must be a whole number from 1 to 10000, not "${limit}"`,
    );
  }
  const cursor = parameters.get("cursor");
  return {
    ...subject,
    ...(since === undefined ? {} : { sinceMs: since }),
    ...(until === undefined ? {} : { untilMs: until }),
    ...(limit === null ? {} : { limit: Math.min(Number(limit), 10_000) }),
    ...(cursor === null ? {} : { cursor }),
  };
}

async function trackDelayed(
  context: MetricsApiContext,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<string> {
  const user = context.authenticate(request.headers.authorization);
  const { body, text } = await jsonBody(request);
  const shape = `POST ${METRICS_API_PREFIX}/delayed takes {"predictionUuid": "<the prediction's uuid>", "metrics": {...}}`;
  const uuid = body.predictionUuid;
  if (typeof uuid !== "string" || !/^[0-9a-f-]{36}$/i.test(uuid)) {
    throw new CallError("request.invalid_input", `"predictionUuid" is not a uuid: ${shape}`);
  }
  if (!isRecord(body.metrics)) {
    throw new CallError("request.invalid_input", `"metrics" is not an object: ${shape}`);
  }
  // The metrics' own text, so that numbers JSON.parse would round are stored as written.
  const span = jsonTopLevelMembers(text)?.get("metrics") as { start: number; end: number };
  const metricsJson = text.slice(span.start, span.end);
  const subject = await findPrediction(context, uuid.toLowerCase());
  context.authorize(user, subject.model);
  if (!(await context.store.trackDelayed(uuid.toLowerCase(), metricsJson, context.now()))) {
    throw unknownPrediction(uuid);
  }
  sendJson(response, 200, '{"success":true}', "ok");
  return "ok";
}

/**
 * The stored prediction with this uuid. Ground truth can come right after its prediction:
 * this gateway's buffer is written first, and another gateway's is waited for a moment.
 */
async function findPrediction(context: MetricsApiContext, uuid: string): Promise<MetricsSubject> {
  const deadline = Date.now() + PREDICTION_WAIT_MS;
  for (let attempt = 0; ; attempt++) {
    const found = await context.store.prediction(uuid);
    if (found) return found;
    if (attempt === 0 && context.recorder.pending > 0) {
      await context.recorder.flush();
      continue;
    }
    if (Date.now() >= deadline) throw unknownPrediction(uuid);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function unknownPrediction(uuid: string): CallError {
  return new CallError(
    "metrics.unknown_prediction",
    `no prediction with uuid ${uuid} tracked metrics: the uuid is in the model's answer ("uuid") when its function is decorated with model_metrics`,
  );
}

async function trackAggregate(
  context: MetricsApiContext,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<string> {
  const user = context.authenticate(request.headers.authorization);
  const { body } = await jsonBody(request);
  const shape = `POST ${METRICS_API_PREFIX}/aggregate takes {"metrics": {...}, "startTimestampMs": N, "endTimestampMs": N, "modelDeploymentCrn": "..."} (or modelBuildCrn, modelCrn)`;
  const subject = subjectOf(body);
  context.authorize(user, subject.model);
  if (!isRecord(body.metrics)) {
    throw new CallError("request.invalid_input", `"metrics" is not an object: ${shape}`);
  }
  const startMs = body.startTimestampMs;
  const endMs = body.endTimestampMs;
  if (!isMilliseconds(startMs) || !isMilliseconds(endMs) || endMs < startMs) {
    throw new CallError(
      "request.invalid_input",
      `"startTimestampMs" and "endTimestampMs" must be ms since the epoch, the end not before the start: ${shape}`,
    );
  }
  const id = await context.store.trackAggregate({
    ...subject,
    startMs,
    endMs,
    metrics: body.metrics,
  });
  sendJson(response, 201, JSON.stringify({ success: true, id }), "ok");
  return "ok";
}

/**
 * The subject the CRNs name. CDSW's scripts pass more than one (model_crn with
 * model_deployment_crn): they must name the same model, and together they narrow it — a build's
 * CRN and a deployment's read what that build answered in that deployment.
 */
export function subjectOf(fields: Record<string, unknown>): MetricsSubject {
  const given = (["modelDeploymentCrn", "modelBuildCrn", "modelCrn"] as const).filter(
    (name) => fields[name] !== undefined && fields[name] !== null && fields[name] !== "",
  );
  if (given.length === 0) {
    throw new CallError(
      "request.invalid_input",
      "name what the metrics are of: modelCrn, modelBuildCrn or modelDeploymentCrn (modelship describe shows them)",
    );
  }
  const subjects = given.map((name) => {
    const value = fields[name];
    const subject = typeof value === "string" ? parseCrn(value) : `${name} is not a string`;
    if (typeof subject === "string") {
      throw new CallError("request.invalid_input", `${name}: ${subject}`);
    }
    return subject;
  });
  const models = new Set(subjects.map((subject) => subject.model));
  if (models.size > 1) {
    throw new CallError(
      "request.invalid_input",
      `${given.join(" and ")} name different models (${[...models].join(", ")})`,
    );
  }
  const merged: MetricsSubject = { model: subjects[0]?.model as string };
  for (const subject of subjects) {
    for (const field of ["build", "deployment", "deploymentId"] as const) {
      const value = subject[field];
      if (value === undefined) continue;
      if (merged[field] !== undefined && merged[field] !== value) {
        throw new CallError(
          "request.invalid_input",
          `${given.join(" and ")} name different ${field === "deploymentId" ? "rollouts" : `${field}s`}`,
        );
      }
      Object.assign(merged, { [field]: value });
    }
  }
  return merged;
}

async function jsonBody(
  request: IncomingMessage,
): Promise<{ body: Record<string, unknown>; text: string }> {
  let text: string;
  try {
    text = await readBody(request, METRICS_BODY_LIMIT_BYTES);
  } catch {
    throw new CallError(
      "request.too_large",
      `a metrics body takes at most ${METRICS_BODY_LIMIT_BYTES / 1024 / 1024} MB`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new CallError(
      "request.invalid_json",
      `the body is not JSON: ${(error as Error).message}`,
    );
  }
  if (!isRecord(body))
    throw new CallError("request.invalid_input", "the body is not a JSON object");
  return { body, text };
}

function isMilliseconds(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

function millisecondsParameter(parameters: URLSearchParams, name: string): number | undefined {
  const value = parameters.get(name);
  if (value === null || value === "") return undefined;
  if (!/^[0-9]{1,16}$/.test(value)) {
    throw new CallError(
      "request.invalid_input",
      `${name} must be ms since the epoch, not "${value}"`,
    );
  }
  return Number(value);
}
