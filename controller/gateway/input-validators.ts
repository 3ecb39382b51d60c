// The models' inputSchema validators, cached so that a configuration change costs what changed.
// Compiling a schema is Ajv's code generation (0.2–0.5 ms each; a fresh Ajv instance also
// compiles the meta-schema, 12 ms), so the gateway keeps one validator per distinct schema text,
// shared by every model with that schema and kept for as long as one has it. A new schema is
// checked against the meta-schema at once (microseconds: a broken schema still rejects the
// configuration) and compiled after the change is in, a few milliseconds at a time between
// calls; a call that comes first compiles it on the spot.
import type { Ajv2020, ErrorObject, ValidateFunction } from "ajv/dist/2020.js";
import { newInputSchemaAjv } from "../api/schemas.ts";

/** How long one slice of background compiling may hold the event loop. */
const COMPILE_SLICE_MS = 5;

/**
 * Keywords that make a schema depend on others or name itself: such a schema gets an Ajv of its
 * own (two models may use one $id for different schemas) and is compiled at once, so that a
 * reference that does not resolve rejects the configuration rather than a call. So does a
 * `$schema` naming another dialect than the one the gateway's Ajv speaks (2020-12).
 */
const SELF_CONTAINED_NOT =
  /"\$(?:id|ref|anchor|dynamicRef|dynamicAnchor|recursiveRef|recursiveAnchor)"\s*:/;
const OTHER_DIALECT = /"\$schema"\s*:\s*"(?!https:\/\/json-schema\.org\/draft\/2020-12\/schema#?")/;

/**
 * The shared Ajv keeps something of every schema it compiled, even once removed (its value
 * scope): after this many schemas freed, later ones go to a new instance, and the old one is
 * freed with the last validator that uses it.
 */
const DISPOSALS_PER_AJV = 500;

export class InputValidator {
  readonly text: string;
  readonly schema: Record<string, unknown>;
  /** Models configured with it; at 0 it leaves the cache. */
  users = 0;
  private compiled: ValidateFunction | undefined;
  private readonly ajv: Ajv2020;
  /** No model has it any more; a call still holding it compiles it on an Ajv of its own. */
  private disposed = false;

  constructor(text: string, schema: Record<string, unknown>, ajv: Ajv2020) {
    this.text = text;
    this.schema = schema;
    this.ajv = ajv;
  }

  sharesAjv(ajv: Ajv2020): boolean {
    return this.ajv === ajv;
  }

  get isCompiled(): boolean {
    return this.compiled !== undefined;
  }

  compile(): ValidateFunction {
    const compiled =
      this.compiled ?? (this.disposed ? newInputSchemaAjv() : this.ajv).compile(this.schema);
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
  private shared = newInputSchemaAjv();
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
      if (SELF_CONTAINED_NOT.test(text) || OTHER_DIALECT.test(text)) {
        validator = new InputValidator(text, schema, newInputSchemaAjv());
        validator.compile(); // throws for a reference that does not resolve
      } else {
        if (!this.shared.validateSchema(schema)) {
          throw new Error(this.shared.errorsText(this.shared.errors, { dataVar: "inputSchema" }));
        }
        checkPatterns(schema, "");
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
      this.shared = newInputSchemaAjv();
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
 * The meta-schema does not check that a `pattern` (or a `patternProperties` name) is a regular
 * expression; Ajv's compile would, later. Checked here, as Ajv builds them (Unicode), so that a
 * broken one rejects the configuration.
 */
const DATA_KEYWORDS = new Set(["const", "enum", "default", "examples"]);

function checkPatterns(value: unknown, at: string): void {
  if (typeof value !== "object" || value === null) return;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) checkPatterns(item, `${at}/${index}`);
    return;
  }
  for (const [key, member] of Object.entries(value)) {
    if (DATA_KEYWORDS.has(key)) continue; // values, not schemas: a "pattern" there is data
    if (key === "pattern" && typeof member === "string") regularExpression(member, `${at}/pattern`);
    if (key === "patternProperties" && typeof member === "object" && member !== null) {
      for (const name of Object.keys(member)) regularExpression(name, `${at}/patternProperties`);
    }
    checkPatterns(member, `${at}/${key}`);
  }
}

function regularExpression(source: string, at: string): void {
  try {
    new RegExp(source, "u");
  } catch (error) {
    throw new Error(`${at}: ${(error as Error).message}`);
  }
}
