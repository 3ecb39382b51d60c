// Writes TypeScript declarations for every kind from its (ref-inlined) JSON Schema. Object
// schemas with a `title` become named interfaces; other objects are written inline.
import type { JsonSchema } from "../schemas.ts";

interface Emitter {
  /** Named declarations by title, in the order first met. */
  declarations: Map<string, string>;
}

function docComment(description: unknown, indent: string): string {
  if (typeof description !== "string" || description === "") return "";
  const lines = description.replaceAll("*/", "*\\/").split("\n");
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((line) => `${indent} * ${line}`).join("\n")}\n${indent} */\n`;
}

function propertyName(name: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : JSON.stringify(name);
}

function objectBody(schema: JsonSchema, emitter: Emitter, indent: string): string {
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((schema.required ?? []) as string[]);
  let body = "";
  for (const [name, child] of Object.entries(properties)) {
    const optional = required.has(name) ? "" : "?";
    body += docComment(child.description, `${indent}  `);
    body += `${indent}  ${propertyName(name)}${optional}: ${typeOf(child, emitter, `${indent}  `)};\n`;
  }
  const additional = schema.additionalProperties;
  if (additional === true) {
    body += `${indent}  [key: string]: unknown;\n`;
  } else if (typeof additional === "object" && additional !== null) {
    body += `${indent}  [key: string]: ${typeOf(additional as JsonSchema, emitter, `${indent}  `)};\n`;
  }
  return `{\n${body}${indent}}`;
}

export function typeOf(schema: JsonSchema, emitter: Emitter, indent = ""): string {
  if (Array.isArray(schema.enum)) {
    return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  }
  if (Array.isArray(schema.anyOf)) {
    return (schema.anyOf as JsonSchema[])
      .map((branch) => typeOf(branch, emitter, indent))
      .join(" | ");
  }
  switch (schema.type) {
    case "string":
      return "string";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "array":
      return `${wrapUnion(typeOf((schema.items ?? {}) as JsonSchema, emitter, indent))}[]`;
    case "object": {
      if (!schema.properties && schema.additionalProperties === undefined) {
        return "Record<string, unknown>";
      }
      if (typeof schema.title === "string") return declare(schema.title, schema, emitter);
      return objectBody(schema, emitter, indent);
    }
    default:
      return "unknown";
  }
}

function wrapUnion(type: string): string {
  return type.includes(" | ") ? `(${type})` : type;
}

function declare(title: string, schema: JsonSchema, emitter: Emitter): string {
  // Reserve the slot before the body is written, so that a kind comes before its parts.
  if (!emitter.declarations.has(title)) emitter.declarations.set(title, "");
  const declaration = `${docComment(schema.description, "")}export interface ${title} ${objectBody(schema, emitter, "")}\n`;
  const existing = emitter.declarations.get(title);
  if (existing && existing !== declaration) {
    throw new Error(`two different schemas share the title ${title}`);
  }
  emitter.declarations.set(title, declaration);
  return title;
}

/** Declarations for all the given kind schemas, shared titles written once. */
export function typesModule(kindSchemas: JsonSchema[], header: string): string {
  const emitter: Emitter = { declarations: new Map() };
  for (const schema of kindSchemas) typeOf(schema, emitter);
  return `${header}\n${[...emitter.declarations.values()].join("\n")}`;
}
