// What the pages share: live lists of objects (a watch), answers polled while a page shows them,
// and the route in the location's hash.
import { useEffect, useState } from "preact/hooks";
import { KIND_NAMES } from "../../api/kinds.ts";
import { api, followLines } from "./api.ts";
import type { Resource } from "./types.ts";

export interface Live<T> {
  items: T[];
  /** False until the watch has sent what there is. */
  loaded: boolean;
}

interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK";
  object: Resource;
}

/**
 * One watch of every kind per tab (GET /api/v1/watch), shared by every component that shows a
 * list: a browser opens at most six connections to a server, and a watch holds one for good.
 * After each (re)connection the objects there are arrive first, then a BOOKMARK: only then is
 * the new list swapped in, so that a reconnection never flashes an empty page.
 */
const hub = {
  objects: new Map<string, Map<string, Resource>>(),
  loaded: false,
  listeners: new Set<() => void>(),
  abort: undefined as AbortController | undefined,
  /** Stops the watch a while after the last listener went (a page change re-subscribes). */
  idle: undefined as number | undefined,
  flush: undefined as number | undefined,
};

function publish(): void {
  // A burst of events (a list of hundreds) makes one render.
  hub.flush ??= window.setTimeout(() => {
    hub.flush = undefined;
    for (const listener of hub.listeners) listener();
  }, 30);
}

function startHub(): void {
  const abort = new AbortController();
  hub.abort = abort;
  let incoming: Map<string, Map<string, Resource>> | undefined;
  const apply = (target: Map<string, Map<string, Resource>>, event: WatchEvent) => {
    const byName = target.get(event.object.kind) ?? new Map<string, Resource>();
    target.set(event.object.kind, byName);
    if (event.type === "DELETED") byName.delete(event.object.metadata.name);
    else byName.set(event.object.metadata.name, event.object);
  };
  const following = followLines<WatchEvent>(
    "/api/v1/watch",
    (event) => {
      if (event.type === "BOOKMARK") {
        // Only the first after a (re)connection ends a list; another would be a progress mark.
        if (incoming) hub.objects = incoming;
        incoming = undefined;
        hub.loaded = true;
        publish();
      } else if (incoming) {
        apply(incoming, event);
      } else {
        apply(hub.objects, event);
        publish();
      }
    },
    abort.signal,
    () => {
      incoming = new Map();
    },
  );
  // Ended (signed out, or stopped): the next subscriber starts a new one.
  void following.finally(() => {
    if (hub.abort !== abort) return;
    hub.abort = undefined;
    hub.loaded = false;
  });
}

function subscribe(listener: () => void): () => void {
  window.clearTimeout(hub.idle);
  hub.listeners.add(listener);
  if (!hub.abort) startHub();
  return () => {
    hub.listeners.delete(listener);
    if (hub.listeners.size > 0) return;
    hub.idle = window.setTimeout(() => {
      hub.abort?.abort();
      hub.abort = undefined;
      hub.loaded = false;
      hub.objects = new Map();
    }, 10_000);
  };
}

function snapshot<T extends Resource>(kind: string): Live<T> {
  const items = [...(hub.objects.get(kind)?.values() ?? [])] as T[];
  items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  return { items, loaded: hub.loaded };
}

/** The objects of a kind (by its plural), kept current by the shared watch. Sorted by name. */
export function useWatch<T extends Resource>(plural: string): Live<T> {
  const kind = KIND_NAMES[plural] as string;
  const [live, setLive] = useState<Live<T>>(() => snapshot<T>(kind));
  useEffect(() => {
    setLive(snapshot<T>(kind));
    return subscribe(() => setLive(snapshot<T>(kind)));
  }, [kind]);
  return live;
}

export interface Polled<T> {
  data: T | undefined;
  error: string | undefined;
}

/** GETs `path` now and every `intervalMs` while the component shows (undefined path: nothing). */
export function usePoll<T>(path: string | undefined, intervalMs: number): Polled<T> {
  const [state, setState] = useState<Polled<T>>({ data: undefined, error: undefined });
  useEffect(() => {
    setState({ data: undefined, error: undefined });
    if (path === undefined) return;
    let stopped = false;
    let timer: number | undefined;
    const tick = async () => {
      try {
        const data = await api<T>(path);
        if (!stopped) setState({ data, error: undefined });
      } catch (error) {
        if (!stopped) setState((old) => ({ data: old.data, error: (error as Error).message }));
      }
      if (!stopped) timer = window.setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [path, intervalMs]);
  return state;
}

/** The route: the location's hash without "#/", split at "/" (`#/models/iris/builds`). */
export function useRoute(): string[] {
  const read = () =>
    window.location.hash
      .replace(/^#\/?/, "")
      .split("?")[0]
      ?.split("/")
      .filter(Boolean)
      .map(decodeSegment) ?? [];
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

/** A route segment as written when it is not valid percent-encoding (a hand-edited hash). */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The query after the route (`#/source?path=…&line=3`). */
export function routeQuery(): URLSearchParams {
  return new URLSearchParams(window.location.hash.split("?")[1] ?? "");
}

/** Re-renders every `ms`, for ages ("3m ago") that must move on. */
export function useTicker(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
  return now;
}
