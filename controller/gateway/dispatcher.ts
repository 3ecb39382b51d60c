// One model's replicas and its FIFO queue of callers. A replica takes one call at a time; a
// caller gets a free replica at once, or waits in line until one is free or its deadline passes.
// Replicas that another gateway is using (the agent said replica.busy) or that are not ready are
// held back for a short, growing while, so that no request is sent to a replica known to refuse
// it. A replica that fails (cannot be reached, stays silent, breaks the connection, is not an
// agent) is ejected, as Envoy's outlier detection does: out of rotation until a probe in the
// background finds an agent there again, so that no caller waits on it meanwhile. The gateway
// does the calls' HTTP, upstream.ts the probes' (docs/gateway.md#the-queue).
import { DEFAULT_RESPONSE_LIMIT_BYTES } from "../api/http.ts";
import type { ReplicaAddress } from "./config.ts";
import {
  type ConnectionSettings,
  PROBE_TIMEOUT_MS,
  type ReplicaChannel,
  ReplicaConnection,
  targetOf,
} from "./upstream.ts";

export interface ReplicaSlot {
  readonly id: string;
  readonly url: string;
  /** The keep-alive connection to this replica (or its agent in this process), one call at a time. */
  readonly connection: ReplicaChannel;
  /** This gateway has a call in flight on it. */
  busy: boolean;
  /** Not tried before this time (ms, performance.now()); never while ejected. */
  heldUntil: number;
  /** The last hold, doubled while the replica keeps refusing; while ejected, the probes' wait. */
  holdMs: number;
  /** Why it is out of rotation (its failure, then its last probe's); undefined while in it. */
  ejectedReason: string | undefined;
  /** The next probe of an ejected replica. */
  probeTimer: NodeJS.Timeout | undefined;
  /** Gone from the registry: dropped once its call in flight is over. */
  removed: boolean;
  /**
   * When it last answered with a result, as the dispatcher's count of them (0: never, or it
   * answered an error since; -1: it refused a call or failed since): the free replica with the
   * highest is taken first.
   */
  answeredAt: number;
}

/** Looks for an agent at a replica's address: resolves with what is wrong, or undefined. */
export type Probe = (slot: ReplicaSlot) => Promise<string | undefined>;

/** What became of a call on a replica, which decides when the replica is tried again. */
export type SlotOutcome =
  /** The replica answered with the model's result. */
  | "answered"
  /**
   * It answered, but not with a result: an error of the model's, an answer too large to pass
   * on, or one that came after its caller's deadline. Tried again at once, but not first.
   */
  | "errored"
  /** It refused: another gateway's call is in flight, or its worker is not ready. */
  | "refused"
  /**
   * No agent answer: no connection, silence past the call's timeout, a broken connection, or
   * something that is not an agent. The replica is ejected.
   */
  | "unreachable";

/** Holds after a refusal: from 1 ms, doubling, to 50 ms — short, since a call is brief. */
export const REFUSED_HOLD_MS = { first: 1, max: 50 };
/** Waits between probes of an ejected replica: 100 ms to 2 s (an agent takes time to start). */
export const PROBE_DELAY_MS = { first: 100, max: 2000 };

/**
 * The next hold after an outcome: none after an answer of any kind, else doubled within the
 * outcome's range. After "unreachable" it is the wait before the next probe.
 */
export function nextHoldMs(previous: number, outcome: SlotOutcome): number {
  if (outcome === "answered" || outcome === "errored") return 0;
  const range = outcome === "refused" ? REFUSED_HOLD_MS : PROBE_DELAY_MS;
  return Math.min(Math.max(range.first, previous * 2), range.max);
}

interface Waiter {
  resolve: (slot: ReplicaSlot | undefined) => void;
  timer: NodeJS.Timeout | undefined;
  /** The end of its wait (ms, like now()): no replica is handed to it after that. */
  deadline: number;
  settled: boolean;
}

/** How a replica is reached: over a connection to its URL unless a platform says otherwise. */
export type ChannelFactory = (
  address: ReplicaAddress,
  settings: ConnectionSettings,
) => ReplicaChannel;

export const connectionTo: ChannelFactory = (address, settings) =>
  new ReplicaConnection(targetOf(address.url), settings);

function newSlot(
  address: ReplicaAddress,
  settings: ConnectionSettings,
  channelOf: ChannelFactory,
): ReplicaSlot {
  return {
    id: address.id,
    url: address.url,
    connection: channelOf(address, settings),
    busy: false,
    heldUntil: 0,
    holdMs: 0,
    ejectedReason: undefined,
    probeTimer: undefined,
    removed: false,
    answeredAt: 0,
  };
}

export class ModelDispatcher {
  private slots: ReplicaSlot[] = [];
  /** Answers with a result so far: the clock of `answeredAt`. */
  private answers = 0;
  /** FIFO; `head` is the first live entry (shift() would copy the array on every call). */
  private waiting: Waiter[] = [];
  private head = 0;
  /** Waiters not yet settled (a timed-out one may still sit in the array). */
  private live = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Number.POSITIVE_INFINITY;
  private readonly now: () => number;
  private readonly probe: Probe;
  private readonly channelOf: ChannelFactory;
  /** The model is gone (or the gateway stops): waiters were let go, not timed out. */
  closed = false;
  /** Replicas ejected since this model was first configured (probes that fail do not count). */
  ejections = 0;

  constructor(
    now: () => number = () => performance.now(),
    probe: Probe = (slot) => slot.connection.probe(PROBE_TIMEOUT_MS),
    channelOf: ChannelFactory = connectionTo,
  ) {
    this.now = now;
    this.probe = probe;
    this.channelOf = channelOf;
  }

  /**
   * Replaces the replica list; replicas that stay keep their state, new ones start free. Every
   * connection takes `settings` (the response limit) and its address's secret from its next call.
   */
  setReplicas(
    addresses: ReplicaAddress[],
    settings: ConnectionSettings = { responseLimitBytes: DEFAULT_RESPONSE_LIMIT_BYTES },
  ): void {
    const current = new Map(this.slots.map((slot) => [`${slot.id} ${slot.url}`, slot]));
    const next: ReplicaSlot[] = [];
    for (const address of addresses) {
      const key = `${address.id} ${address.url}`;
      const kept = current.get(key);
      const own: ConnectionSettings = {
        ...settings,
        ...(address.secret === undefined ? {} : { secret: address.secret }),
      };
      kept?.connection.configure(own);
      next.push(kept ?? newSlot(address, own, this.channelOf));
      current.delete(key);
    }
    for (const gone of current.values()) this.remove(gone);
    this.slots = next;
    if (this.unavailable) this.endWaits();
    this.drain();
  }

  get replicaCount(): number {
    return this.slots.length;
  }

  get ejectedCount(): number {
    let ejected = 0;
    for (const slot of this.slots) if (slot.ejectedReason !== undefined) ejected += 1;
    return ejected;
  }

  /** Every replica is ejected: no caller can be served until a probe brings one back. */
  get unavailable(): boolean {
    return this.slots.length > 0 && this.ejectedCount === this.slots.length;
  }

  /** "id: why" for each ejected replica, for the answer that says none can be reached. */
  ejectedReasons(): string {
    return this.slots
      .filter((slot) => slot.ejectedReason !== undefined)
      .map((slot) => `${slot.id}: ${slot.ejectedReason}`)
      .join("; ");
  }

  /** Callers waiting for a replica. */
  get queueLength(): number {
    return this.live;
  }

  get busyCount(): number {
    let busy = 0;
    for (const slot of this.slots) if (slot.busy) busy += 1;
    return busy;
  }

  /**
   * A free replica now, or a promise of one within `waitMs` (undefined when the wait is over,
   * or at once when every replica is ejected or the model is gone). A wait already over
   * (`waitMs` < 0) gets no replica, even a free one. `first` puts the caller at the head of the
   * line: it was already waiting, and a replica it was sent to refused it or failed.
   */
  acquire(waitMs: number, first = false): ReplicaSlot | Promise<ReplicaSlot | undefined> {
    if (this.live === 0 && waitMs >= 0) {
      const slot = this.takeFreeSlot();
      if (slot) return slot;
    }
    if (waitMs <= 0 || this.unavailable || this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const deadline = this.now() + waitMs;
      const waiter: Waiter = { resolve, timer: undefined, deadline, settled: false };
      // A Node timer may fire up to a millisecond early (it counts from the event loop's cached
      // time), and a caller promised queueTimeoutSeconds must not be turned away before it has
      // passed: check the clock, and wait out the rest if need be.
      const expire = () => {
        const left = deadline - this.now();
        if (left > 0) {
          waiter.timer = setTimeout(expire, Math.ceil(left));
          return;
        }
        this.settle(waiter, undefined);
        this.compact();
      };
      waiter.timer = setTimeout(expire, Math.ceil(waitMs));
      if (first) {
        // The head slot before `head` is free to reuse; otherwise insert at the front.
        if (this.head > 0) this.waiting[--this.head] = waiter;
        else this.waiting.unshift(waiter);
      } else {
        this.waiting.push(waiter);
      }
      this.live += 1;
      this.drain();
    });
  }

  /**
   * Gives a replica back after a call, and hands it (or another) to the next in line. After
   * "unreachable", `reason` says what failed: the replica is ejected and probed.
   */
  release(slot: ReplicaSlot, outcome: SlotOutcome, reason = "it gave no agent answer"): void {
    slot.busy = false;
    slot.holdMs = nextHoldMs(slot.holdMs, outcome);
    // Only a result makes a replica first in line: one that answers errors fast must not draw
    // every call. One that refused (another gateway is using it) or failed goes to the back,
    // so that two gateways sharing replicas drift apart instead of meeting there again.
    if (outcome === "answered") slot.answeredAt = ++this.answers;
    else slot.answeredAt = outcome === "errored" ? 0 : -1;
    if (slot.removed) slot.connection.close();
    else if (outcome === "unreachable") this.eject(slot, reason);
    else slot.heldUntil = slot.holdMs === 0 ? 0 : this.now() + slot.holdMs;
    this.drain();
  }

  /** Ends every wait (the model went away or the gateway stops), and every probe. */
  close(): void {
    this.closed = true;
    this.endWaits();
    clearTimeout(this.wakeTimer);
    for (const slot of this.slots) this.remove(slot);
    this.slots = [];
  }

  /** Takes a replica out of the list: no more probes, and its connection closes when idle. */
  private remove(slot: ReplicaSlot): void {
    slot.removed = true;
    clearTimeout(slot.probeTimer);
    // A call in flight keeps its connection until its answer is in (release()), unless its
    // caller was answered already: nobody would read it. close() also ends a running probe.
    if (!slot.busy || slot.connection.late) slot.connection.close();
  }

  /** Out of rotation until a probe finds an agent; waiters with no replica left are let go. */
  private eject(slot: ReplicaSlot, reason: string): void {
    slot.ejectedReason = reason;
    slot.heldUntil = Number.POSITIVE_INFINITY;
    this.ejections += 1;
    this.scheduleProbe(slot);
    if (this.unavailable) this.endWaits();
  }

  private scheduleProbe(slot: ReplicaSlot): void {
    slot.probeTimer = setTimeout(() => {
      slot.probeTimer = undefined;
      this.probe(slot).then((problem) => this.probed(slot, problem));
    }, slot.holdMs);
  }

  private probed(slot: ReplicaSlot, problem: string | undefined): void {
    if (slot.removed) return;
    if (problem !== undefined) {
      slot.ejectedReason = problem;
      slot.holdMs = nextHoldMs(slot.holdMs, "unreachable");
      this.scheduleProbe(slot);
      return;
    }
    // Back in rotation. Its hold is kept, so that a replica that fails again at once is probed
    // later than the first time (flapping backs off); its next answered call clears it.
    slot.ejectedReason = undefined;
    slot.heldUntil = 0;
    this.drain();
  }

  /** Lets every waiter go without a replica. */
  private endWaits(): void {
    for (let index = this.head; index < this.waiting.length; index++) {
      const waiter = this.waiting[index] as Waiter;
      if (!waiter.settled) this.settle(waiter, undefined);
    }
    this.waiting = [];
    this.head = 0;
  }

  private settle(waiter: Waiter, slot: ReplicaSlot | undefined): void {
    waiter.settled = true;
    this.live -= 1;
    clearTimeout(waiter.timer);
    waiter.resolve(slot);
  }

  /**
   * The free replica that answered last (of equals, the first in the list): its worker has
   * just run the model, so its code and data are likeliest still in the CPU's caches. Turning
   * the replicas round robin instead made two replicas serve calls one at a time 25 % slower
   * than one (docs/gateway.md#the-queue). Load still spreads as soon as calls overlap.
   */
  private takeFreeSlot(): ReplicaSlot | undefined {
    const now = this.now();
    let warmest: ReplicaSlot | undefined;
    for (const slot of this.slots) {
      if (slot.busy || slot.heldUntil > now) continue;
      if (warmest === undefined || slot.answeredAt > warmest.answeredAt) warmest = slot;
    }
    if (warmest) warmest.busy = true;
    return warmest;
  }

  /** Hands free replicas to waiters in order; wakes itself when a held replica comes free. */
  private drain(): void {
    while (this.live > 0) {
      const waiter = this.waiting[this.head] as Waiter;
      if (waiter.settled) {
        this.head += 1;
        continue;
      }
      // Its timer may not have run yet (a busy event loop): the deadline holds all the same.
      if (waiter.deadline <= this.now()) {
        this.head += 1;
        this.settle(waiter, undefined);
        continue;
      }
      const slot = this.takeFreeSlot();
      if (!slot) break;
      this.head += 1;
      this.settle(waiter, slot);
    }
    this.compact();
    if (this.live > 0) this.wakeWhenHeldReplicaFrees();
  }

  private wakeWhenHeldReplicaFrees(): void {
    let earliest = Number.POSITIVE_INFINITY;
    for (const slot of this.slots) {
      if (!slot.busy && slot.heldUntil < earliest) earliest = slot.heldUntil;
    }
    if (earliest === Number.POSITIVE_INFINITY || earliest >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = earliest;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeAt = Number.POSITIVE_INFINITY;
        this.drain();
      },
      Math.max(0, earliest - this.now()),
    );
  }

  /** Drops settled waiters from the front, and reclaims the array once the line is empty. */
  private compact(): void {
    while (this.head < this.waiting.length && (this.waiting[this.head] as Waiter).settled) {
      this.head += 1;
    }
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
  }
}
