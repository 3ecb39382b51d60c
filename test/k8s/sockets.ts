// This process's own TCP connections, read from /proc (Linux): what a test checks to prove that a
// client closed its sockets, whatever Node keeps in its handle lists.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** Socket inodes of this process's open file descriptors. */
function socketInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (match?.[1]) inodes.add(match[1]);
    } catch {
      // The descriptor was closed between the listing and the read.
    }
  }
  return inodes;
}

/**
 * This process's TCP connections (in any state) to `port` on the loopback interface, as
 * `local-port` strings: a socket only counts while this process still holds its descriptor.
 */
export function connectionsTo(port: number): string[] {
  const mine = socketInodes();
  const found: string[] = [];
  for (const table of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.trim().split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const fields = line.trim().split(/\s+/);
      const [local = "", remote = "", inode = ""] = [fields[1], fields[2], fields[9]];
      const remotePort = Number.parseInt(remote.split(":")[1] ?? "", 16);
      if (remotePort === port && mine.has(inode)) {
        found.push(String(Number.parseInt(local.split(":")[1] ?? "", 16)));
      }
    }
  }
  return found;
}
