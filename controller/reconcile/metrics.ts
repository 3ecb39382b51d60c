// The controller's Prometheus metrics, after controller-runtime's: reconciles by kind and
// result, how long they take, how deep each queue is and how long keys wait in it; and the git
// source's fetch duration and failures. Both platforms serve them on /metrics.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { QueueObserver, ReconcileResult } from "./queue.ts";

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** controller-runtime's names for how a reconcile ended. */
const RESULT_LABELS: Record<ReconcileResult["type"], string> = {
  done: "success",
  requeue: "requeue_after",
  error: "error",
  terminal: "stalled",
};

export class ControllerMetrics {
  private readonly reconciles: Counter<"kind" | "result">;
  private readonly errors: Counter<"kind">;
  private readonly duration: Histogram<"kind">;
  private readonly depth: Gauge<"kind">;
  private readonly wait: Histogram<"kind">;
  private readonly fetchDuration: Histogram<"repository">;
  private readonly fetchFailures: Counter<"repository">;

  constructor(register: Registry) {
    const registers = [register];
    this.reconciles = new Counter({
      name: "modelship_controller_reconcile_total",
      help: "Reconcile passes, by kind and result (success, requeue_after, error, stalled).",
      labelNames: ["kind", "result"],
      registers,
    });
    this.errors = new Counter({
      name: "modelship_controller_reconcile_errors_total",
      help: "Reconcile passes that ended in an error (retried with backoff), by kind.",
      labelNames: ["kind"],
      registers,
    });
    this.duration = new Histogram({
      name: "modelship_controller_reconcile_duration_seconds",
      help: "How long a reconcile pass took, by kind.",
      labelNames: ["kind"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.depth = new Gauge({
      name: "modelship_controller_queue_depth",
      help: "Keys waiting for a worker, by kind.",
      labelNames: ["kind"],
      registers,
    });
    this.wait = new Histogram({
      name: "modelship_controller_queue_wait_seconds",
      help: "How long a key waited in its queue before a worker took it, by kind.",
      labelNames: ["kind"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.fetchDuration = new Histogram({
      name: "modelship_git_fetch_duration_seconds",
      help: "How long a fetch of a ModelRepository took (failed ones included).",
      labelNames: ["repository"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.fetchFailures = new Counter({
      name: "modelship_git_fetch_failures_total",
      help: "Fetches of a ModelRepository that failed.",
      labelNames: ["repository"],
      registers,
    });
  }

  /** The observer a kind's work queue reports to. */
  queueObserver(kind: string): QueueObserver {
    return {
      depth: (waiting) => this.depth.set({ kind }, waiting),
      waited: (seconds) => this.wait.observe({ kind }, seconds),
      reconciled: (seconds, result) => {
        this.duration.observe({ kind }, seconds);
        this.reconciles.inc({ kind, result: RESULT_LABELS[result] });
        if (result === "error") this.errors.inc({ kind });
      },
    };
  }

  /** Records one fetch of `repository` ("namespace/name"). */
  fetched(repository: string, seconds: number, failed: boolean): void {
    this.fetchDuration.observe({ repository }, seconds);
    if (failed) this.fetchFailures.inc({ repository });
  }
}
