// The forge's one metric: what modelship meant to tell the forge and could not, by operation.
// A forge that is down shows here (and in one log line per failure), never in a sync.
import { Counter, type Registry } from "prom-client";

export class ForgeMetrics {
  private readonly failures: Counter<"operation">;

  constructor(register: Registry) {
    this.failures = new Counter({
      name: "modelship_forge_requests_failed_total",
      help: "Forge operations (check run, comment, commit status, deployment) that failed after their retries, or were dropped because too many waited, by operation.",
      labelNames: ["operation"],
      registers: [register],
    });
  }

  failed(operation: string): void {
    this.failures.inc({ operation });
  }
}
