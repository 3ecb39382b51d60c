// Turns a kind's JSON Schema into an apiextensions.k8s.io/v1 CustomResourceDefinition whose
// openAPIV3Schema is structural (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
import { API_GROUP, API_VERSION, inlineRefs, type JsonSchema, type Kind } from "../schemas.ts";

export interface KindMetadata {
  plural: string;
  singular: string;
  shortNames: string[];
  printerColumns: { name: string; type: string; jsonPath: string; description?: string }[];
  /** The scale subresource (`kubectl scale`, a HorizontalPodAutoscaler), where the kind has one. */
  scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string };
}

export function kindMetadata(schema: JsonSchema): KindMetadata {
  const metadata = schema["x-kubernetes"] as KindMetadata | undefined;
  if (!metadata) throw new Error(`schema ${String(schema.title)} has no x-kubernetes block`);
  return metadata;
}

/** Keywords that JSON Schema tools use but a structural CRD schema must not carry. */
const DROPPED_KEYWORDS = new Set([
  "$schema",
  "$id",
  "$defs",
  "title",
  "examples",
  "x-message",
  "x-kubernetes",
  // Kubernetes has no propertyNames; the validator and the controller check map keys instead.
  "propertyNames",
]);

/** Converts one (ref-inlined) schema node into its structural form. */
export function toStructural(node: JsonSchema): JsonSchema {
  const result: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (DROPPED_KEYWORDS.has(key)) continue;
    switch (key) {
      case "properties":
        result.properties = Object.fromEntries(
          Object.entries(value as Record<string, JsonSchema>).map(([name, child]) => [
            name,
            toStructural(child),
          ]),
        );
        break;
      case "items":
        result.items = toStructural(value as JsonSchema);
        break;
      case "additionalProperties":
        // Structural schemas prune unknown fields instead of forbidding them, and do not allow
        // additionalProperties next to properties; only a typed map keeps it.
        if (typeof value === "object" && value !== null) {
          result.additionalProperties = toStructural(value as JsonSchema);
        }
        break;
      case "anyOf":
        // The one anyOf a structural schema allows: int-or-string; the precise rule lives in
        // x-kubernetes-validations (CEL) or pattern.
        if (node["x-kubernetes-int-or-string"] !== true) {
          throw new Error("anyOf is only supported on x-kubernetes-int-or-string fields");
        }
        result.anyOf = [{ type: "integer" }, { type: "string" }];
        break;
      default:
        result[key] = value;
    }
  }
  if (Array.isArray(node.examples) && node.examples.length > 0) result.example = node.examples[0];
  return result;
}

/** The openAPIV3Schema of a kind: apiVersion, kind and metadata in Kubernetes' own shape. */
export function openApiSchemaOf(kindSchema: JsonSchema): JsonSchema {
  const inlined = inlineRefs(kindSchema);
  const properties = inlined.properties as Record<string, JsonSchema>;
  const structural = toStructural(inlined);
  const structuralProperties = structural.properties as Record<string, JsonSchema>;
  return {
    description: inlined.description,
    type: "object",
    required: ["spec"],
    properties: {
      apiVersion: {
        description:
          "APIVersion defines the versioned schema of this representation of an object: modelship.dev/v1alpha1.",
        type: "string",
      },
      kind: {
        description: `Kind is the type of this object: ${String(properties.kind?.enum)}.`,
        type: "string",
      },
      // The API server owns metadata's schema; a CRD may not restrict more than name.
      metadata: { type: "object" },
      spec: structuralProperties.spec,
      status: structuralProperties.status,
    },
  };
}

export function crdOf(kind: Kind, kindSchema: JsonSchema): JsonSchema {
  const metadata = kindMetadata(kindSchema);
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${metadata.plural}.${API_GROUP}`,
      labels: { "app.kubernetes.io/part-of": "modelship" },
    },
    spec: {
      group: API_GROUP,
      names: {
        kind,
        listKind: `${kind}List`,
        plural: metadata.plural,
        singular: metadata.singular,
        shortNames: metadata.shortNames,
        categories: ["modelship"],
      },
      scope: "Namespaced",
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {}, ...(metadata.scale ? { scale: metadata.scale } : {}) },
          additionalPrinterColumns: metadata.printerColumns,
          schema: { openAPIV3Schema: openApiSchemaOf(kindSchema) },
        },
      ],
    },
  };
}
