// The local platform's Store: the objects in memory, written to one JSON file in the state
// directory after every change, so a restart of `modelship up` finds its builds, numbers and
// deployments again. Same semantics as the API server where the reconcilers rely on them:
// generation grows on spec changes only, status is a subresource, every change is an event, and
// a delete waits for finalizers. It also keeps the events (the records `describe` shows), as the
// API server keeps Events.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { canonicalJson, isRecord } from "../../api/canonical-json.ts";
import type { Kind } from "../../api/schemas.ts";
import { NotFoundError } from "../../core/errors.ts";
import { OPERATION_ANNOTATIONS } from "../../core/labels.ts";
import type {
  CallOptions,
  EventRecord,
  Resource,
  ResourceOf,
  Store,
  StoredMetadata,
  WatchEvent,
} from "../../core/ports.ts";
import { readStateFile, writeFileAtomic } from "./state-files.ts";

interface StoreFile {
  version: 1;
  resourceVersion: number;
  lastDeploymentId: number;
  objects: Resource[];
  events?: EventRecord[];
}

type StoredResource = Resource & { metadata: Resource["metadata"] & StoredMetadata };

/** Events kept, the oldest dropped first (the API server keeps them for an hour). */
const MAX_EVENTS = 1000;

/** What is wrong with a state file's content, if anything. */
export function storeFileProblem(value: unknown): string | undefined {
  if (!isRecord(value)) return "not an object";
  if (value.version !== 1) return `version ${JSON.stringify(value.version)}, not 1`;
  for (const field of ["resourceVersion", "lastDeploymentId"]) {
    if (!Number.isInteger(value[field])) return `no whole number "${field}"`;
  }
  if (!Array.isArray(value.objects)) return 'no "objects" list';
  const bad = value.objects.findIndex(
    (object) =>
      !isRecord(object) ||
      typeof object.kind !== "string" ||
      !isRecord(object.metadata) ||
      typeof object.metadata.name !== "string",
  );
  if (bad !== -1) return `object ${bad} has no kind or name`;
  if (value.events !== undefined && !Array.isArray(value.events)) return '"events" is not a list';
  return undefined;
}

function keyOf(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

export class LocalStore implements Store {
  private readonly file: string | undefined;
  private readonly objects = new Map<string, StoredResource>();
  private readonly listeners = new Set<(event: WatchEvent) => void>();
  private events: EventRecord[] = [];
  private resourceVersion = 0;
  private lastDeploymentId = 0;
  private readonly now: () => Date;

  /** `file` undefined keeps everything in memory (tests). */
  constructor(file?: string, now: () => Date = () => new Date()) {
    this.file = file;
    this.now = now;
    if (file && existsSync(file)) this.load(file);
  }

  private load(file: string): void {
    const data = readStateFile<StoreFile>(
      file,
      storeFileProblem,
      "every build, deployment and event it holds is forgotten, and all is built again",
    );
    this.resourceVersion = data.resourceVersion;
    this.lastDeploymentId = data.lastDeploymentId;
    this.events = data.events ?? [];
    for (const object of data.objects as StoredResource[]) {
      const { kind, metadata } = object;
      this.objects.set(keyOf(kind, metadata.namespace ?? "default", metadata.name), object);
    }
  }

  private save(): void {
    if (!this.file) return;
    const data: StoreFile = {
      version: 1,
      resourceVersion: this.resourceVersion,
      lastDeploymentId: this.lastDeploymentId,
      objects: [...this.objects.values()],
      events: this.events,
    };
    // 0600: the objects carry spec.env, which may hold what only the model should know.
    writeFileAtomic(this.file, JSON.stringify(data), 0o600);
  }

  private emit(event: WatchEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** The store's resourceVersion now: a list's, as the API server gives one. */
  get currentVersion(): string {
    return String(this.resourceVersion);
  }

  private nextVersion(): string {
    this.resourceVersion += 1;
    return String(this.resourceVersion);
  }

  get<K extends Kind>(kind: K, namespace: string, name: string): ResourceOf[K] | undefined {
    const object = this.objects.get(keyOf(kind, namespace, name));
    return object ? (structuredClone(object) as unknown as ResourceOf[K]) : undefined;
  }

  list<K extends Kind>(kind: K, namespace?: string): ResourceOf[K][] {
    const found: ResourceOf[K][] = [];
    for (const object of this.objects.values()) {
      if (object.kind !== kind) continue;
      if (namespace !== undefined && (object.metadata.namespace ?? "default") !== namespace)
        continue;
      found.push(structuredClone(object) as unknown as ResourceOf[K]);
    }
    return found.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  async apply<R extends Resource>(object: R, _options?: CallOptions): Promise<R> {
    const namespace = object.metadata.namespace ?? "default";
    const key = keyOf(object.kind, namespace, object.metadata.name);
    const existing = this.objects.get(key);
    const labels = object.metadata.labels;
    const declaredAnnotations = object.metadata.annotations;
    if (!existing) {
      const created = {
        apiVersion: object.apiVersion,
        kind: object.kind,
        metadata: {
          name: object.metadata.name,
          namespace,
          ...(labels ? { labels } : {}),
          ...(declaredAnnotations ? { annotations: declaredAnnotations } : {}),
          uid: randomUUID(),
          generation: 1,
          resourceVersion: this.nextVersion(),
          creationTimestamp: this.now().toISOString(),
        },
        spec: structuredClone(object.spec),
        ...(object.status ? { status: structuredClone(object.status) } : {}),
      } as StoredResource;
      this.objects.set(key, created);
      this.save();
      this.emit({ type: "ADDED", object: structuredClone(created) });
      return structuredClone(created) as unknown as R;
    }
    const annotations = keptOperationAnnotations(
      existing.metadata.annotations,
      declaredAnnotations,
    );
    const specChanged = canonicalJson(existing.spec) !== canonicalJson(object.spec);
    const metadataChanged =
      canonicalJson(existing.metadata.labels ?? {}) !== canonicalJson(labels ?? {}) ||
      canonicalJson(existing.metadata.annotations ?? {}) !== canonicalJson(annotations ?? {});
    if (!specChanged && !metadataChanged) return structuredClone(existing) as unknown as R;
    const updated = {
      ...existing,
      metadata: {
        ...existing.metadata,
        labels,
        annotations,
        generation: existing.metadata.generation + (specChanged ? 1 : 0),
        resourceVersion: this.nextVersion(),
      },
      spec: structuredClone(object.spec),
    } as StoredResource;
    for (const field of ["labels", "annotations"] as const) {
      if (updated.metadata[field] === undefined) delete updated.metadata[field];
    }
    this.replace(key, updated);
    return structuredClone(updated) as unknown as R;
  }

  /**
   * Sets annotations on an object without touching the rest: an operation (`modelship rollout
   * restart`), not a sync. The next sync keeps them unless git declares them (labels.ts).
   */
  async annotate(
    kind: Kind,
    namespace: string,
    name: string,
    annotations: Record<string, string>,
  ): Promise<Resource> {
    const existing = this.existing(kind, namespace, name);
    const updated = {
      ...existing,
      metadata: {
        ...existing.metadata,
        annotations: { ...existing.metadata.annotations, ...annotations },
        resourceVersion: this.nextVersion(),
      },
    } as StoredResource;
    this.replace(keyOf(kind, namespace, name), updated);
    return structuredClone(updated) as unknown as Resource;
  }

  /** Stores a changed object and tells the watchers. */
  private replace(key: string, updated: StoredResource): void {
    this.objects.set(key, updated);
    this.save();
    this.emit({ type: "MODIFIED", object: structuredClone(updated) });
  }

  private existing(kind: Kind, namespace: string, name: string): StoredResource {
    const found = this.objects.get(keyOf(kind, namespace, name));
    if (!found) throw new NotFoundError(`${kind} ${namespace}/${name} does not exist`);
    return found;
  }

  async patchStatus<K extends Kind>(
    kind: K,
    namespace: string,
    name: string,
    status: NonNullable<ResourceOf[K]["status"]>,
    _options?: CallOptions,
  ): Promise<ResourceOf[K]> {
    const existing = this.existing(kind, namespace, name);
    if (canonicalJson(existing.status ?? {}) === canonicalJson(status)) {
      return structuredClone(existing) as unknown as ResourceOf[K];
    }
    const updated = {
      ...existing,
      metadata: { ...existing.metadata, resourceVersion: this.nextVersion() },
      status: structuredClone(status),
    } as StoredResource;
    this.replace(keyOf(kind, namespace, name), updated);
    return structuredClone(updated) as unknown as ResourceOf[K];
  }

  async delete(
    kind: Kind,
    namespace: string,
    name: string,
    options: CallOptions & { uid?: string } = {},
  ): Promise<boolean> {
    const key = keyOf(kind, namespace, name);
    const existing = this.objects.get(key);
    if (!existing || (options.uid !== undefined && existing.metadata.uid !== options.uid)) {
      return false;
    }
    if ((existing.metadata.finalizers ?? []).length > 0) {
      // As the API server does: the object stays, marked, until its finalizers are removed.
      if (!existing.metadata.deletionTimestamp) {
        this.replace(key, {
          ...existing,
          metadata: {
            ...existing.metadata,
            deletionTimestamp: this.now().toISOString(),
            resourceVersion: this.nextVersion(),
          },
        } as StoredResource);
      }
      return true;
    }
    this.remove(key, existing);
    return true;
  }

  private remove(key: string, existing: StoredResource): void {
    this.objects.delete(key);
    this.resourceVersion += 1;
    this.save();
    this.emit({ type: "DELETED", object: existing });
  }

  async setFinalizer(
    kind: Kind,
    namespace: string,
    name: string,
    finalizer: string,
    present: boolean,
    _options?: CallOptions,
  ): Promise<void> {
    const existing = this.existing(kind, namespace, name);
    const current = existing.metadata.finalizers ?? [];
    if (current.includes(finalizer) === present) return;
    if (present && existing.metadata.deletionTimestamp) {
      throw new Error(`${kind} ${namespace}/${name} is being deleted: no finalizer can be added`);
    }
    const finalizers = present
      ? [...current, finalizer]
      : current.filter((item) => item !== finalizer);
    const key = keyOf(kind, namespace, name);
    if (finalizers.length === 0 && existing.metadata.deletionTimestamp) {
      this.remove(key, existing);
      return;
    }
    const metadata = { ...existing.metadata, resourceVersion: this.nextVersion(), finalizers };
    if (finalizers.length === 0) delete (metadata as Partial<StoredMetadata>).finalizers;
    this.replace(key, { ...existing, metadata } as StoredResource);
  }

  watch(listener: (event: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async allocateDeploymentId(_options?: CallOptions): Promise<number> {
    this.lastDeploymentId += 1;
    this.save();
    return this.lastDeploymentId;
  }

  /**
   * Keeps an event; the same event again for the same object (type, reason, message) counts up
   * the last record instead of adding one, as Kubernetes' event recorder does.
   */
  recordEvent(event: Omit<EventRecord, "count" | "firstTimestamp" | "lastTimestamp">): EventRecord {
    const time = this.now().toISOString();
    const last = this.events.findLast(
      (record) =>
        record.object.kind === event.object.kind &&
        record.object.namespace === event.object.namespace &&
        record.object.name === event.object.name,
    );
    if (
      last &&
      last.object.uid === event.object.uid &&
      last.type === event.type &&
      last.reason === event.reason &&
      last.message === event.message
    ) {
      last.count += 1;
      last.lastTimestamp = time;
      this.save();
      return { ...last };
    }
    const record: EventRecord = { ...event, count: 1, firstTimestamp: time, lastTimestamp: time };
    this.events.push(record);
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    this.save();
    return { ...record };
  }

  /** Events, oldest first; of one object (kind, namespace, name) when given. */
  listEvents(object?: { kind: string; namespace: string; name: string }): EventRecord[] {
    return this.events
      .filter(
        (record) =>
          !object ||
          (record.object.kind === object.kind &&
            record.object.namespace === object.namespace &&
            record.object.name === object.name),
      )
      .map((record) => ({ ...record }));
  }
}

/** The annotations a sync stores: what it declares, plus the operations' it does not declare. */
function keptOperationAnnotations(
  live: Record<string, string> | undefined,
  declared: Record<string, string> | undefined,
): Record<string, string> | undefined {
  const kept = OPERATION_ANNOTATIONS.filter(
    (key) => live?.[key] !== undefined && declared?.[key] === undefined,
  );
  if (kept.length === 0) return declared;
  return { ...declared, ...Object.fromEntries(kept.map((key) => [key, live?.[key] as string])) };
}
