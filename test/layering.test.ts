// The arrows between the parts point down only: cli → platform → {reconcile, gateway, replica,
// forge} → {core, source, api}. The gateway takes a GatewayConfig and knows no Store; the ports
// live in core; source is a library that knows no queue; forge talks to GitHub and knows no
// store's implementation. A file that needs something from a higher floor is in the wrong place
// — this test names it.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "./helpers/cli.ts";

const CONTROLLER = join(PROJECT_ROOT, "controller");

/** What each part may import (besides itself). */
const MAY_IMPORT: Record<string, string[]> = {
  api: [],
  core: ["api"],
  source: ["api", "core"],
  reconcile: ["api", "core", "source"],
  gateway: ["api", "metrics"],
  replica: ["api", "metrics"],
  forge: ["api", "core"],
  // The metrics store's port and its SQL implementation stand alone: their users import them.
  metrics: [],
  platform: ["api", "core", "source", "reconcile", "gateway", "replica", "forge", "metrics"],
  cli: ["api", "core", "source", "reconcile", "gateway", "replica", "forge", "platform", "metrics"],
  // The dashboard runs in a browser: it shares only the pure helpers and the generated types.
  ui: ["api", "core"],
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? files(join(dir, entry.name))
      : /\.tsx?$/.test(entry.name)
        ? [join(dir, entry.name)]
        : [],
  );
}

const partOf = (file: string) => relative(CONTROLLER, file).split("/")[0] as string;

/** Every import of another controller file: `part/file.ts → part/other.ts`. */
function edges(): { from: string; to: string }[] {
  return files(CONTROLLER).flatMap((file) => {
    const text = readFileSync(file, "utf8");
    const specifiers = [...text.matchAll(/(?:from\s+|import\s*\(\s*)"(\.{1,2}\/[^"]+)"/g)].map(
      (match) => match[1] as string,
    );
    return specifiers
      .map((specifier) => resolve(dirname(file), specifier))
      .filter((target) => target.startsWith(CONTROLLER))
      .map((target) => ({ from: file, to: target }));
  });
}

/** A page or section only the project's founders have, not its users. */
const OUTSIDE = /\.\.\/shared\/(DESIGN|STYLE|reference|k8s-test-cluster|hooks)|DESIGN(\.md)? §/;

describe("layering", () => {
  it("knows every part of controller/", () => {
    const parts = new Set(files(CONTROLLER).map(partOf));
    expect([...parts].sort()).toStrictEqual(Object.keys(MAY_IMPORT).sort());
  });

  it("has no import that points up or sideways", () => {
    const wrong = edges()
      .filter(({ from, to }) => {
        const source = partOf(from);
        const target = partOf(to);
        return source !== target && !MAY_IMPORT[source]?.includes(target);
      })
      .map(({ from, to }) => `${relative(CONTROLLER, from)} → ${relative(CONTROLLER, to)}`);
    expect(wrong).toStrictEqual([]);
  });

  it("keeps code and docs pointing inside the repository", () => {
    const outside = [...files(CONTROLLER), ...files(join(PROJECT_ROOT, "test"))]
      .concat(
        readdirSync(join(PROJECT_ROOT, "docs"))
          .filter((file) => file.endsWith(".md"))
          .map((file) => join(PROJECT_ROOT, "docs", file)),
      )
      .filter((file) => OUTSIDE.test(readFileSync(file, "utf8")))
      .filter((file) => file !== join(PROJECT_ROOT, "test", "layering.test.ts"))
      .map((file) => relative(PROJECT_ROOT, file));
    expect(outside).toStrictEqual([]);
  });
});
