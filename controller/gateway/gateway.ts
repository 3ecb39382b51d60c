// The gateway callers use (docs/gateway.md): POST /model (CDSW's body with the access key) and
// POST /models/{name}/predict (the bare request). It identifies the model, checks keys and the
// input, waits in the model's queue for a free replica, and passes the replica's answer through.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ErrorObject } from "ajv/dist/2020.js";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { CODE_HEADER, ERROR_STATUS } from "../api/errors.ts";
import {
  BodyTooLarge,
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_RESPONSE_LIMIT_BYTES,
  errorBody,
  formatBytes,
  jsonTopLevelMembers,
  readBody,
  SERVER_OPTIONS,
  sendJson,
} from "../api/http.ts";
import type { MetricsStore, PredictionRecord } from "../metrics/port.ts";
import { CallError } from "./call-error.ts";
import {
  type GatewayChanges,
  type GatewayConfig,
  type ModelRoute,
  routeChanges,
} from "./config.ts";
import {
  type ChannelFactory,
  connectionTo,
  ModelDispatcher,
  type ReplicaSlot,
} from "./dispatcher.ts";
import { type CallAnswer, callPath, FrontDoorServer } from "./front-door.ts";
import { InProcessChannel, type InProcessReplicas } from "./in-process.ts";
import { type InputValidator, InputValidators, warmMetaSchema } from "./input-validators.ts";
import { type ApiKeyRecord, checkApiKey, hashKey } from "./keys.ts";
import { METRICS_API_PREFIX, serveMetricsApi } from "./metrics-api.ts";
import { MetricsRecorder, type MetricsRecorderOptions } from "./metrics-recorder.ts";
import { answerVerdict, type UpstreamOutcome } from "./upstream.ts";

export interface GatewayOptions {
  bodyLimitBytes?: number;
  /** The largest answer passed on from a replica (default 50 MB): `502 model.response_too_large`. */
  responseLimitBytes?: number;
  /** Wall clock for key expiry (ms since the epoch); tests move it. */
  now?: () => number;
  /** Adds Node's process metrics to /metrics; once per process. */
  processMetrics?: boolean;
  /**
   * The metrics store: tracked metrics are written to it, and /model-metrics serves it.
   * Without one, predictions' metrics are not kept and /model-metrics answers 503.
   */
  metricsStore?: MetricsStore;
  /** The recorder's settings (buffer size, batch size), for tests and benchmarks. */
  metricsRecorder?: Omit<MetricsRecorderOptions, "store" | "register" | "log">;
  /** Where the gateway logs what goes wrong out of band (the metrics store failing). */
  log?: (line: string) => void;
  /**
   * Replica agents in this process, by URL (under `modelship up`): called directly, without
   * HTTP (in-process.ts). Any other replica is reached over a connection to its URL.
   */
  inProcessReplicas?: InProcessReplicas;
}

/**
 * How much longer than the model's timeout the gateway waits for a replica's answer: the agent
 * answers 504 at the timeout itself, so a replica silent past this is broken, and ejected.
 */
const UPSTREAM_GRACE_MS = 5000;

/** The most of a refused body the gateway reads to the end, to answer it 413 cleanly. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** A model's metric series, looked up once: prom-client hashes labels on every unbound call. */
interface ModelMeters {
  latency: { observe(seconds: number): void };
  queueWait: { observe(seconds: number): void };
  busy: { inc(): void };
}

/** What a model's route makes, checked, before it goes in. */
interface PreparedModel {
  route: ModelRoute;
  validator: InputValidator | undefined;
  allowedUsers: Set<string> | undefined;
}

interface ModelEntry extends PreparedModel {
  dispatcher: ModelDispatcher;
  meters: ModelMeters;
}

function gatewayMetrics(gateway: Gateway, processMetrics: boolean) {
  const register = new Registry();
  if (processMetrics) collectDefaultMetrics({ register });
  const requests = new Counter({
    name: "modelship_gateway_requests_total",
    help: "Calls answered, by model and code (ok or an error code).",
    labelNames: ["model", "code"],
    registers: [register],
  });
  const latency = new Histogram({
    name: "modelship_gateway_request_duration_seconds",
    help: "Time from a call's arrival to its answer, queue included.",
    labelNames: ["model"],
    buckets: LATENCY_BUCKETS,
    registers: [register],
  });
  const queueWait = new Histogram({
    name: "modelship_gateway_queue_wait_seconds",
    help: "Time a call waited for a free replica (until it got one, or gave up with 429).",
    labelNames: ["model"],
    buckets: LATENCY_BUCKETS,
    registers: [register],
  });
  const busy = new Counter({
    name: "modelship_gateway_busy_total",
    help: "Calls answered 429 model.busy after queueTimeoutSeconds.",
    labelNames: ["model"],
    registers: [register],
  });
  new Gauge({
    name: "modelship_gateway_in_flight",
    help: "Calls on a replica now, by model.",
    labelNames: ["model"],
    registers: [register],
    collect() {
      this.reset();
      for (const [name, busyCount] of gateway.busyReplicas()) this.set({ model: name }, busyCount);
    },
  });
  new Gauge({
    name: "modelship_gateway_queue_length",
    help: "Calls waiting for a free replica now, by model.",
    labelNames: ["model"],
    registers: [register],
    collect() {
      this.reset();
      for (const [name, waiting] of gateway.queueLengths()) this.set({ model: name }, waiting);
    },
  });
  new Gauge({
    name: "modelship_gateway_replicas_ejected",
    help: "Replicas out of rotation now (unreachable, silent or not an agent; probed), by model.",
    labelNames: ["model"],
    registers: [register],
    collect() {
      this.reset();
      for (const [name, dispatcher] of gateway.dispatchers()) {
        this.set({ model: name }, dispatcher.ejectedCount);
      }
    },
  });
  new Counter({
    name: "modelship_gateway_ejections_total",
    help: "Times a replica was taken out of rotation, by model.",
    labelNames: ["model"],
    registers: [register],
    collect() {
      this.reset();
      for (const [name, dispatcher] of gateway.dispatchers()) {
        this.inc({ model: name }, dispatcher.ejections);
      }
    },
  });
  return { register, requests, latency, queueWait, busy };
}

export class Gateway {
  readonly server: FrontDoorServer;
  private readonly bodyLimit: number;
  /** The largest body any model takes: what POST /model reads before it knows the model. */
  private largestBodyLimit: number;
  private readonly responseLimit: number;
  private readonly now: () => number;
  private readonly metrics: ReturnType<typeof gatewayMetrics>;
  /** Counter children by "model code": prom-client's label lookup hashes on every call. */
  private readonly requestCounters = new Map<string, { inc(): void }>();
  private models = new Map<string, ModelEntry>();
  private byAccessKeyHash = new Map<string, ModelEntry>();
  private apiKeys = new Map<string, ApiKeyRecord>();
  private readonly validators = new InputValidators();
  private readonly channelOf: ChannelFactory;
  private configured = false;
  /** Calls between arrival and answer. */
  private callsInFlight = 0;
  /** Calls that named no model we serve (not found, bad key) are measured under model "". */
  private readonly unknownModelMeters: ModelMeters;
  private readonly metricsStore: MetricsStore | undefined;
  /** Writes tracked metrics to the store, when there is one. */
  readonly metricsRecorder: MetricsRecorder | undefined;

  constructor(options: GatewayOptions = {}) {
    // Once a process: so that the first configuration does not pay for it.
    warmMetaSchema();
    this.bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
    this.largestBodyLimit = this.bodyLimit;
    this.responseLimit = options.responseLimitBytes ?? DEFAULT_RESPONSE_LIMIT_BYTES;
    this.now = options.now ?? Date.now;
    this.metrics = gatewayMetrics(this, options.processMetrics ?? false);
    this.unknownModelMeters = this.metersOf("");
    this.metricsStore = options.metricsStore;
    const inProcess = options.inProcessReplicas;
    this.channelOf = inProcess
      ? (address, settings) => {
          const replica = inProcess(address.url);
          return replica
            ? new InProcessChannel(replica, settings.responseLimitBytes)
            : connectionTo(address, settings);
        }
      : connectionTo;
    this.metricsRecorder =
      options.metricsStore &&
      new MetricsRecorder({
        ...options.metricsRecorder,
        store: options.metricsStore,
        register: this.metrics.register,
        log: options.log ?? ((line) => process.stderr.write(`${line}\n`)),
      });
    this.server = new FrontDoorServer(
      SERVER_OPTIONS,
      (request, response) => this.route(request, response),
      {
        bodyLimitOf: (name) => this.callBodyLimit(name),
        call: (call, answer) =>
          void this.serve(call.name, call.authorization, call.body, answer, call.arrived),
      },
    );
  }

  /**
   * The registry port: takes the whole configuration. Models that stay keep their queue and
   * their replicas' state; keys take effect for the very next call (a rotated key is refused).
   * It costs what changed: a model whose route is as before is kept as it is.
   */
  apply(config: GatewayConfig): void {
    const { models, removed } = routeChanges(
      config,
      (name) => this.models.get(name)?.route,
      this.models.keys(),
    );
    this.applyChanges({ models, removed, apiKeys: config.apiKeys });
  }

  /**
   * Takes only what changed: models added or changed (whole routes), models removed by name,
   * and the API keys when they changed. All or nothing: a change that fails leaves the gateway
   * as it was.
   */
  applyChanges(changes: GatewayChanges): void {
    // Everything that can fail comes first: a rejected configuration changes nothing.
    const prepared = new Map<string, PreparedModel>();
    try {
      for (const route of changes.models ?? []) {
        // A name twice in one change: the later route is the one that goes in.
        const previous = prepared.get(route.name);
        if (previous) {
          prepared.delete(route.name);
          if (previous.validator) this.validators.release(previous.validator);
        }
        prepared.set(route.name, this.prepareEntry(route));
      }
    } catch (error) {
      for (const entry of prepared.values()) {
        if (entry.validator) this.validators.release(entry.validator);
      }
      throw error;
    }
    for (const name of changes.removed ?? []) {
      const entry = this.models.get(name);
      if (!entry || prepared.has(name)) continue;
      entry.dispatcher.close();
      if (entry.validator) this.validators.release(entry.validator);
      this.models.delete(name);
      this.unindexAccessKey(entry);
    }
    for (const [name, model] of prepared) {
      const current = this.models.get(name);
      if (current) {
        if (current.validator) this.validators.release(current.validator);
        this.unindexAccessKey(current);
      }
      // A model that stays keeps its queue, its replicas' state and its meters.
      const entry: ModelEntry = {
        ...model,
        dispatcher:
          current?.dispatcher ?? new ModelDispatcher(undefined, undefined, this.channelOf),
        meters: current?.meters ?? this.metersOf(name),
      };
      entry.dispatcher.setReplicas(entry.route.replicas, {
        responseLimitBytes: this.responseLimit,
      });
      this.models.set(name, entry);
      if (entry.route.accessKeySha256) this.byAccessKeyHash.set(entry.route.accessKeySha256, entry);
    }
    if (changes.apiKeys) {
      this.apiKeys = new Map(changes.apiKeys.map((record) => [record.id, record]));
    }
    let largest = this.bodyLimit;
    for (const entry of this.models.values()) largest = Math.max(largest, this.bodyLimitOf(entry));
    this.largestBodyLimit = largest;
    this.configured = true;
    // Schemas that changed compile now, between calls, rather than in the change itself.
    this.validators.compileLater();
  }

  /** A model's new entry, before it is in: the checks that may reject the configuration. */
  private prepareEntry(route: ModelRoute): PreparedModel {
    for (const replica of route.replicas) {
      if (replica.secret !== undefined && !/^[\x21-\x7e]+$/.test(replica.secret)) {
        // It goes in a header: a line break or a space would let it add or break headers.
        throw new Error(
          `model "${route.name}": replica ${replica.id}: secret must be printable ASCII without spaces`,
        );
      }
    }
    let validator: InputValidator | undefined;
    if (route.inputSchema) {
      try {
        validator = this.validators.acquire(route.inputSchema);
      } catch (error) {
        throw new Error(`model "${route.name}": inputSchema: ${(error as Error).message}`);
      }
    }
    return {
      route,
      validator,
      allowedUsers: route.authentication.users ? new Set(route.authentication.users) : undefined,
    };
  }

  /**
   * Drops a model going away (or changing) from the access key index. Two models configured
   * with one key hash share it: the index then goes to the other one.
   */
  private unindexAccessKey(entry: ModelEntry): void {
    const hash = entry.route.accessKeySha256;
    if (!hash || this.byAccessKeyHash.get(hash) !== entry) return;
    this.byAccessKeyHash.delete(hash);
    for (const other of this.models.values()) {
      if (other !== entry && other.route.accessKeySha256 === hash) {
        this.byAccessKeyHash.set(hash, other);
        break;
      }
    }
  }

  private bodyLimitOf(entry: ModelEntry): number {
    return entry.route.maxRequestBytes ?? this.bodyLimit;
  }

  private metersOf(model: string): ModelMeters {
    return {
      latency: this.metrics.latency.labels({ model }),
      queueWait: this.metrics.queueWait.labels({ model }),
      busy: this.metrics.busy.labels({ model }),
    };
  }

  /** The gateway's Prometheus metrics as data (the dashboard's traffic charts sample them). */
  metricsSnapshot() {
    return this.metrics.register.getMetricsAsJSON();
  }

  /** What the configuration holds: models, distinct input schemas, schemas not yet compiled. */
  configurationStats(): { models: number; schemas: number; schemasToCompile: number } {
    return {
      models: this.models.size,
      schemas: this.validators.size,
      schemasToCompile: this.validators.pendingCount,
    };
  }

  busyReplicas(): [string, number][] {
    return [...this.models].map(([name, entry]) => [name, entry.dispatcher.busyCount]);
  }

  dispatchers(): [string, ModelDispatcher][] {
    return [...this.models].map(([name, entry]) => [name, entry.dispatcher]);
  }

  queueLengths(): [string, number][] {
    return [...this.models].map(([name, entry]) => [name, entry.dispatcher.queueLength]);
  }

  /**
   * Stops taking connections, ends every wait (429) and every probe, lets calls on replicas
   * finish (at most `graceMs`), then closes every connection, keep-alive ones included.
   */
  async close(graceMs = 30_000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const entry of this.models.values()) entry.dispatcher.close();
    const deadline = Date.now() + graceMs;
    while ((this.callsInFlight > 0 || this.server.bodiesArriving > 0) && Date.now() < deadline) {
      this.server.closeIdleConnections();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    this.server.closeAllConnections();
    await closed;
    await this.metricsRecorder?.close();
  }

  private route(request: IncomingMessage, response: ServerResponse): void {
    const url = request.url ?? "/";
    const path = url.includes("?") ? url.slice(0, url.indexOf("?")) : url;
    if (path === METRICS_API_PREFIX || path.startsWith(`${METRICS_API_PREFIX}/`)) {
      this.metricsApi(request, response, url);
      return;
    }
    if (request.method === "POST") {
      const call = callPath(path);
      if (call) {
        this.call(request, response, call.name);
        return;
      }
    } else if (request.method === "GET") {
      switch (path) {
        case "/healthz":
          sendJson(response, 200, '{"ok":true}');
          return;
        case "/readyz":
          sendJson(
            response,
            this.configured ? 200 : 503,
            JSON.stringify({ ready: this.configured }),
          );
          return;
        case "/models":
          sendJson(response, 200, JSON.stringify({ models: this.describeModels() }));
          return;
        case "/metrics":
          this.metrics.register.metrics().then((text) => {
            response.writeHead(200, { "content-type": this.metrics.register.contentType });
            response.end(text);
          });
          return;
      }
    }
    sendJson(
      response,
      404,
      JSON.stringify({
        error: `no route for ${request.method} ${path}; calls go to POST /model or POST /models/{name}/predict`,
      }),
    );
  }

  private metricsApi(request: IncomingMessage, response: ServerResponse, url: string): void {
    const store = this.metricsStore;
    const recorder = this.metricsRecorder;
    if (!store || !recorder) {
      sendJson(
        response,
        503,
        errorBody(
          "metrics.unavailable",
          "this gateway has no metrics store (docs/metrics.md says how to give it one)",
        ),
        "metrics.unavailable",
      );
      return;
    }
    const context = {
      store,
      recorder,
      now: this.now,
      // The metrics API always wants a key: what a model tracked is not for anyone who can
      // reach the gateway.
      authenticate: (authorization: string | undefined) =>
        this.apiKeyUser(authorization, "the metrics API"),
      authorize: (user: string, model: string) => this.authorizeMetrics(user, model),
    };
    void serveMetricsApi(context, request, response, new URL(url, "http://gateway"));
  }

  /**
   * The user of the request's model API key; `needsKey` says who wants one, for the answer
   * to a request without it.
   */
  private apiKeyUser(authorization: string | undefined, needsKey: string): string {
    const key = authorization?.startsWith("Bearer ") ? authorization.slice(7).trim() : "";
    if (key === "") {
      throw new CallError(
        "auth.missing_key",
        `${needsKey} requires a model API key: send the header "Authorization: Bearer <key>"`,
      );
    }
    const check = checkApiKey(key, (id) => this.apiKeys.get(id), this.now());
    if (!check.ok) throw new CallError(check.code, check.message);
    return check.user;
  }

  /**
   * A model's metrics are for the users who may call it, so only for a model served here: of
   * one this gateway does not serve (removed, or not yet configured) it cannot tell who may.
   */
  private authorizeMetrics(user: string, model: string): void {
    const entry = this.models.get(model);
    if (!entry) {
      throw new CallError(
        "model.not_found",
        `no model named "${model}" is served here, so its metrics are not either (modelship metrics reads a removed model's on the machine that ran it)`,
      );
    }
    if (entry.allowedUsers && !entry.allowedUsers.has(user)) {
      throw new CallError(
        "auth.forbidden",
        `user "${user}" may not use the metrics of model "${model}"; the model's spec.authentication.users lists who may`,
      );
    }
  }

  private describeModels() {
    return [...this.models.values()].map(({ route, dispatcher }) => ({
      name: route.name,
      replicas: dispatcher.replicaCount,
      ejected: dispatcher.ejectedCount,
      busy: dispatcher.busyCount,
      waiting: dispatcher.queueLength,
      stopped: route.stopped,
      authentication: route.authentication.enabled,
      inputSchema: route.inputSchema !== undefined,
    }));
  }

  /**
   * The largest body a call may carry: the model's own limit when the path names it; for
   * POST /model, the largest any model has until the access key in the body says which applies.
   */
  private callBodyLimit(name: string | undefined): number {
    const named = name === undefined ? undefined : this.models.get(name);
    return named ? this.bodyLimitOf(named) : this.largestBodyLimit;
  }

  /** A call that came through node:http (the front door handed its connection on). */
  private call(request: IncomingMessage, response: ServerResponse, name: string | undefined): void {
    const arrived = performance.now();
    const body = readBody(request, this.callBodyLimit(name)).catch((error: unknown) => {
      if (error instanceof BodyTooLarge) {
        // The rest of the body is read and dropped (readBody resumes it). Closing at once would
        // make a client still sending see a broken pipe instead of the 413, so a body of a size
        // said up front and within reason is drained and the connection kept; one larger or of
        // no stated size is cut off when the answer has gone.
        const declared = Number(request.headers["content-length"]);
        if (!(declared <= DRAIN_LIMIT_BYTES)) response.setHeader("connection", "close");
      }
      throw error;
    });
    const answer: CallAnswer = (status, code, text) => {
      if (response.headersSent) return;
      response.writeHead(status, {
        "content-type": "application/json",
        "content-length": typeof text === "string" ? Buffer.byteLength(text) : text.length,
        [CODE_HEADER]: code,
      });
      response.end(text);
    };
    void this.serve(name, request.headers.authorization, body, answer, arrived);
  }

  /**
   * One call, from its body to its answer, whichever way it came; `name` is set for
   * /models/{name}/predict. The body is in hand (the front door) or still coming (node:http).
   */
  private async serve(
    name: string | undefined,
    authorization: string | undefined,
    body: string | Promise<string>,
    answer: CallAnswer,
    arrived: number,
  ): Promise<void> {
    let entry: ModelEntry | undefined;
    let code: string;
    this.callsInFlight += 1;
    try {
      const text = typeof body === "string" ? body : await body;
      const target = this.identify(text, name);
      entry = target.entry;
      const limit = this.bodyLimitOf(entry);
      if (name === undefined && Buffer.byteLength(text) > limit) throw new BodyTooLarge(limit);
      this.authorize(entry, authorization);
      if (entry.route.stopped) {
        throw new CallError(
          "model.stopped",
          `model "${entry.route.name}" is stopped (spec.stopped: true); set it to false to serve it again`,
        );
      }
      this.checkInput(entry, target.request);
      code = await this.dispatch(entry, target.forwardText, arrived, answer);
    } catch (error) {
      code = this.sendFailure(answer, error);
    } finally {
      this.callsInFlight -= 1;
    }
    const model = entry?.route.name ?? "";
    this.countRequest(model, code);
    (entry?.meters ?? this.unknownModelMeters).latency.observe(
      (performance.now() - arrived) / 1000,
    );
  }

  /** Finds the model, and the request to forward, from the path or the body's access key. */
  private identify(
    text: string,
    name: string | undefined,
  ): { entry: ModelEntry; request: unknown; forwardText: string } {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (error) {
      throw new CallError(
        "request.invalid_json",
        `the request body is not JSON: ${(error as Error).message}`,
      );
    }
    if (name !== undefined) {
      const entry = this.models.get(name);
      if (!entry) {
        throw new CallError(
          "model.not_found",
          `no model named "${name}" is served here; GET /models lists the models`,
        );
      }
      // The bare request goes to the replica as the caller wrote it.
      return { entry, request: body, forwardText: text };
    }
    const shape = 'POST /model takes {"accessKey": "<the model\'s access key>", "request": {...}}';
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new CallError("request.invalid_input", `the body must be a JSON object: ${shape}`);
    }
    const { accessKey, request } = body as { accessKey?: unknown; request?: unknown };
    if (typeof accessKey !== "string" || accessKey === "") {
      throw new CallError("auth.missing_key", `the body has no "accessKey": ${shape}`);
    }
    // Looking the key up by its hash compares hashes, not keys: how long the lookup takes says
    // nothing an attacker can use about any stored key.
    const entry = this.byAccessKeyHash.get(hashKey(accessKey));
    if (!entry) {
      throw new CallError(
        "auth.invalid_key",
        "no model has this access key: it is mistyped, or it was regenerated, which revokes the old one",
      );
    }
    if (request === undefined) {
      throw new CallError("request.invalid_input", `the body has no "request": ${shape}`);
    }
    // The request's own text, not JSON.stringify(request): that would round integers beyond
    // 2^53 and turn 1e400 into null. The body parsed, so the scan finds it.
    const span = jsonTopLevelMembers(text)?.get("request") as { start: number; end: number };
    return { entry, request, forwardText: text.slice(span.start, span.end) };
  }

  /** Checks the model API key when the model requires one. */
  private authorize(entry: ModelEntry, authorization: string | undefined): void {
    if (!entry.route.authentication.enabled) return;
    const user = this.apiKeyUser(authorization, `model "${entry.route.name}"`);
    if (entry.allowedUsers && !entry.allowedUsers.has(user)) {
      throw new CallError(
        "auth.forbidden",
        `user "${user}" may not call model "${entry.route.name}"; the model's spec.authentication.users lists who may`,
      );
    }
  }

  private checkInput(entry: ModelEntry, request: unknown): void {
    const { validator } = entry;
    if (!validator) return;
    let errors: ErrorObject[] | undefined;
    try {
      errors = validator.problems(request);
    } catch (error) {
      // Its meta-schema passed, so the configuration took it; Ajv could still not compile it.
      throw new Error(
        `the inputSchema of model "${entry.route.name}" cannot be compiled: ${(error as Error).message}`,
      );
    }
    if (!errors) return;
    const problems = errors.map((error) => `${error.instancePath || "/"}: ${error.message}`);
    throw new CallError(
      "request.invalid_input",
      `the request does not match the inputSchema of model "${entry.route.name}": ${problems.join("; ")}`,
      { problems },
    );
  }

  /**
   * Waits for a free replica and sends the call. A replica that refuses it (another gateway's
   * call, not ready) or that it never reached (no connection, not an agent) sends it back to the
   * head of the line; one that fails is ejected (docs/gateway.md#the-queue). The caller is
   * answered by its queue deadline + timeoutSeconds, whatever the replicas do. Returns the code
   * answered.
   */
  private async dispatch(
    entry: ModelEntry,
    text: string,
    arrived: number,
    answer: CallAnswer,
  ): Promise<string> {
    const { route, dispatcher } = entry;
    let now = performance.now();
    // A body slower to arrive than queueTimeoutSeconds still gets one look at the free replicas:
    // 0 means "do not wait", not "never served".
    const queueDeadline = Math.max(arrived + route.queueTimeoutSeconds * 1000, now);
    const deadline = queueDeadline + route.timeoutSeconds * 1000;
    const replicaMs = route.timeoutSeconds * 1000 + UPSTREAM_GRACE_MS;
    const uuid = randomUUID();
    let retried = false;
    let waitMeasured = false;
    /** Every refusal so far said "not ready" (undefined: none yet): the 429 then says so. */
    let onlyNotReady: boolean | undefined;
    for (;;) {
      const acquired = dispatcher.acquire(queueDeadline - now, retried);
      const slot: ReplicaSlot | undefined = acquired instanceof Promise ? await acquired : acquired;
      now = performance.now();
      // One observation per call: the wait for its first replica (or until a 429 without one),
      // made once the call is on its way: the replica need not wait for the histogram.
      const measureWait = !waitMeasured;
      waitMeasured = true;
      if (!slot) {
        if (measureWait) entry.meters.queueWait.observe((now - arrived) / 1000);
        throw this.noReplica(entry, onlyNotReady === true);
      }
      // The replica gets the model's timeout and a grace; the caller is answered by its deadline.
      const callerMs = Math.min(replicaMs, deadline - now);
      const sent = slot.connection.send(text, uuid, callerMs, replicaMs);
      if (measureWait) entry.meters.queueWait.observe((now - arrived) / 1000);
      const result = await sent;
      if (result.kind === "answer") {
        const verdict = answerVerdict(result.code);
        if (verdict.kind !== "relay") {
          // The call did not run: back to the head of the line. A refusal holds the replica
          // back a moment; a replica that refuses every call (another secret) is ejected.
          if (verdict.kind === "refused") {
            dispatcher.release(slot, "refused");
            onlyNotReady = verdict.notReady && onlyNotReady !== false;
          } else {
            dispatcher.release(slot, "unreachable", verdict.reason);
          }
          retried = true;
          now = performance.now();
          continue;
        }
        dispatcher.release(slot, result.code === "ok" ? "answered" : "errored");
        // The replica's next call, if one waits, is sent before this answer is written: the
        // waiter's turn is a microtask that release() queued, and the answer is queued after
        // it. A replica with calls queued then does not sit idle while a caller's write runs.
        queueMicrotask(() => answer(result.status, result.code, result.body));
        if (result.metricsJson !== undefined && this.metricsRecorder) {
          this.metricsRecorder.record(
            predictionRecord(route.name, uuid, arrived, result.metricsJson, result.serves),
          );
        }
        return result.code;
      }
      if (result.kind === "too_large") {
        // The model ran and the replica is fine; its answer is too large to pass on.
        dispatcher.release(slot, "errored");
        throw new CallError(
          "model.response_too_large",
          `replica ${slot.id} answered ${formatBytes(result.bytes)}, more than the gateway's response limit of ${formatBytes(this.responseLimit)}; return a URL to large results instead`,
          { replicaId: slot.id, uuid },
        );
      }
      if (result.kind === "late") {
        // The replica may still be running the call: it stays taken until it answers, or is
        // found silent and ejected. For a replica removed meanwhile, nobody would read that.
        if (slot.removed) slot.connection.close();
        result.rest.then((rest) => this.settleLate(dispatcher, slot, rest));
        throw new CallError(
          "model.timeout",
          `replica ${slot.id} gave no answer before the call's deadline: queueTimeoutSeconds + timeoutSeconds (${route.queueTimeoutSeconds + route.timeoutSeconds} s) from its arrival`,
          { replicaId: slot.id, uuid },
        );
      }
      dispatcher.release(slot, "unreachable", failureReason(result));
      if (result.kind === "unreachable") {
        // It never reached an agent, so it did not run: another replica may take it.
        retried = true;
        now = performance.now();
        continue;
      }
      if (result.kind === "silent") {
        throw new CallError(
          "model.timeout",
          `replica ${slot.id} gave no answer within timeoutSeconds (${route.timeoutSeconds} s) and a grace of ${UPSTREAM_GRACE_MS / 1000} s; it is taken out of rotation until it answers again`,
          { replicaId: slot.id, uuid },
        );
      }
      throw new CallError(
        "model.unexpected_shutdown",
        `replica ${slot.id} went away while answering (${result.reason}); the call may have run — see the replica's log`,
        { replicaId: slot.id, uuid },
      );
    }
  }

  /** Why a call got no replica: its model went away, every replica is ejected, or all were busy. */
  private noReplica(entry: ModelEntry, onlyNotReady: boolean): CallError {
    const { route, dispatcher } = entry;
    if (dispatcher.closed) {
      return new CallError(
        "model.not_found",
        `model "${route.name}" was removed while the call waited for a replica`,
      );
    }
    if (dispatcher.unavailable) {
      return new CallError(
        "model.unavailable",
        `all ${dispatcher.replicaCount} replicas of model "${route.name}" are unreachable: ${dispatcher.ejectedReasons()}; they are probed and come back as soon as they answer`,
      );
    }
    entry.meters.busy.inc();
    return new CallError("model.busy", busyMessage(route, dispatcher, onlyNotReady));
  }

  /** Gives back a replica whose caller was answered at its deadline, once the replica is done. */
  private settleLate(dispatcher: ModelDispatcher, slot: ReplicaSlot, rest: UpstreamOutcome): void {
    if (rest.kind === "answer") {
      const verdict = answerVerdict(rest.code);
      if (verdict.kind === "eject") dispatcher.release(slot, "unreachable", verdict.reason);
      else dispatcher.release(slot, verdict.kind === "refused" ? "refused" : "errored");
    } else if (rest.kind === "too_large") {
      dispatcher.release(slot, "errored");
    } else {
      dispatcher.release(slot, "unreachable", failureReason(rest));
    }
  }

  private sendFailure(answer: CallAnswer, error: unknown): string {
    if (error instanceof BodyTooLarge) error = new CallError("request.too_large", error.message);
    if (!(error instanceof CallError)) {
      // A bug of ours: say so without details, and keep serving.
      error = new CallError(
        "model.unexpected_shutdown",
        `the gateway failed to handle the call: ${(error as Error).message}`,
      );
    }
    const failure = error as CallError;
    answer(
      ERROR_STATUS[failure.code],
      failure.code,
      errorBody(failure.code, failure.message, failure.extra),
    );
    return failure.code;
  }

  private countRequest(model: string, code: string): void {
    const key = `${model} ${code}`;
    let counter = this.requestCounters.get(key);
    if (counter === undefined) {
      counter = this.metrics.requests.labels({ model, code });
      this.requestCounters.set(key, counter);
    }
    counter.inc();
  }
}

/**
 * What the store keeps of one prediction: the gateway's uuid and times, the model's name, what
 * the replica said it serves (its serves header: `build=3; deployment=iris; deploymentId=4`).
 */
export function predictionRecord(
  model: string,
  uuid: string,
  arrived: number,
  metricsJson: string,
  serves: string | undefined,
): PredictionRecord {
  const endMs = Date.now();
  const record: PredictionRecord = {
    uuid,
    model,
    // The wall clock at arrival, from the monotonic clock's elapsed time: timeOrigin plus
    // performance.now() drifts from Date.now() and could put the start after the end.
    startMs: endMs - Math.round(performance.now() - arrived),
    endMs,
    metricsJson,
  };
  for (const part of (serves ?? "").split(";")) {
    const [name, value] = part.split("=").map((side) => side.trim());
    if (name === "build" && /^[1-9][0-9]*$/.test(value ?? "")) record.build = Number(value);
    else if (name === "deploymentId" && /^[1-9][0-9]*$/.test(value ?? ""))
      record.deploymentId = Number(value);
    else if (name === "deployment" && value) record.deployment = value;
  }
  return record;
}

function busyMessage(
  route: ModelRoute,
  dispatcher: ModelDispatcher,
  onlyNotReady: boolean,
): string {
  const waited = `${route.queueTimeoutSeconds} s (queueTimeoutSeconds)`;
  if (onlyNotReady || dispatcher.replicaCount === 0) {
    return `model "${route.name}" has no ready replica: it is starting, or its replicas fail to load (see their logs); waited ${waited}`;
  }
  const ejected = dispatcher.ejectedCount;
  const unreachable =
    ejected === 0 ? "" : `, and ${ejected} more ${ejected === 1 ? "is" : "are"} unreachable`;
  return `all ${dispatcher.replicaCount - ejected} replicas of model "${route.name}" stayed busy for ${waited}${unreachable}; try again later, or add replicas`;
}

/** What an ejected replica did, for the 503 that lists them. */
function failureReason(
  outcome: Exclude<UpstreamOutcome, { kind: "answer" | "too_large" }>,
): string {
  return outcome.kind === "silent"
    ? `no answer within timeoutSeconds and a grace of ${UPSTREAM_GRACE_MS / 1000} s`
    : outcome.reason;
}
