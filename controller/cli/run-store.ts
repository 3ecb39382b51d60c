// Where `modelship run` records experiment runs and `modelship runs` reads them: the metrics
// store of the state directory (docs/metrics.md#experiments).
//
// - While a `modelship up` runs on the state directory, through its admin API: up holds its
//   PGlite store open, and PGlite is one process's (two processes on one directory would
//   corrupt it).
// - Else directly: the PostgreSQL server of --metrics-url (or MODELSHIP_METRICS_URL), or PGlite
//   in STATE/metrics, opened under the state directory's lock (up.lock, the one `up` takes), so
//   that neither a starting `up` nor another `modelship run` opens it at the same time.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseExactJson } from "../metrics/exact-json.ts";
import { openConfiguredMetricsStore } from "../metrics/open.ts";
import type { MetricsStore, Run, RunRecord, RunsQuery } from "../metrics/port.ts";
import type { AdminFile } from "../platform/local/admin.ts";
import { alive, LOCK_FILE, LockHeld, lockFile } from "../platform/local/state-files.ts";
import { chosenStateDir, defaultStateDir, realPath, runningUps } from "./state-dir.ts";

/** How often a writer waiting for the state directory's lock looks again. */
const LOCK_POLL_MS = 250;

export interface RunsAccess {
  /** Where the runs are, for people: "the metrics store of modelship up (pid 4242)", a directory. */
  where: string;
  record(record: RunRecord): Promise<number>;
  list(query?: RunsQuery): Promise<Run[]>;
  get(id: number): Promise<Run | undefined>;
}

export interface RunsStoreOptions {
  /** A PostgreSQL server to use when no `up` runs (--metrics-url, MODELSHIP_METRICS_URL). */
  metricsUrl?: string | undefined;
  /**
   * How long to wait for the state directory's lock when another process (not an `up` with an
   * admin API) holds it; 0 refuses at once.
   */
  waitMs: number;
  /** Only reads: a store that does not exist yet is not made, it holds no runs. */
  readOnly?: boolean;
}

/**
 * The state directory of a work tree's runs: --state-dir (or MODELSHIP_STATE_DIR); else that of
 * the `modelship up` following the work tree; else the one `modelship up` makes there by default
 * (branch main, path ".").
 */
export function runsStateDir(flag: string | undefined, workTree: string): string {
  const chosen = chosenStateDir(flag);
  if (chosen) return chosen;
  const url = realPath(workTree);
  const following = runningUps().filter(({ admin }) => admin.repository?.url === url);
  if (following.length > 1) {
    const listed = following.map(({ stateDir }) => `  --state-dir ${stateDir}`).join("\n");
    throw new Error(`${following.length} modelship up follow ${url}; pick one:\n${listed}`);
  }
  return following[0]?.stateDir ?? defaultStateDir({ url, branch: "main", path: "." });
}

/** The running `up` of a state directory, from its admin.json, or undefined. */
function runningAdmin(stateDir: string): AdminFile | undefined {
  try {
    const admin = JSON.parse(readFileSync(join(stateDir, "admin.json"), "utf8")) as AdminFile;
    return alive(admin.pid) ? admin : undefined;
  } catch {
    return undefined;
  }
}

function adminAccess(admin: AdminFile): RunsAccess {
  const call = async (path: string, init: RequestInit = {}): Promise<Response> => {
    try {
      return await fetch(`${admin.url}/api/v1/runs${path}`, {
        ...init,
        headers: { authorization: `Bearer ${admin.token}`, "content-type": "application/json" },
      });
    } catch {
      throw new Error(`cannot reach modelship up (pid ${admin.pid}) at ${admin.url}`);
    }
  };
  const answer = async <T>(response: Response): Promise<T> => {
    // Exactly: a metric such as 9007199254740993 keeps every digit.
    const body = parseExactJson(await response.text()) as T & { error?: string };
    if (!response.ok) {
      throw new Error(
        `modelship up (pid ${admin.pid}) answered ${response.status}: ${body.error ?? "no message"}`,
      );
    }
    return body;
  };
  return {
    where: `the metrics store of modelship up (pid ${admin.pid})`,
    async record(record) {
      const created = await call("", { method: "POST", body: JSON.stringify(record) });
      return (await answer<{ id: number }>(created)).id;
    },
    async list(query = {}) {
      const parameters = new URLSearchParams();
      if (query.model) parameters.set("model", query.model);
      if (query.limit) parameters.set("limit", String(query.limit));
      const listed = await call(parameters.size > 0 ? `?${parameters}` : "");
      return (await answer<{ items: Run[] }>(listed)).items;
    },
    async get(id) {
      const found = await call(`/${id}`);
      return found.status === 404 ? undefined : answer<Run>(found);
    },
  };
}

function storeAccess(store: MetricsStore, where: string): RunsAccess {
  return {
    where,
    record: (record) => store.recordRun(record),
    list: (query) => store.listRuns(query),
    get: (id) => store.getRun(id),
  };
}

const EMPTY: Omit<RunsAccess, "where"> = {
  record: () => Promise.reject(new Error("a read-only store records nothing")),
  list: async () => [],
  get: async () => undefined,
};

/** Runs `use` with the runs of `stateDir`, wherever they are (see the top of this file). */
export async function withRuns<T>(
  stateDir: string,
  options: RunsStoreOptions,
  use: (runs: RunsAccess) => Promise<T>,
): Promise<T> {
  const admin = runningAdmin(stateDir);
  if (admin) return use(adminAccess(admin));
  if (options.metricsUrl) {
    const store = await openConfiguredMetricsStore({ url: options.metricsUrl });
    try {
      return await use(storeAccess(store, "the PostgreSQL server of --metrics-url"));
    } finally {
      await store.close();
    }
  }
  const directory = join(stateDir, "metrics");
  if (options.readOnly && !existsSync(directory)) return use({ ...EMPTY, where: directory });
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const deadline = performance.now() + options.waitMs;
  for (;;) {
    let unlock: () => void;
    try {
      unlock = lockFile(join(stateDir, LOCK_FILE), (holder) => `locked by process ${holder}`);
    } catch (error) {
      if (!(error instanceof LockHeld)) throw error;
      // An `up` that has finished starting meanwhile takes the record through its API.
      const started = runningAdmin(stateDir);
      if (started) return use(adminAccess(started));
      if (performance.now() >= deadline) {
        throw new Error(
          `the metrics store ${directory} is in use by process ${error.pid}, which is not a modelship up serving its admin API (an up starting or stopping, or another modelship run or runs): try again when it is done`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
      continue;
    }
    try {
      const store = await openConfiguredMetricsStore({ directory });
      try {
        return await use(storeAccess(store, directory));
      } finally {
        await store.close();
      }
    } finally {
      unlock();
    }
  }
}
