// Writes docs/manifests.md: every field of every kind, from the schemas, with the examples.
import type { JsonSchema } from "../schemas.ts";

export interface FieldRow {
  path: string;
  type: string;
  required: boolean;
  default?: unknown;
  constraints: string[];
  description: string;
}

function typeName(schema: JsonSchema): string {
  if (Array.isArray(schema.enum))
    return schema.enum.map((value) => `\`${String(value)}\``).join(" \\| ");
  if (Array.isArray(schema.anyOf)) {
    return (schema.anyOf as JsonSchema[]).map(typeName).join(" or ");
  }
  if (schema.type === "array") return `list of ${typeName((schema.items ?? {}) as JsonSchema)}`;
  if (schema.type === "object" && schema.additionalProperties && !schema.properties) {
    return `map of ${typeName(schema.additionalProperties as JsonSchema)}`;
  }
  if (schema["x-kubernetes-preserve-unknown-fields"] && !schema.type) return "any JSON";
  return String(schema.type ?? "any JSON");
}

function constraintsOf(schema: JsonSchema): string[] {
  const constraints: string[] = [];
  if (schema.minimum !== undefined && schema.maximum !== undefined) {
    constraints.push(`${String(schema.minimum)}–${String(schema.maximum)}`);
  } else if (schema.minimum !== undefined) {
    constraints.push(`≥ ${String(schema.minimum)}`);
  } else if (schema.maximum !== undefined) {
    constraints.push(`≤ ${String(schema.maximum)}`);
  }
  if (typeof schema["x-message"] === "string") constraints.push(schema["x-message"]);
  else if (typeof schema.pattern === "string") constraints.push(`matches \`${schema.pattern}\``);
  if (schema.format === "date-time" || schema.format === "uri") {
    constraints.push(`format ${String(schema.format)}`);
  }
  return constraints;
}

/** Flattens a (ref-inlined) schema into one row per field, depth first. */
export function fieldRows(schema: JsonSchema, prefix: string, required = false): FieldRow[] {
  const rows: FieldRow[] = [];
  if (prefix !== "") {
    rows.push({
      path: prefix,
      type: typeName(schema),
      required,
      default: schema.default,
      constraints: constraintsOf(schema),
      description: String(schema.description ?? ""),
    });
  }
  const requiredNames = new Set((schema.required ?? []) as string[]);
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  for (const [name, child] of Object.entries(properties)) {
    rows.push(...fieldRows(child, prefix ? `${prefix}.${name}` : name, requiredNames.has(name)));
  }
  if (schema.type === "array" && schema.items) {
    const items = schema.items as JsonSchema;
    if (items.properties)
      rows.push(...fieldRows({ ...items, description: "" }, `${prefix}[]`).slice(1));
  }
  return rows;
}

function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

export function fieldTable(rows: FieldRow[]): string {
  const lines = ["| field | type | default | description |", "|---|---|---|---|"];
  for (const row of rows) {
    const marks = [row.required ? "**required**" : "", ...row.constraints].filter(Boolean);
    const description = [row.description, marks.length ? `(${marks.join("; ")})` : ""]
      .filter(Boolean)
      .join(" ");
    const fallback = row.default === undefined ? "" : `\`${JSON.stringify(row.default)}\``;
    lines.push(
      `| \`${row.path}\` | ${cell(row.type)} | ${cell(fallback)} | ${cell(description)} |`,
    );
  }
  return lines.join("\n");
}

export interface KindReference {
  kind: string;
  schema: JsonSchema;
  examples: { file: string; text: string }[];
}

export function referencePage(intro: string, kinds: KindReference[]): string {
  const sections = kinds.map(({ kind, schema, examples }) => {
    const properties = schema.properties as Record<string, JsonSchema>;
    const spec = properties.spec as JsonSchema;
    const status = properties.status as JsonSchema;
    const exampleText = examples
      .map(({ file, text }) => `From \`${file}\`:\n\n\`\`\`yaml\n${text.trimEnd()}\n\`\`\``)
      .join("\n\n");
    return [
      `## ${kind}`,
      String(schema.description),
      exampleText,
      "### spec",
      fieldTable(fieldRows(spec, "spec")),
      "### status (written by the controller)",
      fieldTable(fieldRows(status, "status")),
    ]
      .filter(Boolean)
      .join("\n\n");
  });
  return `${intro.trimEnd()}\n\n${sections.join("\n\n")}\n`;
}
