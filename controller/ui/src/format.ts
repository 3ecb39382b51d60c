// Small formatting helpers the pages share.
import { conditionOf } from "../../api/conditions.ts";
import { formatAge } from "../../core/age.ts";
import type { Condition, Resource } from "./types.ts";

/** "45s", "12m", "3h", "5d" since `time`, as kubectl's AGE column (and `modelship get`). */
export function age(time: string | undefined, now: number): string {
  return time ? formatAge(time, new Date(now)) : "—";
}

/** A timestamp in the viewer's time zone, to the second. */
export function when(time: string | undefined): string {
  if (!time) return "—";
  const date = new Date(time);
  return Number.isNaN(date.getTime()) ? time : date.toLocaleString();
}

/** How long from `start` to `end` (or to now): "12s", "3m 4s". */
export function duration(start: string | undefined, end: string | undefined, now: number): string {
  if (!start) return "—";
  const seconds = Math.max(
    0,
    Math.round(((end ? Date.parse(end) : now) - Date.parse(start)) / 1000),
  );
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
}

export const shortCommit = (commit: string | undefined) => (commit ? commit.slice(0, 7) : "—");

export function readyCondition(object: {
  status?: { conditions?: Condition[] };
}): Condition | undefined {
  return conditionOf(object.status?.conditions, "Ready");
}

/** Where an object is declared: `path:line` from its modelship.dev/manifest annotation. */
export function manifestOf(object: Resource): { path: string; line: number } | undefined {
  const value = object.metadata.annotations?.["modelship.dev/manifest"];
  const match = value ? /^(.*):(\d+)$/.exec(value) : null;
  return match ? { path: match[1] as string, line: Number(match[2]) } : undefined;
}

export const commitOf = (object: Resource) => object.metadata.annotations?.["modelship.dev/commit"];

/** A plain value as block YAML: maps and lists indented, scalars as JSON (valid YAML 1.2). */
export function toYaml(value: unknown, indent = ""): string {
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return value
      .map((item) => {
        const text = toYaml(item, `${indent}  `);
        return `\n${indent}- ${isBlock(item) ? text.trimStart() : text}`;
      })
      .join("");
  }
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (entries.length === 0) return "{}";
    return entries
      .map(([key, item]) => {
        const name = /^[A-Za-z_][A-Za-z0-9_./-]*$/.test(key) ? key : JSON.stringify(key);
        return `\n${indent}${name}:${isBlock(item) ? "" : " "}${toYaml(item, `${indent}  `)}`;
      })
      .join("");
  }
  if (
    typeof value === "string" &&
    /^[A-Za-z][A-Za-z0-9 ._/-]*$/.test(value) &&
    !/^(true|false|null|yes|no|on|off|y|n)$/i.test(value)
  ) {
    return value;
  }
  return JSON.stringify(value) ?? "null";
}

const isBlock = (value: unknown) =>
  value !== null &&
  typeof value === "object" &&
  (Array.isArray(value) ? value.length > 0 : Object.keys(value).length > 0);
