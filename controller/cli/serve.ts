// What the long-running commands (up, replica, gateway, controller) share: their port and
// number flags, and stopping cleanly on Ctrl-C or SIGTERM. Listening and closing are
// controller/api/http.ts's, below every part that serves HTTP.
import { parseDurationMs } from "../api/duration.ts";

export function parsePort(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new Error(`${flag} must be a port number (0 picks a free one), not "${text}"`);
  }
  return port;
}

export function parsePositive(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${flag} must be a positive number, not "${text}"`);
  }
  return value;
}

/** A duration flag (`30m`, `90s`, `1h30m`) in milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms <= 0) {
    throw new Error(`${flag} must be a duration such as 90s, 30m or 1h30m, not "${text}"`);
  }
  return ms;
}

/**
 * Resolves with the first SIGINT or SIGTERM, and stays listening: a second one exits at once
 * (Ctrl-C twice). The listener must stay: execa's child cleanup (signal-exit) re-raises a
 * signal it finds no other listener for, which would kill the process mid-stop.
 */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const stop = (signal: NodeJS.Signals) => {
      if (received) process.exit(signal === "SIGINT" ? 130 : 143);
      received = true;
      resolve(signal);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
