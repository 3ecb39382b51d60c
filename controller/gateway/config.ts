// What the gateway serves: models, their replicas, their keys. The registry port is "something
// that hands the gateway a GatewayConfig whenever it changes": the local and Kubernetes platforms
// do it in process; `modelship gateway --config FILE` reads it from a YAML or JSON file
// (schemas/gateway-config.schema.json, docs/gateway.md).
import { readFileSync } from "node:fs";
import type { ValidateFunction } from "ajv/dist/2020.js";
import { parse as parseYaml } from "yaml";
import { newAjv } from "../api/schemas.ts";
import type { ApiKeyRecord } from "./keys.ts";

export interface ReplicaAddress {
  id: string;
  /** Base URL of the replica agent: http://host:port, or unix:/absolute/path.sock */
  url: string;
  /**
   * Sent to the replica in x-modelship-gateway-secret: the secret its agent was started with
   * (`gatewaySecret`), so that only the gateway can call it. Each deployment has its own.
   */
  secret?: string;
}

export interface ModelRoute {
  name: string;
  /** sha256 (hex) of the model's access key; without one, POST /model cannot reach the model. */
  accessKeySha256?: string;
  authentication: { enabled: boolean; users?: string[] };
  inputSchema?: Record<string, unknown>;
  /** The largest request body for this model; undefined: the gateway's own limit. */
  maxRequestBytes?: number;
  queueTimeoutSeconds: number;
  timeoutSeconds: number;
  stopped: boolean;
  replicas: ReplicaAddress[];
}

export interface GatewayConfig {
  models: ModelRoute[];
  apiKeys: ApiKeyRecord[];
}

/** A change to what the gateway serves, for `Gateway.applyChanges()`: only what changed. */
export interface GatewayChanges {
  /** Models added, or changed (each its whole route). */
  models?: ModelRoute[];
  /** Names of models no longer served. */
  removed?: string[];
  /** All the API keys, when they changed. */
  apiKeys?: ApiKeyRecord[];
}

/**
 * Whether two JSON values are the same: equal scalars, arrays equal item by item, objects with
 * the same members in any order. It stops at the first difference and builds nothing, so telling
 * 1,000 unchanged routes costs far less than writing each one out as JSON to compare the text.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let index = 0; index < a.length; index++) {
      if (!sameJson(a[index], b[index])) return false;
    }
    return true;
  }
  if (Array.isArray(b)) return false;
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  let members = 0;
  for (const key in left) {
    if (!Object.hasOwn(left, key)) continue;
    if (!Object.hasOwn(right, key) || !sameJson(left[key], right[key])) return false;
    members += 1;
  }
  for (const key in right) if (Object.hasOwn(right, key)) members -= 1;
  return members === 0;
}

/**
 * What changed from the routes given so far (each name's route by `currentOf`, all their names
 * `names`) to `config`: its routes that are new or differ in any field (the replicas too), and
 * the names it no longer has.
 */
export function routeChanges(
  config: GatewayConfig,
  currentOf: (name: string) => ModelRoute | undefined,
  names: Iterable<string>,
): { models: ModelRoute[]; removed: string[] } {
  const given = new Set<string>();
  const models: ModelRoute[] = [];
  for (const route of config.models) {
    given.add(route.name);
    if (!sameJson(currentOf(route.name), route)) models.push(route);
  }
  const removed = [...names].filter((name) => !given.has(name));
  return { models, removed };
}

/**
 * Turns whole configurations, made again at every event, into the changes since the last one
 * that went in (Gateway.applyChanges): a feed that sends only what changed.
 */
export class GatewayChangeTracker {
  /** The routes that went in last, by name. */
  private applied = new Map<string, ModelRoute>();
  private appliedApiKeys: string | undefined;

  /**
   * The changes from what was applied to `config`, or undefined when there are none. `commit()`
   * records `config` as applied: call it once the gateway took the changes.
   */
  changesTo(config: GatewayConfig): { changes: GatewayChanges; commit(): void } | undefined {
    const { models, removed } = routeChanges(
      config,
      (name) => this.applied.get(name),
      this.applied.keys(),
    );
    const apiKeys = JSON.stringify(config.apiKeys);
    const keysChanged = apiKeys !== this.appliedApiKeys;
    if (models.length === 0 && removed.length === 0 && !keysChanged) return undefined;
    return {
      changes: { models, removed, ...(keysChanged ? { apiKeys: config.apiKeys } : {}) },
      commit: () => {
        this.applied = new Map(config.models.map((route) => [route.name, route]));
        this.appliedApiKeys = apiKeys;
      },
    };
  }
}

let validateConfig: ValidateFunction | undefined;

function configValidator(): ValidateFunction {
  if (validateConfig === undefined) {
    const schema = JSON.parse(
      readFileSync(new URL("../../schemas/gateway-config.schema.json", import.meta.url), "utf8"),
    );
    const ajv = newAjv();
    ajv.opts.useDefaults = true;
    validateConfig = ajv.compile(schema);
  }
  return validateConfig;
}

/**
 * Parses and checks a gateway configuration (YAML is a superset of JSON), filling in defaults.
 * Throws one error listing every problem as `FILE: /pointer: message`.
 */
export function parseGatewayConfig(text: string, file: string): GatewayConfig {
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    throw new Error(`${file}: not YAML or JSON: ${(error as Error).message}`);
  }
  const validate = configValidator();
  if (!validate(document)) {
    const problems = (validate.errors ?? []).map((error) => {
      const custom = (error.parentSchema as { "x-message"?: string } | undefined)?.["x-message"];
      const message =
        error.keyword === "additionalProperties"
          ? `unknown field "${(error.params as { additionalProperty: string }).additionalProperty}"`
          : error.keyword === "pattern" && custom
            ? custom
            : error.message;
      return `${file}: ${error.instancePath || "/"}: ${message}`;
    });
    throw new Error(problems.join("\n"));
  }
  const config = document as GatewayConfig;
  const names = new Set<string>();
  for (const [index, model] of config.models.entries()) {
    if (names.has(model.name)) {
      throw new Error(`${file}: /models/${index}/name: model "${model.name}" is listed twice`);
    }
    names.add(model.name);
  }
  return config;
}
