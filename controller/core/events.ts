// How an event reads as one line of a log, the same on both platforms.
import type { EventRecord } from "./ports.ts";

/** `Kind namespace/name: Reason: message` with the message's first line (Warnings marked). */
export function eventLine(
  event: Pick<EventRecord, "type" | "reason" | "message" | "object">,
): string {
  const { kind, namespace, name } = event.object;
  const first = event.message.split("\n")[0] ?? "";
  const mark = event.type === "Warning" ? "WARNING " : "";
  return `${mark}${kind} ${namespace}/${name}: ${event.reason}: ${first}`;
}
