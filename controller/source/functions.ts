// Finds the functions a Python or R file defines at its top level, by reading its lines — the
// validator must work without Python or R installed. The worker's own import is the final word;
// this catches the common mistakes (a typo, a renamed function) before a build is started.

export interface TopLevelNames {
  /** Names defined as functions (`def`, `<- function`). */
  functions: string[];
  /** Other names bound at the top level (assignments, imports); callables can hide there. */
  otherNames: string[];
}

/** Python: `def name(` / `async def name(`, `name = ...`, and `from module import name [as alias]`. */
function pythonTopLevelNames(text: string): TopLevelNames {
  const functions: string[] = [];
  const names: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const definition = /^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(/.exec(line);
    if (definition?.[1]) {
      functions.push(definition[1]);
      continue;
    }
    const assignment = /^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)/.exec(line);
    if (assignment?.[1]) {
      names.push(assignment[1]);
      continue;
    }
    const fromImport = /^from\s+[\w.]+\s+import\s+\(?([^#)]*)/.exec(line);
    if (fromImport?.[1]) {
      for (const imported of fromImport[1].split(",")) {
        const name = imported
          .trim()
          .split(/\s+as\s+/)
          .pop()
          ?.trim();
        if (name && /^[A-Za-z_]\w*$/.test(name)) names.push(name);
      }
    }
  }
  return { functions, otherNames: names };
}

/** R: `name <- function(`, `name = function(`, `name <<- function(`, and R 4.1's `name <- \(`. */
function rTopLevelNames(text: string): TopLevelNames {
  const names: string[] = [];
  const assignment = /^[`"']?([A-Za-z.][\w.]*)[`"']?\s*(?:<<?-|=)\s*(?:function\s*\(|\\\()/;
  for (const line of text.split(/\r?\n/)) {
    const match = assignment.exec(line);
    if (match?.[1]) names.push(match[1]);
  }
  return { functions: names, otherNames: [] };
}

export function topLevelNames(runtime: "python3" | "r", text: string): TopLevelNames {
  const found = runtime === "python3" ? pythonTopLevelNames(text) : rTopLevelNames(text);
  return { functions: [...new Set(found.functions)], otherNames: [...new Set(found.otherNames)] };
}

/** The file name endings each runtime loads. */
export const RUNTIME_EXTENSIONS: Record<"python3" | "r", string[]> = {
  python3: [".py"],
  r: [".R", ".r"],
};
