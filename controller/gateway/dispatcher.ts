// One model's replicas and its FIFO queue of callers. A replica takes one call at a time; a
// caller gets a free replica at once, or waits in line until one is free or its deadline passes.
// Replicas that another gateway is using (the agent said replica.busy), that are not ready or
// that cannot be reached are held back for a short, growing while, so that no request is sent to
// a replica known to refuse it. No I/O here: the gateway does the HTTP (docs/gateway.md#queue).
import type { ReplicaAddress } from "./config.ts";
import { ReplicaConnection } from "./upstream.ts";

export interface ReplicaSlot {
  readonly id: string;
  readonly url: string;
  /** The keep-alive connection to this replica, used by one call at a time. */
  readonly connection: ReplicaConnection;
  /** This gateway has a call in flight on it. */
  busy: boolean;
  /** Not tried before this time (ms, performance.now()). */
  heldUntil: number;
  /** The last hold, doubled while the replica keeps refusing. */
  holdMs: number;
  /** Gone from the registry: dropped once its call in flight is over. */
  removed: boolean;
}

/** What became of a call on a replica, which decides when the replica is tried again. */
export type SlotOutcome =
  /** The replica answered (with a result or an error of the model's). */
  | "answered"
  /** It refused: another gateway's call is in flight, or its worker is not ready. */
  | "refused"
  /** No connection: the agent is not there (yet, or any more). */
  | "unreachable";

/** Holds after a refusal: from 1 ms, doubling, to 50 ms — short, since a call is brief. */
export const REFUSED_HOLD_MS = { first: 1, max: 50 };
/** Holds after a failed connection: from 100 ms to 2 s, since an agent takes time to start. */
export const UNREACHABLE_HOLD_MS = { first: 100, max: 2000 };

/** The next hold after an outcome: none after an answer, else doubled within the outcome's range. */
export function nextHoldMs(previous: number, outcome: SlotOutcome): number {
  if (outcome === "answered") return 0;
  const range = outcome === "refused" ? REFUSED_HOLD_MS : UNREACHABLE_HOLD_MS;
  return Math.min(Math.max(range.first, previous * 2), range.max);
}

interface Waiter {
  resolve: (slot: ReplicaSlot | undefined) => void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
}

function newSlot(address: ReplicaAddress): ReplicaSlot {
  const url = new URL(address.url);
  return {
    id: address.id,
    url: address.url,
    connection: new ReplicaConnection(url.hostname, Number(url.port || 80)),
    busy: false,
    heldUntil: 0,
    holdMs: 0,
    removed: false,
  };
}

export class ModelDispatcher {
  private slots: ReplicaSlot[] = [];
  /** Where the search for a free replica starts: round robin, so load spreads over replicas. */
  private cursor = 0;
  /** FIFO; `head` is the first live entry (shift() would copy the array on every call). */
  private waiting: Waiter[] = [];
  private head = 0;
  /** Waiters not yet settled (a timed-out one may still sit in the array). */
  private live = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Number.POSITIVE_INFINITY;
  private readonly now: () => number;
  /** The model is gone (or the gateway stops): waiters were let go, not timed out. */
  closed = false;

  constructor(now: () => number = () => performance.now()) {
    this.now = now;
  }

  /** Replaces the replica list; replicas that stay keep their state, new ones start free. */
  setReplicas(addresses: ReplicaAddress[]): void {
    const current = new Map(this.slots.map((slot) => [`${slot.id} ${slot.url}`, slot]));
    const next: ReplicaSlot[] = [];
    for (const address of addresses) {
      const key = `${address.id} ${address.url}`;
      next.push(current.get(key) ?? newSlot(address));
      current.delete(key);
    }
    for (const gone of current.values()) {
      gone.removed = true;
      if (!gone.busy) gone.connection.close();
    }
    this.slots = next;
    this.cursor = 0;
    this.drain();
  }

  get replicaCount(): number {
    return this.slots.length;
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
   * A free replica now, or a promise of one within `waitMs` (undefined when the wait is over).
   * `first` puts the caller at the head of the line: it was already waiting, and a replica it
   * was sent to refused it.
   */
  acquire(waitMs: number, first = false): ReplicaSlot | Promise<ReplicaSlot | undefined> {
    if (this.live === 0) {
      const slot = this.takeFreeSlot();
      if (slot) return slot;
    }
    if (waitMs <= 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter: Waiter = { resolve, timer: undefined, settled: false };
      const deadline = this.now() + waitMs;
      // A Node timer may fire up to a millisecond early (it counts from the event loop's cached
      // time), and a caller promised queueTimeoutSeconds must not be turned away before it has
      // passed: check the clock, and wait out the rest if need be.
      const expire = () => {
        const left = deadline - this.now();
        if (left > 0) {
          waiter.timer = setTimeout(expire, Math.ceil(left));
          return;
        }
        waiter.settled = true;
        this.live -= 1;
        resolve(undefined);
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

  /** Gives a replica back after a call, and hands it (or another) to the next in line. */
  release(slot: ReplicaSlot, outcome: SlotOutcome): void {
    slot.busy = false;
    slot.holdMs = nextHoldMs(slot.holdMs, outcome);
    slot.heldUntil = slot.holdMs === 0 ? 0 : this.now() + slot.holdMs;
    if (slot.removed) {
      slot.connection.close();
    }
    this.drain();
  }

  /** Ends every wait (the model went away or the gateway stops) and closes idle connections. */
  close(): void {
    this.closed = true;
    for (let index = this.head; index < this.waiting.length; index++) {
      const waiter = this.waiting[index] as Waiter;
      if (waiter.settled) continue;
      waiter.settled = true;
      clearTimeout(waiter.timer);
      waiter.resolve(undefined);
    }
    this.waiting = [];
    this.head = 0;
    this.live = 0;
    clearTimeout(this.wakeTimer);
    // A replica with a call in flight keeps its connection until the answer is in (release()).
    for (const slot of this.slots) {
      slot.removed = true;
      if (!slot.busy) slot.connection.close();
    }
    this.slots = [];
  }

  private takeFreeSlot(): ReplicaSlot | undefined {
    const count = this.slots.length;
    if (count === 0) return undefined;
    const now = this.now();
    for (let step = 0; step < count; step++) {
      const index = (this.cursor + step) % count;
      const slot = this.slots[index] as ReplicaSlot;
      if (!slot.busy && slot.heldUntil <= now) {
        this.cursor = (index + 1) % count;
        slot.busy = true;
        return slot;
      }
    }
    return undefined;
  }

  /** Hands free replicas to waiters in order; wakes itself when a held replica comes free. */
  private drain(): void {
    while (this.live > 0) {
      const waiter = this.waiting[this.head] as Waiter;
      if (waiter.settled) {
        this.head += 1;
        continue;
      }
      const slot = this.takeFreeSlot();
      if (!slot) break;
      this.head += 1;
      this.live -= 1;
      waiter.settled = true;
      clearTimeout(waiter.timer);
      waiter.resolve(slot);
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
