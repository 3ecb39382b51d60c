// The answer to send when a call — to a model, or to the metrics API — fails before a replica
// is involved: a code of the error registry, its message, and what else the body carries.
import type { ErrorCode } from "../api/errors.ts";

export class CallError extends Error {
  readonly code: ErrorCode;
  readonly extra: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, extra?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.extra = extra;
  }
}
