// The local platform's EventRecorder: events go into the local store (where `modelship describe`
// reads them, as `kubectl describe` reads Events) and, once each, to the console.
import { eventLine } from "../../core/events.ts";
import { keyOf } from "../../core/keys.ts";
import {
  type EventRecorder,
  type EventType,
  type Resource,
  storedMetadata,
} from "../../core/ports.ts";
import type { LocalStore } from "./store.ts";

export class LocalEventRecorder implements EventRecorder {
  private readonly store: LocalStore;
  private readonly log: (line: string) => void;

  constructor(store: LocalStore, log: (line: string) => void) {
    this.store = store;
    this.log = log;
  }

  record(object: Resource, type: EventType, reason: string, message: string): void {
    const key = keyOf(object);
    const uid = storedMetadata(object).uid;
    const record = this.store.recordEvent({
      type,
      reason,
      message,
      object: { kind: key.kind, namespace: key.namespace, name: key.name, ...(uid ? { uid } : {}) },
    });
    // A repeat only counts up: the console says it once.
    if (record.count !== 1) return;
    this.log(eventLine(record));
    // A failed build's last lines are what its author needs to fix it: printed whole, once, on
    // the build's own event (its Model's and deployments' carry the same message).
    if (type === "Warning" && key.kind === "ModelBuild") {
      for (const line of message.split("\n").slice(1)) this.log(`  ${line}`);
    }
  }
}
