// Leader election against a scripted API server (the real one is in kubernetes.test.ts and
// kubernetes-outage.test.ts): what the elector does when renewals fail or hang, when it is stopped,
// and how it gives the lease up.
import { describe, expect, it } from "vitest";
import type { KubeClient } from "../controller/platform/kubernetes/client.ts";
import { LeaderElector } from "../controller/platform/kubernetes/leader.ts";

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: Record<string, unknown>;
}

/** An API server with one Lease, whose writes can be made to fail or hang. */
function scripted(mode: { writes: "ok" | "fail" | "hang" }) {
  let lease: Lease | undefined;
  const writes: Record<string, unknown>[] = [];
  const client = {
    async request(
      method: string,
      _path: string,
      body?: unknown,
      _type?: string,
      options: { signal?: AbortSignal } = {},
    ) {
      if (method === "GET") {
        if (!lease) throw Object.assign(new Error("not found"), { status: 404 });
        return structuredClone(lease);
      }
      if (mode.writes === "fail") throw new Error("connect ECONNREFUSED");
      if (mode.writes === "hang") {
        return new Promise((_, reject) =>
          options.signal?.addEventListener("abort", () => reject(new Error("aborted"))),
        );
      }
      const next = body as Lease;
      writes.push(next.spec);
      lease = { ...next, metadata: { ...next.metadata, resourceVersion: String(writes.length) } };
      return lease;
    },
  } as unknown as KubeClient;
  return { client, writes, lease: () => lease };
}

const options = { namespace: "ns", identity: "me", leaseSeconds: 3, renewSeconds: 0.2 };

describe("LeaderElector", () => {
  it.each<["fail" | "hang"]>([["fail"], ["hang"]])(
    "stops leading within its renew deadline when renewals %s",
    async (writes) => {
      const mode: { writes: "ok" | "fail" | "hang" } = { writes: "ok" };
      const server = scripted(mode);
      const elector = new LeaderElector(server.client, options);
      expect(await elector.acquire(new AbortController().signal)).toBe(true);
      mode.writes = writes;
      const started = Date.now();
      expect(await elector.hold(new AbortController().signal)).toBe("lost");
      // The renew deadline is two thirds of the 3 s lease: lost before the lease runs out.
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(1800);
      expect(elapsed).toBeLessThan(3000);
    },
    10_000,
  );

  it("keeps leading while renewals succeed, and stops at once when told", async () => {
    const server = scripted({ writes: "ok" });
    const elector = new LeaderElector(server.client, options);
    const stop = new AbortController();
    expect(await elector.acquire(stop.signal)).toBe(true);
    const holding = elector.hold(stop.signal);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    stop.abort();
    expect(await holding).toBe("stopped");
    expect(server.writes.length).toBeGreaterThanOrEqual(4);
  });

  it("gives the lease up on release, so that the next candidate need not wait", async () => {
    const server = scripted({ writes: "ok" });
    const elector = new LeaderElector(server.client, options);
    await elector.acquire(new AbortController().signal);
    await elector.release();
    expect(server.lease()?.spec).toMatchObject({ holderIdentity: "", leaseDurationSeconds: 1 });
    const other = new LeaderElector(server.client, { ...options, identity: "other" });
    expect(await other.tryAcquire()).toBe(true);
  });

  it("campaigns until stopped when the lease is someone else's", async () => {
    const server = scripted({ writes: "ok" });
    const holder = new LeaderElector(server.client, { ...options, identity: "holder" });
    await holder.acquire(new AbortController().signal);
    const stop = new AbortController();
    const campaign = new LeaderElector(server.client, options).acquire(stop.signal);
    setTimeout(() => stop.abort(), 500);
    expect(await campaign).toBe(false);
  });
});
