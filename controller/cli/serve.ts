// What the long-running commands (replica, gateway) share: listening on 127.0.0.1 and stopping
// cleanly on Ctrl-C or SIGTERM.
import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

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

/** Listens and returns the URL; port 0 picks a free port, which the URL then names. */
export async function listen(server: Server, host: string, port: number): Promise<string> {
  server.listen(port, host);
  await Promise.race([
    once(server, "listening"),
    once(server, "error").then(([error]) => {
      throw new Error(`cannot listen on ${host}:${port}: ${(error as Error).message}`);
    }),
  ]);
  const address = server.address() as AddressInfo;
  return `http://${host}:${address.port}`;
}

/** Resolves with the first SIGINT or SIGTERM. */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(signal);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

/** Stops taking connections, lets answers in flight finish, then closes idle keep-alives. */
export async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  await closed;
}
