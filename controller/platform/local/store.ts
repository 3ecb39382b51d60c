// The local platform's Store: the objects in memory, written to one JSON file in the state
// directory after every change, so a restart of `modelship up` finds its builds, numbers and
// deployments again. Same semantics as the API server where the reconcilers rely on them:
// generation grows on spec changes only, status is a subresource, every change is an event.
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Kind } from "../../api/schemas.ts";
import type { Resource, ResourceOf, Store, StoredMetadata, WatchEvent } from "../ports.ts";

interface StoreFile {
  version: 1;
  resourceVersion: number;
  lastDeploymentId: number;
  objects: Resource[];
}

type StoredResource = Resource & { metadata: Resource["metadata"] & StoredMetadata };

function keyOf(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

/** JSON with sorted keys, so that equal values compare equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_, item) =>
    item && typeof item === "object" && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => a.localeCompare(b)))
      : item,
  );
}

export class LocalStore implements Store {
  private readonly file: string | undefined;
  private readonly objects = new Map<string, StoredResource>();
  private readonly listeners = new Set<(event: WatchEvent) => void>();
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
    let data: StoreFile;
    try {
      data = JSON.parse(readFileSync(file, "utf8")) as StoreFile;
    } catch (error) {
      throw new Error(
        `the state file ${file} is damaged (${(error as Error).message}); move it away to start afresh`,
      );
    }
    this.resourceVersion = data.resourceVersion;
    this.lastDeploymentId = data.lastDeploymentId;
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
    };
    mkdirSync(dirname(this.file), { recursive: true });
    // Write then rename: a crash mid-write leaves the previous file whole.
    const temporary = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(data));
    renameSync(temporary, this.file);
  }

  private emit(event: WatchEvent): void {
    for (const listener of this.listeners) listener(event);
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

  async apply<R extends Resource>(object: R): Promise<R> {
    const namespace = object.metadata.namespace ?? "default";
    const key = keyOf(object.kind, namespace, object.metadata.name);
    const existing = this.objects.get(key);
    const labels = object.metadata.labels;
    const annotations = object.metadata.annotations;
    if (!existing) {
      const created = {
        apiVersion: object.apiVersion,
        kind: object.kind,
        metadata: {
          name: object.metadata.name,
          namespace,
          ...(labels ? { labels } : {}),
          ...(annotations ? { annotations } : {}),
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
    if (!labels) delete updated.metadata.labels;
    if (!annotations) delete updated.metadata.annotations;
    this.objects.set(key, updated);
    this.save();
    this.emit({ type: "MODIFIED", object: structuredClone(updated) });
    return structuredClone(updated) as unknown as R;
  }

  async patchStatus<K extends Kind>(
    kind: K,
    namespace: string,
    name: string,
    status: NonNullable<ResourceOf[K]["status"]>,
  ): Promise<ResourceOf[K]> {
    const key = keyOf(kind, namespace, name);
    const existing = this.objects.get(key);
    if (!existing) throw new Error(`${kind} ${namespace}/${name} does not exist`);
    if (canonicalJson(existing.status ?? {}) === canonicalJson(status)) {
      return structuredClone(existing) as unknown as ResourceOf[K];
    }
    const updated = {
      ...existing,
      metadata: { ...existing.metadata, resourceVersion: this.nextVersion() },
      status: structuredClone(status),
    } as StoredResource;
    this.objects.set(key, updated);
    this.save();
    this.emit({ type: "MODIFIED", object: structuredClone(updated) });
    return structuredClone(updated) as unknown as ResourceOf[K];
  }

  async delete(kind: Kind, namespace: string, name: string): Promise<boolean> {
    const key = keyOf(kind, namespace, name);
    const existing = this.objects.get(key);
    if (!existing) return false;
    this.objects.delete(key);
    this.resourceVersion += 1;
    this.save();
    this.emit({ type: "DELETED", object: existing });
    return true;
  }

  watch(listener: (event: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async allocateDeploymentId(): Promise<number> {
    this.lastDeploymentId += 1;
    this.save();
    return this.lastDeploymentId;
  }
}
