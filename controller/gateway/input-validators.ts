// The models' inputSchema validators, cached so that a configuration change costs what changed.
// Compiling a schema is Ajv's code generation (0.2–0.5 ms each; a fresh Ajv instance also
// compiles the meta-schema, 12 ms), so the gateway keeps one validator per distinct schema text,
// shared by every model with that schema and kept for as long as one has it. A new schema is
// checked against the meta-schema at once (microseconds: a broken schema still rejects the
// configuration) and compiled after the change is in, a few milliseconds at a time between
// calls; a call that comes first compiles it on the spot.
import type { ErrorObject, ValidateFunction } from "ajv/dist/2020.js";
import { type InputSchemaAjv, newInputSchemaAjv } from "../api/schemas.ts";

/** How long one slice of background compiling may hold the event loop. */
const COMPILE_SLICE_MS = 5;

/**
 * Keywords that make a schema depend on others or name itself: such a schema gets an Ajv of its
 * own (two models may use one $id for different schemas) and is compiled at once, so that a
 * reference that does not resolve rejects the configuration rather than a call. So does a
 * `$schema` naming another dialect than the shared Ajv's (2020-12): 2019-09 or draft-07 get an
 * Ajv of that dialect, any other is refused. And so does a `$ref` to anything but a place in
 * the schema itself (localReferencesResolve).
 */
const SELF_CONTAINED_NOT = /"\$(?:id|dynamicRef|dynamicAnchor|recursiveRef|recursiveAnchor)"\s*:/;
const REFERENCES = /"\$(?:ref|anchor)"\s*:/;
const OTHER_DIALECT = /"\$schema"\s*:\s*"(?!https:\/\/json-schema\.org\/draft\/2020-12\/schema#?")/;

/**
 * The shared Ajv keeps something of every schema it compiled, even once removed (its value
 * scope): after this many schemas freed, later ones go to a new instance, and the old one is
 * freed with the last validator that uses it.
 */
const DISPOSALS_PER_AJV = 500;

/**
 * Checks new schemas against the 2020-12 meta-schema. Its first check compiles the meta-schema
 * (~50 ms), so it is one for the whole process, made and warmed when the first gateway starts
 * (warmMetaSchema), not during a configuration change; it keeps nothing of what it checks, so
 * it is never replaced, unlike the compiling instance.
 */
let metaSchemaChecker: InputSchemaAjv | undefined;

function metaSchema(): InputSchemaAjv {
  if (metaSchemaChecker === undefined) {
    metaSchemaChecker = newInputSchemaAjv();
    metaSchemaChecker.validateSchema({});
  }
  return metaSchemaChecker;
}

/** Compiles the meta-schema's check now, before any configuration comes. */
export function warmMetaSchema(): void {
  metaSchema();
}

/** The shared compiling instance: its schemas were checked against the meta-schema already. */
const sharedAjv = () => newInputSchemaAjv(undefined, { checkSchemas: false });

export class InputValidator {
  readonly text: string;
  readonly schema: Record<string, unknown>;
  /** Models configured with it; at 0 it leaves the cache. */
  users = 0;
  private compiled: ValidateFunction | undefined;
  private readonly ajv: InputSchemaAjv;
  /** No model has it any more; a call still holding it compiles it on an Ajv of its own. */
  private disposed = false;

  constructor(text: string, schema: Record<string, unknown>, ajv: InputSchemaAjv) {
    this.text = text;
    this.schema = schema;
    this.ajv = ajv;
  }

  sharesAjv(ajv: InputSchemaAjv): boolean {
    return this.ajv === ajv;
  }

  get isCompiled(): boolean {
    return this.compiled !== undefined;
  }

  compile(): ValidateFunction {
    const compiled =
      this.compiled ??
      (this.disposed ? newInputSchemaAjv(this.schema) : this.ajv).compile(this.schema);
    this.compiled = compiled;
    return compiled;
  }

  /** The problems with `request`, or undefined when it matches. */
  problems(request: unknown): ErrorObject[] | undefined {
    const validate = this.compile();
    return validate(request) ? undefined : (validate.errors ?? []);
  }

  /** Frees what Ajv keeps of it (the shared instance caches each schema it compiled). */
  dispose(): void {
    this.disposed = true;
    if (this.compiled !== undefined) this.ajv.removeSchema(this.schema);
  }
}

export class InputValidators {
  /** One Ajv for every self-contained schema: creating one costs more than a compile. */
  private shared = sharedAjv();
  private disposedOfShared = 0;
  private readonly byText = new Map<string, InputValidator>();
  private pending: InputValidator[] = [];
  private scheduled = false;

  get size(): number {
    return this.byText.size;
  }

  /**
   * The validator of `schema`, counted as used once more; throws when the schema is not one.
   * Release it with release() when the model goes or changes its schema.
   */
  acquire(schema: Record<string, unknown>): InputValidator {
    const text = JSON.stringify(schema);
    let validator = this.byText.get(text);
    if (validator === undefined) {
      const selfContained =
        !SELF_CONTAINED_NOT.test(text) &&
        !OTHER_DIALECT.test(text) &&
        (!REFERENCES.test(text) || localReferencesResolve(schema));
      if (!selfContained) {
        validator = new InputValidator(text, schema, newInputSchemaAjv(schema));
        validator.compile(); // throws for a reference that does not resolve
      } else {
        const checker = metaSchema();
        if (!checker.validateSchema(schema)) {
          throw new Error(checker.errorsText(checker.errors, { dataVar: "inputSchema" }));
        }
        checkPatterns(schema);
        validator = new InputValidator(text, schema, this.shared);
        this.pending.push(validator);
      }
      this.byText.set(text, validator);
    }
    validator.users += 1;
    return validator;
  }

  release(validator: InputValidator): void {
    validator.users -= 1;
    if (validator.users > 0 || this.byText.get(validator.text) !== validator) return;
    this.byText.delete(validator.text);
    validator.dispose();
    if (validator.sharesAjv(this.shared) && ++this.disposedOfShared >= DISPOSALS_PER_AJV) {
      this.shared = sharedAjv();
      this.disposedOfShared = 0;
    }
  }

  /** Compiles what acquire() left for later, in slices between calls. */
  compileLater(): void {
    if (this.scheduled || this.pending.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const until = performance.now() + COMPILE_SLICE_MS;
      while (this.pending.length > 0 && performance.now() < until) {
        const validator = this.pending.pop() as InputValidator;
        // One released meanwhile is not compiled at all. A schema Ajv cannot compile though its
        // meta-schema passed fails its calls instead, each saying why (Gateway.checkInput).
        try {
          if (validator.users > 0) validator.compile();
        } catch {}
      }
      this.compileLater();
    });
  }

  /** Schemas waiting for their compile (for tests and the benchmark). */
  get pendingCount(): number {
    return this.pending.filter((validator) => validator.users > 0 && !validator.isCompiled).length;
  }
}

/**
 * Whether every `$ref` in `schema` points inside it — a JSON pointer (`#/$defs/point`) to a
 * schema there, or a `$anchor` of it (`#point`) — so that the shared Ajv compiles it later as
 * it would now. Any other reference (another document, one that does not resolve) is false: the
 * schema is compiled at once, and Ajv's error names what does not resolve.
 */
export function localReferencesResolve(schema: Record<string, unknown>): boolean {
  const references: string[] = [];
  const anchors = new Set<string>();
  collectReferences(schema, references, anchors);
  return references.every((reference) =>
    reference.startsWith("#/") || reference === "#"
      ? isSchema(pointerTarget(schema, reference))
      : reference.startsWith("#") && anchors.has(reference.slice(1)),
  );
}

function collectReferences(schema: unknown, references: string[], anchors: Set<string>): void {
  forEachSchemaMember(schema, (key, member) => {
    if (key === "$ref" && typeof member === "string") references.push(member);
    else if (key === "$anchor" && typeof member === "string") anchors.add(member);
  });
}

/** What a `#/...` JSON pointer (RFC 6901, in a URI fragment) names in `root`, if anything. */
function pointerTarget(root: unknown, reference: string): unknown {
  if (reference === "#") return root;
  let target = root;
  for (const encoded of reference.slice(2).split("/")) {
    let segment: string;
    try {
      segment = decodeURIComponent(encoded).replaceAll("~1", "/").replaceAll("~0", "~");
    } catch {
      return undefined;
    }
    if (typeof target !== "object" || target === null || !Object.hasOwn(target, segment)) {
      return undefined;
    }
    target = (target as Record<string, unknown>)[segment];
  }
  return target;
}

const isSchema = (value: unknown) =>
  typeof value === "boolean" ||
  (typeof value === "object" && value !== null && !Array.isArray(value));

/**
 * The meta-schema does not check that a `pattern` (or a `patternProperties` name) is a regular
 * expression; Ajv's compile would, later. Checked here, as Ajv builds them (Unicode), so that a
 * broken one rejects the configuration.
 */
const DATA_KEYWORDS = new Set(["const", "enum", "default", "examples"]);

function checkPatterns(schema: unknown): void {
  forEachSchemaMember(schema, (key, member, at) => {
    if (key === "pattern" && typeof member === "string") regularExpression(member, `${at}/pattern`);
    if (key === "patternProperties" && typeof member === "object" && member !== null) {
      for (const name of Object.keys(member)) regularExpression(name, `${at}/patternProperties`);
    }
  });
}

/**
 * Calls `visit` with each member of each object in a schema and the JSON pointer of the object,
 * but for the values of DATA_KEYWORDS: data, not schemas (a "pattern" or "$ref" there is data).
 */
function forEachSchemaMember(
  value: unknown,
  visit: (key: string, member: unknown, at: string) => void,
  at = "",
): void {
  if (typeof value !== "object" || value === null) return;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) forEachSchemaMember(item, visit, `${at}/${index}`);
    return;
  }
  for (const [key, member] of Object.entries(value)) {
    if (DATA_KEYWORDS.has(key)) continue;
    visit(key, member, at);
    forEachSchemaMember(member, visit, `${at}/${key}`);
  }
}

function regularExpression(source: string, at: string): void {
  try {
    new RegExp(source, "u");
  } catch (error) {
    throw new Error(`${at}: ${(error as Error).message}`);
  }
}
