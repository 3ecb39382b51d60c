// The whole project type-checks under strict TypeScript and passes the linter and formatter:
// part of `npm test`, so that the README's one test command checks everything CI checks.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "./helpers/cli.ts";

function run(tool: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(join(PROJECT_ROOT, "node_modules", ".bin", tool), args, {
    cwd: PROJECT_ROOT,
    encoding: "utf8",
    timeout: 120_000,
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe("code quality", () => {
  it.each([
    ["the project", []],
    // The dashboard's code runs in a browser: its own lib (DOM) and JSX settings.
    ["the dashboard", ["-p", "controller/ui/tsconfig.json"]],
  ])("type-checks %s (tsc --noEmit)", { timeout: 120_000 }, (_, project) => {
    const { status, output } = run("tsc", ["--noEmit", ...project]);
    expect(output).toBe("");
    expect(status).toBe(0);
  });

  it("passes biome check (lint and format)", { timeout: 60_000 }, () => {
    const { status, output } = run("biome", ["check", "--colors=off", "."]);
    expect(status, output).toBe(0);
  });
});
