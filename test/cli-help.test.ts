// Every command answers --help (and -h) with its usage and options and exit 0, wherever the flag
// comes among its arguments, before parsing the rest; `modelship --version` prints the version.
// The list of commands is read from `modelship --help`, so a new command is covered at once.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT, runCli } from "./helpers/cli.ts";

const COMMANDS = [...runCli(["--help"]).stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map(
  (match) => match[1] as string,
);

describe("modelship <command> --help", () => {
  it("lists the commands", () => {
    expect(COMMANDS).toEqual(
      expect.arrayContaining(["up", "get", "describe", "logs", "call", "keys", "apikeys"]),
    );
  });

  it.each(COMMANDS)("%s --help: exit 0, its usage and its options", (command) => {
    const run = runCli([command, "--help"]);
    expect([run.exitCode, run.stderr]).toEqual([0, ""]);
    expect(run.stdout).toMatch(new RegExp(`^Usage: modelship ${command}\\b`));
    expect(run.stdout).toContain("--");
  });

  it.each([
    ["after positionals", ["get", "models", "--help"]],
    ["short, among others", ["logs", "iris", "--follow", "-h"]],
    ["with arguments that would not parse", ["call", "iris", "{not json", "--help"]],
  ])("answers help %s", (_, args) => {
    const run = runCli(args);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^Usage: modelship ${args[0]}\\b`));
  });
});

describe("modelship --version", () => {
  it("prints package.json's version", () => {
    const { version } = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8"));
    expect(runCli(["--version"])).toMatchObject({ exitCode: 0, stdout: `modelship ${version}\n` });
  });
});
