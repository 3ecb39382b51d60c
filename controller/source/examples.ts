// A Model's example calls: `spec.example` first, then `spec.examples`, then the lines of
// `spec.examplesFile` (JSON Lines in its source path). `modelship plan --predict` runs them
// through two builds; validation reports a line of the file that is not an example.

import { posix } from "node:path";
import { isRecord } from "../api/canonical-json.ts";
import type { ModelSpec } from "../api/types.generated.ts";

/** The largest examples file read: examples are for comparing builds, not a data set. */
export const MAX_EXAMPLES_FILE_BYTES = 1024 * 1024;
/** Examples run per model and side at most; the rest are counted as not run. */
export const MAX_EXAMPLES = 1000;

export interface Example {
  /** Where it is declared, to name it in a report: `spec.examples[1]`, `examples.jsonl:4`, or its name. */
  label: string;
  input: unknown;
  /** The answer it should get, when declared. */
  output?: unknown;
  hasOutput: boolean;
}

export interface ExampleLineProblem {
  line: number;
  message: string;
}

function exampleOf(item: Record<string, unknown>, label: string): Example {
  return {
    label: typeof item.name === "string" ? item.name : label,
    input: item.input,
    ...(item.output === undefined ? {} : { output: item.output }),
    hasOutput: "output" in item,
  };
}

/** The examples of a JSON Lines file: one object with `input` per non-blank line. */
export function parseExamplesFile(
  text: string,
  file: string,
): { examples: Example[]; problems: ExampleLineProblem[] } {
  const examples: Example[] = [];
  const problems: ExampleLineProblem[] = [];
  const name = posix.basename(file);
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "") return;
    let item: unknown;
    try {
      item = JSON.parse(line);
    } catch (error) {
      problems.push({ line: index + 1, message: `not JSON: ${(error as Error).message}` });
      return;
    }
    if (!isRecord(item) || !("input" in item)) {
      problems.push({ line: index + 1, message: 'each line must be an object with an "input"' });
      return;
    }
    const unknown = Object.keys(item).filter((key) => !["name", "input", "output"].includes(key));
    if (unknown.length > 0) {
      problems.push({
        line: index + 1,
        message: `unknown field${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")} (an example has name, input and output)`,
      });
      return;
    }
    examples.push(exampleOf(item, `${name}:${index + 1}`));
  });
  return { examples, problems };
}

/** A Model's examples, in order: spec.example, spec.examples, then the examples file's. */
export function examplesOf(spec: ModelSpec, fromFile: Example[] = []): Example[] {
  const first =
    spec.example && "input" in spec.example ? [exampleOf(spec.example, "spec.example")] : [];
  const listed = (spec.examples ?? []).map((item, index) =>
    exampleOf(item as Record<string, unknown>, `spec.examples[${index}]`),
  );
  return [...first, ...listed, ...fromFile];
}
