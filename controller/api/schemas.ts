// Loads the JSON Schemas in schemas/ — the single source of truth for every kind — and gives
// the two views the rest of the code needs: an ajv validator per kind, and each schema with
// its $refs inlined (for the CRD, type and documentation generators).
import { readFileSync } from "node:fs";
import { Ajv } from "ajv";
import { Ajv2019 } from "ajv/dist/2019.js";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import type { Options } from "ajv/dist/core.js";
import addFormatsModule from "ajv-formats";

import { DEFAULT_MAX_REPLICAS, KINDS, type Kind } from "./kinds.ts";

export {
  API_GROUP,
  API_VERSION,
  DEFAULT_MAX_REPLICAS,
  GROUP_VERSION,
  KIND_NAMES,
  KINDS,
  type Kind,
} from "./kinds.ts";

export type JsonSchema = { [keyword: string]: unknown };

const SCHEMA_DIR = new URL("../../schemas/", import.meta.url);

/** Keywords that carry Kubernetes or modelship hints; ajv must know them to stay in strict mode. */
const ANNOTATION_KEYWORDS = [
  "x-kubernetes",
  "x-kubernetes-int-or-string",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-validations",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-message",
];

function readSchema(file: string): JsonSchema {
  return JSON.parse(readFileSync(new URL(file, SCHEMA_DIR), "utf8")) as JsonSchema;
}

export function schemaFileOf(kind: Kind): string {
  return `${kind.toLowerCase()}.schema.json`;
}

export const COMMON_SCHEMA_FILE = "common.schema.json";

/** The raw schema of a kind, as written in schemas/. */
export function loadKindSchema(kind: Kind): JsonSchema {
  return readSchema(schemaFileOf(kind));
}

export function loadCommonSchema(): JsonSchema {
  return readSchema(COMMON_SCHEMA_FILE);
}

export interface ValidatorOptions {
  /** Upper bound of ModelDeployment spec.replicas (default 9). */
  maxReplicas?: number;
}

/** Builds an ajv instance in strict mode that knows our annotation keywords and formats. */
export function newAjv(): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: true,
    // parentSchema on each error lets us name the known fields and read x-message.
    verbose: true,
    strict: true,
    // `pattern` next to `anyOf` on int-or-string quantities is deliberate (it applies to the
    // string form only), which strictTypes would reject.
    strictTypes: false,
  });
  // ajv-formats is CommonJS: its plugin is both module.exports and module.exports.default.
  addFormatsModule.default(ajv);
  for (const keyword of ANNOTATION_KEYWORDS)
    ajv.addKeyword({ keyword, schemaType: ["object", "array", "boolean", "string"] });
  return ajv;
}

/** An Ajv of one of the dialects below. */
export type InputSchemaAjv = Ajv | Ajv2019 | Ajv2020;

/** The JSON Schema dialects a user's schema may name in `$schema` (without a trailing `#`). */
const INPUT_SCHEMA_DIALECTS: Record<string, new (options: Options) => InputSchemaAjv> = {
  "https://json-schema.org/draft/2020-12/schema": Ajv2020,
  "https://json-schema.org/draft/2019-09/schema": Ajv2019,
  "http://json-schema.org/draft-07/schema": Ajv,
};

/**
 * An ajv for schemas that users write (a Model's inputSchema), with formats, not strict, since
 * hand-written schemas often carry harmless extra keywords: draft 2020-12, or the dialect
 * `schema`'s `$schema` names (2019-09, draft-07); throws naming any other. `checkSchemas: false`
 * for schemas already checked against the meta-schema: its compile skips that check (whose
 * first run compiles the meta-schema, ~50 ms).
 */
export function newInputSchemaAjv(
  schema?: unknown,
  { checkSchemas = true }: { checkSchemas?: boolean } = {},
): InputSchemaAjv {
  const named =
    typeof schema === "object" && schema !== null
      ? (schema as { $schema?: unknown }).$schema
      : undefined;
  const dialect =
    named === undefined
      ? Ajv2020
      : typeof named === "string"
        ? INPUT_SCHEMA_DIALECTS[named.replace(/#$/, "")]
        : undefined;
  if (dialect === undefined) {
    throw new Error(
      `$schema ${JSON.stringify(named)} is not a JSON Schema dialect the gateway checks: leave $schema out (draft 2020-12), or name https://json-schema.org/draft/2020-12/schema, https://json-schema.org/draft/2019-09/schema or http://json-schema.org/draft-07/schema#`,
    );
  }
  const ajv = new dialect({ allErrors: true, strict: false, validateSchema: checkSchemas });
  addFormatsModule.default(ajv);
  return ajv;
}

/** Compiles one validator per kind, with the installation's replica limit applied. */
export function compileKindValidators(options: ValidatorOptions = {}): Map<Kind, ValidateFunction> {
  const ajv = newAjv();
  ajv.addSchema(loadCommonSchema());
  const validators = new Map<Kind, ValidateFunction>();
  for (const kind of KINDS) {
    const schema = loadKindSchema(kind);
    if (kind === "ModelDeployment") {
      setReplicaLimit(schema, options.maxReplicas ?? DEFAULT_MAX_REPLICAS);
    }
    validators.set(kind, ajv.compile(schema));
  }
  return validators;
}

let defaulting: Map<Kind, ValidateFunction> | undefined;

/**
 * A copy of `object` with the schema's defaults filled in where a field is missing, as the API
 * server fills them in from the CRD (the same schema): so what a sync applies says everything
 * the live object will hold, and a hand edit of a field git leaves at its default shows as drift.
 */
export function withDefaults<T>(kind: Kind, object: T): T {
  if (!defaulting) {
    const ajv = newAjv();
    ajv.opts.useDefaults = true;
    ajv.addSchema(loadCommonSchema());
    defaulting = new Map(KINDS.map((each) => [each, ajv.compile(loadKindSchema(each))]));
  }
  const copy = structuredClone(object);
  (defaulting.get(kind) as ValidateFunction)(copy);
  return copy;
}

function setReplicaLimit(deploymentSchema: JsonSchema, maxReplicas: number): void {
  const replicas = propertyAt(deploymentSchema, ["spec", "replicas"]);
  replicas.maximum = maxReplicas;
  replicas.description = String(replicas.description).replace(
    /At most \d+ unless the installation raises the limit\./,
    `At most ${maxReplicas} in this installation.`,
  );
}

function propertyAt(schema: JsonSchema, path: string[]): JsonSchema {
  let node = schema;
  for (const name of path) {
    node = (node.properties as Record<string, JsonSchema>)[name] as JsonSchema;
  }
  return node;
}

/**
 * Returns the schema with every $ref replaced by a copy of its target; keywords written beside
 * a $ref (description, default) win over the target's.
 */
export function inlineRefs(
  schema: JsonSchema,
  common: JsonSchema = loadCommonSchema(),
): JsonSchema {
  const resolve = (ref: string, base: JsonSchema): JsonSchema => {
    const [file, fragment = ""] = ref.split("#");
    const document = file ? (file === COMMON_SCHEMA_FILE ? common : readSchema(file)) : base;
    let target: unknown = document;
    for (const token of fragment.split("/").filter(Boolean)) {
      target = (target as Record<string, unknown>)[token];
    }
    if (target === undefined) throw new Error(`unresolvable $ref ${ref}`);
    return target as JsonSchema;
  };
  const walk = (node: unknown, base: JsonSchema): unknown => {
    if (Array.isArray(node)) return node.map((item) => walk(item, base));
    if (node === null || typeof node !== "object") return node;
    const object = node as JsonSchema;
    let result: JsonSchema = {};
    let nextBase = base;
    if (typeof object.$ref === "string") {
      const [file] = object.$ref.split("#");
      // A $ref into another file resolves that file's own local refs against it.
      if (file) nextBase = file === COMMON_SCHEMA_FILE ? common : readSchema(file);
      result = walk(resolve(object.$ref, base), nextBase) as JsonSchema;
    }
    for (const [key, value] of Object.entries(object)) {
      if (key === "$ref" || key === "$defs") continue;
      result[key] = walk(value, base);
    }
    return result;
  };
  return walk(schema, schema) as JsonSchema;
}
