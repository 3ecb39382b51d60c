// Replicas in the gateway's own process. Under `modelship up` the agents run where the gateway
// does, and a call over their Unix socket would be an HTTP request written, parsed, answered
// and parsed again inside one process: the gateway calls such an agent's predict directly. The
// platform says which replica URLs are in process (GatewayOptions.inProcessReplicas); everything
// else about a call — the queue, the deadlines, the verdicts on an answer — is the same as over
// a connection (docs/gateway.md).
import type { ReplicaChannel, UpstreamOutcome, UpstreamResult } from "./upstream.ts";

/** What an agent answers to one call, as its HTTP side would (docs/replica.md). */
export interface InProcessAnswer {
  status: number;
  /** `ok` or an error code of the registry: the x-modelship-code header's value. */
  code: string;
  /** The caller's JSON, already encoded. */
  body: string;
  /** The metrics the prediction tracked, and what the replica serves (its serves header). */
  metricsJson?: string;
  serves?: string;
}

/** A replica agent in this process. */
export interface InProcessReplica {
  /** POST /predict with the request's text (the gateway checked it is JSON) and the uuid. */
  predict(requestText: string, uuid: string): Promise<InProcessAnswer>;
}

/** The agent in this process at a replica's URL, if there is one. */
export type InProcessReplicas = (url: string) => InProcessReplica | undefined;

const LOST = (reason: string): UpstreamOutcome => ({ kind: "lost", reason });

/** The channel to an agent in this process: no socket, no HTTP, the same outcomes. */
export class InProcessChannel implements ReplicaChannel {
  private readonly replica: InProcessReplica;
  private responseLimitBytes: number;
  /** The caller was answered at its deadline; the call still runs. */
  private waitingLate = false;
  private closed = false;

  constructor(replica: InProcessReplica, responseLimitBytes: number) {
    this.replica = replica;
    this.responseLimitBytes = responseLimitBytes;
  }

  configure(settings: { responseLimitBytes: number }): void {
    // A secret keeps other processes from calling a replica; in process there is no caller
    // but the gateway, so only the response limit applies.
    this.responseLimitBytes = settings.responseLimitBytes;
  }

  get late(): boolean {
    return this.waitingLate;
  }

  send(body: string, uuid: string, callerMs: number, replicaMs: number): Promise<UpstreamResult> {
    if (this.closed) {
      return Promise.resolve({ kind: "unreachable", reason: "the replica was stopped" });
    }
    const outcome = this.replica.predict(body, uuid).then(
      (answer) => this.outcomeOf(answer),
      (error: Error) => LOST(`the agent failed: ${error.message}`),
    );
    return new Promise((resolve) => {
      let answered = false;
      const timer = setTimeout(() => {
        if (answered) return;
        answered = true;
        // The caller's deadline is the replica's (no grace left): silent now, as over a
        // connection.
        if (replicaMs <= callerMs) {
          resolve({ kind: "silent" });
          return;
        }
        // The agent answers by its timeoutSeconds (it kills the worker then): one still silent
        // after the replica's time is broken, as over a connection.
        this.waitingLate = true;
        let silentTimer: NodeJS.Timeout | undefined;
        const silent = new Promise<UpstreamOutcome>((settle) => {
          silentTimer = setTimeout(() => settle({ kind: "silent" }), replicaMs - callerMs);
        });
        const rest = Promise.race([outcome, silent]).finally(() => {
          clearTimeout(silentTimer);
          this.waitingLate = false;
        });
        resolve({ kind: "late", rest });
      }, callerMs);
      outcome.then((result) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        resolve(result);
      });
    });
  }

  /** A stopped replica's next calls never reach it; one in flight finishes in its agent. */
  close(): void {
    this.closed = true;
  }

  /** The agent is in this process: there is always an agent to answer (ready or not). */
  probe(): Promise<string | undefined> {
    return Promise.resolve(this.closed ? "the replica was stopped" : undefined);
  }

  private outcomeOf(answer: InProcessAnswer): UpstreamOutcome {
    // A UTF-8 byte is at least a character and at most three per UTF-16 unit: count bytes only
    // for an answer that could be over the limit.
    if (answer.body.length * 3 > this.responseLimitBytes) {
      const bytes = Buffer.byteLength(answer.body);
      if (bytes > this.responseLimitBytes) return { kind: "too_large", bytes };
    }
    return {
      kind: "answer",
      status: answer.status,
      code: answer.code,
      body: answer.body,
      metricsJson: answer.metricsJson,
      serves: answer.serves,
    };
  }
}
