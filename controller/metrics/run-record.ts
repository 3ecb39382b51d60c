// An experiment run's record as it arrives from another process (the admin API's POST
// /api/v1/runs): checked field by field, so that a bad one is refused naming the field rather than
// by a constraint of the database.
import type { RunFile, RunRecord } from "./port.ts";

const COMMIT = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function text(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`"${field}" must be a non-empty string`);
  }
  return value;
}

function wholeNumber(body: Record<string, unknown>, field: string, minimum: number): number {
  const value = body[field];
  if (!Number.isSafeInteger(value) || (value as number) < minimum) {
    throw new TypeError(`"${field}" must be an integer of at least ${minimum}`);
  }
  return value as number;
}

function fileOf(value: unknown, index: number): RunFile {
  const where = `"files"[${index}]`;
  if (!isRecord(value) || typeof value.name !== "string" || value.name === "") {
    throw new TypeError(`${where} must be an object with a "name"`);
  }
  if (typeof value.tracked !== "boolean") throw new TypeError(`${where}.tracked must be a boolean`);
  if (
    value.size !== undefined &&
    !(Number.isSafeInteger(value.size) && (value.size as number) >= 0)
  ) {
    throw new TypeError(`${where}.size must be a byte count`);
  }
  return {
    name: value.name,
    ...(value.size === undefined ? {} : { size: value.size as number }),
    tracked: value.tracked,
  };
}

/** The run record in `body`, or a TypeError naming the first field that is wrong. */
export function runRecordOf(body: unknown): RunRecord {
  if (!isRecord(body)) throw new TypeError("a run's record is a JSON object");
  const commit = body.commit;
  if (commit !== undefined && !(typeof commit === "string" && COMMIT.test(commit))) {
    throw new TypeError('"commit" must be a git commit id (40 or 64 hex digits)');
  }
  if (typeof body.dirty !== "boolean") throw new TypeError('"dirty" must be a boolean');
  const args = body.args;
  if (!Array.isArray(args) || !args.every((arg) => typeof arg === "string")) {
    throw new TypeError('"args" must be a list of strings');
  }
  const status = body.status;
  if (status !== "succeeded" && status !== "failed") {
    throw new TypeError('"status" must be "succeeded" or "failed"');
  }
  const exitCode = wholeNumber(body, "exitCode", 0);
  if ((status === "succeeded") !== (exitCode === 0)) {
    throw new TypeError(`"status" ${status} does not go with "exitCode" ${exitCode}`);
  }
  if (!isRecord(body.metrics)) throw new TypeError('"metrics" must be an object');
  if (!Array.isArray(body.files)) throw new TypeError('"files" must be a list');
  return {
    model: text(body, "model"),
    repository: text(body, "repository"),
    sourcePath: text(body, "sourcePath"),
    ...(commit === undefined ? {} : { commit: commit as string }),
    dirty: body.dirty,
    script: text(body, "script"),
    args: args as string[],
    status,
    exitCode,
    startedMs: wholeNumber(body, "startedMs", 0),
    durationMs: wholeNumber(body, "durationMs", 0),
    metrics: body.metrics,
    files: body.files.map(fileOf),
    environment: text(body, "environment"),
  };
}
