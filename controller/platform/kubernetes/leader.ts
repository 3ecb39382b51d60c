// Leader election on a coordination.k8s.io Lease, so that two controller replicas never
// reconcile at once: the holder renews the Lease; another takes it only once it has expired.
// A leader that cannot renew in time stops leading (the caller exits, as controller-runtime does).
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
  private timer: NodeJS.Timeout | undefined;
  private lastRenewal = 0;

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

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.options.namespace}/leases`;
  }

  /** One attempt to take or renew the lease; true when this process holds it afterwards. */
  async tryAcquire(): Promise<boolean> {
    const now = this.options.now();
    let lease: Lease | undefined;
    try {
      lease = await this.client.request<Lease>("GET", `${this.path}/${this.options.name}`);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
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
      if (lease) await this.client.request("PUT", `${this.path}/${this.options.name}`, body);
      else await this.client.request("POST", this.path, body);
    } catch (error) {
      // Someone else wrote the lease between our read and write: they win this round.
      if (isConflict(error)) return false;
      throw error;
    }
    this.lastRenewal = now.getTime();
    return true;
  }

  /** Resolves once this process leads; then renews, and calls `onLost` if it stops leading. */
  async lead(onLost: () => void): Promise<void> {
    while (!(await this.tryAcquire().catch(() => false))) {
      await new Promise((resolve) => setTimeout(resolve, this.options.renewSeconds * 1000));
    }
    this.timer = setInterval(async () => {
      const held = await this.tryAcquire().catch(() => false);
      const expired =
        this.options.now().getTime() - this.lastRenewal > this.options.leaseSeconds * 1000;
      if (!held && expired) {
        clearInterval(this.timer);
        onLost();
      }
    }, this.options.renewSeconds * 1000);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function toMicroTime(iso: string): string {
  return iso.replace(/\.(\d{3})Z$/, ".$1000Z");
}
