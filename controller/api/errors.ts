// The data plane's error registry: every error a caller can get, with a stable code and its
// HTTP status. The gateway and the replica agent answer only with these codes, and
// docs/gateway.md lists them; a test reaches each one.

export const CALLER_ERRORS = {
  "request.invalid_json": 400,
  "request.too_large": 413,
  "request.invalid_input": 400,
  "auth.missing_key": 401,
  "auth.invalid_key": 401,
  "auth.expired_key": 401,
  "auth.forbidden": 403,
  "model.not_found": 404,
  "model.stopped": 503,
  "model.unavailable": 503,
  "model.busy": 429,
  "model.timeout": 504,
  "model.error": 500,
  "model.unexpected_shutdown": 502,
  "model.response_too_large": 502,
  /** The metrics API: ground truth for a uuid no stored prediction has. */
  "metrics.unknown_prediction": 404,
  /** The metrics API: the gateway has no metrics store, or it fails. */
  "metrics.unavailable": 503,
} as const;

/**
 * Answers only the replica agent gives, to whoever calls it directly: a gateway that gets one
 * tries another replica, so callers of the gateway never see them.
 */
export const REPLICA_ERRORS = {
  "replica.busy": 503,
  "replica.not_ready": 503,
  /** The agent has a gateway secret and the call did not carry it (or carried another). */
  "replica.forbidden": 403,
} as const;

export type CallerErrorCode = keyof typeof CALLER_ERRORS;
export type ReplicaErrorCode = keyof typeof REPLICA_ERRORS;
export type ErrorCode = CallerErrorCode | ReplicaErrorCode;

export const ERROR_STATUS: Record<ErrorCode, number> = { ...CALLER_ERRORS, ...REPLICA_ERRORS };

/**
 * Whether a code is one an agent sends: `ok` (a result) or a code of this registry. An answer
 * with any other code, or none, comes from something that is not a modelship agent.
 */
export function isKnownCode(code: string): boolean {
  return code === "ok" || Object.hasOwn(ERROR_STATUS, code);
}

/** The `error` member of the answer body when `success` is false. */
export interface ErrorBody {
  success: false;
  error: ErrorCode;
  /** A sentence a person can act on: what failed and what to do. */
  message: string;
  /** When the function raised (`model.error`): its exception. */
  exception?: { type: string; message: string; traceback?: string };
  replicaId?: string;
  uuid?: string;
  /** For `request.invalid_input`: where the request differs from the model's inputSchema. */
  problems?: string[];
}

/** Header that carries the answer's code (`ok` or an error code), so that a proxy need not parse the body. */
export const CODE_HEADER = "x-modelship-code";
/** Header that carries the prediction's uuid from the gateway to the replica. */
export const UUID_HEADER = "x-modelship-uuid";
/** The agent's answer header with the metrics a prediction tracked (JSON, ASCII). */
export const METRICS_HEADER = "x-modelship-metrics";
/** Beside it: what the replica serves, `build=3; deployment=iris; deploymentId=4`. */
export const SERVES_HEADER = "x-modelship-serves";
/** Header that carries the route's replica secret from the gateway to the replica. */
export const GATEWAY_SECRET_HEADER = "x-modelship-gateway-secret";
