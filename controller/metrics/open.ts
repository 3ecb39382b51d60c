// Which metrics store a process uses, from its settings (docs/metrics.md#settings): a
// PostgreSQL server when a URL is given (the cluster's), else PGlite in a directory of the
// state dir (`modelship up`'s). And the retention pass that keeps the store's size in check.
import type { MetricsStore } from "./port.ts";
import { openEmbeddedMetricsStore, openPostgresMetricsStore } from "./sql-store.ts";

export interface MetricsStoreSetting {
  /** postgres://… — a PostgreSQL server. */
  url?: string;
  /** PGlite's data directory, when there is no URL. */
  directory?: string;
}

/** The default retention of predictions at full detail: older ones are rolled up hourly. */
export const DEFAULT_RETENTION_MS = 30 * 24 * 3600 * 1000;
const HOUR_MS = 3600 * 1000;

/**
 * A --metrics-url flag's value, refused when it carries a password: a command line is readable
 * by every user of the machine (/proc/PID/cmdline), model code included. The environment
 * variable is not.
 */
export function metricsUrlFlag(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  let password = "";
  try {
    password = new URL(url).password;
  } catch {
    throw new Error("--metrics-url must be a URL: postgres://user@host:5432/database");
  }
  if (password !== "") {
    throw new Error(
      "--metrics-url must not carry a password (any user of this machine can read a command line): put the URL in MODELSHIP_METRICS_URL instead",
    );
  }
  return url;
}

export async function openConfiguredMetricsStore(
  setting: MetricsStoreSetting,
): Promise<MetricsStore> {
  if (setting.url) {
    if (!/^postgres(ql)?:\/\//.test(setting.url)) {
      // The URL may hold a password: never repeat it.
      throw new Error("the metrics store URL must start with postgres:// or postgresql://");
    }
    return openPostgresMetricsStore(setting.url);
  }
  if (!setting.directory) throw new Error("a metrics store needs a URL or a directory");
  return openEmbeddedMetricsStore(setting.directory);
}

/**
 * Rolls predictions older than `retentionMs` up into hourly aggregates now and every hour;
 * returns the function that stops it. A failed pass is logged and tried at the next.
 */
export function startRetention(
  store: MetricsStore,
  retentionMs: number,
  log: (line: string) => void,
  now: () => number = Date.now,
): () => void {
  const pass = async () => {
    try {
      const result = await store.rollUp(now() - retentionMs);
      if (result.predictions > 0) {
        log(
          `metrics: rolled ${result.predictions} predictions older than the retention up into ${result.hours} hourly aggregates`,
        );
      }
    } catch (error) {
      log(
        `metrics: the retention pass failed (tried again in an hour): ${(error as Error).message}`,
      );
    }
  };
  void pass();
  const timer = setInterval(pass, HOUR_MS);
  timer.unref();
  return () => clearInterval(timer);
}
