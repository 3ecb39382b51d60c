// The EventRecorder on Kubernetes: core/v1 Events about our objects, which `kubectl describe`
// and `kubectl events` show. As client-go's recorder does, the same event again (same object,
// type, reason and message) within a while bumps the existing Event's count and lastTimestamp
// instead of making another. Writes are queued and never hold up or fail a reconcile: a write
// that fails is logged (once per run of failures) and dropped. stop() lets the queue drain for a
// moment, then aborts what is left.
import { hostname } from "node:os";
import { eventLine } from "../../core/events.ts";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../../core/labels.ts";
import {
  type Clock,
  type EventRecorder,
  type EventType,
  type Resource,
  storedMetadata,
  systemClock,
} from "../../core/ports.ts";
import { API_VERSION, isNotFound, type KubeClient } from "./client.ts";

export const EVENT_COMPONENT = "modelship-controller";

/** events.k8s.io/v1 refuses a longer note; `kubectl events` shows the same text either way. */
const MAX_MESSAGE = 1024;
/** An event write that takes longer is given up (the queue must keep moving). */
const WRITE_TIMEOUT_MS = 10_000;
/** Beyond this many waiting writes, new events are dropped (the API server is not keeping up). */
const MAX_QUEUED = 1000;
/** How many recent events are remembered for aggregation. */
const MAX_REMEMBERED = 4096;
/** How long stop() waits for queued events before it aborts them. */
const DRAIN_MS = 5000;

export interface KubeEventRecorderOptions {
  clock?: Clock;
  /** The same event again within this long counts up the existing Event (default 10 min). */
  aggregateWindowMs?: number;
  /** Who reports (source.host, reportingInstance); the host name by default. */
  instance?: string;
  /** Where an object without a namespace is. */
  namespace?: string;
}

interface Occurrence {
  type: EventType;
  reason: string;
  message: string;
  involved: { kind: string; namespace: string; name: string; uid?: string };
  at: Date;
}

/** An Event already written, that a repeat may count up. */
interface Written {
  name: string;
  namespace: string;
  count: number;
  lastAt: number;
}

/** Kubernetes' Time: RFC 3339 to the second. */
function timestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The core/v1 Event for a first occurrence. */
export function eventObject(
  occurrence: Occurrence,
  name: string,
  instance: string,
): Record<string, unknown> {
  const { involved, at } = occurrence;
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      name,
      namespace: involved.namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY },
    },
    involvedObject: {
      apiVersion: API_VERSION,
      kind: involved.kind,
      namespace: involved.namespace,
      name: involved.name,
      ...(involved.uid ? { uid: involved.uid } : {}),
    },
    type: occurrence.type,
    reason: occurrence.reason,
    message: occurrence.message.slice(0, MAX_MESSAGE),
    source: { component: EVENT_COMPONENT, host: instance },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: instance,
    firstTimestamp: timestamp(at),
    lastTimestamp: timestamp(at),
    count: 1,
  };
}

export class KubeEventRecorder implements EventRecorder {
  private readonly client: KubeClient;
  private readonly log: (line: string) => void;
  private readonly clock: Clock;
  private readonly windowMs: number;
  private readonly instance: string;
  private readonly namespace: string;
  /** By what makes two events the same; oldest first, for forgetting. */
  private readonly written = new Map<string, Written>();
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private failing = false;
  private dropping = false;
  /** Makes the names of events in the same millisecond differ. */
  private sequence = 0;
  /** Aborts the writes in flight at stop(); stopped, events are only logged. */
  private readonly stopping = new AbortController();

  /** `log` gets every event as one line, and any failure to write one. */
  constructor(
    client: KubeClient,
    log: (line: string) => void,
    options: KubeEventRecorderOptions = {},
  ) {
    this.client = client;
    this.log = log;
    this.clock = options.clock ?? systemClock;
    this.windowMs = options.aggregateWindowMs ?? 10 * 60_000;
    this.instance = options.instance ?? hostname();
    this.namespace = options.namespace ?? "default";
  }

  record(object: Resource, type: EventType, reason: string, message: string): void {
    const { uid } = storedMetadata(object);
    const involved = {
      kind: object.kind,
      namespace: object.metadata.namespace ?? this.namespace,
      name: object.metadata.name,
      ...(uid ? { uid } : {}),
    };
    // The same line as the local platform's.
    this.log(eventLine({ type, reason, message, object: involved }));
    if (this.stopping.signal.aborted) return;
    if (this.queued >= MAX_QUEUED) {
      if (!this.dropping) this.log(`events: ${MAX_QUEUED} writes waiting; dropping new events`);
      this.dropping = true;
      return;
    }
    this.dropping = false;
    const occurrence: Occurrence = { type, reason, message, involved, at: this.clock.now() };
    this.queued += 1;
    this.queue = this.queue
      .then(() => this.write(occurrence))
      .then(
        () => {
          this.failing = false;
        },
        (error: unknown) => this.failed(error),
      )
      .finally(() => {
        this.queued -= 1;
      });
  }

  /** Resolves once every event recorded so far is written or dropped. */
  flush(): Promise<void> {
    return this.queue;
  }

  /** Waits up to DRAIN_MS for the queued events, then aborts the rest; later ones are logged only. */
  async stop(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const drained = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, DRAIN_MS);
    });
    await Promise.race([this.queue, drained]);
    clearTimeout(timer);
    this.stopping.abort();
    await this.queue;
  }

  private failed(error: unknown): void {
    if (this.failing || this.stopping.signal.aborted) return;
    this.failing = true;
    this.log(`events: cannot write an Event: ${(error as Error).message ?? error}`);
  }

  private async write(occurrence: Occurrence): Promise<void> {
    // Aborted by stop(): what is still queued is dropped.
    if (this.stopping.signal.aborted) return;
    const key = JSON.stringify([
      occurrence.involved,
      occurrence.type,
      occurrence.reason,
      occurrence.message,
    ]);
    const previous = this.written.get(key);
    if (previous && occurrence.at.getTime() - previous.lastAt < this.windowMs) {
      if (await this.countUp(previous, occurrence.at)) return;
    }
    const name = this.nameFor(occurrence);
    await this.client.request(
      "POST",
      `/api/v1/namespaces/${occurrence.involved.namespace}/events`,
      eventObject(occurrence, name, this.instance),
      undefined,
      { timeoutMs: WRITE_TIMEOUT_MS, signal: this.stopping.signal },
    );
    this.remember(key, {
      name,
      namespace: occurrence.involved.namespace,
      count: 1,
      lastAt: occurrence.at.getTime(),
    });
  }

  /** PATCHes count and lastTimestamp; false when the Event is gone (its TTL passed). */
  private async countUp(previous: Written, at: Date): Promise<boolean> {
    try {
      await this.client.request(
        "PATCH",
        `/api/v1/namespaces/${previous.namespace}/events/${previous.name}`,
        { count: previous.count + 1, lastTimestamp: timestamp(at) },
        "application/merge-patch+json",
        { timeoutMs: WRITE_TIMEOUT_MS, signal: this.stopping.signal },
      );
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
    previous.count += 1;
    previous.lastAt = at.getTime();
    return true;
  }

  /** `<object>.<hex nanoseconds>`, as client-go names Events. */
  private nameFor(occurrence: Occurrence): string {
    this.sequence = (this.sequence + 1) % 1_000_000;
    const nanos = BigInt(occurrence.at.getTime()) * 1_000_000n + BigInt(this.sequence);
    return `${occurrence.involved.name}.${nanos.toString(16)}`;
  }

  private remember(key: string, written: Written): void {
    this.written.delete(key);
    this.written.set(key, written);
    if (this.written.size > MAX_REMEMBERED) {
      const oldest = this.written.keys().next().value;
      if (oldest !== undefined) this.written.delete(oldest);
    }
  }
}
