// One informer for every kind the Kubernetes platform follows: list (optionally by label
// selector), then watch from the list's resourceVersion, into a cache with add/update/delete
// listeners. It is ours rather than @kubernetes/client-node's so that its failure modes are
// known and tested:
//
// - each watch asks the API server to end it after a random 5–10 minutes (`timeoutSeconds`);
//   that end is normal: the next watch resumes from the last resourceVersion (or bookmark)
//   without a list and without a log line;
// - `410 Gone` (the resourceVersion is older than the server keeps) lists again and tells the
//   listeners what the new list implies (adds, updates, deletes);
// - a broken watch (connection refused or reset, the API server down) is retried with
//   exponential backoff, one log line per retry naming the resource and the reason;
// - now and then (10 minutes by default) a list is compared with the cache, to find an event a
//   watch might have missed, while the watch goes on;
// - stop() aborts the request in flight at once: no socket is left open.
//
// resourceVersions are compared as numbers: etcd's revisions, as every etcd-backed API server
// serves them (the read-your-writes wait relies on the same).
import { setTimeout as sleep } from "node:timers/promises";
import { isGone, type KubeClient, KubeError } from "./client.ts";

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
    finalizers?: string[];
  };
}

export type ChangeType = "add" | "update" | "delete";

export interface Change<T> {
  type: ChangeType;
  object: T;
  /** The cached object an update replaced. */
  previous?: T;
}

export interface InformerTimings {
  /** How often a list is compared with the cache (the watch is left running). */
  relistIntervalMs: number;
  /** Each watch asks the server to end it after a random time in this range. */
  watchTimeoutSeconds: { min: number; max: number };
  /** How long past its timeoutSeconds a watch may run before it is taken for dead. */
  watchGraceMs: number;
  /** The wait before retrying a broken watch: doubles up to `maxMs`; reset by a healthy watch. */
  backoff: { initialMs: number; maxMs: number };
  /** The deadline of each list request. */
  listTimeoutMs: number;
}

export const DEFAULT_TIMINGS: InformerTimings = {
  relistIntervalMs: 10 * 60_000,
  watchTimeoutSeconds: { min: 300, max: 600 },
  watchGraceMs: 30_000,
  backoff: { initialMs: 500, maxMs: 30_000 },
  listTimeoutMs: 60_000,
};

/** What an informer needs of the client: a list is a request, a watch a stream. */
export type InformerClient = Pick<KubeClient, "request" | "stream">;

export interface InformerOptions {
  client: InformerClient;
  /** The collection: `/apis/apps/v1/namespaces/NS/deployments`. */
  path: string;
  /** What log lines call it: `Deployments in modelship`. */
  resource: string;
  /** Only objects with these labels are listed, watched and cached. */
  labelSelector?: string;
  log?: (line: string) => void;
  timings?: Partial<InformerTimings>;
}

/** What the informer has done, for tests and metrics. */
export interface InformerStats {
  /** List requests that succeeded: the first, the periodic ones, and those after a 410. */
  lists: number;
  /** Lists made because a watch's resourceVersion had expired (410). */
  expiredRelists: number;
  /** Watch requests sent. */
  watches: number;
  /** Watches that the server ended normally (their timeoutSeconds). */
  watchTimeouts: number;
  /** Broken watches retried after a backoff (each one log line). */
  restarts: number;
}

interface WatchLine {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: unknown;
}

interface Status {
  code?: number;
  reason?: string;
  message?: string;
}

/** An object's resourceVersion as a number (0 for none). */
export function versionOf(object: KubeObject | undefined): number {
  return Number(object?.metadata.resourceVersion ?? 0);
}

function cacheKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ""}/${name}`;
}

function keyOf(object: KubeObject): string {
  return cacheKey(object.metadata.namespace, object.metadata.name);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** 500 ms, 1 s, 2 s, … up to the maximum; back to the start after a healthy watch. */
class Backoff {
  private failures = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  constructor(timings: InformerTimings["backoff"]) {
    this.initialMs = timings.initialMs;
    this.maxMs = timings.maxMs;
  }
  next(): number {
    const wait = Math.min(this.initialMs * 2 ** this.failures, this.maxMs);
    this.failures += 1;
    return wait;
  }
  reset(): void {
    this.failures = 0;
  }
}

export class Informer<T extends KubeObject> {
  readonly stats: InformerStats = {
    lists: 0,
    expiredRelists: 0,
    watches: 0,
    watchTimeouts: 0,
    restarts: 0,
  };
  private readonly client: InformerClient;
  private readonly path: string;
  private readonly resource: string;
  private readonly labelSelector: string | undefined;
  private readonly log: (line: string) => void;
  private readonly timings: InformerTimings;
  private readonly objects = new Map<string, T>();
  /**
   * Deletions the watch saw after the newest list, by key: a list older than the deletion
   * (a periodic one, while the watch runs ahead) must not bring the object back.
   */
  private readonly tombstones = new Map<string, number>();
  /** The newest list's resourceVersion: an event at or before it about an uncached object is stale. */
  private listedVersion = 0;
  /** Where the next watch starts: the last event's or bookmark's resourceVersion. */
  private watchVersion = "";
  private readonly listeners = new Set<(change: Change<T>) => void>();
  private readonly waiters = new Set<() => void>();
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  /** Lists one at a time: a periodic list never races the one after a 410. */
  private listing: Promise<void> = Promise.resolve();
  private relistTimer: NodeJS.Timeout | undefined;
  private periodicListFailing = false;

  constructor(options: InformerOptions) {
    this.client = options.client;
    this.path = options.path;
    this.resource = options.resource;
    this.labelSelector = options.labelSelector;
    this.log = options.log ?? (() => {});
    this.timings = {
      ...DEFAULT_TIMINGS,
      ...options.timings,
    };
  }

  /** Calls `listener` after every change to the cache; returns the function that stops it. */
  onChange(listener: (change: Change<T>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Lists (retrying with backoff until it works), then watches in the background. Resolves
   * once the cache holds the first list; rejects if stop() comes first.
   */
  async start(): Promise<void> {
    const backoff = new Backoff(this.timings.backoff);
    for (;;) {
      try {
        this.watchVersion = await this.relist();
        break;
      } catch (error) {
        if (this.stopped)
          throw new Error(`the informer of ${this.resource} stopped before it listed`);
        const wait = backoff.next();
        this.log(`cannot list ${this.resource} (${messageOf(error)}); trying again in ${wait} ms`);
        await this.pause(wait);
      }
    }
    this.running = this.watchWithRestart();
    this.relistTimer = setInterval(() => this.periodicRelist(), this.timings.relistIntervalMs);
    this.relistTimer.unref();
  }

  /** Aborts the watch (its socket is destroyed) and resolves once nothing runs any more. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopping.abort(new Error(`the informer of ${this.resource} stopped`));
    clearInterval(this.relistTimer);
    for (const wake of this.waiters) wake();
    await Promise.allSettled([this.running, this.listing]);
  }

  get(namespace: string, name: string): T | undefined {
    return this.objects.get(cacheKey(namespace, name));
  }

  list(namespace?: string): T[] {
    const all = [...this.objects.values()];
    return namespace === undefined
      ? all
      : all.filter((object) => object.metadata.namespace === namespace);
  }

  /**
   * Resolves true once `done(cached object)` holds (checked now and after every change),
   * false after `timeoutMs`, on abort or on stop.
   */
  waitFor(
    namespace: string,
    name: string,
    done: (object: T | undefined) => boolean,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<boolean> {
    const holds = () => done(this.get(namespace, name));
    if (holds()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (result: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        options.signal?.removeEventListener("abort", giveUp);
        resolve(result);
      };
      const check = () => {
        if (holds()) finish(true);
        else if (this.stopped) finish(false);
      };
      const giveUp = () => finish(false);
      const timer = setTimeout(giveUp, options.timeoutMs);
      options.signal?.addEventListener("abort", giveUp, { once: true });
      this.waiters.add(check);
    });
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Resolves after `ms`, or at once when the informer stops. */
  private async pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.stopping.signal }).catch(() => {});
  }

  /**
   * Watches until stop(): a normal end resumes, a 410 relists, a failure backs off and says so
   * in one log line. The backoff starts over only once a watch has proved healthy (it delivered
   * something), so a watch that opens and at once breaks cannot loop at the first wait.
   */
  private async watchWithRestart(): Promise<void> {
    const backoff = new Backoff(this.timings.backoff);
    let mustList = false;
    while (!this.stopped) {
      try {
        if (mustList) {
          this.watchVersion = await this.relist();
          this.stats.expiredRelists += 1;
          mustList = false;
        }
        await this.watchOnce(() => backoff.reset());
        this.stats.watchTimeouts += 1;
      } catch (error) {
        if (this.stopped) return;
        if (isGone(error)) {
          this.log(`watch of ${this.resource}: ${messageOf(error)}; listing again`);
          mustList = true;
          continue;
        }
        const wait = backoff.next();
        this.stats.restarts += 1;
        this.log(
          `watch of ${this.resource} broke (${messageOf(error)}); watching again in ${wait} ms`,
        );
        await this.pause(wait);
      }
    }
  }

  /** One watch request, until the server ends it (resolves) or it fails (rejects). */
  private async watchOnce(onHealthy: () => void): Promise<void> {
    const { min, max } = this.timings.watchTimeoutSeconds;
    // Random, so that the watches of many controllers do not all end (and resume) at once.
    const timeoutSeconds = Math.round(min + Math.random() * (max - min));
    const started = Date.now();
    let delivered = false;
    const query = new URLSearchParams({
      watch: "1",
      resourceVersion: this.watchVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(timeoutSeconds),
    });
    if (this.labelSelector) query.set("labelSelector", this.labelSelector);
    this.stats.watches += 1;
    await this.client.stream(`${this.path}?${query}`, {
      signal: this.stopping.signal,
      deadlineMs: timeoutSeconds * 1000 + this.timings.watchGraceMs,
      onLine: (line) => {
        this.onWatchLine(line);
        if (!delivered) onHealthy();
        delivered = true;
      },
    });
    // The server ends a watch at its timeoutSeconds; one ended long before, with nothing said,
    // is a failure (a proxy cutting it, a server going away) and must back off, not spin.
    const lasted = Date.now() - started;
    if (!delivered && lasted < (timeoutSeconds * 1000) / 2) {
      throw new Error(`the watch ended after ${lasted} ms, long before its ${timeoutSeconds} s`);
    }
  }

  private onWatchLine(line: string): void {
    const event = JSON.parse(line) as WatchLine;
    if (event.type === "ERROR") {
      const status = event.object as Status;
      throw new KubeError(status.code ?? 500, status.reason ?? "Unknown", status.message ?? line);
    }
    const object = event.object as T;
    if (event.type === "DELETED") this.remove(object);
    else if (event.type !== "BOOKMARK") this.upsert(object);
    // A bookmark only moves the resume point: nothing changed in between.
    if (object.metadata.resourceVersion) this.watchVersion = object.metadata.resourceVersion;
  }

  /**
   * A list, compared with the cache; serialised with any other list. Resolves with the list's
   * resourceVersion, where a watch may start.
   */
  private relist(): Promise<string> {
    const next = this.listing.then(() => this.listAndCompare());
    // The next list waits for this one, whatever its outcome; the caller handles the error.
    this.listing = next.then(
      () => {},
      () => {},
    );
    return next;
  }

  /** Finds what a watch might have missed; the running watch keeps its own resume point. */
  private periodicRelist(): void {
    this.relist().then(
      () => {
        this.periodicListFailing = false;
      },
      (error: unknown) => {
        if (this.stopped || this.periodicListFailing) return;
        // Once per run of failures: the watch's own retries say the rest.
        this.periodicListFailing = true;
        this.log(`periodic list of ${this.resource} failed: ${messageOf(error)}`);
      },
    );
  }

  private async listAndCompare(): Promise<string> {
    const query = this.labelSelector
      ? `?${new URLSearchParams({ labelSelector: this.labelSelector })}`
      : "";
    const answer = await this.client.request<{
      metadata: { resourceVersion: string };
      items: T[];
    }>("GET", `${this.path}${query}`, undefined, undefined, {
      signal: this.stopping.signal,
      timeoutMs: this.timings.listTimeoutMs,
    });
    this.stats.lists += 1;
    const listVersion = Number(answer.metadata.resourceVersion);
    // A list's items carry no kind: the watch's do. Keep the cache uniform.
    const kind = this.kindOf(answer as unknown as { kind?: string });
    const items = answer.items.map((item) => ({ ...kind, ...item }));
    this.applyList(items, listVersion);
    return answer.metadata.resourceVersion;
  }

  private kindOf(list: { kind?: string; apiVersion?: string }): Partial<KubeObject> {
    const kind = list.kind?.replace(/List$/, "");
    return kind ? { kind, ...(list.apiVersion ? { apiVersion: list.apiVersion } : {}) } : {};
  }

  /** Brings the cache to a list taken at `listVersion`: what it implies goes to the listeners. */
  private applyList(items: T[], listVersion: number): void {
    const listed = new Set(items.map(keyOf));
    for (const object of items) this.upsert(object);
    for (const [key, cached] of this.objects) {
      // Absent from the list: deleted, unless the watch brought it in after the list was taken.
      if (!listed.has(key) && versionOf(cached) <= listVersion) this.removeKey(key, cached);
    }
    this.listedVersion = Math.max(this.listedVersion, listVersion);
    for (const [key, version] of this.tombstones) {
      if (version <= this.listedVersion) this.tombstones.delete(key);
    }
  }

  private upsert(object: T): void {
    const key = keyOf(object);
    const previous = this.objects.get(key);
    const version = versionOf(object);
    // Older than what the cache has: a list ran ahead of the watch, or the other way round.
    if (previous && versionOf(previous) >= version) return;
    // Uncached, and no newer than the last list, which did not keep it: gone since. (The
    // list's own items pass: they are in the cache unless a newer deletion removed them.)
    if (!previous && version <= this.listedVersion) return;
    // Deleted after this version, by a deletion newer than the last list.
    if (!previous && (this.tombstones.get(key) ?? -1) >= version) return;
    this.tombstones.delete(key);
    this.objects.set(key, object);
    this.emit(previous ? { type: "update", object, previous } : { type: "add", object });
  }

  private remove(object: T): void {
    const key = keyOf(object);
    const cached = this.objects.get(key);
    const version = versionOf(object);
    this.tombstones.set(key, Math.max(version, this.tombstones.get(key) ?? 0));
    // A newer namesake, from a list taken after this deletion, stays.
    if (!cached || versionOf(cached) > version) return;
    this.removeKey(key, object);
  }

  private removeKey(key: string, last: T): void {
    this.objects.delete(key);
    this.emit({ type: "delete", object: last });
  }

  private emit(change: Change<T>): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.log(`a listener of ${this.resource} failed: ${messageOf(error)}`);
      }
    }
    for (const check of this.waiters) check();
  }
}

/** Which namespaces are followed: a list, or every namespace (one cluster-wide watch). */
export type WatchedNamespaces = readonly string[] | "all";

/**
 * One resource followed in several namespaces: an informer per namespace, or one cluster-wide
 * informer for "all" — read through one cache interface either way.
 */
export class InformerSet<T extends KubeObject> {
  private readonly byNamespace = new Map<string, Informer<T>>();
  private readonly clusterWide: Informer<T> | undefined;
  readonly watched: WatchedNamespaces;

  /** `pathOf(namespace)`: the collection in one namespace; `pathOf(undefined)`: in all. */
  constructor(
    watched: WatchedNamespaces,
    pathOf: (namespace: string | undefined) => string,
    options: Omit<InformerOptions, "path" | "resource"> & { resource: string },
  ) {
    this.watched = watched;
    if (watched === "all") {
      this.clusterWide = new Informer<T>({
        ...options,
        path: pathOf(undefined),
        resource: `${options.resource} in all namespaces`,
      });
    } else {
      for (const namespace of new Set(watched)) {
        this.byNamespace.set(
          namespace,
          new Informer<T>({
            ...options,
            path: pathOf(namespace),
            resource: `${options.resource} in ${namespace}`,
          }),
        );
      }
    }
  }

  private get informers(): Informer<T>[] {
    return this.clusterWide ? [this.clusterWide] : [...this.byNamespace.values()];
  }

  /** Whether objects of `namespace` are followed. */
  follows(namespace: string): boolean {
    return this.watched === "all" || this.byNamespace.has(namespace);
  }

  private of(namespace: string): Informer<T> | undefined {
    return this.clusterWide ?? this.byNamespace.get(namespace);
  }

  onChange(listener: (change: Change<T>) => void): void {
    for (const informer of this.informers) informer.onChange(listener);
  }

  async start(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.stop()));
  }

  get(namespace: string, name: string): T | undefined {
    return this.of(namespace)?.get(namespace, name);
  }

  list(namespace?: string): T[] {
    if (namespace !== undefined) return this.of(namespace)?.list(namespace) ?? [];
    return this.informers.flatMap((informer) => informer.list());
  }

  waitFor(
    namespace: string,
    name: string,
    done: (object: T | undefined) => boolean,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<boolean> {
    const informer = this.of(namespace);
    return informer ? informer.waitFor(namespace, name, done, options) : Promise.resolve(false);
  }
}
