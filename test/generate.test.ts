// The files derived from schemas/ are up to date, and the CRDs are structural schemas that say
// what the JSON Schemas say.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { generatedFiles, PROJECT_ROOT } from "../controller/api/generate.ts";
import {
  inlineRefs,
  type JsonSchema,
  KINDS,
  loadKindSchema,
  newInputSchemaAjv,
} from "../controller/api/schemas.ts";

const generated = generatedFiles();

function crd(plural: string): JsonSchema {
  return parse(
    readFileSync(join(PROJECT_ROOT, "crds", `${plural}.modelship.dev.yaml`), "utf8"),
  ) as JsonSchema;
}

function version(definition: JsonSchema): JsonSchema {
  return ((definition.spec as JsonSchema).versions as JsonSchema[])[0] as JsonSchema;
}

/** Every rule of https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema we rely on. */
function structuralViolations(node: JsonSchema, path: string): string[] {
  const violations: string[] = [];
  const typeExempt =
    node["x-kubernetes-int-or-string"] === true ||
    node["x-kubernetes-preserve-unknown-fields"] === true;
  if (!typeExempt && typeof node.type !== "string") violations.push(`${path}: no type`);
  for (const keyword of [
    "$ref",
    "$schema",
    "$defs",
    "propertyNames",
    "examples",
    "title",
    "const",
  ]) {
    if (keyword in node) violations.push(`${path}: ${keyword} is not allowed`);
  }
  if (node.properties && node.additionalProperties !== undefined) {
    violations.push(`${path}: properties and additionalProperties together`);
  }
  if (node.anyOf !== undefined) {
    const intOrString =
      JSON.stringify(node.anyOf) === JSON.stringify([{ type: "integer" }, { type: "string" }]);
    if (!intOrString || node["x-kubernetes-int-or-string"] !== true)
      violations.push(`${path}: anyOf other than int-or-string`);
  }
  for (const [name, child] of Object.entries(
    (node.properties ?? {}) as Record<string, JsonSchema>,
  )) {
    violations.push(...structuralViolations(child, `${path}.${name}`));
  }
  if (node.items) violations.push(...structuralViolations(node.items as JsonSchema, `${path}[]`));
  if (typeof node.additionalProperties === "object") {
    violations.push(...structuralViolations(node.additionalProperties as JsonSchema, `${path}{}`));
  }
  return violations;
}

/** Field paths without a description, below a (ref-inlined) schema node. */
function undescribed(node: JsonSchema, path: string): string[] {
  const missing: string[] = [];
  for (const [name, child] of Object.entries(
    (node.properties ?? {}) as Record<string, JsonSchema>,
  )) {
    if (typeof child.description !== "string" || child.description.length < 8)
      missing.push(`${path}.${name}`);
    missing.push(...undescribed(child, `${path}.${name}`));
  }
  if (node.items) missing.push(...undescribed(node.items as JsonSchema, `${path}[]`));
  return missing;
}

describe("generated files", () => {
  it.each([...generated.keys()])("%s is up to date (run npm run generate)", (file) => {
    expect(readFileSync(join(PROJECT_ROOT, file), "utf8")).toBe(generated.get(file));
  });

  it("documents every field of every kind", () => {
    for (const kind of KINDS)
      expect(undescribed(inlineRefs(loadKindSchema(kind)), kind)).toEqual([]);
  });
});

describe("CRDs", () => {
  const plurals = {
    ModelRepository: "modelrepositories",
    Model: "models",
    ModelBuild: "modelbuilds",
    ModelDeployment: "modeldeployments",
  };

  it.each(Object.entries(plurals))(
    "%s is a structural, namespaced CRD with a status subresource",
    (kind, plural) => {
      const definition = crd(plural);
      expect(definition.apiVersion).toBe("apiextensions.k8s.io/v1");
      expect((definition.metadata as JsonSchema).name).toBe(`${plural}.modelship.dev`);
      const spec = definition.spec as JsonSchema;
      expect(spec.scope).toBe("Namespaced");
      expect((spec.names as JsonSchema).kind).toBe(kind);
      expect(((spec.names as JsonSchema).shortNames as string[]).length).toBeGreaterThan(0);
      const served = version(definition);
      expect(served).toMatchObject({
        name: "v1alpha1",
        served: true,
        storage: true,
        subresources: { status: {} },
      });
      const schema = (served.schema as JsonSchema).openAPIV3Schema as JsonSchema;
      expect(structuralViolations(schema, kind)).toEqual([]);
    },
  );

  it.each([
    ["modeldeployments", ["Model", "Build", "Ready", "Phase", "URL", "Age"]],
    ["modelbuilds", ["Model", "Number", "Commit", "Phase", "Age"]],
    ["modelrepositories", ["URL", "Branch", "Commit", "Ready", "Suspended", "Last Sync", "Age"]],
  ])("%s has the printer columns the operators read", (plural, columns) => {
    const printed = (version(crd(plural)).additionalPrinterColumns as { name: string }[]).map(
      (column) => column.name,
    );
    expect(printed).toEqual(columns);
  });

  it("keeps a ModelBuild's spec immutable with a CEL transition rule", () => {
    const spec = ((version(crd("modelbuilds")).schema as JsonSchema).openAPIV3Schema as JsonSchema)
      .properties as Record<string, JsonSchema>;
    expect(spec.spec?.["x-kubernetes-validations"]).toEqual([
      { rule: "self == oldSelf", message: "a ModelBuild's spec is immutable" },
    ]);
  });

  // The API server checks objects against the CRD's schema, not ours: both must agree on the
  // examples, and on the limits that matter.
  it.each([
    ["the examples pass", (object: JsonSchema) => object, true],
    ["replicas 12 fails", (object: JsonSchema) => withSpec(object, { replicas: 12 }), false],
    [
      "a negative queue timeout fails",
      (object: JsonSchema) => withSpec(object, { queueTimeoutSeconds: -1 }),
      false,
    ],
    ["runtime julia fails", (object: JsonSchema) => withSpec(object, { runtime: "julia" }), false],
    [
      "a bad cpu quantity fails",
      (object: JsonSchema) => withSpec(object, { resources: { cpu: "lots" } }),
      false,
    ],
  ])("CRD schemas and JSON Schemas agree: %s", (_case, change, valid) => {
    const manifests = ["add-numbers", "iris", "add-numbers-r"].flatMap((example) =>
      parseAllDocuments(
        readFileSync(join(PROJECT_ROOT, "manifests/examples", example, "model.yaml"), "utf8"),
      ).map((document) => document.toJS() as JsonSchema),
    );
    for (const manifest of manifests) {
      const kind = manifest.kind as string;
      const changed = change(structuredClone(manifest));
      if (JSON.stringify(changed) === JSON.stringify(manifest) && !valid) continue; // change not for this kind
      const plural = plurals[kind as keyof typeof plurals];
      const crdSchema = (version(crd(plural)).schema as JsonSchema).openAPIV3Schema as JsonSchema;
      expect(newInputSchemaAjv().validate(crdSchema, changed), `${kind} against its CRD`).toBe(
        valid,
      );
      expect(
        newInputSchemaAjv().validate(
          inlineRefs(loadKindSchema(kind as (typeof KINDS)[number])),
          changed,
        ),
        `${kind} against schemas/`,
      ).toBe(valid);
    }
  });
});

/** The object with spec fields replaced, where the spec has such fields in its kind. */
function withSpec(object: JsonSchema, fields: JsonSchema): JsonSchema {
  const spec = object.spec as JsonSchema;
  const applies =
    (object.kind === "Model" && "runtime" in fields) ||
    (object.kind === "ModelDeployment" && !("runtime" in fields));
  return applies ? { ...object, spec: { ...spec, ...fields } } : object;
}
