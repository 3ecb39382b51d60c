// Leader election on a coordination.k8s.io Lease, so that two controller replicas never
// reconcile at once: the holder renews the Lease; another takes it only once it has expired.
// A leader that cannot renew in time stops leading and campaigns again — an API server that was
// away for a while must not leave the installation with no controller at all — and one that
// stops cleanly gives the lease up, so that another takes over at once (client-go's
// ReleaseOnCancel).
import { hostname } from "node:os";
import { isConflict, isNotFound, type KubeClient } from "./client.ts";

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface LeaderOptions {
  namespace: string;
  name?: string;
  identity?: string;
  leaseSeconds?: number;
  renewSeconds?: number;
  now?: () => Date;
}

/** Whether `identity` may take the lease now: it holds it, nobody does, or it has expired. */
export function mayAcquire(lease: Lease["spec"], identity: string, now: Date): boolean {
  if (!lease.holderIdentity || lease.holderIdentity === identity) return true;
  const renewed = Date.parse(lease.renewTime ?? lease.acquireTime ?? "");
  if (Number.isNaN(renewed)) return true;
  return renewed + (lease.leaseDurationSeconds ?? 15) * 1000 < now.getTime();
}

export class LeaderElector {
  private readonly client: KubeClient;
  readonly identity: string;
  private readonly options: Required<Omit<LeaderOptions, "identity">>;
  private lastRenewal = 0;
  /** When the API server last answered an attempt, whoever held the lease (0: never). */
  private lastContact = 0;
  /** This process holds the lease (as of its last attempt). */
  private holding = false;
  /** Who held the lease at the last attempt ("" when nobody did). */
  private lastHolder = "";

  constructor(client: KubeClient, options: LeaderOptions) {
    this.client = client;
    this.identity = options.identity ?? `${hostname()}-${process.pid}`;
    this.options = {
      namespace: options.namespace,
      name: options.name ?? "modelship-controller",
      leaseSeconds: options.leaseSeconds ?? 15,
      renewSeconds: options.renewSeconds ?? 5,
      now: options.now ?? (() => new Date()),
    };
  }

  /** One attempt's requests end within a renew period: a hung one must not outlast the lease. */
  private requestOptions(signal?: AbortSignal): { timeoutMs: number; signal?: AbortSignal } {
    return { timeoutMs: this.options.renewSeconds * 1000, ...(signal ? { signal } : {}) };
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.options.namespace}/leases`;
  }

  /** One attempt to take or renew the lease; true when this process holds it afterwards. */
  async tryAcquire(signal?: AbortSignal): Promise<boolean> {
    const now = this.options.now();
    let lease: Lease | undefined;
    try {
      lease = await this.client.request<Lease>(
        "GET",
        `${this.path}/${this.options.name}`,
        undefined,
        undefined,
        this.requestOptions(signal),
      );
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    this.lastContact = this.options.now().getTime();
    this.lastHolder = lease?.spec.holderIdentity ?? "";
    if (lease && !mayAcquire(lease.spec, this.identity, now)) return false;
    const changedHands = lease?.spec.holderIdentity !== this.identity;
    const spec: Lease["spec"] = {
      holderIdentity: this.identity,
      leaseDurationSeconds: this.options.leaseSeconds,
      acquireTime: changedHands
        ? now.toISOString()
        : (lease?.spec.acquireTime ?? now.toISOString()),
      renewTime: now.toISOString(),
      leaseTransitions: (lease?.spec.leaseTransitions ?? 0) + (lease && changedHands ? 1 : 0),
    };
    // Microsecond timestamps are what the Lease API wants.
    spec.acquireTime = toMicroTime(spec.acquireTime as string);
    spec.renewTime = toMicroTime(spec.renewTime as string);
    const body = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        name: this.options.name,
        namespace: this.options.namespace,
        ...(lease?.metadata.resourceVersion
          ? { resourceVersion: lease.metadata.resourceVersion }
          : {}),
      },
      spec,
    };
    try {
      if (lease) {
        await this.client.request(
          "PUT",
          `${this.path}/${this.options.name}`,
          body,
          undefined,
          this.requestOptions(signal),
        );
      } else {
        await this.client.request("POST", this.path, body, undefined, this.requestOptions(signal));
      }
    } catch (error) {
      // Someone else wrote the lease between our read and write: they win this round.
      if (isConflict(error)) return false;
      throw error;
    }
    this.lastRenewal = now.getTime();
    this.holding = true;
    this.lastHolder = this.identity;
    return true;
  }

  /**
   * Whether this process is healthy as a member of the election: the API server answered it
   * within the last lease duration (as leader or as standby alike).
   */
  get inContact(): boolean {
    return this.options.now().getTime() - this.lastContact < this.options.leaseSeconds * 1000;
  }

  /** Who held the lease when this process last looked ("" for nobody). */
  get holder(): string {
    return this.lastHolder;
  }

  /** Campaigns until this process holds the lease (true) or `signal` aborts (false). */
  async acquire(signal: AbortSignal): Promise<boolean> {
    for (;;) {
      if (signal.aborted) return false;
      if (await this.tryAcquire(signal).catch(() => false)) return true;
      await pause(this.options.renewSeconds * 1000, signal);
    }
  }

  /**
   * Renews the lease every renew period until it is lost — not renewed within two thirds of its
   * duration, so that this process stops before another may take over — or `signal` aborts.
   */
  async hold(signal: AbortSignal): Promise<"lost" | "stopped"> {
    const renewDeadlineMs = (this.options.leaseSeconds * 1000 * 2) / 3;
    for (;;) {
      await pause(this.options.renewSeconds * 1000, signal);
      if (signal.aborted) return "stopped";
      // An attempt may not run past the renew deadline: a renewal that hangs must not keep this
      // process reconciling after another one may have taken the lease.
      const remainingMs = this.lastRenewal + renewDeadlineMs - this.options.now().getTime();
      if (remainingMs <= 0 || !(await this.renewWithin(remainingMs, signal))) {
        if (this.options.now().getTime() - this.lastRenewal >= renewDeadlineMs) {
          this.holding = false;
          return "lost";
        }
      }
    }
  }

  /** One renewal that ends within `ms` (or when `signal` aborts); true when it renewed. */
  private async renewWithin(ms: number, signal: AbortSignal): Promise<boolean> {
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(new Error("the renew deadline passed")), ms);
    const onStop = () => attempt.abort(signal.reason);
    signal.addEventListener("abort", onStop, { once: true });
    try {
      return await this.tryAcquire(attempt.signal).catch(() => false);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onStop);
    }
  }

  /** Gives the lease up, if this process holds it: the next candidate need not wait it out. */
  async release(): Promise<void> {
    if (!this.holding) return;
    this.holding = false;
    try {
      const lease = await this.client.request<Lease>(
        "GET",
        `${this.path}/${this.options.name}`,
        undefined,
        undefined,
        this.requestOptions(),
      );
      if (lease.spec.holderIdentity !== this.identity) return;
      const now = toMicroTime(this.options.now().toISOString());
      await this.client.request(
        "PUT",
        `${this.path}/${this.options.name}`,
        {
          ...lease,
          spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: now },
        },
        undefined,
        this.requestOptions(),
      );
    } catch {
      // Not given up: the lease expires on its own.
    }
  }
}

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

function toMicroTime(iso: string): string {
  return iso.replace(/\.(\d{3})Z$/, ".$1000Z");
}
