// Checks a set of manifests the way the controller will apply them: each document on its own
// (apiVersion, kind, schema) and all of them together (duplicates, references, model files).
// Every problem names its file, line, column, object and field, so that a person — or a pull
// request check — can go straight to it.

import { posix } from "node:path";
import type { ErrorObject, ValidateFunction } from "ajv";
import { isRecord } from "../api/canonical-json.ts";
import {
  compileKindValidators,
  GROUP_VERSION,
  type JsonSchema,
  KINDS,
  type Kind,
  newInputSchemaAjv,
  type ValidatorOptions,
} from "../api/schemas.ts";
import { MAX_EXAMPLES_FILE_BYTES, parseExamplesFile } from "./examples.ts";
import { RUNTIME_EXTENSIONS, topLevelNames } from "./functions.ts";
import { type ManifestLimits, manifestLimits } from "./limits.ts";
import { admitManifests } from "./manifest-files.ts";
import { type ManifestDocument, type Position, parseManifestFile, pointerOf } from "./manifests.ts";
import {
  buildFilter,
  type DeclaredModel,
  MODELSHIPIGNORE,
  type SourceFilter,
} from "./source-filter.ts";
import { didYouMean } from "./suggest.ts";
import type { SourceTree } from "./tree.ts";

/** Stable identifiers of the checks, for tools that read `--output json`. */
export type Rule =
  | "yaml-syntax"
  | "api-version"
  | "kind"
  | "schema"
  | "unknown-field"
  | "duplicate"
  | "controller-owned"
  | "model-reference"
  | "namespace"
  | "source-path"
  | "model-file"
  | "build-script"
  | "function"
  | "input-schema"
  | "examples"
  | "limit"
  | "encoding"
  | "route";

export interface Problem {
  file: string;
  line: number;
  column: number;
  kind?: string;
  name?: string;
  namespace?: string;
  pointer: string;
  rule: Rule;
  message: string;
}

export interface ManifestSource {
  /** Path of the file as shown to the user. */
  file: string;
  /** Path of the file relative to the repository root, '/'-separated. */
  repoPath: string;
  /** The file's text; "" when `refused`. */
  text: string;
  /**
   * Why the reader did not read or decode the file (a limit, bytes that are not UTF-8): reported
   * as it is, and nothing is parsed.
   */
  refused?: Problem;
}

interface ObjectMeta {
  name?: unknown;
  namespace?: unknown;
}

/** A document that is one of our kinds, with what the later checks need. */
interface Candidate {
  document: ManifestDocument;
  repoPath: string;
  kind: Kind;
  object: Record<string, unknown>;
  name: string | undefined;
  namespace: string;
}

const DEFAULT_NAMESPACE = "default";

/** The object a problem belongs to; its kind may be one we do not know (a typo). */
interface ProblemSubject {
  document: ManifestDocument;
  kind: string;
  name: string | undefined;
  namespace: string;
}

function problemAt(
  candidate: ProblemSubject,
  pointer: string,
  rule: Rule,
  message: string,
  options: { key?: boolean } = {},
): Problem {
  const position: Position = candidate.document.locate(pointer, options);
  return {
    file: candidate.document.file,
    line: position.line,
    column: position.column,
    kind: candidate.kind,
    ...(candidate.name === undefined ? {} : { name: candidate.name }),
    namespace: candidate.namespace,
    pointer,
    rule,
    message,
  };
}

/**
 * Decides whether a document is ours. Documents that are not Kubernetes-style objects (no
 * apiVersion and no kind: CI files, conda environments) and objects of other API groups are
 * not modelship's business and are skipped; an object that names our group or one of our kinds
 * must be exactly right.
 */
export function identify(
  document: ManifestDocument,
  repoPath: string,
  defaultNamespace = DEFAULT_NAMESPACE,
): { candidate?: Candidate; problems: Problem[] } {
  const object = document.object;
  if (!isRecord(object) || (object.apiVersion === undefined && object.kind === undefined)) {
    return { problems: [] };
  }
  const apiVersion = object.apiVersion;
  const kindValue = object.kind;
  const ourGroup = typeof apiVersion === "string" && apiVersion.startsWith("modelship.dev/");
  const ourKind = (KINDS as readonly unknown[]).includes(kindValue);
  if (!ourGroup && !ourKind) return { problems: [] };

  const metadata = (isRecord(object.metadata) ? object.metadata : {}) as ObjectMeta;
  const name = typeof metadata.name === "string" ? metadata.name : undefined;
  const namespace = typeof metadata.namespace === "string" ? metadata.namespace : defaultNamespace;
  const label = { document, name, namespace };

  if (!ourKind) {
    const named = typeof kindValue === "string";
    const shown = named ? `"${kindValue}"` : "missing";
    const hint = named ? didYouMean(kindValue, KINDS) : "";
    const message = `kind is ${shown}: ${GROUP_VERSION} has ${KINDS.join(", ")}${hint}`;
    const subject = { ...label, kind: named ? kindValue : "?" };
    return { problems: [problemAt(subject, "/kind", "kind", message)] };
  }
  const kind = kindValue as Kind;
  const candidate: Candidate = { document, repoPath, kind, object, name, namespace };
  const problems: Problem[] = [];
  if (apiVersion !== GROUP_VERSION) {
    const shown = typeof apiVersion === "string" ? `"${apiVersion}"` : "missing";
    problems.push(
      problemAt(
        candidate,
        "/apiVersion",
        "api-version",
        `apiVersion is ${shown}: ${kind} is served as ${GROUP_VERSION}`,
      ),
    );
  }
  return { candidate, problems };
}

const TYPE_NAMES: Record<string, string> = {
  integer: "an integer",
  number: "a number",
  string: "a string",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
  null: "null",
};

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function boundsText(schema: JsonSchema): string {
  const { minimum, maximum } = schema;
  if (minimum !== undefined && maximum !== undefined)
    return `between ${String(minimum)} and ${String(maximum)}`;
  if (minimum !== undefined) return `at least ${String(minimum)}`;
  return `at most ${String(maximum)}`;
}

/** Turns ajv's errors for one document into problems, one per cause. */
export function schemaProblems(candidate: Candidate, errors: ErrorObject[]): Problem[] {
  // An anyOf failure also reports why each branch failed; the anyOf's own message says it all.
  const anyOfPaths = errors
    .filter((error) => error.keyword === "anyOf")
    .map((error) => `${error.schemaPath}/`);
  const problems: Problem[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    if (anyOfPaths.some((prefix) => error.schemaPath.startsWith(prefix))) continue;
    // apiVersion and kind were judged by identify().
    if (error.instancePath === "/apiVersion" || error.instancePath === "/kind") continue;
    // propertyNames reports the bad name, then again the pattern it broke: keep the first.
    if (error.propertyName !== undefined && error.keyword !== "propertyNames") continue;
    const parent = (error.parentSchema ?? {}) as JsonSchema;
    let pointer = error.instancePath;
    let rule: Rule = "schema";
    let message: string;
    let key = false;
    switch (error.keyword) {
      case "additionalProperties": {
        const field = String((error.params as { additionalProperty: string }).additionalProperty);
        const known = Object.keys((parent.properties ?? {}) as object);
        pointer = `${error.instancePath}${pointerOf([field])}`;
        rule = "unknown-field";
        key = true;
        const hint = didYouMean(field, known);
        message = `unknown field "${field}"${hint || (known.length ? `; known fields: ${known.join(", ")}` : "")}`;
        break;
      }
      case "required": {
        const field = String((error.params as { missingProperty: string }).missingProperty);
        pointer = `${error.instancePath}${pointerOf([field])}`;
        message = `missing required field "${field}"`;
        break;
      }
      case "propertyNames": {
        const field = String((error.params as { propertyName: string }).propertyName);
        pointer = `${error.instancePath}${pointerOf([field])}`;
        key = true;
        const names = (parent.propertyNames ?? {}) as JsonSchema;
        message = `"${field}" ${String(names["x-message"] ?? "is not an allowed name")}`;
        break;
      }
      case "anyOf":
      case "pattern":
        message = `${String(parent["x-message"] ?? error.message)}, not ${describeValue(error.data)}`;
        break;
      case "enum": {
        const allowed = (parent.enum ?? []) as unknown[];
        const hint =
          typeof error.data === "string" ? didYouMean(error.data, allowed.map(String)) : "";
        message = `must be one of ${allowed.map((value) => JSON.stringify(value)).join(", ")}, not ${describeValue(error.data)}${hint}`;
        break;
      }
      case "type": {
        const expected = String((error.params as { type: string }).type);
        message = `must be ${TYPE_NAMES[expected] ?? expected}, not ${describeValue(error.data)}`;
        break;
      }
      case "minimum":
      case "maximum":
        message = `must be ${boundsText(parent)}, not ${describeValue(error.data)}`;
        break;
      default:
        message = error.message ?? `fails ${error.keyword}`;
    }
    const identity = `${pointer}\u0000${message}`;
    if (seen.has(identity)) continue;
    seen.add(identity);
    problems.push(problemAt(candidate, pointer, rule, message, { key }));
  }
  return problems;
}

/** Objects the controller creates; committing them would fight the controller. */
const CONTROLLER_OWNED: ReadonlySet<Kind> = new Set(["ModelBuild"]);

export function duplicateProblems(candidates: Candidate[]): Problem[] {
  const firstSeen = new Map<string, Candidate>();
  const problems: Problem[] = [];
  for (const candidate of candidates) {
    if (candidate.name === undefined) continue;
    const identity = `${candidate.kind}/${candidate.namespace}/${candidate.name}`;
    const first = firstSeen.get(identity);
    if (!first) {
      firstSeen.set(identity, candidate);
      continue;
    }
    const where = first.document.locate("/metadata/name");
    problems.push(
      problemAt(
        candidate,
        "/metadata/name",
        "duplicate",
        `${candidate.kind} "${candidate.name}" in namespace ${candidate.namespace} is already defined at ${first.document.file}:${where.line}:${where.column}`,
      ),
    );
  }
  return problems;
}

export function modelReferenceProblems(candidates: Candidate[]): Problem[] {
  const modelsByNamespace = new Map<string, Set<string>>();
  for (const candidate of candidates) {
    if (candidate.kind !== "Model" || candidate.name === undefined) continue;
    const names = modelsByNamespace.get(candidate.namespace) ?? new Set();
    names.add(candidate.name);
    modelsByNamespace.set(candidate.namespace, names);
  }
  const problems: Problem[] = [];
  for (const candidate of candidates) {
    if (candidate.kind !== "ModelDeployment") continue;
    const spec = candidate.object.spec;
    const model = isRecord(spec) ? spec.model : undefined;
    if (typeof model !== "string") continue; // the schema check already said so
    const models = modelsByNamespace.get(candidate.namespace) ?? new Set<string>();
    if (models.has(model)) continue;
    const known = models.size
      ? `; Models here: ${[...models].sort().join(", ")}`
      : "; no Model is defined in this namespace";
    problems.push(
      problemAt(
        candidate,
        "/spec/model",
        "model-reference",
        `Model "${model}" is not defined in namespace ${candidate.namespace}${didYouMean(model, models)}${known}`,
      ),
    );
  }
  return problems;
}

/** Where a Model's manifest, code and file are: what source-filter.ts works out its build from. */
export function modelLayout(candidate: Pick<Candidate, "object" | "repoPath">): DeclaredModel {
  const spec = candidate.object.spec;
  const file = isRecord(spec) && typeof spec.file === "string" ? spec.file : undefined;
  return { repoPath: candidate.repoPath, sourcePath: modelSourcePath(candidate), file };
}

/** The directory of a Model's code: spec.source.path, or the manifest's own directory. */
export function modelSourcePath(candidate: Pick<Candidate, "object" | "repoPath">): string {
  const spec = candidate.object.spec;
  const source = isRecord(spec) && isRecord(spec.source) ? spec.source : {};
  const declared =
    typeof source.path === "string" ? source.path : posix.dirname(candidate.repoPath);
  return posix.normalize(declared).replace(/\/+$/, "") || ".";
}

export async function modelSourceProblems(
  candidate: Candidate,
  tree: SourceTree,
): Promise<Problem[]> {
  const spec = candidate.object.spec;
  if (!isRecord(spec)) return [];
  const { runtime, file, function: functionName } = spec;
  const sourcePath = modelSourcePath(candidate);
  const problems: Problem[] = [];
  const at = (pointer: string, rule: Rule, message: string) =>
    problemAt(candidate, pointer, rule, message);

  if (!(await tree.isDirectory(sourcePath))) {
    const pointer =
      isRecord(spec.source) && typeof spec.source.path === "string"
        ? "/spec/source/path"
        : "/metadata/name";
    return [
      at(
        pointer,
        "source-path",
        `source path "${sourcePath}" is not a directory in the repository`,
      ),
    ];
  }
  problems.push(...(await examplesFileProblems(candidate, sourcePath, tree)));
  // Only a named script must exist; the defaults (build.sh, cdsw-build.sh) are optional.
  const script = spec.buildScript;
  if (
    typeof script === "string" &&
    (await tree.readText(posix.join(sourcePath, script))) === undefined
  ) {
    problems.push(
      at(
        "/spec/buildScript",
        "build-script",
        `build script "${script}" not found in ${sourcePath}`,
      ),
    );
  }

  if (typeof file !== "string" || (runtime !== "python3" && runtime !== "r")) return problems;

  const extensions = RUNTIME_EXTENSIONS[runtime];
  if (!extensions.some((extension) => file.endsWith(extension))) {
    problems.push(
      at(
        "/spec/file",
        "model-file",
        `runtime ${runtime} loads ${extensions.join(" or ")} files, not "${file}"`,
      ),
    );
    return problems;
  }
  const text = await tree.readText(posix.join(sourcePath, file));
  if (text === undefined) {
    problems.push(
      at("/spec/file", "model-file", `file "${file}" not found in source path "${sourcePath}"`),
    );
    return problems;
  }
  // The build gets only what its filter keeps: a model file it leaves out could never load.
  // (Other Models' directories never hold it: one that holds a Model's file stays in its build.)
  const leftOut = await buildFilterOf(spec, sourcePath, tree);
  if (leftOut(posix.normalize(file))) {
    problems.push(
      at(
        "/spec/file",
        "model-file",
        `file "${file}" is left out of the build by source.exclude or ${MODELSHIPIGNORE}`,
      ),
    );
    return problems;
  }
  if (typeof functionName !== "string") return problems;
  const names = topLevelNames(runtime, text);
  if (names.functions.includes(functionName) || names.otherNames.includes(functionName))
    return problems;
  const how =
    runtime === "python3" ? "defined at the top level" : "assigned a function at the top level";
  const found = names.functions.length
    ? `; functions found: ${names.functions.join(", ")}`
    : "; the file defines no function";
  problems.push(
    at(
      "/spec/function",
      "function",
      `function "${functionName}" is not ${how} of ${file}${didYouMean(functionName, names.functions)}${found}`,
    ),
  );
  return problems;
}

/**
 * spec.examplesFile must exist in the source path, within its size, and hold one example per
 * line: each bad line is a problem at that line of that file.
 */
async function examplesFileProblems(
  candidate: Candidate,
  sourcePath: string,
  tree: SourceTree,
): Promise<Problem[]> {
  const spec = candidate.object.spec as Record<string, unknown>;
  const file = spec.examplesFile;
  if (typeof file !== "string") return [];
  const repoPath = posix.join(sourcePath, file);
  const text = await tree.readText(repoPath);
  const at = (message: string) => problemAt(candidate, "/spec/examplesFile", "examples", message);
  if (text === undefined) return [at(`examples file "${file}" not found in ${sourcePath}`)];
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_EXAMPLES_FILE_BYTES) {
    return [
      at(`examples file "${file}" is ${bytes} bytes; at most ${MAX_EXAMPLES_FILE_BYTES} are read`),
    ];
  }
  // Shown as the manifest's path is: below the same directory as the repository's root.
  const manifest = candidate.document.file;
  const root = manifest.endsWith(candidate.repoPath)
    ? manifest.slice(0, manifest.length - candidate.repoPath.length)
    : "";
  return parseExamplesFile(text, repoPath).problems.map((problem) => ({
    file: `${root}${repoPath}`,
    line: problem.line,
    column: 1,
    kind: candidate.kind,
    ...(candidate.name === undefined ? {} : { name: candidate.name }),
    namespace: candidate.namespace,
    pointer: "/spec/examplesFile",
    rule: "examples" as const,
    message: problem.message,
  }));
}

/** What the build leaves out by the Model's own rules: source.exclude and .modelshipignore. */
async function buildFilterOf(
  spec: Record<string, unknown>,
  sourcePath: string,
  tree: SourceTree,
): Promise<SourceFilter> {
  const source = isRecord(spec.source) ? spec.source : {};
  const declared = Array.isArray(source.exclude)
    ? source.exclude.filter((pattern): pattern is string => typeof pattern === "string")
    : [];
  const ignoreFile = await tree.readText(posix.join(sourcePath, MODELSHIPIGNORE));
  return buildFilter(declared, ignoreFile);
}

/** spec.inputSchema must be a JSON Schema, and spec.example.input must pass it. */
export function inputSchemaProblems(candidate: Candidate): Problem[] {
  const spec = candidate.object.spec;
  if (!isRecord(spec) || !isRecord(spec.inputSchema)) return [];
  let check: ValidateFunction;
  try {
    check = newInputSchemaAjv(spec.inputSchema).compile(spec.inputSchema);
  } catch (error) {
    return [
      problemAt(
        candidate,
        "/spec/inputSchema",
        "input-schema",
        `not a valid JSON Schema: ${(error as Error).message}`,
      ),
    ];
  }
  const example = isRecord(spec.example) ? spec.example : {};
  if (!("input" in example) || check(example.input)) return [];
  const reasons = (check.errors ?? []).map(
    (error) => `${error.instancePath || "input"} ${error.message}`,
  );
  return [
    problemAt(
      candidate,
      "/spec/example/input",
      "input-schema",
      `example input does not match inputSchema: ${reasons.join("; ")}`,
    ),
  ];
}

export function compareProblems(a: Problem, b: Problem): number {
  return (
    a.file.localeCompare(b.file) ||
    a.line - b.line ||
    a.column - b.column ||
    a.message.localeCompare(b.message)
  );
}

/** One object the manifests declare, as written (defaults are the reconcilers' business). */
export interface DeclaredObject {
  kind: Kind;
  namespace: string;
  name: string;
  /** The manifest file it came from, relative to the repository root. */
  repoPath: string;
  /** The line of that file its document starts on (its first key). */
  line: number;
  object: Record<string, unknown>;
}

export interface ValidateOptions extends ValidatorOptions {
  /**
   * The namespace everything goes to (a sync: the ModelRepository's). Objects that name no
   * namespace go there, and one that names another is a problem: a repository applies only into
   * its own namespace, as Flux's multi-tenancy lockdown does. Unset (`modelship validate`): any
   * namespace, "default" when none is named.
   */
  namespace?: string;
  /** Limits to use instead of the defaults (MANIFEST_LIMITS). */
  limits?: Partial<ManifestLimits>;
  /**
   * The namespaces that already have a Model of this name (a sync: what the cluster holds).
   * The gateway's path names a model by its name alone, so a name is one model's everywhere.
   */
  modelNamespaces?: (name: string) => string[];
}

/**
 * Models whose name another namespace already has — in these manifests, or (with
 * `modelNamespaces`) among the existing objects. The gateway serves `/model/<name>`: a twin could
 * only ever share the other's route, keys and settings, so it is refused; the existing Model
 * keeps serving as it was.
 */
export function routeNameProblems(
  candidates: Candidate[],
  modelNamespaces: (name: string) => string[] = () => [],
): Problem[] {
  const firstSeen = new Map<string, Candidate>();
  const problems: Problem[] = [];
  for (const candidate of candidates) {
    if (candidate.kind !== "Model" || candidate.name === undefined) continue;
    const elsewhere = modelNamespaces(candidate.name).filter(
      (namespace) => namespace !== candidate.namespace,
    );
    const first = firstSeen.get(candidate.name);
    if (!first) firstSeen.set(candidate.name, candidate);
    let holder: string | undefined;
    if (elsewhere.length > 0) {
      holder = `namespace ${elsewhere.sort().join(", ")} already has a Model "${candidate.name}"`;
    } else if (first && first.namespace !== candidate.namespace) {
      const where = first.document.locate("/metadata/name");
      holder = `Model "${candidate.name}" of namespace ${first.namespace} is defined at ${first.document.file}:${where.line}:${where.column}`;
    }
    if (!holder) continue;
    problems.push(
      problemAt(
        candidate,
        "/metadata/name",
        "route",
        `${holder}; the gateway serves a model by its name alone (/model/${candidate.name}), so a name is one namespace's: rename this Model`,
      ),
    );
  }
  return problems;
}

/** An object that names a namespace other than the one the repository applies into. */
export function namespaceProblems(candidate: Candidate, namespace: string | undefined): Problem[] {
  if (namespace === undefined || candidate.namespace === namespace) return [];
  return [
    problemAt(
      candidate,
      "/metadata/namespace",
      "namespace",
      `namespace "${candidate.namespace}" is not this repository's: its objects go to namespace "${namespace}" (leave metadata.namespace out, or set it to "${namespace}")`,
    ),
  ];
}

/**
 * Validates manifests together, reading model files through the tree. `declared` lists the
 * objects; they are only fit to apply when there is no problem at all.
 */
export async function validateManifests(
  sources: ManifestSource[],
  tree: SourceTree,
  options: ValidateOptions = {},
): Promise<{ problems: Problem[]; objects: number; declared: DeclaredObject[] }> {
  const validators = compileKindValidators(options);
  const limits = manifestLimits(options.limits);
  const { admitted, problems } = admitManifests(sources, limits);
  const candidates: Candidate[] = [];

  for (const source of admitted) {
    const parsed = parseManifestFile(source.file, source.text, limits);
    for (const syntax of parsed.syntaxProblems) {
      problems.push({
        file: syntax.file,
        line: syntax.position.line,
        column: syntax.position.column,
        kind: syntax.kind ?? "?",
        ...(syntax.name === undefined ? {} : { name: syntax.name }),
        pointer: "",
        rule: syntax.rule,
        message: syntax.message,
      });
    }
    for (const document of parsed.documents) {
      const identified = identify(document, source.repoPath, options.namespace);
      problems.push(...identified.problems);
      const candidate = identified.candidate;
      if (!candidate) continue;
      candidates.push(candidate);
      problems.push(...namespaceProblems(candidate, options.namespace));
      if (CONTROLLER_OWNED.has(candidate.kind)) {
        problems.push(
          problemAt(
            candidate,
            "/kind",
            "controller-owned",
            `${candidate.kind} objects are created by the controller; do not commit them`,
          ),
        );
        continue;
      }
      const validate = validators.get(candidate.kind) as ValidateFunction;
      if (!validate(candidate.object))
        problems.push(...schemaProblems(candidate, validate.errors ?? []));
    }
  }

  problems.push(
    ...duplicateProblems(candidates),
    ...modelReferenceProblems(candidates),
    ...routeNameProblems(candidates, options.modelNamespaces),
  );
  for (const candidate of candidates) {
    if (candidate.kind !== "Model") continue;
    problems.push(
      ...inputSchemaProblems(candidate),
      ...(await modelSourceProblems(candidate, tree)),
    );
  }
  const declared = candidates.flatMap(({ kind, namespace, name, repoPath, object, document }) =>
    name === undefined
      ? []
      : [{ kind, namespace, name, repoPath, line: document.locate("").line, object }],
  );
  return { problems: problems.sort(compareProblems), objects: candidates.length, declared };
}

/** `path:line:col: Kind/name /json/pointer: message` — the document root is written `/`. */
export function formatProblem(problem: Problem): string {
  const object = `${problem.kind ?? "?"}/${problem.name ?? "?"}`;
  return `${problem.file}:${problem.line}:${problem.column}: ${object} ${problem.pointer || "/"}: ${problem.message}`;
}

/** Problems a summary names; the rest are counted. */
export const MAX_PROBLEMS_SHOWN = 20;
/** Characters of one problem in a summary: a file name, a field or a kind can be long. */
export const MAX_PROBLEM_LINE_CHARS = 400;

/**
 * The first problems, one formatted line each (cut at `lineChars`), then how many more there are
 * (`… and 4980 more problems`): a summary that stays small however many problems a commit has,
 * for messages with no room for all of them (a status, a condition, an event). `modelship
 * validate` prints every problem instead.
 */
export function formatProblemSummary(
  problems: readonly Problem[],
  { shown = MAX_PROBLEMS_SHOWN, lineChars = MAX_PROBLEM_LINE_CHARS } = {},
): string {
  const lines = problems.slice(0, shown).map((problem) => {
    const line = formatProblem(problem);
    return line.length > lineChars ? `${line.slice(0, lineChars - 1)}…` : line;
  });
  const more = problems.length - lines.length;
  if (more > 0) lines.push(`… and ${more} more problem${more === 1 ? "" : "s"}`);
  return lines.join("\n");
}
