// What the pages share: live lists of objects (a watch), answers polled while a page shows them,
// and the route in the location's hash.
import { useEffect, useState } from "preact/hooks";
import { api, followLines } from "./api.ts";
import type { Resource } from "./types.ts";

export interface Live<T> {
  items: T[];
  /** False until the watch has sent what there is. */
  loaded: boolean;
}

interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: T;
}

/**
 * The objects of a kind, kept current by the admin API's watch (`?watch=1`): the list arrives as
 * ADDED events, then each change as it happens. Sorted by name.
 */
export function useWatch<T extends Resource>(plural: string): Live<T> {
  const [live, setLive] = useState<Live<T>>({ items: [], loaded: false });
  useEffect(() => {
    const abort = new AbortController();
    let objects = new Map<string, T>();
    let flush: number | undefined;
    // A list of hundreds of objects arrives as hundreds of events: one render for them all.
    const publish = () => {
      flush ??= window.setTimeout(() => {
        flush = undefined;
        const items = [...objects.values()].sort((a, b) =>
          a.metadata.name.localeCompare(b.metadata.name),
        );
        setLive({ items, loaded: true });
      }, 30);
    };
    void followLines<WatchEvent<T>>(
      `/api/v1/${plural}?watch=1`,
      (event) => {
        if (event.type === "DELETED") objects.delete(event.object.metadata.name);
        else objects.set(event.object.metadata.name, event.object);
        publish();
      },
      abort.signal,
      () => {
        // A new connection starts with the whole list again.
        objects = new Map();
        publish();
      },
    );
    return () => {
      abort.abort();
      window.clearTimeout(flush);
    };
  }, [plural]);
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
      .map(decodeURIComponent) ?? [];
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
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
