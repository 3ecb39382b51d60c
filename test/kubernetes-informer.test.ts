// The informer's bookkeeping against a scripted API server (no control plane): what a list
// after 410 Gone reports, how a periodic list that is older or newer than the watch is merged
// without undoing what the watch knows, the resume point, the backoff, and stop(). The same
// informer against a real API server: test/k8s-informer.test.ts.
import { describe, expect, it } from "vitest";
import {
  type Change,
  Informer,
  type InformerClient,
  type InformerTimings,
} from "../controller/platform/kubernetes/informer.ts";
import { eventually } from "./helpers/replica.ts";

interface Item {
  metadata: { name: string; namespace: string; resourceVersion: string };
}

const item = (name: string, version: number): Item => ({
  metadata: { name, namespace: "ns", resourceVersion: String(version) },
});

type Emit = (line: object) => void;
/** One watch: emits lines, then returns (the server's normal end) or throws (a broken watch). */
type WatchScript = (emit: Emit, signal: AbortSignal) => Promise<void>;

/** Never answers; rejects once `signal` aborts (as the real client does, even if it already has). */
const hang = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => {
    if (signal.aborted) reject(new Error("aborted"));
    signal.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
  });

/** An API server that answers lists and watches from scripts, in order; then hangs. */
class ScriptedServer {
  readonly watchPaths: string[] = [];
  private readonly lists: { version: number; items: Item[] }[];
  private readonly watches: WatchScript[];
  constructor(lists: { version: number; items: Item[] }[], watches: WatchScript[]) {
    this.lists = lists;
    this.watches = watches;
  }

  readonly client = {
    request: async (_method: string, _path: string, ...rest: unknown[]) => {
      const signal = (rest[2] as { signal: AbortSignal }).signal;
      const next = this.lists.shift();
      if (!next) return hang(signal);
      return {
        kind: "ConfigMapList",
        apiVersion: "v1",
        metadata: { resourceVersion: String(next.version) },
        items: next.items,
      };
    },
    stream: async (path: string, options: { signal: AbortSignal; onLine(line: string): void }) => {
      this.watchPaths.push(path);
      const next = this.watches.shift();
      if (!next) return hang(options.signal);
      await next((line) => {
        options.onLine(JSON.stringify(line));
      }, options.signal);
    },
  } as unknown as InformerClient;
}

const event = (type: string, object: Item) => ({ type, object });

const refused: WatchScript = async () => {
  throw new Error("connect ECONNREFUSED 127.0.0.1:6443");
};

function follow(server: ScriptedServer, timings: Partial<InformerTimings> = {}) {
  const log: string[] = [];
  const changes: string[] = [];
  const informer = new Informer<Item>({
    client: server.client,
    path: "/api/v1/namespaces/ns/configmaps",
    resource: "ConfigMaps in ns",
    log: (line) => log.push(line),
    timings: { relistIntervalMs: 3_600_000, ...timings },
  });
  informer.onChange(({ type, object }: Change<Item>) =>
    changes.push(`${type} ${object.metadata.name}@${object.metadata.resourceVersion}`),
  );
  const cache = () =>
    informer
      .list()
      .map((object) => `${object.metadata.name}@${object.metadata.resourceVersion}`)
      .sort();
  return { informer, log, changes, cache };
}

describe("Informer bookkeeping (a scripted API server)", () => {
  it("after 410 Gone, lists again and reports the adds, updates and deletes the list implies", async () => {
    const server = new ScriptedServer(
      [
        { version: 10, items: [item("a", 5), item("b", 6), item("d", 7)] },
        { version: 20, items: [item("a", 11), item("b", 15), item("c", 18)] },
      ],
      [
        async (emit) => {
          emit(event("MODIFIED", item("a", 11)));
          emit({ type: "ERROR", object: { code: 410, reason: "Expired", message: "too old" } });
        },
      ],
    );
    const { informer, log, changes, cache } = follow(server);
    await informer.start();
    await eventually(() => informer.stats.expiredRelists === 1);
    await eventually(() => server.watchPaths.length === 2);
    await informer.stop();
    expect(changes).toEqual([
      "add a@5",
      "add b@6",
      "add d@7",
      "update a@11",
      "update b@15",
      "add c@18",
      "delete d@7",
    ]);
    expect(cache()).toEqual(["a@11", "b@15", "c@18"]);
    expect(server.watchPaths[1]).toContain("resourceVersion=20");
    expect(log).toEqual(["watch of ConfigMaps in ns: too old; listing again"]);
    expect(informer.stats).toMatchObject({ lists: 2, restarts: 0 });
  });

  it("merges a periodic list older than the watch without undoing what the watch saw", async () => {
    const server = new ScriptedServer(
      [
        { version: 10, items: [item("a", 5), item("y", 8)] },
        // Taken at 11: y not yet deleted, x not yet made.
        { version: 11, items: [item("a", 5), item("y", 11)] },
      ],
      [
        async (emit, signal) => {
          emit(event("MODIFIED", item("y", 11)));
          emit(event("ADDED", item("x", 12)));
          emit(event("DELETED", item("y", 13)));
          await hang(signal);
        },
      ],
    );
    const { informer, changes, cache } = follow(server, { relistIntervalMs: 20 });
    await informer.start();
    await eventually(() => informer.stats.lists === 2);
    await informer.stop();
    expect(changes).toEqual(["add a@5", "add y@8", "update y@11", "add x@12", "delete y@13"]);
    expect(cache()).toEqual(["a@5", "x@12"]);
    expect(informer.stats).toMatchObject({ watches: 1, restarts: 0 });
  });

  it("ignores the watch's late events once a newer periodic list has been merged", async () => {
    let release = () => {};
    const listed = new Promise<void>((resolve) => {
      release = resolve;
    });
    const server = new ScriptedServer(
      [
        { version: 10, items: [item("a", 5)] },
        { version: 20, items: [item("a", 15), item("b", 18)] },
      ],
      [
        async (emit, signal) => {
          await listed;
          emit(event("MODIFIED", item("a", 12)));
          emit(event("ADDED", item("c", 14)));
          emit(event("DELETED", item("c", 16)));
          emit(event("ADDED", item("b", 18)));
          emit(event("MODIFIED", item("b", 21)));
          await hang(signal);
        },
      ],
    );
    const { informer, changes, cache } = follow(server, { relistIntervalMs: 20 });
    await informer.start();
    await eventually(() => informer.stats.lists === 2);
    release();
    await eventually(() => changes.length === 4);
    await informer.stop();
    expect(changes).toEqual(["add a@5", "update a@15", "add b@18", "update b@21"]);
    expect(cache()).toEqual(["a@15", "b@21"]);
  });

  it("resumes after the server's normal end from the last bookmark, with no list and no log", async () => {
    const server = new ScriptedServer(
      [{ version: 10, items: [] }],
      [
        async (emit) => emit({ type: "BOOKMARK", object: item("", 30) }),
        async (emit) => emit(event("ADDED", item("a", 31))),
      ],
    );
    const { informer, log, changes } = follow(server);
    await informer.start();
    await eventually(() => server.watchPaths.length === 3);
    await informer.stop();
    expect(server.watchPaths.map((path) => /resourceVersion=(\d+)/.exec(path)?.[1])).toEqual([
      "10",
      "30",
      "31",
    ]);
    expect(server.watchPaths[0]).toMatch(/watch=1&.*allowWatchBookmarks=true&timeoutSeconds=\d+/);
    expect(changes).toEqual(["add a@31"]);
    expect(log).toEqual([]);
    expect(informer.stats).toMatchObject({ lists: 1, watchTimeouts: 2, restarts: 0 });
  });

  it("backs off a broken watch, one log line per retry, and starts over after a healthy one", async () => {
    const server = new ScriptedServer(
      [{ version: 10, items: [] }],
      [refused, refused, refused, async (emit) => emit(event("ADDED", item("a", 11))), refused],
    );
    const { informer, log } = follow(server, { backoff: { initialMs: 10, maxMs: 40 } });
    await informer.start();
    await eventually(() => server.watchPaths.length === 6);
    await informer.stop();
    expect(log).toEqual(
      [10, 20, 40, 10].map(
        (ms) =>
          `watch of ConfigMaps in ns broke (connect ECONNREFUSED 127.0.0.1:6443); watching again in ${ms} ms`,
      ),
    );
    expect(informer.stats).toMatchObject({ restarts: 4, lists: 1 });
  });

  it("backs off a watch that ends at once with nothing said, rather than spinning", async () => {
    const silent: WatchScript = async () => {};
    const server = new ScriptedServer(
      [{ version: 10, items: [] }],
      [silent, silent, silent, async (emit) => emit(event("ADDED", item("a", 11)))],
    );
    const { informer, log, changes } = follow(server, { backoff: { initialMs: 10, maxMs: 40 } });
    await informer.start();
    await eventually(() => changes.length === 1);
    await informer.stop();
    // Each watch asks for its own random timeout; only the waits are the point here.
    const normalized = log.map((line) =>
      line.replace(/after \d+ ms, long before its \d+ s/, "after N ms, long before its T s"),
    );
    expect(normalized).toEqual(
      [10, 20, 40].map(
        (ms) =>
          `watch of ConfigMaps in ns broke (the watch ended after N ms, long before its T s); watching again in ${ms} ms`,
      ),
    );
  });

  it("stop() during the first list ends start() with an error", async () => {
    const server = new ScriptedServer([], []);
    const { informer } = follow(server);
    const starting = informer.start();
    await informer.stop();
    await expect(starting).rejects.toThrow(/stopped before it listed/);
  });

  it("waitFor resolves on the change it waits for, and false on its timeout", async () => {
    const server = new ScriptedServer(
      [{ version: 10, items: [] }],
      [
        async (emit, signal) => {
          await new Promise((resolve) => setTimeout(resolve, 30));
          emit(event("ADDED", item("late", 11)));
          await hang(signal);
        },
      ],
    );
    const { informer } = follow(server);
    await informer.start();
    const arrived = informer.waitFor("ns", "late", (object) => object !== undefined, {
      timeoutMs: 5000,
    });
    const never = informer.waitFor("ns", "never", (object) => object !== undefined, {
      timeoutMs: 50,
    });
    expect(await arrived).toBe(true);
    expect(await never).toBe(false);
    await informer.stop();
  });
});
